//! The consent registry: record, list and withdraw consents (`/v1/consents`).
//!
//! A consent is registered by the organisation that obtained it, and only that organisation may list or withdraw
//! it. The pupil is stored as the keyed pseudonym only; the registry never returns or logs the BSN/PGN.
//! Registration and withdrawal are log entries, committed together with the change.

use super::{disclosure_json, new_id};
use crate::audit::entry::EventKind;
use crate::audit::writer::now_ms;
use crate::domain::{GivenBy, Role, SubjectId, SubjectKind};
use crate::envelope;
use crate::gateway::Gateway;
use crate::identity::Caller;
use crate::refusal::{ProblemCode, Refusal};
use crate::store::{Mutation, StoredConsent};
use serde::Deserialize;
use serde_json::{json, Value};

/// Field category codes of DOMAIN.md a consent may name.
pub const CATEGORIES: &[&str] = &[
    "ADM", "PGN", "SCH", "LOOP", "TOETS", "ADV", "COG", "SEO", "BEG", "DIAG", "THUIS", "VZ", "VZM",
    "ATT", "JH", "STRAF", "ZORG", "WT",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentRequest {
    subject: serde_json::Map<String, Value>,
    purpose: String,
    recipient: String,
    categories: Vec<String>,
    given_by: GivenBy,
    evidence: String,
    valid_from: String,
    valid_until: String,
}

const CONSENT_SHAPE: &str = "a consent has subject {pgn|bsn|onderwijsnummer}, purpose, recipient, categories (list), \
given_by (ouder, voogd, jongere, ouder-en-jongere), evidence, valid_from and valid_until (YYYY-MM-DD), all required";

fn invalid(detail: impl Into<String>) -> Refusal {
    Refusal::new(ProblemCode::InvalidConsent, detail)
}

fn parse_subject(map: &serde_json::Map<String, Value>) -> Result<SubjectId, Refusal> {
    if map.len() != 1 {
        return Err(Refusal::new(
            ProblemCode::InvalidSubject,
            "subject names exactly one of pgn, bsn, onderwijsnummer",
        ));
    }
    let (k, v) = map.iter().next().expect("one member");
    let kind = match k.as_str() {
        "pgn" => SubjectKind::Pgn,
        "bsn" => SubjectKind::Bsn,
        "onderwijsnummer" => SubjectKind::Onderwijsnummer,
        _ => {
            return Err(Refusal::new(
                ProblemCode::InvalidSubject,
                "subject names exactly one of pgn, bsn, onderwijsnummer",
            ))
        }
    };
    let number = v.as_str().ok_or_else(|| {
        Refusal::new(
            ProblemCode::InvalidSubject,
            "the subject number is a string",
        )
    })?;
    SubjectId::new(kind, number)
        .map_err(|e| Refusal::new(ProblemCode::InvalidSubjectId, e.to_string()))
}

fn parse_date(s: &str, field: &str) -> Result<time::Date, Refusal> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt).map_err(|_| invalid(format!("{field} is a date YYYY-MM-DD")))
}

/// Records a consent (201 body). A refused registration (4xx) is itself a `consent-refused` log entry; a body the
/// HTTP layer could not read comes in as `Err` and is refused the same way.
pub async fn record(
    gw: &Gateway,
    caller: &Caller,
    body: Result<&[u8], Refusal>,
) -> Result<Value, Refusal> {
    let result = match body {
        Ok(body) => register(gw, caller, body).await,
        Err(r) => Err(r),
    };
    match result {
        Err(r) if r.is_callers() => {
            let mut entry = gw.entry_for(caller, EventKind::ConsentRefused);
            entry.detail = Some(r.detail.clone());
            Err(gw.log_refusal(entry, r).await)
        }
        other => other,
    }
}

async fn register(gw: &Gateway, caller: &Caller, body: &[u8]) -> Result<Value, Refusal> {
    let value = envelope::parse_strict_json(body, gw.config.limits.max_json_depth)
        .map_err(|e| Refusal::new(e.code(), e.detail().to_owned()))?;
    let req: ConsentRequest = serde_json::from_value(value).map_err(|e| {
        // serde's messages can quote a value; only the name of an unknown member is passed on.
        let msg = e.to_string();
        match msg
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
        {
            Some(key) => Refusal::new(
                ProblemCode::UnknownConsentKey,
                format!(
                    "unknown member '{}'",
                    key.chars().take(64).collect::<String>()
                ),
            ),
            None => invalid(CONSENT_SHAPE),
        }
    })?;
    let subject = parse_subject(&req.subject)?;
    if req.purpose.trim().is_empty() || req.purpose.len() > 100 {
        return Err(invalid("purpose names a purpose of the policies"));
    }
    if gw.partners.by_id(&req.recipient).is_none() && Role::parse(&req.recipient).is_none() {
        return Err(invalid("recipient is a partner id or a role"));
    }
    if req.categories.is_empty()
        || !req
            .categories
            .iter()
            .all(|c| c == "*" || CATEGORIES.contains(&c.as_str()))
    {
        return Err(invalid(
            "categories lists category codes of the catalogue, or \"*\"",
        ));
    }
    if req.evidence.trim().is_empty() || req.evidence.len() > 500 {
        return Err(invalid(
            "evidence names where the signed consent is kept (1-500 characters)",
        ));
    }
    let from = parse_date(&req.valid_from, "valid_from")?;
    let until = parse_date(&req.valid_until, "valid_until")?;
    if until < from {
        return Err(invalid("valid_until lies before valid_from"));
    }
    let subject_key = gw.keys.subject_pseudonym(subject.number());
    let id = new_id();
    let given_by = serde_json::to_value(req.given_by)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let stored = StoredConsent {
        id: id.clone(),
        registered_by: caller.partner().organisation_id().to_owned(),
        subject: subject_key.clone(),
        purpose: req.purpose.clone(),
        recipient: req.recipient.clone(),
        categories: serde_json::to_string(&req.categories)
            .map_err(|e| Refusal::internal().because(e))?,
        given_by,
        evidence: req.evidence,
        valid_from: req.valid_from,
        valid_until: req.valid_until,
        created_ms: now_ms(),
        withdrawn_ms: None,
    };
    let mut entry = gw.entry_for(caller, EventKind::ConsentRecorded);
    entry.subject = Some(subject_key);
    entry.purpose = Some(req.purpose);
    entry.receiver = Some(req.recipient);
    entry.consents = vec![id.clone()];
    entry.detail = Some(format!("categories {}", req.categories.join(",")));
    let receipts = gw
        .writer
        .append(vec![entry], vec![Mutation::InsertConsent(stored)])
        .await
        .map_err(|e| Refusal::audit_unavailable().because(e))?;
    Ok(json!({"consent_id": id, "disclosure": receipts.first().map(disclosure_json)}))
}

fn consent_json(c: &StoredConsent) -> Value {
    json!({
        "consent_id": c.id,
        "subject_ref": c.subject,
        "purpose": c.purpose,
        "recipient": c.recipient,
        "categories": serde_json::from_str::<Value>(&c.categories).unwrap_or(Value::Null),
        "given_by": c.given_by,
        "evidence": c.evidence,
        "valid_from": c.valid_from,
        "valid_until": c.valid_until,
        "registered_at": crate::audit::writer::format_time(c.created_ms),
        "withdrawn_at": c.withdrawn_ms.map(crate::audit::writer::format_time),
    })
}

pub async fn list(gw: &Gateway, caller: &Caller) -> Result<Value, Refusal> {
    let rows = gw
        .store
        .consents_registered_by(caller.partner().organisation_id())
        .await
        .map_err(|e| Refusal::audit_unavailable().because(e))?;
    Ok(json!({"consents": rows.iter().map(consent_json).collect::<Vec<_>>()}))
}

pub async fn withdraw(gw: &Gateway, caller: &Caller, id: &str) -> Result<Value, Refusal> {
    let c = gw
        .store
        .consent(id)
        .await
        .map_err(|e| Refusal::audit_unavailable().because(e))?;
    let Some(c) = c.filter(|c| c.registered_by == caller.partner().organisation_id()) else {
        return Err(Refusal::not_found(
            "no consent with this id registered by your organisation",
        ));
    };
    if c.withdrawn_ms.is_some() {
        return Ok(json!({"consent_id": c.id, "withdrawn": true, "already_withdrawn": true}));
    }
    let mut entry = gw.entry_for(caller, EventKind::ConsentWithdrawn);
    entry.subject = Some(c.subject.clone());
    entry.purpose = Some(c.purpose.clone());
    entry.receiver = Some(c.recipient.clone());
    entry.consents = vec![c.id.clone()];
    let receipts = gw
        .writer
        .append(
            vec![entry],
            vec![Mutation::WithdrawConsent {
                id: c.id.clone(),
                at_ms: now_ms(),
            }],
        )
        .await
        .map_err(|e| Refusal::audit_unavailable().because(e))?;
    Ok(
        json!({"consent_id": c.id, "withdrawn": true, "disclosure": receipts.first().map(disclosure_json)}),
    )
}
