//! One disclosure-log entry and its canonical, versioned encoding.
//!
//! An entry says who disclosed what to whom, why, under which flow, policy and consent — by field *path*
//! and payload *digest*. It must never hold a payload value or a raw pupil identifier (only the keyed pseudonym).

use serde::{Deserialize, Serialize};

pub const ENTRY_VERSION: u32 = 1;

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
}

impl EventKind {
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
        }
    }
}

/// The professional on whose behalf a partner system acted (NEN 7513).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorRef {
    pub id: String,
    pub name: String,
    pub function: String,
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
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub actor: Option<ActorRef>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message_id: Option<String>,
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
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub policy_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agreement_id: Option<String>,
    /// Keyed HMAC pseudonym of the pupil; never the BSN/PGN.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub delivered: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
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

    /// The canonical encoding the Merkle leaf is computed over: compact JSON in declaration order.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a log entry always serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<LogEntry, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_stable_and_round_trips() {
        let mut e = LogEntry::new(EventKind::MessageDisclosed);
        e.seq = 3;
        e.delivered = vec!["leerling.achternaam".into()];
        let bytes = e.encode();
        assert_eq!(LogEntry::decode(&bytes).unwrap(), e);
        assert_eq!(bytes, LogEntry::decode(&bytes).unwrap().encode());
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with(r#"{"v":1,"#), "{text}");
        assert!(text.contains(r#""event":"message-disclosed""#));
    }

    #[test]
    fn unknown_members_are_refused_on_decode() {
        assert!(LogEntry::decode(br#"{"v":1,"log_id":"a","seq":1,"time":"t","event":"policy-loaded","partner":"","organisation":"","cert_fingerprint":"","outcome":"ok","value":"x"}"#).is_err());
    }
}
