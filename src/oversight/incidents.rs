//! The breach register (AVG 33(5)): every incident an organisation's privacy officer must document, notified or not,
//! with the 72 hours from discovery the AP decision must be taken in (AVG 33(1)).
//!
//! An incident opens by itself when a receiver reports a message as not for it ("niet voor ons") or a sender recalls
//! one sent to the wrong receiver or about the wrong pupil, or by hand by the FG. Each change is a log entry
//! (`incident-opened`, `incident-updated`, `incident-closed`) in the same transaction as the register's row, carrying
//! the SHA-256 of the record after the change: the register is as tamper-evident as the disclosures. The record holds
//! log positions, pupil pseudonyms, field categories and the FG's own words; never a PGN or a payload value, and the
//! FG's words never go into the log (only which parts changed).

use std::collections::BTreeSet;

use ring::digest;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{csv_cell, parse_instant, scope_of, Officer};
use crate::audit::entry::{EventKind, LogEntry};
use crate::audit::writer::{format_time, now_ms, AuditError};
use crate::gateway::Gateway;
use crate::refusal::{ProblemCode, Refusal};
use crate::store::{EntryFilter, Mutation, StoredEntry, StoredIncident};

/// AVG art. 33(1): the AP is notified within 72 hours of discovery, unless the breach is unlikely to be a risk.
pub const DEADLINE_MS: i64 = 72 * 3600 * 1000;

/// How an incident came to light.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The receiver reported a message as not for it.
    Misaddressed,
    /// The sender recalled a message sent to the wrong receiver or about the wrong pupil.
    Recall,
    /// Opened by the privacy officer.
    Manual,
}

impl Source {
    pub fn label_nl(self) -> &'static str {
        match self {
            Source::Misaddressed => "melding 'niet voor ons' van de ontvanger",
            Source::Recall => "teruggeroepen na verkeerde verzending",
            Source::Manual => "geopend door de FG",
        }
    }
}

/// One disclosure the incident is about, by its place in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Affected {
    pub log_id: String,
    pub seq: u64,
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message_id: Option<String>,
    pub receiver: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub flow_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub purpose: Option<String>,
    /// The pupil as the log's pseudonym.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pupil: Option<String>,
}

/// The FG's assessment of the risk to the people concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Risk {
    Geen,
    Laag,
    Hoog,
}

/// The record of one incident, as stored and as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incident {
    pub id: String,
    /// The organisation whose register it is in (the sender of the affected disclosures).
    pub organisation: String,
    pub source: Source,
    pub status: String,
    pub discovered_at: String,
    pub deadline: String,
    /// What the report or recall said: its reason code and whether the receiver deleted its copies.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub report: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub description: Option<String>,
    pub affected: Vec<Affected>,
    /// Distinct pupils (pseudonyms), never PGNs.
    pub pupils: Vec<String>,
    /// Categories (ADM, DIAG, …) and classes (S1 … S4) of the fields delivered in the affected disclosures.
    pub categories: Vec<String>,
    pub classes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub risk: Option<Risk>,
    /// The decision whether to notify the AP; `None` while not taken.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub notify_ap: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ap_notified_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ap_reference: Option<String>,
    /// AVG 34: whether the people concerned are informed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subjects_informed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub measures: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub closing_note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub closed_at: Option<String>,
    /// Each change: when, by which partner certificate, which parts.
    pub history: Vec<Value>,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.status == "open"
    }

    /// Whether the AP decision is recorded.
    pub fn decided(&self) -> bool {
        self.notify_ap.is_some()
    }

    fn discovered_ms(&self) -> i64 {
        parse_instant(&self.discovered_at, false).unwrap_or(0)
    }

    /// The API's view: the record with the time left until the deadline.
    pub fn to_json(&self, now: i64) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        let left = self.discovered_ms() + DEADLINE_MS - now;
        v["hours_left"] = json!(left.div_euclid(3_600_000));
        v["past_deadline_undecided"] = json!(left < 0 && !self.decided());
        v
    }

    fn stored(&self, updated_ms: i64) -> Result<StoredIncident, Refusal> {
        Ok(StoredIncident {
            id: self.id.clone(),
            organisation: self.organisation.clone(),
            status: self.status.clone(),
            discovered_ms: self.discovered_ms(),
            deadline_ms: self.discovered_ms() + DEADLINE_MS,
            decided: self.decided(),
            updated_ms,
            record: serde_json::to_string(self).map_err(|e| Refusal::internal().because(e))?,
        })
    }
}

/// Reads a stored record back.
pub fn record_of(s: &StoredIncident) -> Result<Incident, Refusal> {
    serde_json::from_str(&s.record).map_err(|e| Refusal::internal().because(e))
}

/// `inc-` and 16 random bytes in hex, the first six the time in milliseconds (sortable, as message ids).
fn incident_id(ms: i64) -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&(ms.max(0) as u64).to_be_bytes()[2..]);
    ring::rand::SystemRandom::new()
        .fill(&mut b[6..])
        .expect("system randomness");
    format!("inc-{}", hex::encode(b))
}

/// `toetsen[0].score` → `toetsen[].score`.
fn catalogue_path(concrete: &str) -> String {
    let mut out = String::with_capacity(concrete.len());
    let mut in_index = false;
    for c in concrete.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            c => out.push(c),
        }
    }
    out
}

/// A new incident about `disclosures` (decoded `message-disclosed` entries with their stored rows).
pub fn new_incident(
    gw: &Gateway,
    organisation: &str,
    source: Source,
    discovered_ms: i64,
    disclosures: &[(StoredEntry, LogEntry)],
) -> Incident {
    let policy = gw.policy();
    let mut pupils = BTreeSet::new();
    let mut categories = BTreeSet::new();
    let mut classes = BTreeSet::new();
    let mut affected = Vec::with_capacity(disclosures.len());
    for (row, e) in disclosures {
        if let Some(p) = &e.subject {
            pupils.insert(p.clone());
        }
        let catalogue = e.message_type.as_deref().and_then(|t| policy.catalogue(t));
        for path in &e.delivered {
            match catalogue.and_then(|c| c.field(&catalogue_path(path))) {
                Some(f) => {
                    categories.insert(f.category.clone());
                    classes.insert(f.class.as_str().to_owned());
                }
                // A field the running catalogue no longer has: named as such, never dropped.
                None => {
                    categories.insert("onbekend".to_owned());
                }
            }
        }
        affected.push(Affected {
            log_id: row.log_id.clone(),
            seq: row.seq,
            time: e.time.clone(),
            message_id: e.message_id.clone(),
            receiver: e.receiver.clone().unwrap_or_default(),
            flow_id: e.flow_id.clone(),
            purpose: e.purpose.clone(),
            pupil: e.subject.clone(),
        });
    }
    Incident {
        id: incident_id(discovered_ms),
        organisation: organisation.to_owned(),
        source,
        status: "open".into(),
        discovered_at: format_time(discovered_ms),
        deadline: format_time(discovered_ms + DEADLINE_MS),
        report: None,
        description: None,
        affected,
        pupils: pupils.into_iter().collect(),
        categories: categories.into_iter().collect(),
        classes: classes.into_iter().collect(),
        risk: None,
        notify_ap: None,
        ap_notified_at: None,
        ap_reference: None,
        subjects_informed: None,
        measures: None,
        closing_note: None,
        closed_at: None,
        history: Vec::new(),
    }
}

/// The log entry recording a change to `incident` (its parts named, never their text) and the mutation storing it,
/// to append together. `by`: the entry's partner and organisation are set by the caller (`entry`).
pub fn change(
    mut entry: LogEntry,
    incident: &mut Incident,
    parts: &[&str],
    previous_updated_ms: Option<i64>,
    at_ms: i64,
) -> Result<(LogEntry, Mutation), Refusal> {
    incident.history.push(json!({
        "at": format_time(at_ms),
        "by": entry.partner,
        "parts": parts,
    }));
    let stored = incident.stored(at_ms)?;
    let digest = hex::encode(digest::digest(&digest::SHA256, stored.record.as_bytes()));
    entry.detail = Some(format!(
        "incident {} ({}): {}; record sha256 {digest}",
        incident.id,
        incident.organisation,
        parts.join(", ")
    ));
    entry.subject = (incident.pupils.len() == 1).then(|| incident.pupils[0].clone());
    let mutation = match previous_updated_ms {
        None => Mutation::InsertIncident(stored),
        Some(previous_updated_ms) => Mutation::UpdateIncident {
            incident: stored,
            previous_updated_ms,
        },
    };
    Ok((entry, mutation))
}

/// The incidents the officer may see: its own organisation's, or every one for the operator's FG.
pub async fn list(gw: &Gateway, officer: &Officer) -> Result<Vec<Incident>, Refusal> {
    let scope = scope_of(officer.caller());
    let rows = gw
        .store
        .incidents(scope.as_deref())
        .await
        .map_err(|e| Refusal::audit_unavailable().because(e))?;
    let mut out: Vec<Incident> = rows.iter().map(record_of).collect::<Result<_, _>>()?;
    // Open ones first, the nearest deadline first; then the closed ones, newest first.
    out.sort_by(|a, b| {
        b.is_open()
            .cmp(&a.is_open())
            .then_with(|| match a.is_open() {
                true => a.discovered_at.cmp(&b.discovered_at),
                false => b.discovered_at.cmp(&a.discovered_at),
            })
    });
    Ok(out)
}

/// One incident, if the officer may see it (404 otherwise, as for one that does not exist).
pub async fn get(
    gw: &Gateway,
    officer: &Officer,
    id: &str,
) -> Result<(Incident, StoredIncident), Refusal> {
    let row = gw
        .store
        .incident(id)
        .await
        .map_err(|e| Refusal::audit_unavailable().because(e))?;
    let scope = scope_of(officer.caller());
    match row {
        Some(row) if scope.as_deref().is_none_or(|o| o == row.organisation) => {
            Ok((record_of(&row)?, row))
        }
        _ => Err(Refusal::not_found(
            "no incident with this id in your register",
        )),
    }
}

/// The disclosure entries at `positions` that the officer's organisation made (404 for any other, as for one that
/// does not exist).
async fn own_disclosures(
    gw: &Gateway,
    officer: &Officer,
    positions: &[Position],
) -> Result<Vec<(StoredEntry, LogEntry)>, Refusal> {
    let scope = scope_of(officer.caller());
    let mut out = Vec::with_capacity(positions.len());
    for p in positions {
        let rows = gw
            .store
            .entries(&p.log_id, p.seq, 1)
            .await
            .map_err(|e| Refusal::audit_unavailable().because(e))?;
        let found = rows.into_iter().next().and_then(|row| {
            let e = LogEntry::decode(&row.bytes).ok()?;
            let own = scope.as_deref().is_none_or(|o| o == row.organisation);
            (own && e.event() == EventKind::MessageDisclosed).then_some((row, e))
        });
        match found {
            Some(d) => out.push(d),
            None => {
                return Err(Refusal::new(
                    ProblemCode::UnknownDisclosure,
                    format!(
                        "{}#{} is no disclosure of your organisation",
                        p.log_id, p.seq
                    ),
                ))
            }
        }
    }
    Ok(out)
}

/// A disclosure's place in the log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    pub log_id: String,
    pub seq: u64,
}

/// `POST /v1/audit/incidents`: an incident the FG opens by hand.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenRequest {
    /// When the breach was discovered; now when absent. Not in the future.
    #[serde(default)]
    pub discovered_at: Option<String>,
    pub description: String,
    #[serde(default)]
    pub disclosures: Vec<Position>,
}

/// `PATCH /v1/audit/incidents/{id}`: one or more steps; absent members stay as they are.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    #[serde(default)]
    pub risk: Option<Risk>,
    #[serde(default)]
    pub notify_ap: Option<bool>,
    #[serde(default)]
    pub ap_notified_at: Option<String>,
    #[serde(default)]
    pub ap_reference: Option<String>,
    #[serde(default)]
    pub subjects_informed: Option<bool>,
    #[serde(default)]
    pub measures: Option<String>,
    #[serde(default)]
    pub add_disclosures: Vec<Position>,
    /// Closes the incident with this note; needs the risk and the AP decision recorded.
    #[serde(default)]
    pub close: Option<String>,
}

fn invalid(detail: impl Into<String>) -> Refusal {
    Refusal::new(ProblemCode::InvalidIncident, detail)
}

/// Text the FG writes: trimmed, not empty, bounded.
fn text(what: &str, t: &str) -> Result<String, Refusal> {
    let t = t.trim();
    if t.is_empty() || t.chars().count() > 4000 {
        return Err(invalid(format!("`{what}` must be 1 to 4000 characters")));
    }
    Ok(t.to_owned())
}

fn time_not_future(what: &str, t: &str, now: i64) -> Result<i64, Refusal> {
    match parse_instant(t, false) {
        Some(ms) if ms <= now + 60_000 => Ok(ms),
        Some(_) => Err(invalid(format!("`{what}` lies in the future"))),
        None => Err(invalid(format!(
            "`{what}` must be an RFC 3339 time like 2026-12-07T10:00:00Z"
        ))),
    }
}

async fn commit(gw: &Gateway, entry: LogEntry, mutation: Mutation) -> Result<(), Refusal> {
    match gw.writer.append(vec![entry], vec![mutation]).await {
        Ok(_) => Ok(()),
        Err(AuditError::Conflict(_)) => Err(Refusal::new(
            ProblemCode::IncidentChanged,
            "the incident was changed by another request meanwhile; read it again and repeat the step",
        )),
        Err(e) => Err(Refusal::audit_unavailable().because(e)),
    }
}

/// Opens an incident by hand.
pub async fn open(gw: &Gateway, officer: &Officer, req: OpenRequest) -> Result<Value, Refusal> {
    let now = now_ms();
    let discovered = match &req.discovered_at {
        Some(t) => time_not_future("discovered_at", t, now)?,
        None => now,
    };
    let description = text("description", &req.description)?;
    let disclosures = own_disclosures(gw, officer, &req.disclosures).await?;
    let organisation = officer.caller().partner().organisation_id().to_owned();
    let mut incident = new_incident(gw, &organisation, Source::Manual, discovered, &disclosures);
    incident.description = Some(description);
    let entry = gw.entry_for(officer.caller(), EventKind::IncidentOpened);
    let (entry, mutation) = change(entry, &mut incident, &["geopend"], None, now)?;
    commit(gw, entry, mutation).await?;
    gw.metrics.incident_opened("manual");
    Ok(incident.to_json(now))
}

/// Records one or more steps of an open incident, or closes it.
pub async fn update(
    gw: &Gateway,
    officer: &Officer,
    id: &str,
    req: UpdateRequest,
) -> Result<Value, Refusal> {
    let now = now_ms();
    let (mut incident, row) = get(gw, officer, id).await?;
    if !incident.is_open() {
        return Err(Refusal::new(
            ProblemCode::IncidentClosed,
            "the incident is closed; open a new one for what came to light since",
        ));
    }
    let mut parts: Vec<&str> = Vec::new();
    if let Some(r) = req.risk {
        incident.risk = Some(r);
        parts.push("risico");
    }
    if let Some(n) = req.notify_ap {
        incident.notify_ap = Some(n);
        parts.push("besluit melding AP");
    }
    if let Some(t) = &req.ap_notified_at {
        time_not_future("ap_notified_at", t, now)?;
        incident.ap_notified_at = Some(t.clone());
        parts.push("gemeld bij de AP");
    }
    if let Some(r) = &req.ap_reference {
        incident.ap_reference = Some(text("ap_reference", r)?);
        parts.push("kenmerk AP");
    }
    if incident.notify_ap == Some(false)
        && (incident.ap_notified_at.is_some() || incident.ap_reference.is_some())
    {
        return Err(invalid(
            "the decision is not to notify the AP, so there is no notification time or AP reference",
        ));
    }
    if let Some(i) = req.subjects_informed {
        incident.subjects_informed = Some(i);
        parts.push("betrokkenen geinformeerd");
    }
    if let Some(m) = &req.measures {
        incident.measures = Some(text("measures", m)?);
        parts.push("maatregelen");
    }
    if !req.add_disclosures.is_empty() {
        let more = own_disclosures(gw, officer, &req.add_disclosures).await?;
        let merged = new_incident(
            gw,
            &incident.organisation,
            incident.source,
            row.discovered_ms,
            &more,
        );
        for a in merged.affected {
            if !incident
                .affected
                .iter()
                .any(|b| b.log_id == a.log_id && b.seq == a.seq)
            {
                incident.affected.push(a);
            }
        }
        for (into, from) in [
            (&mut incident.pupils, merged.pupils),
            (&mut incident.categories, merged.categories),
            (&mut incident.classes, merged.classes),
        ] {
            let mut set: BTreeSet<String> = into.drain(..).collect();
            set.extend(from);
            *into = set.into_iter().collect();
        }
        parts.push("betrokken verstrekkingen");
    }
    let mut event = EventKind::IncidentUpdated;
    if let Some(note) = &req.close {
        if incident.risk.is_none() || incident.notify_ap.is_none() {
            return Err(Refusal::new(
                ProblemCode::IncidentIncomplete,
                "record the risk and the decision whether to notify the AP before closing (AVG 33(5))",
            ));
        }
        if incident.notify_ap == Some(true) && incident.ap_notified_at.is_none() {
            return Err(Refusal::new(
                ProblemCode::IncidentIncomplete,
                "the decision is to notify the AP: record when it was notified before closing",
            ));
        }
        incident.closing_note = Some(text("close", note)?);
        incident.closed_at = Some(format_time(now));
        incident.status = "closed".into();
        event = EventKind::IncidentClosed;
        parts.push("gesloten");
    }
    if parts.is_empty() {
        return Err(invalid("nothing to record: name at least one step"));
    }
    let entry = gw.entry_for(officer.caller(), event);
    let (entry, mutation) = change(entry, &mut incident, &parts, Some(row.updated_ms), now)?;
    commit(gw, entry, mutation).await?;
    Ok(incident.to_json(now))
}

/// The handbook's question "which dossiers did we send to the wrong organisation in this period": the officer's
/// organisation's disclosures to `receiver` in a window, with their log positions to add to an incident.
pub async fn sent_to(
    gw: &Gateway,
    officer: &Officer,
    receiver: &str,
    from_ms: Option<i64>,
    until_ms: Option<i64>,
) -> Result<Value, Refusal> {
    const MAX: usize = 1000;
    let filter = EntryFilter {
        from_ms,
        until_ms,
        organisation: scope_of(officer.caller()),
        event: Some(EventKind::MessageDisclosed.as_str().to_owned()),
        limit: MAX + 1,
        ..EntryFilter::default()
    };
    let rows = gw
        .store
        .query_entries(&filter)
        .await
        .map_err(|e| Refusal::audit_unavailable().because(e))?;
    let truncated = rows.len() > MAX;
    let found: Vec<Value> = rows
        .iter()
        .take(MAX)
        .filter(|r| r.receiver.as_deref() == Some(receiver))
        .filter_map(|r| {
            let e = LogEntry::decode(&r.bytes).ok()?;
            Some(json!({
                "log_id": r.log_id, "seq": r.seq, "time": e.time, "message_id": e.message_id,
                "receiver": r.receiver, "flow_id": r.flow_id, "purpose": r.purpose, "pupil": r.subject,
            }))
        })
        .collect();
    Ok(json!({"disclosures": found, "truncated": truncated}))
}

/// The register as CSV for the AP: one row per incident, no PGN, no payload value.
pub fn csv(incidents: &[Incident]) -> String {
    const HEADER: [&str; 18] = [
        "id",
        "organisatie",
        "bron",
        "status",
        "ontdekt",
        "deadline",
        "verstrekkingen",
        "leerlingen",
        "categorieen",
        "klassen",
        "risico",
        "melding_ap",
        "gemeld_ap_op",
        "kenmerk_ap",
        "betrokkenen_geinformeerd",
        "maatregelen",
        "gesloten_op",
        "slotnotitie",
    ];
    let yn = |b: Option<bool>| match b {
        Some(true) => "ja",
        Some(false) => "nee",
        None => "",
    };
    let mut out = HEADER.join(",");
    out.push_str("\r\n");
    for i in incidents {
        let risk = match i.risk {
            Some(Risk::Geen) => "geen",
            Some(Risk::Laag) => "laag",
            Some(Risk::Hoog) => "hoog",
            None => "",
        };
        let affected: Vec<String> = i
            .affected
            .iter()
            .map(|a| format!("{}#{}", a.log_id, a.seq))
            .collect();
        let row = [
            i.id.clone(),
            i.organisation.clone(),
            i.source.label_nl().to_owned(),
            i.status.clone(),
            i.discovered_at.clone(),
            i.deadline.clone(),
            affected.join(" "),
            i.pupils.len().to_string(),
            i.categories.join(" "),
            i.classes.join(" "),
            risk.to_owned(),
            yn(i.notify_ap).to_owned(),
            i.ap_notified_at.clone().unwrap_or_default(),
            i.ap_reference.clone().unwrap_or_default(),
            yn(i.subjects_informed).to_owned(),
            i.measures.clone().unwrap_or_default(),
            i.closed_at.clone().unwrap_or_default(),
            i.closing_note.clone().unwrap_or_default(),
        ];
        let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concrete_paths_map_to_catalogue_paths() {
        assert_eq!(catalogue_path("toetsen[0].score"), "toetsen[].score");
        assert_eq!(catalogue_path("a[12].b[3].c"), "a[].b[].c");
        assert_eq!(catalogue_path("leerling.naam"), "leerling.naam");
    }
}
