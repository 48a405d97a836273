//! The contract: a property-based OpenAPI tester (schemathesis) runs openapi.yaml against the real gateway over
//! mutual TLS, once with a partner's certificate and once with a privacy officer's, and fails on any server error,
//! a status or content type the document does not list for the route, or a response body its schema does not match.
//!
//! Schemathesis comes from `.ci/run` (`pip install schemathesis==<pinned>` into `target/schemathesis-venv`), or from
//! `KETENPOORT_SCHEMATHESIS` (the path of its `schemathesis` program). Without it the test prints SKIPPED and passes
//! locally, and fails under CI.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The checks every response is held to.
const CHECKS: &str =
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

/// Test cases per operation and phase: enough to reach every documented refusal of a route, few enough for the
/// two runs to take a minute or two on a 2-core machine.
const MAX_EXAMPLES: &str = "150";

/// The number of operations in openapi.yaml (a method under a path).
fn operations() -> usize {
    let doc = std::fs::read_to_string(root().join("openapi.yaml")).unwrap();
    // Operations under `paths:` only: `webhooks:` (the push request a receiver gets) is not the gateway's to test.
    let mut section = "";
    let n = doc
        .lines()
        .filter(|l| {
            if !l.starts_with(' ') && !l.starts_with('#') && l.ends_with(':') {
                section = l;
            }
            section == "paths:"
                && ["get:", "post:", "put:", "patch:", "delete:"]
                    .iter()
                    .any(|m| l.strip_prefix("    ") == Some(m))
        })
        .count();
    assert!(n > 15, "openapi.yaml lists {n} operations");
    n
}

fn schemathesis() -> Option<PathBuf> {
    let path = std::env::var_os("KETENPOORT_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/schemathesis-venv/bin/schemathesis"));
    if path.exists() {
        return Some(path);
    }
    let why = format!(
        "the OpenAPI contract test (no {}; .ci/run installs it: python3 -m venv target/schemathesis-venv && \
         target/schemathesis-venv/bin/pip install schemathesis)",
        path.display()
    );
    if in_ci() {
        panic!("schemathesis is required in CI for {why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// Runs schemathesis against `gw` with the certificate of `partner`, failing on a non-zero exit (a failed check, or
/// an error of the tester itself).
fn run(program: &PathBuf, gw: &Gateway, partner: &str) {
    let certs = certs_dir();
    let port = gw.partner_addr.rsplit(':').next().unwrap();
    let report = gw.dir.path().join(format!("schemathesis-{partner}"));
    let started = Instant::now();
    let out = Command::new(program)
        .current_dir(gw.dir.path())
        .args(["run", root().join("openapi.yaml").to_str().unwrap()])
        .args(["--url", &format!("https://localhost:{port}")])
        .arg("--request-cert")
        .arg(certs.join(format!("{partner}.crt")))
        .arg("--request-cert-key")
        .arg(certs.join(format!("{partner}.key")))
        .arg("--tls-verify")
        .arg(certs.join("ca.crt"))
        .args(["--checks", CHECKS])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", "20260101"])
        // One worker: CPython 3.11's parser is not thread-safe ("AST constructor recursion depth mismatch" inside
        // hypothesis when two workers describe strategies at once), and the two runs take well under a minute each.
        .args([
            "--workers",
            "1",
            "--no-color",
            "--generation-database",
            "none",
        ])
        .arg("--report-dir")
        .arg(&report)
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "schemathesis as {partner}: {:.0?}, exit {:?}\n{}",
        started.elapsed(),
        out.status.code(),
        text.lines()
            .rev()
            .take(12)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        out.status.success(),
        "schemathesis found a breach of the contract as {partner}:\n{text}\n--- gateway:\n{}",
        gw.stderr()
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("request failed"))
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The run tested every operation of the document: one that reaches none (a wrong URL, a filter) must not pass.
    let tested = format!("Tested: {}", operations());
    assert!(
        text.contains(&tested),
        "schemathesis did not test every operation ({tested}) as {partner}:\n{text}"
    );
}

#[test]
fn the_gateway_keeps_the_openapi_contract_for_partners_and_privacy_officers() {
    let Some(program) = schemathesis() else {
        return;
    };
    // The default quotas are far above what one tester sends; set high here so a 429 (documented on every route)
    // never stalls the run whatever the defaults become.
    let mut opts = GatewayOptions::new(Backend::Sqlite);
    opts.extra_config = "[limits]\nrate_per_second = 100000\nburst = 100000".into();
    let gw = Gateway::start_with(opts);
    // Something for the links to find: messages in lyceum-zuid's inbox and outbox, consents it registered,
    // disclosures in the log.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let po = gw.client("obs-de-linde");
        let vo = gw.client("lyceum-zuid");
        for _ in 0..5 {
            let r = po.post("/v1/messages", &example("P1")).await;
            assert_eq!(r.status, 201, "{}", r.text());
            for name in ["P2", "P3"] {
                let r = vo.post("/v1/messages", &example(name)).await;
                assert_eq!(r.status, 201, "{name}: {}", r.text());
            }
            let consent = serde_json::json!({
                "subject": {"pgn": "252760189"},
                "purpose": "tlv-aanvraag",
                "recipient": "swv-vo-zuid",
                "categories": ["*"],
                "given_by": "ouder",
                "evidence": "toestemmingsformulier, leerlingdossier",
                "valid_from": "2026-01-01",
                "valid_until": "2030-07-31"
            });
            let r = vo.post_json("/v1/consents", &consent).await;
            assert_eq!(r.status, 201, "{}", r.text());
        }
    });
    run(&program, &gw, "lyceum-zuid");
    run(&program, &gw, "fg-lyceum-zuid");
    // What the tester sent was logged and the log still verifies.
    let (ok, report) = gw.audit_verify();
    assert!(ok, "{report}");
}

/// A request refused before its handler (by the identity phase, or the officer gate) is answered with its problem
/// even when it carries a body the client writes whole before reading: the gateway reads and discards the body
/// instead of closing a socket with unread data, which resets the connection and loses the answer. Found by the
/// contract test: a partner's POST /v1/audit/incidents failed with a TLS EOF instead of 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_before_its_handler_still_gets_its_answer_after_a_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = Gateway::start(Backend::Sqlite);
    // More than the socket buffers hold, less than the body limit: the client's write completes only if the
    // gateway reads.
    let body = vec![b'x'; 4 * 1024 * 1024];
    let cases = [
        (
            "lyceum-zuid",
            "POST",
            "/v1/audit/incidents",
            "",
            "not-a-privacy-officer",
        ),
        (
            "lyceum-zuid",
            "PATCH",
            "/v1/audit/incidents/inc-0",
            "",
            "not-a-privacy-officer",
        ),
        (
            "unknown-school",
            "POST",
            "/v1/messages",
            "",
            "unknown-partner",
        ),
        (
            "lyceum-zuid",
            "POST",
            "/v1/messages",
            "traceparent: 0\r\n",
            "invalid-trace-context",
        ),
    ];
    for (partner, method, path, extra, code) in cases {
        for _ in 0..3 {
            let mut tls = gw.client(partner).tls().await.unwrap();
            let mut request = format!(
                "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n{extra}\r\n",
                body.len()
            )
            .into_bytes();
            request.extend_from_slice(&body);
            tls.write_all(&request).await.unwrap_or_else(|e| {
                panic!("{method} {path} as {partner}: the body was refused: {e}")
            });
            let mut answer = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&answer).contains(code) {
                let n = tls
                    .read(&mut buf)
                    .await
                    .unwrap_or_else(|e| panic!("{method} {path} as {partner}: no answer: {e}"));
                assert!(
                    n > 0,
                    "{method} {path} as {partner}: closed without an answer"
                );
                answer.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&answer);
            assert!(text.starts_with("HTTP/1.1 4"), "{text}");
        }
    }
}
