//! One disclosure-log entry and its canonical, versioned encoding.
//!
//! An entry says who disclosed what to whom, why, under which flow, policy and consent — by field *path*
//! and payload *digest*. It must never hold a payload value or a raw pupil identifier (only the keyed pseudonym).
//!
//! Stored encodings (compact JSON, members in declaration order, readable as they are):
//! - version 1: `"delivered":["leerling.achternaam",...]`, `"withheld":[{"field":"...","reason":"..."},...]`;
//! - version 2 (written since): the same members, with the two lists compacted losslessly and in order:
//!   consecutive delivered paths with the same first segment as one `{"leerling":["achternaam","voornamen"]}`
//!   (a path on its own stays a string), and consecutive withheld fields with the same reason as one
//!   `{"reason":"...","fields":["diagnoses[0].omschrijving","diagnoses[0].datum"]}` (the reason text once).
//!
//! Optional members are omitted when absent in both layouts. A member added later (`receiver_retention`) is
//! therefore no new version: every entry written before it has none and encodes to the bytes it was stored as.
//!
//! In memory both decode to the same `LogEntry` (only `v` differs); `encode` writes the layout of the entry's
//! `v`, so an entry read back encodes to the bytes it was stored as. Stored bytes are never re-encoded: the
//! Merkle leaf is over the bytes as stored. `LogEntry`'s own serde form (the audit API's JSON) keeps the
//! version-1 lists.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The version new entries are written in.
pub const ENTRY_VERSION: u32 = 2;
/// The versions `decode` reads.
pub const ENTRY_VERSIONS: [u32; 2] = [1, 2];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    MessageDisclosed,
    MessageRefused,
    MessageFetched,
    MessageAcknowledged,
    ConsentRecorded,
    ConsentWithdrawn,
    ConsentRefused,
    PolicyLoaded,
    AuditQuery,
    PayloadPurged,
    MessageExpired,
    MessageRecalled,
    MessageMisaddressed,
    IncidentOpened,
    IncidentUpdated,
    IncidentClosed,
}

impl EventKind {
    /// Every kind, in the order the audit API and the console list them.
    pub const ALL: [EventKind; 16] = [
        EventKind::MessageDisclosed,
        EventKind::MessageRefused,
        EventKind::MessageFetched,
        EventKind::MessageAcknowledged,
        EventKind::MessageExpired,
        EventKind::PayloadPurged,
        EventKind::MessageRecalled,
        EventKind::MessageMisaddressed,
        EventKind::IncidentOpened,
        EventKind::IncidentUpdated,
        EventKind::IncidentClosed,
        EventKind::ConsentRecorded,
        EventKind::ConsentWithdrawn,
        EventKind::ConsentRefused,
        EventKind::PolicyLoaded,
        EventKind::AuditQuery,
    ];

    /// The kind named `s` (its `as_str` and serde form), if any.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The Dutch label the privacy officer's console shows.
    pub fn label_nl(self) -> &'static str {
        match self {
            EventKind::MessageDisclosed => "verstrekt",
            EventKind::MessageRefused => "geweigerd",
            EventKind::MessageFetched => "opgehaald",
            EventKind::MessageAcknowledged => "ontvangst bevestigd",
            EventKind::ConsentRecorded => "toestemming vastgelegd",
            EventKind::ConsentWithdrawn => "toestemming ingetrokken",
            EventKind::ConsentRefused => "toestemming geweigerd",
            EventKind::PolicyLoaded => "beleid geladen",
            EventKind::AuditQuery => "auditvraag",
            EventKind::PayloadPurged => "inhoud verwijderd",
            EventKind::MessageExpired => "verlopen, niet opgehaald",
            EventKind::MessageRecalled => "teruggeroepen door de verzender",
            EventKind::MessageMisaddressed => "gemeld als niet voor ons",
            EventKind::IncidentOpened => "datalek geopend",
            EventKind::IncidentUpdated => "datalek bijgewerkt",
            EventKind::IncidentClosed => "datalek gesloten",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::MessageDisclosed => "message-disclosed",
            EventKind::MessageRefused => "message-refused",
            EventKind::MessageFetched => "message-fetched",
            EventKind::MessageAcknowledged => "message-acknowledged",
            EventKind::ConsentRecorded => "consent-recorded",
            EventKind::ConsentWithdrawn => "consent-withdrawn",
            EventKind::ConsentRefused => "consent-refused",
            EventKind::PolicyLoaded => "policy-loaded",
            EventKind::AuditQuery => "audit-query",
            EventKind::PayloadPurged => "payload-purged",
            EventKind::MessageExpired => "message-expired",
            EventKind::MessageRecalled => "message-recalled",
            EventKind::MessageMisaddressed => "message-misaddressed",
            EventKind::IncidentOpened => "incident-opened",
            EventKind::IncidentUpdated => "incident-updated",
            EventKind::IncidentClosed => "incident-closed",
        }
    }
}

#[cfg(test)]
mod event_kind_tests {
    use super::EventKind;

    /// The position of `k` in `EventKind::ALL`. No wildcard arm: a new variant stops this compiling until it is
    /// given the next index (and added to `ALL`, which the test below then checks).
    fn index(k: EventKind) -> usize {
        match k {
            EventKind::MessageDisclosed => 0,
            EventKind::MessageRefused => 1,
            EventKind::MessageFetched => 2,
            EventKind::MessageAcknowledged => 3,
            EventKind::MessageExpired => 4,
            EventKind::PayloadPurged => 5,
            EventKind::MessageRecalled => 6,
            EventKind::MessageMisaddressed => 7,
            EventKind::IncidentOpened => 8,
            EventKind::IncidentUpdated => 9,
            EventKind::IncidentClosed => 10,
            EventKind::ConsentRecorded => 11,
            EventKind::ConsentWithdrawn => 12,
            EventKind::ConsentRefused => 13,
            EventKind::PolicyLoaded => 14,
            EventKind::AuditQuery => 15,
        }
    }

    #[test]
    fn all_lists_every_kind_once_and_each_round_trips_with_a_label() {
        for (i, k) in EventKind::ALL.into_iter().enumerate() {
            assert_eq!(index(k), i, "{k:?}: ALL lists every variant once, in order");
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            let serde_form = serde_json::to_value(k).unwrap();
            assert_eq!(serde_form, k.as_str(), "serde and as_str agree");
            assert_eq!(serde_json::from_value::<EventKind>(serde_form).unwrap(), k);
            assert!(!k.label_nl().trim().is_empty(), "{k:?} has a label");
        }
        assert_eq!(EventKind::parse("message-stolen"), None);
        assert_eq!(EventKind::parse("Message-Disclosed"), None);
    }
}

/// The trace context of the request an entry records (W3C trace context and the FSC transaction id), so one exchange
/// can be followed across organisations. Random ids: no pupil, partner or payload information.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceRef {
    pub trace_id: String,
    /// The gateway's span for the request.
    pub span_id: String,
    /// The caller's span, when it sent a `traceparent`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub parent_span_id: Option<String>,
    pub transaction_id: String,
}

/// The professional on whose behalf a partner system acted (NEN 7513).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorRef {
    pub id: String,
    pub name: String,
    pub function: String,
}

/// How long the receiver keeps what it received, as the flow told it (`[flow.retention]` `receiver_text` and
/// `receiver_days`). Recorded in a disclosure entry; the gateway does not enforce it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverRetention {
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithheldField {
    pub field: String,
    pub reason: String,
}

/// A log entry. `log_id`, `seq` and `time` are set by the log writer when the entry is appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    pub v: u32,
    pub log_id: String,
    pub seq: u64,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub event: Option<EventKind>,
    /// Partner (system) that made the request.
    pub partner: String,
    /// Its organisation (differs from `partner` for privacy-officer functions).
    pub organisation: String,
    /// SHA-256 fingerprint (hex) of the verified client certificate.
    pub cert_fingerprint: String,
    /// The request's trace context (entries written since trace contexts; absent in older ones and in the gateway's
    /// own entries).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trace: Option<TraceRef>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub actor: Option<ActorRef>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message_id: Option<String>,
    /// The kerngroep case (P13) this entry is one recipient's part of: a UUID the sender chose (entries written since
    /// kerngroep cases; absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub case_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sender: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub receiver: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub receiver_role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub purpose: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub legal_basis: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub flow_id: Option<String>,
    /// The flow's entry in the register of processing activities (a versioned URI), as in force then.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub processing_activity_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub policy_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agreement_id: Option<String>,
    /// The receiver's retention period the flow set (disclosures since the two retentions; omitted when absent, so
    /// older entries encode as they were stored).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub receiver_retention: Option<ReceiverRetention>,
    /// Keyed HMAC pseudonym of the pupil; never the BSN/PGN.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subject: Option<String>,
    /// Field paths delivered (stored grouped by first segment since version 2).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        default,
        deserialize_with = "de_delivered"
    )]
    pub delivered: Vec<String>,
    /// Field paths withheld, each with its reason (stored grouped by reason since version 2).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        default,
        deserialize_with = "de_withheld"
    )]
    pub withheld: Vec<WithheldField>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub consents: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub justification: Option<String>,
    /// SHA-256 (hex) of the delivered payload as stored for the receiver.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub payload_digest: Option<String>,
    /// `ok`, or the refusal code.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
}

impl LogEntry {
    pub fn new(event: EventKind) -> LogEntry {
        LogEntry {
            v: ENTRY_VERSION,
            event: Some(event),
            outcome: "ok".into(),
            ..LogEntry::default()
        }
    }

    pub fn event(&self) -> EventKind {
        self.event.unwrap_or(EventKind::MessageRefused)
    }

    /// The canonical encoding the Merkle leaf is computed over: compact JSON in declaration order, in the layout
    /// of `self.v` (version 1 for an entry read as version 1, else version 2; see the module comment).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_at(&self.log_id, self.seq, &self.time)
    }

    /// The bytes `encode` gives for this entry placed at `seq` of `log_id` at `time`, without copying the entry
    /// to set them (the log writer's hot path).
    pub fn encode_at(&self, log_id: &str, seq: u64, time: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(2048);
        let written = if self.v == 1 {
            let mut placed = self.clone();
            placed.log_id = log_id.to_owned();
            placed.seq = seq;
            placed.time = time.to_owned();
            serde_json::to_writer(&mut out, &placed)
        } else {
            serde_json::to_writer(
                &mut out,
                &V2 {
                    e: self,
                    log_id,
                    seq,
                    time,
                },
            )
        };
        written.expect("a log entry always serialises");
        out
    }

    /// Decodes a stored entry of any version in `ENTRY_VERSIONS`.
    pub fn decode(bytes: &[u8]) -> Result<LogEntry, serde_json::Error> {
        let e: LogEntry = serde_json::from_slice(bytes)?;
        if !ENTRY_VERSIONS.contains(&e.v) {
            return Err(de::Error::custom(format_args!(
                "unsupported log entry version {}",
                e.v
            )));
        }
        Ok(e)
    }
}

/// The version-2 layout of an entry: `LogEntry`'s members in the same order and with the same omissions, the
/// two lists grouped.
struct V2<'a> {
    e: &'a LogEntry,
    log_id: &'a str,
    seq: u64,
    time: &'a str,
}

impl Serialize for V2<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.e;
        let mut m = s.serialize_struct("LogEntry", 31)?;
        macro_rules! opt {
            ($name:literal, $field:expr) => {
                match &$field {
                    Some(v) => m.serialize_field($name, v)?,
                    None => m.skip_field($name)?,
                }
            };
        }
        m.serialize_field("v", &e.v)?;
        m.serialize_field("log_id", self.log_id)?;
        m.serialize_field("seq", &self.seq)?;
        m.serialize_field("time", self.time)?;
        m.serialize_field("event", &e.event)?;
        m.serialize_field("partner", &e.partner)?;
        m.serialize_field("organisation", &e.organisation)?;
        m.serialize_field("cert_fingerprint", &e.cert_fingerprint)?;
        opt!("trace", e.trace);
        opt!("actor", e.actor);
        opt!("message_id", e.message_id);
        opt!("case_id", e.case_id);
        opt!("sender", e.sender);
        opt!("receiver", e.receiver);
        opt!("receiver_role", e.receiver_role);
        opt!("message_type", e.message_type);
        opt!("purpose", e.purpose);
        opt!("legal_basis", e.legal_basis);
        opt!("flow_id", e.flow_id);
        opt!("processing_activity_id", e.processing_activity_id);
        opt!("policy_hash", e.policy_hash);
        opt!("agreement_id", e.agreement_id);
        opt!("receiver_retention", e.receiver_retention);
        opt!("subject", e.subject);
        if e.delivered.is_empty() {
            m.skip_field("delivered")?;
        } else {
            m.serialize_field("delivered", &GroupedPaths(&e.delivered))?;
        }
        if e.withheld.is_empty() {
            m.skip_field("withheld")?;
        } else {
            m.serialize_field("withheld", &GroupedReasons(&e.withheld))?;
        }
        if e.consents.is_empty() {
            m.skip_field("consents")?;
        } else {
            m.serialize_field("consents", &e.consents)?;
        }
        opt!("justification", e.justification);
        opt!("payload_digest", e.payload_digest);
        m.serialize_field("outcome", &e.outcome)?;
        opt!("detail", e.detail);
        m.end()
    }
}

/// A path's first segment and the rest (`leerling.adres.straat` -> `leerling`, `adres.straat`).
fn first_segment(path: &str) -> Option<(&str, &str)> {
    path.split_once('.')
}

/// The length of the run of paths at the start of `paths` that share their first segment (at least 1).
fn segment_run(paths: &[String]) -> usize {
    let Some((head, _)) = paths.first().and_then(|p| first_segment(p)) else {
        return 1;
    };
    1 + paths[1..]
        .iter()
        .take_while(|p| first_segment(p).is_some_and(|(h, _)| h == head))
        .count()
}

/// Version-2 delivered paths: a run of two or more paths with the same first segment as `{"segment":[rests]}`,
/// any other path as its string.
struct GroupedPaths<'a>(&'a [String]);

impl Serialize for GroupedPaths<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        let mut rest = self.0;
        while !rest.is_empty() {
            let n = segment_run(rest);
            let (run, tail) = rest.split_at(n);
            if n == 1 {
                seq.serialize_element(&run[0])?;
            } else {
                seq.serialize_element(&PathGroup(run))?;
            }
            rest = tail;
        }
        seq.end()
    }
}

struct PathGroup<'a>(&'a [String]);

impl Serialize for PathGroup<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let head = first_segment(&self.0[0]).map_or("", |(h, _)| h);
        let rests: Vec<&str> = self
            .0
            .iter()
            .map(|p| first_segment(p).map_or("", |(_, r)| r))
            .collect();
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(head, &rests)?;
        m.end()
    }
}

/// Version-2 withheld fields: each run of consecutive fields with the same reason as `{"reason":..,"fields":[..]}`.
struct GroupedReasons<'a>(&'a [WithheldField]);

impl Serialize for GroupedReasons<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Group<'a> {
            reason: &'a str,
            fields: Vec<&'a str>,
        }
        let mut seq = s.serialize_seq(None)?;
        let mut rest = self.0;
        while let Some(first) = rest.first() {
            let n = rest.iter().take_while(|w| w.reason == first.reason).count();
            let (run, tail) = rest.split_at(n);
            seq.serialize_element(&Group {
                reason: &first.reason,
                fields: run.iter().map(|w| w.field.as_str()).collect(),
            })?;
            rest = tail;
        }
        seq.end()
    }
}

/// Delivered paths in either layout: strings (version 1, and single paths of version 2) and
/// `{"segment":["rest",...]}` groups (version 2), expanded in order.
fn de_delivered<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Item(Vec<String>);
    impl<'de> Deserialize<'de> for Item {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Item, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Item;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a field path or {\"segment\": [paths under it]}")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Item, E> {
                    Ok(Item(vec![v.to_owned()]))
                }
                fn visit_string<E: de::Error>(self, v: String) -> Result<Item, E> {
                    Ok(Item(vec![v]))
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Item, A::Error> {
                    let mut out = Vec::new();
                    while let Some((head, rests)) = m.next_entry::<String, Vec<String>>()? {
                        if rests.is_empty() {
                            return Err(de::Error::custom("an empty group of delivered paths"));
                        }
                        out.extend(rests.into_iter().map(|r| format!("{head}.{r}")));
                    }
                    if out.is_empty() {
                        return Err(de::Error::custom("an empty group of delivered paths"));
                    }
                    Ok(Item(out))
                }
            }
            d.deserialize_any(V)
        }
    }
    let items: Vec<Item> = Deserialize::deserialize(d)?;
    Ok(items.into_iter().flat_map(|i| i.0).collect())
}

/// Withheld fields in either layout: `{"field","reason"}` (version 1) or `{"reason","fields":[...]}` (version 2).
fn de_withheld<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<WithheldField>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<WithheldField>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of withheld fields")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Item {
                #[serde(default)]
                field: Option<String>,
                reason: String,
                #[serde(default)]
                fields: Option<Vec<String>>,
            }
            let mut out = Vec::new();
            while let Some(item) = s.next_element::<Item>()? {
                match (item.field, item.fields) {
                    (Some(field), None) => out.push(WithheldField {
                        field,
                        reason: item.reason,
                    }),
                    (None, Some(fields)) if !fields.is_empty() => {
                        out.extend(fields.into_iter().map(|field| WithheldField {
                            field,
                            reason: item.reason.clone(),
                        }))
                    }
                    _ => {
                        return Err(de::Error::custom(
                            "a withheld item names either one field or a non-empty list of fields",
                        ))
                    }
                }
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A P1 disclosure entry exactly as the gateway wrote it in version 1 (2026-12-02). The file holds the
    /// entry's bytes and nothing else (no final newline).
    const P1_V1: &str = include_str!("fixtures/p1_v1_entry.json");

    #[test]
    fn encoding_is_stable_and_round_trips() {
        let mut e = LogEntry::new(EventKind::MessageDisclosed);
        e.seq = 3;
        e.delivered = vec!["leerling.achternaam".into()];
        let bytes = e.encode();
        assert_eq!(LogEntry::decode(&bytes).unwrap(), e);
        assert_eq!(bytes, LogEntry::decode(&bytes).unwrap().encode());
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with(r#"{"v":2,"#), "{text}");
        assert!(text.contains(r#""event":"message-disclosed""#));
    }

    #[test]
    fn an_entry_encoded_at_a_position_is_the_entry_placed_there() {
        for v in [1, ENTRY_VERSION] {
            let mut e = LogEntry::decode(P1_V1.as_bytes()).unwrap();
            e.v = v;
            let bytes = e.encode_at("ketenpoort-0123456789ab", 77, "2026-12-02T19:00:00.000Z");
            let mut placed = e.clone();
            placed.log_id = "ketenpoort-0123456789ab".into();
            placed.seq = 77;
            placed.time = "2026-12-02T19:00:00.000Z".into();
            assert_eq!(bytes, placed.encode(), "version {v}");
            assert_eq!(LogEntry::decode(&bytes).unwrap(), placed, "version {v}");
        }
    }

    #[test]
    fn a_version_1_entry_decodes_to_the_same_entry_as_its_version_2_encoding() {
        let v1 = LogEntry::decode(P1_V1.as_bytes()).unwrap();
        assert_eq!(v1.v, 1);
        assert_eq!(v1.delivered.len(), 41);
        assert_eq!(v1.withheld.len(), 9);
        // Read back, a version-1 entry encodes to the bytes it was stored as.
        assert_eq!(v1.encode(), P1_V1.as_bytes());

        let mut e = v1.clone();
        e.v = ENTRY_VERSION;
        let bytes = e.encode();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            text.starts_with(r#"{"v":2,"log_id":"ketenpoort-491d339fcb82","seq":1,"#),
            "{text}"
        );
        let v2 = LogEntry::decode(&bytes).unwrap();
        assert_eq!(v2, e);
        assert_eq!(LogEntry { v: 1, ..v2 }, v1, "only the version differs");
        // Canonical: decoding and encoding again gives the same bytes.
        assert_eq!(LogEntry::decode(&bytes).unwrap().encode(), bytes);
        // Readable as it is: each reason once, before its fields; paths under their first segment.
        assert!(text.contains(r#""withheld":[{"reason":"deny: alleen de categorie van een diagnose hoort in het onderwijskundig rapport","fields":["diagnoses[0].omschrijving","diagnoses[0].datum"]},{"reason":"deny: alleen het zorgpunt, niet de details van de thuissituatie","fields":["thuissituatie.details"]},{"reason":"consent-missing: no valid consent covers this field's category","fields":["bijlagen[0].titel","bijlagen[0].mediatype","bijlagen[0].inhoud"]},"#), "{text}");
        assert!(text.contains(r#""delivered":[{"leerling":["achternaam","voornamen","roepnaam","geslacht","geboortedatum","adres.straat","adres.huisnummer","adres.postcode","adres.plaats","telefoon"]},{"ouders[0]":["naam","relatie","telefoon","email"]},"#), "{text}");
        assert!(text.contains(r#"{"ondersteuning":["belemmeringen","arrangementen","opp"]},"diagnoses[0].categorie","thuissituatie.zorgpunt","verzuim.relatief_uren_12mnd"],"#), "{text}");
        // Every other member is as it was, in the same place.
        let strip = |t: &str| {
            let v: serde_json::Value = serde_json::from_str(t).unwrap();
            let mut m = v.as_object().unwrap().clone();
            m.remove("v");
            m.remove("delivered");
            m.remove("withheld");
            m.into_iter().collect::<Vec<_>>()
        };
        assert_eq!(strip(text), strip(P1_V1));
        assert!(
            bytes.len() * 100 < P1_V1.len() * 85,
            "{} against {}",
            bytes.len(),
            P1_V1.len()
        );
    }

    /// A P1 disclosure entry exactly as the gateway wrote it in version 2, before `receiver_retention` existed.
    const P1_V2: &str = include_str!("fixtures/p1_v2_entry.json");

    #[test]
    fn the_receiver_retention_member_is_omitted_when_absent_so_older_entries_keep_their_bytes() {
        for stored in [P1_V1, P1_V2] {
            let e = LogEntry::decode(stored.as_bytes()).unwrap();
            assert_eq!(e.receiver_retention, None);
            assert_eq!(
                e.encode(),
                stored.as_bytes(),
                "read back, it encodes as stored"
            );
        }
        let mut e = LogEntry::decode(P1_V2.as_bytes()).unwrap();
        e.receiver_retention = Some(ReceiverRetention {
            text: "in het leerlingdossier".into(),
            days: None,
        });
        let bytes = e.encode();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            text.contains(r#""receiver_retention":{"text":"in het leerlingdossier"},"subject":"#),
            "{text}"
        );
        assert_eq!(LogEntry::decode(&bytes).unwrap(), e);
        e.receiver_retention = Some(ReceiverRetention {
            text: "5 jaar".into(),
            days: Some(1825),
        });
        for v in [1, ENTRY_VERSION] {
            e.v = v;
            let bytes = e.encode();
            let text = std::str::from_utf8(&bytes).unwrap();
            assert!(
                text.contains(r#""receiver_retention":{"text":"5 jaar","days":1825}"#),
                "{text}"
            );
            let back = LogEntry::decode(&bytes).unwrap();
            assert_eq!(back, e);
            assert_eq!(back.encode(), bytes);
        }
        // Nothing but the period: an unknown member inside it is refused like one outside.
        let with = |r: &str| {
            LogEntry::decode(format!(r#"{{"v":2,"log_id":"a","seq":1,"time":"t","event":"message-disclosed","partner":"","organisation":"","cert_fingerprint":"","receiver_retention":{r},"outcome":"ok"}}"#).as_bytes())
        };
        assert!(with(r#"{"text":"x"}"#).is_ok());
        assert!(with(r#"{"text":"x","value":"y"}"#).is_err());
        assert!(with(r#"{"days":3}"#).is_err());
    }

    #[test]
    fn the_grouping_keeps_the_order_of_fields_and_paths() {
        let w = |f: &str, r: &str| WithheldField {
            field: f.into(),
            reason: r.into(),
        };
        let mut e = LogEntry::new(EventKind::MessageRefused);
        e.delivered = [
            "a.x",
            "b.y",
            "a.z",
            "a.w",
            "top",
            "a.",
            ".x",
            ".y",
            "a..b",
            "a.b.c",
            "toetsen[0].naam",
            "toetsen[1].naam",
        ]
        .map(String::from)
        .to_vec();
        e.withheld = vec![
            w("a", "r1"),
            w("b", "r2"),
            w("c", "r1"),
            w("d", "r1"),
            w("e", ""),
        ];
        e.consents = vec!["c-1".into()];
        let bytes = e.encode();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains(r#""delivered":["a.x","b.y",{"a":["z","w"]},"top","a.",{"":["x","y"]},{"a":[".b","b.c"]},"toetsen[0].naam","toetsen[1].naam"]"#), "{text}");
        assert!(text.contains(r#""withheld":[{"reason":"r1","fields":["a"]},{"reason":"r2","fields":["b"]},{"reason":"r1","fields":["c","d"]},{"reason":"","fields":["e"]}]"#), "{text}");
        let back = LogEntry::decode(&bytes).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.encode(), bytes);
    }

    /// Version 2 is written member by member (`V2`): a member added to `LogEntry` but not there would be dropped from
    /// the bytes the log hashes.
    #[test]
    fn every_member_survives_the_version_2_layout() {
        let some = |s: &str| Some(s.to_owned());
        let e = LogEntry {
            v: ENTRY_VERSION,
            log_id: "l".into(),
            seq: 1,
            time: "t".into(),
            event: Some(EventKind::MessageDisclosed),
            partner: "p".into(),
            organisation: "o".into(),
            cert_fingerprint: "f".into(),
            trace: Some(TraceRef {
                trace_id: "t".into(),
                span_id: "s".into(),
                parent_span_id: some("ps"),
                transaction_id: "x".into(),
            }),
            actor: Some(ActorRef {
                id: "i".into(),
                name: "n".into(),
                function: "f".into(),
            }),
            message_id: some("m"),
            case_id: some("c"),
            sender: some("s"),
            receiver: some("r"),
            receiver_role: some("rr"),
            message_type: some("mt"),
            purpose: some("pu"),
            legal_basis: some("lb"),
            flow_id: some("fl"),
            processing_activity_id: some("pa"),
            policy_hash: some("ph"),
            agreement_id: some("ag"),
            receiver_retention: Some(ReceiverRetention {
                text: "rt".into(),
                days: Some(3),
            }),
            subject: some("su"),
            delivered: vec!["a.b".into()],
            withheld: vec![WithheldField {
                field: "c".into(),
                reason: "r".into(),
            }],
            consents: vec!["k".into()],
            justification: some("j"),
            payload_digest: some("d"),
            outcome: "ok".into(),
            detail: some("de"),
        };
        let back = LogEntry::decode(&e.encode()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn decoding_refuses_what_no_version_wrote() {
        let decode = |members: &str| {
            LogEntry::decode(format!(r#"{{"v":2,"log_id":"a","seq":1,"time":"t","event":"policy-loaded","partner":"","organisation":"","cert_fingerprint":"",{members}"outcome":"ok"}}"#).as_bytes())
        };
        assert!(decode("").is_ok());
        assert!(decode(r#""withheld":[{"reason":"r","fields":["a"]}],"#).is_ok());
        for bad in [
            r#""withheld":[{"reason":"r","fields":[]}],"#,
            r#""withheld":[{"reason":"r"}],"#,
            r#""withheld":[{"reason":"r","field":"a","fields":["b"]}],"#,
            r#""withheld":[{"reason":"r","fields":["a"],"value":"x"}],"#,
            r#""withheld":[{"field":"a"}],"#,
            r#""delivered":[{"a":[]}],"#,
            r#""delivered":[{}],"#,
            r#""delivered":[1],"#,
            r#""delivered":[{"a":"b"}],"#,
            r#""value":"x","#,
        ] {
            assert!(decode(bad).is_err(), "{bad}");
        }
        let e = LogEntry::decode(br#"{"v":3,"log_id":"a","seq":1,"time":"t","event":"policy-loaded","partner":"","organisation":"","cert_fingerprint":"","outcome":"ok"}"#);
        assert!(e.unwrap_err().to_string().contains("version 3"));
    }

    #[test]
    fn unknown_members_are_refused_on_decode() {
        assert!(LogEntry::decode(br#"{"v":1,"log_id":"a","seq":1,"time":"t","event":"policy-loaded","partner":"","organisation":"","cert_fingerprint":"","outcome":"ok","value":"x"}"#).is_err());
    }

    proptest::proptest! {
        #[test]
        fn every_entry_round_trips_in_both_versions(
            delivered in proptest::collection::vec("[ab.]{0,4}", 0..12),
            withheld in proptest::collection::vec(("[ab.]{0,3}", "[rs]{0,2}"), 0..8),
            v in 1u32..=2,
        ) {
            let mut e = LogEntry::new(EventKind::MessageDisclosed);
            e.v = v;
            e.delivered = delivered;
            e.withheld = withheld
                .into_iter()
                .map(|(field, reason)| WithheldField { field, reason })
                .collect();
            let bytes = e.encode();
            let back = LogEntry::decode(&bytes).unwrap();
            proptest::prop_assert_eq!(&back, &e);
            proptest::prop_assert_eq!(back.encode(), bytes);
        }
    }
}
