//! The privacy officer's web console at `/console/` on the partner listener: server-rendered HTML in Dutch.
//!
//! Pages: overview, the disclosure table with a GET filter form (and CSV download), the subject report
//! (AVG art. 15), the log's integrity status (checkpoints and a full recomputation) and the policy view.
//! Only privacy-officer certificates get in (others: 403 problem+json); searches go through `audit::api`, so the
//! same scoping applies and every search is itself a log entry. Pages need no JavaScript and load nothing from
//! elsewhere; every value is HTML-escaped. A pupil number typed into a form is echoed back on that page only.

use crate::audit::api::{self, DisclosureParams, ShownEntry, SubjectReport};
use crate::audit::checkpoint::SignedCheckpoint;
use crate::audit::entry::EventKind;
use crate::audit::verify;
use crate::audit::writer::format_time;
use crate::domain::Role;
use crate::gateway::Gateway;
use crate::identity::Caller;
use crate::problem::Problem;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use base64::Engine;
use serde::Deserialize;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Instant;

pub fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(overview))
        .route("/console/verstrekkingen", get(disclosures))
        .route("/console/verstrekkingen.csv", get(disclosures_csv))
        .route("/console/leerling", get(subject))
        .route("/console/integriteit", get(integrity))
        .route("/console/beleid", get(policy))
}

/// The reference flows of DOMAIN.md the policy page explains by default.
const REFERENCE_FLOWS: [(&str, Role, Role, &str); 7] = [
    ("P1", Role::SchoolPo, Role::SchoolVo, "overstap-po-vo"),
    ("P2", Role::SchoolVo, Role::SwvVo, "tlv-aanvraag"),
    ("P3", Role::SchoolVo, Role::Leerplicht, "verzuimmelding"),
    ("P4", Role::SchoolPo, Role::Wijkteam, "vroegsignalering"),
    (
        "P5",
        Role::Wijkteam,
        Role::SchoolPo,
        "afstemming-ondersteuning",
    ),
    (
        "P6",
        Role::Leerplicht,
        Role::SchoolVo,
        "status-verzuimmelding",
    ),
    (
        "P7",
        Role::Leerplicht,
        Role::SwvVo,
        "monitoring-thuiszitters",
    ),
];

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
fn url(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn role_nl(role: &str) -> String {
    match Role::parse(role) {
        Some(Role::SchoolPo) => "school (primair onderwijs)".into(),
        Some(Role::SchoolVo) => "school (voortgezet onderwijs)".into(),
        Some(Role::SchoolVso) => "school (voortgezet speciaal onderwijs)".into(),
        Some(Role::SwvPo) => "samenwerkingsverband po".into(),
        Some(Role::SwvVo) => "samenwerkingsverband vo".into(),
        Some(Role::Leerplicht) => "leerplicht".into(),
        Some(Role::Wijkteam) => "wijkteam".into(),
        Some(Role::PrivacyOfficer) => "functionaris gegevensbescherming".into(),
        None => role.to_owned(),
    }
}

fn outcome_nl(outcome: &str) -> String {
    if outcome == "ok" {
        "in orde".into()
    } else {
        outcome.to_owned()
    }
}

/// `2026-11-22T08:06:00.123Z` → `2026-11-22 08:06:00`.
fn when(rfc3339: &str) -> String {
    let mut s = rfc3339.replacen('T', " ", 1);
    if let Some(dot) = s.find('.') {
        s.truncate(dot);
    }
    s.trim_end_matches('Z').to_owned()
}

const STYLE: &str = r#"
:root { --ink:#1b1f24; --muted:#5b6470; --line:#d6dbe1; --band:#f3f5f7; --accent:#01689b; --bad:#b3261e; --good:#1e7b34; }
* { box-sizing: border-box; }
body { margin:0; font: 15px/1.45 system-ui, "Segoe UI", Roboto, "Liberation Sans", Arial, sans-serif; color:var(--ink); background:#fff; }
header.top { background:var(--accent); color:#fff; padding:.7rem 1.5rem .4rem; }
header.top .brand { font-weight:700; font-size:1.1rem; }
header.top .who { font-size:.9rem; opacity:.95; margin:.15rem 0 .5rem; }
nav a { color:#fff; text-decoration:none; margin-right:1.2rem; padding:.25rem 0; display:inline-block; border-bottom:3px solid transparent; }
nav a.active { border-bottom-color:#fff; font-weight:600; }
main { padding:1rem 1.5rem 2rem; max-width:1400px; }
h1 { font-size:1.45rem; margin:.6rem 0 .8rem; }
h2 { font-size:1.2rem; margin:1.4rem 0 .5rem; }
h3 { font-size:1.05rem; margin:1.2rem 0 .4rem; }
p.meta, .muted { color:var(--muted); }
table { border-collapse:collapse; width:100%; margin:.4rem 0 1rem; font-size:.9rem; }
th, td { border-bottom:1px solid var(--line); padding:.35rem .5rem; text-align:left; vertical-align:top; }
th { background:var(--band); font-weight:600; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
code, .mono { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size:.82rem; overflow-wrap:anywhere; }
form.filters { display:grid; grid-template-columns:repeat(auto-fill, minmax(12rem, 1fr)); gap:.5rem 1rem; background:var(--band); padding:.8rem 1rem; border:1px solid var(--line); }
form.filters label, form.single label { display:flex; flex-direction:column; font-size:.82rem; color:var(--muted); }
input, select { font:inherit; padding:.3rem .4rem; border:1px solid #9aa4ae; border-radius:3px; background:#fff; color:var(--ink); }
.actions { display:flex; align-items:end; gap:.8rem; }
button { font:inherit; background:var(--accent); color:#fff; border:0; border-radius:3px; padding:.4rem 1rem; cursor:pointer; }
form.single { display:flex; gap:1rem; align-items:end; background:var(--band); padding:.8rem 1rem; border:1px solid var(--line); }
.cards { display:grid; grid-template-columns:repeat(auto-fill, minmax(18rem, 1fr)); gap:1rem; }
.card { border:1px solid var(--line); padding:.8rem 1rem; border-radius:4px; }
.card h2 { margin-top:0; }
.ok { color:var(--good); font-weight:600; }
.bad { color:var(--bad); font-weight:600; }
.error { border-left:4px solid var(--bad); background:#fdf0ef; padding:.6rem 1rem; margin:.8rem 0; }
.tag { display:inline-block; padding:0 .35rem; border-radius:3px; background:var(--band); border:1px solid var(--line); font-size:.8rem; white-space:nowrap; }
.tag.refused { border-color:#e3a7a3; background:#fdf0ef; }
.tag.disclosed { border-color:#9fd0ab; background:#eef8f0; }
pre { background:var(--band); border:1px solid var(--line); padding:.6rem .8rem; overflow:auto; font-size:.82rem; white-space:pre-wrap; overflow-wrap:anywhere; }
ul.fields { margin:0; padding-left:1.1rem; }
footer { color:var(--muted); font-size:.8rem; padding:0 1.5rem 1.5rem; }
@media print {
  header.top, nav, form, .noprint, footer { display:none !important; }
  main { padding:0; max-width:none; }
  body { font-size:11pt; }
  a { color:inherit; text-decoration:none; }
}
"#;

fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"nl\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{} — ketenpoort</title>\n<style>{STYLE}</style>\n</head>\n",
        esc(title)
    )
}

/// A console page: header with the caller and scope, navigation, body.
fn page(gw: &Gateway, caller: &Caller, active: &str, title: &str, body: &str) -> String {
    let scope = match api::scope_of(caller) {
        Some(org) => format!(
            "inzage in verstrekkingen van {}",
            esc(&gw
                .partners
                .by_id(&org)
                .map(|p| p.partner.name.clone())
                .unwrap_or(org))
        ),
        None => "inzage in alle organisaties (beheerder)".into(),
    };
    let mut nav = String::new();
    for (href, label) in [
        ("/console/", "Overzicht"),
        ("/console/verstrekkingen", "Verstrekkingen"),
        ("/console/leerling", "Inzageverzoek leerling"),
        ("/console/integriteit", "Integriteit logboek"),
        ("/console/beleid", "Beleid"),
    ] {
        let class = if href == active {
            " class=\"active\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{href}\"{class}>{label}</a>");
    }
    format!(
        "{}<body>\n<header class=\"top\"><div class=\"brand\">ketenpoort · console functionaris gegevensbescherming</div>\
<div class=\"who\">Aangemeld met het certificaat van <strong>{}</strong> · {scope}</div><nav>{nav}</nav></header>\n\
<main>\n<h1>{}</h1>\n{body}\n</main>\n<footer>Tijden in UTC. Het logboek bevat veldnamen, pseudoniemen en hashes, nooit de inhoud van berichten.</footer>\n</body>\n</html>\n",
        head(title),
        esc(&caller.partner().name),
        esc(title),
    )
}

fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    api::private_headers(&mut resp);
    resp
}

fn error_box(p: &Problem) -> String {
    format!(
        "<div class=\"error\"><strong>Dit kan niet worden gezocht:</strong> {} <span class=\"muted\">({})</span></div>",
        esc(&p.detail),
        esc(p.code)
    )
}

// ---------------------------------------------------------------- overview

async fn overview(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, Problem> {
    api::require_officer(&gw, &caller, "console").await?;
    let own = gw.writer.log_id();
    let size = gw.gauges().log_size;
    let latest = gw
        .store
        .checkpoints(own, 1)
        .await
        .ok()
        .and_then(|c| c.into_iter().next());
    let scope = match api::scope_of(&caller) {
        Some(org) => format!(
            "U ziet alleen gebeurtenissen waarbij <strong>{}</strong> aanvrager, verstrekker of ontvanger is.",
            esc(&gw.partners.by_id(&org).map(|p| p.partner.name.clone()).unwrap_or(org))
        ),
        None => "U ziet de gebeurtenissen van alle organisaties (functionaris van de beheerder).".into(),
    };
    let checkpoint = match latest {
        Some(cp) => format!(
            "Laatste ondertekende controlepunt: <strong>{}</strong> regels, {} UTC.",
            cp.tree_size,
            esc(&when(&format_time(cp.time_ms)))
        ),
        None => "Nog geen ondertekend controlepunt.".into(),
    };
    let body = format!(
        "<p>{scope}</p>\n<div class=\"cards\">\
<div class=\"card\"><h2><a href=\"/console/verstrekkingen\">Verstrekkingen</a></h2><p>Zoek in het logboek op periode, partner, doel, flow, uitkomst, soort gebeurtenis of leerling (PGN/BSN). Ook als CSV te downloaden, bijvoorbeeld om een datalek binnen 72 uur af te bakenen.</p></div>\
<div class=\"card\"><h2><a href=\"/console/leerling\">Inzageverzoek leerling</a></h2><p>Overzicht voor ouders of leerling (AVG art. 15): welke organisaties wanneer welke gegevens ontvingen, met doel, grondslag en toestemming. Af te drukken.</p></div>\
<div class=\"card\"><h2><a href=\"/console/integriteit\">Integriteit logboek</a></h2><p>Logboek <code>{}</code>: {size} regels. {checkpoint}</p></div>\
<div class=\"card\"><h2><a href=\"/console/beleid\">Beleid</a></h2><p>Per flow wat er met elk veld gebeurt: verstrekken, alleen met toestemming, grover maken, pseudonimiseren of weigeren.</p></div>\
</div>\n<p class=\"muted\">Elke zoekvraag in deze console wordt zelf in het logboek vastgelegd.</p>",
        esc(own),
    );
    Ok(html(
        StatusCode::OK,
        page(&gw, &caller, "/console/", "Overzicht", &body),
    ))
}

// ---------------------------------------------------------------- disclosure table

fn option(value: &str, label: &str, selected: bool) -> String {
    format!(
        "<option value=\"{}\"{}>{}</option>",
        esc(value),
        if selected { " selected" } else { "" },
        esc(label)
    )
}

fn filter_form(gw: &Gateway, p: &DisclosureParams) -> String {
    let v = |o: &Option<String>| esc(o.as_deref().unwrap_or(""));
    let mut partners: Vec<_> = gw.partners.all().map(|i| i.partner.clone()).collect();
    partners.sort_by(|a, b| a.id.cmp(&b.id));
    let mut partner_opts = option("", "alle", p.partner.as_deref().unwrap_or("").is_empty());
    for partner in &partners {
        partner_opts.push_str(&option(
            &partner.id,
            &format!("{} ({})", partner.name, partner.id),
            p.partner.as_deref() == Some(partner.id.as_str()),
        ));
    }
    let mut event_opts = option("", "alle", p.event.as_deref().unwrap_or("").is_empty());
    for k in EventKind::ALL {
        event_opts.push_str(&option(
            k.as_str(),
            k.label_nl(),
            p.event.as_deref() == Some(k.as_str()),
        ));
    }
    let mut limit_opts = String::new();
    let limit = p.limit.as_deref().unwrap_or("50");
    for n in ["25", "50", "100", "250", "1000"] {
        limit_opts.push_str(&option(n, n, limit == n));
    }
    format!(
        "<form class=\"filters\" method=\"get\" action=\"/console/verstrekkingen\">\
<label>Vanaf (datum)<input type=\"date\" name=\"from\" value=\"{}\"></label>\
<label>Tot en met (datum)<input type=\"date\" name=\"until\" value=\"{}\"></label>\
<label>Partner<select name=\"partner\">{partner_opts}</select></label>\
<label>Doel<input type=\"text\" name=\"purpose\" value=\"{}\" placeholder=\"bijv. vroegsignalering\"></label>\
<label>Flow<input type=\"text\" name=\"flow\" value=\"{}\" placeholder=\"bijv. P4\"></label>\
<label>Uitkomst<input type=\"text\" name=\"outcome\" value=\"{}\" placeholder=\"ok of een weigeringscode\"></label>\
<label>Gebeurtenis<select name=\"event\">{event_opts}</select></label>\
<label>Leerling: PGN<input type=\"text\" name=\"pgn\" value=\"{}\" inputmode=\"numeric\" autocomplete=\"off\" maxlength=\"9\"></label>\
<label>of BSN<input type=\"text\" name=\"bsn\" value=\"{}\" inputmode=\"numeric\" autocomplete=\"off\" maxlength=\"9\"></label>\
<label>Per pagina<select name=\"limit\">{limit_opts}</select></label>\
<div class=\"actions\"><button type=\"submit\">Zoeken</button><a href=\"/console/verstrekkingen\">Wissen</a></div>\
</form>",
        v(&p.from),
        v(&p.until),
        v(&p.purpose),
        v(&p.flow),
        v(&p.outcome),
        v(&p.pgn),
        v(&p.bsn),
    )
}

/// The filters as a query string (without the cursor).
fn query_string(p: &DisclosureParams) -> String {
    let mut parts = Vec::new();
    for (name, value) in [
        ("from", &p.from),
        ("until", &p.until),
        ("partner", &p.partner),
        ("purpose", &p.purpose),
        ("flow", &p.flow),
        ("outcome", &p.outcome),
        ("event", &p.event),
        ("pgn", &p.pgn),
        ("bsn", &p.bsn),
        ("limit", &p.limit),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("{name}={}", url(v)));
        }
    }
    parts.join("&")
}

fn fields_list(fields: &[String]) -> String {
    if fields.is_empty() {
        return "<span class=\"muted\">—</span>".into();
    }
    let mut out = String::from("<ul class=\"fields\">");
    for f in fields {
        // A narrow column breaks a path after a dot, not inside a name.
        let _ = write!(
            out,
            "<li><code>{}</code></li>",
            esc(f).replace('.', ".<wbr>")
        );
    }
    out.push_str("</ul>");
    out
}

fn entry_row(gw: &Gateway, s: &ShownEntry) -> String {
    let name = |id: &str| {
        gw.partners
            .by_id(id)
            .map(|p| p.partner.name.clone())
            .unwrap_or_else(|| id.to_owned())
    };
    let position = format!(
        "<span class=\"mono\" title=\"logboek {} · leaf hash {}\">#{}</span>",
        esc(&s.log_id),
        esc(&hex::encode(s.leaf_hash)),
        s.seq
    );
    let Some(e) = &s.entry else {
        return format!(
            "<tr><td>{}</td><td colspan=\"9\" class=\"bad\">Deze regel is niet leesbaar: het logboek is aangetast. Draai <code>ketenpoort audit verify</code>.</td><td>{position}</td></tr>",
            esc(&when(&format_time(s.time_ms)))
        );
    };
    let class = match e.event() {
        EventKind::MessageDisclosed => " disclosed",
        EventKind::MessageRefused | EventKind::ConsentRefused => " refused",
        _ => "",
    };
    let requester = match &e.actor {
        Some(a) => format!(
            "{}<br><span class=\"muted\">{} ({})</span>",
            esc(&name(&e.partner)),
            esc(&a.name),
            esc(&a.function)
        ),
        None => esc(&name(&e.partner)),
    };
    let route = match (&e.sender, &e.receiver) {
        (Some(from), Some(to)) => format!("{} → {}", esc(&name(from)), esc(&name(to))),
        (None, Some(to)) => format!("→ {}", esc(&name(to))),
        (Some(from), None) => format!("{} →", esc(&name(from))),
        (None, None) => "<span class=\"muted\">—</span>".into(),
    };
    let purpose = match (&e.purpose, &e.flow_id) {
        (Some(p), Some(f)) => format!("{}<br><span class=\"muted\">flow {}</span>", esc(p), esc(f)),
        (Some(p), None) => esc(p),
        (None, Some(f)) => format!("flow {}", esc(f)),
        (None, None) => String::new(),
    };
    let withheld: Vec<String> = e
        .withheld
        .iter()
        .map(|w| format!("{} ({})", w.field, w.reason))
        .collect();
    let mut detail = String::new();
    if let Some(d) = &e.detail {
        let _ = write!(detail, "<br><span class=\"muted\">{}</span>", esc(d));
    }
    let subject = e
        .subject
        .as_deref()
        .map(|s| {
            format!(
                "<br><span class=\"muted mono\" title=\"pseudoniem {}\">lln {}…</span>",
                esc(s),
                esc(&s.chars().take(8).collect::<String>())
            )
        })
        .unwrap_or_default();
    format!(
        "<tr><td>{}</td><td><span class=\"tag{class}\">{}</span>{subject}</td><td>{requester}</td><td>{route}</td><td>{purpose}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{detail}</td><td>{position}</td></tr>",
        esc(&when(&e.time)),
        e.event().label_nl(),
        esc(e.legal_basis.as_deref().unwrap_or("")),
        fields_list(&e.delivered),
        fields_list(&withheld),
        fields_list(&e.consents),
        esc(&outcome_nl(&e.outcome)),
    )
}

fn entries_table(gw: &Gateway, entries: &[ShownEntry]) -> String {
    let mut out = String::from(
        "<table><thead><tr><th>Tijdstip</th><th>Gebeurtenis</th><th>Aanvrager</th><th>Van → naar</th><th>Doel</th><th>Grondslag</th><th>Verstrekte velden</th><th>Ingehouden velden</th><th>Toestemming</th><th>Uitkomst</th><th>Positie</th></tr></thead><tbody>",
    );
    for s in entries {
        out.push_str(&entry_row(gw, s));
    }
    out.push_str("</tbody></table>");
    out
}

async fn disclosures(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<DisclosureParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    api::require_officer(&gw, &caller, "console").await?;
    let title = "Verstrekkingen";
    let p = match params {
        Ok(Query(p)) => p,
        Err(_) => {
            let prob = Problem::bad_request(
                "invalid-query",
                format!(
                    "onbekende zoekparameter; toegestaan: {}",
                    api::DISCLOSURE_PARAMS
                ),
            );
            let body = format!(
                "{}{}",
                filter_form(&gw, &DisclosureParams::default()),
                error_box(&prob)
            );
            return Ok(html(
                prob.status,
                page(&gw, &caller, "/console/verstrekkingen", title, &body),
            ));
        }
    };
    let mut body = filter_form(&gw, &p);
    let parsed = match api::parse_search(&gw, &caller, &p, 50) {
        Ok(parsed) => parsed,
        Err(prob) => {
            body.push_str(&error_box(&prob));
            return Ok(html(
                prob.status,
                page(&gw, &caller, "/console/verstrekkingen", title, &body),
            ));
        }
    };
    let result = api::search(&gw, &caller, parsed, "console verstrekkingen").await?;
    let qs = query_string(&p);
    let cursor_qs = p
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(|c| format!("&cursor={}", url(c)))
        .unwrap_or_default();
    let _ = write!(
        body,
        "<p class=\"noprint\">{} gebeurtenis(sen) op deze pagina{} · <a href=\"/console/verstrekkingen.csv?{}{}\">download als CSV</a></p>",
        result.entries.len(),
        if p.cursor.as_deref().is_some_and(|c| !c.is_empty()) { " (vervolgpagina)" } else { "" },
        esc(&qs),
        esc(&cursor_qs),
    );
    if result.entries.is_empty() {
        body.push_str("<p class=\"muted\">Geen gebeurtenissen gevonden binnen uw inzage.</p>");
    } else {
        body.push_str(&entries_table(&gw, &result.entries));
    }
    if let Some(next) = &result.next_cursor {
        let _ = write!(
            body,
            "<p class=\"noprint\"><a href=\"/console/verstrekkingen?{}&amp;cursor={}\">Volgende pagina →</a></p>",
            esc(&qs),
            url(next)
        );
    }
    Ok(html(
        StatusCode::OK,
        page(&gw, &caller, "/console/verstrekkingen", title, &body),
    ))
}

async fn disclosures_csv(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<DisclosureParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    api::require_officer(&gw, &caller, "console").await?;
    let Query(p) = params.map_err(|_| {
        Problem::bad_request(
            "invalid-query",
            format!(
                "unknown or malformed query parameter; allowed: {}",
                api::DISCLOSURE_PARAMS
            ),
        )
    })?;
    let parsed = api::parse_search(&gw, &caller, &p, 1000)?;
    let result = api::search(&gw, &caller, parsed, "console csv").await?;
    let mut resp = (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"ketenpoort-verstrekkingen.csv\"",
            ),
        ],
        api::to_csv(&result.entries),
    )
        .into_response();
    api::private_headers(&mut resp);
    Ok(resp)
}

// ---------------------------------------------------------------- subject report (art. 15)

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectParams {
    pgn: Option<String>,
}

/// The report as an HTML fragment (shared by the console page and the printable page of the API).
pub fn subject_report_html(report: &SubjectReport, pgn: &str) -> String {
    let mut out = String::new();
    let scope = match (&report.scope, &report.scope_name) {
        (Some(_), Some(name)) => format!(
            "verstrekkingen waarbij {} verstrekker of ontvanger was",
            esc(name)
        ),
        _ => "alle organisaties die via ketenpoort gegevens uitwisselen".into(),
    };
    let _ = write!(
        out,
        "<p>Overzicht van de gegevens over de leerling met PGN <strong>{}</strong> die via ketenpoort aan andere organisaties zijn verstrekt (AVG artikel 15), voor zover bekend bij: {scope}.</p>\
<p class=\"meta\">Opgesteld op {} UTC · pseudoniem in het logboek: <code>{}</code></p>",
        esc(pgn),
        esc(&when(&report.generated_at)),
        esc(&report.subject_ref),
    );
    if report.truncated {
        out.push_str("<div class=\"error\">Dit overzicht is ingekort: er zijn meer gebeurtenissen dan één overzicht bevat. Zoek per periode via Verstrekkingen.</div>");
    }
    out.push_str("<h2>Ontvangers</h2>");
    if report.recipients.is_empty() {
        out.push_str("<p class=\"muted\">Er zijn geen gegevens over deze leerling verstrekt.</p>");
    } else {
        out.push_str("<table><thead><tr><th>Organisatie</th><th>Soort organisatie</th><th>Aantal verstrekkingen</th><th>Eerste</th><th>Laatste</th></tr></thead><tbody>");
        for r in &report.recipients {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.name),
                esc(&role_nl(&r.role)),
                r.disclosures,
                esc(&when(&r.first)),
                esc(&when(&r.last))
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("<h2>Verstrekkingen</h2>");
    if report.disclosures.is_empty() {
        out.push_str("<p class=\"muted\">Geen.</p>");
    } else {
        out.push_str("<table><thead><tr><th>Datum</th><th>Van</th><th>Aan</th><th>Doel</th><th>Grondslag</th><th>Verstrekte gegevens</th><th>Gebruikte toestemming</th></tr></thead><tbody>");
        for d in &report.disclosures {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}<br><span class=\"muted\">{}</span></td><td>{}<br><span class=\"muted\">flow {}</span></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&when(&d.time)),
                esc(&d.sender_name),
                esc(&d.recipient_name),
                esc(&role_nl(&d.recipient_role)),
                esc(&d.purpose),
                esc(&d.flow_id),
                esc(&d.legal_basis),
                fields_list(&d.fields_delivered),
                fields_list(&d.consents_used),
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("<h2>Toestemmingen</h2>");
    if report.consents.is_empty() {
        out.push_str("<p class=\"muted\">Geen toestemmingen vastgelegd.</p>");
    } else {
        out.push_str("<table><thead><tr><th>Kenmerk</th><th>Vastgelegd door</th><th>Doel</th><th>Ontvanger</th><th>Categorieën</th><th>Gegeven door</th><th>Geldig</th><th>Ingetrokken</th></tr></thead><tbody>");
        for c in &report.consents {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} t/m {}</td><td>{}</td></tr>",
                esc(&c.consent_id),
                esc(&c.registered_by),
                esc(&c.purpose),
                esc(&c.recipient),
                esc(&c.categories.join(", ")),
                esc(&c.given_by),
                esc(&c.valid_from),
                esc(&c.valid_until),
                esc(&c.withdrawn_at.as_deref().map(when).unwrap_or_else(|| "nee".into())),
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("<h2>Geweigerde verzoeken</h2>");
    if report.refused.is_empty() {
        out.push_str("<p class=\"muted\">Geen.</p>");
    } else {
        out.push_str("<table><thead><tr><th>Datum</th><th>Van</th><th>Aan</th><th>Doel</th><th>Reden</th></tr></thead><tbody>");
        for r in &report.refused {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&when(&r.time)),
                esc(&r.sender),
                esc(&r.receiver),
                esc(&r.purpose),
                esc(&r.outcome)
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("<p class=\"muted\">Dit overzicht noemt de ontvangende organisaties, geen individuele medewerkers. Het logboek bevat welke velden zijn verstrekt, niet de inhoud ervan. Gegevens die niet via ketenpoort zijn uitgewisseld staan hier niet in.</p>");
    out
}

/// The art. 15 report as a standalone printable page.
pub fn subject_report_page(report: &SubjectReport, pgn: &str) -> String {
    let title = "Inzageverzoek: verstrekte gegevens over een leerling";
    format!(
        "{}<body>\n<main>\n<h1>{}</h1>\n{}\n</main>\n</body>\n</html>\n",
        head(title),
        esc(title),
        subject_report_html(report, pgn)
    )
}

async fn subject(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<SubjectParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    api::require_officer(&gw, &caller, "console").await?;
    let title = "Inzageverzoek leerling";
    let pgn = params
        .ok()
        .and_then(|Query(p)| p.pgn)
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty());
    let mut body = format!(
        "<form class=\"single\" method=\"get\" action=\"/console/leerling\"><label>PGN (BSN of onderwijsnummer)<input type=\"text\" name=\"pgn\" value=\"{}\" inputmode=\"numeric\" autocomplete=\"off\" maxlength=\"9\" required></label><button type=\"submit\">Overzicht maken</button></form>",
        esc(pgn.as_deref().unwrap_or(""))
    );
    let mut status = StatusCode::OK;
    match pgn {
        None => body.push_str("<p class=\"muted\">Vul het PGN van de leerling in. Het overzicht noemt alle organisaties die via ketenpoort gegevens over de leerling ontvingen, binnen uw inzage. Ook deze vraag wordt in het logboek vastgelegd (alleen met het pseudoniem van de leerling).</p>"),
        Some(pgn) => match api::subject_report(&gw, &caller, &pgn, "console leerling").await {
            Ok(report) => {
                let _ = write!(
                    body,
                    "<p class=\"noprint\"><a href=\"/v1/audit/subjects/{}\">Afdrukbare versie</a> (of druk deze pagina af)</p>",
                    url(&pgn)
                );
                body.push_str(&subject_report_html(&report, &pgn));
            }
            Err(p) if p.status.is_client_error() => {
                status = p.status;
                body.push_str(&error_box(&p));
            }
            Err(p) => return Err(p),
        },
    }
    Ok(html(
        status,
        page(&gw, &caller, "/console/leerling", title, &body),
    ))
}

// ---------------------------------------------------------------- integrity

async fn integrity(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, Problem> {
    api::require_officer(&gw, &caller, "console").await?;
    let unreadable = || {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit-unavailable",
            "the disclosure log cannot be read right now; try again later",
        )
        .with_retry_after(5)
    };
    let own = gw.writer.log_id().to_owned();
    let public_key = gw.signing_key.public_key();
    let mut body = format!(
        "<p>Elke regel van het logboek is een blad van een Merkle-boom (RFC 9162). De gateway ondertekent regelmatig de wortel van de boom met zijn Ed25519-sleutel (een <em>controlepunt</em>). Hieronder wordt het hele logboek opnieuw doorgerekend en vergeleken met de ondertekende controlepunten: een verwijderde, gewijzigde of verplaatste regel valt dan op.</p>\
<p>Publieke sleutel van deze gateway (sleutel-id <code>{}</code>):<br><code>{}</code></p>",
        esc(gw.signing_key.key_id()),
        esc(&base64::engine::general_purpose::STANDARD.encode(public_key)),
    );
    body.push_str("<table><thead><tr><th>Logboek</th><th>Regels</th><th>Laatste controlepunt</th><th>Wortel (hex)</th><th>Controle</th></tr></thead><tbody>");
    let log_ids = gw.store.log_ids().await.map_err(|_| unreadable())?;
    for log_id in &log_ids {
        let latest = gw
            .store
            .checkpoints(log_id, 1)
            .await
            .map_err(|_| unreadable())?
            .into_iter()
            .next();
        let (cp_text, root) = match &latest {
            Some(cp) => {
                let parsed = SignedCheckpoint::from_note(&cp.note).ok();
                (
                    format!(
                        "{} regels, {} UTC<br><span class=\"muted\">sleutel {}</span>",
                        cp.tree_size,
                        esc(&when(&format_time(cp.time_ms))),
                        esc(parsed.as_ref().map(|p| p.key_id.as_str()).unwrap_or("?"))
                    ),
                    parsed
                        .map(|p| hex::encode(p.checkpoint.root))
                        .unwrap_or_default(),
                )
            }
            None => ("nog geen".into(), String::new()),
        };
        let mine = *log_id == own;
        let keys: &[[u8; 32]] = if mine {
            std::slice::from_ref(&public_key)
        } else {
            &[]
        };
        let started = Instant::now();
        let report = verify::verify_log(&gw.store, log_id, keys)
            .await
            .map_err(|_| unreadable())?;
        let secs = started.elapsed().as_secs_f64();
        let verdict = match &report.first_bad {
            None => format!(
                "<span class=\"ok\">In orde</span>: {} regels doorgerekend, {} controlepunt(en) en {} opgeslagen deelboom(en) kloppen{} <span class=\"muted\">({secs:.2} s)</span>",
                report.entries,
                report.checkpoints_checked,
                report.subtrees_checked,
                if mine {
                    ", handtekeningen gecontroleerd"
                } else {
                    "; handtekeningen niet gecontroleerd (sleutel van een andere gateway-instantie)"
                },
            ),
            Some((seq, why)) => format!(
                "<span class=\"bad\">NIET IN ORDE</span> vanaf regel {seq}: {}",
                esc(why)
            ),
        };
        let _ = write!(
            body,
            "<tr><td><code>{}</code>{}</td><td class=\"num\">{}</td><td>{cp_text}</td><td><code>{}</code></td><td>{verdict}</td></tr>",
            esc(log_id),
            if mine { "<br><span class=\"muted\">deze gateway</span>" } else { "" },
            report.entries,
            esc(&root),
        );
    }
    body.push_str("</tbody></table>");
    body.push_str("<p class=\"muted\">Zelf controleren, los van deze gateway: <code>ketenpoort audit verify --database-url … --public-key log-signing.key.pub</code>. Inclusie- en consistentiebewijzen zijn op te vragen via <code>/v1/audit/proof/…</code>.</p>");
    Ok(html(
        StatusCode::OK,
        page(
            &gw,
            &caller,
            "/console/integriteit",
            "Integriteit van het logboek",
            &body,
        ),
    ))
}

// ---------------------------------------------------------------- policy view

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyParams {
    from: Option<String>,
    to: Option<String>,
    purpose: Option<String>,
}

fn explain_block(gw: &Gateway, from: Role, to: Role, purpose: &str) -> String {
    match crate::policy::explain(&gw.policy(), from, to, purpose) {
        Ok(text) if text.trim().is_empty() => {
            "<pre class=\"muted\">(het beleid geeft voor deze flow geen uitleg)</pre>".into()
        }
        Ok(text) => format!("<pre>{}</pre>", esc(&text)),
        Err(r) => format!(
            "<p class=\"muted\">Geen flow: {} <span class=\"muted\">({})</span></p>",
            esc(&r.detail),
            esc(r.code)
        ),
    }
}

async fn policy(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<PolicyParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    api::require_officer(&gw, &caller, "console").await?;
    let p = params.map(|Query(p)| p).unwrap_or(PolicyParams {
        from: None,
        to: None,
        purpose: None,
    });
    let role_select = |name: &str, selected: Option<&str>| {
        let mut s = format!("<select name=\"{name}\">");
        for r in Role::ALL {
            s.push_str(&option(
                r.as_str(),
                &role_nl(r.as_str()),
                selected == Some(r.as_str()),
            ));
        }
        s.push_str("</select>");
        s
    };
    let mut body = format!(
        "<p>Per flow (verstrekker, ontvanger, doel) wat er met elk veld gebeurt: verstrekken, alleen met toestemming, grover maken, pseudonimiseren of weigeren. Beleid-hash: <code>{}</code>.</p>\
<form class=\"single\" method=\"get\" action=\"/console/beleid\"><label>Van<span>{}</span></label><label>Naar<span>{}</span></label><label>Doel<input type=\"text\" name=\"purpose\" value=\"{}\"></label><button type=\"submit\">Toon</button></form>",
        esc(Some(gw.policy().hash())
            .filter(|h| !h.is_empty())
            .unwrap_or("(geen)")),
        role_select("from", p.from.as_deref()),
        role_select("to", p.to.as_deref()),
        esc(p.purpose.as_deref().unwrap_or("")),
    );
    if let (Some(from), Some(to), Some(purpose)) = (
        p.from.as_deref().and_then(Role::parse),
        p.to.as_deref().and_then(Role::parse),
        p.purpose
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty()),
    ) {
        let _ = write!(
            body,
            "<h2>{} → {}, doel {}</h2>{}",
            esc(&role_nl(from.as_str())),
            esc(&role_nl(to.as_str())),
            esc(purpose),
            explain_block(&gw, from, to, purpose)
        );
    }
    body.push_str("<h2>Referentieflows</h2>");
    for (id, from, to, purpose) in REFERENCE_FLOWS {
        let _ = write!(
            body,
            "<h3>{id}: {} → {}, doel <code>{}</code></h3>{}",
            esc(&role_nl(from.as_str())),
            esc(&role_nl(to.as_str())),
            esc(purpose),
            explain_block(&gw, from, to, purpose)
        );
    }
    Ok(html(
        StatusCode::OK,
        page(&gw, &caller, "/console/beleid", "Beleid", &body),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_attributes() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(url("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        let p = DisclosureParams {
            purpose: Some("x&y".into()),
            limit: Some("50".into()),
            pgn: Some(String::new()),
            ..DisclosureParams::default()
        };
        assert_eq!(query_string(&p), "purpose=x%26y&limit=50");
    }

    #[test]
    fn times_are_shown_without_fraction() {
        assert_eq!(when("2026-11-22T08:06:00.123Z"), "2026-11-22 08:06:00");
        assert_eq!(when("2026-11-22T08:06:00Z"), "2026-11-22 08:06:00");
    }
}
