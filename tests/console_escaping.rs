//! Every value that reaches a console page is escaped: partner names (from a `partners.toml` written for this
//! test), actor, justification, purpose, message type, refusal details, field names and the console's own form
//! inputs echoed back all carry `<script>alert(1)</script>"q'&z`, each between two copies of its own tag. Every
//! console page (and the printable art. 15 page) is fetched over mutual TLS and checked: no `<script`, and every
//! tagged value on it is whole and inert (escaped, or percent-encoded in a link); the values a page shows appear
//! there in their escaped form.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The P3 example's pupil (the refusals below keep its subject, so the art. 15 report lists them).
const PUPIL: &str = "507529170";

/// The text each tag wraps; `"` and `&` break attributes and entities, `<script>` breaks out of text.
const CORE: &str = "<script>alert(1)</script>\"q'&z";

/// Every tag, one per field; none is part of another, of a page's fixed text, hex or base64.
const TAGS: [&str; 24] = [
    "XSSsender",
    "XSSreceiver",
    "XSSofficer",
    "XSSactorid",
    "XSSactorname",
    "XSSactorfn",
    "XSSjust",
    "XSSpurpose",
    "XSStype",
    "XSSenvkey",
    "XSSqpurpose",
    "XSSqflow",
    "XSSqoutcome",
    "XSSqfrom",
    "XSSquntil",
    "XSSqpgn",
    "XSSqbsn",
    "XSSqevent",
    "XSSqpartner",
    "XSSqlimit",
    "XSSqcursor",
    "XSSqparam",
    "XSSlpgn",
    "XSSbpurpose",
];

fn evil(tag: &str) -> String {
    assert!(TAGS.contains(&tag), "{tag}");
    format!("{tag}{CORE}{tag}")
}

/// Percent-encodes everything but ASCII letters and digits (for the test's own request URLs).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(s.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// How the gateway logs a withheld field whose key is not a catalogue name.
const INVALID_KEY: &str = "<invalid-key>";

/// The entities an escaped value may contain, and what they stand for.
const ENTITIES: [(&str, char); 9] = [
    ("&lt;", '<'),
    ("&gt;", '>'),
    ("&amp;", '&'),
    ("&quot;", '"'),
    ("&#34;", '"'),
    ("&#x22;", '"'),
    ("&#39;", '\''),
    ("&#x27;", '\''),
    ("&apos;", '\''),
];

/// `between` (the text between two copies of a tag) with its entities decoded, or why it is not inert text.
fn html_decode(between: &str) -> Result<String, String> {
    if let Some(c) = between.chars().find(|c| matches!(c, '<' | '>' | '"')) {
        return Err(format!("raw {c:?}"));
    }
    let mut out = String::new();
    let mut rest = between;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let (entity, c) = ENTITIES
            .iter()
            .find(|(e, _)| tail.starts_with(e))
            .ok_or_else(|| format!("raw & at {tail:?}"))?;
        out.push(*c);
        rest = &tail[entity.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks one page: no script element, no single-quoted attribute (so a raw `'` in a value cannot end one), and
/// every tagged value whole and inert. `shown`: tags whose value this page must show HTML-escaped.
fn check_page(name: &str, r: &Response, shown: &[&str]) {
    let page = r.text();
    assert!(
        r.headers
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/html")),
        "{name}: not HTML (status {}): {page}",
        r.status
    );
    assert!(page.contains("<html lang=\"nl\">"), "{name}: {page}");
    assert!(
        !page.to_ascii_lowercase().contains("<script"),
        "{name}: a script element on the page:\n{page}"
    );
    assert!(
        !page.contains(INVALID_KEY),
        "{name}: {INVALID_KEY} unescaped:\n{page}"
    );
    assert!(
        !page.contains("='"),
        "{name}: a single-quoted attribute:\n{page}"
    );
    let mut escaped_seen: BTreeMap<&str, usize> = BTreeMap::new();
    for tag in TAGS {
        let mut rest = page.as_str();
        while let Some(open) = rest.find(tag) {
            let after = &rest[open + tag.len()..];
            let close = after.find(tag).unwrap_or_else(|| {
                panic!(
                    "{name}: {tag}'s value is cut or broken up: {:?}",
                    &after[..after.len().min(120)]
                )
            });
            let between = &after[..close];
            let decoded = html_decode(between).unwrap_or_else(|why| {
                panic!("{name}: {tag}'s value is not escaped ({why}): {between:?}")
            });
            let inert = decoded == CORE
                || decoded == CORE.escape_debug().to_string()
                || percent_decode(between).as_deref() == Some(CORE);
            assert!(
                inert,
                "{name}: {tag}'s value shown as {between:?} (decoded {decoded:?})"
            );
            if between.contains("&lt;script&gt;") && between.contains("&amp;z") {
                assert!(
                    between.contains("&quot;") || between.contains("&#34;"),
                    "{name}: {tag}: {between:?}"
                );
                *escaped_seen.entry(tag).or_default() += 1;
            }
            rest = &after[close + tag.len()..];
        }
    }
    for tag in shown {
        assert!(
            escaped_seen.contains_key(tag),
            "{name}: {tag}'s value is not on the page (escaped): {page}"
        );
    }
}

/// certs-example/partners.toml with the names of the sender, the receiver and the lyceum's privacy officer
/// replaced by tagged values.
fn partners_toml(dir: &std::path::Path) -> std::path::PathBuf {
    let toml_str = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut text = std::fs::read_to_string(certs_dir().join("partners.toml")).unwrap();
    for (name, tag) in [
        ("Lyceum Zuid", "XSSsender"),
        ("Leerplicht Gemeente Voorbeeld", "XSSreceiver"),
        ("Functionaris gegevensbescherming Lyceum Zuid", "XSSofficer"),
    ] {
        let line = format!("name = \"{name}\"\n");
        assert_eq!(text.matches(&line).count(), 1, "{line}");
        text = text.replace(&line, &format!("name = {}\n", toml_str(&evil(tag))));
    }
    let path = dir.join("partners.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_value_on_every_console_page_is_escaped() {
    for a in TAGS {
        assert!(TAGS.iter().all(|b| a == *b || !b.contains(a)), "{a}");
    }
    let dir = TempDir::new("kp-console-escaping-");
    let mut opts = GatewayOptions::new(Backend::Sqlite);
    opts.partners = Some(partners_toml(dir.path()));
    let gw = Gateway::start_with(opts);
    let lyceum = gw.client("lyceum-zuid");
    let sign_as_evil_actor = |body: &mut Value| {
        body["actor"] = json!({
            "id": evil("XSSactorid"),
            "name": evil("XSSactorname"),
            "function": evil("XSSactorfn"),
        });
        body["justification"] = json!(evil("XSSjust"));
    };

    // A refusal carrying type, purpose, actor and justification (no flow has this purpose).
    let mut body = example_json("P3");
    body["type"] = json!(evil("XSStype"));
    body["purpose"] = json!(evil("XSSpurpose"));
    sign_as_evil_actor(&mut body);
    let r = lyceum.post_json("/v1/messages", &body).await;
    assert_eq!(r.status, 403, "{}", r.text());
    // A refusal whose detail names an unknown envelope key.
    let mut body = example_json("P3");
    body[evil("XSSenvkey")] = json!(1);
    let r = lyceum.post_json("/v1/messages", &body).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("XSSenvkey"), "{}", r.text());
    // A disclosure (P3) by the same actor, with a field the policy withholds. Its key is not a catalogue name, so
    // the gateway logs it as `<invalid-key>`: markup of the gateway's own, which the page must escape as well.
    let mut body = example_json("P3");
    body["data"][evil("XSSpurpose")] = json!("x");
    sign_as_evil_actor(&mut body);
    let r = lyceum.post_json("/v1/messages", &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.text().contains(INVALID_KEY), "withheld: {}", r.text());

    let fg = gw.client("fg-lyceum-zuid");
    let everywhere = ["XSSofficer", "XSSsender"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        everywhere.iter().chain(extra).copied().collect()
    };
    let q = |tag: &str| enc(&evil(tag));
    // The console's form inputs, echoed back (valid searches, invalid ones and an unknown parameter).
    let pages: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "verstrekkingen (purpose, flow, outcome)",
            format!(
                "/console/verstrekkingen?purpose={}&flow={}&outcome={}",
                q("XSSqpurpose"),
                q("XSSqflow"),
                q("XSSqoutcome")
            ),
            with(&["XSSreceiver", "XSSqpurpose", "XSSqflow", "XSSqoutcome"]),
        ),
        (
            "verstrekkingen (from, until)",
            format!(
                "/console/verstrekkingen?from={}&until={}",
                q("XSSqfrom"),
                q("XSSquntil")
            ),
            with(&["XSSqfrom", "XSSquntil"]),
        ),
        (
            "verstrekkingen (pgn)",
            format!("/console/verstrekkingen?pgn={}", q("XSSqpgn")),
            with(&["XSSqpgn"]),
        ),
        (
            "verstrekkingen (bsn)",
            format!("/console/verstrekkingen?bsn={}", q("XSSqbsn")),
            with(&["XSSqbsn"]),
        ),
        (
            "verstrekkingen (event, partner, limit)",
            format!(
                "/console/verstrekkingen?event={}&partner={}&limit={}",
                q("XSSqevent"),
                q("XSSqpartner"),
                q("XSSqlimit")
            ),
            with(&[]),
        ),
        (
            "verstrekkingen (cursor)",
            format!("/console/verstrekkingen?cursor={}", q("XSSqcursor")),
            with(&[]),
        ),
        (
            "verstrekkingen (unknown parameter)",
            format!("/console/verstrekkingen?{}=1", q("XSSqparam")),
            with(&[]),
        ),
        (
            "leerling (typed pgn)",
            format!("/console/leerling?pgn={}", q("XSSlpgn")),
            with(&["XSSlpgn"]),
        ),
        (
            "beleid (purpose)",
            format!(
                "/console/beleid?from=school-vo&to=leerplicht&purpose={}",
                q("XSSbpurpose")
            ),
            with(&["XSSbpurpose"]),
        ),
        (
            "beleid (roles)",
            format!(
                "/console/beleid?from={}&to={}&purpose=verzuimmelding",
                q("XSSqfrom"),
                q("XSSquntil")
            ),
            with(&[]),
        ),
        // The pages themselves, after the searches above were logged (their filters are in the log's details).
        ("overzicht", "/console/".into(), with(&[])),
        (
            "verstrekkingen",
            "/console/verstrekkingen?limit=1000".into(),
            with(&[
                "XSSreceiver",
                "XSSactorname",
                "XSSactorfn",
                "XSSpurpose",
                "XSSenvkey",
                "XSSqpurpose",
            ]),
        ),
        (
            "leerling",
            format!("/console/leerling?pgn={PUPIL}"),
            with(&["XSSreceiver", "XSSpurpose"]),
        ),
        ("integriteit", "/console/integriteit".into(), with(&[])),
        ("beleid", "/console/beleid".into(), with(&[])),
    ];
    for (name, path, shown) in &pages {
        let r = fg.get(path).await;
        assert!(r.status < 500, "{name}: {} {}", r.status, r.text());
        check_page(name, &r, shown);
        if *name == "verstrekkingen" {
            assert!(
                r.text().contains(
                    "<code>&lt;invalid-key&gt;</code><br><span class=\"muted\">not-in-catalogue: "
                ),
                "{name}: the withheld field: {}",
                r.text()
            );
        }
    }
    // The printable art. 15 page of the audit API (the console's report without its frame).
    let r = fg
        .request(
            "GET",
            &format!("/v1/audit/subjects/{PUPIL}"),
            &[("accept", "text/html")],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    check_page(
        "afdrukbare versie",
        &r,
        &["XSSsender", "XSSreceiver", "XSSpurpose"],
    );
}
