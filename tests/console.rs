//! The privacy officer's console in a real browser: headless Chromium (Debian's `chromium`) with the
//! fg-lyceum-zuid client certificate in an NSS database, selected automatically by a managed policy, loads every
//! console page over mutual TLS, the test checks what each page shows (and that another school's entries are
//! absent) and saves screenshots to `target/console-screenshots/`.

mod common;

use common::*;
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LYCEUM_PUPIL: &str = "507529170";

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
                "valid_from": "2026-01-01", "valid_until": "2027-07-31"
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let consent_id = r.json()["consent_id"].as_str().unwrap().to_owned();

    let port = gw.partner_addr.rsplit(':').next().unwrap().to_owned();
    let origin = format!("https://localhost:{port}");
    install_managed_policy();
    let browser = Browser::with_certificate("fg-lyceum-zuid");
    let shots = root().join("target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    let pages: [(&str, String, &[&str], &[&str]); 6] = [
        (
            "overzicht",
            "/console/".into(),
            &[
                "Functionaris gegevensbescherming Lyceum Zuid",
                "inzage in verstrekkingen van Lyceum Zuid",
                "Inzageverzoek leerling",
            ],
            &[],
        ),
        (
            "verstrekkingen",
            "/console/verstrekkingen".into(),
            &[
                "test-alleen-lyceum-zuid",
                "test-linde-naar-lyceum",
                "toestemming vastgelegd",
                "geweigerd",
            ],
            &["test-alleen-de-linde"],
        ),
        (
            "verstrekkingen-gefilterd",
            "/console/verstrekkingen?event=message-refused&partner=obs-de-linde".into(),
            &["test-linde-naar-lyceum"],
            &["test-alleen-de-linde", "test-alleen-lyceum-zuid"],
        ),
        (
            "leerling",
            format!("/console/leerling?pgn={LYCEUM_PUPIL}"),
            &[
                "Ontvangers",
                "Toestemmingen",
                consent_id.as_str(),
                "test-alleen-lyceum-zuid",
                "Afdrukbare versie",
            ],
            &["test-alleen-de-linde"],
        ),
        (
            "integriteit",
            "/console/integriteit".into(),
            &["In orde", "handtekeningen gecontroleerd", "deze gateway"],
            &["NIET IN ORDE"],
        ),
        (
            "beleid",
            "/console/beleid".into(),
            &["Referentieflows", "P4:", "vroegsignalering", "<pre"],
            &[],
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
        for text in *present {
            assert!(dom.contains(text), "{name}: '{text}' missing:\n{dom}");
        }
        for text in *absent {
            assert!(!dom.contains(text), "{name}: '{text}' shown:\n{dom}");
        }
        assert!(!dom.contains("<script"), "{name}: a script on the page");
    }

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
