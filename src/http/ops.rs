//! The ops listener (plain HTTP, loopback by default): health, readiness, Prometheus metrics, policy and CRL
//! reloads. Not part of the partner API; nothing here shows pupil data.

use crate::gateway::{Gateway, ReloadError};
use crate::refusal::{ProblemCode, Refusal};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/policies/reload", post(reload_policies))
        .route("/crl/reload", post(reload_crl))
        .fallback(super::partner::not_found)
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
        gw.metrics.render(&gw.gauges_with_incidents().await),
    )
        .into_response()
}

async fn reload_policies(State(gw): State<Arc<Gateway>>) -> Response {
    match gw.reload_policies().await {
        Ok(hash) => json_response(
            StatusCode::OK,
            serde_json::json!({"reloaded": true, "policy_hash": hash}),
        ),
        Err(ReloadError::Invalid(e)) => Refusal::new(ProblemCode::PolicyInvalid, e).into_response(),
        Err(ReloadError::LogUnavailable) => Refusal::audit_unavailable().into_response(),
    }
}

async fn reload_crl(State(gw): State<Arc<Gateway>>) -> Response {
    match gw.reload_revocations() {
        Ok(n) => json_response(
            StatusCode::OK,
            serde_json::json!({"reloaded": true, "revoked": n}),
        ),
        Err(e) => Refusal::new(ProblemCode::CrlInvalid, e).into_response(),
    }
}

pub(super) async fn serve(
    gw: Arc<Gateway>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let app = router(gw);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.changed().await;
        })
        .await;
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}
