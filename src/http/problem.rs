//! RFC 9457 problem details: the one shape every rejection takes on the wire.
//!
//! A `Problem` is a domain `Refusal` on its way out: its code's status, `type`, `title`, `code` and `detail`, plus
//! `Retry-After` where the refusal asks for one. This is the one place a refusal's cause is traced (once, with the
//! code). The detail names rules and field paths; it must never carry a payload value or a pupil identifier.

use crate::refusal::{ProblemCode, Refusal};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub const CONTENT_TYPE: &str = "application/problem+json";

/// A refusal rendered as problem+json.
#[derive(Debug, Clone)]
pub struct Problem(pub Refusal);

impl From<Refusal> for Problem {
    fn from(r: Refusal) -> Problem {
        Problem(r)
    }
}

impl Problem {
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Problem {
        Problem(Refusal::new(code, detail))
    }

    pub fn code(&self) -> ProblemCode {
        self.0.code
    }

    pub fn status(&self) -> StatusCode {
        status_of(&self.0)
    }

    pub fn body(&self) -> Value {
        let r = &self.0;
        let mut body = json!({
            "type": format!("urn:ketenpoort:problem:{}", r.code),
            "title": r.code.title(),
            "status": r.status(),
            "code": r.code.as_str(),
            "detail": r.detail,
        });
        if let (Some(Value::Object(extra)), Value::Object(map)) = (r.extra.as_deref(), &mut body) {
            for (k, v) in extra {
                map.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        body
    }
}

/// The HTTP status a refusal is answered with.
pub fn status_of(r: &Refusal) -> StatusCode {
    StatusCode::from_u16(r.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.0.cause {
            tracing::warn!(code = self.0.code.as_str(), cause = %cause, "request failed");
        }
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (self.status(), body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(secs) = self.0.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        Problem(self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_rfc9457_members_and_code() {
        let p = Problem::new(ProblemCode::DuplicateKey, "key 'to' appears twice")
            .0
            .with_extra(json!({"status": 999, "field": "to"}));
        let b = Problem(p).body();
        assert_eq!(b["status"], 400);
        assert_eq!(b["code"], "duplicate-key");
        assert_eq!(b["type"], "urn:ketenpoort:problem:duplicate-key");
        assert_eq!(b["title"], "Bad Request");
        assert_eq!(b["field"], "to");
    }

    #[test]
    fn audit_unavailable_asks_to_retry() {
        let resp = Refusal::audit_unavailable().into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
    }

    #[test]
    fn every_title_is_the_status_reason_phrase() {
        for code in ProblemCode::ALL {
            let status = StatusCode::from_u16(code.status()).expect("a valid status");
            assert_eq!(
                Some(code.title()),
                status.canonical_reason(),
                "{code}: {status}"
            );
        }
    }
}
