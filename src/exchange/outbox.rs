//! What e-mail cannot do: the sender's outbox (`/v1/outbox`), a recall before the receiver fetched the message, and
//! the receiver's "niet voor ons" report (`/v1/inbox/{id}/misaddressed`).
//!
//! A recall and a report purge the payload at once, in the transaction of their log entry, and the sender's outbox
//! says how the message ended. A report, and a recall because of a wrong receiver or pupil, open an incident in the
//! breach register of the sender's organisation in that same transaction (`oversight::incidents`). The outbox shows
//! field paths and times, never a payload value; another partner's message is answered with 404, as one that does
//! not exist. Free text a partner adds to a report is kept for the privacy officer in the register, never logged.

use serde::Deserialize;
use serde_json::{json, Value};

use super::disclosure_json;
use crate::audit::entry::{EventKind, LogEntry};
use crate::audit::writer::{format_time, now_ms, AuditError};
use crate::gateway::Gateway;
use crate::identity::Caller;
use crate::oversight::incidents::{self, Source};
use crate::refusal::{ProblemCode, Refusal};
use crate::store::{MessageEnd, Mutation, OutboxFilter, OutboxRow, StoredEntry};

/// Reason codes of a recall.
pub const RECALL_REASONS: &[&str] = &[
    "verkeerde-ontvanger",
    "verkeerde-leerling",
    "onjuiste-inhoud",
    "anders",
];
/// Recall reasons that mean the message went where it must not: an incident opens.
const RECALL_WRONG_SEND: &[&str] = &["verkeerde-ontvanger", "verkeerde-leerling"];
/// Reason codes of a "niet voor ons" report.
pub const MISADDRESSED_REASONS: &[&str] = &[
    "verkeerde-leerling",
    "verkeerde-school",
    "niet-bevoegd",
    "anders",
];
/// Statuses the outbox filter accepts.
pub const STATUSES: &[&str] = &[
    "waiting",
    "fetched",
    "consent-withdrawn",
    "acknowledged",
    "expired",
    "purged",
    "recalled",
    "misaddressed",
];
/// Attempts before a request that keeps losing races answers 409 `mailbox-busy`.
const ATTEMPTS: u32 = 8;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxQuery {
    pub status: Option<String>,
    pub purpose: Option<String>,
    pub receiver: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

fn bad_query(detail: impl Into<String>) -> Refusal {
    Refusal::new(ProblemCode::InvalidQuery, detail)
}

fn day_ms(s: &str, end_of_day: bool) -> Option<i64> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(s, &fmt).ok()?;
    let d = if end_of_day { d.next_day()? } else { d };
    Some((d.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as i64)
}

/// One message as its sender sees it: where it went, under which flow, what was delivered and withheld (paths and
/// reasons), and how far it got.
fn item(row: &OutboxRow) -> Value {
    let entry = LogEntry::decode(&row.disclosure.bytes).ok();
    let (delivered, withheld) = match &entry {
        Some(e) => (
            json!(e.delivered),
            json!(e
                .withheld
                .iter()
                .map(|w| json!({"field": w.field, "reason": w.reason}))
                .collect::<Vec<_>>()),
        ),
        None => (Value::Null, Value::Null),
    };
    let t = |ms: Option<i64>| ms.map(format_time);
    let ended = t(row.ended_ms);
    let mut times = serde_json::Map::new();
    times.insert("sent".into(), json!(format_time(row.created_ms)));
    if let Some(f) = t(row.fetched_ms) {
        times.insert("fetched".into(), json!(f));
    }
    if let Some(e) = &ended {
        let key = match row.status.as_str() {
            "acknowledged" => "acknowledged",
            "expired" | "purged" => "purged",
            "recalled" => "recalled",
            "misaddressed" => "misaddressed",
            _ => "ended",
        };
        times.insert(key.into(), json!(e));
    }
    json!({
        "message_id": row.id,
        "to": row.receiver,
        "type": row.message_type,
        "purpose": row.purpose,
        "flow": row.disclosure.flow_id,
        "status": row.status,
        "times": times,
        "gateway_until": format_time(row.expires_ms),
        "reason": row.end_reason,
        "consent_fields_removed": row.stripped,
        "push": row.push.as_ref().map(|p| json!({
            "state": p.state,
            "attempts": p.attempts,
            "last_outcome": p.last_outcome,
        })),
        "delivered": delivered,
        "withheld": withheld,
        "disclosure": {"log_id": row.disclosure.log_id, "seq": row.disclosure.seq, "hash": hex::encode(row.disclosure.leaf_hash)},
    })
}

fn some(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn encode_cursor(row: &OutboxRow) -> String {
    format!("{}.{}", row.created_ms, row.id)
}

fn decode_cursor(c: &str) -> Option<(i64, String)> {
    let (ms, id) = c.split_once('.')?;
    let ok = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    Some((ms.parse().ok()?, id.to_owned())).filter(|_| ok)
}

/// `GET /v1/outbox`: the caller's sent messages, newest first, paged.
pub async fn list(gw: &Gateway, caller: &Caller, q: OutboxQuery) -> Result<Value, Refusal> {
    let max = gw.config.limits.inbox_page_max;
    let limit = q.limit.unwrap_or(50).clamp(1, max);
    if let Some(s) = some(&q.status) {
        if !STATUSES.contains(&s) {
            return Err(bad_query(format!(
                "status must be one of {}",
                STATUSES.join(", ")
            )));
        }
    }
    let from_ms = match some(&q.from) {
        Some(d) => {
            Some(day_ms(d, false).ok_or_else(|| bad_query("from must be a date YYYY-MM-DD"))?)
        }
        None => None,
    };
    let until_ms = match some(&q.to) {
        Some(d) => Some(day_ms(d, true).ok_or_else(|| bad_query("to must be a date YYYY-MM-DD"))?),
        None => None,
    };
    let before = match some(&q.cursor) {
        Some(c) => Some(decode_cursor(c).ok_or_else(|| {
            Refusal::new(
                ProblemCode::InvalidCursor,
                "cursor must be a value returned as next_cursor",
            )
        })?),
        None => None,
    };
    let filter = OutboxFilter {
        sender: caller.id().to_owned(),
        status: some(&q.status).map(str::to_owned),
        purpose: some(&q.purpose).map(str::to_owned),
        receiver: some(&q.receiver).map(str::to_owned),
        from_ms,
        until_ms,
        before,
        limit,
    };
    let rows = gw
        .store
        .outbox(&filter)
        .await
        .map_err(|e| Refusal::audit_unavailable().because(e))?;
    let next_cursor = (rows.len() == limit)
        .then(|| rows.last().map(encode_cursor))
        .flatten();
    Ok(json!({"messages": rows.iter().map(item).collect::<Vec<_>>(), "next_cursor": next_cursor}))
}

/// The outbox row of `id` if the caller sent it; 404 otherwise, as for a message that does not exist.
async fn own(gw: &Gateway, caller: &Caller, id: &str) -> Result<OutboxRow, Refusal> {
    let row = gw
        .store
        .outbox_message(id)
        .await
        .map_err(|e| Refusal::audit_unavailable().because(e))?;
    row.filter(|r| r.sender == caller.id())
        .ok_or_else(|| Refusal::not_found("no message with this id in your outbox"))
}

/// `GET /v1/outbox/{id}`.
pub async fn get(gw: &Gateway, caller: &Caller, id: &str) -> Result<Value, Refusal> {
    Ok(item(&own(gw, caller, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecallRequest {
    reason: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MisaddressedRequest {
    reason: String,
    /// Whether the receiver deleted every copy it made (it had fetched the message).
    copies_deleted: bool,
    #[serde(default)]
    text: Option<String>,
}

fn invalid(detail: impl Into<String>) -> Refusal {
    Refusal::new(ProblemCode::InvalidReport, detail)
}

/// After `ATTEMPTS` lost races.
fn busy() -> Refusal {
    Refusal::new(
        ProblemCode::MailboxBusy,
        "this message is being fetched or changed by another request; try again",
    )
    .with_retry_after(1)
}

/// The reason code, and the text `anders` requires (at most 500 characters; none for another code).
fn reason_and_text(
    reason: &str,
    text: Option<&str>,
    allowed: &[&str],
) -> Result<(String, Option<String>), Refusal> {
    if !allowed.contains(&reason) {
        return Err(invalid(format!(
            "reason must be one of {}",
            allowed.join(", ")
        )));
    }
    let text = text.map(str::trim).filter(|t| !t.is_empty());
    match (reason, text) {
        ("anders", None) => Err(invalid(
            "reason `anders` needs a `text` saying what is wrong",
        )),
        (_, Some(t)) if t.chars().count() > 500 => Err(invalid("text is at most 500 characters")),
        (_, t) => Ok((reason.to_owned(), t.map(str::to_owned))),
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    body: Result<&[u8], Refusal>,
    shape: &str,
) -> Result<T, Refusal> {
    let body = body?;
    serde_json::from_slice(body).map_err(|_| invalid(shape.to_owned()))
}

/// A refusal of a recall or report, logged once (the refused request names the message, never the text).
async fn refused(gw: &Gateway, caller: &Caller, event: EventKind, id: &str, r: Refusal) -> Refusal {
    let mut entry = gw.entry_for(caller, event);
    entry.message_id = Some(id.to_owned());
    gw.log_refusal(entry, r).await
}

/// The decoded disclosure entry of an outbox row.
fn disclosure_of(row: &OutboxRow) -> Result<(StoredEntry, LogEntry), Refusal> {
    let e = LogEntry::decode(&row.disclosure.bytes).map_err(|e| Refusal::internal().because(e))?;
    Ok((row.disclosure.clone(), e))
}

/// The organisation of a partner id (the id itself for a partner no longer configured).
fn organisation_of(gw: &Gateway, partner: &str) -> String {
    gw.partners
        .by_id(partner)
        .map(|p| p.partner.organisation_id().to_owned())
        .unwrap_or_else(|| partner.to_owned())
}

/// A log entry about the message of `row`, made for `caller`.
fn entry_about(gw: &Gateway, caller: &Caller, event: EventKind, row: &OutboxRow) -> LogEntry {
    let mut e = gw.entry_for(caller, event);
    e.message_id = Some(row.id.clone());
    e.subject = row.disclosure.subject.clone();
    e.sender = Some(row.sender.clone());
    e.receiver = Some(row.receiver.clone());
    e.message_type = Some(row.message_type.clone());
    e.purpose = Some(row.purpose.clone());
    e.flow_id = row.disclosure.flow_id.clone();
    e
}

/// `POST /v1/outbox/{id}/recall`: only while the receiver has not fetched the message.
pub async fn recall(
    gw: &Gateway,
    caller: &Caller,
    id: &str,
    body: Result<&[u8], Refusal>,
) -> Result<Value, Refusal> {
    let event = EventKind::MessageRecalled;
    let req: RecallRequest = match parse(
        body,
        "a recall is {\"reason\": \"verkeerde-ontvanger|verkeerde-leerling|onjuiste-inhoud|anders\", \"text\": \"...\"}",
    ) {
        Ok(r) => r,
        Err(r) => return Err(refused(gw, caller, event, id, r).await),
    };
    let (reason, text) = match reason_and_text(&req.reason, req.text.as_deref(), RECALL_REASONS) {
        Ok(v) => v,
        Err(r) => return Err(refused(gw, caller, event, id, r).await),
    };
    for _ in 0..ATTEMPTS {
        let row = own(gw, caller, id).await?;
        let fetched = match gw
            .store
            .message(id)
            .await
            .map_err(|e| Refusal::audit_unavailable().because(e))?
        {
            Some(m) => m.fetch_count > 0,
            None => true,
        };
        if fetched || row.status != "waiting" {
            let r = match row.status.as_str() {
                "waiting" | "fetched" | "consent-withdrawn" | "acknowledged" | "purged" => {
                    Refusal::new(
                        ProblemCode::AlreadyFetched,
                        "the receiver has fetched this message: it can no longer be recalled. If it went to the wrong \
                         receiver, ask the receiver to report it as not theirs (POST /v1/inbox/{id}/misaddressed) and \
                         tell your privacy officer, who records it in the breach register (/v1/audit/incidents)",
                    )
                }
                other => Refusal::new(
                    ProblemCode::NotRecallable,
                    format!("this message is {other}: there is nothing left to recall"),
                ),
            };
            return Err(refused(gw, caller, event, id, r).await);
        }
        if row.push.as_ref().is_some_and(|p| p.in_doubt) {
            let r = Refusal::new(
                ProblemCode::PushInDoubt,
                "a push of this message to the receiver's endpoint is in flight, or an earlier one may have reached \
                 it (no answer came): it cannot be recalled. Once an attempt definitely fails the recall can be tried \
                 again; if it went to the wrong receiver, ask the receiver to report it as not theirs",
            );
            return Err(refused(gw, caller, event, id, r).await);
        }
        let at = now_ms();
        let mut entry = entry_about(gw, caller, event, &row);
        entry.detail = Some(format!(
            "recalled before fetch: {reason}; disclosed as {}#{}",
            row.disclosure.log_id, row.disclosure.seq
        ));
        let mut entries = vec![entry];
        let mut mutations = vec![Mutation::DeleteMessage {
            id: id.to_owned(),
            end: MessageEnd::Recalled(reason.clone()),
            at_ms: at,
            unfetched_only: true,
        }];
        let mut incident_id = None;
        if RECALL_WRONG_SEND.contains(&reason.as_str()) {
            let organisation = organisation_of(gw, &row.sender);
            let mut incident = incidents::new_incident(
                gw,
                &organisation,
                Source::Recall,
                at,
                &[disclosure_of(&row)?],
            );
            incident.report = Some(json!({
                "reason": reason, "text": text, "fetched": false,
                "note": "teruggeroepen voordat de ontvanger het bericht ophaalde",
            }));
            let opened = gw.gateway_entry(EventKind::IncidentOpened);
            let (opened, m) = incidents::change(opened, &mut incident, &["geopend"], None, at)?;
            incident_id = Some(incident.id.clone());
            entries.push(opened);
            mutations.push(m);
        }
        match gw.writer.append(entries, mutations).await {
            Ok(receipts) => {
                let flow = row.disclosure.flow_id.as_deref().unwrap_or("-");
                gw.metrics.recall(flow);
                if incident_id.is_some() {
                    gw.metrics.incident_opened("recall");
                }
                return Ok(json!({
                    "message_id": id,
                    "status": "recalled",
                    "reason": reason,
                    "incident": incident_id,
                    "disclosure": receipts.first().map(disclosure_json),
                }));
            }
            // A fetch (or another recall) won the row first: look again.
            Err(AuditError::Conflict(_)) => continue,
            Err(e) => return Err(Refusal::audit_unavailable().because(e)),
        }
    }
    Err(busy())
}

/// `POST /v1/inbox/{id}/misaddressed`: the receiver says the message is not for it. The payload is purged at once
/// (if still there), the sender's outbox shows `misaddressed`, and an incident opens in the sender's register.
pub async fn misaddressed(
    gw: &Gateway,
    caller: &Caller,
    id: &str,
    body: Result<&[u8], Refusal>,
) -> Result<Value, Refusal> {
    let event = EventKind::MessageMisaddressed;
    let req: MisaddressedRequest = match parse(
        body,
        "a report is {\"reason\": \"verkeerde-leerling|verkeerde-school|niet-bevoegd|anders\", \"copies_deleted\": true|false, \"text\": \"...\"}",
    ) {
        Ok(r) => r,
        Err(r) => return Err(refused(gw, caller, event, id, r).await),
    };
    let (reason, text) =
        match reason_and_text(&req.reason, req.text.as_deref(), MISADDRESSED_REASONS) {
            Ok(v) => v,
            Err(r) => return Err(refused(gw, caller, event, id, r).await),
        };
    for _ in 0..ATTEMPTS {
        let row = gw
            .store
            .outbox_message(id)
            .await
            .map_err(|e| Refusal::audit_unavailable().because(e))?;
        // Only the receiver may report; to anyone else the message does not exist.
        let Some(row) = row.filter(|r| r.receiver == caller.id()) else {
            return Err(Refusal::not_found("no message with this id in your inbox"));
        };
        if matches!(row.status.as_str(), "recalled" | "misaddressed") {
            let r = Refusal::new(
                ProblemCode::AlreadyReported,
                format!("this message is already {}", row.status),
            );
            return Err(refused(gw, caller, event, id, r).await);
        }
        let at = now_ms();
        let present = gw
            .store
            .message(id)
            .await
            .map_err(|e| Refusal::audit_unavailable().because(e))?
            .is_some();
        let mut entry = entry_about(gw, caller, event, &row);
        entry.detail = Some(format!(
            "reported as not for the receiver: {reason}; copies deleted: {}; disclosed as {}#{}",
            if req.copies_deleted { "yes" } else { "no" },
            row.disclosure.log_id,
            row.disclosure.seq
        ));
        let end = MessageEnd::Misaddressed(reason.clone());
        let mut mutations = vec![if present {
            Mutation::DeleteMessage {
                id: id.to_owned(),
                end,
                at_ms: at,
                unfetched_only: false,
            }
        } else {
            Mutation::EndOutbox {
                id: id.to_owned(),
                end,
                at_ms: at,
            }
        }];
        let organisation = organisation_of(gw, &row.sender);
        let mut incident = incidents::new_incident(
            gw,
            &organisation,
            Source::Misaddressed,
            at,
            &[disclosure_of(&row)?],
        );
        incident.report = Some(json!({
            "reason": reason,
            "text": text,
            "copies_deleted": req.copies_deleted,
            "reported_by": caller.id(),
            "fetched": row.fetched_ms.is_some(),
        }));
        let opened = gw.gateway_entry(EventKind::IncidentOpened);
        let (opened, m) = incidents::change(opened, &mut incident, &["geopend"], None, at)?;
        mutations.push(m);
        match gw.writer.append(vec![entry, opened], mutations).await {
            Ok(receipts) => {
                gw.metrics
                    .misaddressed(row.disclosure.flow_id.as_deref().unwrap_or("-"));
                gw.metrics.incident_opened("misaddressed");
                return Ok(json!({
                    "message_id": id,
                    "status": "misaddressed",
                    "purged": present,
                    "disclosure": receipts.first().map(disclosure_json),
                }));
            }
            Err(AuditError::Conflict(_)) => continue,
            Err(e) => return Err(Refusal::audit_unavailable().because(e)),
        }
    }
    Err(busy())
}
