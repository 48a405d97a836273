//! The receiver's side: fetch the inbox, acknowledge a message (which purges its payload).
//!
//! A partner sees only its own mailbox; another partner's message is answered as unknown (404), so existence
//! is not leaked. Consent-only fields are re-checked when fetched: a consent withdrawn since sending means
//! those fields are not delivered, and the fetch entry in the log says so.
//!
//! Push delivery (`push`) is a fetch on the receiver's behalf through `prepare_fetch`, the same code as the inbox.
//!
//! Several instances may serve one mailbox. A fetch claims each row's fetch count, and an acknowledgement the row
//! itself, in the same transaction as its log entry (`store::Mutation`); a request that loses such a race re-reads
//! and tries again. So a message is handed out as new (`redelivery: false`) once, and acknowledged once.

use super::{consent_record, disclosure_json};
use crate::audit::entry::{EventKind, LogEntry, WithheldField};
use crate::audit::writer::{AuditError, Receipt};
use crate::domain::ConsentRecord;
use crate::gateway::Gateway;
use crate::identity::Caller;
use crate::policy;
use crate::refusal::{ProblemCode, Refusal};
use crate::store::{FetchClaim, MessageEnd, Mutation, StoredMessage};
use serde_json::{json, Value};

pub struct InboxQuery {
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// How often a request that lost a race for a mailbox row re-reads and tries again before answering 409.
const RACE_ATTEMPTS: u32 = 20;

/// A short, growing, jittered pause before trying again after a lost race.
async fn race_pause(attempt: u32) {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 1];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    let ms = u64::from(attempt.min(10)) * 2 + u64::from(b[0] % 8);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

fn busy() -> Refusal {
    Refusal::new(
        ProblemCode::MailboxBusy,
        "these messages are being fetched or acknowledged by another request; try again",
    )
    .with_retry_after(1)
}

pub async fn inbox(gw: &Gateway, caller: &Caller, q: InboxQuery) -> Result<Value, Refusal> {
    let max = gw.config.limits.inbox_page_max;
    let limit = q.limit.unwrap_or(50).clamp(1, max);
    let after = match q.cursor.as_deref() {
        None | Some("") => 0,
        Some(c) => c.parse::<i64>().map_err(|_| {
            Refusal::new(
                ProblemCode::InvalidCursor,
                "cursor must be a value returned as next_cursor",
            )
        })?,
    };
    for attempt in 0..RACE_ATTEMPTS {
        if attempt > 0 {
            race_pause(attempt).await;
        }
        match fetch_page(gw, caller, after, limit).await {
            Err(FetchError::Lost) => continue,
            Err(FetchError::Refused(p)) => return Err(p),
            Ok(page) => return Ok(page),
        }
    }
    Err(busy())
}

enum FetchError {
    /// Another request claimed one of the rows first.
    Lost,
    Refused(Refusal),
}

impl From<Refusal> for FetchError {
    fn from(p: Refusal) -> Self {
        FetchError::Refused(p)
    }
}

/// Reads one page and claims it together with its log entries; the page is answered only after that commit.
async fn fetch_page(
    gw: &Gateway,
    caller: &Caller,
    after: i64,
    limit: usize,
) -> Result<Value, FetchError> {
    let rows = gw
        .store
        .inbox(caller.id(), after, limit)
        .await
        .map_err(|e| Refusal::audit_unavailable().because(e))?;
    let today = time::OffsetDateTime::now_utc().date();
    let mut messages = Vec::with_capacity(rows.len());
    let mut entries = Vec::with_capacity(rows.len());
    let mut claims = Vec::with_capacity(rows.len());
    for row in &rows {
        let fetch = prepare_fetch(gw, caller, row, today).await?;
        claims.push(fetch.claim);
        entries.push(fetch.entry);
        messages.push(fetch.message);
    }
    if !entries.is_empty() {
        let claim = Mutation::ClaimFetched {
            claims,
            at_ms: crate::audit::writer::now_ms(),
        };
        match gw.writer.append(entries, vec![claim]).await {
            Ok(_) => {}
            Err(AuditError::Conflict(_)) => return Err(FetchError::Lost),
            Err(e) => return Err(Refusal::audit_unavailable().because(e).into()),
        }
    }
    let next_cursor = if rows.len() == limit {
        rows.last().map(|r| r.pos.to_string())
    } else {
        None
    };
    Ok(json!({"messages": messages, "next_cursor": next_cursor}))
}

/// One message as a fetch hands it out: the inbox item, its `message-fetched` entry and the claim of its fetch count,
/// to be appended together (`Mutation::ClaimFetched`) before the item leaves the gateway. The pull inbox and push
/// delivery (`push`) both fetch through this, so consent is re-checked and stripped the same way for both.
pub struct Fetch {
    pub message: Value,
    pub entry: LogEntry,
    pub claim: FetchClaim,
}

/// Opens one stored message for `caller` (its receiver) on `today`: decrypted, consent-only fields whose consent
/// lapsed stripped, and the entry that names them.
pub async fn prepare_fetch(
    gw: &Gateway,
    caller: &Caller,
    row: &StoredMessage,
    today: time::Date,
) -> Result<Fetch, Refusal> {
    let (message, lapsed) = open_message(gw, row, today).await?;
    let claim = FetchClaim {
        id: row.msg.id.clone(),
        seen: row.fetch_count,
        stripped: lapsed.len() as i64,
    };
    let mut entry = stored_message_entry(gw, caller, EventKind::MessageFetched, row);
    entry.withheld = lapsed
        .into_iter()
        .map(|(field, reason)| WithheldField {
            field,
            reason: reason.into(),
        })
        .collect();
    Ok(Fetch {
        message,
        entry,
        claim,
    })
}

/// Why a consent that covered a field when the message was sent no longer covers it on `today`, or `None` while it
/// still does. A record that is gone or unreadable counts as missing: the field is withheld either way.
fn lapse_reason(consent: Option<&ConsentRecord>, today: time::Date) -> Option<&'static str> {
    consent.map_or(Some("consent-missing"), |c| c.lapse_on(today))
}

/// The consents of a stored message that no longer count on `today` because the pupil has had a birthday since
/// it was sent (`Decision::consent_counts_until`, sealed with the payload). A date that does not parse fails
/// closed: the consent counts as outgrown.
fn outgrown_consents(stored: &Value, today: time::Date) -> Vec<String> {
    let Some(map) = stored
        .get("consent_counts_until")
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    let format = time::macros::format_description!("[year]-[month]-[day]");
    map.iter()
        .filter(|(_, last)| {
            last.as_str()
                .and_then(|l| time::Date::parse(l, &format).ok())
                .is_none_or(|last| today > last)
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// Decrypts a stored message and strips consent-only fields whose consent no longer holds.
async fn open_message(
    gw: &Gateway,
    row: &StoredMessage,
    today: time::Date,
) -> Result<(Value, Vec<(String, &'static str)>), Refusal> {
    let plain = gw
        .keys
        .open(&row.msg.sealed, row.msg.id.as_bytes())
        .map_err(|e| Refusal::internal().because(e))?;
    let mut stored: Value = serde_json::from_slice(&plain).map_err(|_| {
        // serde's message is not passed on as the cause: it could quote the decrypted payload.
        Refusal::internal().because(std::io::Error::other("a stored payload is not valid JSON"))
    })?;
    let consent_paths: Vec<(String, String)> =
        serde_json::from_str(&row.msg.consent_paths).map_err(|e| Refusal::internal().because(e))?;
    let outgrown = outgrown_consents(&stored, today);
    let mut lapsed: Vec<(String, &'static str)> = Vec::new();
    let mut checked: Vec<(String, Option<&'static str>)> = Vec::new();
    for (path, consent_id) in consent_paths {
        let lapse = match checked.iter().find(|(id, _)| *id == consent_id) {
            Some((_, l)) => *l,
            None => {
                let c = gw
                    .store
                    .consent(&consent_id)
                    .await
                    .map_err(|e| Refusal::audit_unavailable().because(e))?;
                let l =
                    lapse_reason(c.as_ref().and_then(consent_record).as_ref(), today).or(outgrown
                        .contains(&consent_id)
                        .then_some(policy::WithheldReason::ConsentWrongGiver.code()));
                checked.push((consent_id.clone(), l));
                l
            }
        };
        if let Some(reason) = lapse {
            lapsed.push((path, reason));
        }
    }
    if !lapsed.is_empty() {
        if let Some(data) = stored.get_mut("data") {
            let paths: Vec<String> = lapsed.iter().map(|(p, _)| p.clone()).collect();
            policy::strip_paths(data, &paths);
        }
    }
    let m = &row.msg;
    let mut message = json!({
        "message_id": m.id,
        "from": m.sender,
        "type": m.message_type,
        "purpose": m.purpose,
        "subject": stored.get("subject").cloned().unwrap_or(Value::Null),
        "actor": stored.get("actor").cloned().unwrap_or(Value::Null),
        "justification": stored.get("justification").cloned().unwrap_or(Value::Null),
        "in_reply_to": stored.get("in_reply_to").cloned().unwrap_or(Value::Null),
        "data": stored.get("data").cloned().unwrap_or(Value::Null),
        "retention": retention_json(stored.get("retention"), m.expires_ms),
        // The sender's trace: the receiver continues it, so one exchange can be followed across organisations.
        "trace": stored.get("trace").cloned().unwrap_or(Value::Null),
        "sent_at": crate::audit::writer::format_time(m.created_ms),
        "redelivery": row.fetch_count > 0,
        "disclosure": disclosure_json(&Receipt { log_id: m.log_id.clone(), seq: m.seq, leaf_hash: m.leaf_hash }),
    });
    // One recipient's part of a kerngroep case (P13) names the case, so the recipients can discuss it as one.
    if let (Some(case_id), Some(item)) = (stored.get("case_id"), message.as_object_mut()) {
        item.insert("case_id".into(), case_id.clone());
    }
    Ok((message, lapsed))
}

/// The inbox item's `retention`: the receiver's period as the flow set it when the message was sent (sealed with
/// the payload), and when the gateway drops its own copy if the message is not acknowledged.
fn retention_json(stored: Option<&Value>, expires_ms: i64) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(Value::Object(r)) = stored {
        for key in ["receiver", "receiver_days"] {
            if let Some(v) = r.get(key) {
                out.insert(key.into(), v.clone());
            }
        }
    }
    out.insert(
        "gateway_until".into(),
        crate::audit::writer::format_time(expires_ms).into(),
    );
    Value::Object(out)
}

pub async fn ack(gw: &Gateway, caller: &Caller, id: &str) -> Result<Value, Refusal> {
    for attempt in 0..RACE_ATTEMPTS {
        if attempt > 0 {
            race_pause(attempt).await;
        }
        let row = gw
            .store
            .message(id)
            .await
            .map_err(|e| Refusal::audit_unavailable().because(e))?;
        // Also the answer for the loser of two concurrent acknowledgements: the message is gone.
        let Some(row) = row.filter(|r| r.msg.receiver == caller.id()) else {
            return Err(Refusal::not_found("no message with this id in your inbox"));
        };
        let entry = stored_message_entry(gw, caller, EventKind::MessageAcknowledged, &row);
        let appended = gw
            .writer
            .append(
                vec![entry],
                vec![Mutation::DeleteMessage {
                    id: row.msg.id.clone(),
                    end: MessageEnd::Acknowledged,
                    at_ms: crate::audit::writer::now_ms(),
                    unfetched_only: false,
                }],
            )
            .await;
        let receipts = match appended {
            Ok(r) => r,
            Err(AuditError::Conflict(_)) => continue,
            Err(e) => return Err(Refusal::audit_unavailable().because(e)),
        };
        let receipt = receipts.first().ok_or_else(Refusal::internal)?;
        return Ok(json!({
            "message_id": row.msg.id,
            "acknowledged": true,
            "purged": true,
            "disclosure": disclosure_json(receipt),
        }));
    }
    Err(busy())
}

/// The entry about a stored message (its fetch or acknowledgement): the flow as the running policy names it, the
/// pupil's pseudonym, sender, receiver, type and purpose; never a value.
fn stored_message_entry(
    gw: &Gateway,
    caller: &Caller,
    event: EventKind,
    row: &StoredMessage,
) -> LogEntry {
    let mut entry = gw.entry_for(caller, event);
    gw.describe_stored_flow(
        &mut entry,
        &row.msg.sender,
        &row.msg.receiver,
        &row.msg.purpose,
    );
    entry.message_id = Some(row.msg.id.clone());
    entry.subject = row.msg.subject.clone();
    entry.sender = Some(row.msg.sender.clone());
    entry.receiver = Some(row.msg.receiver.clone());
    entry.message_type = Some(row.msg.message_type.clone());
    entry.purpose = Some(row.msg.purpose.clone());
    entry
}

#[cfg(test)]
mod tests {
    use super::{lapse_reason, outgrown_consents};
    use serde_json::json;

    #[test]
    fn a_consent_outgrown_by_a_birthday_since_sending_lapses_at_fetch() {
        let stored = json!({"data": {}, "consent_counts_until": {"c-ouder": "2026-11-24", "c-kapot": "24-11-2026"}});
        // The last day it counts, it still counts; the day after, not; an unreadable date fails closed.
        assert_eq!(
            outgrown_consents(&stored, date!(2026 - 11 - 24)),
            vec!["c-kapot".to_string()]
        );
        let mut outgrown = outgrown_consents(&stored, date!(2026 - 11 - 25));
        outgrown.sort();
        assert_eq!(outgrown, vec!["c-kapot".to_string(), "c-ouder".to_string()]);
        assert!(outgrown_consents(&json!({"data": {}}), date!(2030 - 01 - 01)).is_empty());
    }

    use crate::domain::{ConsentRecord, GivenBy};
    use time::macros::date;

    fn consent(withdrawn: bool) -> ConsentRecord {
        ConsentRecord {
            consent_id: "c1".into(),
            registered_by: "obs-de-linde".into(),
            purpose: "vroegsignalering".into(),
            recipient: "wijkteam-noord".into(),
            categories: vec!["*".into()],
            given_by: GivenBy::Ouder,
            subject_birth_date: None,
            valid_from: date!(2026 - 11 - 01),
            valid_until: date!(2027 - 07 - 31),
            withdrawn,
        }
    }

    #[test]
    fn a_lapsed_consent_is_named_for_why_it_lapsed() {
        let c = consent(false);
        assert_eq!(lapse_reason(Some(&c), date!(2026 - 11 - 01)), None);
        assert_eq!(lapse_reason(Some(&c), date!(2027 - 07 - 31)), None);
        assert_eq!(
            lapse_reason(Some(&c), date!(2027 - 08 - 01)),
            Some("consent-expired")
        );
        assert_eq!(
            lapse_reason(Some(&c), date!(2026 - 10 - 31)),
            Some("consent-not-yet-valid")
        );
        assert_eq!(
            lapse_reason(Some(&consent(true)), date!(2026 - 12 - 01)),
            Some("consent-withdrawn")
        );
        assert_eq!(
            lapse_reason(Some(&consent(true)), date!(2027 - 08 - 01)),
            Some("consent-withdrawn")
        );
        assert_eq!(
            lapse_reason(None, date!(2026 - 12 - 01)),
            Some("consent-missing")
        );
    }
}
