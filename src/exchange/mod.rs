//! The partner's side of an exchange: send a message (`send`), fetch and acknowledge it (`delivery`), register and
//! withdraw consents (`consent`).
//!
//! Knows no HTTP: each function takes the verified `Caller` and returns a typed result or a `Refusal`, which the HTTP
//! layer renders. Nothing here may put a payload value or a raw pupil number in a log entry, an error or a trace.

pub mod consent;
pub mod delivery;
mod kerngroep;
pub mod outbox;
pub mod send;

use crate::audit::writer::Receipt;
use crate::domain::ConsentRecord;
use crate::store::StoredConsent;
use serde_json::{json, Value};

/// Where a log entry stands, as partners are shown it (`disclosure` members).
pub fn disclosure_json(r: &Receipt) -> Value {
    json!({"log_id": r.log_id, "seq": r.seq, "hash": hex::encode(r.leaf_hash)})
}

/// A stored consent as the policy stage sees it; records that cannot be read count as absent.
pub fn consent_record(c: &StoredConsent) -> Option<ConsentRecord> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Some(ConsentRecord {
        consent_id: c.id.clone(),
        registered_by: c.registered_by.clone(),
        purpose: c.purpose.clone(),
        recipient: c.recipient.clone(),
        categories: serde_json::from_str(&c.categories).ok()?,
        given_by: serde_json::from_value(Value::String(c.given_by.clone())).ok()?,
        subject_birth_date: match &c.subject_birth_date {
            Some(d) => Some(time::Date::parse(d, &fmt).ok()?),
            None => None,
        },
        valid_from: time::Date::parse(&c.valid_from, &fmt).ok()?,
        valid_until: time::Date::parse(&c.valid_until, &fmt).ok()?,
        withdrawn: c.withdrawn_ms.is_some(),
    })
}

/// A 128-bit identifier, hex: the creation time in milliseconds (48 bits) and then 80 random bits.
///
/// The time prefix makes new ids sort after older ones, so each new mailbox row's entry in the unique index on
/// `messages.id` lands on the index's last page instead of a random one: about one page less written per message
/// per commit (BENCHMARKS.md). The 80 random bits keep ids unguessable; the time they reveal is the `sent_at`
/// that sender and receiver are shown anyway.
pub fn new_id() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    let ms = crate::audit::writer::now_ms().max(0) as u64;
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    ring::rand::SystemRandom::new()
        .fill(&mut b[6..])
        .expect("system randomness");
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::new_id;

    #[test]
    fn ids_sort_by_creation_time_and_stay_unguessable() {
        let first = new_id();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let same_ms: Vec<String> = (0..64).map(|_| new_id()).collect();
        for id in std::iter::once(&first).chain(&same_ms) {
            assert_eq!(id.len(), 32);
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
        assert!(
            same_ms.iter().all(|id| id > &first),
            "a later id sorts after an earlier one"
        );
        let prefix = |id: &str| u64::from_str_radix(&id[..12], 16).unwrap();
        let now = crate::audit::writer::now_ms() as u64;
        assert!(
            now - prefix(&first) < 60_000,
            "the prefix is the creation time in ms"
        );
        let mut random: Vec<&str> = same_ms.iter().map(|id| &id[12..]).collect();
        random.sort_unstable();
        random.dedup();
        assert_eq!(
            random.len(),
            same_ms.len(),
            "the random part differs between ids"
        );
    }
}
