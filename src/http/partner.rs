//! The partner API's routes: identity and quota as a route layer, then one handler per route that reads the
//! request within its limits and calls `exchange`.
//!
//! Identity comes from the connection's verified certificate only (`ConnPeer`, set by the listener), never from a
//! header. Refusals before the body (identity, revocation, quota) are counted and traced, not logged: no partner is
//! established yet, or logging them would let a flood write the log.

use super::problem::Problem;
use super::ConnPeer;
use crate::exchange::{consent, delivery, outbox, send};
use crate::gateway::Gateway;
use crate::identity::{self, Caller};
use crate::oversight;
use crate::refusal::{ProblemCode, Refusal};
use crate::trace::TraceContext;
use axum::body::Body;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http_body_util::BodyExt;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/messages", post(post_message))
        .route("/v1/inbox", get(get_inbox))
        .route("/v1/inbox/{id}/ack", post(post_ack))
        .route("/v1/inbox/{id}/misaddressed", post(post_misaddressed))
        .route("/v1/outbox", get(get_outbox))
        .route("/v1/outbox/{id}", get(get_outbox_message))
        .route("/v1/outbox/{id}/recall", post(post_recall))
        .route("/v1/consents", post(post_consent).get(get_consents))
        .route("/v1/consents/{id}", axum::routing::delete(delete_consent))
        .merge(super::audit::router())
        .merge(
            super::audit::officer_router()
                .merge(super::console::router())
                .route_layer(middleware::from_fn_with_state(gw.clone(), officer_gate)),
        )
        .route_layer(middleware::from_fn_with_state(gw.clone(), authenticate))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(gw)
}

pub(super) async fn not_found() -> Problem {
    Refusal::not_found("no such resource").into()
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        ProblemCode::MethodNotAllowed,
        "this method is not allowed on this resource",
    )
}

/// The metrics label of a route: its method and the path template axum matched (a fixed vocabulary: the router's
/// routes). Each label is made once and kept for the life of the process; a request only reads it (no allocation,
/// a shared lock).
fn route_label(method: &Method, matched: Option<&MatchedPath>) -> &'static str {
    type Labels = BTreeMap<String, Vec<(Method, &'static str)>>;
    static LABELS: RwLock<Labels> = RwLock::new(BTreeMap::new());
    let Some(path) = matched else {
        return "other";
    };
    let find = |labels: &Labels| {
        labels
            .get(path.as_str())
            .and_then(|l| l.iter().find(|(m, _)| m == method).map(|(_, label)| *label))
    };
    if let Some(label) = find(&LABELS.read().expect("route labels")) {
        return label;
    }
    let mut labels = LABELS.write().expect("route labels");
    if let Some(label) = find(&labels) {
        return label;
    }
    let label: &'static str = Box::leak(format!("{method} {}", path.as_str()).into_boxed_str());
    labels
        .entry(path.as_str().to_owned())
        .or_default()
        .push((method.clone(), label));
    label
}

/// Identity and quota phases: who is calling (from the certificate only), and may they call now.
async fn authenticate(State(gw): State<Arc<Gateway>>, mut req: Request, next: Next) -> Response {
    let label = route_label(req.method(), req.extensions().get::<MatchedPath>());
    let peer = req.extensions().get::<ConnPeer>().and_then(|p| p.0.clone());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let revocations = gw.revocations();
    if gw.config.tls.refuse_on_expired_crl
        && revocations
            .as_ref()
            .is_some_and(|r| r.expired(time::OffsetDateTime::now_utc()))
    {
        let p = Refusal::new(
            ProblemCode::CrlExpired,
            "the gateway's revocation list is out of date; no partner is admitted until it is renewed",
        )
        .with_retry_after(60);
        gw.metrics.refusal(p.code.as_str());
        gw.metrics.request(label, p.status());
        return p.into_response();
    }
    let caller = identity::identify(peer.as_deref(), &gw.partners, revocations.as_deref(), now)
        .and_then(|caller| {
            gw.limits.check(&caller.info)?;
            Ok(caller)
        });
    let resp = match caller.and_then(|mut caller| {
        let h = req.headers();
        caller.trace = Some(TraceContext::from_headers(
            h.get("traceparent").map(|v| v.as_bytes()),
            h.get("fsc-transaction-id").map(|v| v.as_bytes()),
            crate::audit::writer::now_ms(),
        )?);
        Ok(caller)
    }) {
        Ok(caller) => {
            let trace = caller.trace.clone();
            req.extensions_mut().insert(caller);
            let mut resp = next.run(req).await;
            // The exchange can be followed: the caller's trace with the gateway's span, and its transaction id.
            if let Some(t) = trace {
                let h = resp.headers_mut();
                if let Ok(v) = HeaderValue::from_str(&t.traceparent()) {
                    h.insert("traceparent", v);
                }
                if let Ok(v) = HeaderValue::from_str(&t.transaction_id) {
                    h.insert("fsc-transaction-id", v);
                }
            }
            resp
        }
        Err(p) => {
            gw.metrics.refusal(p.code.as_str());
            tracing::warn!(
                code = p.code.as_str(),
                route = label,
                "request refused before identity was established"
            );
            drain_refused(req.into_body(), gw.config.limits.max_body_bytes);
            p.into_response()
        }
    };
    gw.metrics.request(label, resp.status().as_u16());
    resp
}

/// The officer gate, a route layer on every privacy-officer route (the console and the audit API's search and
/// report): the caller must be a privacy officer (`oversight::require_officer`, which logs a refusal); the handler
/// gets the `Officer` that every question to the log asks for.
async fn officer_gate(State(gw): State<Arc<Gateway>>, mut req: Request, next: Next) -> Response {
    let Some(caller) = req.extensions().get::<Caller>().cloned() else {
        return Problem::from(Refusal::internal()).into_response();
    };
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str())
        .unwrap_or("");
    // What was asked for, as the refusal's log entry names it.
    let what = if path.starts_with("/console") {
        "console"
    } else if path.starts_with("/v1/audit/subjects") {
        "subject report"
    } else if path.starts_with("/v1/audit/incidents") {
        "breach register"
    } else {
        "disclosures"
    };
    match oversight::require_officer(&gw, &caller, what).await {
        Ok(officer) => {
            req.extensions_mut().insert(officer);
            next.run(req).await
        }
        Err(r) => {
            drain_refused(req.into_body(), gw.config.limits.max_body_bytes);
            Problem::from(r).into_response()
        }
    }
}

/// Reads a request body within the configured size and time limits.
pub(super) async fn read_body(
    gw: &Gateway,
    headers: &HeaderMap,
    body: Body,
) -> Result<axum::body::Bytes, Refusal> {
    let max = gw.config.limits.max_body_bytes;
    let too_large = || {
        Refusal::new(
            ProblemCode::BodyTooLarge,
            format!("the request body exceeds {max} bytes"),
        )
    };
    let unreadable = || {
        Refusal::new(
            ProblemCode::BodyUnreadable,
            "the request body could not be read",
        )
    };
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                Refusal::new(
                    ProblemCode::InvalidContentLength,
                    "Content-Length is not a number",
                )
            })?;
        if len > max as u64 {
            drain_refused(body, max.saturating_mul(3));
            return Err(too_large());
        }
    }
    let deadline = Duration::from_secs(gw.config.server.body_timeout_secs);
    let read = async move {
        let mut body = body;
        let mut buf = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|_| unreadable())?.into_data() else {
                continue;
            };
            if buf.len() + data.len() > max {
                drain_refused(body, max.saturating_mul(3));
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
        Ok(buf.freeze())
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(result) => result,
        Err(_) => Err(Refusal::new(
            ProblemCode::BodyTimeout,
            "the request body did not arrive in time",
        )),
    }
}

/// After a request is refused without its body being read (too large: 413, at most three times the limit; before its
/// handler, by the identity phase or the officer gate: at most the limit), a task reads and discards what the client is still sending (at most `budget`
/// bytes, for at most two seconds) while the problem goes out, so an HTTP/1.1 client that writes its whole body
/// before reading gets the problem instead of a connection reset (a socket closed with unread data is reset). Nothing
/// of it is kept.
fn drain_refused(mut body: Body, budget: usize) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let mut seen = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(d) = frame.data_ref() {
                    seen += d.len();
                    if seen > budget {
                        break;
                    }
                }
            }
        })
        .await;
    });
}

/// A body as read, for the exchange functions that log a refused one themselves.
fn bytes_of(body: &Result<axum::body::Bytes, Refusal>) -> Result<&[u8], Refusal> {
    body.as_ref().map(|b| b.as_ref()).map_err(Clone::clone)
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

async fn post_message(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let body = match read_body(&gw, &headers, body).await {
        Ok(b) => b,
        Err(r) => return Err(send::refuse_body(&gw, &caller, r).await.into()),
    };
    let key = headers.get("idempotency-key").map(|v| v.as_bytes());
    let sent = send::send(&gw, &caller, key, &body).await?;
    let status = if sent.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        [(header::CONTENT_TYPE, "application/json")],
        sent.body,
    )
        .into_response())
}

#[derive(Deserialize)]
struct InboxParams {
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn get_inbox(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<InboxParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(params) = params.map_err(|_| {
        Refusal::new(
            ProblemCode::InvalidQuery,
            "limit is a number and cursor a value returned as next_cursor",
        )
    })?;
    let body = delivery::inbox(
        &gw,
        &caller,
        delivery::InboxQuery {
            limit: params.limit,
            cursor: params.cursor,
        },
    )
    .await?;
    Ok(json_response(StatusCode::OK, body))
}

async fn post_ack(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    Ok(json_response(
        StatusCode::OK,
        delivery::ack(&gw, &caller, &id).await?,
    ))
}

async fn post_consent(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let body = read_body(&gw, &headers, body).await;
    let recorded = consent::record(&gw, &caller, bytes_of(&body)).await?;
    Ok(json_response(StatusCode::CREATED, recorded))
}

async fn get_consents(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, Problem> {
    Ok(json_response(
        StatusCode::OK,
        consent::list(&gw, &caller).await?,
    ))
}

async fn delete_consent(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    Ok(json_response(
        StatusCode::OK,
        consent::withdraw(&gw, &caller, &id).await?,
    ))
}

async fn post_misaddressed(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let body = read_body(&gw, &headers, body).await;
    let done = outbox::misaddressed(&gw, &caller, &id, bytes_of(&body)).await?;
    Ok(json_response(StatusCode::OK, done))
}

async fn get_outbox(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<outbox::OutboxQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(params) = params.map_err(|_| {
        Refusal::new(
            ProblemCode::InvalidQuery,
            "allowed: status, purpose, receiver, from, to (YYYY-MM-DD), limit, cursor",
        )
    })?;
    Ok(json_response(
        StatusCode::OK,
        outbox::list(&gw, &caller, params).await?,
    ))
}

async fn get_outbox_message(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    Ok(json_response(
        StatusCode::OK,
        outbox::get(&gw, &caller, &id).await?,
    ))
}

async fn post_recall(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let body = read_body(&gw, &headers, body).await;
    let done = outbox::recall(&gw, &caller, &id, bytes_of(&body)).await?;
    Ok(json_response(StatusCode::OK, done))
}
