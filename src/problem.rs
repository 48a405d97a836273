//! RFC 9457 problem details: the one shape every rejection takes.
//!
//! A `Problem` carries a stable machine-readable `code`, the HTTP status and a human `detail`.
//! The detail names rules and field paths; it must never carry a payload value or a pupil identifier.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub const CONTENT_TYPE: &str = "application/problem+json";

#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub retry_after: Option<u64>,
    /// Extra members (boxed: a `Problem` travels in every `Err`, keep it small).
    pub extra: Option<Box<Value>>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
            extra: None,
        }
    }

    pub fn from_status(status: u16, code: &'static str, detail: impl Into<String>) -> Problem {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Problem::new(status, code, detail)
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Problem {
        self.retry_after = Some(seconds);
        self
    }

    pub fn with_extra(mut self, extra: Value) -> Problem {
        self.extra = Some(Box::new(extra));
        self
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, code, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    /// The disclosure log could not be written: nothing was delivered.
    pub fn audit_unavailable() -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit-unavailable",
            "the disclosure log cannot be written; nothing was delivered, try again later",
        )
        .with_retry_after(5)
    }

    pub fn internal() -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; nothing was delivered",
        )
    }

    fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }

    pub fn body(&self) -> Value {
        let mut body = json!({
            "type": format!("urn:ketenpoort:problem:{}", self.code),
            "title": self.title(),
            "status": self.status.as_u16(),
            "code": self.code,
            "detail": self.detail,
        });
        if let (Some(Value::Object(extra)), Value::Object(map)) = (self.extra.as_deref(), &mut body)
        {
            for (k, v) in extra {
                map.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        body
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (self.status, body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_rfc9457_members_and_code() {
        let p = Problem::bad_request("duplicate-key", "key 'to' appears twice")
            .with_extra(json!({"status": 999, "field": "to"}));
        let b = p.body();
        assert_eq!(b["status"], 400);
        assert_eq!(b["code"], "duplicate-key");
        assert_eq!(b["type"], "urn:ketenpoort:problem:duplicate-key");
        assert_eq!(b["title"], "Bad Request");
        assert_eq!(b["field"], "to");
    }

    #[test]
    fn audit_unavailable_asks_to_retry() {
        let resp = Problem::audit_unavailable().into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
    }
}
