//! The README walk-through, driven with the real `curl` against the running binary.

mod common;

use common::*;
use std::process::Command;

fn curl(gw: &Gateway, partner: &str, args: &[&str]) -> (u16, String) {
    let certs = certs_dir();
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(certs.join("ca.crt"))
        .arg("--cert")
        .arg(certs.join(format!("{partner}.crt")))
        .arg("--key")
        .arg(certs.join(format!("{partner}.key")))
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let _ = gw;
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn readme_walk_through_with_curl() {
    if !require_program("curl", "the README walk-through with curl") {
        return;
    }
    let gw = Gateway::start(Backend::Sqlite);
    let port = gw.partner_addr.rsplit(':').next().unwrap().to_owned();
    let base = format!("https://localhost:{port}");
    let p1 = examples_dir().join("P1-overstap-po-vo.json");
    let (status, body) = curl(
        &gw,
        "obs-de-linde",
        &[
            "-H",
            "Content-Type: application/json",
            "-H",
            "Idempotency-Key: readme-1",
            "--data-binary",
            &format!("@{}", p1.display()),
            &format!("{base}/v1/messages"),
        ],
    );
    assert_eq!(status, 201, "{body}");
    let sent: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = sent["message_id"].as_str().unwrap();

    let (status, body) = curl(&gw, "lyceum-zuid", &[&format!("{base}/v1/inbox")]);
    assert_eq!(status, 200, "{body}");
    let inbox: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(inbox["messages"][0]["message_id"], id);
    assert_absent(body.as_bytes(), &canaries(), "curl inbox output");

    let (status, body) = curl(
        &gw,
        "lyceum-zuid",
        &["-X", "POST", &format!("{base}/v1/inbox/{id}/ack")],
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = curl(&gw, "lyceum-zuid", &[&format!("{base}/v1/inbox")]);
    assert_eq!(status, 200);
    assert!(body.contains("\"messages\":[]"), "{body}");

    // The kerngroep case of the walk-through: leerplicht and the SWV get their parts, the wijkteam (no consent) none.
    let p13 = examples_dir().join("P13-kerngroep-casus.json");
    let (status, body) = curl(
        &gw,
        "lyceum-zuid",
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("@{}", p13.display()),
            &format!("{base}/v1/messages"),
        ],
    );
    assert_eq!(status, 201, "{body}");
    assert_absent(body.as_bytes(), &canaries(), "curl P13 answer");
    let case: serde_json::Value = serde_json::from_str(&body).unwrap();
    let parts: Vec<(&str, bool)> = case["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["to"].as_str().unwrap(), p["refused"].is_object()))
        .collect();
    assert_eq!(
        parts,
        [
            ("leerplicht-gemeente", false),
            ("swv-vo-zuid", false),
            ("wijkteam-noord", true)
        ]
    );
    assert_eq!(case["recipients"][2]["refused"]["code"], "consent-required");
    let (status, body) = curl(&gw, "leerplicht-gemeente", &[&format!("{base}/v1/inbox")]);
    assert_eq!(status, 200, "{body}");
    let inbox: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(inbox["messages"][0]["case_id"], case["case_id"]);
    let (status, body) = curl(
        &gw,
        "fg-operator",
        &[&format!(
            "{base}/v1/audit/disclosures?case_id={}",
            case["case_id"].as_str().unwrap()
        )],
    );
    assert_eq!(status, 200, "{body}");
    let found: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(found["entries"].as_array().unwrap().len(), 3, "{body}");

    // TLS 1.0 and 1.1 are not tested with curl: this curl (OpenSSL 3) refuses to offer TLS 1.1 on its own, so such
    // a check could not fail. tests/bad_input.rs sends hand-built TLS 1.0 and 1.1 ClientHellos instead.
}

/// `CI` set to any non-empty value means CI (a missing curl, PostgreSQL or tmpfs then fails instead of skipping):
/// CI services set `true`, `1` or their own name, not always the literal `true`.
#[test]
fn any_non_empty_ci_value_means_ci() {
    for value in ["true", "1", "yes", "TRUE", "woodpecker"] {
        assert!(
            ci_value_means_ci(Some(value)),
            "CI={value} was not taken as CI"
        );
    }
    for value in [None, Some("")] {
        assert!(!ci_value_means_ci(value), "CI={value:?} was taken as CI");
    }
}
