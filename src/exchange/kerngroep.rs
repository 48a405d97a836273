//! A kerngroep case (P13): one message, sent with `recipients` and a `case_id`, that each recipient receives under
//! its own flow for the purpose (leerplicht under the Leerplichtwet, the SWV under its task, the wijkteam only with
//! consent), so the recipients get different field sets.
//!
//! Each recipient passes the phases of `send` on its own (flow, case, decide, seal); a recipient that is refused gets
//! nothing and a `message-refused` entry, the others their message. All recipients' entries and mailbox rows are
//! appended as one job: one transaction, all or none. When no recipient may receive anything the sender gets one
//! refusal (and each recipient's refusal entry). Every entry carries the case id, so the privacy officer finds the
//! case with one filter. Nothing here may deliver to a recipient under another recipient's flow, or put a payload
//! value in an entry, an error or a trace.

use super::send::{self, IdempotencyClaim, Sent, Stop};
use super::{disclosure_json, new_id};
use crate::audit::entry::{EventKind, LogEntry, WithheldField};
use crate::audit::writer::{now_ms, Receipt};
use crate::envelope::Envelope;
use crate::gateway::Gateway;
use crate::identity::{Caller, PartnerInfo};
use crate::policy::{Decision, PolicySet};
use crate::refusal::{ProblemCode, Refusal};
use crate::store::IdempotencyRecord;
use serde_json::Value;
use std::sync::Arc;

/// What the envelope says about the case.
pub(super) struct Case<'a> {
    pub recipients: &'a [String],
    pub case_id: &'a str,
    /// The pupil's keyed pseudonym, when the envelope names one.
    pub pupil: Option<&'a str>,
}

/// One recipient's part of the case.
enum Part {
    Delivered {
        receiver: Arc<PartnerInfo>,
        decision: Box<Decision>,
        message_id: String,
    },
    Refused {
        receiver: Arc<PartnerInfo>,
        flow_id: Option<String>,
        refusal: Refusal,
    },
}

impl Part {
    fn receiver(&self) -> &PartnerInfo {
        match self {
            Part::Delivered { receiver, .. } | Part::Refused { receiver, .. } => receiver,
        }
    }
}

/// Sends a kerngroep case: 201 with each recipient's part when at least one recipient receives something.
pub(super) async fn send(
    gw: &Arc<Gateway>,
    caller: &Caller,
    idempotency: Option<IdempotencyClaim>,
    env: &Envelope<'_>,
    case: Case<'_>,
) -> Result<Sent, Stop> {
    let mut receivers = Vec::with_capacity(case.recipients.len());
    for (i, id) in case.recipients.iter().enumerate() {
        let receiver = gw.partners.by_id(id).cloned().ok_or_else(|| {
            Stop::Refused(Refusal::new(
                ProblemCode::UnknownReceiver,
                format!("`recipients[{i}]` is not a partner of this gateway: nothing was sent to anyone"),
            ))
        })?;
        receivers.push(receiver);
    }
    let policies = gw.policy();
    let consents = send::consents(gw, case.pupil).await?;
    let mut parts = Vec::with_capacity(receivers.len());
    for receiver in receivers {
        parts.push(part(gw, &policies, caller, receiver, env, &case, &consents).await?);
    }
    if parts.iter().all(|p| matches!(p, Part::Refused { .. })) {
        return Err(refuse_all(gw, caller, env, &case, parts).await);
    }

    let mut entries = Vec::with_capacity(parts.len());
    let mut mutations = Vec::with_capacity(parts.len() + 1);
    for p in &parts {
        let mut entry = entry(gw, caller, env, &case, p);
        if let Part::Delivered {
            receiver,
            decision,
            message_id,
        } = p
        {
            let sealed = send::seal(gw, caller, message_id, env, decision)?;
            entry.payload_digest = Some(sealed.digest);
            mutations.push(send::mailbox_row(
                caller,
                &receiver.partner,
                env,
                message_id,
                case.pupil.map(str::to_owned),
                sealed.bytes,
                decision,
            )?);
            mutations.extend(send::queue_push(receiver, message_id, now_ms()));
        }
        entries.push(entry);
    }
    let response = serde_json::to_vec(&answer_body(&case, &parts, &entries))?;
    if let Some(claim) = &idempotency {
        mutations.push(claim.record(caller, response.clone()));
    }
    let receipts = send::log(gw, caller, idempotency.as_ref(), entries, mutations).await?;
    if parts
        .iter()
        .any(|p| matches!(p, Part::Delivered { receiver, .. } if receiver.push.is_some()))
    {
        gw.push_wake.notify_one();
    }
    for p in &parts {
        match p {
            Part::Delivered { decision, .. } => gw.metrics.disclosure(&decision.flow_id),
            Part::Refused { refusal, .. } => gw.metrics.refusal(refusal.code.as_str()),
        }
    }
    with_positions(response, &receipts, false)
}

/// One recipient through the phases of `send`: its own kerngroep flow, the receiver bound to the case, the decision.
/// A refusal is this recipient's; only the gateway's own failure stops the whole case.
async fn part(
    gw: &Gateway,
    policies: &PolicySet,
    caller: &Caller,
    receiver: Arc<PartnerInfo>,
    env: &Envelope<'_>,
    case: &Case<'_>,
    consents: &[crate::domain::ConsentRecord],
) -> Result<Part, Stop> {
    let refused = |receiver, flow_id, refusal| {
        Ok(Part::Refused {
            receiver,
            flow_id,
            refusal,
        })
    };
    let Some(flow) =
        send::identify_flow(policies, caller.partner(), &receiver.partner, &env.purpose)
            .filter(|f| f.kerngroep)
    else {
        let r = Refusal::new(
            ProblemCode::NoPolicy,
            format!(
                "no kerngroep flow allows {} → {} for this purpose",
                caller.partner().role,
                receiver.partner.role
            ),
        );
        return refused(receiver, None, r);
    };
    match send::bind_case(gw, flow, caller, &receiver, env, case.pupil).await {
        Ok(_) => {}
        Err(Stop::Refused(r)) => return refused(receiver, Some(flow.id.clone()), r),
        Err(other) => return Err(other),
    }
    match send::decide(gw, policies, caller, &receiver.partner, env, consents) {
        Ok(decision) => Ok(Part::Delivered {
            receiver,
            decision: Box::new(decision),
            message_id: new_id(),
        }),
        Err(r) => refused(receiver, Some(flow.id.clone()), r.into()),
    }
}

/// The entry of one recipient's part: its disclosure, or its refusal with the code and detail.
fn entry(gw: &Gateway, caller: &Caller, env: &Envelope<'_>, case: &Case<'_>, p: &Part) -> LogEntry {
    let event = match p {
        Part::Delivered { .. } => EventKind::MessageDisclosed,
        Part::Refused { .. } => EventKind::MessageRefused,
    };
    let mut entry = gw.entry_for(caller, event);
    send::describe_message(&mut entry, env, &p.receiver().partner);
    entry.case_id = Some(case.case_id.to_owned());
    entry.subject = case.pupil.map(str::to_owned);
    match p {
        Part::Delivered {
            decision,
            message_id,
            ..
        } => {
            entry.message_id = Some(message_id.clone());
            send::apply_decision(&mut entry, decision);
        }
        Part::Refused {
            flow_id, refusal, ..
        } => {
            entry.flow_id = flow_id.clone();
            entry.outcome = refusal.code.as_str().to_owned();
            entry.detail = Some(refusal.detail.clone());
        }
    }
    entry
}

/// No recipient may receive anything: each recipient's refusal entry, appended together, and one refusal for the
/// sender: the recipients' common code, else `no-recipient-may-receive` naming each recipient's code.
async fn refuse_all(
    gw: &Gateway,
    caller: &Caller,
    env: &Envelope<'_>,
    case: &Case<'_>,
    parts: Vec<Part>,
) -> Stop {
    let entries: Vec<LogEntry> = parts
        .iter()
        .map(|p| entry(gw, caller, env, case, p))
        .collect();
    let refusals: Vec<(&str, &Refusal)> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Refused {
                receiver, refusal, ..
            } => Some((receiver.partner.id.as_str(), refusal)),
            Part::Delivered { .. } => None,
        })
        .collect();
    let each = refusals
        .iter()
        .map(|(id, r)| format!("{id}: {} ({})", r.code, r.detail))
        .collect::<Vec<_>>()
        .join("; ");
    let first = refusals[0].1.code;
    let refusal = if refusals.iter().all(|(_, r)| r.code == first) {
        Refusal::new(
            first,
            format!("no recipient of the kerngroep case may receive this message: {each}"),
        )
    } else {
        Refusal::new(
            ProblemCode::NoRecipientMayReceive,
            format!("no recipient of the kerngroep case may receive this message: {each}"),
        )
    };
    for (_, r) in &refusals {
        gw.metrics.refusal(r.code.as_str());
    }
    match gw.writer.append(entries, Vec::new()).await {
        Ok(_) => Stop::Logged(refusal),
        Err(e) => Stop::Failed(Refusal::audit_unavailable().because(e)),
    }
}

/// The 201 body without log positions (what an Idempotency-Key record keeps): per recipient, in the sender's order,
/// exactly what its entry records.
fn answer_body<'a>(case: &'a Case<'_>, parts: &'a [Part], entries: &'a [LogEntry]) -> CaseBody<'a> {
    CaseBody {
        case_id: case.case_id,
        recipients: parts
            .iter()
            .zip(entries)
            .map(|(p, e)| match p {
                Part::Delivered {
                    receiver,
                    decision,
                    message_id,
                } => RecipientBody {
                    to: &receiver.partner.id,
                    message_id: Some(message_id),
                    flow: Some(&decision.flow_id),
                    delivered: &e.delivered,
                    withheld: &e.withheld,
                    refused: None,
                },
                Part::Refused {
                    receiver,
                    flow_id,
                    refusal,
                } => RecipientBody {
                    to: &receiver.partner.id,
                    message_id: None,
                    flow: flow_id.as_deref(),
                    delivered: &[],
                    withheld: &[],
                    refused: Some(RefusedBody {
                        code: refusal.code.as_str(),
                        status: refusal.code.status(),
                        detail: &refusal.detail,
                    }),
                },
            })
            .collect(),
    }
}

#[derive(serde::Serialize)]
struct CaseBody<'a> {
    case_id: &'a str,
    recipients: Vec<RecipientBody<'a>>,
}

#[derive(serde::Serialize)]
struct RecipientBody<'a> {
    to: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<&'a str>,
    delivered: &'a [String],
    withheld: &'a [WithheldField],
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<RefusedBody<'a>>,
}

#[derive(serde::Serialize)]
struct RefusedBody<'a> {
    code: &'a str,
    status: u16,
    detail: &'a str,
}

/// Whether a stored first result is a kerngroep case's (its body starts with the case id).
pub(super) fn is_case_answer(response: &[u8]) -> bool {
    response.starts_with(br#"{"case_id":"#)
}

/// The first result of an Idempotency-Key again: the entries of one job are consecutive, so each recipient's
/// position follows from the first and the log's leaf hashes.
pub(super) async fn replay(gw: &Gateway, prev: IdempotencyRecord) -> Result<Sent, Stop> {
    let n = serde_json::from_slice::<Value>(&prev.response)?["recipients"]
        .as_array()
        .map_or(0, Vec::len) as u64;
    let hashes = gw
        .store
        .leaf_hashes(&prev.log_id, prev.seq..prev.seq + n)
        .await?;
    let receipts: Vec<Receipt> = hashes
        .into_iter()
        .zip(prev.seq..)
        .map(|(leaf_hash, seq)| Receipt {
            log_id: prev.log_id.clone(),
            seq,
            leaf_hash,
        })
        .collect();
    with_positions(prev.response, &receipts, true)
}

/// The body with each recipient's `disclosure`: the position of its entry (its disclosure, or its refusal).
fn with_positions(response: Vec<u8>, receipts: &[Receipt], replayed: bool) -> Result<Sent, Stop> {
    let mut body: Value = serde_json::from_slice(&response)?;
    let items = body["recipients"]
        .as_array_mut()
        .filter(|items| items.len() == receipts.len())
        .ok_or_else(|| Stop::Failed(Refusal::internal()))?;
    for (item, r) in items.iter_mut().zip(receipts) {
        if let Some(obj) = item.as_object_mut() {
            obj.insert("disclosure".into(), disclosure_json(r));
        }
    }
    Ok(Sent {
        replayed,
        body: serde_json::to_vec(&body)?,
    })
}
