//! The audit API's handlers: `/v1/audit/checkpoint` and `/v1/audit/proof/...` for every partner (hashes only), and
//! `/v1/audit/disclosures` (JSON or CSV) and `/v1/audit/subjects/{pgn}` (JSON or a printable page) for privacy
//! officers. What they answer is decided in `oversight`; here only query parsing, content negotiation and headers.

use super::problem::Problem;
use crate::gateway::Gateway;
use crate::oversight::{self, incidents, proofs, DisclosureParams, Officer};
use crate::refusal::{ProblemCode, Refusal};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Checkpoints and proofs, for every authenticated partner.
pub fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/v1/audit/checkpoint", get(get_checkpoint))
        .route("/v1/audit/proof/inclusion/{index}", get(get_inclusion))
        .route("/v1/audit/proof/consistency", get(get_consistency))
}

/// The disclosure search and the subject report: mounted behind the officer gate (`partner::router`).
pub fn officer_router() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/v1/audit/disclosures", get(get_disclosures))
        .route("/v1/audit/subjects/{pgn}", get(get_subject))
        .route("/v1/audit/export", get(get_export))
        .route(
            "/v1/audit/incidents",
            get(get_incidents).post(post_incident),
        )
        .route("/v1/audit/incidents/sent-to", get(get_sent_to))
        .route(
            "/v1/audit/incidents/{id}",
            get(get_incident).patch(patch_incident),
        )
}

fn invalid_query(allowed: &str) -> Refusal {
    Refusal::new(
        ProblemCode::InvalidQuery,
        format!("unknown or malformed query parameter; allowed: {allowed}"),
    )
}

async fn get_checkpoint(State(gw): State<Arc<Gateway>>) -> Result<Response, Problem> {
    Ok(Json(proofs::checkpoints(&gw).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionParams {
    tree_size: Option<String>,
    log_id: Option<String>,
}

async fn get_inclusion(
    State(gw): State<Arc<Gateway>>,
    Path(index): Path<String>,
    params: Result<Query<InclusionParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(p) = params.map_err(|_| invalid_query("tree_size, log_id"))?;
    let request = proofs::InclusionRequest {
        index: &index,
        tree_size: p.tree_size.as_deref(),
        log_id: p.log_id.as_deref(),
    };
    Ok(Json(proofs::inclusion(&gw, request).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyParams {
    from: Option<String>,
    to: Option<String>,
    log_id: Option<String>,
}

async fn get_consistency(
    State(gw): State<Arc<Gateway>>,
    params: Result<Query<ConsistencyParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(p) = params.map_err(|_| invalid_query("from, to, log_id"))?;
    let request = proofs::ConsistencyRequest {
        from: p.from.as_deref(),
        to: p.to.as_deref(),
        log_id: p.log_id.as_deref(),
    };
    Ok(Json(proofs::consistency(&gw, request).await?).into_response())
}

fn wants(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| m.split(';').next().unwrap_or("").trim() == media)
}

/// Headers for pages and downloads with log contents: not cached, not framed, no scripts, no referrer.
pub fn private_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
}

pub(super) const CSV: &str = "text/csv; charset=utf-8";

/// A download: its media type, an attachment name when it is a file to save, and the next page in `next-cursor`.
pub(super) fn download(
    content_type: &'static str,
    file_name: Option<&str>,
    body: String,
    next_cursor: Option<&str>,
) -> Response {
    let mut r = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let h = r.headers_mut();
    if let Some(v) =
        file_name.and_then(|f| HeaderValue::from_str(&format!("attachment; filename=\"{f}\"")).ok())
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(v) = next_cursor.and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert("next-cursor", v);
    }
    r
}

async fn get_disclosures(
    State(gw): State<Arc<Gateway>>,
    Extension(officer): Extension<Officer>,
    headers: HeaderMap,
    params: Result<Query<DisclosureParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(p) = params.map_err(|_| invalid_query(oversight::DISCLOSURE_PARAMS))?;
    let nen = match p.format.as_deref().map(str::trim) {
        None | Some("") => false,
        Some("nen7513") => true,
        Some(_) => return Err(invalid_query(oversight::DISCLOSURE_PARAMS).into()),
    };
    let parsed = oversight::parse_search(&gw, &officer, &p, 100)?;
    let result = oversight::search(&gw, &officer, parsed, "api disclosures").await?;
    let cursor = result.next_cursor.as_deref();
    let mut resp = match (nen, wants(&headers, "text/csv")) {
        (true, true) => download(
            CSV,
            Some("ketenpoort-nen7513.csv"),
            oversight::nen7513::to_csv(&result.entries),
            cursor,
        ),
        (false, true) => download(
            CSV,
            Some("ketenpoort-disclosures.csv"),
            oversight::to_csv(&result.entries),
            cursor,
        ),
        (true, false) => Json(json!({
            "scope": result.scope.as_deref().unwrap_or("all"),
            "records": result.entries.iter().map(oversight::nen7513::record).collect::<Vec<_>>(),
            "next_cursor": result.next_cursor,
        }))
        .into_response(),
        (false, false) => Json(json!({
            "scope": result.scope.as_deref().unwrap_or("all"),
            "entries": result.entries.iter().map(oversight::ShownEntry::to_json).collect::<Vec<_>>(),
            "next_cursor": result.next_cursor,
        }))
        .into_response(),
    };
    private_headers(&mut resp);
    Ok(resp)
}

async fn get_subject(
    State(gw): State<Arc<Gateway>>,
    Extension(officer): Extension<Officer>,
    Path(pgn): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let report = oversight::subject_report(&gw, &officer, &pgn, "api subjects").await?;
    let mut resp = if wants(&headers, "text/html") {
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            super::console::subject_report_page(&report),
        )
            .into_response()
    } else {
        // The report names the pupil only by the log's pseudonym (`subject_ref`), never by the number asked with.
        Json(report).into_response()
    };
    private_headers(&mut resp);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_header_matching_ignores_parameters_and_order() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            "application/json;q=0.5, text/csv;q=1".parse().unwrap(),
        );
        assert!(wants(&h, "text/csv"));
        assert!(!wants(&h, "text/html"));
    }
}

/// The breach register: JSON, or CSV for the AP with `Accept: text/csv`.
async fn get_incidents(
    State(gw): State<Arc<Gateway>>,
    Extension(officer): Extension<Officer>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let all = incidents::list(&gw, &officer).await?;
    let mut resp = if wants(&headers, "text/csv") {
        download(
            CSV,
            Some("ketenpoort-datalekkenregister.csv"),
            incidents::csv(&all),
            None,
        )
    } else {
        let now = crate::audit::writer::now_ms();
        Json(json!({"incidents": all.iter().map(|i| i.to_json(now)).collect::<Vec<_>>()}))
            .into_response()
    };
    private_headers(&mut resp);
    Ok(resp)
}

async fn get_incident(
    State(gw): State<Arc<Gateway>>,
    Extension(officer): Extension<Officer>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let (incident, _) = incidents::get(&gw, &officer, &id).await?;
    let mut resp = Json(incident.to_json(crate::audit::writer::now_ms())).into_response();
    private_headers(&mut resp);
    Ok(resp)
}

fn incident_body<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| {
        // serde's message names the member (never a value of the log: the body is the officer's own).
        Refusal::new(ProblemCode::InvalidIncident, format!("{shape}: {e}"))
    })
}

async fn post_incident(
    State(gw): State<Arc<Gateway>>,
    Extension(officer): Extension<Officer>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let body = super::partner::read_body(&gw, &headers, body).await?;
    let req = incident_body(
        &body,
        "an incident is {\"description\", \"discovered_at\" (RFC 3339, optional), \"disclosures\": [{\"log_id\", \"seq\"}]}",
    )?;
    let opened = incidents::open(&gw, &officer, req).await?;
    let mut resp = (axum::http::StatusCode::CREATED, Json(opened)).into_response();
    private_headers(&mut resp);
    Ok(resp)
}

async fn patch_incident(
    State(gw): State<Arc<Gateway>>,
    Extension(officer): Extension<Officer>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let body = super::partner::read_body(&gw, &headers, body).await?;
    let req = incident_body(
        &body,
        "a step names risk (geen|laag|hoog), notify_ap, ap_notified_at, ap_reference, subjects_informed, measures, add_disclosures or close",
    )?;
    let updated = incidents::update(&gw, &officer, &id, req).await?;
    let mut resp = Json(updated).into_response();
    private_headers(&mut resp);
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SentToParams {
    receiver: String,
    from: Option<String>,
    to: Option<String>,
}

/// "Which dossiers did we send to the wrong organisation in this period": the officer's organisation's disclosures
/// to one receiver in a window.
async fn get_sent_to(
    State(gw): State<Arc<Gateway>>,
    Extension(officer): Extension<Officer>,
    params: Result<Query<SentToParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(p) = params.map_err(|_| invalid_query("receiver (required), from, to"))?;
    let when = |v: &Option<String>, end: bool| -> Result<Option<i64>, Refusal> {
        match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => oversight::instant(s, end).map(Some).ok_or_else(|| {
                invalid_query("receiver (required), from, to (YYYY-MM-DD or RFC 3339)")
            }),
        }
    };
    let found = incidents::sent_to(
        &gw,
        &officer,
        p.receiver.trim(),
        when(&p.from, false)?,
        when(&p.to, true)?,
    )
    .await?;
    let mut resp = Json(found).into_response();
    private_headers(&mut resp);
    Ok(resp)
}

/// `GET /v1/audit/export?format=ldv`: the Logboek Dataverwerkingen records of the disclosure search's result (the same
/// filters, scope and paging; each export is itself logged), as JSON lines; the next page in `next-cursor`.
async fn get_export(
    State(gw): State<Arc<Gateway>>,
    Extension(officer): Extension<Officer>,
    params: Result<Query<DisclosureParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(p) = params.map_err(|_| invalid_query(oversight::DISCLOSURE_PARAMS))?;
    if p.format.as_deref().map(str::trim) != Some("ldv") {
        return Err(
            invalid_query("format=ldv (required), and the disclosure search's filters").into(),
        );
    }
    let mut search = p.clone();
    search.format = None;
    let parsed = oversight::parse_search(&gw, &officer, &search, 1000)?;
    let result = oversight::search(&gw, &officer, parsed, "api export ldv").await?;
    let mut resp = download(
        "application/jsonl; charset=utf-8",
        None,
        oversight::ldv::to_json_lines(&result.entries),
        result.next_cursor.as_deref(),
    );
    private_headers(&mut resp);
    Ok(resp)
}
