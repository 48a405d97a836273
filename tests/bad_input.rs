//! The bad-input matrix against the real binary: TLS (no certificate, rogue CA, expired, revoked, revoked after a
//! resumable session, no clientAuth EKU, TLS 1.0/1.1), HTTP (oversized bodies with and without Content-Length,
//! Content-Length with Transfer-Encoding, conflicting Content-Length, spoofed identity headers, slow headers and
//! bodies, the per-partner connection cap), JSON (depth, duplicate keys, invalid UTF-8, lone surrogates, numbers
//! where strings belong, unknown envelope keys) and domain rules (PGN checksum, unknown receiver, purpose of no
//! flow, person-level data in an aggregate).
//!
//! Every case asserts the status and the problem `code` (where HTTP got that far), that nothing was delivered
//! (every inbox empty, no `message-disclosed` entry), and a `message-refused` log entry naming the certificate's
//! partner where the request was authenticated.

mod common;

use common::pki::write_valid_crl;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const RECEIVERS: [&str; 6] = [
    "lyceum-zuid",
    "swv-vo-zuid",
    "leerplicht-gemeente",
    "wijkteam-noord",
    "obs-de-linde",
    "cbs-het-anker",
];

/// No inbox holds a message and the log has no disclosure.
async fn assert_nothing_delivered(gw: &Gateway) {
    assert_nothing_delivered_except(gw, &[]).await
}

/// As `assert_nothing_delivered`, not asking the partners in `skip` (e.g. a revoked one) for their inbox.
async fn assert_nothing_delivered_except(gw: &Gateway, skip: &[&str]) {
    for r in RECEIVERS.into_iter().filter(|r| !skip.contains(r)) {
        let inbox = gw.client(r).inbox().await;
        assert!(inbox.is_empty(), "{r} received {} message(s)", inbox.len());
    }
    let disclosed = gw
        .log_entries()
        .await
        .into_iter()
        .filter(|(e, _)| e.event == "message-disclosed")
        .count();
    assert_eq!(disclosed, 0, "a message-disclosed entry exists");
}

/// How many `message-refused` entries name `partner` (from its certificate) with outcome `code`.
async fn refusals_logged(gw: &Gateway, partner: &str, code: &str) -> usize {
    gw.log_entries()
        .await
        .into_iter()
        .filter(|(e, d)| {
            e.event == "message-refused"
                && e.partner == partner
                && e.outcome == code
                && !d.cert_fingerprint.is_empty()
        })
        .count()
}

fn p1() -> Value {
    example_json("P1")
}

fn p1_with(f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = p1();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

/// A P1 no flow can allow (its purpose exists in no policy): refused with `no-policy` with or without policies.
fn p1_no_flow() -> Vec<u8> {
    p1_with(|v| v["purpose"] = json!("geen-bestaande-grondslag"))
}

// ---------------------------------------------------------------------------------------------------------------
// TLS

/// A TLS 1.0/1.1 ClientHello (no supported_versions extension), as an old client sends it.
fn legacy_client_hello(minor: u8) -> Vec<u8> {
    let mut body = vec![3, minor];
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    let suites: [u16; 6] = [0xc013, 0xc014, 0xc009, 0xc00a, 0x002f, 0x0035];
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    let mut ext = Vec::new();
    let host = b"localhost";
    let mut sni = vec![0];
    sni.extend_from_slice(&(host.len() as u16).to_be_bytes());
    sni.extend_from_slice(host);
    let mut sni_list = (sni.len() as u16).to_be_bytes().to_vec();
    sni_list.extend_from_slice(&sni);
    for (kind, data) in [
        (0x0000u16, sni_list),
        (0x000a, vec![0, 4, 0, 0x17, 0, 0x1d]), // supported groups: secp256r1, x25519
        (0x000b, vec![1, 0]),                   // ec point formats: uncompressed
        // signature algorithms (so certificate selection succeeds and the version is what is judged):
        // ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
        (0x000d, vec![0, 6, 4, 3, 8, 4, 4, 1]),
    ] {
        ext.extend_from_slice(&kind.to_be_bytes());
        ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
        ext.extend_from_slice(&data);
    }
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 3, 1];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_refuses_missing_rogue_expired_revoked_and_non_client_certificates_and_old_versions() {
    let gw = Gateway::start(Backend::Sqlite);
    let mut refused = 0;
    let no_cert = Client::without_certificate(&gw.partner_addr)
        .try_request("POST", "/v1/messages", &[], Some(example("P1")))
        .await;
    assert!(no_cert.is_err(), "admitted without a certificate");
    refused += 1;
    for partner in [
        "rogue-school",
        "expired-school",
        "revoked-school",
        "no-eku-school",
    ] {
        let r = gw
            .client(partner)
            .try_request("POST", "/v1/messages", &[], Some(example("P1")))
            .await;
        assert!(
            r.is_err(),
            "{partner} was admitted: {:?}",
            r.map(|r| r.status)
        );
        refused += 1;
    }
    // Valid certificate of the CA, but no partner: refused per request.
    let r = gw
        .client("unknown-school")
        .post("/v1/messages", &example("P1"))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "unknown-partner");

    for (minor, name) in [(1u8, "TLS 1.0"), (2, "TLS 1.1")] {
        let tcp = tokio::net::TcpStream::connect(&gw.partner_addr)
            .await
            .unwrap();
        let x = raw_exchange(
            tcp,
            &[&legacy_client_hello(minor)],
            Duration::ZERO,
            Duration::from_secs(10),
        )
        .await;
        // A fatal alert (record type 21, level 2) protocol_version (70), and nothing else.
        assert_eq!(
            x.bytes.first(),
            Some(&0x15),
            "{name}: no alert: {:02x?}",
            x.bytes
        );
        assert_eq!(x.bytes.len(), 7, "{name}: {:02x?}", x.bytes);
        assert_eq!(&x.bytes[5..], &[2, 70], "{name}: not protocol_version");
        assert!(x.closed, "{name}: connection left open");
        refused += 1;
    }
    if require_program("openssl", "offering TLS 1.1 with openssl s_client") {
        let certs = certs_dir();
        let out = std::process::Command::new("openssl")
            .args(["s_client", "-connect", &gw.partner_addr, "-tls1_1"])
            .args(["-cipher", "DEFAULT:@SECLEVEL=0"])
            .arg("-cert")
            .arg(certs.join("obs-de-linde.crt"))
            .arg("-key")
            .arg(certs.join("obs-de-linde.key"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "openssl negotiated TLS 1.1: {text}");
        // openssl offers no signature_algorithms in a TLS 1.1 hello, so the refusal comes as handshake_failure (40)
        // rather than protocol_version (70); either way a fatal alert and no cipher.
        assert!(
            text.contains("SSL alert number 40") || text.contains("SSL alert number 70"),
            "openssl was not refused with a fatal alert: {text}"
        );
        assert!(text.contains("Cipher is (NONE)"), "{text}");
    }

    // Refused before identity: visible in the tracing output, never in the disclosure log.
    let logged = gw.wait_for_stderr("TLS handshake refused", refused);
    let stderr = gw.stderr();
    for line in stderr
        .lines()
        .filter(|l| l.contains("TLS handshake refused"))
    {
        eprintln!("{}", line.split("refused").nth(1).unwrap_or(""));
    }
    assert!(
        logged,
        "{refused} handshakes refused, fewer logged:\n{stderr}"
    );
    let entries = gw.log_entries().await;
    assert!(
        entries.iter().all(|(e, _)| e.event == "policy-loaded"),
        "an unauthenticated request left a log entry"
    );
    assert_nothing_delivered(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_partner_is_refused_on_a_resumed_tls_session() {
    let dir = TempDir::new("kp-crl-");
    let crl = dir.path().join("crl.pem");
    write_valid_crl(&crl, &[]);
    let mut opts = GatewayOptions::new(Backend::Sqlite);
    opts.crl = Some(crl.clone());
    opts.tls_extra = "crl_poll_secs = 0".into();
    let gw = Gateway::start_with(opts);
    let anker = gw.client("cbs-het-anker");

    let mut first = anker.connect().await.unwrap();
    assert!(!first.resumed);
    let r = first
        .request("POST", "/v1/messages", &[], Some(p1_no_flow()))
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "no-policy");
    drop(first);

    // Check that this client really resumes sessions before relying on it.
    let mut probe = anker.connect().await.unwrap();
    assert!(probe.resumed, "the client did not resume its TLS session");
    assert_eq!(
        probe
            .request("GET", "/v1/inbox", &[], None)
            .await
            .unwrap()
            .status,
        200
    );
    drop(probe);

    write_valid_crl(&crl, &["cbs-het-anker"]);
    let (status, body) = gw.ops_post("/crl/reload");
    assert_eq!(status, 200, "{body}");

    let mut resumed = anker.connect().await.unwrap();
    assert!(resumed.resumed, "the session was not resumed");
    for (method, path, body) in [
        ("GET", "/v1/inbox", None),
        ("POST", "/v1/messages", Some(example("P1"))),
        ("GET", "/v1/consents", None),
    ] {
        let r = resumed.request(method, path, &[], body).await.unwrap();
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
        assert_eq!(r.code(), "certificate-revoked");
    }
    assert_eq!(refusals_logged(&gw, "cbs-het-anker", "no-policy").await, 1);
    assert_nothing_delivered_except(&gw, &["cbs-het-anker"]).await;
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP

fn http_gateway() -> Gateway {
    let mut opts = GatewayOptions::new(Backend::Sqlite);
    opts.server_extra = "header_timeout_secs = 1\nbody_timeout_secs = 1".into();
    opts.extra_config = "[limits]\nmax_body_bytes = 65536".into();
    Gateway::start_with(opts)
}

/// A JSON envelope of about `n` bytes (a long justification).
fn big_envelope(n: usize) -> Vec<u8> {
    p1_with(|v| v["justification"] = json!("x".repeat(n)))
}

fn request_head(extra: &str) -> String {
    format!("POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{extra}\r\n")
}

fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bodies_framing_and_timeouts_are_enforced() {
    let gw = http_gateway();
    let linde = gw.client("obs-de-linde");
    let quiet = Duration::from_secs(10);

    // Requests are written in one piece and never with bytes the server will not read: a server closing with
    // unread input resets the connection, which can destroy its response before the client reads it.

    // Oversized, announced by Content-Length: refused before any of the body is sent.
    let head = request_head("Content-Length: 200000\r\nConnection: close\r\n");
    let x = raw_exchange(
        linde.tls().await.unwrap(),
        &[head.as_bytes()],
        Duration::ZERO,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(x.statuses.first(), Some(&413), "{}", x.text());
    assert_eq!(x.json()["code"], "body-too-large");

    // Oversized, chunked without Content-Length: refused once the limit (64 KiB) is passed.
    let mut body = chunked(&big_envelope(200_000)[..65536 + 4096], 4096);
    body.truncate(body.len() - b"0\r\n\r\n".len());
    let mut request =
        request_head("Transfer-Encoding: chunked\r\nConnection: close\r\n").into_bytes();
    request.extend_from_slice(&body);
    let x = raw_exchange(
        linde.tls().await.unwrap(),
        &[&request],
        Duration::ZERO,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(x.statuses.first(), Some(&413), "{}", x.text());
    assert_eq!(x.json()["code"], "body-too-large");
    assert_eq!(
        refusals_logged(&gw, "obs-de-linde", "body-too-large").await,
        2
    );

    // Content-Length and Transfer-Encoding together: the chunked framing wins, the connection is closed after
    // the one response, so bytes hidden behind the Content-Length are never read as a second request.
    let inner = p1_no_flow();
    let mut body = chunked(&inner, 64);
    body.extend_from_slice(b"GET /v1/inbox HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let mut request =
        request_head("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n").into_bytes();
    request.extend_from_slice(&body);
    let x = raw_exchange(
        linde.tls().await.unwrap(),
        &[&request],
        Duration::ZERO,
        quiet,
    )
    .await;
    assert_eq!(x.statuses, vec![403], "{}", x.text());
    assert_eq!(x.json()["code"], "no-policy");
    assert!(x.closed, "connection kept open after CL+TE");
    assert_eq!(refusals_logged(&gw, "obs-de-linde", "no-policy").await, 1);

    // Conflicting Content-Length headers: refused by the HTTP parser before any handler.
    let inner = p1_no_flow();
    let mut request = request_head(&format!(
        "Content-Length: {}\r\nContent-Length: {}\r\n",
        inner.len(),
        inner.len() + 7
    ))
    .into_bytes();
    request.extend_from_slice(&inner);
    let x = raw_exchange(
        linde.tls().await.unwrap(),
        &[&request],
        Duration::ZERO,
        quiet,
    )
    .await;
    assert_eq!(x.statuses, vec![400], "{}", x.text());
    assert!(x.closed);
    // Identical duplicates are one length (RFC 9110 8.6) and the request is handled as usual.
    let head = request_head(&format!(
        "Content-Length: {0}\r\nContent-Length: {0}\r\nConnection: close\r\n",
        inner.len()
    ));
    let x = raw_exchange(
        linde.tls().await.unwrap(),
        &[head.as_bytes(), &inner],
        Duration::ZERO,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(x.statuses, vec![403], "{}", x.text());
    assert_eq!(refusals_logged(&gw, "obs-de-linde", "no-policy").await, 2);

    // Slow headers: the connection is closed once header_timeout_secs passed.
    let started = Instant::now();
    let x = raw_exchange(
        linde.tls().await.unwrap(),
        &[b"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\n"],
        Duration::ZERO,
        Duration::from_secs(30),
    )
    .await;
    assert!(x.closed, "slow headers kept the connection open");
    eprintln!(
        "slow headers: closed after {:?} with {:?}",
        started.elapsed(),
        x.statuses
    );

    // Slow body: 408 with a problem, logged.
    let head = request_head("Content-Length: 1000\r\n");
    let x = raw_exchange(
        linde.tls().await.unwrap(),
        &[head.as_bytes(), b"{\"to\": \"lyceum-zuid\""],
        Duration::from_millis(10),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(x.statuses.first(), Some(&408), "{}", x.text());
    assert_eq!(x.json()["code"], "body-timeout");
    assert_eq!(
        refusals_logged(&gw, "obs-de-linde", "body-timeout").await,
        1
    );

    assert_nothing_delivered(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_are_ignored() {
    let gw = Gateway::start(Backend::Sqlite);
    let spoof = [
        ("x-partner-id", "lyceum-zuid"),
        (
            "x-ssl-client-s-dn",
            "CN=lyceum-zuid,serialNumber=00000001800000000003",
        ),
        ("x-forwarded-client-cert", "Subject=\"CN=fg-operator\""),
        ("x-client-oin", "00000001800000000099"),
        ("forwarded", "for=127.0.0.1;by=lyceum-zuid"),
    ];
    let anker = gw.client("cbs-het-anker");
    let consent = json!({"subject": {"pgn": "628194821"}, "purpose": "vroegsignalering",
        "recipient": "wijkteam-noord", "categories": ["*"], "given_by": "ouder",
        "evidence": "formulier", "valid_from": "2026-01-01", "valid_until": "2030-12-31"});
    let r = anker
        .request(
            "POST",
            "/v1/consents",
            &spoof,
            Some(serde_json::to_vec(&consent).unwrap()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["consent_id"].as_str().unwrap().to_owned();
    // Registered by the certificate's organisation, not the one the headers name.
    let lyceum = gw.client("lyceum-zuid");
    assert_eq!(
        lyceum.get("/v1/consents").await.json()["consents"],
        json!([])
    );
    let r = lyceum.delete(&format!("/v1/consents/{id}")).await;
    assert_eq!(r.status, 404);
    let listed = anker.get("/v1/consents").await.json();
    assert_eq!(listed["consents"][0]["consent_id"], id);

    // A refused message is logged for the certificate's partner.
    let r = anker
        .request("POST", "/v1/messages", &spoof, Some(p1_no_flow()))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "no-policy");
    assert_eq!(refusals_logged(&gw, "cbs-het-anker", "no-policy").await, 1);
    let entries = gw.log_entries().await;
    assert!(entries
        .iter()
        .filter(|(e, _)| e.event != "policy-loaded")
        .all(|(e, _)| e.partner == "cbs-het-anker"));
    // The inbox a spoofed header names stays out of reach.
    let r = anker.request("GET", "/v1/inbox", &spoof, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["messages"], json!([]));
    assert_nothing_delivered(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_one_partner_while_others_keep_working() {
    let mut opts = GatewayOptions::new(Backend::Sqlite);
    opts.server_extra = "header_timeout_secs = 60".into();
    opts.extra_config = "[limits]\nmax_connections_per_partner = 3".into();
    let gw = Gateway::start_with(opts);
    let linde = gw.client("obs-de-linde");
    let others = [
        gw.client("lyceum-zuid"),
        gw.client("cbs-het-anker"),
        gw.client("wijkteam-noord"),
    ];
    let mut baseline = Vec::new();
    for c in &others {
        let t = Instant::now();
        assert_eq!(c.get("/v1/inbox").await.status, 200);
        baseline.push(t.elapsed());
    }

    // Three slow-loris connections: TLS done, headers never finished.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = linde.tls().await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, b"GET /v1/inbox HTTP/1.1\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = linde.try_request("GET", "/v1/inbox", &[], None).await;
    assert!(
        r.is_err(),
        "a fourth connection was served: {:?}",
        r.map(|r| r.status)
    );
    let mut during = Vec::new();
    for _ in 0..5 {
        for c in &others {
            let t = Instant::now();
            let r = c.get("/v1/inbox").await;
            assert_eq!(r.status, 200, "{}", r.text());
            during.push(t.elapsed());
        }
    }
    eprintln!("other partners' latency: before {baseline:?}, with the cap reached {during:?}");
    let (_, metrics) = gw.ops_get("/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("too-many-connections") && !l.ends_with(" 0")),
        "the refusal is not counted: {metrics}"
    );

    // Closing one frees its slot.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match linde.try_request("GET", "/v1/inbox", &[], None).await {
            Ok(r) => {
                assert_eq!(r.status, 200);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "slot never released: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_nothing_delivered(&gw).await;
}

// ---------------------------------------------------------------------------------------------------------------
// JSON and domain rules

/// (case, body, expected status, expected code).
fn json_and_domain_cases() -> Vec<(&'static str, Vec<u8>, u16, &'static str)> {
    let text = String::from_utf8(example("P1")).unwrap();
    let mut deep = String::new();
    for _ in 0..100 {
        deep.push_str("{\"a\":");
    }
    deep.push('1');
    for _ in 0..100 {
        deep.push('}');
    }
    let mut invalid_utf8 = text.clone().into_bytes();
    let at = text.find("M. Visser").unwrap() + 3;
    invalid_utf8[at] = 0xff;
    let mut count_as_string = example_json("P7");
    count_as_string["data"]["cellen"][0]["aantal"] = json!("12");
    let mut aggregate = example_json("P7");
    aggregate["data"]["cellen"][0]["pgn"] = json!("628194821");
    aggregate["data"]["cellen"][0]["achternaam"] = json!("Jansen");
    vec![
        (
            "nesting depth 100",
            p1_with(|v| v["data"]["extra"] = serde_json::from_str(&deep).unwrap()),
            400,
            "too-deep",
        ),
        (
            "duplicate top-level key",
            text.replacen(
                "\"to\": \"lyceum-zuid\",",
                "\"to\": \"lyceum-zuid\", \"to\": \"wijkteam-noord\",",
                1,
            )
            .into_bytes(),
            400,
            "duplicate-key",
        ),
        (
            "duplicate nested key",
            text.replacen(
                "\"roepnaam\": \"Sanne\",",
                "\"roepnaam\": \"Sanne\", \"roepnaam\": \"S\",",
                1,
            )
            .into_bytes(),
            400,
            "duplicate-key",
        ),
        ("invalid UTF-8", invalid_utf8, 400, "invalid-utf8"),
        (
            "lone leading surrogate",
            text.replacen("M. Visser", "M. \\ud800Visser", 1)
                .into_bytes(),
            400,
            "malformed-json",
        ),
        (
            "lone trailing surrogate",
            text.replacen("M. Visser", "M. \\udc00Visser", 1)
                .into_bytes(),
            400,
            "malformed-json",
        ),
        (
            "receiver as a number",
            p1_with(|v| v["to"] = json!(5)),
            422,
            "invalid-envelope",
        ),
        (
            "PGN as a number",
            p1_with(|v| v["subject"]["pgn"] = json!(628194821)),
            422,
            "invalid-subject",
        ),
        (
            "unknown envelope key",
            p1_with(|v| v["cc"] = json!("wijkteam-noord")),
            400,
            "unknown-envelope-key",
        ),
        (
            "bad PGN checksum",
            p1_with(|v| v["subject"]["pgn"] = json!("123456789")),
            422,
            "invalid-subject-id",
        ),
        (
            "unknown receiver",
            p1_with(|v| v["to"] = json!("school-die-niet-bestaat")),
            422,
            "unknown-receiver",
        ),
        ("purpose of no flow", p1_no_flow(), 403, "no-policy"),
        (
            "aggregate with a count as a string",
            serde_json::to_vec(&count_as_string).unwrap(),
            422,
            "invalid-aggregate",
        ),
        (
            "aggregate with person-level fields",
            serde_json::to_vec(&aggregate).unwrap(),
            422,
            "person-level-in-aggregate",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_domain_violations_are_refused_logged_and_never_delivered() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        for (case, body, status, code) in json_and_domain_cases() {
            let sender = if case.starts_with("aggregate") {
                "leerplicht-gemeente"
            } else {
                "obs-de-linde"
            };
            let c = gw.client(sender);
            let entries_before = gw.log_entries().await.len();
            let r = c.post("/v1/messages", &body).await;
            let got = r.code();
            assert_eq!(
                (r.status, got.as_str()),
                (status, code),
                "{case}: {}",
                r.text()
            );
            eprintln!("{backend:?} {case}: {} {got}", r.status);
            // Exactly one new entry: the refusal, for the certificate's partner, with the problem's code.
            let entries = gw.log_entries().await;
            assert_eq!(entries.len(), entries_before + 1, "{case}");
            let (last, decoded) = entries.last().unwrap();
            assert_eq!(
                (
                    last.event.as_str(),
                    last.partner.as_str(),
                    last.outcome.as_str()
                ),
                ("message-refused", sender, got.as_str()),
                "{case}"
            );
            assert!(!decoded.cert_fingerprint.is_empty());
        }
        assert_nothing_delivered(&gw).await;
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
    }
}
