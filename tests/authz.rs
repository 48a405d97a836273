//! Authorization matrix: every example partner (every role of MESSAGES.md) × every route × every reference flow
//! (P1 to P13, P1 also as purpose `overstap`, P13 as a kerngroep case with a companion recipient, and a purpose no
//! flow has) sent to every partner, with `CANARY-<field>` values in every field of the examples. Checks:
//! - a message is delivered (201) only along a flow of DOMAIN.md (sender role → receiver role), never by or to a
//!   privacy officer, never elsewhere; everything else is refused with problem+json;
//! - a partner sees only its own inbox, cannot acknowledge another's message (404), and sees and withdraws only
//!   the consents of its own organisation; its outbox lists exactly what it sent; another's message is 404 for
//!   reading or recalling it from the outbox and for reporting it "niet voor ons"; the audit API answers privacy
//!   officers only (403 `not-a-privacy-officer`);
//! - no canary appears in any response body or header to the sender, in any error, in the database file, in the
//!   tracing output or in the metrics; a receiver gets canaries only in fields the gateway reported delivered.
//!
//! P1 and P7 refuse the all-canary payload (their required-field and count-table rules), so each also gets a
//! `within-rules` variant: every free-text value a canary, the values those rules judge kept real, and every
//! number a distinctive nine-digit value (P7's counts not multiples of the rounding base, so a count delivered
//! unrounded is recognisable). Every leaf a receiver gets, of any type, must lie at a path the 201 reported
//! delivered and not withheld.
//!
//! Encryption at rest: while every delivered message still waits unfetched in its mailbox, the database (SQLite
//! file + WAL, or `pg_dump`) is scanned for every canary and distinctive number; the scan must find each waiting
//! message's id there (it reads the database that holds them), and every flow must have a canary the receiver
//! then gets in a delivered field (a known delivered value of every flow was in the database, unreadable).
//!
//! Every reference flow must deliver along its roles (at least one 201 per flow), so the canary checks of the
//! receivers' inboxes always run. It prints the number of combinations, deliveries and leaks (RELIABILITY.md).

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// (partner id, role, organisation): every example partner of MESSAGES.md, one or more of every role.
const PARTNERS: [(&str, &str, &str); 15] = [
    ("obs-de-linde", "school-po", "obs-de-linde"),
    ("cbs-het-anker", "school-po", "cbs-het-anker"),
    ("lyceum-zuid", "school-vo", "lyceum-zuid"),
    ("so-de-brug", "school-so", "so-de-brug"),
    ("mbo-college-zuid", "school-mbo", "mbo-college-zuid"),
    ("swv-vo-zuid", "swv-vo", "swv-vo-zuid"),
    ("swv-po-noord", "swv-po", "swv-po-noord"),
    ("leerplicht-gemeente", "leerplicht", "leerplicht-gemeente"),
    (
        "leerplicht-buurgemeente",
        "leerplicht",
        "leerplicht-buurgemeente",
    ),
    ("wijkteam-noord", "wijkteam", "wijkteam-noord"),
    ("jgz-ggd-zuid", "jgz", "jgz-ggd-zuid"),
    ("veilig-thuis-zuid", "veilig-thuis", "veilig-thuis-zuid"),
    ("fg-lyceum-zuid", "privacy-officer", "lyceum-zuid"),
    ("fg-obs-de-linde", "privacy-officer", "obs-de-linde"),
    ("fg-operator", "privacy-officer", "operator"),
];

/// The schools of P2–P6 (a school-so or school-mbo has no such flow).
const SCHOOLS: &[&str] = &["school-po", "school-vo", "school-vso"];
const ALL_SCHOOLS: &[&str] = &[
    "school-po",
    "school-so",
    "school-vo",
    "school-vso",
    "school-mbo",
];
const SWVS: &[&str] = &["swv-po", "swv-vo"];

/// The reference flows of DOMAIN.md: name, sender roles, receiver roles. `P1-overstap` is P1's example with purpose
/// `overstap` (P1-wpo, P1-wec-so, P1-wec-vso, P1-wvo), allowed only for the school changes of `overstap_allowed`;
/// `P13` is sent as a kerngroep case (`recipients`: the receiver and a companion).
const FLOWS: [(&str, &[&str], &[&str]); 15] = [
    ("P1", &["school-po"], &["school-vo"]),
    ("P1-overstap", ALL_SCHOOLS, ALL_SCHOOLS),
    ("P2", SCHOOLS, SWVS),
    ("P3", SCHOOLS, &["leerplicht"]),
    ("P4", SCHOOLS, &["wijkteam"]),
    ("P5", &["wijkteam"], SCHOOLS),
    ("P6", &["leerplicht"], SCHOOLS),
    ("P7", &["leerplicht"], SWVS),
    (
        "P8",
        &["school-po", "school-so", "school-vo", "school-vso"],
        ALL_SCHOOLS,
    ),
    (
        "P9",
        &[
            "school-po",
            "school-so",
            "school-vo",
            "school-vso",
            "school-mbo",
            "wijkteam",
            "jgz",
        ],
        &["veilig-thuis"],
    ),
    ("P10", ALL_SCHOOLS, &["jgz"]),
    ("P11", SWVS, SCHOOLS),
    ("P12", SCHOOLS, SWVS),
    (
        "P13",
        &[
            "school-po",
            "school-so",
            "school-vo",
            "school-vso",
            "school-mbo",
            "swv-po",
            "swv-vo",
        ],
        &["leerplicht", "wijkteam", "swv-po", "swv-vo"],
    ),
    ("P0-none", &[], &[]),
];

/// Whether `flow` may deliver from a `sender` role to a `receiver` role at all (DOMAIN.md; the receiver bound to
/// the case is a further condition).
fn allowed(flow: &str, senders: &[&str], receivers: &[&str], sender: &str, receiver: &str) -> bool {
    match flow {
        // po→po/vo/so/vso (WPO), so→po (WEC), vso→vo (WEC), vo→vo/vso/mbo (WVO 2020).
        "P1-overstap" => matches!(
            (sender, receiver),
            (
                "school-po",
                "school-po" | "school-vo" | "school-so" | "school-vso"
            ) | ("school-so", "school-po")
                | ("school-vso", "school-vo")
                | ("school-vo", "school-vo" | "school-vso" | "school-mbo")
        ),
        // Only a school reaches its SWV in a kerngroep case.
        "P13" if SWVS.contains(&receiver) => SCHOOLS.contains(&sender) || sender == "school-so",
        _ => senders.contains(&sender) && receivers.contains(&receiver),
    }
}

/// The example a flow of `FLOWS` is sent from, as sent.
fn example_of(flow: &str) -> Value {
    match flow {
        "P1-overstap" => {
            let mut v = example_json("P1");
            v["purpose"] = json!("overstap");
            v
        }
        // A purpose no flow has: never delivered.
        "P0-none" => {
            let mut v = example_json("P2");
            v["purpose"] = json!("nieuwsgierigheid");
            v
        }
        f => example_json(f),
    }
}

fn organisation(id: &str) -> &'static str {
    PARTNERS.iter().find(|p| p.0 == id).unwrap().2
}

/// Replaces every string leaf of `v` by `CANARY-<flow>-<path>`; returns canary -> path.
fn canarify(v: &mut Value, flow: &str, path: String, out: &mut HashMap<String, String>) {
    match v {
        Value::String(s) => {
            let c = format!("CANARY-{flow}-{path}");
            out.insert(c.clone(), path);
            *s = c;
        }
        Value::Array(a) => {
            for x in a {
                canarify(x, flow, format!("{path}[]"), out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                canarify(x, flow, p, out);
            }
        }
        _ => {}
    }
}

/// The first of the distinctive numbers the `within-rules` variants carry: nine digits, so that finding one by
/// chance in a database file, a dump or the tracing output is not to be expected.
const NUMBER_BASE: u64 = 731_904_000;

/// The `within-rules` variant of P1, P7 or P12 (none for the other flows, whose all-canary variant is delivered):
/// every free-text value a canary, what the flow's rules judge kept real, every number distinctive. Returns the
/// envelope, its canaries (canary -> path) and its distinctive numbers (decimal text -> path).
fn within_rules(
    flow: &str,
    original: &Value,
) -> Option<(Value, HashMap<String, String>, HashMap<String, String>)> {
    let mut env = original.clone();
    let mut canaries = HashMap::new();
    let mut numbers = HashMap::new();
    match flow {
        "P1" | "P1-overstap" => {
            canarify(&mut env["data"], flow, String::new(), &mut canaries);
            // Required: `aanmelding.datum` a plausible date, `aanmelding.school` the receiver (set per receiver),
            // `inzage.ouders_geinformeerd` true (a boolean, which canarify leaves).
            for (pointer, path) in [
                ("/aanmelding/datum", "aanmelding.datum"),
                ("/aanmelding/school", "aanmelding.school"),
            ] {
                *env["data"].pointer_mut(pointer).unwrap() =
                    original["data"].pointer(pointer).unwrap().clone();
                canaries.retain(|_, at| at != path);
            }
            let mut n = NUMBER_BASE;
            vary_numbers(&mut env["data"], String::new(), &mut n, &mut numbers);
        }
        "P7" => {
            // The count table's schema: `dimensies`, `onderwijssoort` and `categorie` come from closed lists and
            // stay real; `periode` and the gemeente codes are free codes (letters, digits, '-', at most 32).
            let periode = format!("CANARY-{flow}-periode");
            canaries.insert(periode.clone(), "periode".to_owned());
            env["data"]["periode"] = json!(periode);
            for (i, cell) in env["data"]["cellen"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .enumerate()
            {
                let gemeente = format!(
                    "CANARY-{flow}-gemeente-{}",
                    cell["gemeente"].as_str().unwrap()
                );
                canaries.insert(gemeente.clone(), "cellen[].gemeente".to_owned());
                cell["gemeente"] = json!(gemeente);
                // Counts below the minimum cell stay small (suppressed); the others become distinctive and no
                // multiple of the rounding base (5), so only their rounded value may ever be delivered.
                let count = cell["aantal"].as_u64().unwrap();
                if count >= 5 {
                    let mut raw = NUMBER_BASE + 100 + 10 * i as u64 + count % 5;
                    if raw % 5 == 0 {
                        raw += 1;
                    }
                    numbers.insert(raw.to_string(), "cellen[].aantal".to_owned());
                    cell["aantal"] = json!(raw);
                }
            }
        }
        "P12" => {
            // An anonymous consultation refuses whatever it would not deliver as sent: the closed lists stay real,
            // the free text becomes canaries (which the screening lets pass: no name, date, place or event).
            canarify(&mut env["data"], flow, String::new(), &mut canaries);
            for (key, value) in original["data"]["casus"].as_object().unwrap() {
                if !["vraag", "onderwijsbehoeften", "geprobeerd"].contains(&key.as_str()) {
                    env["data"]["casus"][key] = value.clone();
                    canaries.retain(|_, at| *at != format!("casus.{key}"));
                }
            }
        }
        _ => return None,
    }
    Some((env, canaries, numbers))
}

/// Replaces every number leaf by the next distinctive number; returns decimal text -> path.
fn vary_numbers(v: &mut Value, path: String, next: &mut u64, out: &mut HashMap<String, String>) {
    match v {
        Value::Number(_) => {
            *next += 1;
            out.insert(next.to_string(), path);
            *v = json!(*next);
        }
        Value::Array(a) => {
            for x in a {
                vary_numbers(x, format!("{path}[]"), next, out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                vary_numbers(x, p, next, out);
            }
        }
        _ => {}
    }
}

/// (indexed path, decimal text) of every number leaf.
fn numbers_at(v: &Value, path: String, out: &mut Vec<(String, String)>) {
    match v {
        Value::Number(n) => out.push((path, n.to_string())),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| numbers_at(x, format!("{path}[{i}]"), out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            numbers_at(x, p, out)
        }),
        _ => {}
    }
}

/// Indexed paths (`cellen[2].aantal`) of every leaf that is not null: strings, numbers and booleans alike.
fn leaves(v: &Value, path: String, out: &mut Vec<String>) {
    match v {
        Value::Null => {}
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| leaves(x, format!("{path}[{i}]"), out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            leaves(x, p, out)
        }),
        _ => out.push(path),
    }
}

/// `path` (indexed) is `d` or lies inside it, for some indexed `d` in `list`.
fn covered_exactly(path: &str, list: &[String]) -> bool {
    list.iter().any(|d| {
        let d = d.trim_start_matches("data.");
        path == d || path.starts_with(&format!("{d}.")) || path.starts_with(&format!("{d}["))
    })
}

/// The canaries already in an example, with their paths.
fn existing_canaries(v: &Value, path: String, out: &mut HashMap<String, String>) {
    match v {
        Value::String(s) if s.starts_with("CANARY-") => {
            out.insert(s.clone(), path);
        }
        Value::Array(a) => a
            .iter()
            .for_each(|x| existing_canaries(x, format!("{path}[]"), out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            existing_canaries(x, p, out)
        }),
        _ => {}
    }
}

/// Paths (in the `a.b[].c` form of MESSAGES.md) of every string leaf that holds a canary.
fn canaries_at(v: &Value, path: String, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => {
            if let Some(i) = s.find("CANARY-") {
                out.push((s[i..].to_owned(), path));
            }
        }
        Value::Array(a) => a
            .iter()
            .for_each(|x| canaries_at(x, format!("{path}[]"), out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            canaries_at(x, p, out)
        }),
        _ => {}
    }
}

/// `path` is `d` or lies inside it, for some `d` in `list`.
/// `loopbaan[0].groep` → `loopbaan[].groep`: the gateway reports leaf paths with indices, canaries are per catalogue path.
fn without_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            c if in_index && c.is_ascii_digit() => {}
            c => out.push(c),
        }
    }
    out
}

fn covered(path: &str, list: &[String]) -> bool {
    list.iter().any(|d| {
        let d = without_indices(d.trim_start_matches("data."));
        let d = d.as_str();
        path == d || path.starts_with(&format!("{d}.")) || path.starts_with(&format!("{d}[]"))
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| {
                    x.as_str()
                        .or_else(|| x["field"].as_str())
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Everything the gateway said, as bytes to scan: status, headers and body.
fn transcript(r: &Response) -> Vec<u8> {
    let mut out = format!("{}\n", r.status).into_bytes();
    for (k, v) in &r.headers {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(&r.body);
    out
}

fn find_canaries(haystack: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(haystack);
    text.match_indices("CANARY-")
        .map(|(i, _)| {
            text[i..]
                .chars()
                .take_while(|c| !matches!(c, '"' | '\\' | '\n' | ',' | '}'))
                .collect()
        })
        .collect()
}

#[derive(Default, Debug)]
struct Tally {
    combinations: usize,
    sends: usize,
    delivered: usize,
    /// Flow -> messages answered 201.
    delivered_per_flow: BTreeMap<&'static str, usize>,
    refused: BTreeSet<String>,
    leaks: Vec<String>,
    /// Every distinctive number of the `within-rules` variants (decimal text -> flow and path).
    numbers: BTreeMap<String, String>,
    /// Flow -> canaries a receiver got in a field reported delivered (known delivered values).
    delivered_canaries: BTreeMap<&'static str, BTreeSet<String>>,
}

impl Tally {
    /// Records every canary and every distinctive number in `bytes` as a leak in `place`.
    fn scan(&mut self, place: &str, bytes: &[u8]) {
        for c in find_canaries(bytes) {
            self.leaks.push(format!("{c} in {place}"));
        }
        for (n, at) in &self.numbers {
            if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
                self.leaks.push(format!("number {n} ({at}) in {place}"));
            }
        }
    }
}

struct Sent {
    flow: &'static str,
    sender: &'static str,
    receiver: String,
    delivered: Vec<String>,
    withheld: Vec<String>,
    canaries: HashMap<String, String>,
    /// Distinctive numbers sent (decimal text -> path); P7's counts may only arrive rounded.
    numbers: HashMap<String, String>,
}

async fn matrix(backend: Backend) -> Tally {
    let gw = Gateway::start(backend);
    let mut t = Tally::default();
    let mut sent: HashMap<String, Sent> = HashMap::new();
    // (flow, sender, receiver) -> the first message delivered along it, for the replies' `in_reply_to`.
    let mut answered: HashMap<(&str, String, String), String> = HashMap::new();

    // Consents for the flows that need one (P4, P5, P8, P10, P13's wijkteam part): each possible sender for each
    // possible receiver, about the pupil of the flow's example.
    let mut consents: Vec<(String, String)> = Vec::new();
    for (flow, purpose, pupil_of) in [
        ("P4", "vroegsignalering", "P4"),
        ("P5", "afstemming-ondersteuning", "P4"),
        ("P8", "warme-overdracht", "P8"),
        ("P10", "ziekteverzuim-begeleiding", "P10"),
        ("P13", "kerngroep-thuiszitter", "P13"),
    ] {
        let (_, senders, receivers) = FLOWS.iter().find(|f| f.0 == flow).unwrap();
        // P5 names no pupil: it is the one of the P4 it answers.
        let subject = example_json(pupil_of)["subject"].clone();
        // P5 carries no birth date: the consent records it for the age rules (DOMAIN.md).
        let birth = match &example_json(pupil_of)["data"]["leerling"]["geboortedatum"] {
            Value::String(d) => json!(d),
            _ => example_json("P4")["data"]["leerling"]["geboortedatum"].clone(),
        };
        for (s, s_role, _) in PARTNERS.iter().filter(|p| senders.contains(&p.1)) {
            for (r, _, _) in PARTNERS
                .iter()
                .filter(|p| allowed(flow, senders, receivers, s_role, p.1))
            {
                let body = json!({"subject": subject, "purpose": purpose, "recipient": r,
                    "subject_birth_date": birth,
                    "categories": ["*"], "given_by": "ouder", "evidence": "formulier in dossier",
                    "valid_from": "2026-01-01", "valid_until": "2030-12-31"});
                let resp = gw.client(s).post_json("/v1/consents", &body).await;
                t.scan(&format!("POST /v1/consents by {s}"), &transcript(&resp));
                assert_eq!(resp.status, 201, "{}", resp.text());
                consents.push((
                    s.to_string(),
                    resp.json()["consent_id"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }

    // Every flow, original and all-canary, from every partner to every partner.
    let mut cases = 0u32;
    for (flow, senders, receivers) in FLOWS {
        let original = example_of(flow);
        let mut known = HashMap::new();
        existing_canaries(&original["data"], String::new(), &mut known);
        let mut all_canary = original.clone();
        let mut generated = HashMap::new();
        canarify(&mut all_canary["data"], flow, String::new(), &mut generated);
        // What binds the receiver to the case stays a real value (set per receiver below).
        for (pointer, path) in [
            ("/leerling/woongemeente", "leerling.woongemeente"),
            ("/aanmelding/school", "aanmelding.school"),
        ] {
            if let Some(v) = original["data"].pointer(pointer) {
                *all_canary["data"].pointer_mut(pointer).unwrap() = v.clone();
                generated.retain(|_, at| at != path);
            }
        }
        // The scanner finds what it must find.
        assert_eq!(
            find_canaries(&serde_json::to_vec(&all_canary).unwrap())
                .into_iter()
                .collect::<BTreeSet<_>>(),
            generated.keys().cloned().collect::<BTreeSet<_>>(),
            "{flow}"
        );
        let mut variants = vec![
            ("original", original.clone(), known, HashMap::new()),
            ("all-canary", all_canary, generated, HashMap::new()),
        ];
        if let Some((env, canaries, numbers)) = within_rules(flow, &original) {
            assert_eq!(
                find_canaries(&serde_json::to_vec(&env).unwrap())
                    .into_iter()
                    .collect::<BTreeSet<_>>(),
                canaries.keys().cloned().collect::<BTreeSet<_>>(),
                "{flow}"
            );
            assert!(
                !numbers.is_empty() || flow == "P12",
                "{flow}: no number varied"
            );
            for (n, at) in &numbers {
                t.numbers.insert(n.clone(), format!("{flow} {at}"));
            }
            variants.push(("within-rules", env, canaries, numbers));
        }
        for (variant, base, canaries, numbers) in variants {
            let base = &base;
            for (sender, sender_role, _) in PARTNERS {
                let mut conn = gw.client(sender).connect().await.unwrap();
                for (receiver, _, _) in PARTNERS {
                    let mut env = base.clone();
                    if flow == "P13" {
                        // A kerngroep case: this receiver and a companion; each part is checked on its own.
                        let companion = if receiver == "leerplicht-gemeente" {
                            "wijkteam-noord"
                        } else {
                            "leerplicht-gemeente"
                        };
                        cases += 1;
                        env["recipients"] = json!([receiver, companion]);
                        env["case_id"] = json!(format!("0190f3a1-b2c3-7d4e-8f60-{cases:012}"));
                    } else {
                        env["to"] = json!(receiver);
                    }
                    if let Some(school) = env["data"].pointer_mut("/aanmelding/school") {
                        *school = json!(receiver);
                    }
                    // A reply answers (a follow-up follows) a message sent along the flow answered, if there is
                    // one; else it names an id nobody sent (404 unknown-reference).
                    if env.get("in_reply_to").is_some() {
                        let key = match flow {
                            "P5" => ("P4", receiver.to_string(), sender.to_string()),
                            "P6" => ("P3", receiver.to_string(), sender.to_string()),
                            "P11" => ("P2", receiver.to_string(), sender.to_string()),
                            "P8" => ("P1", sender.to_string(), receiver.to_string()),
                            other => panic!("{other} answers no flow of the matrix"),
                        };
                        env["in_reply_to"] = json!(answered
                            .get(&key)
                            .cloned()
                            .unwrap_or_else(|| "0".repeat(32)));
                    }
                    let r = conn
                        .request(
                            "POST",
                            "/v1/messages",
                            &[],
                            Some(serde_json::to_vec(&env).unwrap()),
                        )
                        .await
                        .unwrap();
                    t.combinations += 1;
                    t.sends += 1;
                    let place = format!("response to {sender} ({flow} {variant} to {receiver})");
                    t.scan(&place, &transcript(&r));
                    match r.status {
                        201 => {
                            let v = r.json();
                            // One part per receiver: a single message, or each delivered part of a case.
                            let parts: Vec<Value> = match v["recipients"].as_array() {
                                Some(parts) => parts
                                    .iter()
                                    .filter(|p| p["message_id"].is_string())
                                    .cloned()
                                    .collect(),
                                None => vec![json!({
                                    "to": receiver, "message_id": v["message_id"],
                                    "delivered": v["delivered"], "withheld": v["withheld"]})],
                            };
                            assert!(!parts.is_empty(), "{place}: a 201 without a delivered part");
                            for part in parts {
                                let to = part["to"].as_str().unwrap().to_owned();
                                let to_role = PARTNERS.iter().find(|p| p.0 == to).unwrap().1;
                                assert!(
                                    allowed(flow, senders, receivers, sender_role, to_role),
                                    "{place}: delivered to {to} outside every flow: {}",
                                    r.text()
                                );
                                let id = part["message_id"].as_str().unwrap().to_owned();
                                answered
                                    .entry((flow, sender.to_string(), to.clone()))
                                    .or_insert_with(|| id.clone());
                                t.delivered += 1;
                                *t.delivered_per_flow.entry(flow).or_default() += 1;
                                sent.insert(
                                    id,
                                    Sent {
                                        flow,
                                        sender,
                                        receiver: to,
                                        delivered: strings(&part["delivered"]),
                                        withheld: strings(&part["withheld"]),
                                        canaries: canaries.clone(),
                                        numbers: numbers.clone(),
                                    },
                                );
                            }
                        }
                        403 | 422 => {
                            t.refused.insert(format!("{} {}", r.status, r.code()));
                        }
                        404 if r.code() == "unknown-reference" => {
                            t.refused.insert(format!("{} {}", r.status, r.code()));
                        }
                        s => panic!("{place}: unexpected {s}: {}", r.text()),
                    }
                }
            }
        }
    }

    // Encryption at rest: every delivered message waits unfetched in its mailbox now. The database holds each one
    // (its id is found), and none of the values sent (canaries, distinctive numbers) is readable in it.
    let waiting = gw.database_bytes();
    for id in sent.keys() {
        assert!(
            waiting.windows(id.len()).any(|w| w == id.as_bytes()),
            "message {id} is not in the scanned database: the scan reads the wrong place"
        );
    }
    t.scan(
        "the database while every delivered message waits unfetched",
        &waiting,
    );

    // Every partner on every route.
    let mut inbox_ids: HashMap<&str, Vec<String>> = HashMap::new();
    for (partner, role, org) in PARTNERS {
        let c = gw.client(partner);
        let r = c.get("/v1/inbox?limit=500").await;
        t.combinations += 1;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let mut outside_data = v.clone();
        for (i, m) in v["messages"].as_array().unwrap().iter().enumerate() {
            let id = m["message_id"].as_str().unwrap().to_owned();
            let s = sent
                .get(&id)
                .unwrap_or_else(|| panic!("{partner} got unknown message {id}"));
            assert_eq!(
                s.receiver, partner,
                "{partner} got a message for {}",
                s.receiver
            );
            let mut found = Vec::new();
            canaries_at(&m["data"], String::new(), &mut found);
            for (canary, at) in found {
                let origin = s.canaries.get(&canary);
                if origin != Some(&at) || !covered(&at, &s.delivered) || covered(&at, &s.withheld) {
                    t.leaks.push(format!(
                        "{canary} at {at} in {partner}'s inbox (delivered {:?})",
                        s.delivered
                    ));
                } else {
                    t.delivered_canaries
                        .entry(s.flow)
                        .or_default()
                        .insert(canary);
                }
            }
            // Every leaf, of any type, lies in a field the 201 reported delivered and not withheld.
            let mut got = Vec::new();
            leaves(&m["data"], String::new(), &mut got);
            for at in got {
                if !covered_exactly(&at, &s.delivered) || covered_exactly(&at, &s.withheld) {
                    t.leaks.push(format!(
                        "{at} in {partner}'s inbox ({}; delivered {:?}, withheld {:?})",
                        s.flow, s.delivered, s.withheld
                    ));
                }
            }
            // A distinctive number arrives only at its own path, delivered as sent; P7's counts only rounded.
            let mut got = Vec::new();
            numbers_at(&m["data"], String::new(), &mut got);
            for (at, n) in got {
                if let Some(origin) = s.numbers.get(&n) {
                    if *origin != without_indices(&at) || s.flow == "P7" {
                        t.leaks.push(format!(
                            "number {n} of {origin} at {at} in {partner}'s inbox ({})",
                            s.flow
                        ));
                    }
                }
            }
            outside_data["messages"][i]["data"] = Value::Null;
            inbox_ids.entry(partner).or_default().push(id);
        }
        t.scan(
            &format!("{partner}'s inbox outside data"),
            &serde_json::to_vec(&outside_data).unwrap(),
        );
        let mut headers = transcript(&r);
        headers.truncate(headers.len() - r.body.len());
        t.scan(&format!("{partner}'s inbox headers"), &headers);

        // Another partner's message is unknown (404), and stays where it is.
        for (id, s) in sent.iter().filter(|(_, s)| s.receiver != partner) {
            let r = c.post(&format!("/v1/inbox/{id}/ack"), b"").await;
            t.combinations += 1;
            t.scan("ack of another partner's message", &transcript(&r));
            assert_eq!(
                (r.status, r.code()),
                (404, "not-found".to_owned()),
                "{partner} acked {}'s",
                s.receiver
            );
        }
        let r = c
            .post("/v1/inbox/00000000000000000000000000000000/ack", b"")
            .await;
        t.combinations += 1;
        assert_eq!(r.status, 404);

        // The outbox: only the partner's own messages, listed without values; another's message is unknown to it
        // (404) for reading, recalling and reporting it "niet voor ons".
        let r = c.get("/v1/outbox?limit=500").await;
        t.combinations += 1;
        t.scan(&format!("{partner}'s outbox"), &transcript(&r));
        assert_eq!(r.status, 200, "{}", r.text());
        let own: BTreeSet<String> = r.json()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message_id"].as_str().unwrap().to_owned())
            .collect();
        for id in &own {
            let s = sent
                .get(id)
                .unwrap_or_else(|| panic!("{partner}'s outbox lists unknown {id}"));
            assert_eq!(
                s.sender, partner,
                "{partner}'s outbox lists a message of {}",
                s.sender
            );
        }
        assert_eq!(
            own.len(),
            sent.values().filter(|s| s.sender == partner).count(),
            "{partner}'s outbox misses a message it sent"
        );
        // Forty of the others' messages (each is three requests).
        for (id, s) in sent
            .iter()
            .filter(|(id, s)| s.receiver != partner && !own.contains(*id))
            .take(40)
        {
            for (method, path, body) in [
                ("GET", format!("/v1/outbox/{id}"), None),
                (
                    "POST",
                    format!("/v1/outbox/{id}/recall"),
                    Some(br#"{"reason":"verkeerde-ontvanger"}"#.to_vec()),
                ),
                (
                    "POST",
                    format!("/v1/inbox/{id}/misaddressed"),
                    Some(br#"{"reason":"verkeerde-leerling","copies_deleted":true}"#.to_vec()),
                ),
            ] {
                let r = c
                    .request(method, &path, &[("content-type", "application/json")], body)
                    .await;
                t.combinations += 1;
                t.scan(&format!("{method} {path} by {partner}"), &transcript(&r));
                assert_eq!(
                    (r.status, r.code()),
                    (404, "not-found".to_owned()),
                    "{partner}: {method} {path} of a message to {}",
                    s.receiver
                );
            }
        }
        // The audit API and the console: privacy officers only.
        for path in [
            "/v1/audit/disclosures?limit=5",
            "/v1/audit/incidents",
            "/v1/audit/export?format=ldv",
        ] {
            let r = c.get(path).await;
            t.combinations += 1;
            t.scan(&format!("GET {path} by {partner}"), &transcript(&r));
            if role == "privacy-officer" {
                assert_eq!(r.status, 200, "{partner} GET {path}: {}", r.text());
            } else {
                assert_eq!(
                    (r.status, r.code()),
                    (403, "not-a-privacy-officer".to_owned()),
                    "{partner} GET {path}"
                );
            }
        }

        // Consents: only the own organisation's are listed and may be withdrawn.
        let r = c.get("/v1/consents").await;
        t.combinations += 1;
        t.scan(&format!("{partner}'s consents"), &transcript(&r));
        assert_eq!(r.status, 200);
        let listed: BTreeSet<String> = r.json()["consents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["consent_id"].as_str().unwrap().to_owned())
            .collect();
        let own: BTreeSet<String> = consents
            .iter()
            .filter(|(by, _)| organisation(by) == org)
            .map(|(_, id)| id.clone())
            .collect();
        assert_eq!(
            listed, own,
            "{partner} lists consents not of its organisation"
        );
        for (by, id) in consents.iter().filter(|(by, _)| organisation(by) != org) {
            let r = c.delete(&format!("/v1/consents/{id}")).await;
            t.combinations += 1;
            t.scan("withdrawal of another's consent", &transcript(&r));
            assert_eq!(r.status, 404, "{partner} withdrew a consent of {by}");
        }
        // Unknown routes and methods are problems too.
        for (method, path, status) in [
            ("GET", "/v1/messages", 405),
            ("PUT", "/v1/inbox", 405),
            ("GET", "/v1/audit-all", 404),
            ("GET", "/", 404),
        ] {
            let r = c.request(method, path, &[], None).await;
            t.combinations += 1;
            assert_eq!(r.status, status, "{method} {path}");
            r.code();
        }
    }

    // Receivers acknowledge what they got; the payload is purged.
    for (partner, ids) in &inbox_ids {
        let c = gw.client(partner);
        for id in ids {
            let r = c.post(&format!("/v1/inbox/{id}/ack"), b"").await;
            t.combinations += 1;
            t.scan("ack", &transcript(&r));
            assert_eq!(r.status, 200, "{}", r.text());
        }
        assert!(c.inbox().await.is_empty());
    }
    // A partner without a partner entry gets nothing on any route.
    let unknown = gw.client("unknown-school");
    for (method, path) in [
        ("POST", "/v1/messages"),
        ("GET", "/v1/inbox"),
        ("GET", "/v1/consents"),
    ] {
        let r = unknown
            .request(method, path, &[], Some(example("P1")))
            .await;
        t.combinations += 1;
        assert_eq!((r.status, r.code()), (403, "unknown-partner".to_owned()));
    }

    t.scan("the database", &gw.database_bytes());
    t.scan("the tracing output", gw.stderr().as_bytes());
    t.scan("the metrics", gw.ops_get("/metrics").1.as_bytes());
    let (ok, out) = gw.audit_verify();
    assert!(ok, "{out}");
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_route_and_flow_with_canaries_leaks_nothing() {
    for backend in backends() {
        let t = matrix(backend).await;
        eprintln!(
            "authz[{backend:?}]: {} combinations ({} sends, {} delivered {:?}), refusals {:?}, \
             delivered canaries per flow {:?}, leaks {}",
            t.combinations,
            t.sends,
            t.delivered,
            t.delivered_per_flow,
            t.refused,
            t.delivered_canaries
                .iter()
                .map(|(f, c)| (*f, c.len()))
                .collect::<BTreeMap<_, _>>(),
            t.leaks.len()
        );
        assert!(t.leaks.is_empty(), "leaks:\n{}", t.leaks.join("\n"));
        assert!(
            !t.delivered_per_flow.contains_key("P0-none"),
            "a purpose no flow has was delivered"
        );
        for (flow, _, _) in FLOWS.into_iter().filter(|f| f.0 != "P0-none") {
            assert!(
                t.delivered_per_flow.get(flow).copied().unwrap_or(0) > 0,
                "{flow} was never delivered along its roles: {:?}",
                t.delivered_per_flow
            );
            // A canary of this flow reached its receiver in a delivered field: a known delivered value, which the
            // database scan above looked for while it waited unfetched.
            assert!(
                t.delivered_canaries.get(flow).is_some_and(|c| !c.is_empty()),
                "no canary of {flow} was delivered, so the at-rest scan knew no delivered value of it"
            );
        }
    }
}
