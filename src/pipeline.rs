//! `POST /v1/messages`: the named phases a message passes through, in order.
//!
//! identity → rate limit (both in `server`) → idempotency → envelope → receiver → consent lookup → policy →
//! seal → audit (durable, together with the mailbox row) → response.
//! Nothing reaches a mailbox unless its disclosure entry is committed in the same transaction; a refusal is logged
//! too. No phase may put a payload value in a log entry, an error or a trace.

use crate::audit::entry::{ActorRef, EventKind, LogEntry, WithheldField};
use crate::audit::writer::{now_ms, Receipt};
use crate::domain::ConsentRecord;
use crate::envelope::{self, Envelope};
use crate::gateway::Gateway;
use crate::identity::Caller;
use crate::policy::{self, Decision, DecisionRequest, Delivered};
use crate::problem::Problem;
use crate::store::{IdempotencyRecord, Mutation, NewMessage, StoredConsent};
use axum::http::StatusCode;
use ring::digest;
use serde_json::{json, Value};
use std::sync::Arc;

/// The outcome the HTTP layer turns into a response: the status and the JSON body, serialised.
pub struct Sent {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

pub async fn send(
    gw: &Arc<Gateway>,
    caller: &Caller,
    idempotency_key: Option<&str>,
    body: &[u8],
) -> Result<Sent, Problem> {
    // Phase: idempotency. A resend with the same key and body returns the first result.
    let body_hash = idempotency_key.map(|_| hex::encode(digest::digest(&digest::SHA256, body)));
    let _guard = match (idempotency_key, &body_hash) {
        (Some(key), Some(body_hash)) => {
            if key.is_empty() || key.len() > 200 || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(refuse(
                    gw,
                    caller,
                    Problem::bad_request(
                        "invalid-idempotency-key",
                        "Idempotency-Key must be 1 to 200 visible ASCII characters",
                    ),
                    None,
                )
                .await);
            }
            let claim = InFlight::claim(gw, caller.id(), key).ok_or_else(|| {
                Problem::new(
                    StatusCode::CONFLICT,
                    "idempotency-key-in-use",
                    "a request with this Idempotency-Key is still being processed",
                )
            })?;
            if let Some(prev) = gw
                .store
                .idempotency(caller.id(), key)
                .await
                .map_err(|_| Problem::audit_unavailable())?
            {
                return replay(prev, body_hash);
            }
            Some(claim)
        }
        _ => None,
    };

    // Phase: envelope.
    let limits = envelope::Limits {
        max_depth: gw.config.limits.max_json_depth,
        ..envelope::Limits::default()
    };
    let env = match envelope::parse(body, &limits) {
        Ok(env) => env,
        Err(e) => {
            let p = Problem::from_status(e.status(), e.code(), e.detail().to_owned());
            return Err(refuse(gw, caller, p, None).await);
        }
    };

    // Phase: receiver.
    let Some(receiver) = gw.partners.by_id(&env.to).cloned() else {
        let p = Problem::from_status(
            422,
            "unknown-receiver",
            "the receiver named in 'to' is not a partner of this gateway",
        );
        return Err(refuse(gw, caller, p, Some(&env)).await);
    };

    // Phase: consent lookup (only the keyed pseudonym ever reaches the store).
    let subject_key = env
        .subject
        .as_ref()
        .map(|s| gw.keys.subject_pseudonym(s.number()));
    let consents = match &subject_key {
        Some(k) => gw
            .store
            .consents_for_subject(k)
            .await
            .map_err(|_| Problem::audit_unavailable())?
            .iter()
            .filter_map(consent_record)
            .collect(),
        None => Vec::new(),
    };

    // Phase: policy (pure).
    let policies = gw.policy();
    let today = time::OffsetDateTime::now_utc().date();
    let request = DecisionRequest {
        sender: caller.partner(),
        receiver: &receiver.partner,
        message_type: &env.message_type,
        purpose: &env.purpose,
        subject: env.subject.as_ref(),
        justification: env.justification.as_deref(),
        data: &env.data,
        consents: &consents,
        today,
        pseudonym_key: gw.keys.pseudonym_secret(),
    };
    let decision = match policy::decide(&policies, &request) {
        Ok(d) => d,
        Err(r) => {
            let p = Problem::from_status(r.status, r.code, r.detail.clone());
            return Err(refuse(gw, caller, p, Some(&env)).await);
        }
    };

    // Phase: seal the delivered payload for the receiver's mailbox.
    let message_id = new_id();
    let stored = StoredPayload {
        subject: &decision.subject,
        actor: StoredActor {
            id: &env.actor.id,
            name: &env.actor.name,
            function: &env.actor.function,
        },
        justification: &env.justification,
        data: &decision.delivered,
    };
    let plaintext = serde_json::to_vec(&stored).map_err(|_| Problem::internal())?;
    let payload_digest = hex::encode(digest::digest(&digest::SHA256, &plaintext));
    let sealed = gw
        .keys
        .seal(&plaintext, message_id.as_bytes())
        .map_err(|_| Problem::internal())?;

    // Phase: audit + deliver, one transaction.
    let mut entry = gw.entry_for(caller, EventKind::MessageDisclosed);
    describe_message(&mut entry, &env, &receiver.partner);
    entry.message_id = Some(message_id.clone());
    entry.subject = subject_key.clone();
    apply_decision(&mut entry, &decision);
    entry.payload_digest = Some(payload_digest);
    let consent_paths: Vec<(String, String)> = decision.consent_dependent();
    let created_ms = now_ms();
    let retention_ms = i64::from(decision.retention_days.max(1)) * 86_400_000;
    // The sender is told exactly what the log entry records.
    let response = serde_json::to_vec(&SentBody {
        message_id: &message_id,
        flow: &decision.flow_id,
        delivered: &entry.delivered,
        withheld: &entry.withheld,
        suppressed_cells: &decision.suppressed_cells,
    })
    .map_err(|_| Problem::internal())?;
    let mut mutations = vec![Mutation::InsertMessage(Box::new(NewMessage {
        id: message_id.clone(),
        sender: caller.id().to_owned(),
        receiver: receiver.partner.id.clone(),
        message_type: env.message_type.clone(),
        purpose: env.purpose.clone(),
        subject: subject_key,
        sealed,
        consent_paths: serde_json::to_string(&consent_paths).map_err(|_| Problem::internal())?,
        created_ms,
        expires_ms: created_ms.saturating_add(retention_ms),
        log_id: String::new(),
        seq: 0,
        leaf_hash: [0; 32],
    }))];
    if let (Some(key), Some(body_hash)) = (idempotency_key, &body_hash) {
        mutations.push(Mutation::InsertIdempotency(IdempotencyRecord {
            sender: caller.id().to_owned(),
            key: key.to_owned(),
            body_hash: body_hash.clone(),
            status: 201,
            response: response.clone(),
            log_id: String::new(),
            seq: 0,
            leaf_hash: [0; 32],
        }));
    }
    let receipts = match gw.writer.append(vec![entry], mutations).await {
        Ok(r) => r,
        Err(err) => {
            // Another instance committed the same Idempotency-Key first: answer with its result.
            if let (crate::audit::writer::AuditError::Conflict(_), Some(key), Some(body_hash)) =
                (&err, idempotency_key, &body_hash)
            {
                if let Ok(Some(prev)) = gw.store.idempotency(caller.id(), key).await {
                    return replay(prev, body_hash);
                }
            }
            gw.metrics.refusal("audit-unavailable");
            return Err(Problem::audit_unavailable());
        }
    };
    let receipt = receipts.first().ok_or_else(Problem::internal)?;
    gw.metrics.disclosure(&decision.flow_id);
    Ok(Sent {
        status: StatusCode::CREATED,
        body: with_disclosure(response, receipt)?,
    })
}

/// The 201 body of `POST /v1/messages` without its `disclosure` member (what an Idempotency-Key record keeps).
#[derive(serde::Serialize)]
struct SentBody<'a> {
    message_id: &'a str,
    flow: &'a str,
    delivered: &'a [String],
    withheld: &'a [WithheldField],
    #[serde(skip_serializing_if = "<[usize]>::is_empty")]
    suppressed_cells: &'a [usize],
}

/// A serialised JSON object with `"disclosure": {log_id, seq, hash}` added as its last member.
fn with_disclosure(mut body: Vec<u8>, r: &Receipt) -> Result<Vec<u8>, Problem> {
    if body.pop() != Some(b'}') {
        return Err(Problem::internal());
    }
    if body.len() > 1 {
        body.push(b',');
    }
    body.extend_from_slice(b"\"disclosure\":");
    serde_json::to_writer(&mut body, &disclosure_json(r)).map_err(|_| Problem::internal())?;
    body.push(b'}');
    Ok(body)
}

fn replay(prev: IdempotencyRecord, body_hash: &str) -> Result<Sent, Problem> {
    if prev.body_hash != body_hash {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "idempotency-key-reused",
            "this Idempotency-Key was used before with a different body",
        ));
    }
    let receipt = Receipt {
        log_id: prev.log_id,
        seq: prev.seq,
        leaf_hash: prev.leaf_hash,
    };
    Ok(Sent {
        status: StatusCode::OK,
        body: with_disclosure(prev.response, &receipt)?,
    })
}

/// What the receiver's mailbox row holds (sealed): serialised straight from the decision, without copying the
/// delivered tree into another `Value` first.
#[derive(serde::Serialize)]
struct StoredPayload<'a> {
    subject: &'a Option<Value>,
    actor: StoredActor<'a>,
    justification: &'a Option<String>,
    data: &'a Delivered,
}

#[derive(serde::Serialize)]
struct StoredActor<'a> {
    id: &'a str,
    name: &'a str,
    function: &'a str,
}

pub fn disclosure_json(r: &Receipt) -> Value {
    json!({"log_id": r.log_id, "seq": r.seq, "hash": hex::encode(r.leaf_hash)})
}

/// Logs a refused message (without any payload value) and returns the problem to send; when even the refusal
/// cannot be logged, the caller gets 503 instead.
pub async fn refuse(
    gw: &Gateway,
    caller: &Caller,
    p: Problem,
    env: Option<&Envelope<'_>>,
) -> Problem {
    gw.metrics.refusal(p.code);
    let mut entry = gw.entry_for(caller, EventKind::MessageRefused);
    if let Some(env) = env {
        let receiver = gw.partners.by_id(&env.to).map(|r| r.partner.clone());
        match receiver {
            Some(r) => describe_message(&mut entry, env, &r),
            None => {
                entry.message_type = Some(truncate(&env.message_type));
                entry.purpose = Some(truncate(&env.purpose));
                entry.actor = Some(actor_ref(env));
            }
        }
        entry.subject = env
            .subject
            .as_ref()
            .map(|s| gw.keys.subject_pseudonym(s.number()));
    }
    let policies = gw.policy();
    entry.policy_hash = Some(policies.hash().to_owned());
    if let Some(env) = env {
        let receiver_role = gw.partners.by_id(&env.to).map(|r| r.partner.role);
        if let Some(flow) = receiver_role
            .and_then(|role| policies.find_flow(caller.partner().role, role, &env.purpose))
        {
            entry.flow_id = Some(flow.id.clone());
        }
    }
    entry.outcome = p.code.to_owned();
    entry.detail = Some(p.detail.clone());
    match gw.writer.append_one(entry).await {
        Ok(_) => p,
        Err(_) => Problem::audit_unavailable(),
    }
}

fn describe_message(entry: &mut LogEntry, env: &Envelope<'_>, receiver: &crate::domain::Partner) {
    entry.sender = Some(entry.partner.clone());
    entry.receiver = Some(receiver.id.clone());
    entry.receiver_role = Some(receiver.role.as_str().to_owned());
    entry.message_type = Some(truncate(&env.message_type));
    entry.purpose = Some(truncate(&env.purpose));
    entry.actor = Some(actor_ref(env));
    entry.justification = env.justification.clone();
}

fn actor_ref(env: &Envelope<'_>) -> ActorRef {
    ActorRef {
        id: env.actor.id.clone(),
        name: env.actor.name.clone(),
        function: env.actor.function.clone(),
    }
}

fn apply_decision(entry: &mut LogEntry, d: &Decision) {
    entry.flow_id = Some(d.flow_id.clone());
    entry.policy_hash = Some(d.policy_hash.clone());
    entry.legal_basis = Some(d.legal_basis.clone());
    entry.agreement_id = d.agreement_id.clone();
    entry.delivered = d.delivered_paths();
    entry.withheld = d
        .withheld()
        .into_iter()
        .map(|(field, reason)| WithheldField { field, reason })
        .collect();
    entry.consents = d.consents_used.clone();
}

/// Names partners choose (type, purpose) are kept short in the log; they are identifiers, not pupil data.
fn truncate(s: &str) -> String {
    s.chars().take(100).collect()
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

/// Releases an Idempotency-Key claim when the request ends, whatever its outcome.
struct InFlight {
    gw: Arc<Gateway>,
    key: (String, String),
}

impl InFlight {
    fn claim(gw: &Arc<Gateway>, sender: &str, key: &str) -> Option<InFlight> {
        let k = (sender.to_owned(), key.to_owned());
        let mut set = gw.in_flight.lock().expect("in-flight set");
        if !set.insert(k.clone()) {
            return None;
        }
        Some(InFlight {
            gw: gw.clone(),
            key: k,
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut set) = self.gw.in_flight.lock() {
            set.remove(&self.key);
        }
    }
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
