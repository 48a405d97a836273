//! The NEN 7513 view of the disclosure log (`GET /v1/audit/disclosures?format=nen7513`, JSON or CSV): per logged event
//! the columns a jeugdhulp auditor expects (NEN 7513:2018 "Logging: vastleggen van acties op elektronische
//! patiëntdossiers"): the event, its date and time, an action code, the outcome, the user and the organisation on
//! whose behalf they acted, the client, the purpose of use and the audit source.
//!
//! A mapping of what the log already holds (documented in policies/README.md): the client is the log's keyed pupil
//! pseudonym, never a PGN; no payload value is in the log, so none is here.

use serde_json::{json, Value};

use super::{csv_cell, ShownEntry};
use crate::audit::entry::{EventKind, LogEntry};

/// The action code of an event: `C` create, `R` read, `U` update, `D` delete, `E` execute/export (a disclosure),
/// with the Dutch words.
pub fn action(event: EventKind) -> (&'static str, &'static str) {
    match event {
        EventKind::MessageDisclosed | EventKind::MessageRefused => ("E", "verstrekken"),
        EventKind::MessageFetched | EventKind::AuditQuery => ("R", "inzien"),
        EventKind::MessageAcknowledged
        | EventKind::MessageExpired
        | EventKind::PayloadPurged
        | EventKind::MessageRecalled
        | EventKind::MessageMisaddressed => ("D", "verwijderen"),
        EventKind::ConsentRecorded | EventKind::ConsentRefused | EventKind::IncidentOpened => {
            ("C", "aanmaken")
        }
        EventKind::ConsentWithdrawn
        | EventKind::PolicyLoaded
        | EventKind::IncidentUpdated
        | EventKind::IncidentClosed => ("U", "wijzigen"),
    }
}

pub const COLUMNS: [&str; 17] = [
    "gebeurtenis",
    "omschrijving",
    "datum_tijd",
    "actiecode",
    "actie",
    "resultaat",
    "gebruiker_id",
    "gebruiker_naam",
    "gebruiker_functie",
    "systeem",
    "organisatie",
    "client",
    "doel",
    "bron",
    "positie",
    "trace_id",
    "transactie_id",
];

fn cells(s: &ShownEntry, e: &LogEntry) -> [String; 17] {
    let event = e.event();
    let (code, words) = action(event);
    let actor = e.actor.as_ref();
    let o = |v: Option<&String>| v.cloned().unwrap_or_default();
    [
        event.as_str().to_owned(),
        event.label_nl().to_owned(),
        e.time.clone(),
        code.to_owned(),
        words.to_owned(),
        if e.outcome == "ok" {
            "geslaagd".to_owned()
        } else {
            format!("mislukt: {}", e.outcome)
        },
        o(actor.map(|a| &a.id)),
        o(actor.map(|a| &a.name)),
        o(actor.map(|a| &a.function)),
        e.partner.clone(),
        e.organisation.clone(),
        o(e.subject.as_ref()),
        o(e.purpose.as_ref()),
        s.log_id.clone(),
        format!("{}#{}", s.log_id, s.seq),
        o(e.trace.as_ref().map(|t| &t.trace_id)),
        o(e.trace.as_ref().map(|t| &t.transaction_id)),
    ]
}

/// One record as JSON (`null` cells are empty strings, as in the CSV); an entry that does not decode is named so.
pub fn record(s: &ShownEntry) -> Value {
    match &s.entry {
        Some(e) => {
            let c = cells(s, e);
            Value::Object(
                COLUMNS
                    .iter()
                    .zip(c)
                    .map(|(k, v)| ((*k).to_owned(), Value::String(v)))
                    .collect(),
            )
        }
        None => {
            json!({"bron": s.log_id, "positie": format!("{}#{}", s.log_id, s.seq), "resultaat": "onleesbaar"})
        }
    }
}

pub fn to_csv(entries: &[ShownEntry]) -> String {
    let mut out = COLUMNS.join(",");
    out.push_str("\r\n");
    for s in entries {
        let row: Vec<String> = match &s.entry {
            Some(e) => cells(s, e).iter().map(|c| csv_cell(c)).collect(),
            None => {
                let mut row = vec![String::new(); COLUMNS.len()];
                row[5] = "onleesbaar".into();
                row[13] = s.log_id.clone();
                row[14] = format!("{}#{}", s.log_id, s.seq);
                row
            }
        };
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_has_an_action_code() {
        for k in EventKind::ALL {
            let (code, words) = action(k);
            assert!(["C", "R", "U", "D", "E"].contains(&code), "{k:?}");
            assert!(!words.is_empty());
        }
        assert_eq!(action(EventKind::MessageDisclosed).0, "E");
        assert_eq!(action(EventKind::MessageFetched).0, "R");
    }
}
