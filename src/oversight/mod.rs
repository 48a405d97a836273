//! The privacy officer's questions to the log: who may ask (`require_officer`, `scope_of`), the disclosure search
//! (filters, paging, CSV), the AVG art. 15 subject report (recipients, sources, purposes, categories of data by their
//! Dutch labels, retention per recipient, the rights and the AP), and (`proofs`) checkpoints and proofs for any
//! partner.
//!
//! An FG sees only entries in which its own organisation is the requester, sender or receiver; the operator's FG
//! (`sees_all`) sees every entry. Every privacy-officer query is itself a log entry, written before the answer
//! leaves, naming its filters with a PGN/BSN only as the keyed pseudonym. Nothing here may put a raw pupil number in
//! the log, a trace or an error, and entries are shown as decoded from their stored canonical bytes, never from the
//! index columns. Knows no HTTP: the handlers and pages are in `http::audit` and `http::console`.

pub mod incidents;
pub mod ldv;
pub mod nen7513;
pub mod proofs;

use crate::audit::entry::{EventKind, LogEntry, ReceiverRetention, WithheldField};
use crate::audit::merkle::Hash;
use crate::audit::writer::format_time;
use crate::domain::{Role, SubjectId, SubjectKind};
use crate::gateway::Gateway;
use crate::identity::Caller;
use crate::policy::{group_fields, CategoryGroup, PolicySet};
use crate::refusal::{ProblemCode, Refusal};
use crate::store::{EntryFilter, Store, StoreError, StoredEntry};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Most entries one disclosure page returns.
pub const MAX_LIMIT: usize = 1000;
/// Most entries a subject report reads.
const REPORT_MAX: usize = 100_000;
const REPORT_PAGE: usize = 1000;
/// Longest free-text filter value accepted.
const MAX_FILTER_LEN: usize = 200;

fn invalid_filter(detail: impl Into<String>) -> Refusal {
    Refusal::new(ProblemCode::InvalidFilter, detail)
}

// ---------------------------------------------------------------- privacy officers

/// A caller whose certificate is a privacy officer's. Only `require_officer` makes one, and every question to the
/// log below takes one: a route cannot read the log without the check.
#[derive(Debug, Clone)]
pub struct Officer(Caller);

impl Officer {
    pub fn caller(&self) -> &Caller {
        &self.0
    }
}

/// The caller as a privacy officer; refuses (and logs) a caller that is not one. `what` names what was asked for in
/// the refusal's log entry.
pub async fn require_officer(
    gw: &Gateway,
    caller: &Caller,
    what: &str,
) -> Result<Officer, Refusal> {
    if caller.partner().role == Role::PrivacyOfficer {
        return Ok(Officer(caller.clone()));
    }
    let refusal = Refusal::new(
        ProblemCode::NotAPrivacyOfficer,
        "only a privacy officer's certificate may read the disclosure log",
    );
    let mut entry = gw.entry_for(caller, EventKind::AuditQuery);
    entry.detail = Some(format!("{what}: refused"));
    Err(gw.log_refusal(entry, refusal).await)
}

/// The organisation whose entries the caller may see; `None` for the operator's FG, who sees all.
pub fn scope_of(caller: &Caller) -> Option<String> {
    if caller.info.sees_all {
        None
    } else {
        Some(caller.partner().organisation_id().to_owned())
    }
}

/// Query parameters of the disclosure search (the console's filter form sends the same names; empty means unset).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DisclosureParams {
    pub from: Option<String>,
    pub until: Option<String>,
    pub partner: Option<String>,
    pub purpose: Option<String>,
    pub flow: Option<String>,
    pub outcome: Option<String>,
    pub event: Option<String>,
    pub pgn: Option<String>,
    pub bsn: Option<String>,
    /// The entries of one kerngroep case (P13).
    pub case_id: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
    /// `nen7513`: the NEN 7513 view (`nen7513`) instead of the log's own shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

pub const DISCLOSURE_PARAMS: &str =
    "from, until, partner, purpose, flow, outcome, event, pgn, bsn, case_id, limit, cursor, format (nen7513)";

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// `parse_instant` for the HTTP layer's query parameters.
pub fn instant(s: &str, end_of_day: bool) -> Option<i64> {
    parse_instant(s, end_of_day)
}

/// Midnight UTC of a `YYYY-MM-DD` date (the next day's for an inclusive end), or an RFC 3339 instant.
pub(super) fn parse_instant(s: &str, end_of_day: bool) -> Option<i64> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, &fmt) {
        let d = if end_of_day { d.next_day()? } else { d };
        return Some((d.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as i64);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn encode_cursor(e: &StoredEntry) -> String {
    B64URL.encode(format!("{}:{}:{}", e.time_ms, e.seq, e.log_id))
}

fn decode_cursor(c: &str) -> Option<(i64, String, u64)> {
    let text = String::from_utf8(B64URL.decode(c).ok()?).ok()?;
    let mut parts = text.splitn(3, ':');
    let t = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let log = parts.next()?.to_owned();
    Some((t, log, seq))
}

/// A value for the log's description of a query: short, and never a run of digits that could be a pupil number.
fn describe_value(v: &str) -> String {
    let mut run = 0;
    let long_number = v.chars().any(|c| {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        run >= 9
    });
    if long_number {
        "<number withheld>".into()
    } else {
        v.chars().take(100).collect()
    }
}

/// A validated disclosure search, ready for the store.
pub struct ParsedSearch {
    pub filter: EntryFilter,
    /// Keyed pseudonym of the pupil asked about, if any.
    pub subject: Option<String>,
    /// The filters as written to the audit-query entry (pupil only as pseudonym).
    pub description: String,
}

pub fn parse_search(
    gw: &Gateway,
    officer: &Officer,
    p: &DisclosureParams,
    default_limit: usize,
) -> Result<ParsedSearch, Refusal> {
    let mut filter = EntryFilter {
        organisation: scope_of(officer.caller()),
        ..EntryFilter::default()
    };
    let mut described: Vec<String> = Vec::new();
    if let Some(v) = set(&p.from) {
        filter.from_ms =
            Some(parse_instant(v, false).ok_or_else(|| {
                invalid_filter("from is a date (YYYY-MM-DD) or an RFC 3339 time")
            })?);
        described.push(format!("from={}", describe_value(v)));
    }
    if let Some(v) = set(&p.until) {
        filter.until_ms = Some(parse_instant(v, true).ok_or_else(|| {
            invalid_filter("until is a date (YYYY-MM-DD, inclusive) or an RFC 3339 time")
        })?);
        described.push(format!("until={}", describe_value(v)));
    }
    for (name, value, slot) in [
        ("partner", &p.partner, &mut filter.partner),
        ("purpose", &p.purpose, &mut filter.purpose),
        ("flow", &p.flow, &mut filter.flow_id),
        ("outcome", &p.outcome, &mut filter.outcome),
    ] {
        if let Some(v) = set(value) {
            if v.chars().count() > MAX_FILTER_LEN || v.chars().any(char::is_control) {
                return Err(invalid_filter(format!(
                    "{name} is at most {MAX_FILTER_LEN} printable characters"
                )));
            }
            *slot = Some(v.to_owned());
            described.push(format!("{name}={}", describe_value(v)));
        }
    }
    if let Some(v) = set(&p.case_id) {
        let id = v.to_ascii_lowercase();
        if !crate::domain::is_case_id(&id) {
            return Err(invalid_filter(
                "case_id is the UUID of a kerngroep case (8-4-4-4-12 hexadecimal digits)",
            ));
        }
        described.push(format!("case_id={id}"));
        filter.case_id = Some(id);
    }
    if let Some(v) = set(&p.event) {
        let kind = EventKind::parse(v).ok_or_else(|| {
            invalid_filter(format!(
                "event is one of {}",
                EventKind::ALL.map(EventKind::as_str).join(", ")
            ))
        })?;
        filter.event = Some(kind.as_str().to_owned());
        described.push(format!("event={}", kind.as_str()));
    }
    let subject = match (set(&p.pgn), set(&p.bsn)) {
        (Some(_), Some(_)) => return Err(invalid_filter("give pgn or bsn, not both")),
        (Some(n), None) => Some((SubjectKind::Pgn, n)),
        (None, Some(n)) => Some((SubjectKind::Bsn, n)),
        (None, None) => None,
    };
    let subject = match subject {
        Some((kind, number)) => {
            let id = SubjectId::new(kind, number)
                .map_err(|e| Refusal::new(ProblemCode::InvalidSubjectId, e.to_string()))?;
            let pseudonym = gw.keys.subject_pseudonym(id.number());
            described.push(format!("subject={pseudonym}"));
            filter.subject = Some(pseudonym.clone());
            Some(pseudonym)
        }
        None => None,
    };
    filter.limit = match set(&p.limit) {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| invalid_filter(format!("limit is a number from 1 to {MAX_LIMIT}")))?,
        None => default_limit,
    };
    if let Some(c) = set(&p.cursor) {
        filter.after = Some(decode_cursor(c).ok_or_else(|| {
            Refusal::new(
                ProblemCode::InvalidCursor,
                "cursor must be a value returned as next_cursor",
            )
        })?);
        described.push("page>1".into());
    }
    Ok(ParsedSearch {
        filter,
        subject,
        description: described.join(" "),
    })
}

/// One log entry as shown to a privacy officer: decoded from its stored bytes.
#[derive(Debug, Clone)]
pub struct ShownEntry {
    pub log_id: String,
    pub seq: u64,
    pub time_ms: i64,
    pub event: String,
    pub leaf_hash: Hash,
    /// `None` when the stored bytes do not decode (the log was tampered with; `audit verify` names it).
    pub entry: Option<LogEntry>,
}

impl ShownEntry {
    fn from_stored(e: StoredEntry) -> ShownEntry {
        ShownEntry {
            entry: LogEntry::decode(&e.bytes).ok(),
            log_id: e.log_id,
            seq: e.seq,
            time_ms: e.time_ms,
            event: e.event,
            leaf_hash: e.leaf_hash,
        }
    }

    pub fn to_json(&self) -> Value {
        match &self.entry {
            Some(entry) => {
                let mut v = serde_json::to_value(entry).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    m.insert("leaf_hash".into(), hex::encode(self.leaf_hash).into());
                }
                v
            }
            None => json!({
                "log_id": self.log_id,
                "seq": self.seq,
                "time": format_time(self.time_ms),
                "event": self.event,
                "leaf_hash": hex::encode(self.leaf_hash),
                "error": "this entry cannot be decoded; run `ketenpoort audit verify`",
            }),
        }
    }
}

/// Every entry `filter` selects, across all organisations (the filter's `organisation` as given), oldest first,
/// read from the store `page` rows at a time: the operator's export from the database itself (`ketenpoort audit
/// export`), the same entries the operator's privacy officer's search pages through. Not logged: it is no officer's
/// question through the gateway but a read of the store by whoever holds the database (as `audit verify` is).
pub async fn all_entries(
    store: &dyn Store,
    mut filter: EntryFilter,
    page: usize,
) -> Result<Vec<ShownEntry>, StoreError> {
    filter.limit = page.max(1);
    let mut out = Vec::new();
    loop {
        let rows = store.query_entries(&filter).await?;
        let full = rows.len() == filter.limit;
        if let Some(last) = rows.last() {
            filter.after = Some((last.time_ms, last.log_id.clone(), last.seq));
        }
        out.extend(rows.into_iter().map(ShownEntry::from_stored));
        if !full {
            return Ok(out);
        }
    }
}

pub struct SearchResult {
    pub entries: Vec<ShownEntry>,
    pub next_cursor: Option<String>,
    pub scope: Option<String>,
}

/// Runs a disclosure search and logs it as an audit query (`origin` says where it came from).
pub async fn search(
    gw: &Gateway,
    officer: &Officer,
    parsed: ParsedSearch,
    origin: &str,
) -> Result<SearchResult, Refusal> {
    let limit = parsed.filter.limit;
    let mut filter = parsed.filter;
    filter.limit = limit + 1;
    let mut rows = gw
        .store
        .query_entries(&filter)
        .await
        .map_err(|e| Refusal::log_unreadable().because(e))?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more {
        rows.last().map(encode_cursor)
    } else {
        None
    };
    log_query(
        gw,
        officer,
        parsed.subject,
        format!(
            "{origin}: {} -> {} entries{}",
            if parsed.description.is_empty() {
                "no filters"
            } else {
                &parsed.description
            },
            rows.len(),
            if more { " (more pages)" } else { "" }
        ),
    )
    .await?;
    Ok(SearchResult {
        entries: rows.into_iter().map(ShownEntry::from_stored).collect(),
        next_cursor,
        scope: filter.organisation,
    })
}

async fn log_query(
    gw: &Gateway,
    officer: &Officer,
    subject: Option<String>,
    detail: String,
) -> Result<(), Refusal> {
    let mut entry = gw.entry_for(officer.caller(), EventKind::AuditQuery);
    entry.subject = subject;
    entry.detail = Some(detail);
    gw.writer
        .append_one(entry)
        .await
        .map(|_| ())
        .map_err(|e| Refusal::audit_unavailable().because(e))
}

pub const CSV_COLUMNS: [&str; 27] = [
    "log_id",
    "seq",
    "time",
    "event",
    "partner",
    "organisation",
    "cert_fingerprint",
    "actor_id",
    "actor_name",
    "actor_function",
    "sender",
    "receiver",
    "receiver_role",
    "message_type",
    "purpose",
    "legal_basis",
    "flow_id",
    "agreement_id",
    "subject",
    "delivered",
    "withheld",
    "consents",
    "outcome",
    "detail",
    "leaf_hash",
    "receiver_retention",
    "case_id",
];

/// One CSV cell (RFC 4180 quoting); cells a spreadsheet would run as a formula get a leading apostrophe.
pub(super) fn csv_cell(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

/// A receiver's retention period in one line: its text, and its days when the flow gave them.
pub fn retention_text(r: &ReceiverRetention) -> String {
    match r.days {
        Some(d) => format!("{} ({d} dagen)", r.text),
        None => r.text.clone(),
    }
}

pub fn to_csv(entries: &[ShownEntry]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    for s in entries {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        let row: Vec<String> = match &s.entry {
            Some(e) => vec![
                e.log_id.clone(),
                e.seq.to_string(),
                e.time.clone(),
                e.event().as_str().to_owned(),
                e.partner.clone(),
                e.organisation.clone(),
                e.cert_fingerprint.clone(),
                e.actor.as_ref().map(|a| a.id.clone()).unwrap_or_default(),
                e.actor.as_ref().map(|a| a.name.clone()).unwrap_or_default(),
                e.actor
                    .as_ref()
                    .map(|a| a.function.clone())
                    .unwrap_or_default(),
                o(&e.sender),
                o(&e.receiver),
                o(&e.receiver_role),
                o(&e.message_type),
                o(&e.purpose),
                o(&e.legal_basis),
                o(&e.flow_id),
                o(&e.agreement_id),
                o(&e.subject),
                e.delivered.join(";"),
                e.withheld
                    .iter()
                    .map(|w| format!("{}: {}", w.field, w.reason))
                    .collect::<Vec<_>>()
                    .join(";"),
                e.consents.join(";"),
                e.outcome.clone(),
                o(&e.detail),
                hex::encode(s.leaf_hash),
                e.receiver_retention
                    .as_ref()
                    .map(retention_text)
                    .unwrap_or_default(),
                o(&e.case_id),
            ],
            None => {
                let mut row = vec![String::new(); CSV_COLUMNS.len()];
                row[0] = s.log_id.clone();
                row[1] = s.seq.to_string();
                row[2] = format_time(s.time_ms);
                row[3] = s.event.clone();
                row[23] = "entry cannot be decoded; run ketenpoort audit verify".into();
                row[24] = hex::encode(s.leaf_hash);
                row
            }
        };
        out.push_str(
            &row.iter()
                .map(|c| csv_cell(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    out
}

// ---------------------------------------------------------------- the art. 15 subject report

#[derive(Debug, Clone, Serialize)]
pub struct ReportDisclosure {
    pub time: String,
    pub sender: String,
    pub sender_name: String,
    /// The recipient organisation (partner id) and its name and role.
    pub recipient: String,
    pub recipient_name: String,
    pub recipient_role: String,
    pub message_type: String,
    pub purpose: String,
    pub legal_basis: String,
    pub flow_id: String,
    /// The flow's name in the running policy set (the purpose in words), when the flow still exists.
    pub flow_name: Option<String>,
    pub agreement_id: Option<String>,
    /// How long the recipient keeps what it received, as the flow told it (absent in entries from before).
    pub receiver_retention: Option<ReceiverRetention>,
    /// The recipient never fetched it: the gateway purged it after its own period (`message-expired`).
    pub expired_unfetched: bool,
    pub fields_delivered: Vec<String>,
    /// `fields_delivered` per category, named by the labels of the running catalogue (AVG art. 15(1)(b)).
    pub delivered_by_category: Vec<CategoryGroup>,
    pub fields_withheld: Vec<WithheldField>,
    pub consents_used: Vec<String>,
    pub log_id: String,
    pub seq: u64,
    pub leaf_hash: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReportRecipient {
    pub organisation: String,
    pub name: String,
    pub role: String,
    pub disclosures: usize,
    pub first: String,
    pub last: String,
    /// The category codes of everything it received, in order of first appearance.
    pub categories: Vec<String>,
    /// The retention periods the recipient was told, one per distinct period (AVG art. 15(1)(d)).
    pub retention: Vec<ReceiverRetention>,
}

/// An organisation the disclosed data came from (AVG art. 15(1)(g)): the sender, from its own records.
#[derive(Debug, Clone, Serialize)]
pub struct ReportSource {
    pub organisation: String,
    pub name: String,
    pub role: String,
    pub disclosures: usize,
}

/// A right of the pupil and the parents, in plain Dutch (AVG art. 15(1)(e)).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Right {
    pub right: &'static str,
    pub article: &'static str,
    pub text: &'static str,
}

/// The rights every art. 15 report names.
pub const RIGHTS: [Right; 5] = [
    Right {
        right: "Verbetering of aanvulling (rectificatie)",
        article: "AVG art. 16",
        text: "Kloppen gegevens niet of zijn ze onvolledig, dan kunt u de organisatie die ze verstrekte vragen ze te \
               verbeteren of aan te vullen. Die organisatie geeft de verbetering door aan de ontvangers in dit \
               overzicht (AVG art. 19).",
    },
    Right {
        right: "Verwijdering (wissing)",
        article: "AVG art. 17",
        text: "U kunt vragen gegevens te verwijderen, bijvoorbeeld als ze niet meer nodig zijn voor het doel of als \
               u uw toestemming intrekt. Moet een organisatie de gegevens volgens de wet bewaren, dan mag zij dat \
               weigeren; zij zegt dan waarom.",
    },
    Right {
        right: "Beperking van het gebruik",
        article: "AVG art. 18",
        text: "U kunt vragen het gebruik van gegevens tijdelijk te stoppen, bijvoorbeeld zolang wordt uitgezocht of \
               ze kloppen of zolang uw bezwaar wordt beoordeeld.",
    },
    Right {
        right: "Bezwaar",
        article: "AVG art. 21",
        text: "Verstrekte een organisatie gegevens voor een taak van algemeen belang, dan kunt u daartegen bezwaar \
               maken vanwege uw persoonlijke situatie. De organisatie stopt dan, tenzij zij zwaarwegende redenen \
               heeft om door te gaan.",
    },
    Right {
        right: "Toestemming intrekken",
        article: "AVG art. 7 lid 3",
        text: "Ging een verstrekking op uw toestemming, dan kunt u die altijd intrekken bij de organisatie die haar \
               vastlegde. Berichten die de ontvanger nog niet ophaalde, gaan dan zonder die gegevens; wat al \
               verstrekt is, blijft rechtmatig verstrekt.",
    },
];

/// Where to complain (AVG art. 15(1)(f), art. 77).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Authority {
    pub name: &'static str,
    pub url: &'static str,
    pub text: &'static str,
}

pub const AUTHORITY: Authority = Authority {
    name: "Autoriteit Persoonsgegevens",
    url: "https://autoriteitpersoonsgegevens.nl",
    text: "Bent u het niet eens met hoe met de gegevens is omgegaan, dan kunt u een klacht indienen bij de \
           Autoriteit Persoonsgegevens. U kunt ook eerst de functionaris gegevensbescherming van de school of \
           organisatie vragen mee te kijken.",
};

#[derive(Debug, Clone, Serialize)]
pub struct ReportConsent {
    pub consent_id: String,
    pub registered_by: String,
    pub registered_by_name: String,
    pub purpose: String,
    pub recipient: String,
    pub recipient_name: String,
    pub categories: Vec<String>,
    pub given_by: String,
    pub valid_from: String,
    pub valid_until: String,
    pub registered_at: String,
    pub withdrawn_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReportRefusal {
    pub time: String,
    pub sender: String,
    pub sender_name: String,
    pub receiver: String,
    pub receiver_name: String,
    pub purpose: String,
    pub outcome: String,
}

/// What the gateway disclosed about one pupil, within the caller's scope (AVG art. 15 and 19).
#[derive(Debug, Clone, Serialize)]
pub struct SubjectReport {
    pub generated_at: String,
    /// `None`: every organisation (operator's FG).
    pub scope: Option<String>,
    pub scope_name: Option<String>,
    pub subject_ref: String,
    pub disclosures: Vec<ReportDisclosure>,
    pub recipients: Vec<ReportRecipient>,
    /// The organisations the disclosed data came from.
    pub sources: Vec<ReportSource>,
    pub consents: Vec<ReportConsent>,
    pub refused: Vec<ReportRefusal>,
    /// The rights to rectification, erasure, restriction and objection (and to withdraw a consent).
    pub rights: [Right; 5],
    /// The right to complain to the Autoriteit Persoonsgegevens.
    pub complaint: Authority,
    /// True when the report stopped at its size limit.
    pub truncated: bool,
}

fn partner_name(gw: &Gateway, id: &str) -> String {
    gw.partners
        .by_id(id)
        .map(|p| p.partner.name.clone())
        .unwrap_or_else(|| id.to_owned())
}

fn partner_role(gw: &Gateway, id: &str) -> String {
    gw.partners
        .by_id(id)
        .map(|p| p.partner.role.as_str().to_owned())
        .unwrap_or_default()
}

/// The logged delivered paths grouped by category, by the labels of the running catalogue of `message_type`.
pub fn delivered_by_category(
    policy: &PolicySet,
    message_type: &str,
    delivered: &[String],
) -> Vec<CategoryGroup> {
    group_fields(
        policy.catalogue(message_type),
        delivered.iter().map(|p| (p.as_str(), None)),
    )
}

/// Builds the art. 15 report for a PGN (BSN or onderwijsnummer) and logs the query.
pub async fn subject_report(
    gw: &Gateway,
    officer: &Officer,
    pgn: &str,
    origin: &str,
) -> Result<SubjectReport, Refusal> {
    let id = SubjectId::new(SubjectKind::Pgn, pgn.trim())
        .map_err(|e| Refusal::new(ProblemCode::InvalidSubjectId, e.to_string()))?;
    let pseudonym = gw.keys.subject_pseudonym(id.number());
    let scope = scope_of(officer.caller());
    let mut filter = EntryFilter {
        organisation: scope.clone(),
        subject: Some(pseudonym.clone()),
        limit: REPORT_PAGE,
        ..EntryFilter::default()
    };
    let mut stored = Vec::new();
    let mut truncated = false;
    loop {
        let page = gw
            .store
            .query_entries(&filter)
            .await
            .map_err(|e| Refusal::log_unreadable().because(e))?;
        let full = page.len() == REPORT_PAGE;
        filter.after = page.last().map(|e| (e.time_ms, e.log_id.clone(), e.seq));
        stored.extend(page);
        if stored.len() >= REPORT_MAX {
            truncated = full;
            break;
        }
        if !full {
            break;
        }
    }
    let policy = gw.policy();
    let mut disclosures = Vec::new();
    let mut refused = Vec::new();
    // The message id of each disclosure, and the messages that expired unfetched.
    let mut disclosed_ids: Vec<Option<String>> = Vec::new();
    let mut expired = std::collections::BTreeSet::new();
    for s in stored {
        let shown = ShownEntry::from_stored(s);
        let Some(e) = shown.entry else { continue };
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        match e.event() {
            EventKind::MessageDisclosed if e.outcome == "ok" => {
                let recipient = o(&e.receiver);
                let sender = o(&e.sender);
                disclosed_ids.push(e.message_id.clone());
                let message_type = o(&e.message_type);
                let flow_id = o(&e.flow_id);
                disclosures.push(ReportDisclosure {
                    time: e.time.clone(),
                    sender_name: partner_name(gw, &sender),
                    sender,
                    recipient_name: partner_name(gw, &recipient),
                    recipient,
                    recipient_role: o(&e.receiver_role),
                    delivered_by_category: delivered_by_category(
                        &policy,
                        &message_type,
                        &e.delivered,
                    ),
                    message_type,
                    purpose: o(&e.purpose),
                    legal_basis: o(&e.legal_basis),
                    flow_name: policy
                        .flows()
                        .find(|f| f.id == flow_id)
                        .map(|f| f.name.clone()),
                    flow_id,
                    agreement_id: e.agreement_id.clone(),
                    receiver_retention: e.receiver_retention.clone(),
                    expired_unfetched: false,
                    fields_delivered: e.delivered.clone(),
                    fields_withheld: e.withheld.clone(),
                    consents_used: e.consents.clone(),
                    log_id: e.log_id.clone(),
                    seq: e.seq,
                    leaf_hash: hex::encode(shown.leaf_hash),
                });
            }
            EventKind::MessageRefused => {
                let sender = e.sender.clone().unwrap_or_else(|| e.partner.clone());
                let receiver = o(&e.receiver);
                refused.push(ReportRefusal {
                    time: e.time.clone(),
                    sender_name: partner_name(gw, &sender),
                    sender,
                    receiver_name: partner_name(gw, &receiver),
                    receiver,
                    purpose: o(&e.purpose),
                    outcome: e.outcome.clone(),
                })
            }
            // Never received: purged unfetched, or recalled by the sender before any fetch.
            EventKind::MessageExpired | EventKind::MessageRecalled => {
                expired.extend(e.message_id.clone());
            }
            _ => {}
        }
    }
    if !expired.is_empty() {
        for (d, id) in disclosures.iter_mut().zip(&disclosed_ids) {
            d.expired_unfetched = id.as_ref().is_some_and(|id| expired.contains(id));
        }
    }
    let mut by_recipient: BTreeMap<String, ReportRecipient> = BTreeMap::new();
    for d in &disclosures {
        let r = by_recipient
            .entry(d.recipient.clone())
            .or_insert_with(|| ReportRecipient {
                organisation: d.recipient.clone(),
                name: d.recipient_name.clone(),
                role: d.recipient_role.clone(),
                disclosures: 0,
                first: d.time.clone(),
                last: d.time.clone(),
                categories: Vec::new(),
                retention: Vec::new(),
            });
        r.disclosures += 1;
        r.last = d.time.clone();
        for g in &d.delivered_by_category {
            if let Some(code) = &g.category {
                if !r.categories.contains(code) {
                    r.categories.push(code.clone());
                }
            }
        }
        if let Some(p) = &d.receiver_retention {
            if !r.retention.contains(p) {
                r.retention.push(p.clone());
            }
        }
    }
    let mut by_source: BTreeMap<String, ReportSource> = BTreeMap::new();
    for d in &disclosures {
        by_source
            .entry(d.sender.clone())
            .or_insert_with(|| ReportSource {
                organisation: d.sender.clone(),
                name: d.sender_name.clone(),
                role: partner_role(gw, &d.sender),
                disclosures: 0,
            })
            .disclosures += 1;
    }
    let consents = gw
        .store
        .consents_for_subject(&pseudonym)
        .await
        .map_err(|e| Refusal::log_unreadable().because(e))?
        .into_iter()
        .filter(|c| {
            scope
                .as_deref()
                .is_none_or(|org| c.registered_by == org || c.recipient == org)
        })
        .map(|c| ReportConsent {
            categories: serde_json::from_str(&c.categories).unwrap_or_default(),
            consent_id: c.id,
            registered_by_name: partner_name(gw, &c.registered_by),
            registered_by: c.registered_by,
            purpose: c.purpose,
            recipient_name: partner_name(gw, &c.recipient),
            recipient: c.recipient,
            given_by: c.given_by,
            valid_from: c.valid_from,
            valid_until: c.valid_until,
            registered_at: format_time(c.created_ms),
            withdrawn_at: c.withdrawn_ms.map(format_time),
        })
        .collect();
    log_query(
        gw,
        officer,
        Some(pseudonym.clone()),
        format!(
            "{origin}: subject report subject={pseudonym} -> {} disclosures, {} refusals",
            disclosures.len(),
            refused.len()
        ),
    )
    .await?;
    Ok(SubjectReport {
        generated_at: format_time(crate::audit::writer::now_ms()),
        scope_name: scope.as_deref().map(|s| partner_name(gw, s)),
        scope,
        subject_ref: pseudonym,
        recipients: by_recipient.into_values().collect(),
        sources: by_source.into_values().collect(),
        disclosures,
        consents,
        refused,
        rights: RIGHTS,
        complaint: AUTHORITY,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_with_colons_in_the_log_id() {
        let e = StoredEntry {
            log_id: "a:b:c".into(),
            seq: 42,
            time_ms: 1_767_225_600_123,
            event: "audit-query".into(),
            partner: String::new(),
            organisation: String::new(),
            sender: None,
            receiver: None,
            purpose: None,
            flow_id: None,
            subject: None,
            outcome: "ok".into(),
            bytes: vec![],
            leaf_hash: [0; 32],
            chain_hash: [0; 32],
            case_id: None,
        };
        assert_eq!(
            decode_cursor(&encode_cursor(&e)),
            Some((1_767_225_600_123, "a:b:c".into(), 42))
        );
        assert_eq!(decode_cursor("not base64 !"), None);
        assert_eq!(decode_cursor(&B64URL.encode("x:1:l")), None);
    }

    #[test]
    fn dates_and_times_parse_and_until_is_inclusive() {
        let day = parse_instant("2026-11-01", false).unwrap();
        assert_eq!(parse_instant("2026-11-01", true).unwrap() - day, 86_400_000);
        assert_eq!(parse_instant("2026-11-01T00:00:00Z", false).unwrap(), day);
        assert_eq!(
            parse_instant("2026-11-01T01:00:00+01:00", true).unwrap(),
            day
        );
        for bad in ["2026-13-01", "1 nov", "", "2026-11-01T00:00"] {
            assert_eq!(parse_instant(bad, false), None, "{bad}");
        }
    }

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_cell("-1,2"), "\"'-1,2\"");
        assert_eq!(csv_cell("line\nbreak"), "\"line\nbreak\"");
    }

    #[test]
    fn descriptions_never_carry_a_long_number() {
        assert_eq!(describe_value("vroegsignalering"), "vroegsignalering");
        assert_eq!(describe_value("pgn 121547280"), "<number withheld>");
        assert_eq!(describe_value("12345678"), "12345678");
    }
}
