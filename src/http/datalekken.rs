//! The console's *Datalekken* page (`/console/datalekken`): the breach register of the privacy officer's
//! organisation (AVG 33(5)), open incidents first with their 72-hour countdown, each with its affected disclosures
//! and the form that records the FG's steps, and the register as CSV for the AP.
//!
//! The form posts to the same origin only: a browser request another site started (`Sec-Fetch-Site` other than
//! `same-origin`, or an `Origin` that is not this host) is refused, because the client certificate would otherwise
//! go along with it. Every value is escaped by `maud`; the page shows pseudonym counts and field categories, never a
//! PGN or a payload value.

use super::console::{error_box, html, page, partner_name, when};
use super::problem::{status_of, Problem};
use crate::audit::writer::now_ms;
use crate::gateway::Gateway;
use crate::oversight::incidents::{self, Incident, Risk, UpdateRequest};
use crate::oversight::Officer;
use crate::refusal::{ProblemCode, Refusal};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Form, Router};
use maud::{html, Markup};
use serde::Deserialize;
use std::sync::Arc;

pub fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/console/datalekken", get(register))
        .route("/console/datalekken.csv", get(register_csv))
        .route("/console/datalekken/{id}", axum::routing::post(record_step))
}

/// Hours (rounded down) from `now` to the incident's deadline; negative once past.
fn hours_left(i: &Incident, now: i64) -> i64 {
    i.to_json(now)["hours_left"].as_i64().unwrap_or(0)
}

fn risk_nl(r: Option<Risk>) -> &'static str {
    match r {
        Some(Risk::Geen) => "geen",
        Some(Risk::Laag) => "laag",
        Some(Risk::Hoog) => "hoog",
        None => "nog niet beoordeeld",
    }
}

fn yes_no(b: Option<bool>, undecided: &'static str) -> &'static str {
    match b {
        Some(true) => "ja",
        Some(false) => "nee",
        None => undecided,
    }
}

fn countdown(i: &Incident, now: i64) -> Markup {
    let left = hours_left(i, now);
    let urgent = !i.decided() && left < 12;
    html! {
        p class=[urgent.then_some("bad")] {
            @if i.decided() {
                "Besluit over melding bij de AP vastgelegd (" (yes_no(i.notify_ap, "")) ")."
            } @else if left >= 0 {
                "Nog " (left) " uur tot de termijn van 72 uur (" (when(&i.deadline)) " UTC) voor het besluit over melding bij de AP."
            } @else {
                "Termijn van 72 uur verstreken sinds " (when(&i.deadline)) " UTC, zonder besluit over melding bij de AP."
            }
        }
    }
}

fn option(value: &str, label: &str, selected: bool) -> Markup {
    html! { option value=(value) selected[selected] { (label) } }
}

fn incident_block(gw: &Gateway, i: &Incident, now: i64) -> Markup {
    let form_id = format!("stap-{}", i.id);
    html! {
        section.card id=(i.id) {
            h2 { "Datalek " code { (i.id) } }
            p {
                "Ontdekt " (when(&i.discovered_at)) " UTC · " (i.source.label_nl()) " · "
                strong { @if i.is_open() { "open" } @else { "gesloten" } }
            }
            @if i.is_open() { (countdown(i, now)) }
            @if let Some(r) = &i.report {
                p {
                    "Reden: " (r["reason"].as_str().unwrap_or("-"))
                    @if let Some(t) = r["text"].as_str() { " — " (t) }
                    @if let Some(d) = r["copies_deleted"].as_bool() {
                        " · kopieën verwijderd door de ontvanger: " (if d { "ja" } else { "nee" })
                    }
                }
            }
            @if let Some(d) = &i.description { p { (d) } }
            p {
                (i.pupils.len()) " leerling(en) · categorieën: " (i.categories.join(", "))
                " · klassen: " (i.classes.join(", "))
            }
            table {
                caption { "Betrokken verstrekkingen" }
                thead { tr { th scope="col" { "Tijd (UTC)" } th scope="col" { "Ontvanger" } th scope="col" { "Flow" } th scope="col" { "Plaats in het logboek" } } }
                tbody {
                    @for a in &i.affected {
                        tr {
                            td { (when(&a.time)) }
                            td { (partner_name(gw, &a.receiver)) }
                            td { (a.flow_id.as_deref().unwrap_or("-")) }
                            td { code { (a.log_id) "#" (a.seq) } }
                        }
                    }
                }
            }
            dl {
                dt { "Risico" } dd { (risk_nl(i.risk)) }
                dt { "Melding bij de AP" } dd {
                    (yes_no(i.notify_ap, "nog niet besloten"))
                    @if let Some(t) = &i.ap_notified_at { ", gemeld " (when(t)) }
                    @if let Some(r) = &i.ap_reference { ", kenmerk " (r) }
                }
                dt { "Betrokkenen geïnformeerd (AVG 34)" } dd { (yes_no(i.subjects_informed, "nog niet besloten")) }
                @if let Some(m) = &i.measures { dt { "Maatregelen" } dd { (m) } }
                @if let Some(n) = &i.closing_note { dt { "Slotnotitie" } dd { (n) " (" (when(i.closed_at.as_deref().unwrap_or(""))) ")" } }
            }
            @if i.is_open() {
                form.steps method="post" action={ "/console/datalekken/" (i.id) } id=(form_id) {
                    h3 { "Stap vastleggen" }
                    label { "Risico voor betrokkenen"
                        select name="risk" {
                            (option("", "ongewijzigd", true))
                            (option("geen", "geen", false))
                            (option("laag", "laag", false))
                            (option("hoog", "hoog", false))
                        }
                    }
                    label { "Besluit melding bij de AP"
                        select name="notify_ap" {
                            (option("", "ongewijzigd", true))
                            (option("ja", "melden", false))
                            (option("nee", "niet melden", false))
                        }
                    }
                    label { "Gemeld bij de AP op (bijv. 2026-12-07T10:00:00Z)"
                        input type="text" name="ap_notified_at";
                    }
                    label { "Kenmerk van de AP" input type="text" name="ap_reference"; }
                    label { "Betrokkenen geïnformeerd (AVG 34)"
                        select name="subjects_informed" {
                            (option("", "ongewijzigd", true))
                            (option("ja", "ja", false))
                            (option("nee", "nee", false))
                        }
                    }
                    label { "Maatregelen" textarea name="measures" rows="2" {} }
                    label { "Slotnotitie (sluit het datalek)" textarea name="close" rows="2" {} }
                    div.actions { button type="submit" { "Vastleggen" } }
                }
            }
        }
    }
}

async fn register_page(
    gw: &Gateway,
    officer: &Officer,
    status: StatusCode,
    problem: Option<&Refusal>,
) -> Result<Response, Problem> {
    let all = incidents::list(gw, officer).await?;
    let now = now_ms();
    let open: Vec<&Incident> = all.iter().filter(|i| i.is_open()).collect();
    let late = open
        .iter()
        .filter(|i| !i.decided() && hours_left(i, now) < 0)
        .count();
    let body = html! {
        @if let Some(p) = problem { (error_box(p)) }
        p {
            "Elk datalek wordt vastgelegd, gemeld of niet (AVG art. 33 lid 5). Binnen 72 uur na ontdekking besluit u of "
            "het bij de Autoriteit Persoonsgegevens wordt gemeld. Een datalek opent vanzelf als een ontvanger een bericht "
            "als 'niet voor ons' meldt of als een verzender een bericht terugroept omdat het naar de verkeerde ontvanger "
            "of over de verkeerde leerling ging. Elke stap is een regel in het logboek."
        }
        p {
            strong { (open.len()) } " open, waarvan "
            strong class=[(late > 0).then_some("bad")] { (late) } " over de termijn zonder besluit. "
            a href="/console/datalekken.csv" { "Register downloaden als CSV (voor de AP)" }
        }
        @for i in &open { (incident_block(gw, i, now)) }
        @let closed: Vec<&Incident> = all.iter().filter(|i| !i.is_open()).collect();
        @if !closed.is_empty() {
            h2 { "Gesloten" }
            @for i in closed { (incident_block(gw, i, now)) }
        }
    };
    Ok(html(
        status,
        page(
            gw,
            officer.caller(),
            "/console/datalekken",
            "Datalekken",
            body,
        ),
    ))
}

async fn register(
    State(gw): State<Arc<Gateway>>,
    Extension(officer): Extension<Officer>,
) -> Result<Response, Problem> {
    register_page(&gw, &officer, StatusCode::OK, None).await
}

async fn register_csv(
    State(gw): State<Arc<Gateway>>,
    Extension(officer): Extension<Officer>,
) -> Result<Response, Problem> {
    let all = incidents::list(&gw, &officer).await?;
    let mut resp = super::audit::download(
        super::audit::CSV,
        Some("ketenpoort-datalekkenregister.csv"),
        incidents::csv(&all),
        None,
    );
    super::audit::private_headers(&mut resp);
    Ok(resp)
}

/// The form's fields; empty means "unchanged".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepForm {
    #[serde(default)]
    risk: String,
    #[serde(default)]
    notify_ap: String,
    #[serde(default)]
    ap_notified_at: String,
    #[serde(default)]
    ap_reference: String,
    #[serde(default)]
    subjects_informed: String,
    #[serde(default)]
    measures: String,
    #[serde(default)]
    close: String,
}

fn invalid(detail: &str) -> Refusal {
    Refusal::new(ProblemCode::InvalidIncident, detail.to_owned())
}

fn yes_no_field(v: &str, name: &str) -> Result<Option<bool>, Refusal> {
    match v {
        "" => Ok(None),
        "ja" => Ok(Some(true)),
        "nee" => Ok(Some(false)),
        _ => Err(invalid(&format!("{name} is ja, nee or empty"))),
    }
}

fn text_field(v: &str) -> Option<String> {
    Some(v.trim().to_owned()).filter(|t| !t.is_empty())
}

impl StepForm {
    fn request(&self) -> Result<UpdateRequest, Refusal> {
        Ok(UpdateRequest {
            risk: match self.risk.as_str() {
                "" => None,
                "geen" => Some(Risk::Geen),
                "laag" => Some(Risk::Laag),
                "hoog" => Some(Risk::Hoog),
                _ => return Err(invalid("risk is geen, laag, hoog or empty")),
            },
            notify_ap: yes_no_field(&self.notify_ap, "notify_ap")?,
            ap_notified_at: text_field(&self.ap_notified_at),
            ap_reference: text_field(&self.ap_reference),
            subjects_informed: yes_no_field(&self.subjects_informed, "subjects_informed")?,
            measures: text_field(&self.measures),
            add_disclosures: Vec::new(),
            close: text_field(&self.close),
        })
    }
}

/// A browser request another site started is refused: the client certificate would go along with it.
fn same_origin(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|s| s != "same-origin") {
        return false;
    }
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

async fn record_step(
    State(gw): State<Arc<Gateway>>,
    Extension(officer): Extension<Officer>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<StepForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Problem> {
    if !same_origin(&headers) {
        return Err(Refusal::new(
            ProblemCode::NotAPrivacyOfficer,
            "this form is only accepted from the console itself",
        )
        .into());
    }
    let result = match form {
        Ok(Form(f)) => match f.request() {
            Ok(req) => incidents::update(&gw, &officer, &id, req).await.map(|_| ()),
            Err(r) => Err(r),
        },
        Err(_) => Err(invalid("the form could not be read")),
    };
    match result {
        Ok(()) => Ok(Redirect::to(&format!("/console/datalekken#{id}")).into_response()),
        Err(r) => register_page(&gw, &officer, status_of(&r), Some(&r)).await,
    }
}
