//! `POST /v1/messages`: the named phases a message passes through, in order.
//!
//! identity → rate limit → body (all in `http`) → idempotency → parse → bind the receiver → identify the flow →
//! case (the receiver bound to the pupil's case, the message answered) → consents → decide → seal → log (durable,
//! together with the mailbox row) → answer.
//! Each phase is a function with its own error; `send` turns a phase's error into a `Stop` and `refuse` is the one
//! place a refused message is logged. Nothing reaches a mailbox unless its disclosure entry is committed in the same
//! transaction. No phase may put a payload value in a log entry, an error or a trace.
//!
//! Which stops are logged: every refusal of the caller's request (4xx) from the body phase on, as `message-refused`
//! with its code (the 409s of an Idempotency-Key included). The gateway's own failures (5xx: the store or the log
//! cannot be used, an internal error) are not refusals and write no entry; the log may be what failed. Refusals before
//! the body (identity, revocation, quotas) are not logged: no partner is established yet, or logging them would let a
//! flood write the log (`http`).

use super::{disclosure_json, new_id};
use crate::audit::entry::{ActorRef, EventKind, LogEntry, ReceiverRetention, WithheldField};
use crate::audit::writer::{now_ms, AuditError, Receipt};
use crate::domain::{ConsentRecord, Partner};
use crate::envelope::{self, Addressing, Envelope, EnvelopeError};
use crate::gateway::Gateway;
use crate::identity::{Caller, PartnerInfo};
use crate::keys::KeyError;
use crate::policy::{self, Decision, DecisionRequest, Delivered, PolicySet};
use crate::refusal::{ProblemCode, Refusal};
use crate::store::{IdempotencyRecord, Mutation, NewMessage, StoreError};
use ring::digest;
use serde_json::Value;
use std::sync::Arc;

/// The outcome the HTTP layer turns into a response: 201 for a new message, 200 for an idempotent replay, and the
/// JSON body, serialised.
pub struct Sent {
    pub replayed: bool,
    pub body: Vec<u8>,
}

/// Why a send ended before its 201.
pub(super) enum Stop {
    /// The caller's request is refused: logged by `refuse` (with what is known of the message), then answered.
    Refused(Refusal),
    /// Refused, and its entries already written (a kerngroep case refused for every recipient, one entry each).
    Logged(Refusal),
    /// The gateway failed (store, log, keys): answered 5xx without a refusal entry.
    Failed(Refusal),
    /// An Idempotency-Key seen before with the same body: the first result again.
    Replayed(Sent),
}

impl From<EnvelopeError> for Stop {
    fn from(e: EnvelopeError) -> Stop {
        Stop::Refused(Refusal::new(e.code(), e.detail().to_owned()))
    }
}

impl From<policy::Refusal> for Stop {
    fn from(r: policy::Refusal) -> Stop {
        Stop::Refused(r.into())
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Stop {
        Stop::Failed(Refusal::audit_unavailable().because(e))
    }
}

impl From<KeyError> for Stop {
    fn from(e: KeyError) -> Stop {
        Stop::Failed(Refusal::internal().because(e))
    }
}

impl From<serde_json::Error> for Stop {
    fn from(e: serde_json::Error) -> Stop {
        Stop::Failed(Refusal::internal().because(e))
    }
}

/// The body phase failed in the HTTP layer (size, deadline, unreadable): log the refusal like any other.
pub async fn refuse_body(gw: &Gateway, caller: &Caller, r: Refusal) -> Refusal {
    refuse(gw, caller, r, None, None).await
}

/// Runs the phases of one message. `idempotency_key` is the header's raw bytes, if the request had one.
pub async fn send(
    gw: &Arc<Gateway>,
    caller: &Caller,
    idempotency_key: Option<&[u8]>,
    body: &[u8],
) -> Result<Sent, Refusal> {
    let mut env = None;
    let mut subject_key = None;
    let result = phases(
        gw,
        caller,
        idempotency_key,
        body,
        &mut env,
        &mut subject_key,
    )
    .await;
    match result {
        Ok(sent) | Err(Stop::Replayed(sent)) => Ok(sent),
        Err(Stop::Refused(r)) => {
            Err(refuse(gw, caller, r, env.as_ref(), subject_key.as_deref()).await)
        }
        Err(Stop::Logged(r)) => Err(r),
        Err(Stop::Failed(r)) => {
            gw.metrics.refusal(r.code.as_str());
            Err(r)
        }
    }
}

async fn phases<'b>(
    gw: &Arc<Gateway>,
    caller: &Caller,
    idempotency_key: Option<&[u8]>,
    body: &'b [u8],
    parsed: &mut Option<Envelope<'b>>,
    pupil: &mut Option<String>,
) -> Result<Sent, Stop> {
    let idempotency = claim_idempotency(gw, caller, idempotency_key, body).await?;
    let env = parsed.insert(parse(gw, body)?);
    *pupil = match (&env.subject, &env.subject_message) {
        (Some(s), _) => Some(gw.keys.subject_pseudonym(s.number())),
        (None, Some(id)) => Some(pupil_of_message(gw, caller, id).await?),
        (None, None) => None,
    };
    let to = match &env.to {
        Addressing::One(to) => to,
        Addressing::Kerngroep {
            recipients,
            case_id,
        } => {
            let case = super::kerngroep::Case {
                recipients,
                case_id,
                pupil: pupil.as_deref(),
            };
            return super::kerngroep::send(gw, caller, idempotency, env, case).await;
        }
    };
    let receiver = bind_receiver(gw, to)?;
    let policies = gw.policy();
    // The flow is named by `decide`'s outcome (or its refusal's log entry): a flow that is not written does not exist,
    // and `decide` refuses it.
    if let Some(flow) = identify_flow(&policies, caller.partner(), &receiver.partner, &env.purpose)
    {
        if flow.kerngroep {
            return Err(Stop::Refused(Refusal::new(
                ProblemCode::InvalidEnvelope,
                format!(
                    "flow {}: purpose `{}` is a kerngroep case: name its recipients in `recipients`, with a `case_id`",
                    flow.id, flow.purpose
                ),
            )));
        }
        // An anonymous consultation (P12) is logged and stored without any pupil pseudonym, also when the sender
        // named a pupil after all (`decide` refuses that message).
        if flow.anonymous {
            *pupil = None;
        }
        if let Some(from_reference) =
            bind_case(gw, flow, caller, &receiver, env, pupil.as_deref()).await?
        {
            pupil.get_or_insert(from_reference);
        }
    }
    let subject_key = pupil.clone();
    let consents = consents(gw, subject_key.as_deref()).await?;
    let decision = decide(gw, &policies, caller, &receiver.partner, env, &consents)?;
    let message_id = new_id();
    let sealed = seal(gw, caller, &message_id, env, &decision)?;
    let mut entry = gw.entry_for(caller, EventKind::MessageDisclosed);
    describe_message(&mut entry, env, &receiver.partner);
    entry.message_id = Some(message_id.clone());
    entry.subject = subject_key.clone();
    apply_decision(&mut entry, &decision);
    entry.payload_digest = Some(sealed.digest);
    // The sender is told exactly what the log entry records.
    let response = serde_json::to_vec(&SentBody {
        message_id: &message_id,
        flow: &decision.flow_id,
        delivered: &entry.delivered,
        withheld: &entry.withheld,
        suppressed_cells: &decision.suppressed_cells,
    })?;
    let mut mutations = vec![mailbox_row(
        caller,
        &receiver.partner,
        env,
        &message_id,
        subject_key,
        sealed.bytes,
        &decision,
    )?];
    mutations.extend(queue_push(&receiver, &message_id, now_ms()));
    if let Some(claim) = &idempotency {
        mutations.push(claim.record(caller, response.clone()));
    }
    let receipt = log(gw, caller, idempotency.as_ref(), vec![entry], mutations)
        .await?
        .swap_remove(0);
    if receiver.push.is_some() {
        gw.push_wake.notify_one();
    }
    gw.metrics.disclosure(&decision.flow_id);
    answer(response, &receipt, false)
}

/// The push of a new message to a receiver with a push endpoint (partners.toml), queued in the commit of its
/// disclosure entry so it survives a restart (`push`).
pub fn queue_push(receiver: &PartnerInfo, message_id: &str, at_ms: i64) -> Option<Mutation> {
    receiver.push.as_ref().map(|_| Mutation::QueuePush {
        id: message_id.to_owned(),
        receiver: receiver.partner.id.clone(),
        at_ms,
    })
}

/// The receiver's mailbox row of a sealed message; the writer stamps it with its entry's log position.
pub(super) fn mailbox_row(
    caller: &Caller,
    receiver: &Partner,
    env: &Envelope<'_>,
    message_id: &str,
    subject_key: Option<String>,
    sealed: Vec<u8>,
    decision: &Decision,
) -> Result<Mutation, Stop> {
    let created_ms = now_ms();
    // The gateway's own period, not the receiver's: past it the payload is purged (`retention`).
    let retention_ms = i64::from(decision.retention.gateway_days.max(1)) * 86_400_000;
    Ok(Mutation::InsertMessage(Box::new(NewMessage {
        id: message_id.to_owned(),
        sender: caller.id().to_owned(),
        receiver: receiver.id.clone(),
        message_type: env.message_type.clone(),
        purpose: env.purpose.clone(),
        subject: subject_key,
        sealed,
        consent_paths: serde_json::to_string(&decision.consent_dependent())?,
        created_ms,
        expires_ms: created_ms.saturating_add(retention_ms),
        log_id: String::new(),
        seq: 0,
        leaf_hash: [0; 32],
    })))
}

/// Phase idempotency: a resend with the same key and body returns the first result; the claim is held (in memory,
/// per instance) until the request ends.
async fn claim_idempotency(
    gw: &Arc<Gateway>,
    caller: &Caller,
    header: Option<&[u8]>,
    body: &[u8],
) -> Result<Option<IdempotencyClaim>, Stop> {
    let Some(raw) = header else {
        return Ok(None);
    };
    let key = std::str::from_utf8(raw)
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 200 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            Stop::Refused(Refusal::new(
                ProblemCode::InvalidIdempotencyKey,
                "Idempotency-Key must be 1 to 200 visible ASCII characters",
            ))
        })?;
    let body_hash = hex::encode(digest::digest(&digest::SHA256, body));
    let guard = InFlight::claim(gw, caller.id(), key).ok_or_else(|| {
        Stop::Refused(Refusal::new(
            ProblemCode::IdempotencyKeyInUse,
            "a request with this Idempotency-Key is still being processed",
        ))
    })?;
    if let Some(prev) = gw.store.idempotency(caller.id(), key).await? {
        return Err(replay(gw, prev, &body_hash).await);
    }
    Ok(Some(IdempotencyClaim {
        key: key.to_owned(),
        body_hash,
        _guard: guard,
    }))
}

pub(super) struct IdempotencyClaim {
    pub(super) key: String,
    pub(super) body_hash: String,
    _guard: InFlight,
}

impl IdempotencyClaim {
    /// The record of this key's first result (201 and its body without log positions), committed with the message.
    pub(super) fn record(&self, caller: &Caller, response: Vec<u8>) -> Mutation {
        Mutation::InsertIdempotency(IdempotencyRecord {
            sender: caller.id().to_owned(),
            key: self.key.clone(),
            body_hash: self.body_hash.clone(),
            status: 201,
            response,
            log_id: String::new(),
            seq: 0,
            leaf_hash: [0; 32],
        })
    }
}

/// Phase parse: the strict envelope parse (400 malformed, 422 invalid).
fn parse<'b>(gw: &Gateway, body: &'b [u8]) -> Result<Envelope<'b>, EnvelopeError> {
    let limits = envelope::Limits {
        max_depth: gw.config.limits.max_json_depth,
        ..envelope::Limits::default()
    };
    envelope::parse(body, &limits)
}

/// Phase receiver: `to` must name a partner of this gateway.
fn bind_receiver(gw: &Gateway, to: &str) -> Result<Arc<PartnerInfo>, Stop> {
    gw.partners.by_id(to).cloned().ok_or_else(|| {
        Stop::Refused(Refusal::new(
            ProblemCode::UnknownReceiver,
            "the receiver named in 'to' is not a partner of this gateway",
        ))
    })
}

/// Phase flow: the written flow for (sender role, receiver role, purpose), if there is one.
pub(super) fn identify_flow<'p>(
    policies: &'p PolicySet,
    sender: &Partner,
    receiver: &Partner,
    purpose: &str,
) -> Option<&'p policy::Flow> {
    policies.find_flow(sender.role, receiver.role, purpose)
}

/// Phase case: the receiver must be the organisation responsible for this pupil (`policy::bind_receiver`, pure),
/// from `partners.toml` and, for a reply, the disclosure it answers as the log recorded it (the mailbox row is gone
/// once acknowledged). A message id the sender was not party to is treated as unknown: the answer never says
/// whether another organisation's message exists. Returns the pupil (keyed pseudonym) of the message answered.
pub(super) async fn bind_case(
    gw: &Gateway,
    flow: &policy::Flow,
    caller: &Caller,
    receiver: &PartnerInfo,
    env: &Envelope<'_>,
    subject_key: Option<&str>,
) -> Result<Option<String>, Stop> {
    let answered = match (&env.in_reply_to, &flow.receiver) {
        (Some(id), Some(b)) if b.refers() => gw
            .store
            .disclosure_of_message(id)
            .await?
            .filter(|e| e.event == EventKind::MessageDisclosed.as_str())
            .filter(|e| {
                e.sender.as_deref() == Some(caller.id())
                    || e.receiver.as_deref() == Some(caller.id())
            }),
        _ => None,
    };
    // A follow-up (P8) never follows a message its sender recalled or its receiver reported misaddressed; a row that
    // cannot be found counts as such (fail closed).
    let withdrawn = match (&answered, &env.in_reply_to, &flow.receiver) {
        (Some(_), Some(id), Some(policy::ReceiverBinding::Follows)) => gw
            .store
            .outbox_message(id)
            .await?
            .is_none_or(|row| matches!(row.status.as_str(), "recalled" | "misaddressed")),
        _ => false,
    };
    let facts = policy::CaseFacts {
        sender: caller.partner(),
        sender_responsible: &caller.info.responsible,
        receiver: &receiver.partner,
        receiver_responsible: &receiver.responsible,
        data: &env.data,
        in_reply_to: env.in_reply_to.is_some(),
        reference: answered.as_ref().map(|e| policy::Reference {
            sender: e.sender.as_deref().unwrap_or_default(),
            receiver: e.receiver.as_deref().unwrap_or_default(),
            flow_id: e.flow_id.as_deref(),
            subject: e.subject.as_deref(),
            withdrawn,
        }),
        subject: subject_key,
    };
    policy::bind_receiver(flow, &facts)?;
    Ok(answered.and_then(|e| e.subject))
}

/// The pupil (keyed pseudonym) of a message the caller received, named by `subject.message_id`; 404 as for a message
/// that does not exist when the caller did not receive it, never saying whether it exists.
async fn pupil_of_message(gw: &Gateway, caller: &Caller, id: &str) -> Result<String, Stop> {
    let entry = gw
        .store
        .disclosure_of_message(id)
        .await
        .map_err(|e| Stop::Failed(Refusal::audit_unavailable().because(e)))?;
    let received = entry
        .filter(|e| e.receiver.as_deref() == Some(caller.id()))
        .and_then(|e| e.subject);
    received.ok_or_else(|| {
        Stop::Refused(Refusal::new(
            ProblemCode::UnknownReference,
            "`subject.message_id` names no message about one pupil that you received",
        ))
    })
}

/// Phase consents: the pupil's consent records (only the keyed pseudonym ever reaches the store).
pub(super) async fn consents(
    gw: &Gateway,
    subject_key: Option<&str>,
) -> Result<Vec<ConsentRecord>, StoreError> {
    Ok(match subject_key {
        Some(k) => gw
            .store
            .consents_for_subject(k)
            .await?
            .iter()
            .filter_map(super::consent_record)
            .collect(),
        None => Vec::new(),
    })
}

/// Phase decide: the pure policy decision.
pub(super) fn decide(
    gw: &Gateway,
    policies: &PolicySet,
    caller: &Caller,
    receiver: &Partner,
    env: &Envelope<'_>,
    consents: &[ConsentRecord],
) -> Result<Decision, policy::Refusal> {
    let request = DecisionRequest {
        sender: caller.partner(),
        receiver,
        message_type: &env.message_type,
        purpose: &env.purpose,
        subject: env.subject.as_ref(),
        justification: env.justification.as_deref(),
        data: &env.data,
        consents,
        today: time::OffsetDateTime::now_utc().date(),
        pseudonym_key: gw.keys.pseudonym_secret(),
        sender_provides_jeugdhulp: caller.info.jeugdhulp,
        subject_by_message: env.subject_message.is_some(),
    };
    policy::decide(policies, &request)
}

pub(super) struct Sealed {
    pub(super) bytes: Vec<u8>,
    /// SHA-256 of the delivered payload before sealing (the log entry's `payload_digest`).
    pub(super) digest: String,
}

/// Phase seal: the delivered payload, encrypted for the receiver's mailbox with the message id as AAD.
pub(super) fn seal(
    gw: &Gateway,
    caller: &Caller,
    message_id: &str,
    env: &Envelope<'_>,
    d: &Decision,
) -> Result<Sealed, Stop> {
    let stored = StoredPayload {
        trace: caller.trace.as_ref().map(|t| StoredTrace {
            traceparent: t.traceparent(),
            fsc_transaction_id: &t.transaction_id,
        }),
        subject: &d.subject,
        actor: StoredActor {
            id: &env.actor.id,
            name: &env.actor.name,
            function: &env.actor.function,
        },
        justification: &env.justification,
        in_reply_to: &env.in_reply_to,
        case_id: env.to.case_id(),
        data: &d.delivered,
        retention: StoredRetention {
            receiver: &d.retention.receiver.text,
            receiver_days: d.retention.receiver.days,
        },
        consent_counts_until: d
            .consent_counts_until
            .iter()
            .map(|(id, last)| (id.as_str(), last.to_string()))
            .collect(),
    };
    let plaintext = serde_json::to_vec(&stored)?;
    let digest = hex::encode(digest::digest(&digest::SHA256, &plaintext));
    let bytes = gw.keys.seal(&plaintext, message_id.as_bytes())?;
    Ok(Sealed { bytes, digest })
}

/// Phase log: the disclosure entries, the mailbox rows (and the Idempotency-Key record) in one durable transaction;
/// a receipt per entry, in order.
pub(super) async fn log(
    gw: &Gateway,
    caller: &Caller,
    idempotency: Option<&IdempotencyClaim>,
    entries: Vec<LogEntry>,
    mutations: Vec<Mutation>,
) -> Result<Vec<Receipt>, Stop> {
    let n = entries.len();
    match gw.writer.append(entries, mutations).await {
        Ok(receipts) if receipts.len() == n && n > 0 => Ok(receipts),
        Ok(_) => Err(Stop::Failed(Refusal::internal())),
        Err(err) => {
            // Another instance committed the same Idempotency-Key first: answer with its result.
            if let (AuditError::Conflict(_), Some(claim)) = (&err, idempotency) {
                if let Ok(Some(prev)) = gw.store.idempotency(caller.id(), &claim.key).await {
                    return Err(replay(gw, prev, &claim.body_hash).await);
                }
            }
            Err(Stop::Failed(Refusal::audit_unavailable().because(err)))
        }
    }
}

/// Phase answer: the body with its log position.
fn answer(response: Vec<u8>, r: &Receipt, replayed: bool) -> Result<Sent, Stop> {
    Ok(Sent {
        replayed,
        body: with_disclosure(response, r).ok_or_else(|| Stop::Failed(Refusal::internal()))?,
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
fn with_disclosure(mut body: Vec<u8>, r: &Receipt) -> Option<Vec<u8>> {
    if body.pop() != Some(b'}') {
        return None;
    }
    if body.len() > 1 {
        body.push(b',');
    }
    body.extend_from_slice(b"\"disclosure\":");
    serde_json::to_writer(&mut body, &disclosure_json(r)).ok()?;
    body.push(b'}');
    Some(body)
}

/// The stored first result of an Idempotency-Key (200), or 409 when this body is not the first one's.
async fn replay(gw: &Gateway, prev: IdempotencyRecord, body_hash: &str) -> Stop {
    if prev.body_hash != body_hash {
        return Stop::Refused(Refusal::new(
            ProblemCode::IdempotencyKeyReused,
            "this Idempotency-Key was used before with a different body",
        ));
    }
    if super::kerngroep::is_case_answer(&prev.response) {
        return match super::kerngroep::replay(gw, prev).await {
            Ok(sent) => Stop::Replayed(sent),
            Err(stop) => stop,
        };
    }
    let receipt = Receipt {
        log_id: prev.log_id,
        seq: prev.seq,
        leaf_hash: prev.leaf_hash,
    };
    match answer(prev.response, &receipt, true) {
        Ok(sent) => Stop::Replayed(sent),
        Err(stop) => stop,
    }
}

/// What the receiver's mailbox row holds (sealed): serialised straight from the decision, without copying the
/// delivered tree into another `Value` first.
#[derive(serde::Serialize)]
struct StoredPayload<'a> {
    /// The sender's trace context (with the gateway's span of the send), passed on to the receiver on fetch.
    #[serde(skip_serializing_if = "Option::is_none")]
    trace: Option<StoredTrace<'a>>,
    subject: &'a Option<Value>,
    actor: StoredActor<'a>,
    justification: &'a Option<String>,
    /// The message this one answers or follows (P5, P6, P8, P11): the receiver sent or received it, so it knows the
    /// pupil even when the flow delivers no pupil number.
    #[serde(skip_serializing_if = "Option::is_none")]
    in_reply_to: &'a Option<String>,
    /// The kerngroep case (P13) the message is one recipient's part of.
    #[serde(skip_serializing_if = "Option::is_none")]
    case_id: Option<&'a str>,
    data: &'a Delivered,
    /// The receiver's retention period, delivered with the message (the inbox item's `retention`).
    retention: StoredRetention<'a>,
    /// Consent id → the last day it counts by the pupil's age (`Decision::consent_counts_until`); checked at fetch.
    /// Sealed, never in a plain column: it would tell the pupil's birthday.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    consent_counts_until: std::collections::BTreeMap<&'a str, String>,
}

#[derive(serde::Serialize)]
struct StoredTrace<'a> {
    traceparent: String,
    fsc_transaction_id: &'a str,
}

#[derive(serde::Serialize)]
struct StoredRetention<'a> {
    receiver: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    receiver_days: Option<u32>,
}

#[derive(serde::Serialize)]
struct StoredActor<'a> {
    id: &'a str,
    name: &'a str,
    function: &'a str,
}

/// The one place a refused message is logged (through `Gateway::log_refusal`), with what is known of it and without
/// any payload value; when even the refusal cannot be logged, the caller gets 503 instead.
async fn refuse(
    gw: &Gateway,
    caller: &Caller,
    r: Refusal,
    env: Option<&Envelope<'_>>,
    subject_key: Option<&str>,
) -> Refusal {
    let mut entry = gw.entry_for(caller, EventKind::MessageRefused);
    let policies = gw.policy();
    entry.policy_hash = Some(policies.hash().to_owned());
    if let Some(env) = env {
        let mut anonymous = false;
        let to = match &env.to {
            Addressing::One(to) => Some(to),
            Addressing::Kerngroep { case_id, .. } => {
                entry.case_id = Some(case_id.clone());
                None
            }
        };
        match to.and_then(|to| gw.partners.by_id(to)) {
            Some(receiver) => {
                describe_message(&mut entry, env, &receiver.partner);
                let flow =
                    identify_flow(&policies, caller.partner(), &receiver.partner, &env.purpose);
                entry.flow_id = flow.map(|flow| flow.id.clone());
                anonymous = flow.is_some_and(|flow| flow.anonymous);
            }
            None => {
                entry.message_type = Some(truncate(&env.message_type));
                entry.purpose = Some(truncate(&env.purpose));
                entry.actor = Some(actor_ref(env));
            }
        }
        // An anonymous consultation's refusal names no pupil either.
        entry.subject = subject_key.map(str::to_owned).or_else(|| {
            env.subject
                .as_ref()
                .map(|s| gw.keys.subject_pseudonym(s.number()))
        });
        if anonymous {
            entry.subject = None;
        }
    }
    entry.detail = Some(r.detail.clone());
    gw.log_refusal(entry, r).await
}

pub(super) fn describe_message(entry: &mut LogEntry, env: &Envelope<'_>, receiver: &Partner) {
    entry.sender = Some(entry.partner.clone());
    entry.receiver = Some(receiver.id.clone());
    entry.receiver_role = Some(receiver.role.as_str().to_owned());
    entry.message_type = Some(truncate(&env.message_type));
    entry.purpose = Some(truncate(&env.purpose));
    entry.actor = Some(actor_ref(env));
    entry.justification = env.justification.clone();
}

pub(super) fn actor_ref(env: &Envelope<'_>) -> ActorRef {
    ActorRef {
        id: env.actor.id.clone(),
        name: env.actor.name.clone(),
        function: env.actor.function.clone(),
    }
}

pub(super) fn apply_decision(entry: &mut LogEntry, d: &Decision) {
    entry.flow_id = Some(d.flow_id.clone());
    entry.processing_activity_id = d.processing_activity_id.clone();
    entry.policy_hash = Some(d.policy_hash.clone());
    entry.legal_basis = Some(d.legal_basis.clone());
    entry.agreement_id = d.agreement_id.clone();
    entry.receiver_retention = Some(ReceiverRetention {
        text: d.retention.receiver.text.clone(),
        days: d.retention.receiver.days,
    });
    entry.delivered = d.delivered_paths();
    entry.withheld = d
        .withheld()
        .into_iter()
        .map(|(field, reason)| WithheldField { field, reason })
        .collect();
    entry.consents = d.consents_used.clone();
}

/// Names partners choose (type, purpose) are kept short in the log; they are identifiers, not pupil data.
pub(super) fn truncate(s: &str) -> String {
    s.chars().take(100).collect()
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
