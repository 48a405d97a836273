//! End to end through the real binary: mutual TLS with the example certificates, send → inbox → ack,
//! refusals, idempotency, and the canary values of ../shared/examples never reaching a receiver, the log,
//! the database or the tracing output. Every test runs on SQLite and, when configured, on PostgreSQL.

mod common;

use common::*;
use ketenpoort::refusal::ProblemCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn paths(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

fn withheld_fields(v: &Value) -> Vec<String> {
    v["withheld"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["field"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_partner_is_admitted_and_refused_certificates_are_not() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        for partner in [
            "obs-de-linde",
            "cbs-het-anker",
            "lyceum-zuid",
            "swv-vo-zuid",
            "leerplicht-gemeente",
            "wijkteam-noord",
            "fg-lyceum-zuid",
            "fg-obs-de-linde",
            "fg-operator",
            "so-de-brug",
            "mbo-college-zuid",
            "leerplicht-buurgemeente",
            "swv-po-noord",
            "jgz-ggd-zuid",
            "veilig-thuis-zuid",
        ] {
            let r = gw.client(partner).get("/v1/inbox").await;
            assert_eq!(r.status, 200, "{partner}: {}", r.text());
            assert_eq!(r.json()["messages"], json!([]));
        }
        // Refused in the TLS handshake: no request ever reaches the API.
        for partner in [
            "rogue-school",
            "expired-school",
            "no-eku-school",
            "revoked-school",
        ] {
            let r = gw
                .client(partner)
                .try_request("GET", "/v1/inbox", &[], None)
                .await;
            assert!(
                r.is_err(),
                "{partner} was admitted: {:?}",
                r.map(|r| r.status)
            );
        }
        let r = Client::without_certificate(&gw.partner_addr)
            .try_request("GET", "/v1/inbox", &[], None)
            .await;
        assert!(r.is_err(), "a client without certificate was admitted");
        // A valid certificate that names no partner.
        let r = gw.client("unknown-school").get("/v1/inbox").await;
        assert_eq!(r.status, 403);
        assert_eq!(r.code(), "unknown-partner");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_comes_from_the_certificate_never_from_headers() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let school = gw.client("obs-de-linde");
        let sent = school.post("/v1/messages", &example("P1")).await;
        assert_eq!(sent.status, 201, "{}", sent.text());
        let id = sent.json()["message_id"].as_str().unwrap().to_owned();
        // cbs-het-anker pretends to be lyceum-zuid in every header a naive gateway might read.
        let spoof = [
            ("x-partner-id", "lyceum-zuid"),
            (
                "x-ssl-client-s-dn",
                "CN=lyceum-zuid,serialNumber=00000001800000000003",
            ),
            ("x-forwarded-client-cert", "Subject=\"CN=lyceum-zuid\""),
            ("x-client-oin", "00000001800000000003"),
        ];
        let other = gw.client("cbs-het-anker");
        let r = other.request("GET", "/v1/inbox", &spoof, None).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json()["messages"],
            json!([]),
            "spoofed headers exposed another inbox"
        );
        let r = other
            .request("POST", &format!("/v1/inbox/{id}/ack"), &spoof, None)
            .await;
        assert_eq!(r.status, 404);
        assert_eq!(r.code(), "not-found");
        // The real receiver still has it.
        assert_eq!(gw.client("lyceum-zuid").inbox().await.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p1_send_fetch_ack_delivers_only_allowed_fields_and_logs_every_step() {
    let canaries = canaries();
    for backend in backends() {
        let gw = Gateway::start(backend);
        let sender = gw.client("obs-de-linde");
        let receiver = gw.client("lyceum-zuid");

        let r = sender.post("/v1/messages", &example("P1")).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let sent = r.json();
        assert_absent(&r.body, &canaries, "the 201 response");
        let delivered = paths(&sent["delivered"]);
        let withheld = withheld_fields(&sent);
        assert!(
            delivered.iter().any(|p| p == "leerling.achternaam"),
            "{delivered:?}"
        );
        assert!(
            delivered.iter().any(|p| p.starts_with("toetsen[0]")),
            "{delivered:?}"
        );
        for blocked in [
            "jeugdhulp.inhoud",
            "justitie.halt_verwijzing",
            "thuissituatie.details",
        ] {
            assert!(
                withheld.iter().any(|w| w == blocked),
                "{blocked} not withheld: {withheld:?}"
            );
            assert!(!delivered.iter().any(|d| d == blocked));
        }
        assert!(sent["disclosure"]["seq"].as_u64().is_some());
        assert_eq!(sent["disclosure"]["hash"].as_str().unwrap().len(), 64);
        let id = sent["message_id"].as_str().unwrap().to_owned();

        // The sender cannot read its own sent message from an inbox; the receiver gets exactly one.
        assert!(sender.inbox().await.is_empty());
        let inbox = receiver.inbox().await;
        assert_eq!(inbox.len(), 1);
        let m = &inbox[0];
        assert_eq!(m["message_id"], id.as_str());
        assert_eq!(m["from"], "obs-de-linde");
        assert_eq!(m["type"], "onderwijskundig-rapport");
        assert_eq!(m["purpose"], "overstap-po-vo");
        assert_eq!(m["data"]["leerling"]["achternaam"], "Jansen");
        assert!(m["data"]
            .get("jeugdhulp")
            .is_none_or(|j| j.get("inhoud").is_none()));
        assert!(m["data"].get("justitie").is_none());
        assert_eq!(m["disclosure"], sent["disclosure"]);
        let text = serde_json::to_vec(&inbox).unwrap();
        assert_absent(&text, &canaries, "the receiver's inbox");

        // Ack purges the payload; a second ack is a 404, and the inbox is empty.
        let r = receiver.post(&format!("/v1/inbox/{id}/ack"), b"").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["acknowledged"], true);
        let r = receiver.post(&format!("/v1/inbox/{id}/ack"), b"").await;
        assert_eq!(r.status, 404);
        assert!(receiver.inbox().await.is_empty());

        // The log verifies, and nothing of the payload's secrets is anywhere in the database or the traces.
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
        assert!(out.contains("verified"), "{out}");
        assert_absent(&gw.database_bytes(), &canaries, "the database");
        assert_absent(gw.stderr().as_bytes(), &canaries, "the tracing output");
        // The raw PGN never reaches the log or the traces either (only a keyed pseudonym).
        assert_absent(
            gw.stderr().as_bytes(),
            &["628194821".to_owned()],
            "the tracing output",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p3_and_p6_deliver_allowed_fields_and_keep_canaries_out() {
    let canaries = canaries();
    for backend in backends() {
        let gw = Gateway::start(backend);
        let r = gw
            .client("lyceum-zuid")
            .post("/v1/messages", &example("P3"))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let sent = r.json();
        let withheld = withheld_fields(&sent);
        assert!(
            withheld.iter().any(|w| w.starts_with("toetsen[0]")),
            "{withheld:?}"
        );
        assert!(
            withheld.iter().any(|w| w.starts_with("diagnoses[0]")),
            "{withheld:?}"
        );
        let inbox = gw.client("leerplicht-gemeente").inbox().await;
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0]["data"]["verzuim"]["soort"], "16-uur-4-weken");
        assert_eq!(
            inbox[0]["data"]["verzuim"]["duo_meldingsnummer"],
            example_json("P3")["data"]["verzuim"]["duo_meldingsnummer"]
        );
        // No PGN to the leerplicht office: the DUO meldingsnummer identifies the melding (UAVG art. 46).
        assert!(inbox[0]["subject"].is_null(), "{}", inbox[0]["subject"]);
        assert!(
            !serde_json::to_string(&inbox).unwrap().contains("507529170"),
            "the PGN reached the leerplicht office"
        );
        assert!(inbox[0]["data"].get("toetsen").is_none());
        assert_absent(&serde_json::to_vec(&inbox).unwrap(), &canaries, "P3 inbox");
        let p3 = sent["message_id"].as_str().unwrap();

        let r = gw
            .client("leerplicht-gemeente")
            .post("/v1/messages", &reply("P6", p3))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let inbox = gw.client("lyceum-zuid").inbox().await;
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0]["data"]["status"], "in-behandeling");
        assert!(inbox[0]["data"].get("toelichting_vrij").is_none());
        assert!(inbox[0]["data"].get("justitie").is_none());
        assert_absent(&serde_json::to_vec(&inbox).unwrap(), &canaries, "P6 inbox");
        assert_absent(&gw.database_bytes(), &canaries, "the database");
        assert_absent(gw.stderr().as_bytes(), &canaries, "the tracing output");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_resend_returns_the_first_result_once() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let c = gw.client("obs-de-linde");
        let body = example("P1");
        let h = [("idempotency-key", "overdracht-2026-0001")];
        let first = c
            .request("POST", "/v1/messages", &h, Some(body.clone()))
            .await;
        assert_eq!(first.status, 201, "{}", first.text());
        let again = c
            .request("POST", "/v1/messages", &h, Some(body.clone()))
            .await;
        assert_eq!(again.status, 200, "{}", again.text());
        assert_eq!(again.json()["message_id"], first.json()["message_id"]);
        assert_eq!(again.json()["disclosure"], first.json()["disclosure"]);
        let mut other: Value = serde_json::from_slice(&body).unwrap();
        other["justification"] = json!("Een andere toelichting, ander bericht, zelfde sleutel.");
        let clash = c
            .request(
                "POST",
                "/v1/messages",
                &h,
                Some(serde_json::to_vec(&other).unwrap()),
            )
            .await;
        assert_eq!(clash.status, 409);
        assert_eq!(clash.code(), "idempotency-key-reused");
        // Another partner may use the same key for its own message.
        let p3 = gw
            .client("lyceum-zuid")
            .request("POST", "/v1/messages", &h, Some(example("P3")))
            .await;
        assert_eq!(p3.status, 201, "{}", p3.text());
        assert_eq!(
            gw.client("lyceum-zuid").inbox().await.len(),
            1,
            "delivered twice"
        );
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
    }
}

/// ARCHITECTURE.md: every refusal of a partner's request from the body on is logged once, by `exchange::send::refuse`
/// (messages) or `exchange::consent::record` (consents): the 409s of an Idempotency-Key, a header that is not
/// ASCII, a body over the limit. Identity and quota refusals are not (tests/quotas.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_after_identity_is_logged_once_with_its_code() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let c = gw.client("obs-de-linde");
        let body = example("P1");
        let h = [("idempotency-key", "overdracht-2026-0002")];
        let first = c
            .request("POST", "/v1/messages", &h, Some(body.clone()))
            .await;
        assert_eq!(first.status, 201, "{}", first.text());
        let mut other: Value = serde_json::from_slice(&body).unwrap();
        other["justification"] = json!("Een andere toelichting, ander bericht, zelfde sleutel.");
        let other = serde_json::to_vec(&other).unwrap();
        let big = vec![b' '; 9 * 1024 * 1024];
        // (path, headers, body, status, code, event)
        type Case<'a> = (
            &'a str,
            Vec<(&'a str, &'a str)>,
            Vec<u8>,
            u16,
            &'a str,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (
                "/v1/messages",
                h.to_vec(),
                other,
                409,
                "idempotency-key-reused",
                "message-refused",
            ),
            (
                "/v1/messages",
                vec![("idempotency-key", "sleutel-\u{e9}")],
                body.clone(),
                400,
                "invalid-idempotency-key",
                "message-refused",
            ),
            (
                "/v1/messages",
                vec![],
                big.clone(),
                413,
                "body-too-large",
                "message-refused",
            ),
            (
                "/v1/consents",
                vec![],
                big,
                413,
                "body-too-large",
                "consent-refused",
            ),
        ];
        for (path, headers, body, status, code, event) in cases {
            let before = gw.log_entries().await.len();
            let r = c.request("POST", path, &headers, Some(body)).await;
            assert_eq!(
                (r.status, r.code().as_str()),
                (status, code),
                "{path}: {}",
                r.text()
            );
            let entries = gw.log_entries().await;
            let new: Vec<_> = entries[before..].iter().map(|(_, e)| e).collect();
            assert_eq!(new.len(), 1, "{code}: exactly one new entry, got {new:?}");
            assert_eq!(new[0].event.map(|k| k.as_str()), Some(event), "{code}");
            assert_eq!(new[0].outcome, code);
            assert_eq!(new[0].partner, "obs-de-linde");
        }
        assert_eq!(
            gw.client("lyceum-zuid").inbox().await.len(),
            1,
            "delivered once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_problem_json_with_stable_codes_and_nothing_is_delivered() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let c = gw.client("obs-de-linde");
        let p1 = example_json("P1");
        let mut cases: Vec<(Vec<u8>, u16, &str)> = vec![
            (
                b"{\"to\": \"lyceum-zuid\", \"to\": \"x\"}".to_vec(),
                400,
                "duplicate-key",
            ),
            (b"{not json".to_vec(), 400, "malformed-json"),
            (vec![0xff, 0xfe, b'{', b'}'], 400, "invalid-utf8"),
            (
                format!("{}{}", "[".repeat(40), "]".repeat(40)).into_bytes(),
                400,
                "too-deep",
            ),
        ];
        let mut unknown = p1.clone();
        unknown["cc"] = json!("wijkteam-noord");
        cases.push((
            serde_json::to_vec(&unknown).unwrap(),
            400,
            "unknown-envelope-key",
        ));
        let mut bad_pgn = p1.clone();
        bad_pgn["subject"] = json!({"pgn": "123456789"});
        cases.push((
            serde_json::to_vec(&bad_pgn).unwrap(),
            422,
            "invalid-subject-id",
        ));
        let mut no_flow = p1.clone();
        no_flow["purpose"] = json!("marketing");
        cases.push((serde_json::to_vec(&no_flow).unwrap(), 403, "no-policy"));
        let mut unknown_receiver = p1.clone();
        unknown_receiver["to"] = json!("school-die-niet-bestaat");
        cases.push((
            serde_json::to_vec(&unknown_receiver).unwrap(),
            422,
            "unknown-receiver",
        ));
        let mut wrong_direction = p1.clone();
        wrong_direction["to"] = json!("wijkteam-noord");
        cases.push((
            serde_json::to_vec(&wrong_direction).unwrap(),
            403,
            "no-policy",
        ));
        for (body, status, code) in cases {
            let r = c.post("/v1/messages", &body).await;
            assert_eq!(r.status, status, "{code}: {}", r.text());
            assert_eq!(r.code(), code);
            assert_eq!(r.json()["status"], status);
            assert!(!r.text().contains("123456789"), "the bad number was echoed");
        }
        // Too large: refused before the body is read in full.
        let big = vec![b' '; 9 * 1024 * 1024];
        let r = c.post("/v1/messages", &big).await;
        assert_eq!(r.status, 413);
        assert_eq!(r.code(), "body-too-large");
        for receiver in ["lyceum-zuid", "wijkteam-noord"] {
            assert!(
                gw.client(receiver).inbox().await.is_empty(),
                "{receiver} got a refused message"
            );
        }
        let (_, metrics) = gw.ops_get("/metrics");
        assert!(
            metrics.contains("ketenpoort_refusals_total{code=\"duplicate-key\"} 1"),
            "{metrics}"
        );
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
        // Refusals are in the log: 1 policy-loaded entry + one per refused message.
        assert!(out.contains(" 11 entries"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_listener_reports_health_readiness_and_metrics() {
    let gw = Gateway::start(Backend::Sqlite);
    assert_eq!(gw.ops_get("/healthz").0, 200);
    let (status, body) = gw.ops_get("/readyz");
    assert_eq!(status, 200, "{body}");
    let r = gw
        .client("obs-de-linde")
        .post("/v1/messages", &example("P1"))
        .await;
    assert_eq!(r.status, 201);
    let (_, metrics) = gw.ops_get("/metrics");
    assert!(
        metrics.contains("ketenpoort_requests_total{route=\"POST /v1/messages\",status=\"201\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ketenpoort_disclosures_total{flow=\"P1\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ketenpoort_log_append_seconds_total"),
        "{metrics}"
    );
    // The commit that made the 201 durable is in the latency histogram (start-up entries may be too).
    let committed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ketenpoort_log_commit_seconds_bucket{le=\"+Inf\"} "))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(committed >= 1, "{metrics}");
    assert!(
        metrics.contains(&format!("ketenpoort_log_commit_seconds_count {committed}")),
        "{metrics}"
    );
    assert_absent(metrics.as_bytes(), &canaries(), "metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_keeps_the_log_and_a_restart_continues_it() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let r = gw
            .client("obs-de-linde")
            .post("/v1/messages", &example("P1"))
            .await;
        assert_eq!(r.status, 201);
        let first_seq = r.json()["disclosure"]["seq"].as_u64().unwrap();
        let gw = gw.restart();
        let r = gw
            .client("obs-de-linde")
            .post("/v1/messages", &example("P1"))
            .await;
        assert_eq!(r.status, 201);
        assert!(r.json()["disclosure"]["seq"].as_u64().unwrap() > first_seq);
        assert_eq!(gw.client("lyceum-zuid").inbox().await.len(), 2);
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
    }
}

/// A P1 send written by hand on a TLS connection, with `Connection: close`, split in two: the headers and the
/// first half of the body, then the rest.
fn p1_request_parts() -> (Vec<u8>, Vec<u8>) {
    let body = example("P1");
    let mut first = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    let half = body.len() / 2;
    first.extend_from_slice(&body[..half]);
    (first, body[half..].to_vec())
}

/// What the gateway wrote on one connection: nothing at all (`Ok(None)`: no answer), or exactly one complete
/// HTTP/1.1 response (`Ok(Some((status, body)))`: a status line, headers, a Content-Length and that many body
/// bytes of JSON). Anything else — a truncated body, a torn header block, trailing bytes — is `Err`.
fn complete_response(bytes: &[u8]) -> Result<Option<(u16, Value)>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no complete header block: {text:?}"))?;
    let status: u16 = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line: {head:?}"))?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no Content-Length: {head:?}"))?;
    if body.len() != length {
        return Err(format!(
            "status {status}: Content-Length {length} but {} body bytes",
            body.len()
        ));
    }
    let json =
        serde_json::from_str(body).map_err(|e| format!("status {status}: body not JSON ({e})"))?;
    Ok(Some((status, json)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_sends_in_flight_answers_each_completely_and_every_201_survives_a_restart() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use tokio::io::AsyncWriteExt;
    const BURST: usize = 150;
    const SLOW: usize = 3;
    for backend in backends() {
        let mut gw = Gateway::start(backend);
        let (first, rest) = p1_request_parts();
        let client = Arc::new(gw.client("obs-de-linde"));

        // Requests certainly in flight at SIGTERM: headers and half of the body sent, the rest still to come.
        let mut slow = Vec::new();
        for _ in 0..SLOW {
            let mut tls = client.tls().await.unwrap();
            tls.write_all(&first).await.unwrap();
            tls.flush().await.unwrap();
            slow.push(tls);
        }
        // A burst of concurrent sends, each on its own connection, under way when the signal comes.
        let answered = Arc::new(AtomicUsize::new(0));
        let burst: Vec<_> = (0..BURST)
            .map(|_| {
                let client = client.clone();
                let answered = answered.clone();
                let whole: Vec<u8> = [first.clone(), rest.clone()].concat();
                tokio::spawn(async move {
                    let out = match client.tls().await {
                        // Refused at TCP or TLS: no answer.
                        Err(_) => Vec::new(),
                        Ok(tls) => {
                            raw_exchange(tls, &[&whole], Duration::ZERO, Duration::from_secs(30))
                                .await
                                .bytes
                        }
                    };
                    if !out.is_empty() {
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    (out, Instant::now())
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while answered.load(Ordering::SeqCst) < 5 {
            assert!(
                Instant::now() < deadline,
                "no sends answered: {}",
                gw.stderr()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let term_at = Instant::now();
        unsafe_kill(gw.child.id(), "TERM");
        // The in-flight requests finish their bodies after the signal.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut slow_results = Vec::new();
        for tls in slow {
            slow_results
                .push(raw_exchange(tls, &[&rest], Duration::ZERO, Duration::from_secs(30)).await);
        }
        let mut results = Vec::new();
        for t in burst {
            results.push(t.await.unwrap());
        }
        // The process exits by itself, successfully, within the grace period (5 s) and some slack.
        let exit_deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = gw.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < exit_deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "exit after SIGTERM: {status}\n{}",
            gw.stderr()
        );

        let mut created = BTreeSet::new();
        for (i, x) in slow_results.iter().enumerate() {
            let (status, body) = complete_response(&x.bytes)
                .unwrap_or_else(|e| panic!("in-flight send {i}: {e}"))
                .unwrap_or_else(|| panic!("in-flight send {i} got no answer"));
            assert_eq!(status, 201, "in-flight send {i}: {body}");
            created.insert(body["message_id"].as_str().unwrap().to_owned());
        }
        let (mut unanswered, mut after_term) = (0, 0);
        for (i, (bytes, at)) in results.iter().enumerate() {
            match complete_response(bytes).unwrap_or_else(|e| panic!("send {i}: {e}")) {
                None => unanswered += 1,
                Some((status, body)) => {
                    assert_eq!(status, 201, "send {i}: {body}");
                    assert!(body["disclosure"]["hash"].is_string(), "send {i}: {body}");
                    assert!(created.insert(body["message_id"].as_str().unwrap().to_owned()));
                    if *at > term_at {
                        after_term += 1;
                    }
                }
            }
        }
        eprintln!(
            "{backend:?}: {} of {BURST} burst sends answered ({after_term} after SIGTERM), {unanswered} refused",
            BURST - unanswered
        );

        // After a restart: every 201 is a disclosure in the log and a message in the inbox, and nothing was
        // delivered that was not answered.
        let gw = gw.restart();
        let disclosed: BTreeSet<String> = gw
            .log_entries()
            .await
            .iter()
            .filter(|(_, e)| e.event().as_str() == "message-disclosed")
            .filter_map(|(_, e)| e.message_id.clone())
            .collect();
        assert_eq!(disclosed, created, "the log's disclosures are not the 201s");
        let inbox: BTreeSet<String> = gw
            .client("lyceum-zuid")
            .inbox()
            .await
            .iter()
            .map(|m| m["message_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(inbox, created, "the inbox is not the 201s");
        let r = gw
            .client("obs-de-linde")
            .post("/v1/messages", &example("P1"))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
    }
}

/// DOMAIN.md *Identifiers*: an onderwijsnummer starts with 10 and its weighted sum leaves remainder 5 modulo 11; a
/// PGN is a BSN or an onderwijsnummer. The numbers are python-stdnum's (the vectors in `src/domain.rs`). The consent
/// registry applies the same rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onderwijsnummers_with_remainder_5_are_accepted_and_others_refused() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let school = gw.client("obs-de-linde");
        let p1 = example_json("P1");
        let with_subject = |subject: Value| {
            let mut m = p1.clone();
            m["subject"] = subject;
            serde_json::to_vec(&m).unwrap()
        };
        let accepted = [
            json!({"onderwijsnummer": "101222331"}),
            json!({"pgn": "104577776"}),
        ];
        for subject in &accepted {
            let r = school
                .post("/v1/messages", &with_subject(subject.clone()))
                .await;
            assert_eq!(r.status, 201, "{subject}: {}", r.text());
        }
        let refused = [
            ("onderwijsnummer", "101234562"), // remainder 7 (the old rule's test number)
            ("onderwijsnummer", "107533359"), // remainder 4 (passed the old rule)
            ("pgn", "101036774"),             // remainder 9, and no BSN
            ("onderwijsnummer", "211222337"), // remainder 5, but does not start with 10
            ("onderwijsnummer", "1012223310"), // 10 digits
        ];
        for (kind, number) in refused {
            let r = school
                .post("/v1/messages", &with_subject(json!({kind: number})))
                .await;
            assert_eq!(
                (r.status, r.code().as_str()),
                (422, "invalid-subject-id"),
                "{kind} {number}: {}",
                r.text()
            );
            assert!(!r.text().contains(number), "the number was echoed");
        }
        // P1 delivers the PGN as is (WPO 178a), as the sender named it.
        let inbox = gw.client("lyceum-zuid").inbox().await;
        let subjects: Vec<&Value> = inbox.iter().map(|m| &m["subject"]).collect();
        assert_eq!(subjects, accepted.iter().collect::<Vec<_>>());

        let consent = |subject: Value| {
            json!({
                "subject": subject,
                "purpose": "vroegsignalering",
                "recipient": "wijkteam-noord",
                "categories": ["*"],
                "given_by": "ouder",
                "evidence": "toestemmingsformulier 2026-11-01, leerlingdossier",
                "valid_from": "2026-01-01",
                "valid_until": "2030-07-31"
            })
        };
        let r = school
            .post_json(
                "/v1/consents",
                &consent(json!({"onderwijsnummer": "101222331"})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let r = school
            .post_json(
                "/v1/consents",
                &consent(json!({"onderwijsnummer": "101234562"})),
            )
            .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (422, "invalid-subject-id"),
            "{}",
            r.text()
        );
        assert!(!r.text().contains("101234562"), "the number was echoed");
        // The consent registered for the onderwijsnummer counts for a P4 that names the pupil by it as PGN.
        let mut p4 = example_json("P4");
        p4["subject"] = json!({"pgn": "101222331"});
        let r = school.post_json("/v1/messages", &p4).await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
}

/// DOMAIN.md: an implausible date refuses the whole message (422 `invalid-date`): nothing is delivered, the refusal
/// is logged once as `message-refused` with outcome `invalid-date`, and neither the answer nor the log nor the
/// traces carry the date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implausible_dates_are_refused_logged_and_never_delivered() {
    let canaries = canaries();
    let tomorrow = (time::OffsetDateTime::now_utc().date() + time::Duration::days(1))
        .format(time::macros::format_description!("[year]-[month]-[day]"))
        .unwrap();
    let cases = [
        ("/data/aanmelding/datum", "2099-01-01", "aanmelding.datum"),
        (
            "/data/leerling/geboortedatum",
            &tomorrow,
            "leerling.geboortedatum",
        ),
        ("/data/toetsen/0/datum", "1989-12-31", "toetsen[0].datum"),
    ];
    for backend in backends() {
        let gw = Gateway::start(backend);
        let school = gw.client("obs-de-linde");
        for (ptr, date, path) in cases {
            let mut p1 = example_json("P1");
            *p1.pointer_mut(ptr).unwrap() = json!(date);
            let before = gw.log_entries().await.len();
            let r = school.post_json("/v1/messages", &p1).await;
            assert_eq!(
                (r.status, r.code().as_str()),
                (422, "invalid-date"),
                "{path}: {}",
                r.text()
            );
            let detail = r.json()["detail"].as_str().unwrap().to_owned();
            assert!(detail.contains(&format!("`{path}`")), "{detail}");
            assert!(
                !r.text().contains(date),
                "the date was echoed: {}",
                r.text()
            );
            assert_absent(&r.body, &canaries, "the refusal");
            let entries = gw.log_entries().await;
            let new: Vec<_> = entries[before..].iter().map(|(_, e)| e).collect();
            assert_eq!(new.len(), 1, "{path}: exactly one new entry, got {new:?}");
            assert_eq!(new[0].event.map(|k| k.as_str()), Some("message-refused"));
            assert_eq!(new[0].outcome, "invalid-date");
            assert_eq!(new[0].flow_id.as_deref(), Some("P1"));
            assert_eq!(new[0].partner, "obs-de-linde");
        }
        assert!(gw.client("lyceum-zuid").inbox().await.is_empty());
        // The example as it is has plausible dates and goes.
        let r = school.post("/v1/messages", &example("P1")).await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(gw.client("lyceum-zuid").inbox().await.len(), 1);
        let dates = ["2099-01-01".to_owned(), "1989-12-31".to_owned()];
        assert_absent(&gw.database_bytes(), &dates, "the database");
        assert_absent(gw.stderr().as_bytes(), &dates, "the tracing output");
        assert_absent(&gw.database_bytes(), &canaries, "the database");
    }
}

/// The `code`s of problem documents the gateway can answer with: every `ProblemCode` (the one table of codes; the
/// type system keeps any other string out of a refusal) except the one that is only counted in metrics.
fn problem_codes_in_source() -> BTreeSet<String> {
    ProblemCode::ALL
        .iter()
        .filter(|c| **c != ProblemCode::TooManyConnections)
        .map(|c| c.as_str().to_owned())
        .collect()
}

/// In a YAML flow mapping (`{type: string, description: ...}`) an unquoted comma ends the value: the rest of the
/// sentence silently becomes a key of the schema. Every description there with a comma is quoted.
#[test]
fn openapi_descriptions_in_flow_mappings_with_a_comma_are_quoted() {
    let openapi = std::fs::read_to_string(root().join("openapi.yaml")).unwrap();
    let mut cut = Vec::new();
    for (n, line) in openapi.lines().enumerate() {
        let Some((before, value)) = line.split_once("description: ") else {
            continue;
        };
        if !before.contains('{') || value.starts_with(['\'', '"']) {
            continue;
        }
        // After a comma that ends the value comes the next key (`content: ...`); anything else is a cut sentence.
        let Some((_, rest)) = value.split_once(',') else {
            continue;
        };
        let rest = rest.trim_start();
        let key = rest.split(':').next().unwrap_or_default();
        let next_is_key = rest.contains(':')
            && !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-$'\"".contains(c));
        if !next_is_key {
            cut.push(format!("line {}: {}", n + 1, line.trim()));
        }
    }
    assert!(
        cut.is_empty(),
        "quote these descriptions:\n{}",
        cut.join("\n")
    );
}

#[test]
fn openapi_lists_every_problem_code_in_the_source() {
    let used = problem_codes_in_source();
    // The table holds codes from each kind of place.
    for known in [
        "duplicate-key",          // the envelope's codes
        "no-policy",              // the policy's codes
        "invalid-content-length", // the HTTP layer's body limits
        "unknown-partner",        // identity
        "invalid-consent",        // the consent registry
        "mailbox-busy",           // delivery
    ] {
        assert!(used.contains(known), "the table misses {known}: {used:?}");
    }
    let openapi = std::fs::read_to_string(root().join("openapi.yaml")).unwrap();
    let list = openapi
        .split_once("Stable code.")
        .and_then(|(_, rest)| rest.split_once("detail:"))
        .map(|(list, _)| list)
        .expect("the Problem schema's code description in openapi.yaml");
    let listed: BTreeSet<String> = list
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.contains('-') || ["internal"].contains(w))
        .map(str::to_owned)
        .collect();
    let missing: Vec<_> = used.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "openapi.yaml's problem code list misses {missing:?}"
    );
    // And nothing is listed that the gateway cannot answer with.
    let unknown: Vec<_> = listed
        .iter()
        .filter(|w| ProblemCode::parse(w).is_none())
        .collect();
    assert!(
        unknown.is_empty(),
        "openapi.yaml lists codes that are not ProblemCodes: {unknown:?}"
    );
    // The Problem schema's enum, which the contract test holds every answer to, is exactly the partner API's codes.
    let enumerated: BTreeSet<String> = list
        .split_once("enum: [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .expect("the Problem code's enum in openapi.yaml")
        .0
        .split(',')
        .map(|c| c.trim().to_owned())
        .collect();
    let partner_api: BTreeSet<String> = ProblemCode::ALL
        .iter()
        .filter(|c| c.is_partner_api())
        .map(|c| c.as_str().to_owned())
        .collect();
    assert_eq!(
        enumerated, partner_api,
        "openapi.yaml's Problem code enum is not the partner API's codes"
    );
}
