//! The consent registry: record, list and withdraw consents (`/v1/consents`).
//!
//! A consent is registered by the organisation that obtained it, and only that organisation may list or withdraw
//! it. The pupil is stored as the keyed pseudonym only; the registry never returns or logs the BSN/PGN.
//! Registration and withdrawal are log entries, committed together with the change.

use super::{disclosure_json, new_id};
use crate::audit::entry::{EventKind, LogEntry};
use crate::audit::writer::now_ms;
use crate::domain::{GivenBy, Role, SubjectId, SubjectKind};
use crate::envelope;
use crate::gateway::Gateway;
use crate::identity::Caller;
use crate::refusal::{ProblemCode, Refusal};
use crate::store::{EntryFilter, Mutation, StoredConsent};
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
    /// The pupil's birth date, for the age rules when a message carries none.
    #[serde(default)]
    subject_birth_date: Option<String>,
}

const CONSENT_SHAPE: &str = "a consent has subject {pgn|bsn|onderwijsnummer|message_id}, purpose, recipient, categories \
(list), given_by (ouder, voogd, jongere, ouder-en-jongere, vertegenwoordiger), evidence, valid_from and valid_until \
(YYYY-MM-DD), all required; subject_birth_date (YYYY-MM-DD) is optional";

/// How long after a message id's creation time its disclosure entry is looked for (the entry is written while the
/// send request runs; the margin allows for clocks of several instances).
const DISCLOSURE_WINDOW_MS: i64 = 15 * 60 * 1000;

fn invalid(detail: impl Into<String>) -> Refusal {
    Refusal::new(ProblemCode::InvalidConsent, detail)
}

/// How a consent names its pupil.
enum ConsentSubject {
    /// A PGN, BSN or onderwijsnummer (the registrar holds it).
    Number(SubjectId),
    /// A message the registrar received (a wijkteam never holds the PGN): its pupil.
    Message(String),
}

const SUBJECT_SHAPE: &str = "subject names exactly one of pgn, bsn, onderwijsnummer, message_id";

fn parse_subject(map: &serde_json::Map<String, Value>) -> Result<ConsentSubject, Refusal> {
    if map.len() != 1 {
        return Err(Refusal::new(ProblemCode::InvalidSubject, SUBJECT_SHAPE));
    }
    let (k, v) = map.iter().next().expect("one member");
    let kind = match k.as_str() {
        "pgn" => SubjectKind::Pgn,
        "bsn" => SubjectKind::Bsn,
        "onderwijsnummer" => SubjectKind::Onderwijsnummer,
        "message_id" => {
            // Message ids are 32 lowercase hex digits (`new_id`); anything else names no message.
            return match v.as_str() {
                Some(id)
                    if id.len() == 32
                        && id
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
                {
                    Ok(ConsentSubject::Message(id.to_owned()))
                }
                _ => Err(Refusal::new(
                    ProblemCode::InvalidSubject,
                    "subject.message_id is the id of a message you received",
                )),
            };
        }
        _ => return Err(Refusal::new(ProblemCode::InvalidSubject, SUBJECT_SHAPE)),
    };
    let number = v.as_str().ok_or_else(|| {
        Refusal::new(
            ProblemCode::InvalidSubject,
            "the subject number is a string",
        )
    })?;
    SubjectId::new(kind, number)
        .map(ConsentSubject::Number)
        .map_err(|e| Refusal::new(ProblemCode::InvalidSubjectId, e.to_string()))
}

/// The keyed pseudonym of the pupil a consent names. A message id resolves only for that message's receiver, from
/// its mailbox row or, once acknowledged or purged, from its disclosure entry; any other caller gets 404, as for
/// a message that does not exist.
async fn subject_pseudonym(
    gw: &Gateway,
    caller: &Caller,
    subject: ConsentSubject,
) -> Result<String, Refusal> {
    let id = match subject {
        ConsentSubject::Number(s) => return Ok(gw.keys.subject_pseudonym(s.number())),
        ConsentSubject::Message(id) => id,
    };
    let not_found = || Refusal::not_found("no message with this id was received by you");
    let no_pupil = || {
        Refusal::new(
            ProblemCode::InvalidSubject,
            "the message named by subject.message_id is about no single pupil",
        )
    };
    let store_failed = |e| Refusal::audit_unavailable().because(e);
    if let Some(m) = gw.store.message(&id).await.map_err(store_failed)? {
        if m.msg.receiver != caller.id() {
            return Err(not_found());
        }
        return m.msg.subject.ok_or_else(no_pupil);
    }
    // Acknowledged or purged: its disclosure entry still names the pupil, by pseudonym. The id's first 48 bits are
    // its creation time, which bounds where the entry is.
    let created_ms = i64::from_str_radix(&id[..12], 16).map_err(|_| not_found())?;
    let mut filter = EntryFilter {
        from_ms: Some(created_ms.saturating_sub(DISCLOSURE_WINDOW_MS)),
        until_ms: Some(created_ms.saturating_add(DISCLOSURE_WINDOW_MS)),
        organisation: Some(caller.id().to_owned()),
        event: Some(EventKind::MessageDisclosed.as_str().to_owned()),
        limit: 500,
        ..EntryFilter::default()
    };
    loop {
        let page = gw
            .store
            .query_entries(&filter)
            .await
            .map_err(store_failed)?;
        for row in &page {
            if row.receiver.as_deref() != Some(caller.id()) {
                continue;
            }
            let Ok(entry) = LogEntry::decode(&row.bytes) else {
                continue;
            };
            if entry.message_id.as_deref() == Some(id.as_str()) {
                return entry.subject.ok_or_else(no_pupil);
            }
        }
        match page.last() {
            Some(last) if page.len() == filter.limit => {
                filter.after = Some((last.time_ms, last.log_id.clone(), last.seq));
            }
            _ => return Err(not_found()),
        }
    }
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
    if let Some(d) = &req.subject_birth_date {
        if parse_date(d, "subject_birth_date")? > time::OffsetDateTime::now_utc().date() {
            return Err(invalid("subject_birth_date lies in the future"));
        }
    }
    let by_message = matches!(subject, ConsentSubject::Message(_));
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
    let subject_key = subject_pseudonym(gw, caller, subject).await?;
    let id = new_id();
    let given_by = req.given_by.as_str().to_owned();
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
        subject_birth_date: req.subject_birth_date,
    };
    let mut entry = gw.entry_for(caller, EventKind::ConsentRecorded);
    entry.subject = Some(subject_key);
    entry.purpose = Some(req.purpose);
    entry.receiver = Some(req.recipient);
    entry.consents = vec![id.clone()];
    entry.detail = Some(format!(
        "categories {}{}",
        req.categories.join(","),
        if by_message {
            "; pupil named by a message the registrar received"
        } else {
            ""
        }
    ));
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
        "subject_birth_date": c.subject_birth_date,
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
