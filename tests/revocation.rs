//! Revocation without a restart: the CRL file is re-read when it changes on disk, on SIGHUP and on
//! `POST /crl/reload`; a newly revoked partner is refused on its next request, also on a keep-alive connection
//! opened before the revocation; an expired CRL refuses every partner unless configured otherwise.
//! The CRLs are made in the test, signed with the example CA's key.

mod common;

use common::pki::{write_crl, write_valid_crl};
use common::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// A gateway whose CRL is a copy in its own directory (so the test may rewrite it).
fn gateway_with_own_crl(tls_extra: &str) -> (Gateway, PathBuf, TempDir) {
    let dir = TempDir::new("kp-crl-");
    let crl = dir.path().join("crl.pem");
    write_valid_crl(&crl, &[]);
    let mut opts = GatewayOptions::new(Backend::Sqlite);
    opts.crl = Some(crl.clone());
    opts.tls_extra = tls_extra.to_owned();
    (Gateway::start_with(opts), crl, dir)
}

/// Sends `GET /v1/inbox` on `conn` until the answer is no longer 200 (at most 30 s); returns that answer.
async fn until_refused(conn: &mut Conn) -> Response {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = conn
            .request("GET", "/v1/inbox", &[], None)
            .await
            .expect("the keep-alive connection stays usable");
        if r.status != 200 || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_revoked(r: &Response) {
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.code(), "certificate-revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_changed_on_disk_is_picked_up_and_refuses_an_open_keep_alive_connection() {
    let (gw, crl, _dir) = gateway_with_own_crl("crl_poll_secs = 1");
    let anker = gw.client("cbs-het-anker");
    let mut conn = anker.connect().await.unwrap();
    let mut other = gw.client("obs-de-linde").connect().await.unwrap();
    assert_eq!(
        conn.request("GET", "/v1/inbox", &[], None)
            .await
            .unwrap()
            .status,
        200
    );

    write_valid_crl(&crl, &["cbs-het-anker"]);
    let written = Instant::now();
    let r = until_refused(&mut conn).await;
    assert_revoked(&r);
    eprintln!(
        "revoked on disk -> refused on the open connection after {:?} (crl_poll_secs = 1)",
        written.elapsed()
    );
    // Still the same connection, and everyone else is unaffected.
    assert!(!conn.is_closed());
    let r = other.request("GET", "/v1/inbox", &[], None).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // A new connection is refused too, per request: the handshake's verifier keeps the CRL it started with, so the
    // handshake completes and the request is answered 403. Any other transport result (a failed handshake, a
    // connection closed without an answer) is not what RELIABILITY.md describes and fails the test.
    let r = anker
        .try_request("GET", "/v1/inbox", &[], None)
        .await
        .unwrap_or_else(|e| panic!("a new connection got no answer: {e}"));
    assert_revoked(&r);
    let r = anker
        .try_request("POST", "/v1/messages", &[], Some(example("P1").to_vec()))
        .await
        .unwrap_or_else(|e| panic!("a new connection got no answer: {e}"));
    assert_revoked(&r);
    assert!(
        gw.wait_for_stderr("revocation list changed on disk", 1),
        "no reload was logged"
    );

    // Lifting the revocation is picked up the same way.
    write_valid_crl(&crl, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let r = conn.request("GET", "/v1/inbox", &[], None).await.unwrap();
        if r.status == 200 || Instant::now() > deadline {
            break r.status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 200);
    assert!(gw.client("lyceum-zuid").inbox().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_crl_without_a_restart() {
    // Polling off: only the signal can bring the new list in.
    let (gw, crl, _dir) = gateway_with_own_crl("crl_poll_secs = 0");
    let mut conn = gw.client("cbs-het-anker").connect().await.unwrap();
    assert_eq!(
        conn.request("GET", "/v1/inbox", &[], None)
            .await
            .unwrap()
            .status,
        200
    );
    write_valid_crl(&crl, &["cbs-het-anker"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = conn.request("GET", "/v1/inbox", &[], None).await.unwrap();
    assert_eq!(r.status, 200, "the CRL was re-read although polling is off");

    let pid = gw.child.id();
    unsafe_kill(pid, "HUP");
    let r = until_refused(&mut conn).await;
    assert_revoked(&r);
    assert_eq!(gw.child.id(), pid);
    assert_eq!(gw.ops_get("/healthz").0, 200, "the gateway kept running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_reload_applies_to_the_next_request_and_a_bad_crl_leaves_the_old_one() {
    let (gw, crl, _dir) = gateway_with_own_crl("crl_poll_secs = 0");
    let mut anker = gw.client("cbs-het-anker").connect().await.unwrap();
    let mut linde = gw.client("obs-de-linde").connect().await.unwrap();
    write_valid_crl(&crl, &["cbs-het-anker"]);
    let (status, body) = gw.ops_post("/crl/reload");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["revoked"], 2, "{body}");
    assert_revoked(&anker.request("GET", "/v1/inbox", &[], None).await.unwrap());
    assert_eq!(
        linde
            .request("GET", "/v1/inbox", &[], None)
            .await
            .unwrap()
            .status,
        200
    );

    // A damaged file is refused whole; the list in force stays.
    std::fs::write(
        &crl,
        "-----BEGIN X509 CRL-----\nnot a crl\n-----END X509 CRL-----\n",
    )
    .unwrap();
    let (status, body) = gw.ops_post("/crl/reload");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("crl-invalid"), "{body}");
    assert_revoked(&anker.request("GET", "/v1/inbox", &[], None).await.unwrap());
    assert_eq!(
        linde
            .request("GET", "/v1/inbox", &[], None)
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_crl_refuses_every_partner_with_503_unless_configured_otherwise() {
    // Refusing is the default.
    let (gw, crl, _dir) = gateway_with_own_crl("crl_poll_secs = 0");
    let mut conn = gw.client("obs-de-linde").connect().await.unwrap();
    assert_eq!(
        conn.request("GET", "/v1/inbox", &[], None)
            .await
            .unwrap()
            .status,
        200
    );
    write_crl(
        &crl,
        &["revoked-school"],
        OffsetDateTime::now_utc() - time::Duration::hours(1),
    );
    assert_eq!(gw.ops_post("/crl/reload").0, 200);
    for partner in ["obs-de-linde", "lyceum-zuid", "fg-operator"] {
        let r = gw.client(partner).get("/v1/inbox").await;
        assert_eq!(r.status, 503, "{partner}: {}", r.text());
        assert_eq!(r.code(), "crl-expired");
        assert!(r.headers.get("retry-after").is_some(), "no Retry-After");
    }
    let r = conn
        .request("POST", "/v1/messages", &[], Some(example("P1")))
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.code(), "crl-expired");
    // A renewed CRL lets everyone in again.
    write_valid_crl(&crl, &[]);
    assert_eq!(gw.ops_post("/crl/reload").0, 200);
    assert_eq!(
        conn.request("GET", "/v1/inbox", &[], None)
            .await
            .unwrap()
            .status,
        200
    );
    assert!(gw.client("lyceum-zuid").inbox().await.is_empty());
    drop(gw);

    // An operator may choose to keep admitting partners on an expired CRL (still checking its serials).
    let dir = TempDir::new("kp-crl-");
    let crl = dir.path().join("crl.pem");
    write_crl(
        &crl,
        &["revoked-school", "cbs-het-anker"],
        OffsetDateTime::now_utc() - time::Duration::hours(1),
    );
    let mut opts = GatewayOptions::new(Backend::Sqlite);
    opts.crl = Some(crl);
    opts.tls_extra = "refuse_on_expired_crl = false".into();
    let gw = Gateway::start_with(opts);
    assert_eq!(gw.client("obs-de-linde").get("/v1/inbox").await.status, 200);
    // Revoked at start-up: the handshake's verifier refuses it already.
    let r = gw
        .client("cbs-het-anker")
        .try_request("GET", "/v1/inbox", &[], None)
        .await;
    match r {
        Ok(r) => assert_revoked(&r),
        Err(e) => assert!(
            gw.wait_for_stderr("TLS handshake refused", 1),
            "{e}: not refused in TLS"
        ),
    }
}
