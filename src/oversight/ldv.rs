//! The Logboek Dataverwerkingen export (Logius LDV 1.0, component Logboek): one record per processing per data
//! subject, in the standard's field names, as JSON lines (`GET /v1/audit/export?format=ldv`).
//!
//! What a record holds, from the log: `trace_id`, `span_id` and `parent_span_id` (the request's trace context; for
//! an entry without one, ids derived from its log position), `name` (the event), `status` (`Ok`, or `Unset` for a
//! refusal, which the standard counts as handled without error), `start_time` = `end_time` (the entry's time),
//! `resource` (this gateway and the entry's place in its log) and the `dpl.core` attributes: the flow's
//! `processing_activity_id`, the pupil as the log's keyed pseudonym and its type, and the calling partner's span as
//! `dpl.core.foreign_operation.span_id`. Nothing the standard leaves to the register: no employee identity, no purpose
//! or legal basis, and never a value or a PGN. Entries about no pupil are no processing of a data subject's data and
//! are left out.

use ring::digest;
use serde_json::{json, Map, Value};

use super::ShownEntry;

/// The type of `dpl.core.data_subject_id`: a URI naming the log's keyed pupil pseudonym.
pub const SUBJECT_ID_TYPE: &str = "urn:nl:ketenpoort:pseudoniem-leerling";

/// Hex of the first `n` bytes of SHA-256 over `tag` and the entry's position: stable ids for an entry that carries
/// no trace context (older entries, the gateway's own).
fn derived(tag: &str, s: &ShownEntry, n: usize) -> String {
    let d = digest::digest(
        &digest::SHA256,
        format!("{tag}:{}#{}", s.log_id, s.seq).as_bytes(),
    );
    hex::encode(&d.as_ref()[..n])
}

/// The LDV record of one entry, or `None` when it is about no pupil or names no processing activity.
pub fn record(s: &ShownEntry) -> Option<Value> {
    let e = s.entry.as_ref()?;
    let subject = e.subject.as_ref()?;
    let activity = e.processing_activity_id.as_ref()?;
    let (trace_id, span_id, parent) = match &e.trace {
        Some(t) => (
            t.trace_id.clone(),
            t.span_id.clone(),
            t.parent_span_id.clone(),
        ),
        None => (derived("trace", s, 16), derived("span", s, 8), None),
    };
    let mut attributes = Map::new();
    attributes.insert("dpl.core.processing_activity_id".into(), json!(activity));
    attributes.insert("dpl.core.data_subject_id".into(), json!(subject));
    attributes.insert(
        "dpl.core.data_subject_id_type".into(),
        json!(SUBJECT_ID_TYPE),
    );
    if let Some(p) = &parent {
        attributes.insert("dpl.core.foreign_operation.span_id".into(), json!(p));
    }
    let mut r = Map::new();
    r.insert("trace_id".into(), json!(trace_id));
    r.insert("span_id".into(), json!(span_id));
    if let Some(p) = parent {
        r.insert("parent_span_id".into(), json!(p));
    }
    r.insert("name".into(), json!(e.event().as_str()));
    r.insert(
        "status".into(),
        json!(if e.outcome == "ok" { "Ok" } else { "Unset" }),
    );
    r.insert("start_time".into(), json!(e.time));
    r.insert("end_time".into(), json!(e.time));
    r.insert(
        "resource".into(),
        json!({"attributes": {
            "service.name": "ketenpoort",
            "service.version": env!("CARGO_PKG_VERSION"),
            "ketenpoort.log_id": s.log_id,
            "ketenpoort.seq": s.seq,
        }}),
    );
    r.insert("attributes".into(), Value::Object(attributes));
    Some(Value::Object(r))
}

/// JSON lines: one record a line.
pub fn to_json_lines(entries: &[ShownEntry]) -> String {
    let mut out = String::new();
    for v in entries.iter().filter_map(record) {
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}
