//! The privacy officer's web console at `/console/` on the partner listener: server-rendered HTML in Dutch.
//!
//! Pages: overview, the disclosure table with a GET filter form (and CSV download), the subject report
//! (AVG art. 15, printable), the log's integrity status (checkpoints and a full recomputation) and the policy view
//! (every flow field by field, with labels and a legend, and the diff of the last policy reload,
//! `Gateway::last_policy_change`). Field lists show counts per category and fold the full list in a `<details>`.
//! Only privacy-officer certificates get in (others: 403 problem+json); searches go through `oversight`, so the
//! same scoping applies and every search is itself a log entry. Pages need no JavaScript and load nothing from
//! elsewhere. They are `maud` templates: every value is HTML-escaped by the template, and raw HTML
//! (`PreEscaped`) is only ever a constant (the style sheet). A pupil number typed into a form is echoed back on
//! that page only.

use super::audit::private_headers;
use super::problem::{status_of, Problem};
use crate::audit::checkpoint::SignedCheckpoint;
use crate::audit::entry::EventKind;
use crate::audit::verify;
use crate::audit::writer::format_time;
use crate::domain::Role;
use crate::gateway::{Gateway, PolicyChange};
use crate::identity::Caller;
use crate::oversight::{self as api, DisclosureParams, Officer, ShownEntry, SubjectReport};
use crate::policy::{
    category_name, group_fields, CategoryGroup, Change, Class, Explanation, Section, Status,
    ACTIONS, CATEGORIES,
};
use crate::refusal::{ProblemCode, Refusal};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use base64::Engine;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
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
        .merge(super::datalekken::router())
}

/// The reference flows of DOMAIN.md the policy page explains by default.
const REFERENCE_FLOWS: [(&str, Role, Role, &str); 16] = [
    ("P1", Role::SchoolPo, Role::SchoolVo, "overstap-po-vo"),
    ("P1-wpo", Role::SchoolPo, Role::SchoolSo, "overstap"),
    ("P1-wec-so", Role::SchoolSo, Role::SchoolPo, "overstap"),
    ("P1-wec-vso", Role::SchoolVso, Role::SchoolVo, "overstap"),
    ("P1-wvo", Role::SchoolVo, Role::SchoolMbo, "overstap"),
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
    ("P8", Role::SchoolPo, Role::SchoolVo, "warme-overdracht"),
    (
        "P9",
        Role::SchoolPo,
        Role::VeiligThuis,
        "melding-huiselijk-geweld",
    ),
    (
        "P10",
        Role::SchoolPo,
        Role::Jgz,
        "ziekteverzuim-begeleiding",
    ),
    ("P11", Role::SwvVo, Role::SchoolVo, "tlv-besluit"),
    ("P12", Role::SchoolVo, Role::SwvVo, "anoniem-consult"),
];

/// Bytes a query value or path segment keeps as they are (RFC 3986 unreserved); everything else is `%XX`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a query value (or a path segment).
fn url(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

fn role_nl(role: &str) -> String {
    match Role::parse(role) {
        Some(Role::SchoolPo) => "school (primair onderwijs)".into(),
        Some(Role::SchoolVo) => "school (voortgezet onderwijs)".into(),
        Some(Role::SchoolSo) => "school (speciaal onderwijs)".into(),
        Some(Role::SchoolVso) => "school (voortgezet speciaal onderwijs)".into(),
        Some(Role::SchoolMbo) => "school (middelbaar beroepsonderwijs)".into(),
        Some(Role::SwvPo) => "samenwerkingsverband po".into(),
        Some(Role::SwvVo) => "samenwerkingsverband vo".into(),
        Some(Role::Leerplicht) => "leerplicht".into(),
        Some(Role::Wijkteam) => "wijkteam".into(),
        Some(Role::Jgz) => "jeugdgezondheidszorg (GGD)".into(),
        Some(Role::VeiligThuis) => "Veilig Thuis".into(),
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
pub(super) fn when(rfc3339: &str) -> String {
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
caption { text-align:left; font-weight:600; padding:.2rem 0 .3rem; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
code, .mono { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size:.82rem; overflow-wrap:anywhere; }
form.filters { display:grid; grid-template-columns:repeat(auto-fill, minmax(12rem, 1fr)); gap:.5rem 1rem; background:var(--band); padding:.8rem 1rem; border:1px solid var(--line); }
form.filters label, form.single label { display:flex; flex-direction:column; font-size:.82rem; color:var(--muted); }
input, select { font:inherit; padding:.3rem .4rem; border:1px solid #9aa4ae; border-radius:3px; background:#fff; color:var(--ink); }
.actions { display:flex; align-items:end; gap:.8rem; }
button { font:inherit; background:var(--accent); color:#fff; border:0; border-radius:3px; padding:.4rem 1rem; cursor:pointer; }
form.single { display:flex; gap:1rem; align-items:end; background:var(--band); padding:.8rem 1rem; border:1px solid var(--line); }
form.steps { display:grid; grid-template-columns:repeat(auto-fill, minmax(14rem, 1fr)); gap:.5rem 1rem; background:var(--band); padding:.8rem 1rem; border:1px solid var(--line); margin-top:.6rem; }
form.steps h3 { grid-column:1 / -1; margin:0; }
form.steps label { display:flex; flex-direction:column; font-size:.82rem; color:var(--ink); }
textarea { font:inherit; padding:.3rem .4rem; border:1px solid #9aa4ae; border-radius:3px; }
dl { display:grid; grid-template-columns:max-content 1fr; gap:.2rem 1rem; }
dt { font-weight:600; }
dd { margin:0; }
.cards { display:grid; grid-template-columns:repeat(auto-fill, minmax(18rem, 1fr)); gap:1rem; }
.card { border:1px solid var(--line); padding:.8rem 1rem; border-radius:4px; }
.card h2 { margin-top:0; }
.ok { color:var(--good); font-weight:600; }
.bad { color:var(--bad); font-weight:600; }
.error { border-left:4px solid var(--bad); background:#fdf0ef; padding:.6rem 1rem; margin:.8rem 0; }
.tag { display:inline-block; padding:0 .35rem; border-radius:3px; background:var(--band); border:1px solid var(--line); font-size:.8rem; white-space:nowrap; }
.tag.refused { border-color:#e3a7a3; background:#fdf0ef; }
.tag.disclosed { border-color:#9fd0ab; background:#eef8f0; }
.tag.expired { border-color:#e0c97a; background:#fdf8e8; }
pre { background:var(--band); border:1px solid var(--line); padding:.6rem .8rem; overflow:auto; font-size:.82rem; white-space:pre-wrap; overflow-wrap:anywhere; }
ul.fields { margin:0; padding-left:1.1rem; }
td.fields { min-width:11rem; }
.groups { margin:0 0 .2rem; }
.groups span { white-space:nowrap; }
details summary { cursor:pointer; color:var(--accent); }
details .group { margin:.4rem 0 .1rem; font-weight:600; }
table.facts th { width:12rem; }
table.legend td:first-child, table.legend th:first-child { white-space:nowrap; }
section.rights li { margin-bottom:.4rem; }
footer { color:var(--muted); font-size:.8rem; padding:0 1.5rem 1.5rem; }
@media print {
  header.top, nav, form, .noprint, footer { display:none !important; }
  main { padding:0; max-width:none; }
  body { font-size:10.5pt; }
  a { color:inherit; text-decoration:none; }
  h2, h3 { break-after:avoid; }
  tr, li { break-inside:avoid; }
  details summary { color:inherit; }
  table { font-size:9.5pt; }
}
"#;

/// The document around a page's content: doctype, `<head>` with the title and the style sheet, `<body>`.
fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="nl" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — ketenpoort" }
                // A constant, not a value: the only raw HTML (CSS) on any page.
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    }
}

/// The name of partner `id` (or the id itself when it is not in partners.toml).
pub(super) fn partner_name(gw: &Gateway, id: &str) -> String {
    gw.partners
        .by_id(id)
        .map(|p| p.partner.name.clone())
        .unwrap_or_else(|| id.to_owned())
}

/// A console page: header with the caller and scope, navigation, body.
pub(super) fn page(
    gw: &Gateway,
    caller: &Caller,
    active: &str,
    title: &str,
    body: Markup,
) -> Markup {
    let scope = api::scope_of(caller);
    let content = html! {
        header.top {
            div.brand { "ketenpoort · console functionaris gegevensbescherming" }
            div.who {
                "Aangemeld met het certificaat van " strong { (caller.partner().name) } " · "
                @match &scope {
                    Some(org) => { "inzage in verstrekkingen van " (partner_name(gw, org)) }
                    None => "inzage in alle organisaties (beheerder)",
                }
            }
            nav {
                @for (href, label) in [
                    ("/console/", "Overzicht"),
                    ("/console/verstrekkingen", "Verstrekkingen"),
                    ("/console/leerling", "Inzageverzoek leerling"),
                    ("/console/datalekken", "Datalekken"),
                    ("/console/integriteit", "Integriteit logboek"),
                    ("/console/beleid", "Beleid"),
                ] {
                    a href=(href) class=[(href == active).then_some("active")] { (label) }
                }
            }
        }
        main {
            h1 { (title) }
            (body)
        }
        footer {
            "Tijden in UTC. Het logboek bevat veldnamen, pseudoniemen en hashes, nooit de inhoud van berichten."
        }
    };
    document(title, content)
}

pub(super) fn html(status: StatusCode, page: Markup) -> Response {
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.into_string(),
    )
        .into_response();
    private_headers(&mut resp);
    resp
}

pub(super) fn error_box(p: &Refusal) -> Markup {
    html! {
        div.error {
            strong { "Dit kan niet worden gezocht:" } " " (p.detail) " " span.muted { "(" (p.code) ")" }
        }
    }
}

// ---------------------------------------------------------------- overview

async fn overview(
    State(gw): State<Arc<Gateway>>,
    Extension(officer): Extension<Officer>,
) -> Result<Response, Problem> {
    let caller = officer.caller();
    let own = gw.writer.log_id();
    let size = gw.gauges().log_size;
    let latest = gw
        .store
        .checkpoints(own, 1)
        .await
        .ok()
        .and_then(|c| c.into_iter().next());
    let now = crate::audit::writer::now_ms();
    let incidents = crate::oversight::incidents::list(&gw, &officer)
        .await
        .ok()
        .map(|all| {
            let open: Vec<_> = all.iter().filter(|i| i.is_open()).collect();
            let late = open
                .iter()
                .filter(|i| !i.decided() && i.to_json(now)["hours_left"].as_i64().unwrap_or(0) < 0)
                .count();
            (open.len(), late)
        });
    let body = html! {
        p {
            @match api::scope_of(caller) {
                Some(org) => {
                    "U ziet alleen gebeurtenissen waarbij " strong { (partner_name(&gw, &org)) }
                    " aanvrager, verstrekker of ontvanger is."
                }
                None => "U ziet de gebeurtenissen van alle organisaties (functionaris van de beheerder).",
            }
        }
        div.cards {
            div.card {
                h2 { a href="/console/verstrekkingen" { "Verstrekkingen" } }
                p { "Zoek in het logboek op periode, partner, doel, flow, uitkomst, soort gebeurtenis of leerling (PGN/BSN). Ook als CSV te downloaden, bijvoorbeeld om een datalek binnen 72 uur af te bakenen." }
            }
            div.card {
                h2 { a href="/console/leerling" { "Inzageverzoek leerling" } }
                p { "Overzicht voor ouders of leerling (AVG art. 15): welke organisaties wanneer welke gegevens ontvingen, van wie, met doel, grondslag, toestemming en bewaartermijn, en hun rechten. Af te drukken." }
            }
            div.card {
                h2 { a href="/console/datalekken" { "Datalekken" } }
                @match &incidents {
                    Some((open, late)) => p {
                        (open) " open datalek(ken), waarvan "
                        strong class=[(*late > 0).then_some("bad")] { (late) }
                        " over de termijn van 72 uur zonder besluit over melding bij de AP."
                    },
                    None => p.bad { "Het datalekkenregister kan nu niet worden gelezen." },
                }
            }
            div.card {
                h2 { a href="/console/integriteit" { "Integriteit logboek" } }
                p {
                    "Logboek " code { (own) } ": " (size) " regels. "
                    @match &latest {
                        Some(cp) => {
                            "Laatste ondertekende controlepunt: " strong { (cp.tree_size) } " regels, "
                            (when(&format_time(cp.time_ms))) " UTC."
                        }
                        None => "Nog geen ondertekend controlepunt.",
                    }
                }
            }
            div.card {
                h2 { a href="/console/beleid" { "Beleid" } }
                p { "Per flow wat er met elk veld gebeurt: toegestaan, alleen met toestemming, gegeneraliseerd, gepseudonimiseerd of geweigerd, met een legenda van klassen en categorieën." }
            }
        }
        p.muted { "Elke zoekvraag in deze console wordt zelf in het logboek vastgelegd." }
    };
    Ok(html(
        StatusCode::OK,
        page(&gw, caller, "/console/", "Overzicht", body),
    ))
}

// ---------------------------------------------------------------- disclosure table

fn option(value: &str, label: &str, selected: bool) -> Markup {
    html! { option value=(value) selected[selected] { (label) } }
}

fn filter_form(gw: &Gateway, p: &DisclosureParams) -> Markup {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let mut partners: Vec<_> = gw.partners.all().map(|i| i.partner.clone()).collect();
    partners.sort_by(|a, b| a.id.cmp(&b.id));
    let limit = p.limit.as_deref().unwrap_or("50");
    html! {
        form.filters method="get" action="/console/verstrekkingen" {
            label { "Vanaf (datum)" input type="date" name="from" value=(v(&p.from)); }
            label { "Tot en met (datum)" input type="date" name="until" value=(v(&p.until)); }
            label {
                "Partner"
                select name="partner" {
                    (option("", "alle", p.partner.as_deref().unwrap_or("").is_empty()))
                    @for partner in &partners {
                        (option(
                            &partner.id,
                            &format!("{} ({})", partner.name, partner.id),
                            p.partner.as_deref() == Some(partner.id.as_str()),
                        ))
                    }
                }
            }
            label { "Doel" input type="text" name="purpose" value=(v(&p.purpose)) placeholder="bijv. vroegsignalering"; }
            label { "Flow" input type="text" name="flow" value=(v(&p.flow)) placeholder="bijv. P4"; }
            label { "Uitkomst" input type="text" name="outcome" value=(v(&p.outcome)) placeholder="ok of een weigeringscode"; }
            label {
                "Gebeurtenis"
                select name="event" {
                    (option("", "alle", p.event.as_deref().unwrap_or("").is_empty()))
                    @for k in EventKind::ALL {
                        (option(k.as_str(), k.label_nl(), p.event.as_deref() == Some(k.as_str())))
                    }
                }
            }
            label { "Leerling: PGN" input type="text" name="pgn" value=(v(&p.pgn)) inputmode="numeric" autocomplete="off" maxlength="9"; }
            label { "of BSN" input type="text" name="bsn" value=(v(&p.bsn)) inputmode="numeric" autocomplete="off" maxlength="9"; }
            label { "Kerngroepcasus (case_id)" input type="text" name="case_id" value=(v(&p.case_id)) autocomplete="off" maxlength="36"; }
            label {
                "Per pagina"
                select name="limit" {
                    @for n in ["25", "50", "100", "250", "1000"] {
                        (option(n, n, limit == n))
                    }
                }
            }
            div.actions {
                button type="submit" { "Zoeken" }
                a href="/console/verstrekkingen" { "Wissen" }
            }
        }
    }
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
        ("case_id", &p.case_id),
        ("limit", &p.limit),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("{name}={}", url(v)));
        }
    }
    parts.join("&")
}

fn fields_list<S: AsRef<str>>(fields: &[S]) -> Markup {
    html! {
        @if fields.is_empty() {
            span.muted { "—" }
        } @else {
            ul.fields {
                @for f in fields {
                    li { (path_code(f.as_ref())) }
                }
            }
        }
    }
}

/// A field path with a break opportunity after each dot (a narrow column breaks it there, not inside a name).
fn path_code(path: &str) -> Markup {
    html! {
        code {
            @for (i, part) in path.split('.').enumerate() {
                @if i > 0 { "." wbr; }
                (part)
            }
        }
    }
}

/// How a list of fields reads: for the privacy officer (codes and paths) or for parents (names and labels only).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Readers {
    Officer,
    Parents,
}

/// A log entry's fields per category: the counts (`ADM 7, SCH 3` for the officer, `Administratieve gegevens: 7`
/// for parents), then every field by its label in a `<details>`, folded unless `open`.
fn field_groups(groups: &[CategoryGroup], readers: Readers, open: bool) -> Markup {
    let total: usize = groups.iter().map(|g| g.fields.len()).sum();
    html! {
        @if groups.is_empty() {
            span.muted { "—" }
        } @else {
            p.groups {
                @for (i, g) in groups.iter().enumerate() {
                    @if i > 0 { ", " }
                    span {
                        @match readers {
                            Readers::Officer => { (g.code()) " " (g.fields.len()) }
                            Readers::Parents => { (g.title()) ": " (g.fields.len()) }
                        }
                    }
                }
            }
            details open[open] {
                summary { "Alle velden (" (total) ")" }
                @for g in groups {
                    p.group {
                        (g.title())
                        @if readers == Readers::Officer && g.category.is_some() && g.name.is_some() {
                            " (" (g.code()) ")"
                        }
                    }
                    ul.fields {
                        @for f in &g.fields {
                            li {
                                @match (&f.label, readers) {
                                    (Some(label), Readers::Officer) => { (label) " " (path_code(&f.path)) }
                                    (Some(label), Readers::Parents) => (label),
                                    (None, _) => (path_code(&f.path)),
                                }
                                @if f.count > 1 { " (" (f.count) "×)" }
                                @for n in &f.notes {
                                    br; span.muted { (n) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A log entry's field list (`paths` with optional notes) grouped by the running catalogue of `message_type`.
fn groups_of<'a>(
    gw: &Gateway,
    message_type: Option<&str>,
    items: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Vec<CategoryGroup> {
    let policy = gw.policy();
    group_fields(message_type.and_then(|t| policy.catalogue(t)), items)
}

/// The category codes and their Dutch names, for the pages that show codes.
fn categories_legend() -> Markup {
    html! {
        p.muted {
            "Categorieën: "
            @for (i, (code, name)) in CATEGORIES.iter().enumerate() {
                @if i > 0 { " · " }
                strong { (code) } " " (name)
            }
            ". Een aantal telt verschillende velden; een veld dat per element van een lijst voorkomt (bijvoorbeeld elke toets) telt één keer."
        }
    }
}

fn entry_row(gw: &Gateway, s: &ShownEntry) -> Markup {
    let name = |id: &str| partner_name(gw, id);
    let position = html! {
        span.mono title={ "logboek " (s.log_id) " · leaf hash " (hex::encode(s.leaf_hash)) } { "#" (s.seq) }
    };
    let Some(e) = &s.entry else {
        return html! {
            tr {
                td { (when(&format_time(s.time_ms))) }
                td colspan="9" class="bad" {
                    "Deze regel is niet leesbaar: het logboek is aangetast. Draai " code { "ketenpoort audit verify" } "."
                }
                td { (position) }
            }
        };
    };
    let class = match e.event() {
        EventKind::MessageDisclosed => " disclosed",
        EventKind::MessageRefused | EventKind::ConsentRefused => " refused",
        EventKind::MessageExpired => " expired",
        _ => "",
    };
    let delivered = groups_of(
        gw,
        e.message_type.as_deref(),
        e.delivered.iter().map(|p| (p.as_str(), None)),
    );
    let withheld = groups_of(
        gw,
        e.message_type.as_deref(),
        e.withheld
            .iter()
            .map(|w| (w.field.as_str(), Some(w.reason.as_str()))),
    );
    html! {
        tr {
            td { (when(&e.time)) }
            td {
                span class={ "tag" (class) } { (e.event().label_nl()) }
                @if let Some(subject) = &e.subject {
                    br;
                    span class="muted mono" title={ "pseudoniem " (subject) } {
                        "lln " (subject.chars().take(8).collect::<String>()) "…"
                    }
                }
            }
            td {
                (name(&e.partner))
                @if let Some(a) = &e.actor {
                    br; span.muted { (a.name) " (" (a.function) ")" }
                }
            }
            td {
                @match (&e.sender, &e.receiver) {
                    (Some(from), Some(to)) => { (name(from)) " → " (name(to)) }
                    (None, Some(to)) => { "→ " (name(to)) }
                    (Some(from), None) => { (name(from)) " →" }
                    (None, None) => span.muted { "—" },
                }
            }
            td {
                @match (&e.purpose, &e.flow_id) {
                    (Some(p), Some(f)) => { (p) br; span.muted { "flow " (f) } }
                    (Some(p), None) => (p),
                    (None, Some(f)) => { "flow " (f) }
                    (None, None) => {}
                }
                @if let Some(case_id) = &e.case_id {
                    br; a href={ "/console/verstrekkingen?case_id=" (url(case_id)) } { "hele kerngroepcasus" }
                }
            }
            td {
                (e.legal_basis.as_deref().unwrap_or(""))
                @if let Some(r) = &e.receiver_retention {
                    br; span.muted { "Bewaren door ontvanger: " (api::retention_text(r)) }
                }
            }
            td.fields { (field_groups(&delivered, Readers::Officer, false)) }
            td.fields { (field_groups(&withheld, Readers::Officer, false)) }
            td { (fields_list(&e.consents)) }
            td {
                (outcome_nl(&e.outcome))
                @if let Some(d) = &e.detail {
                    br; span.muted { (d) }
                }
            }
            td { (position) }
        }
    }
}

fn entries_table(gw: &Gateway, entries: &[ShownEntry]) -> Markup {
    html! {
        table {
            thead {
                tr {
                    th { "Tijdstip" } th { "Gebeurtenis" } th { "Aanvrager" } th { "Van → naar" } th { "Doel" }
                    th { "Grondslag" } th { "Verstrekte velden" } th { "Ingehouden velden" } th { "Toestemming" }
                    th { "Uitkomst" } th { "Positie" }
                }
            }
            tbody {
                @for s in entries { (entry_row(gw, s)) }
            }
        }
    }
}

async fn disclosures(
    State(gw): State<Arc<Gateway>>,
    Extension(officer): Extension<Officer>,
    params: Result<Query<DisclosureParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let caller = officer.caller();
    let title = "Verstrekkingen";
    let respond = |status: StatusCode, body: Markup| {
        html(
            status,
            page(&gw, caller, "/console/verstrekkingen", title, body),
        )
    };
    let p = match params {
        Ok(Query(p)) => p,
        Err(_) => {
            let prob = Refusal::new(
                ProblemCode::InvalidQuery,
                format!(
                    "onbekende zoekparameter; toegestaan: {}",
                    api::DISCLOSURE_PARAMS
                ),
            );
            let body = html! {
                (filter_form(&gw, &DisclosureParams::default()))
                (error_box(&prob))
            };
            return Ok(respond(status_of(&prob), body));
        }
    };
    let form = filter_form(&gw, &p);
    let parsed = match api::parse_search(&gw, &officer, &p, 50) {
        Ok(parsed) => parsed,
        Err(prob) => {
            return Ok(respond(
                status_of(&prob),
                html! { (form) (error_box(&prob)) },
            ))
        }
    };
    let result = api::search(&gw, &officer, parsed, "console verstrekkingen").await?;
    let qs = query_string(&p);
    let cursor = p.cursor.as_deref().filter(|c| !c.is_empty());
    let csv_href = match cursor {
        Some(c) => format!("/console/verstrekkingen.csv?{qs}&cursor={}", url(c)),
        None => format!("/console/verstrekkingen.csv?{qs}"),
    };
    let body = html! {
        (form)
        p.noprint {
            (result.entries.len()) " gebeurtenis(sen) op deze pagina"
            @if cursor.is_some() { " (vervolgpagina)" }
            " · " a href=(csv_href) { "download als CSV" }
        }
        @if result.entries.is_empty() {
            p.muted { "Geen gebeurtenissen gevonden binnen uw inzage." }
        } @else {
            (entries_table(&gw, &result.entries))
            (categories_legend())
        }
        @if let Some(next) = &result.next_cursor {
            p.noprint {
                a href={ "/console/verstrekkingen?" (qs) "&cursor=" (url(next)) } { "Volgende pagina →" }
            }
        }
    };
    Ok(respond(StatusCode::OK, body))
}

async fn disclosures_csv(
    State(gw): State<Arc<Gateway>>,
    Extension(officer): Extension<Officer>,
    params: Result<Query<DisclosureParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(p) = params.map_err(|_| {
        Refusal::new(
            ProblemCode::InvalidQuery,
            format!(
                "unknown or malformed query parameter; allowed: {}",
                api::DISCLOSURE_PARAMS
            ),
        )
    })?;
    let parsed = api::parse_search(&gw, &officer, &p, 1000)?;
    let result = api::search(&gw, &officer, parsed, "console csv").await?;
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
    private_headers(&mut resp);
    Ok(resp)
}

// ---------------------------------------------------------------- subject report (art. 15)

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectParams {
    pgn: Option<String>,
}

/// Who gave a consent, in words parents read.
fn given_by_nl(given_by: &str) -> &str {
    match given_by {
        "ouder" => "een ouder met gezag",
        "voogd" => "de voogd",
        "jongere" => "de jongere zelf",
        "ouder-en-jongere" => "ouder en jongere samen",
        "vertegenwoordiger" => "de vertegenwoordiger (curatele of mentorschap)",
        other => other,
    }
}

/// Category codes as their Dutch names, joined.
fn category_names(codes: &[String]) -> String {
    codes
        .iter()
        .map(|c| match c.as_str() {
            "*" => "alle categorieën van de flow",
            c => category_name(c).unwrap_or(c),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The art. 15 report as an HTML fragment in plain Dutch (shared by the console page and the printable page of
/// the API): recipients with their retention, sources, each disclosure with its purpose and the data by category
/// and label, consents, refusals, and the rights and the AP. It names the pupil by no number: only the log's
/// pseudonym. `print`: every list unfolded.
pub fn subject_report_html(report: &SubjectReport, print: bool) -> Markup {
    html! { div.report { (subject_report_parts(report, print)) } }
}

fn subject_report_parts(report: &SubjectReport, print: bool) -> Markup {
    html! {
        p {
            "Dit overzicht zegt welke gegevens over de leerling via ketenpoort aan andere organisaties zijn verstrekt: "
            "aan wie, wanneer, waarvoor, welke soorten gegevens, waar ze vandaan kwamen en hoe lang de ontvanger ze bewaart "
            "(AVG artikel 15). Het gaat over verstrekkingen waarbij "
            @match (&report.scope, &report.scope_name) {
                (Some(_), Some(name)) => { (name) " verstrekker of ontvanger was" }
                _ => "welke organisatie ook verstrekker of ontvanger was",
            }
            "."
        }
        p.meta {
            "Opgesteld op " (when(&report.generated_at)) " UTC · kenmerk van de leerling in het logboek (een pseudoniem, geen nummer): "
            code { (report.subject_ref.chars().take(16).collect::<String>()) }
        }
        @if report.truncated {
            div.error { "Dit overzicht is ingekort: er zijn meer gebeurtenissen dan één overzicht bevat. Zoek per periode via Verstrekkingen." }
        }
        h2 { "Ontvangers" }
        @if report.recipients.is_empty() {
            p.muted { "Er zijn geen gegevens over deze leerling verstrekt." }
        } @else {
            table {
                thead {
                    tr {
                        th scope="col" { "Organisatie" } th scope="col" { "Soort organisatie" }
                        th scope="col" { "Aantal verstrekkingen" } th scope="col" { "Eerste" } th scope="col" { "Laatste" }
                        th scope="col" { "Soorten gegevens" } th scope="col" { "Bewaartermijn bij de ontvanger" }
                    }
                }
                tbody {
                    @for r in &report.recipients {
                        tr {
                            td { (r.name) }
                            td { (role_nl(&r.role)) }
                            td.num { (r.disclosures) }
                            td { (when(&r.first)) }
                            td { (when(&r.last)) }
                            td { (category_names(&r.categories)) }
                            td {
                                @if r.retention.is_empty() {
                                    span.muted { "niet vastgelegd" }
                                }
                                @for (i, p) in r.retention.iter().enumerate() {
                                    @if i > 0 { br; }
                                    (api::retention_text(p))
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Herkomst van de gegevens" }
        @if report.sources.is_empty() {
            p.muted { "Geen." }
        } @else {
            p { "De gegevens kwamen uit de administratie van deze organisaties, die ze via ketenpoort verstrekten:" }
            table {
                thead {
                    tr { th scope="col" { "Organisatie" } th scope="col" { "Soort organisatie" } th scope="col" { "Aantal verstrekkingen" } }
                }
                tbody {
                    @for s in &report.sources {
                        tr { td { (s.name) } td { (role_nl(&s.role)) } td.num { (s.disclosures) } }
                    }
                }
            }
        }
        h2 { "Verstrekkingen" }
        @if report.disclosures.is_empty() {
            p.muted { "Geen." }
        } @else {
            table {
                thead {
                    tr {
                        th scope="col" { "Datum" } th scope="col" { "Van" } th scope="col" { "Aan" } th scope="col" { "Doel" }
                        th scope="col" { "Grondslag" } th scope="col" { "Verstrekte gegevens" }
                        th scope="col" { "Gebruikte toestemming" } th scope="col" { "Bewaartermijn bij de ontvanger" }
                    }
                }
                tbody {
                    @for d in &report.disclosures {
                        tr {
                            td { (when(&d.time)) }
                            td { (d.sender_name) }
                            td { (d.recipient_name) br; span.muted { (role_nl(&d.recipient_role)) } }
                            td {
                                (d.flow_name.as_deref().unwrap_or(&d.purpose))
                                br; span.muted { "doel " (d.purpose) ", flow " (d.flow_id) }
                            }
                            td { (d.legal_basis) }
                            td.fields { (field_groups(&d.delivered_by_category, Readers::Parents, print)) }
                            td {
                                @if d.consents_used.is_empty() { span.muted { "geen (niet op toestemming)" } }
                                @else { (fields_list(&d.consents_used)) }
                            }
                            td {
                                @if d.expired_unfetched {
                                    span class="tag expired" { (EventKind::MessageExpired.label_nl()) }
                                    br; span.muted { "de ontvanger heeft het bericht nooit opgehaald" }
                                } @else if let Some(r) = &d.receiver_retention {
                                    (api::retention_text(r))
                                } @else {
                                    span.muted { "niet vastgelegd" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Toestemmingen" }
        @if report.consents.is_empty() {
            p.muted { "Geen toestemmingen vastgelegd." }
        } @else {
            table {
                thead {
                    tr {
                        th scope="col" { "Kenmerk" } th scope="col" { "Vastgelegd door" } th scope="col" { "Doel" }
                        th scope="col" { "Ontvanger" } th scope="col" { "Soorten gegevens" } th scope="col" { "Gegeven door" }
                        th scope="col" { "Geldig" } th scope="col" { "Ingetrokken" }
                    }
                }
                tbody {
                    @for c in &report.consents {
                        tr {
                            td { code { (c.consent_id) } }
                            td { (c.registered_by_name) }
                            td { (c.purpose) }
                            td { (c.recipient_name) }
                            td { (category_names(&c.categories)) }
                            td { (given_by_nl(&c.given_by)) }
                            td { (c.valid_from) " t/m " (c.valid_until) }
                            td { (c.withdrawn_at.as_deref().map(when).unwrap_or_else(|| "nee".into())) }
                        }
                    }
                }
            }
        }
        h2 { "Geweigerde verzoeken" }
        @if report.refused.is_empty() {
            p.muted { "Geen." }
        } @else {
            p { "Deze verzoeken zijn door ketenpoort geweigerd: er is niets verstrekt." }
            table {
                thead {
                    tr { th scope="col" { "Datum" } th scope="col" { "Van" } th scope="col" { "Aan" } th scope="col" { "Doel" } th scope="col" { "Reden" } }
                }
                tbody {
                    @for r in &report.refused {
                        tr {
                            td { (when(&r.time)) }
                            td { (r.sender_name) }
                            td { (r.receiver_name) }
                            td { (r.purpose) }
                            td { (r.outcome) }
                        }
                    }
                }
            }
        }
        section.rights {
            h2 { "Uw rechten" }
            p {
                "Richt een verzoek aan de organisatie die de gegevens heeft: de verstrekker (kolom Van) of de ontvanger "
                "(kolom Aan). U krijgt binnen een maand antwoord (AVG art. 12 lid 3). Ouders oefenen deze rechten uit "
                "voor een kind onder 16 jaar; vanaf 16 jaar doet de leerling dat zelf."
            }
            ul {
                @for r in &report.rights {
                    li { strong { (r.right) } " (" (r.article) "). " (r.text) }
                }
            }
            h3 { "Klacht" }
            p {
                (report.complaint.text) " "
                a href=(report.complaint.url) { (report.complaint.name) ": autoriteitpersoonsgegevens.nl" }
                "."
            }
        }
        p.muted { "Dit overzicht noemt de ontvangende organisaties, geen individuele medewerkers. Het logboek bevat welke velden zijn verstrekt, niet de inhoud ervan. Gegevens die niet via ketenpoort zijn uitgewisseld staan hier niet in." }
    }
}

/// The art. 15 report as a standalone printable page, every list unfolded.
pub fn subject_report_page(report: &SubjectReport) -> String {
    let title = "Inzageverzoek: verstrekte gegevens over een leerling";
    document(
        title,
        html! { main { h1 { (title) } (subject_report_html(report, true)) } },
    )
    .into_string()
}

async fn subject(
    State(gw): State<Arc<Gateway>>,
    Extension(officer): Extension<Officer>,
    params: Result<Query<SubjectParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let caller = officer.caller();
    let title = "Inzageverzoek leerling";
    let pgn = params
        .ok()
        .and_then(|Query(p)| p.pgn)
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty());
    let form = html! {
        form.single method="get" action="/console/leerling" {
            label {
                "PGN (BSN of onderwijsnummer)"
                input type="text" name="pgn" value=(pgn.as_deref().unwrap_or("")) inputmode="numeric" autocomplete="off" maxlength="9" required;
            }
            button type="submit" { "Overzicht maken" }
        }
    };
    let mut status = StatusCode::OK;
    let result = match pgn {
        None => html! {
            p.muted { "Vul het PGN van de leerling in. Het overzicht noemt alle organisaties die via ketenpoort gegevens over de leerling ontvingen, binnen uw inzage. Ook deze vraag wordt in het logboek vastgelegd (alleen met het pseudoniem van de leerling)." }
        },
        Some(pgn) => match api::subject_report(&gw, &officer, &pgn, "console leerling").await {
            Ok(report) => html! {
                p.noprint {
                    a href={ "/v1/audit/subjects/" (url(&pgn)) } { "Afdrukbare versie" }
                    " (met alle velden uitgevouwen; om aan ouders of leerling te geven)"
                }
                (subject_report_html(&report, false))
            },
            Err(p) if p.is_callers() => {
                status = status_of(&p);
                error_box(&p)
            }
            Err(p) => return Err(p.into()),
        },
    };
    Ok(html(
        status,
        page(
            &gw,
            caller,
            "/console/leerling",
            title,
            html! { (form) (result) },
        ),
    ))
}

// ---------------------------------------------------------------- integrity

async fn integrity(
    State(gw): State<Arc<Gateway>>,
    Extension(officer): Extension<Officer>,
) -> Result<Response, Problem> {
    let caller = officer.caller();
    let unreadable = Refusal::log_unreadable;
    let own = gw.writer.log_id().to_owned();
    let public_key = gw.signing_key.public_key();
    let mut rows = Vec::new();
    let log_ids = gw
        .store
        .log_ids()
        .await
        .map_err(|e| unreadable().because(e))?;
    for log_id in &log_ids {
        let latest = gw
            .store
            .checkpoints(log_id, 1)
            .await
            .map_err(|e| unreadable().because(e))?
            .into_iter()
            .next();
        let parsed = latest
            .as_ref()
            .and_then(|cp| SignedCheckpoint::from_note(&cp.note).ok());
        let root = parsed
            .as_ref()
            .map(|p| hex::encode(p.checkpoint.root))
            .unwrap_or_default();
        let cp_text = match &latest {
            Some(cp) => html! {
                (cp.tree_size) " regels, " (when(&format_time(cp.time_ms))) " UTC"
                br;
                span.muted { "sleutel " (parsed.as_ref().map(|p| p.key_id.as_str()).unwrap_or("?")) }
            },
            None => html! { "nog geen" },
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
            .map_err(|e| unreadable().because(e))?;
        let secs = started.elapsed().as_secs_f64();
        let verdict = match &report.first_bad {
            None => html! {
                span.ok { "In orde" } ": " (report.entries) " regels doorgerekend, " (report.checkpoints_checked)
                " controlepunt(en) en " (report.subtrees_checked) " opgeslagen deelboom(en) kloppen"
                @if mine {
                    ", handtekeningen gecontroleerd"
                } @else {
                    "; handtekeningen niet gecontroleerd (sleutel van een andere gateway-instantie)"
                }
                " " span.muted { "(" (format!("{secs:.2}")) " s)" }
            },
            Some((seq, why)) => html! {
                span.bad { "NIET IN ORDE" } " vanaf regel " (seq) ": " (why)
            },
        };
        rows.push(html! {
            tr {
                td {
                    code { (log_id) }
                    @if mine { br; span.muted { "deze gateway" } }
                }
                td.num { (report.entries) }
                td { (cp_text) }
                td { code { (root) } }
                td { (verdict) }
            }
        });
    }
    let body = html! {
        p {
            "Elke regel van het logboek is een blad van een Merkle-boom (RFC 9162). De gateway ondertekent regelmatig de wortel van de boom met zijn Ed25519-sleutel (een "
            em { "controlepunt" }
            "). Hieronder wordt het hele logboek opnieuw doorgerekend en vergeleken met de ondertekende controlepunten: een verwijderde, gewijzigde of verplaatste regel valt dan op."
        }
        p {
            "Publieke sleutel van deze gateway (sleutel-id " code { (gw.signing_key.key_id()) } "):"
            br;
            code { (base64::engine::general_purpose::STANDARD.encode(public_key)) }
        }
        table {
            thead {
                tr {
                    th { "Logboek" } th { "Regels" } th { "Laatste controlepunt" } th { "Wortel (hex)" } th { "Controle" }
                }
            }
            tbody {
                @for row in rows { (row) }
            }
        }
        p.muted {
            "Zelf controleren, los van deze gateway: "
            code { "ketenpoort audit verify --database-url … --public-key log-signing.key.pub" }
            ". Inclusie- en consistentiebewijzen zijn op te vragen via " code { "/v1/audit/proof/…" } "."
        }
    };
    Ok(html(
        StatusCode::OK,
        page(
            &gw,
            caller,
            "/console/integriteit",
            "Integriteit van het logboek",
            body,
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

/// One flow as tables: its properties, then every field by label and path with its category, class, what happens
/// and why (`policy::explanation`, the same parts as `ketenpoort policy explain`).
fn explanation_html(e: &Explanation) -> Markup {
    html! {
        table.facts {
            caption { "Flow " (e.flow_id) ": " (e.flow_name) }
            tbody {
                @for (heading, text) in &e.facts {
                    tr {
                        th scope="row" { (heading) }
                        td {
                            @for (i, line) in text.lines().enumerate() {
                                @if i > 0 { br; }
                                (line)
                            }
                        }
                    }
                }
            }
        }
        table.flowfields {
            caption { "Wat flow " (e.flow_id) " met elk veld doet" }
            thead {
                tr {
                    th scope="col" { "Veld" } th scope="col" { "Categorie" } th scope="col" { "Klasse" }
                    th scope="col" { "Wat er gebeurt" } th scope="col" { "Reden / regel" }
                }
            }
            tbody {
                @for f in &e.fields {
                    tr {
                        th scope="row" {
                            (f.label)
                            @if !f.path.is_empty() { br; (path_code(&f.path)) }
                        }
                        td { (f.category) }
                        td { (f.class) }
                        td { (f.action) }
                        td { (f.reason) }
                    }
                }
            }
        }
    }
}

fn explain_block(gw: &Gateway, from: Role, to: Role, purpose: &str) -> Markup {
    match crate::policy::explanation(&gw.policy(), from, to, purpose) {
        Ok(e) => explanation_html(&e),
        Err(r) => html! {
            p.muted { "Geen flow: " (r.detail) " " span.muted { "(" (r.code) ")" } }
        },
    }
}

/// What the actions, classes and categories on the policy page mean.
fn policy_legend() -> Markup {
    html! {
        h2 id="legenda" { "Legenda" }
        table.legend {
            caption { "Wat er met een veld gebeurt" }
            thead { tr { th scope="col" { "Actie" } th scope="col" { "Betekenis" } } }
            tbody {
                @for (action, meaning) in ACTIONS {
                    tr { th scope="row" { (action) } td { (meaning) } }
                }
            }
        }
        table.legend {
            caption { "Klassen (hoe gevoelig een veld is)" }
            thead { tr { th scope="col" { "Klasse" } th scope="col" { "Betekenis" } } }
            tbody {
                @for class in Class::ALL {
                    tr { th scope="row" { (class.as_str()) } td { (class.meaning_nl()) } }
                }
            }
        }
        table.legend {
            caption { "Categorieën (toestemming geldt per categorie)" }
            thead { tr { th scope="col" { "Code" } th scope="col" { "Categorie" } } }
            tbody {
                @for (code, name) in CATEGORIES {
                    tr { th scope="row" { (code) } td { (name) } }
                }
            }
        }
    }
}

/// One section of a diff (a flow's fields, citations or other properties; a message type's catalogue) as a table
/// of what, old and new.
fn changes_table(section: Section, status: Status, changes: &[Change]) -> Markup {
    // A whole flow or message type that is new or gone has nothing on its other side.
    let side = |v: &Option<String>| match (v, status) {
        (Some(v), _) => v.clone(),
        (None, Status::Added | Status::Removed) => "—".to_owned(),
        (None, Status::Changed) => section.absent().to_owned(),
    };
    html! {
        table {
            caption { (section.nl()) }
            thead { tr { th scope="col" { "Wat" } th scope="col" { "Was" } th scope="col" { "Wordt" } } }
            tbody {
                @for c in changes {
                    tr { td { code { (c.what) } } td { (side(&c.old)) } td { (side(&c.new)) } }
                }
            }
        }
    }
}

/// "Laatste wijziging van het beleid": the last reload that changed the set, with its diff, or that none did.
fn last_change_block(gw: &Gateway, change: Option<&PolicyChange>) -> Markup {
    html! {
        h2 id="laatste-wijziging" { "Laatste wijziging van het beleid" }
        @match change {
            None => p {
                "Het beleid is sinds de start van de gateway (" (when(&gw.started_at)) ") niet gewijzigd: "
                "er is niet herladen, of het herladen beleid was gelijk aan het lopende."
            },
            Some(c) => {
                p {
                    "Herladen op " (when(&c.at)) " (regel " (c.log_seq) " van het logboek). Oude beleid-hash "
                    code { (c.diff.old_hash) } ", nieuwe beleid-hash " code { (c.diff.new_hash) } "."
                }
                @if !c.diff.files_added.is_empty() {
                    p { "Bestanden erbij: " (c.diff.files_added.join(", ")) "." }
                }
                @if !c.diff.files_removed.is_empty() {
                    p { "Bestanden weg: " (c.diff.files_removed.join(", ")) "." }
                }
                p { strong { (c.diff.summary()) } }
                @for d in &c.diff.flows {
                    h3 { (d.heading()) }
                    @if d.status == Status::Removed {
                        p { "Berichten die alleen deze flow toeliet, worden voortaan geweigerd (403 no-policy)." }
                    }
                    @for (section, list) in d.sections() {
                        (changes_table(section, d.status, list))
                    }
                }
                @for d in &c.diff.catalogues {
                    h3 { (d.heading()) }
                    @if !d.changes.is_empty() {
                        (changes_table(Section::Catalogue, d.status, &d.changes))
                    }
                }
            },
        }
    }
}

fn role_select(name: &str, selected: Option<&str>) -> Markup {
    html! {
        select name=(name) {
            @for r in Role::ALL {
                (option(r.as_str(), &role_nl(r.as_str()), selected == Some(r.as_str())))
            }
        }
    }
}

async fn policy(
    State(gw): State<Arc<Gateway>>,
    Extension(officer): Extension<Officer>,
    params: Result<Query<PolicyParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let caller = officer.caller();
    let p = params.map(|Query(p)| p).unwrap_or(PolicyParams {
        from: None,
        to: None,
        purpose: None,
    });
    let policies = gw.policy();
    let hash = Some(policies.hash())
        .filter(|h| !h.is_empty())
        .unwrap_or("(geen)");
    let chosen = match (
        p.from.as_deref().and_then(Role::parse),
        p.to.as_deref().and_then(Role::parse),
        p.purpose
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty()),
    ) {
        (Some(from), Some(to), Some(purpose)) => Some((from, to, purpose)),
        _ => None,
    };
    let body = html! {
        p {
            "Per flow (verstrekker, ontvanger, doel) wat er met elk veld gebeurt: toegestaan, alleen met toestemming, gegeneraliseerd, gepseudonimiseerd of geweigerd. Beleid-hash: "
            code { (hash) } ". "
            a href="#legenda" { "Legenda" } " · "
            a href="#laatste-wijziging" { "Wat veranderde bij het laatste herladen" } "."
        }
        form.single method="get" action="/console/beleid" {
            label { "Van" span { (role_select("from", p.from.as_deref())) } }
            label { "Naar" span { (role_select("to", p.to.as_deref())) } }
            label { "Doel" input type="text" name="purpose" value=(p.purpose.as_deref().unwrap_or("")); }
            button type="submit" { "Toon" }
        }
        @if let Some((from, to, purpose)) = chosen {
            h2 { (role_nl(from.as_str())) " → " (role_nl(to.as_str())) ", doel " (purpose) }
            (explain_block(&gw, from, to, purpose))
        }
        (last_change_block(&gw, gw.last_policy_change().as_deref()))
        h2 { "Referentieflows" }
        @for (id, from, to, purpose) in REFERENCE_FLOWS {
            h3 { (id) ": " (role_nl(from.as_str())) " → " (role_nl(to.as_str())) ", doel " code { (purpose) } }
            (explain_block(&gw, from, to, purpose))
        }
        (policy_legend())
    };
    Ok(html(
        StatusCode::OK,
        page(&gw, caller, "/console/beleid", "Beleid", body),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_attributes() {
        // Every value goes through the template's escaping, in text and in (always double-quoted) attributes.
        let s = r#"<script>alert("x")</script> & 'y'"#;
        assert_eq!(
            html! { span title=(s) { (s) } }.into_string(),
            "<span title=\"&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; 'y'\">\
             &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; 'y'</span>"
        );
        assert_eq!(
            option(s, s, true).into_string(),
            "<option value=\"&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; 'y'\" selected>\
             &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; 'y'</option>"
        );
        assert_eq!(
            fields_list(&["a<b>.c&d"]).into_string(),
            "<ul class=\"fields\"><li><code>a&lt;b&gt;.<wbr>c&amp;d</code></li></ul>"
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(url("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(url("Az09-_.~*'+"), "Az09-_.~%2A%27%2B");
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
