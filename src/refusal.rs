//! Why a request is refused: the partner API's stable problem codes and the one error the domain modules return.
//!
//! `ProblemCode` is the vocabulary partners program against (openapi.yaml lists it; a test checks the list against
//! `ProblemCode::ALL`): each code's string, HTTP status and title stand in one table here. A `Refusal` is a code with
//! a detail that names rules and field paths, and optionally the cause behind it (a store or log error), which is
//! traced once where the refusal leaves the gateway and never shown to the caller. Neither may ever carry a payload
//! value or a pupil identifier. Rendering a refusal as RFC 9457 problem+json is the HTTP layer's job (`http::problem`).

use serde_json::Value;
use std::fmt;
use std::sync::Arc;

macro_rules! problem_codes {
    ($($variant:ident = $code:literal, $status:literal;)+) => {
        /// A stable machine-readable refusal code with its HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ProblemCode {
            $($variant,)+
        }

        impl ProblemCode {
            /// Every code, in table order.
            pub const ALL: &'static [ProblemCode] = &[$(ProblemCode::$variant,)+];

            /// The code as partners see it (`code` member, `urn:ketenpoort:problem:<code>`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ProblemCode::$variant => $code,)+
                }
            }

            /// The HTTP status a refusal with this code is answered with.
            pub const fn status(self) -> u16 {
                match self {
                    $(ProblemCode::$variant => $status,)+
                }
            }
        }
    };
}

problem_codes! {
    // The body and its envelope (400 malformed, 422 invalid).
    MalformedJson = "malformed-json", 400;
    InvalidUtf8 = "invalid-utf8", 400;
    TooDeep = "too-deep", 400;
    DuplicateKey = "duplicate-key", 400;
    UnknownEnvelopeKey = "unknown-envelope-key", 400;
    StringTooLong = "string-too-long", 400;
    BodyUnreadable = "body-unreadable", 400;
    InvalidContentLength = "invalid-content-length", 400;
    BodyTooLarge = "body-too-large", 413;
    BodyTimeout = "body-timeout", 408;
    InvalidEnvelope = "invalid-envelope", 422;
    InvalidSubject = "invalid-subject", 422;
    InvalidSubjectId = "invalid-subject-id", 422;
    JustificationTooLong = "justification-too-long", 422;
    // The policy's refusals of a message as a whole.
    NoPolicy = "no-policy", 403;
    ConsentRequired = "consent-required", 403;
    ConsentAgeUnknown = "consent-age-unknown", 422;
    NoAgreement = "no-agreement", 403;
    WrongType = "wrong-type", 422;
    MissingSubject = "missing-subject", 422;
    InvalidData = "invalid-data", 422;
    InvalidDate = "invalid-date", 422;
    MissingRequiredField = "missing-required-field", 422;
    ScreenedTerm = "screened-term", 422;
    IdentifyingDataInAnonymousConsult = "identifying-data-in-anonymous-consult", 422;
    JustificationRequired = "justification-required", 422;
    PersonLevelInAggregate = "person-level-in-aggregate", 422;
    InvalidAggregate = "invalid-aggregate", 422;
    UnknownReceiver = "unknown-receiver", 422;
    // The receiver bound to the pupil's case (DOMAIN.md "Who is responsible for a pupil").
    ReceiverNotResponsible = "receiver-not-responsible", 403;
    // A kerngroep case (P13) whose recipients were all refused, for different reasons (each named in the detail).
    NoRecipientMayReceive = "no-recipient-may-receive", 403;
    UnknownReference = "unknown-reference", 404;
    // Idempotency.
    InvalidIdempotencyKey = "invalid-idempotency-key", 400;
    IdempotencyKeyReused = "idempotency-key-reused", 409;
    IdempotencyKeyInUse = "idempotency-key-in-use", 409;
    // Identity and quotas.
    ClientCertificateRequired = "client-certificate-required", 401;
    UnknownPartner = "unknown-partner", 403;
    CertificateRevoked = "certificate-revoked", 403;
    CertificateExpired = "certificate-expired", 403;
    CertificateNotForClients = "certificate-not-for-clients", 403;
    CrlExpired = "crl-expired", 503;
    RateLimited = "rate-limited", 429;
    // Trace context and FSC transaction id headers.
    InvalidTraceContext = "invalid-trace-context", 400;
    InvalidTransactionId = "invalid-transaction-id", 400;
    // Counted in metrics only: a connection over the partner's cap is closed before any request.
    TooManyConnections = "too-many-connections", 429;
    // Mailbox and consents.
    NotFound = "not-found", 404;
    MethodNotAllowed = "method-not-allowed", 405;
    MailboxBusy = "mailbox-busy", 409;
    InvalidQuery = "invalid-query", 400;
    InvalidCursor = "invalid-cursor", 400;
    InvalidConsent = "invalid-consent", 422;
    UnknownConsentKey = "unknown-consent-key", 400;
    // Outbox, recall and "niet voor ons".
    InvalidReport = "invalid-report", 422;
    AlreadyFetched = "already-fetched", 409;
    // A push of the message is in flight or may have reached the receiver: not recallable (for now).
    PushInDoubt = "push-in-doubt", 409;
    NotRecallable = "not-recallable", 409;
    AlreadyReported = "already-reported", 409;
    // The audit API.
    NotAPrivacyOfficer = "not-a-privacy-officer", 403;
    InvalidProofRequest = "invalid-proof-request", 422;
    InvalidFilter = "invalid-filter", 422;
    UnknownLog = "unknown-log", 404;
    LogInconsistent = "log-inconsistent", 500;
    // The breach register.
    InvalidIncident = "invalid-incident", 422;
    UnknownDisclosure = "unknown-disclosure", 422;
    IncidentIncomplete = "incident-incomplete", 422;
    IncidentClosed = "incident-closed", 409;
    IncidentChanged = "incident-changed", 409;
    // The ops listener (not part of the partner API).
    PolicyInvalid = "policy-invalid", 422;
    CrlInvalid = "crl-invalid", 422;
    // Not the caller's doing.
    AuditUnavailable = "audit-unavailable", 503;
    Internal = "internal", 500;
}

impl ProblemCode {
    /// The RFC 9457 `title`: the status's reason phrase.
    pub fn title(self) -> &'static str {
        match self.status() {
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            409 => "Conflict",
            413 => "Payload Too Large",
            422 => "Unprocessable Entity",
            429 => "Too Many Requests",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Error",
        }
    }

    /// Codes answered on the ops listener only, or never answered at all (metrics).
    pub fn is_partner_api(self) -> bool {
        !matches!(
            self,
            ProblemCode::PolicyInvalid | ProblemCode::CrlInvalid | ProblemCode::TooManyConnections
        )
    }

    pub fn parse(s: &str) -> Option<ProblemCode> {
        ProblemCode::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ProblemCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for ProblemCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// The cause behind a refusal, kept for the operator's trace (never for the caller).
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// A refused request: the code, a detail for the caller and, for the operator, what caused it.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: ProblemCode,
    pub detail: String,
    pub retry_after: Option<u64>,
    /// Extra members of the problem document (boxed: a `Refusal` travels in every `Err`, keep it small).
    pub extra: Option<Box<Value>>,
    pub cause: Option<Cause>,
}

impl Refusal {
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Refusal {
        Refusal {
            code,
            detail: detail.into(),
            retry_after: None,
            extra: None,
            cause: None,
        }
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Refusal {
        self.retry_after = Some(seconds);
        self
    }

    pub fn with_extra(mut self, extra: Value) -> Refusal {
        self.extra = Some(Box::new(extra));
        self
    }

    /// Keeps what caused this refusal for the trace at the boundary. The cause's text must hold no payload value:
    /// store, log and key errors name tables, constraints and I/O, never a field's content.
    pub fn because(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Refusal {
        self.cause = Some(Arc::new(cause));
        self
    }

    pub fn not_found(detail: impl Into<String>) -> Refusal {
        Refusal::new(ProblemCode::NotFound, detail)
    }

    /// The disclosure log could not be written: nothing was delivered.
    pub fn audit_unavailable() -> Refusal {
        Refusal::new(
            ProblemCode::AuditUnavailable,
            "the disclosure log cannot be written; nothing was delivered, try again later",
        )
        .with_retry_after(5)
    }

    /// The disclosure log or the store could not be read: nothing was shown.
    pub fn log_unreadable() -> Refusal {
        Refusal::new(
            ProblemCode::AuditUnavailable,
            "the disclosure log cannot be read right now; try again later",
        )
        .with_retry_after(5)
    }

    pub fn internal() -> Refusal {
        Refusal::new(
            ProblemCode::Internal,
            "internal error; nothing was delivered",
        )
    }

    /// Whether the caller's request was refused (4xx) rather than the gateway failing it (5xx).
    pub fn is_callers(&self) -> bool {
        self.status() < 500
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status(), self.code, self.detail)
    }
}

impl std::error::Error for Refusal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_code_is_unique_kebab_case_with_a_titled_status() {
        let mut seen = HashSet::new();
        for code in ProblemCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !s.starts_with('-'),
                "{s}"
            );
            assert_ne!(code.title(), "Error", "{s} has a status without a title");
            assert_eq!(ProblemCode::parse(s), Some(*code));
        }
        assert_eq!(ProblemCode::parse("message-stolen"), None);
    }

    #[test]
    fn the_cause_is_kept_for_the_trace_and_not_in_the_detail() {
        let r = Refusal::audit_unavailable().because(std::io::Error::other("disk full"));
        assert_eq!(r.status(), 503);
        assert!(!r.detail.contains("disk full"));
        let source = std::error::Error::source(&r).expect("cause");
        assert_eq!(source.to_string(), "disk full");
    }
}
