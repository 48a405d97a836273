//! Push delivery over real mutual TLS: the real gateway binary POSTs each message for a push partner to a local HTTPS
//! receiver (its own test CA, requiring the gateway's client certificate from `certs-example`), which refuses the
//! connection, hangs, answers 503 and accepts as each test scripts it, and keeps a dedup table by `Idempotency-Key`.
//! On SQLite and PostgreSQL:
//! - a P1 sent with a `traceparent` arrives under the same trace id and transaction id, after refusals, a timeout and
//!   a 503, accepted once, logged by exactly one `message-fetched` entry (as the push, naming the receiver's server
//!   certificate); a recall while the push may have reached the receiver is refused; the pull inbox still works;
//! - kill -9 while the receiver holds an accepted request: after the restart the gateway POSTs the same message with
//!   the same key again, the receiver accepts it once (a duplicate the second time), the log has one fetch entry;
//! - a recall, a "niet voor ons" report and a pull fetch stop the push at once; a consent withdrawal strips the push as
//!   it strips a pull fetch; after `max_attempts` the push gives up and the message waits in the pull inbox;
//! - two instances on one PostgreSQL database share the queue and push each message once; each delivered part of a
//!   kerngroep case is pushed once;
//! - no `CANARY-` value in the gateway's stderr or metrics.

mod common;

use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use ketenpoort::audit::entry::{EventKind, LogEntry};
use rustls::pki_types::pem::PemObject;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const TRANSACTION: &str = "01890a5d-ac96-774b-bcce-b302099a8057";

/// What the receiver does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    /// Never answers (the gateway's response timeout ends it).
    Hang,
    Status(u16),
    /// 200; a key seen before is a duplicate, answered 200 again without accepting it twice.
    Accept,
    /// Accepts (into the dedup table), then never answers.
    AcceptThenHang,
}

#[derive(Debug, Clone)]
struct Seen {
    key: String,
    traceparent: String,
    transaction: String,
    body: Value,
    act: Act,
}

#[derive(Default)]
struct State {
    script: VecDeque<Act>,
    default: Option<Act>,
    requests: Vec<Seen>,
    /// The dedup table: key -> times accepted as new (must never exceed 1) and times answered as a duplicate.
    accepted: HashMap<String, (u32, u32)>,
}

/// A partner's push endpoint: an HTTPS server on 127.0.0.1 with a certificate of its own test CA.
struct Receiver {
    port: u16,
    dir: TempDir,
    server_der: Vec<u8>,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<Mutex<State>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    /// A receiver that does not listen yet (connections to its port are refused); `default` answers every request
    /// the script does not cover.
    fn new(default: Act) -> Receiver {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType,
        };
        let dir = TempDir::new("kp-push-");
        let mut ca = CertificateParams::default();
        ca.distinguished_name
            .push(DnType::CommonName, "push receiver test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("receiver-ca.crt"), ca.pem()).unwrap();
        let mut server = CertificateParams::default();
        server
            .distinguished_name
            .push(DnType::CommonName, "push receiver");
        server.subject_alt_names = vec![
            SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
            SanType::DnsName("localhost".try_into().unwrap()),
        ];
        let key = KeyPair::generate().unwrap();
        let cert = server.signed_by(&key, &ca).unwrap();
        let server_der = cert.der().to_vec();

        // The gateway must show a client certificate of the example CA (its `gateway-client.crt`).
        let mut roots = rustls::RootCertStore::empty();
        let ca_pem = std::fs::read(certs_dir().join("ca.crt")).unwrap();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca_pem) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Receiver {
            port,
            dir,
            server_der,
            tls: Arc::new(tls),
            state: Arc::new(Mutex::new(State {
                default: Some(default),
                ..State::default()
            })),
            task: None,
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/ketenpoort/push", self.port)
    }

    fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("receiver-ca.crt")
    }

    fn script(&self, acts: &[Act]) {
        self.state.lock().unwrap().script.extend(acts);
    }

    fn set_default(&self, act: Act) {
        self.state.lock().unwrap().default = Some(act);
    }

    /// Starts accepting connections on its port.
    async fn listen(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.clone());
        let state = self.state.clone();
        self.task = Some(tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = state.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| handle(req, state.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        }));
    }

    fn requests_for(&self, key: &str) -> Vec<Seen> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|s| s.key == key)
            .cloned()
            .collect()
    }

    /// (times accepted as new, times answered as a duplicate) of one key.
    fn accepted(&self, key: &str) -> (u32, u32) {
        self.state
            .lock()
            .unwrap()
            .accepted
            .get(key)
            .copied()
            .unwrap_or((0, 0))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    state: Arc<Mutex<State>>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (key, traceparent, transaction) = (
        header("idempotency-key"),
        header("traceparent"),
        header("fsc-transaction-id"),
    );
    let json_type = header("content-type") == "application/json";
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let act = {
        let mut s = state.lock().unwrap();
        let act = s.script.pop_front().or(s.default).unwrap();
        s.requests.push(Seen {
            key: key.clone(),
            traceparent,
            transaction,
            body,
            act,
        });
        if matches!(act, Act::Accept | Act::AcceptThenHang) && json_type {
            let e = s.accepted.entry(key).or_default();
            if e.0 == 0 {
                e.0 = 1;
            } else {
                e.1 += 1;
            }
        }
        act
    };
    let status = match act {
        Act::Hang | Act::AcceptThenHang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            500
        }
        Act::Status(s) => s,
        Act::Accept => 200,
    };
    Ok(hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"ok\":true}")))
        .unwrap())
}

/// `certs-example/partners.toml` with a push endpoint for each of `partners`.
fn partners_with_push(
    dir: &std::path::Path,
    receiver: &Receiver,
    partners: &[&str],
) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string(certs_dir().join("partners.toml")).unwrap();
    for p in partners {
        let line = format!("id = \"{p}\"\n");
        assert!(text.contains(&line), "{p} in partners.toml");
        text = text.replacen(
            &line,
            &format!(
                "{line}push = {{ url = \"{}\", ca = \"{}\" }}\n",
                receiver.url(),
                receiver.ca().display()
            ),
            1,
        );
    }
    let path = dir.join("partners.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn push_config(max_attempts: u32, response_timeout_ms: u64) -> String {
    format!(
        r#"
[push]
client_cert = "{certs}/gateway-client.crt"
client_key = "{certs}/gateway-client.key"
max_attempts = {max_attempts}
backoff_base_ms = 100
backoff_max_ms = 400
connect_timeout_ms = 1000
response_timeout_ms = {response_timeout_ms}
poll_ms = 50
"#,
        certs = certs_dir().display()
    )
}

fn start(
    backend: Backend,
    receiver: &Receiver,
    partners: &[&str],
    config: String,
) -> (Gateway, TempDir) {
    let dir = TempDir::new("kp-push-partners-");
    let mut opts = GatewayOptions::new(backend);
    opts.partners = Some(partners_with_push(dir.path(), receiver, partners));
    opts.extra_config = config;
    (Gateway::start_with(opts), dir)
}

/// Polls `cond` until it holds (panics after 60 s with `what`).
async fn until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !cond().await {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn outbox_item(sender: &Client, id: &str) -> Value {
    let r = sender.get(&format!("/v1/outbox/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    v.get("message").cloned().unwrap_or(v)
}

async fn fetched_entries(gw: &Gateway, id: &str) -> Vec<LogEntry> {
    gw.log_entries()
        .await
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.event() == EventKind::MessageFetched && e.message_id.as_deref() == Some(id))
        .collect()
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in metrics"))
}

fn no_canaries(gw: &Gateway) {
    let canaries = canaries();
    assert!(!canaries.is_empty());
    assert_absent(gw.stderr().as_bytes(), &canaries, "stderr");
    assert_absent(gw.ops_get("/metrics").1.as_bytes(), &canaries, "metrics");
}

async fn send_p1(school: &Client) -> String {
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let r = school
        .request(
            "POST",
            "/v1/messages",
            &[
                ("traceparent", &traceparent),
                ("fsc-transaction-id", TRANSACTION),
            ],
            Some(example("P1")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["message_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_p1_is_pushed_after_refusal_timeout_and_503_once_under_the_senders_trace() {
    for backend in backends() {
        let mut receiver = Receiver::new(Act::Accept);
        let (gw, _partners) = start(backend, &receiver, &["lyceum-zuid"], push_config(50, 1500));
        let school = gw.client("obs-de-linde");
        let id = send_p1(&school).await;

        // Nobody listens: the connection is refused, and tried again.
        until("a refused attempt", async || {
            let push = outbox_item(&school, &id).await["push"].clone();
            push["last_outcome"] == "connect-failed" && push["attempts"].as_i64() >= Some(2)
        })
        .await;
        assert_eq!(outbox_item(&school, &id).await["status"], "waiting");

        receiver.script(&[Act::Hang, Act::Status(503)]);
        receiver.listen().await;
        until("the hanging attempt", async || {
            !receiver.requests_for(&id).is_empty()
        })
        .await;
        // The request may have reached the receiver: no recall now.
        let r = school
            .post_json(
                &format!("/v1/outbox/{id}/recall"),
                &json!({"reason": "onjuiste-inhoud"}),
            )
            .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (409, "push-in-doubt"),
            "{}",
            r.text()
        );

        until("accepted", async || receiver.accepted(&id).0 == 1).await;
        until("recorded as fetched", async || {
            outbox_item(&school, &id).await["status"] == "fetched"
        })
        .await;
        let seen = receiver.requests_for(&id);
        let acts: Vec<Act> = seen.iter().map(|s| s.act).collect();
        assert_eq!(
            &acts[..3],
            &[Act::Hang, Act::Status(503), Act::Accept],
            "{acts:?}"
        );
        assert_eq!(
            receiver.accepted(&id),
            (1, 0),
            "accepted once, no second POST after the 2xx"
        );
        let accepted = seen.iter().find(|s| s.act == Act::Accept).unwrap();
        for s in &seen {
            let parts: Vec<&str> = s.traceparent.split('-').collect();
            assert_eq!(
                (parts[0], parts[1], parts[3]),
                ("00", TRACE, "01"),
                "{}",
                s.traceparent
            );
            assert_ne!(parts[2], PARENT, "the push is a span of its own");
            assert_eq!(s.transaction, TRANSACTION);
            assert_eq!(s.body["message_id"], id.as_str());
        }
        // The body is the inbox item of a fetch.
        let body = &accepted.body;
        assert_eq!(body["from"], "obs-de-linde");
        assert_eq!(body["type"], example_json("P1")["type"]);
        assert_eq!(body["redelivery"], false);
        assert!(
            body["data"].is_object() && body["disclosure"]["seq"].is_u64(),
            "{body}"
        );
        assert!(body["trace"]["traceparent"]
            .as_str()
            .unwrap()
            .contains(TRACE));

        // One fetch entry: the push, under the push's span, naming the certificate the message went to.
        let fetched = fetched_entries(&gw, &id).await;
        assert_eq!(fetched.len(), 1, "{fetched:?}");
        let f = &fetched[0];
        assert_eq!(f.detail.as_deref(), Some("push"));
        assert_eq!(f.partner, "lyceum-zuid");
        assert_eq!(f.flow_id.as_deref(), Some("P1"));
        let t = f.trace.as_ref().unwrap();
        assert_eq!(t.trace_id, TRACE);
        assert_eq!(t.transaction_id, TRANSACTION);
        assert!(
            accepted.traceparent.contains(&t.span_id),
            "{}",
            accepted.traceparent
        );
        assert_eq!(
            f.cert_fingerprint,
            hex::encode(ring::digest::digest(
                &ring::digest::SHA256,
                &receiver.server_der
            ))
        );

        // The pull inbox keeps working: the message is there, as a redelivery, with the same content.
        let inbox = gw.client("lyceum-zuid").inbox().await;
        let pulled = inbox
            .iter()
            .find(|m| m["message_id"] == id.as_str())
            .expect("in the inbox");
        assert_eq!(pulled["redelivery"], true);
        assert_eq!(pulled["data"], body["data"]);
        assert_eq!(pulled["disclosure"], body["disclosure"]);

        let metrics = gw.ops_get("/metrics").1;
        assert_eq!(
            metric(&metrics, "ketenpoort_pushes_total{outcome=\"delivered\"}"),
            1.0
        );
        assert!(
            metric(&metrics, "ketenpoort_pushes_total{outcome=\"retry\"}") >= 4.0,
            "{metrics}"
        );
        assert_eq!(metric(&metrics, "ketenpoort_push_queue_depth"), 0.0);
        assert_eq!(
            metric(&metrics, "ketenpoort_push_oldest_waiting_seconds"),
            0.0
        );

        // Issue 28's "done when": the same exchange under the same trace id in the Logboek Dataverwerkingen export
        // and the NEN 7513 view as in the receiver's push request, with no value and no pupil number in either.
        let pgn = example_json("P1")["subject"]["pgn"]
            .as_str()
            .unwrap()
            .to_owned();
        let fg = gw.client("fg-operator");
        let ldv = fg.get("/v1/audit/export?format=ldv").await;
        assert_eq!(ldv.status, 200, "{}", ldv.text());
        let nen = fg.get("/v1/audit/disclosures?format=nen7513").await;
        assert_eq!(nen.status, 200, "{}", nen.text());
        for (name, r) in [("the LDV export", &ldv), ("the NEN 7513 view", &nen)] {
            assert_absent(&r.body, &canaries(), name);
            assert_absent(&r.body, std::slice::from_ref(&pgn), name);
        }
        let ldv_traces: Vec<String> = ldv
            .text()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["trace_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert!(
            ldv_traces.iter().filter(|t| *t == TRACE).count() >= 2,
            "the disclosure and the push's fetch under the sender's trace: {ldv_traces:?}"
        );
        let nen_records = nen.json()["records"].as_array().unwrap().clone();
        for event in ["message-disclosed", "message-fetched"] {
            assert!(
                nen_records.iter().any(|x| x["trace_id"] == TRACE
                    && x["transactie_id"] == TRANSACTION
                    && x["gebeurtenis"] == event),
                "{event} under the trace in the NEN 7513 view: {nen_records:?}"
            );
        }
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
        no_canaries(&gw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_while_the_receiver_holds_the_push_then_it_is_delivered_exactly_once() {
    for backend in backends() {
        let mut receiver = Receiver::new(Act::Accept);
        receiver.script(&[Act::Status(503), Act::AcceptThenHang]);
        receiver.listen().await;
        let (gw, _partners) = start(
            backend,
            &receiver,
            &["lyceum-zuid"],
            push_config(50, 30_000),
        );
        let school = gw.client("obs-de-linde");
        let id = send_p1(&school).await;
        until("accepted, answer withheld", async || {
            receiver.accepted(&id).0 == 1
        })
        .await;
        assert!(
            fetched_entries(&gw, &id).await.is_empty(),
            "nothing logged before the 2xx"
        );

        let (gw, _) = gw.crash_restart();
        let school = gw.client("obs-de-linde");
        until("recorded as fetched after the restart", async || {
            outbox_item(&school, &id).await["status"] == "fetched"
        })
        .await;
        let (new, duplicates) = receiver.accepted(&id);
        assert_eq!(new, 1, "the receiver accepted the message once");
        assert!(
            duplicates >= 1,
            "the same key was POSTed again after the crash"
        );
        assert!(receiver.requests_for(&id).iter().all(|s| s.key == id));
        assert_eq!(fetched_entries(&gw, &id).await.len(), 1, "one fetch entry");
        let metrics = gw.ops_get("/metrics").1;
        assert_eq!(metric(&metrics, "ketenpoort_push_queue_depth"), 0.0);
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
        no_canaries(&gw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recall_a_niet_voor_ons_report_and_a_pull_stop_the_push_at_once() {
    for backend in backends() {
        let mut receiver = Receiver::new(Act::Status(503));
        receiver.listen().await;
        let (gw, _partners) = start(
            backend,
            &receiver,
            &["lyceum-zuid"],
            push_config(1000, 1500),
        );
        let school = gw.client("obs-de-linde");
        let vo = gw.client("lyceum-zuid");
        let recalled = send_p1(&school).await;
        let reported = send_p1(&school).await;
        let pulled = send_p1(&school).await;
        until("all tried", async || {
            [&recalled, &reported, &pulled]
                .iter()
                .all(|id| receiver.requests_for(id).len() >= 2)
        })
        .await;

        // The recall wins between two attempts (during one it is refused as push-in-doubt; a 503 is no doubt).
        let mut recall = None;
        until("recalled", async || {
            let r = school
                .post_json(
                    &format!("/v1/outbox/{recalled}/recall"),
                    &json!({"reason": "onjuiste-inhoud"}),
                )
                .await;
            if r.status == 200 {
                recall = Some(receiver.requests_for(&recalled).len());
                return true;
            }
            assert_eq!(
                (r.status, r.code().as_str()),
                (409, "push-in-doubt"),
                "{}",
                r.text()
            );
            false
        })
        .await;
        let r = vo
            .post_json(
                &format!("/v1/inbox/{reported}/misaddressed"),
                &json!({"reason": "verkeerde-leerling", "copies_deleted": true}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let reported_at = receiver.requests_for(&reported).len();
        // The receiver pulls what is left: the push of that message is moot and ends.
        let inbox = vo.inbox().await;
        assert_eq!(inbox.len(), 1, "{inbox:?}");
        assert_eq!(inbox[0]["message_id"], pulled.as_str());
        until("the pulled message's push ended", async || {
            outbox_item(&school, &pulled).await["push"].is_null()
        })
        .await;
        let pulled_at = receiver.requests_for(&pulled).len();

        // From now on the receiver accepts: a new message arrives, the stopped ones never do.
        receiver.set_default(Act::Accept);
        let control = send_p1(&school).await;
        until("the control message accepted", async || {
            receiver.accepted(&control).0 == 1
        })
        .await;
        until("the control message recorded", async || {
            outbox_item(&school, &control).await["status"] == "fetched"
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            receiver.requests_for(&recalled).len(),
            recall.unwrap(),
            "no push after the recall"
        );
        // An attempt already in flight when the report came may still end; none starts after it.
        assert!(receiver.requests_for(&reported).len() <= reported_at + 1);
        assert!(receiver.requests_for(&pulled).len() <= pulled_at + 1);
        assert_eq!(receiver.accepted(&pulled), (0, 0));
        assert_eq!(
            fetched_entries(&gw, &pulled).await.len(),
            1,
            "the pull's own fetch entry only"
        );
        assert_eq!(receiver.accepted(&recalled), (0, 0));
        assert_eq!(receiver.accepted(&reported), (0, 0));
        assert!(fetched_entries(&gw, &recalled).await.is_empty());
        assert!(fetched_entries(&gw, &reported).await.is_empty());
        assert_eq!(outbox_item(&school, &recalled).await["status"], "recalled");
        assert_eq!(
            outbox_item(&school, &reported).await["status"],
            "misaddressed"
        );
        assert!(
            outbox_item(&school, &recalled).await["push"].is_null(),
            "the queue row ended with the recall"
        );
        let metrics = gw.ops_get("/metrics").1;
        assert_eq!(metric(&metrics, "ketenpoort_push_queue_depth"), 0.0);
        no_canaries(&gw);
    }
}

fn has_path(v: &Value, path: &[&str]) -> bool {
    let mut cur = v;
    for p in path {
        match cur.get(*p) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consent_withdrawal_strips_the_push_as_it_strips_a_pull_fetch() {
    for backend in backends() {
        let mut receiver = Receiver::new(Act::Status(503));
        receiver.listen().await;
        let (gw, _partners) = start(
            backend,
            &receiver,
            &["wijkteam-noord"],
            push_config(1000, 1500),
        );
        let school = gw.client("obs-de-linde");
        // The P4 example's pupil and birth date.
        let consent_id = register_consent(
            &gw,
            "obs-de-linde",
            "121547280",
            "vroegsignalering",
            "wijkteam-noord",
            "2016-04-22",
        )
        .await;
        let r = school.post("/v1/messages", &example("P4")).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["message_id"].as_str().unwrap().to_owned();
        until("a refused push", async || {
            !receiver.requests_for(&id).is_empty()
        })
        .await;
        let before = receiver.requests_for(&id)[0].body.clone();
        assert!(
            has_path(&before["data"], &["leerling", "voornamen"]),
            "{before}"
        );

        let r = school.delete(&format!("/v1/consents/{consent_id}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        receiver.set_default(Act::Accept);
        until("accepted", async || receiver.accepted(&id).0 == 1).await;
        until("recorded", async || {
            outbox_item(&school, &id).await["status"] != "waiting"
        })
        .await;
        let pushed = receiver
            .requests_for(&id)
            .into_iter()
            .find(|s| s.act == Act::Accept)
            .unwrap()
            .body;
        assert!(
            !has_path(&pushed["data"], &["leerling", "voornamen"]),
            "{pushed}"
        );
        assert!(
            !has_path(&pushed["data"], &["zorg", "omschrijving"]),
            "{pushed}"
        );
        let fetched = fetched_entries(&gw, &id).await;
        assert_eq!(fetched.len(), 1, "{fetched:?}");
        assert!(!fetched[0].withheld.is_empty());
        assert!(
            fetched[0]
                .withheld
                .iter()
                .all(|w| w.reason == "consent-withdrawn"),
            "{:?}",
            fetched[0].withheld
        );
        let item = outbox_item(&school, &id).await;
        assert_eq!(item["status"], "consent-withdrawn", "{item}");
        assert!(item["consent_fields_removed"].as_i64().unwrap() > 0);
        no_canaries(&gw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_max_attempts_the_push_gives_up_and_the_message_waits_in_the_pull_inbox() {
    for backend in backends() {
        let mut receiver = Receiver::new(Act::Status(503));
        receiver.listen().await;
        let (gw, _partners) = start(backend, &receiver, &["lyceum-zuid"], push_config(3, 1500));
        let school = gw.client("obs-de-linde");
        let id = send_p1(&school).await;
        until("given up", async || {
            outbox_item(&school, &id).await["push"]["state"] == "gave-up"
        })
        .await;
        let item = outbox_item(&school, &id).await;
        assert_eq!(item["push"]["attempts"], 3, "{item}");
        assert_eq!(item["push"]["last_outcome"], "status-503");
        assert_eq!(item["status"], "waiting");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            receiver.requests_for(&id).len(),
            3,
            "no attempt after giving up"
        );
        let metrics = gw.ops_get("/metrics").1;
        assert_eq!(
            metric(&metrics, "ketenpoort_pushes_total{outcome=\"gave-up\"}"),
            1.0
        );
        assert_eq!(metric(&metrics, "ketenpoort_push_gave_up"), 1.0);
        assert!(fetched_entries(&gw, &id).await.is_empty());

        let inbox = gw.client("lyceum-zuid").inbox().await;
        let m = inbox
            .iter()
            .find(|m| m["message_id"] == id.as_str())
            .expect("in the pull inbox");
        assert_eq!(m["redelivery"], false);
        assert_eq!(fetched_entries(&gw, &id).await.len(), 1);
        assert_eq!(outbox_item(&school, &id).await["status"], "fetched");
        no_canaries(&gw);
    }
}

#[test]
fn a_push_endpoint_must_be_https_with_a_readable_ca_and_known_keys() {
    let dir = TempDir::new("kp-push-bad-");
    let base = std::fs::read_to_string(certs_dir().join("partners.toml")).unwrap();
    let ca = certs_dir().join("ca.crt");
    for (push, expected) in [
        (
            format!(
                "push = {{ url = \"http://127.0.0.1:9/x\", ca = \"{}\" }}",
                ca.display()
            ),
            "https://",
        ),
        (
            "push = { url = \"https://127.0.0.1:9/x\", ca = \"/nonexistent/ca.crt\" }".to_owned(),
            "push ca",
        ),
        (
            format!(
                "push = {{ url = \"https://127.0.0.1:9/x\", ca = \"{}\", verify = false }}",
                ca.display()
            ),
            "verify",
        ),
    ] {
        let text = base.replacen(
            "id = \"lyceum-zuid\"\n",
            &format!("id = \"lyceum-zuid\"\n{push}\n"),
            1,
        );
        let path = dir.path().join("partners.toml");
        std::fs::write(&path, text).unwrap();
        let mut opts = GatewayOptions::new(Backend::Sqlite);
        opts.partners = Some(path);
        opts.extra_config = push_config(3, 1000);
        let err = match Gateway::try_start_with(opts) {
            Ok(_) => panic!("started with {push}"),
            Err(e) => e,
        };
        assert!(err.contains(expected), "{push}: {err}");
    }
}

/// Two instances on one PostgreSQL database share the queue: every message is leased by one of them at a time, so each
/// is POSTed once per attempt, accepted once and logged as fetched once, whichever instance sent or pushed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_postgresql_push_each_message_once() {
    if !backends().contains(&Backend::Postgres) {
        return;
    }
    let mut receiver = Receiver::new(Act::Accept);
    receiver.script(&[Act::Status(503); 6]);
    receiver.listen().await;
    let (a, partners) = start(
        Backend::Postgres,
        &receiver,
        &["lyceum-zuid"],
        push_config(50, 1500),
    );
    let mut opts = GatewayOptions::new(Backend::Postgres);
    opts.database_url = Some(a.database_url.clone());
    let keys = a.dir.path().join("keys");
    opts.key_dir = Some(keys.clone());
    opts.storage_extra = format!(
        "signing_key = \"{}\"",
        keys.join("instance-b.key").display()
    );
    opts.partners = Some(partners.path().join("partners.toml"));
    opts.extra_config = push_config(50, 1500);
    let b = Gateway::start_with(opts);
    let mut ids = Vec::new();
    for i in 0..16 {
        let via = if i % 2 == 0 { &a } else { &b };
        ids.push(send_p1(&via.client("obs-de-linde")).await);
    }
    let school = a.client("obs-de-linde");
    for id in &ids {
        until("accepted and recorded", async || {
            receiver.accepted(id).0 == 1 && outbox_item(&school, id).await["status"] == "fetched"
        })
        .await;
    }
    let entries = a.log_entries().await;
    for id in &ids {
        assert_eq!(
            receiver.accepted(id),
            (1, 0),
            "{id}: accepted once, never POSTed again"
        );
        let fetched = entries
            .iter()
            .filter(|(_, e)| {
                e.event() == EventKind::MessageFetched && e.message_id.as_deref() == Some(id)
            })
            .count();
        assert_eq!(fetched, 1, "{id}");
    }
    let delivered = |gw: &Gateway| {
        metric(
            &gw.ops_get("/metrics").1,
            "ketenpoort_pushes_total{outcome=\"delivered\"}",
        )
    };
    let (by_a, by_b) = (delivered(&a), delivered(&b));
    assert_eq!(by_a + by_b, ids.len() as f64);
    println!("pushes delivered by instance A: {by_a}, by instance B: {by_b}");
}

/// A kerngroep case (P13): each recipient's part that is delivered is queued in the case's one commit and pushed to
/// that recipient's endpoint once; a recipient refused its part gets no push.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_delivered_part_of_a_kerngroep_case_is_pushed_once() {
    for backend in backends() {
        let mut receiver = Receiver::new(Act::Accept);
        receiver.listen().await;
        let recipients = ["leerplicht-gemeente", "swv-vo-zuid", "wijkteam-noord"];
        let (gw, _partners) = start(backend, &receiver, &recipients, push_config(50, 1500));
        // No consent for the wijkteam: its part is refused, the other two are delivered.
        let r = gw
            .client("lyceum-zuid")
            .post("/v1/messages", &example("P13"))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let sent = r.json();
        let mut delivered = Vec::new();
        for part in sent["recipients"].as_array().unwrap() {
            match part["message_id"].as_str() {
                Some(id) => {
                    delivered.push((part["to"].as_str().unwrap().to_owned(), id.to_owned()))
                }
                None => assert_eq!(part["to"], "wijkteam-noord", "{sent}"),
            }
        }
        assert_eq!(delivered.len(), 2, "{sent}");
        let school = gw.client("lyceum-zuid");
        for (_, id) in &delivered {
            until("the part pushed and recorded", async || {
                receiver.accepted(id).0 == 1
                    && outbox_item(&school, id).await["status"] == "fetched"
            })
            .await;
        }
        for (to, id) in &delivered {
            assert_eq!(receiver.accepted(id), (1, 0));
            let fetched = fetched_entries(&gw, id).await;
            assert_eq!(fetched.len(), 1, "{fetched:?}");
            assert_eq!(&fetched[0].partner, to);
            assert_eq!(receiver.requests_for(id)[0].body["from"], "lyceum-zuid");
        }
        let all = receiver.state.lock().unwrap().requests.len();
        assert_eq!(all, 2, "no push for the refused part");
        no_canaries(&gw);
    }
}
