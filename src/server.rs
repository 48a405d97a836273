//! The listeners: the partner API over mutual TLS, and the plain-HTTP ops listener (health, readiness, metrics).
//!
//! Each TLS connection's verified client certificate is read once and attached to every request on it; the
//! identity stage runs as middleware before any handler. Bodies are read with a size cap and a deadline.
//! Nothing here parses HTTP itself (hyper does) or trusts a header for who the caller is.

use crate::config::Config;
use crate::gateway::{Gateway, ReloadError, StartError};
use crate::identity::{self, Caller, Peer};
use crate::problem::Problem;
use crate::tls::{self, TlsSettings};
use crate::{consent, delivery, pipeline};
use axum::body::Body;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// The peer certificate of the connection a request arrived on (absent only if TLS gave none).
#[derive(Clone)]
struct ConnPeer(Option<Arc<Peer>>);

pub struct Running {
    pub partner_addr: SocketAddr,
    pub ops_addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    writer: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (up to the grace period) and flushes the log.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.gateway.writer.flush().await;
        let gw = self.gateway;
        drop(gw);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.writer).await;
    }
}

/// Builds the gateway, binds both listeners and starts serving.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let tls_config = tls::server_config(&TlsSettings {
        ca: config.tls.ca.clone(),
        crl: config.tls.crl.clone(),
        cert: config.tls.cert.clone(),
        key: config.tls.key.clone(),
    })?;
    let partner_listener = TcpListener::bind(config.server.listen).await.map_err(|e| {
        StartError::Policy(format!("cannot listen on {}: {e}", config.server.listen))
    })?;
    let ops_listener = TcpListener::bind(config.server.ops_listen)
        .await
        .map_err(|e| {
            StartError::Policy(format!(
                "cannot listen on {}: {e}",
                config.server.ops_listen
            ))
        })?;
    let (gw, writer) = Gateway::start(config).await?;
    let partner_addr = partner_listener.local_addr().expect("bound address");
    let ops_addr = ops_listener.local_addr().expect("bound address");
    let (shutdown, rx) = watch::channel(false);
    let tasks = vec![
        tokio::spawn(serve_partners(
            gw.clone(),
            partner_listener,
            tls_config,
            rx.clone(),
        )),
        tokio::spawn(crate::retention::run(gw.clone(), rx.clone())),
        tokio::spawn(serve_ops(gw.clone(), ops_listener, rx.clone())),
        tokio::spawn(watch_crl(gw.clone(), rx)),
    ];
    Ok(Running {
        partner_addr,
        ops_addr,
        gateway: gw,
        shutdown,
        tasks,
        writer,
    })
}

pub fn partner_router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/messages", post(post_message))
        .route("/v1/inbox", get(get_inbox))
        .route("/v1/inbox/{id}/ack", post(post_ack))
        .route("/v1/consents", post(post_consent).get(get_consents))
        .route("/v1/consents/{id}", axum::routing::delete(delete_consent))
        .merge(crate::audit::api::router().merge(crate::console::router()))
        .route_layer(middleware::from_fn_with_state(gw.clone(), authenticate))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(gw)
}

async fn not_found() -> Problem {
    Problem::not_found("no such resource")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this method is not allowed on this resource",
    )
}

fn route_label(method: &Method, path: &str) -> &'static str {
    match (method.as_str(), path) {
        ("POST", "/v1/messages") => "POST /v1/messages",
        ("GET", "/v1/inbox") => "GET /v1/inbox",
        ("POST", "/v1/inbox/{id}/ack") => "POST /v1/inbox/{id}/ack",
        ("POST", "/v1/consents") => "POST /v1/consents",
        ("GET", "/v1/consents") => "GET /v1/consents",
        ("DELETE", "/v1/consents/{id}") => "DELETE /v1/consents/{id}",
        ("GET", "/v1/audit/checkpoint") => "GET /v1/audit/checkpoint",
        ("GET", "/v1/audit/proof/inclusion/{index}") => "GET /v1/audit/proof/inclusion/{index}",
        ("GET", "/v1/audit/proof/consistency") => "GET /v1/audit/proof/consistency",
        ("GET", "/v1/audit/disclosures") => "GET /v1/audit/disclosures",
        ("GET", "/v1/audit/subjects/{pgn}") => "GET /v1/audit/subjects/{pgn}",
        ("GET", p) if p.starts_with("/console") => "GET /console",
        _ => "other",
    }
}

/// Identity and quota phases: who is calling (from the certificate only), and may they call now.
async fn authenticate(State(gw): State<Arc<Gateway>>, mut req: Request, next: Next) -> Response {
    let label = route_label(
        req.method(),
        req.extensions()
            .get::<MatchedPath>()
            .map(|m| m.as_str())
            .unwrap_or(""),
    );
    let peer = req.extensions().get::<ConnPeer>().and_then(|p| p.0.clone());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let revocations = gw.revocations();
    if gw.config.tls.refuse_on_expired_crl
        && revocations
            .as_ref()
            .is_some_and(|r| r.expired(time::OffsetDateTime::now_utc()))
    {
        let p = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "crl-expired",
            "the gateway's revocation list is out of date; no partner is admitted until it is renewed",
        )
        .with_retry_after(60);
        gw.metrics.refusal(p.code);
        gw.metrics.request(label, p.status.as_u16());
        return p.into_response();
    }
    let caller = identity::identify(peer.as_deref(), &gw.partners, revocations.as_deref(), now)
        .and_then(|caller| {
            gw.limits.check(&caller.info)?;
            Ok(caller)
        });
    let resp = match caller {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(p) => {
            gw.metrics.refusal(p.code);
            tracing::warn!(
                code = p.code,
                route = label,
                "request refused before identity was established"
            );
            p.into_response()
        }
    };
    gw.metrics.request(label, resp.status().as_u16());
    resp
}

/// Reads a request body within the configured size and time limits.
async fn read_body(
    gw: &Gateway,
    headers: &HeaderMap,
    body: Body,
) -> Result<axum::body::Bytes, Problem> {
    let max = gw.config.limits.max_body_bytes;
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("the request body exceeds {max} bytes"),
        )
    };
    let unreadable =
        || Problem::bad_request("body-unreadable", "the request body could not be read");
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                Problem::bad_request("invalid-content-length", "Content-Length is not a number")
            })?;
        if len > max as u64 {
            drain_refused(body, max);
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
                drain_refused(body, max);
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
        Ok(buf.freeze())
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(result) => result,
        Err(_) => Err(Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            "the request body did not arrive in time",
        )),
    }
}

/// After a body is refused as too large, a task reads and discards what the client is still sending (at most three
/// times the limit, for at most two seconds) while the 413 goes out, so an HTTP/1.1 client that writes its whole body
/// before reading gets the problem instead of a connection reset. Nothing of it is kept.
fn drain_refused(mut body: Body, max: usize) {
    let budget = max.saturating_mul(3);
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
        Err(p) => return Err(pipeline::refuse(&gw, &caller, p, None).await),
    };
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(v.to_str().map_err(|_| {
            Problem::bad_request(
                "invalid-idempotency-key",
                "Idempotency-Key must be visible ASCII",
            )
        })?),
        None => None,
    };
    let sent = pipeline::send(&gw, &caller, key, &body).await?;
    Ok((
        sent.status,
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
        Problem::bad_request(
            "invalid-query",
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
    let body = read_body(&gw, &headers, body).await?;
    match consent::record(&gw, &caller, &body).await {
        Ok(v) => Ok(json_response(StatusCode::CREATED, v)),
        Err(p) => Err(consent_refused(&gw, &caller, p).await),
    }
}

async fn consent_refused(gw: &Gateway, caller: &Caller, p: Problem) -> Problem {
    if p.status.is_server_error() {
        return p;
    }
    gw.metrics.refusal(p.code);
    let mut entry = gw.entry_for(caller, crate::audit::entry::EventKind::ConsentRefused);
    entry.outcome = p.code.to_owned();
    entry.detail = Some(p.detail.clone());
    match gw.writer.append_one(entry).await {
        Ok(_) => p,
        Err(_) => Problem::audit_unavailable(),
    }
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

async fn serve_partners(
    gw: Arc<Gateway>,
    listener: TcpListener,
    tls_config: Arc<rustls::ServerConfig>,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    let router = partner_router(gw.clone());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(gw.config.server.header_timeout_secs));
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let handshake_timeout = Duration::from_secs(gw.config.server.header_timeout_secs);
    loop {
        let (tcp, _addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let builder = builder.clone();
        let gw = gw.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|der| gw.peers.peer(der.as_ref()));
            // Per-partner connection cap, so one partner cannot exhaust the others' capacity.
            let partner_id = peer
                .as_ref()
                .and_then(|p| gw.partners.by_certificate(&p.cert.oin, &p.cert.common_name))
                .map(|i| i.partner.id.clone());
            let _slot = match &partner_id {
                Some(id) => match gw.limits.open_connection(id) {
                    Some(slot) => Some(slot),
                    None => {
                        gw.metrics.refusal("too-many-connections");
                        tracing::warn!(partner = %id, "connection cap reached; connection closed");
                        return;
                    }
                },
                None => None,
            };
            let conn_peer = ConnPeer(peer);
            let svc = router.map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(conn_peer.clone());
                req.map(Body::new)
            });
            let conn = builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(svc));
            let conn = watcher.watch(conn.into_owned());
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let grace = Duration::from_secs(gw.config.server.shutdown_grace_secs);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing remaining connections");
    }
}

pub fn ops_router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/policies/reload", post(reload_policies))
        .route("/crl/reload", post(reload_crl))
        .fallback(not_found)
        .with_state(gw)
}

async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    match gw.ready().await {
        Ok(()) => json_response(
            StatusCode::OK,
            serde_json::json!({"ready": true, "policy_hash": gw.policy().hash(), "log_size": gw.gauges().log_size}),
        ),
        Err(reason) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"ready": false, "reason": reason}),
        ),
    }
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gw.metrics.render(&gw.gauges()),
    )
        .into_response()
}

async fn reload_policies(State(gw): State<Arc<Gateway>>) -> Response {
    match gw.reload_policies().await {
        Ok(hash) => json_response(
            StatusCode::OK,
            serde_json::json!({"reloaded": true, "policy_hash": hash}),
        ),
        Err(ReloadError::Invalid(e)) => {
            Problem::from_status(422, "policy-invalid", e).into_response()
        }
        Err(ReloadError::LogUnavailable) => Problem::audit_unavailable().into_response(),
    }
}

async fn reload_crl(State(gw): State<Arc<Gateway>>) -> Response {
    match gw.reload_revocations() {
        Ok(n) => json_response(
            StatusCode::OK,
            serde_json::json!({"reloaded": true, "revoked": n}),
        ),
        Err(e) => Problem::from_status(422, "crl-invalid", e).into_response(),
    }
}

/// Re-reads the CRL file whenever its modification time or size changes, checked every `tls.crl_poll_secs`.
/// A file that cannot be read (e.g. caught half-written) leaves the running list in force and is tried again.
async fn watch_crl(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    let (Some(path), secs) = (gw.config.tls.crl.clone(), gw.config.tls.crl_poll_secs) else {
        return;
    };
    if secs == 0 {
        return;
    }
    let stamp = |p: &std::path::Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut seen = stamp(&path);
    let mut tick = tokio::time::interval(Duration::from_secs(secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = stamp(&path);
        if now == seen {
            continue;
        }
        match gw.reload_revocations() {
            Ok(n) => {
                seen = now;
                tracing::info!(revoked = n, "revocation list changed on disk; reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "changed revocation list refused; the previous list stays")
            }
        }
    }
}

async fn serve_ops(gw: Arc<Gateway>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let app = ops_router(gw);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.changed().await;
        })
        .await;
}
