//! W3C trace context (`traceparent`) and the FSC transaction id (`Fsc-Transaction-Id`) of a partner request, so one
//! exchange can be followed across organisations and in the log.
//!
//! A partner may send both; a malformed one is refused (400), never guessed at. What is absent is created: a new
//! trace id, and the transaction id as a UUIDv7 as the Dutch FSC profile requires. The gateway's own work is a new
//! span in the caller's trace. These ids are random: they carry no pupil, partner or payload information, and they
//! are never taken as identity.

use ring::rand::{SecureRandom, SystemRandom};

use crate::refusal::{ProblemCode, Refusal};

/// The trace context of one request, as the gateway continues it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The caller's span (16 hex digits), when it sent a `traceparent`.
    pub parent_span_id: Option<String>,
    /// The gateway's span for this request (16 hex digits).
    pub span_id: String,
    /// The caller's trace flags (2 hex digits), `01` (sampled) when it sent none.
    pub flags: String,
    /// The FSC transaction id: a UUID, version 7 when the gateway made it.
    pub transaction_id: String,
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    SystemRandom::new().fill(&mut b).expect("system randomness");
    hex::encode(b)
}

fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn invalid_traceparent() -> Refusal {
    Refusal::new(
        ProblemCode::InvalidTraceContext,
        "traceparent must be 00-<32 lowercase hex trace id, not all zero>-<16 lowercase hex parent id, not all zero>-<2 hex flags> (W3C Trace Context)",
    )
}

/// `(trace id, parent span id, flags)` of a `traceparent` header (version 00).
fn parse_traceparent(v: &str) -> Result<(String, String, String), Refusal> {
    let mut parts = v.split('-');
    let (Some(version), Some(trace), Some(parent), Some(flags), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(invalid_traceparent());
    };
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    if version != "00"
        || !lower_hex(trace, 32)
        || zero(trace)
        || !lower_hex(parent, 16)
        || zero(parent)
        || !lower_hex(flags, 2)
    {
        return Err(invalid_traceparent());
    }
    Ok((trace.to_owned(), parent.to_owned(), flags.to_owned()))
}

/// A UUID in its canonical form (8-4-4-4-12 hex digits); the FSC profile's transaction ids are version 7.
fn valid_transaction_id(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
        && b[14] == b'7'
        && matches!(b[19].to_ascii_lowercase(), b'8' | b'9' | b'a' | b'b')
}

/// A new UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, the version, 74 random bits and the variant.
pub fn new_uuid_v7(unix_ms: i64) -> String {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b[6..])
        .expect("system randomness");
    b[..6].copy_from_slice(&(unix_ms.max(0) as u64).to_be_bytes()[2..]);
    b[6] = 0x70 | (b[6] & 0x0f);
    b[8] = 0x80 | (b[8] & 0x3f);
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

impl TraceContext {
    /// The request's context from its headers (raw values; `None` when absent), creating what is absent.
    pub fn from_headers(
        traceparent: Option<&[u8]>,
        transaction_id: Option<&[u8]>,
        unix_ms: i64,
    ) -> Result<TraceContext, Refusal> {
        let (trace_id, parent_span_id, flags) = match traceparent {
            Some(raw) => {
                let v = std::str::from_utf8(raw).map_err(|_| invalid_traceparent())?;
                let (t, p, f) = parse_traceparent(v.trim())?;
                (t, Some(p), f)
            }
            None => (random_hex(16), None, "01".to_owned()),
        };
        let transaction_id = match transaction_id {
            Some(raw) => {
                let v = std::str::from_utf8(raw)
                    .ok()
                    .map(str::trim)
                    .filter(|v| valid_transaction_id(v))
                    .ok_or_else(|| {
                        Refusal::new(
                            ProblemCode::InvalidTransactionId,
                            "Fsc-Transaction-Id must be a UUID version 7 (8-4-4-4-12 hex digits)",
                        )
                    })?;
                v.to_ascii_lowercase()
            }
            None => new_uuid_v7(unix_ms),
        };
        Ok(TraceContext {
            trace_id,
            parent_span_id,
            span_id: random_hex(8),
            flags,
            transaction_id,
        })
    }

    /// The `traceparent` the gateway answers and passes on: the caller's trace, the gateway's span.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span() {
        let t = TraceContext::from_headers(
            Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some(b"01890a5d-ac96-774b-bcce-b302099a8057"),
            0,
        )
        .unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_ne!(t.span_id, "00f067aa0ba902b7");
        assert!(lower_hex(&t.span_id, 16));
        assert_eq!(t.transaction_id, "01890a5d-ac96-774b-bcce-b302099a8057");
        assert!(t
            .traceparent()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    }

    #[test]
    fn malformed_headers_are_refused_and_absent_ones_created() {
        for bad in [
            &b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..],
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"garbage",
            b"\xff\xfe",
        ] {
            let r = TraceContext::from_headers(Some(bad), None, 0).unwrap_err();
            assert_eq!(r.code, ProblemCode::InvalidTraceContext);
        }
        for bad in [
            &b"01890a5d-ac96-474b-bcce-b302099a8057"[..],
            b"01890a5d-ac96-774b-7cce-b302099a8057",
            b"01890a5dac96774bbcceb302099a8057",
            b"not-a-uuid",
        ] {
            let r = TraceContext::from_headers(None, Some(bad), 0).unwrap_err();
            assert_eq!(r.code, ProblemCode::InvalidTransactionId);
        }
        let t = TraceContext::from_headers(None, None, 1_733_000_000_000).unwrap();
        assert!(lower_hex(&t.trace_id, 32) && t.parent_span_id.is_none());
        assert!(
            valid_transaction_id(&t.transaction_id),
            "{}",
            t.transaction_id
        );
        // The first 48 bits are the time.
        assert!(t
            .transaction_id
            .starts_with(&format!("{:012x}", 1_733_000_000_000u64)[..8]));
        let other = TraceContext::from_headers(None, None, 1_733_000_000_000).unwrap();
        assert_ne!(t.trace_id, other.trace_id);
        assert_ne!(t.transaction_id, other.transaction_id);
    }
}
