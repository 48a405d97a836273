//! The load generator: hyper 1 HTTP/1.1 clients over rustls with the example partners' client certificates.
//!
//! Modes: closed loop at maximum rate over keep-alive connections, open loop at a fixed rate with latency measured
//! from each request's scheduled send time (so a stalled server cannot hide queueing: coordinated omission is
//! corrected), one new mTLS connection per request (no session resumption), an inbox drain (fetch + ack), and idle
//! connections held open. Latencies go into HdrHistograms in microseconds.

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// A client certificate of one example partner, as a rustls client configuration.
#[derive(Clone)]
pub struct Identity {
    keep_alive: Arc<ClientConfig>,
    /// Same certificate, session resumption off: every connection does a full handshake.
    fresh: Arc<ClientConfig>,
}

impl Identity {
    pub fn load(certs: &Path, partner: &str) -> anyhow::Result<Identity> {
        let ca = std::fs::read(certs.join("ca.crt")).context("ca.crt")?;
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&ca) {
            roots.add(c?)?;
        }
        let chain = CertificateDer::pem_file_iter(certs.join(format!("{partner}.crt")))?
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(certs.join(format!("{partner}.key")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut fresh = cfg.clone();
        fresh.resumption = rustls::client::Resumption::disabled();
        Ok(Identity {
            keep_alive: Arc::new(cfg),
            fresh: Arc::new(fresh),
        })
    }
}

/// One request, sent again and again.
#[derive(Clone)]
pub struct Spec {
    pub method: Method,
    pub path: String,
    pub body: Bytes,
    /// Statuses counted as success.
    pub expect: &'static [u16],
}

impl Spec {
    pub fn post(path: &str, body: Bytes, expect: &'static [u16]) -> Spec {
        Spec {
            method: Method::POST,
            path: path.to_owned(),
            body,
            expect,
        }
    }
    pub fn get(path: &str, expect: &'static [u16]) -> Spec {
        Spec {
            method: Method::GET,
            path: path.to_owned(),
            body: Bytes::new(),
            expect,
        }
    }
}

pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr, id: &Identity, resume: bool) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let cfg = if resume {
            id.keep_alive.clone()
        } else {
            id.fresh.clone()
        };
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender })
    }

    pub async fn send(&mut self, spec: &Spec, close: bool) -> anyhow::Result<(u16, Bytes)> {
        self.sender.ready().await?;
        let mut req = Request::builder()
            .method(spec.method.clone())
            .uri(spec.path.as_str())
            .header(hyper::header::HOST, "localhost");
        if !spec.body.is_empty() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if close {
            req = req.header(hyper::header::CONNECTION, "close");
        }
        let resp = self
            .sender
            .send_request(req.body(Full::new(spec.body.clone()))?)
            .await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// What one run measured, for the requests completed inside the measurement window.
pub struct Outcome {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub latency_us: Histogram<u64>,
    pub window: Duration,
}

impl Outcome {
    fn new(window: Duration) -> Outcome {
        Outcome {
            ok: 0,
            errors: 0,
            first_error: None,
            latency_us: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
            window,
        }
    }

    /// Adds the requests of another measured window (rounds of one measurement, or one window's workers).
    pub fn merge(&mut self, other: Outcome) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latency_us
            .add(&other.latency_us)
            .expect("same histogram bounds");
    }

    fn record(&mut self, started: Instant, result: &anyhow::Result<(u16, Bytes)>, spec: &Spec) {
        let us = started.elapsed().as_micros().max(1) as u64;
        self.latency_us.saturating_record(us);
        match result {
            Ok((status, _)) if spec.expect.contains(status) => self.ok += 1,
            Ok((status, body)) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    // Problem bodies carry codes and rule names only, never payload values.
                    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                    self.first_error = Some(format!("status {status}: {text}"));
                }
            }
            Err(e) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(e.to_string());
                }
            }
        }
    }

    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

/// The measurement window: requests started before `measure_from` warm up and are not counted.
#[derive(Clone, Copy)]
pub struct Window {
    pub measure_from: Instant,
    pub until: Instant,
}

impl Window {
    pub fn starting_in(delay: Duration, warmup: Duration, duration: Duration) -> Window {
        let measure_from = Instant::now() + delay + warmup;
        Window {
            measure_from,
            until: measure_from + duration,
        }
    }
    pub fn duration(&self) -> Duration {
        self.until - self.measure_from
    }
}

async fn open_all(addr: SocketAddr, ids: &[Identity], conns: usize) -> anyhow::Result<Vec<Conn>> {
    let mut tasks = Vec::with_capacity(conns);
    for i in 0..conns {
        let id = ids[i % ids.len()].clone();
        tasks.push(tokio::spawn(
            async move { Conn::open(addr, &id, true).await },
        ));
    }
    let mut out = Vec::with_capacity(conns);
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

/// When a keep-alive worker sends its next request.
#[derive(Clone)]
enum Schedule {
    /// As soon as the previous answer arrived (closed loop).
    AsSoonAsAnswered,
    /// Request `i` is due at `start + i × interval`, `i` shared by all workers (open loop).
    Fixed {
        start: Instant,
        interval: Duration,
        next: Arc<AtomicU64>,
    },
}

impl Schedule {
    /// The time the next request is due (and its latency counts from), or `None` once the window is over.
    async fn next_due(&self, until: Instant) -> Option<Instant> {
        let due = match self {
            Schedule::AsSoonAsAnswered => Instant::now(),
            Schedule::Fixed {
                start,
                interval,
                next,
            } => *start + interval.mul_f64(next.fetch_add(1, Ordering::Relaxed) as f64),
        };
        if due >= until {
            return None;
        }
        if matches!(self, Schedule::Fixed { .. }) {
            tokio::time::sleep_until(due.into()).await;
        }
        Some(due)
    }
}

/// Runs one worker per keep-alive connection until the window is over.
async fn keep_alive_workers(
    conns: Vec<Conn>,
    spec: Spec,
    schedule: Schedule,
    window: Window,
) -> anyhow::Result<Outcome> {
    let spec = Arc::new(spec);
    let mut tasks = Vec::new();
    for mut conn in conns {
        let spec = spec.clone();
        let schedule = schedule.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::new(window.duration());
            while let Some(due) = schedule.next_due(window.until).await {
                let r = conn.send(&spec, false).await;
                let failed = r.is_err();
                if due >= window.measure_from {
                    out.record(due, &r, &spec);
                }
                if failed {
                    break;
                }
            }
            out
        }));
    }
    collect(tasks, window).await
}

/// Keep-alive connections, each sending its next request as soon as the previous answer arrived.
pub async fn closed_loop(
    addr: SocketAddr,
    ids: &[Identity],
    spec: Spec,
    conns: usize,
    window: Window,
) -> anyhow::Result<Outcome> {
    let opened = open_all(addr, ids, conns).await?;
    keep_alive_workers(opened, spec, Schedule::AsSoonAsAnswered, window).await
}

/// A fixed request rate spread over `conns` keep-alive connections; latency counts from the scheduled time.
pub async fn open_loop(
    addr: SocketAddr,
    ids: &[Identity],
    spec: Spec,
    rate: f64,
    conns: usize,
    window: Window,
) -> anyhow::Result<Outcome> {
    if rate <= 0.0 {
        bail!("rate must be positive");
    }
    let opened = open_all(addr, ids, conns).await?;
    // The schedule starts where the warm-up starts; the window keeps its length.
    let schedule = Schedule::Fixed {
        start: Instant::now(),
        interval: Duration::from_secs_f64(1.0 / rate),
        next: Arc::new(AtomicU64::new(0)),
    };
    keep_alive_workers(opened, spec, schedule, window).await
}

/// Every request on a new TCP + TLS connection with a full handshake (no resumption), then `Connection: close`.
pub async fn new_connections(
    addr: SocketAddr,
    ids: &[Identity],
    spec: Spec,
    workers: usize,
    window: Window,
) -> anyhow::Result<Outcome> {
    let spec = Arc::new(spec);
    let mut tasks = Vec::new();
    for i in 0..workers {
        let spec = spec.clone();
        let id = ids[i % ids.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::new(window.duration());
            loop {
                let t0 = Instant::now();
                if t0 >= window.until {
                    break;
                }
                let r = match Conn::open(addr, &id, false).await {
                    Ok(mut conn) => conn.send(&spec, true).await,
                    Err(e) => Err(e),
                };
                if t0 >= window.measure_from {
                    out.record(t0, &r, &spec);
                }
            }
            out
        }));
    }
    collect(tasks, window).await
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<Outcome>>,
    window: Window,
) -> anyhow::Result<Outcome> {
    let mut all = Outcome::new(window.duration());
    for t in tasks {
        all.merge(t.await?);
    }
    Ok(all)
}

/// The receiver drains its inbox: one connection fetches a page, `ack_conns` connections acknowledge it.
/// Returns (fetch outcome, ack outcome); the ack outcome's `ok` counts messages fetched and acknowledged.
pub async fn drain_inbox(
    addr: SocketAddr,
    receiver: &Identity,
    page: usize,
    ack_conns: usize,
    window: Window,
) -> anyhow::Result<(Outcome, Outcome)> {
    let mut fetcher = Conn::open(addr, receiver, true).await?;
    let mut ackers = open_all(addr, std::slice::from_ref(receiver), ack_conns).await?;
    let mut fetches = Outcome::new(window.duration());
    let mut acks = Outcome::new(window.duration());
    let fetch = Spec::get(&format!("/v1/inbox?limit={page}"), &[200]);
    loop {
        let t0 = Instant::now();
        if t0 >= window.until {
            break;
        }
        let r = fetcher.send(&fetch, false).await;
        let ids: Vec<String> = match &r {
            Ok((200, body)) => {
                let v: serde_json::Value = serde_json::from_slice(body)?;
                v["messages"]
                    .as_array()
                    .ok_or_else(|| anyhow!("inbox without messages"))?
                    .iter()
                    .filter_map(|m| m["message_id"].as_str().map(str::to_owned))
                    .collect()
            }
            _ => Vec::new(),
        };
        if t0 >= window.measure_from {
            fetches.record(t0, &r, &fetch);
        }
        if ids.is_empty() {
            bail!(
                "the inbox ran empty or failed: {:?}",
                r.map(|(s, _)| s).ok()
            );
        }
        // Acknowledge the page concurrently over the ack connections.
        let chunk = ids.len().div_ceil(ackers.len());
        let mut handles = Vec::new();
        for part in ids.chunks(chunk).map(|c| c.to_vec()) {
            let mut conn = ackers.pop().expect("one connection per chunk");
            handles.push(tokio::spawn(async move {
                let mut results = Vec::new();
                for id in part {
                    let spec = Spec::post(&format!("/v1/inbox/{id}/ack"), Bytes::new(), &[200]);
                    let t = Instant::now();
                    let r = conn.send(&spec, false).await;
                    results.push((t, r, spec));
                }
                (conn, results)
            }));
        }
        let mut back = Vec::new();
        for h in handles {
            let (conn, results) = h.await?;
            back.push(conn);
            for (t, r, spec) in results {
                if t >= window.measure_from {
                    acks.record(t, &r, &spec);
                }
            }
        }
        // Connections that got no chunk this round were not moved out.
        back.append(&mut ackers);
        ackers = back;
    }
    Ok((fetches, acks))
}

/// Opens `n` mTLS connections (one request each, so the server has set each up fully) and keeps them open.
pub async fn hold_idle(
    addr: SocketAddr,
    ids: &[Identity],
    spec: &Spec,
    n: usize,
) -> anyhow::Result<Vec<Conn>> {
    let mut held = Vec::with_capacity(n);
    // In steps of 50 so the accept queue never overflows.
    for start in (0..n).step_by(50) {
        let mut tasks = Vec::new();
        for i in start..(start + 50).min(n) {
            let id = ids[i % ids.len()].clone();
            let spec = spec.clone();
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn::open(addr, &id, false).await?;
                let (status, _) = conn.send(&spec, false).await?;
                if !spec.expect.contains(&status) {
                    bail!("idle connection set-up answered {status}");
                }
                Ok::<_, anyhow::Error>(conn)
            }));
        }
        for t in tasks {
            held.push(t.await??);
        }
    }
    Ok(held)
}
