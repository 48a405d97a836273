//! The privacy officer's console in a real browser: headless Chromium (Debian's `chromium`) with the
//! fg-lyceum-zuid client certificate in an NSS database, selected automatically by a managed policy, loads every
//! console page over mutual TLS, the test checks what each page shows (and that another school's entries are
//! absent) and saves screenshots to `target/console-screenshots/`.

mod common;

use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LYCEUM_PUPIL: &str = "507529170";
/// The pupil of the P4 example (De Linde → Wijkteam Noord).
const OTHER_PUPIL: &str = "121547280";
/// Values of the P3 example's pupil: the log and the console hold field names, never these.
const P3_VALUES: [&str; 4] = ["Yilmaz", "Emre", "0687654321", "vaak ziek op maandag"];
/// The categories and field counts of the P3 example's disclosure, as the search results show them.
const P3_GROUPS: &str = r#"<p class="groups"><span>VZM 12</span>, <span>ADM 11</span></p>"#;

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Installs the managed Chromium policy that picks a client certificate for `https://localhost` on any port
/// without asking. Always the same file with the same content (written atomically), so concurrent test runs
/// agree; it is left in place because another run may be using it (each browser profile below holds only one
/// client certificate, so the choice is never ambiguous).
fn install_managed_policy() {
    let dir = Path::new("/etc/chromium/policies/managed");
    std::fs::create_dir_all(dir).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the browser test writes a managed policy here)",
            dir.display()
        )
    });
    let pattern = json!({"pattern": "https://localhost:*", "filter": {}}).to_string();
    let text = json!({"AutoSelectCertificateForUrls": [pattern]}).to_string();
    let path = dir.join("ketenpoort-tests.json");
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return;
    }
    let tmp = dir.join(format!(".{}.tmp", unique("ketenpoort-tests-")));
    std::fs::write(&tmp, &text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

/// A browser profile: its own HOME with an NSS database trusting the example CA and holding one partner's key.
struct Browser {
    home: TempDir,
}

impl Browser {
    fn with_certificate(partner: &str) -> Browser {
        let home = TempDir::new("kp-chromium-");
        let nss = home.path().join(".pki/nssdb");
        std::fs::create_dir_all(&nss).unwrap();
        let db = format!("sql:{}", nss.display());
        let certs = certs_dir();
        run("certutil", &["-d", &db, "-N", "--empty-password"]);
        run(
            "certutil",
            &[
                "-d",
                &db,
                "-A",
                "-t",
                "C,,",
                "-n",
                "ketenpoort-example-ca",
                "-i",
                certs.join("ca.crt").to_str().unwrap(),
            ],
        );
        let p12 = home.path().join(format!("{partner}.p12"));
        run(
            "openssl",
            &[
                "pkcs12",
                "-export",
                "-in",
                certs.join(format!("{partner}.crt")).to_str().unwrap(),
                "-inkey",
                certs.join(format!("{partner}.key")).to_str().unwrap(),
                "-name",
                partner,
                "-out",
                p12.to_str().unwrap(),
                "-passout",
                "pass:",
            ],
        );
        run(
            "pk12util",
            &["-i", p12.to_str().unwrap(), "-d", &db, "-W", ""],
        );
        Browser { home }
    }

    /// Loads `url`, returns the DOM after load and saves a screenshot.
    fn load(&self, url: &str, screenshot: &Path) -> String {
        let profile = TempDir::new("kp-chromium-profile-");
        let mut child = Command::new("chromium")
            .env("HOME", self.home.path())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--lang=nl-NL",
                "--hide-scrollbars",
                "--window-size=1400,1500",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--screenshot={}", screenshot.display()))
            .arg(url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
            s
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish loading {url} (no client certificate selected?)");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let dom = reader.join().unwrap();
        assert!(
            screenshot.exists(),
            "no screenshot of {url} at {}",
            screenshot.display()
        );
        dom
    }
}

async fn refused(gw: &Gateway, sender: &str, example_name: &str, purpose: &str) {
    let mut body = example_json(example_name);
    body["purpose"] = json!(purpose);
    let r = gw.client(sender).post_json("/v1/messages", &body).await;
    assert_eq!(r.status, 403, "{}", r.text());
}

/// The text of one reference flow's section of the policy page (`<h3>P1: ...` up to the next heading).
fn flow_section<'a>(dom: &'a str, flow: &str) -> &'a str {
    let start = dom
        .find(&format!("<h3>{flow}:"))
        .unwrap_or_else(|| panic!("beleid: no section for {flow}"));
    let rest = &dom[start + 4..];
    let end = rest.find("<h3>").unwrap_or(rest.len());
    &rest[..end]
}

/// The page's text without tags (each a space, except a path's `<wbr>`), whitespace collapsed.
fn text_of(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.replace("<wbr>", "").chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text of the table row holding `marker` (the row's `<tr>` up to its `</tr>`).
fn row_with<'a>(html: &'a str, marker: &str) -> &'a str {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no row with {marker} in\n{html}"));
    let start = html[..at].rfind("<tr>").expect("a row");
    let end = at + html[at..].find("</tr>").expect("the row's end");
    &html[start..end]
}

/// The text of `field`'s row in a flow's field table, e.g.
/// `Achternaam leerling leerling.achternaam ADM S1 toegestaan regel ...`.
fn field_line(section: &str, field: &str) -> String {
    let code = format!("<code>{}</code>", field.replace('.', ".<wbr>"));
    text_of(row_with(section, &code))
}

/// The policy page shows P1's and P4's fields by label and path with their actions in Dutch, as `policy explain`
/// gives them, and a legend of actions, classes and categories.
fn check_policy_field_actions(dom: &str) {
    let cases: [(&str, &str, &str); 9] = [
        (
            "P1",
            "leerling.achternaam",
            "Achternaam leerling leerling.achternaam ADM S1 toegestaan",
        ),
        (
            "P1",
            "diagnoses[].categorie",
            "Soort diagnose diagnoses[].categorie DIAG S4 toegestaan",
        ),
        ("P1", "diagnoses[].omschrijving", "DIAG S4 geweigerd"),
        (
            "P1",
            "jeugdhulp.inhoud",
            "Inhoud van de jeugdhulp jeugdhulp.inhoud JH S4 geweigerd",
        ),
        (
            "P1",
            "bijlagen[].inhoud",
            "ATT S4 alleen met toestemming (ATT)",
        ),
        (
            "P4",
            "leerling.geboortedatum",
            "gegeneraliseerd: alleen het jaar, alleen met toestemming (ADM)",
        ),
        (
            "P4",
            "verzuim.uren_3mnd",
            "gegeneraliseerd: in klassen van 10, alleen met toestemming (VZ)",
        ),
        ("P4", "ondersteuning.opp", "BEG S3 geweigerd"),
        ("P4", "cognitief.iq_totaal", "COG S3 geweigerd"),
    ];
    for (flow, field, action) in cases {
        let line = field_line(flow_section(dom, flow), field);
        assert!(
            line.contains(action),
            "beleid {flow}: {field} should read '{action}': {line}"
        );
    }
    // Each flow's table ends with the default deny, and says nothing in English.
    for flow in ["P1", "P4"] {
        let section = flow_section(dom, flow);
        let line = text_of(row_with(section, "(elk ander veld)"));
        assert!(line.contains("geweigerd"), "beleid {flow}: {line}");
        for english in ["deliver", "withhold", "legal basis", "receiver keeps"] {
            assert!(!section.contains(english), "beleid {flow}: '{english}'");
        }
        for heading in [
            "grondslag",
            "gateway bewaart",
            "ontvanger bewaart",
            "ontvanger",
        ] {
            assert!(
                section.contains(&format!("<th scope=\"row\">{heading}</th>")),
                "beleid {flow}: no '{heading}'"
            );
        }
    }
    // The legend: every action, every class with its meaning, the categories by their Dutch names.
    let legend = &dom[dom.find("<h2 id=\"legenda\">").expect("a legend")..];
    for action in [
        "toegestaan",
        "alleen met toestemming",
        "gegeneraliseerd",
        "gepseudonimiseerd",
        "geweigerd",
    ] {
        assert!(
            legend.contains(&format!("<th scope=\"row\">{action}</th>")),
            "legenda: {action}"
        );
    }
    for class in ["S0", "S1", "S1X", "S2", "S3", "S4", "ART10"] {
        assert!(
            legend.contains(&format!("<th scope=\"row\">{class}</th>")),
            "legenda: {class}"
        );
    }
    assert!(text_of(legend).contains("S4 bijzondere persoonsgegevens (AVG art. 9"));
    assert!(text_of(legend).contains("ADM Administratieve gegevens"));
}

/// axe-core's script: `KETENPOORT_AXE`, else where `.ci/run` installs it (`npm install --prefix target/axe axe-core@4`).
fn axe_script() -> PathBuf {
    std::env::var_os("KETENPOORT_AXE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/axe/node_modules/axe-core/axe.min.js"))
}

/// axe-core finds no WCAG 2.1 A or AA violation on any of the pages (web pages of Dutch public bodies must meet
/// WCAG 2.1 AA), run in Chromium with the browser's client certificate by `tests/axe-check.mjs`.
fn check_accessibility(browser: &Browser, urls: &[String]) {
    if !require_program("node", "the console's accessibility check (axe-core)") {
        return;
    }
    let axe = axe_script();
    if !axe.exists() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "{} is required in CI for the console's accessibility check (npm install --prefix target/axe axe-core@4)",
                axe.display()
            );
        }
        eprintln!(
            "SKIPPED (no {}): the console's accessibility check",
            axe.display()
        );
        return;
    }
    let profile = TempDir::new("kp-chromium-axe-");
    let out = Command::new("node")
        .env("HOME", browser.home.path())
        .arg(root().join("tests/axe-check.mjs"))
        .arg(&axe)
        .arg(profile.path())
        .args(urls)
        .output()
        .expect("start node");
    assert!(
        out.status.success(),
        "axe-check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).expect("axe-check's JSON");
    for url in urls {
        let violations = results[url.as_str()]
            .as_array()
            .unwrap_or_else(|| panic!("axe-check did not check {url}: {results}"));
        assert!(
            violations.is_empty(),
            "{url}: WCAG 2.1 AA violations: {violations:#?}"
        );
    }
}

/// The art. 15 report on the pupil page: the recipient with its retention and categories, the school as source, and
/// no pupil number (the page has it only in the search form and the link to the printable version).
fn check_subject_report(dom: &str) {
    let report = &dom[dom.find("<div class=\"report\">").expect("the report")..];
    assert!(!report.contains(LYCEUM_PUPIL), "the PGN in the report");
    let recipient = text_of(row_with(report, "<td>Leerplicht Gemeente Voorbeeld</td>"));
    assert!(
        recipient.contains("Verzuimmelding")
            && recipient.contains("Administratieve gegevens")
            && recipient.ends_with("Leerplicht bewaart het verzuimdossier 5 jaar. (1825 dagen)"),
        "{recipient}"
    );
    let sources = &report[report.find("Herkomst van de gegevens").unwrap()..];
    let source = text_of(row_with(sources, "<td>Lyceum Zuid</td>"));
    assert_eq!(source, "Lyceum Zuid school (voortgezet onderwijs) 1");
}

/// The search results show a disclosure's fields as counts per category, with the full list folded.
fn check_grouped_fields(dom: &str) {
    let row = dom
        .split("<tr>")
        .find(|r| r.contains("flow P3<") && r.contains(">verstrekt</span>"))
        .unwrap_or_else(|| panic!("no P3 disclosure row:\n{dom}"));
    let row = &row[..row.find("</tr>").expect("the row's end")];
    let text = text_of(row);
    assert!(row.contains(P3_GROUPS), "P3 row: {row}");
    assert!(
        row.contains("<details><summary>Alle velden ("),
        "P3 row: {row}"
    );
    assert!(!row.contains("<details open"), "folded: {row}");
    assert!(
        text.contains("Achternaam leerling leerling.achternaam"),
        "labels with their paths: {text}"
    );
    assert!(text_of(dom).contains("Categorieën: ADM Administratieve gegevens"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_in_chromium_show_the_lyceum_fg_only_its_own_organisation() {
    let needed = [
        ("chromium", "the console browser test"),
        ("certutil", "the console browser test (libnss3-tools)"),
        ("pk12util", "the console browser test (libnss3-tools)"),
        ("openssl", "the console browser test (PKCS#12 export)"),
    ];
    if !needed.iter().all(|(p, why)| require_program(p, why)) {
        return;
    }
    let canaries = canaries();
    let gw = Gateway::start(Backend::Sqlite);
    refused(&gw, "lyceum-zuid", "P3", "test-alleen-lyceum-zuid").await;
    refused(&gw, "obs-de-linde", "P4", "test-alleen-de-linde").await;
    refused(&gw, "obs-de-linde", "P1", "test-linde-naar-lyceum").await;
    let r = gw
        .client("lyceum-zuid")
        .post_json(
            "/v1/consents",
            &json!({
                "subject": {"pgn": LYCEUM_PUPIL}, "purpose": "verzuimmelding", "recipient": "leerplicht-gemeente",
                "categories": ["VZM"], "given_by": "ouder-en-jongere", "evidence": "formulier 2026-14, leerlingdossier",
                "valid_from": "2026-01-01", "valid_until": "2030-07-31"
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let consent_id = r.json()["consent_id"].as_str().unwrap().to_owned();
    // A real disclosure about the same pupil: P3 Lyceum Zuid → Leerplicht, fetched and acknowledged.
    assert_eq!(
        example_json("P3")["subject"]["pgn"],
        LYCEUM_PUPIL,
        "the P3 example is about the pupil the console test searches"
    );
    let r = gw
        .client("lyceum-zuid")
        .post("/v1/messages", &example("P3"))
        .await;
    assert_eq!(r.status, 201, "P3: {}", r.text());
    let p3 = r.json();
    let p3_id = p3["message_id"].as_str().unwrap().to_owned();
    assert!(p3["delivered"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d == "verzuim.soort"));
    let leerplicht = gw.client("leerplicht-gemeente");
    assert_eq!(leerplicht.inbox().await.len(), 1);
    let r = leerplicht
        .post(&format!("/v1/inbox/{p3_id}/ack"), b"")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The office then finds it was not for them: an incident opens in Lyceum Zuid's breach register.
    let r = leerplicht
        .post_json(
            &format!("/v1/inbox/{p3_id}/misaddressed"),
            &json!({"reason": "verkeerde-leerling", "copies_deleted": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Another organisation's real delivery, which the lyceum's FG must not see.
    let r = gw
        .client("obs-de-linde")
        .post_json(
            "/v1/consents",
            &json!({
                "subject": {"pgn": OTHER_PUPIL}, "purpose": "vroegsignalering", "recipient": "wijkteam-noord",
                "categories": ["*"], "given_by": "ouder", "evidence": "toestemmingsformulier, leerlingdossier",
                "valid_from": "2026-01-01", "valid_until": "2030-07-31"
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = gw
        .client("obs-de-linde")
        .post("/v1/messages", &example("P4"))
        .await;
    assert_eq!(r.status, 201, "P4: {}", r.text());
    let p4_id = r.json()["message_id"].as_str().unwrap().to_owned();
    // The operator's FG sees it (so its absence from the lyceum FG's pages below means something).
    let r = gw
        .client("fg-operator")
        .get("/v1/audit/disclosures?flow=P4&event=message-disclosed")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["message_id"] == p4_id.as_str()));

    let port = gw.partner_addr.rsplit(':').next().unwrap().to_owned();
    let origin = format!("https://localhost:{port}");
    install_managed_policy();
    let browser = Browser::with_certificate("fg-lyceum-zuid");
    let shots = root().join("target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    let pages: Vec<(&str, String, Vec<&str>, Vec<&str>)> = vec![
        (
            "overzicht",
            "/console/".into(),
            vec![
                "Functionaris gegevensbescherming Lyceum Zuid",
                "inzage in verstrekkingen van Lyceum Zuid",
                "Inzageverzoek leerling",
            ],
            vec![],
        ),
        (
            "verstrekkingen",
            "/console/verstrekkingen".into(),
            vec![
                "test-alleen-lyceum-zuid",
                "test-linde-naar-lyceum",
                "toestemming vastgelegd",
                "geweigerd",
                "verstrekt",
                "opgehaald",
                "ontvangst bevestigd",
                "Leerplicht Gemeente Voorbeeld",
            ],
            // (The filter form names every partner and suggests purposes, so look at table cells.)
            vec![
                "test-alleen-de-linde",
                "vroegsignalering<br>",
                "→ Wijkteam Noord</td>",
                "flow P4<",
            ],
        ),
        (
            "verstrekkingen-gefilterd",
            "/console/verstrekkingen?event=message-refused&partner=obs-de-linde".into(),
            vec!["test-linde-naar-lyceum"],
            vec![
                "test-alleen-de-linde",
                "test-alleen-lyceum-zuid",
                "verzuimmelding",
            ],
        ),
        (
            "leerling",
            format!("/console/leerling?pgn={LYCEUM_PUPIL}"),
            vec![
                "Ontvangers",
                "Toestemmingen",
                consent_id.as_str(),
                "test-alleen-lyceum-zuid",
                "Afdrukbare versie",
                // The P3 disclosure with its fields.
                "Leerplicht Gemeente Voorbeeld",
                "Leerplicht",
                "verzuimmelding",
                "flow P3",
                "Leerplichtwet 1969 art. 21 en 21a",
                // Its data by category and label, folded; no field paths for parents.
                "<span>Verzuimmelding: 12</span>, <span>Administratieve gegevens: 11</span>",
                "<details><summary>Alle velden (",
                "Soort verzuim",
                "Achternaam leerling",
                "Naam van de melder op school",
                // The purpose in words, the source, the retention per recipient, the rights and the AP.
                "Verzuimmelding school → leerplicht",
                "Herkomst van de gegevens",
                "Leerplicht bewaart het verzuimdossier 5 jaar.",
                "Uw rechten",
                "AVG art. 16",
                "AVG art. 17",
                "AVG art. 18",
                "AVG art. 21",
                "Autoriteit Persoonsgegevens",
                "href=\"https://autoriteitpersoonsgegevens.nl\"",
                "ouder en jongere samen",
            ],
            vec![
                "test-alleen-de-linde",
                "Er zijn geen gegevens over deze leerling verstrekt",
                "Uitslag van een toets",
                "Soort diagnose",
                "<code>verzuim.",
                "<code>leerling.",
            ],
        ),
        (
            // The printable art. 15 report of the audit API (the browser asks for HTML): every list open.
            "afdrukbaar",
            format!("/v1/audit/subjects/{LYCEUM_PUPIL}"),
            vec![
                "<details open=\"\"><summary>Alle velden (",
                "Soort verzuim",
                "Herkomst van de gegevens",
                "Leerplicht bewaart het verzuimdossier 5 jaar.",
                "Uw rechten",
                "Autoriteit Persoonsgegevens",
                "@media print",
            ],
            vec![
                LYCEUM_PUPIL,
                "<code>verzuim.",
                "test-alleen-de-linde",
                "<nav>",
            ],
        ),
        (
            "datalekken",
            "/console/datalekken".into(),
            vec![
                "<h1>Datalekken</h1>",
                "uur tot de termijn van 72 uur",
                "verkeerde-leerling",
                "Stap vastleggen",
                "Leerplicht",
            ],
            vec![],
        ),
        (
            "integriteit",
            "/console/integriteit".into(),
            vec!["In orde", "handtekeningen gecontroleerd", "deze gateway"],
            vec!["NIET IN ORDE"],
        ),
        (
            "beleid",
            "/console/beleid".into(),
            vec![
                "Referentieflows",
                "<h3>P1:",
                "<h3>P4:",
                "vroegsignalering",
                "<h3>P1-wvo:",
                "<h3>P8:",
                "<h3>P9:",
                "<h3>P10:",
                "<h3>P11:",
                "tlv-besluit",
                "<table class=\"flowfields\">",
                "<h2 id=\"legenda\">Legenda</h2>",
            ],
            vec![],
        ),
    ];
    for (name, path, present, absent) in &pages {
        let shot = shots.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&shot);
        let dom = browser.load(&format!("{origin}{path}"), &shot);
        assert!(
            dom.contains("<html lang=\"nl\">"),
            "{name}: not the console page:\n{dom}"
        );
        for text in present {
            assert!(dom.contains(text), "{name}: '{text}' missing:\n{dom}");
        }
        for text in absent {
            assert!(!dom.contains(text), "{name}: '{text}' shown:\n{dom}");
        }
        assert!(!dom.contains("<script"), "{name}: a script on the page");
        assert_absent(dom.as_bytes(), &canaries, name);
        for value in P3_VALUES {
            assert!(!dom.contains(value), "{name}: a pupil value on the page");
        }
        if *name == "beleid" {
            check_policy_field_actions(&dom);
        }
        if *name == "leerling" {
            check_subject_report(&dom);
        }
        if *name == "verstrekkingen" {
            check_grouped_fields(&dom);
        }
    }

    // Every page, the printable art. 15 report too, meets WCAG 2.1 AA as far as axe-core can tell.
    let urls: Vec<String> = pages
        .iter()
        .map(|(_, path, _, _)| format!("{origin}{path}"))
        .collect();
    check_accessibility(&browser, &urls);

    // The browser's visits are audit queries in the log (the pupil only as pseudonym).
    let r = gw
        .client("fg-operator")
        .get("/v1/audit/disclosures?event=audit-query&partner=fg-lyceum-zuid&limit=1000")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let details: Vec<String> = r.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("console verstrekkingen")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d.starts_with("console leerling")),
        "{details:?}"
    );
    assert_absent(
        &gw.database_bytes(),
        &[LYCEUM_PUPIL.to_owned()],
        "the database",
    );
}
