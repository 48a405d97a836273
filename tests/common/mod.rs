//! Test harness: starts the real `ketenpoort` binary on ports 0 with a fresh database and key directory, and
//! talks to it over real mutual TLS with the example certificates.
//!
//! Backends: SQLite always; PostgreSQL when `KETENPOORT_TEST_POSTGRES` holds a server URL
//! (e.g. `postgres://postgres@127.0.0.1:5432`). Each gateway gets its own database, dropped afterwards.
//! Outside programs (curl, PostgreSQL): missing ones are reported and skipped locally, and fail in CI (`CI` set to
//! any non-empty value, as CI services set it: `true`, `1`, `yes`, ...).
#![allow(dead_code)]

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn certs_dir() -> PathBuf {
    root().join("certs-example")
}

/// The example messages (`examples/`: P1, P2 and P7 as in `../shared/examples`, P3–P6 as in
/// `../shared/examples-corrected`, with receivers bound to the case).
pub fn examples_dir() -> PathBuf {
    root().join("examples")
}

/// An example reply (P5, P6) with its `in_reply_to` placeholder (`REPLACE-WITH-THE-P4-MESSAGE-ID` and the like)
/// replaced by the id of the message it answers.
pub fn reply(name: &str, answered: &str) -> Vec<u8> {
    let mut v = example_json(name);
    assert!(
        v["in_reply_to"]
            .as_str()
            .is_some_and(|p| p.starts_with("REPLACE-WITH-")),
        "{name} answers a message"
    );
    v["in_reply_to"] = Value::String(answered.to_owned());
    serde_json::to_vec(&v).unwrap()
}

/// `<examples_dir>/<name>-….json` as the JSON text partners send.
pub fn example(name: &str) -> Vec<u8> {
    let dir = examples_dir();
    let path = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        // `P1` is `P1-overstap-po-vo.json`, not `P10-…` or `P11-…`.
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('-'))
        })
        .unwrap_or_else(|| panic!("no example {name}"));
    std::fs::read(path).unwrap()
}

pub fn example_json(name: &str) -> Value {
    serde_json::from_slice(&example(name)).unwrap()
}

/// Every `CANARY-` string in the shared examples (the values that must never leave the sender).
pub fn canaries() -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(examples_dir()).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("CANARY-") {
            let tail = &rest[i..];
            let end = tail.find('"').unwrap_or(tail.len());
            out.push(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Whether a `CI` variable with this value means the tests run in CI: any non-empty value does (CI services set
/// `true`, `1` or their own name); unset or empty does not.
pub fn ci_value_means_ci(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}

/// Do the tests run in CI (where a missing outside program fails instead of being skipped)?
pub fn in_ci() -> bool {
    ci_value_means_ci(std::env::var("CI").ok().as_deref())
}

/// Is an outside program available? Locally a missing one is skipped with a notice; under CI it fails.
pub fn require_program(name: &str, why: &str) -> bool {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        if in_ci() {
            panic!("{name} is required in CI for: {why}");
        }
        eprintln!("SKIPPED (no {name} on this machine): {why}");
    }
    found
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backends to run a test against: SQLite, and PostgreSQL when configured (required under CI).
pub fn backends() -> Vec<Backend> {
    let mut v = vec![Backend::Sqlite];
    match std::env::var("KETENPOORT_TEST_POSTGRES") {
        Ok(u) if !u.is_empty() => v.push(Backend::Postgres),
        _ => {
            if in_ci() {
                panic!("KETENPOORT_TEST_POSTGRES must be set in CI (see .ci/run)");
            }
            eprintln!("SKIPPED PostgreSQL variant: KETENPOORT_TEST_POSTGRES is not set");
        }
    }
    v
}

pub mod pki;

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A PostgreSQL database created for one test and dropped afterwards.
pub struct PgDatabase {
    pub server: String,
    pub name: String,
}

impl PgDatabase {
    pub fn create() -> PgDatabase {
        let server = std::env::var("KETENPOORT_TEST_POSTGRES").expect("KETENPOORT_TEST_POSTGRES");
        let name = unique("kp_test_");
        psql(&server, &format!("CREATE DATABASE {name}"));
        PgDatabase { server, name }
    }
    pub fn url(&self) -> String {
        format!("{}/{}", self.server.trim_end_matches('/'), self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        psql(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Runs one SQL statement as the server's superuser, on its `postgres` database.
pub fn psql(server: &str, sql: &str) {
    let url = format!("{}/postgres", server.trim_end_matches('/'));
    let out = Command::new("psql")
        .args([url.as_str(), "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .expect("psql must be installed to run the PostgreSQL tests");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct GatewayOptions {
    pub backend: Backend,
    /// Extra TOML appended to the generated configuration.
    pub extra_config: String,
    pub policies: PathBuf,
    /// Use this database URL instead of a fresh one (e.g. a second instance on the same database).
    pub database_url: Option<String>,
    pub crl: Option<PathBuf>,
    /// Use this key directory instead of a fresh one (e.g. instances sharing payload and pseudonym keys).
    pub key_dir: Option<PathBuf>,
    /// Extra TOML lines inside `[storage]` (e.g. `signing_key = "..."`, `allow_non_durable = true`).
    pub storage_extra: String,
    /// A partners.toml to use instead of `certs-example/partners.toml`.
    pub partners: Option<PathBuf>,
    /// Extra lines in the `[server]` table (e.g. `header_timeout_secs = 1`).
    pub server_extra: String,
    /// Extra lines in the `[tls]` table (e.g. `crl_poll_secs = 1`).
    pub tls_extra: String,
}

impl GatewayOptions {
    pub fn new(backend: Backend) -> GatewayOptions {
        GatewayOptions {
            backend,
            extra_config: String::new(),
            policies: root().join("policies"),
            database_url: None,
            crl: Some(certs_dir().join("crl.pem")),
            key_dir: None,
            storage_extra: String::new(),
            partners: None,
            server_extra: String::new(),
            tls_extra: String::new(),
        }
    }
}

/// A running gateway process.
pub struct Gateway {
    pub child: Child,
    pub partner_addr: String,
    pub ops_addr: String,
    pub dir: TempDir,
    pub database_url: String,
    pub config_path: PathBuf,
    pub stderr_path: PathBuf,
    pub pg: Option<Arc<PgDatabase>>,
    pub backend: Backend,
}

impl Gateway {
    pub fn start(backend: Backend) -> Gateway {
        Gateway::start_with(GatewayOptions::new(backend))
    }

    pub fn start_with(opts: GatewayOptions) -> Gateway {
        Gateway::try_start_with(opts).unwrap_or_else(|e| panic!("gateway did not start: {e}"))
    }

    /// Starts a gateway, or returns what it wrote to stderr when it exits (or hangs) instead of listening.
    pub fn try_start_with(opts: GatewayOptions) -> Result<Gateway, String> {
        let dir = TempDir::new("kp-gw-");
        let mut pg = None;
        let database_url = match (&opts.database_url, opts.backend) {
            (Some(u), _) => u.clone(),
            (None, Backend::Sqlite) => {
                format!("sqlite://{}", dir.path().join("ketenpoort.db").display())
            }
            (None, Backend::Postgres) => {
                let db = Arc::new(PgDatabase::create());
                let u = db.url();
                pg = Some(db);
                u
            }
        };
        let certs = certs_dir();
        let crl = opts
            .crl
            .as_ref()
            .map(|c| format!("crl = \"{}\"\n", c.display()))
            .unwrap_or_default();
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:0"
ops_listen = "127.0.0.1:0"
shutdown_grace_secs = 5
{server_extra}

[tls]
ca = "{certs}/ca.crt"
{crl}cert = "{certs}/gateway.crt"
key = "{certs}/gateway.key"
partners = "{partners}"
{tls_extra}

[storage]
database_url = "{database_url}"
key_dir = "{keys}"
{storage_extra}

[policies]
dir = "{policies}"
{extra}
"#,
            certs = certs.display(),
            keys = opts
                .key_dir
                .clone()
                .unwrap_or_else(|| dir.path().join("keys"))
                .display(),
            storage_extra = opts.storage_extra,
            policies = opts.policies.display(),
            extra = opts.extra_config,
            server_extra = opts.server_extra,
            tls_extra = opts.tls_extra,
            partners = opts
                .partners
                .clone()
                .unwrap_or_else(|| certs.join("partners.toml"))
                .display(),
        );
        let config_path = dir.path().join("ketenpoort.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut gw = Gateway::spawn(dir, config_path, database_url, opts.backend)?;
        gw.pg = pg;
        Ok(gw)
    }

    fn spawn(
        dir: TempDir,
        config_path: PathBuf,
        database_url: String,
        backend: Backend,
    ) -> Result<Gateway, String> {
        let stderr_path = dir.path().join(unique("stderr-"));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "ketenpoort=trace,info")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start ketenpoort");
        let rx = first_stdout_line(&mut child);
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::fs::read_to_string(&stderr_path).unwrap_or_default());
            }
        };
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {line}"))
                .split("://")
                .nth(1)
                .unwrap()
                .to_owned()
        };
        Ok(Gateway {
            partner_addr: field("partner="),
            ops_addr: field("ops="),
            child,
            dir,
            database_url,
            config_path,
            stderr_path,
            pg: None,
            backend,
        })
    }

    /// Starts another gateway process on the same configuration (same database and keys).
    pub fn restart(mut self) -> Gateway {
        self.stop();
        self.respawn()
    }

    /// SIGKILL: the process dies at once, whatever it was doing.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `kill -9`, then a new process on the same configuration; returns it with the time from its start until
    /// `/readyz` answered 200.
    pub fn crash_restart(mut self) -> (Gateway, Duration) {
        self.kill9();
        let started = std::time::Instant::now();
        let gw = self.respawn();
        gw.wait_ready();
        (gw, started.elapsed())
    }

    /// Polls `/readyz` until it answers 200 (panics after 60 s).
    pub fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if self.ops_get("/readyz").0 == 200 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "gateway never became ready: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A new process on this gateway's configuration; the old one must have exited.
    fn respawn(mut self) -> Gateway {
        let pg = self.pg.take();
        let dir = std::mem::replace(&mut self.dir, TempDir(PathBuf::new()));
        let mut gw = Gateway::spawn(
            dir,
            self.config_path.clone(),
            self.database_url.clone(),
            self.backend,
        )
        .unwrap_or_else(|e| panic!("gateway did not restart: {e}"));
        gw.pg = pg;
        gw
    }

    pub fn client(&self, partner: &str) -> Client {
        Client::new(&self.partner_addr, partner)
    }

    /// SIGTERM and wait: graceful shutdown.
    pub fn stop(&mut self) {
        unsafe_kill(self.child.id(), "TERM");
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits (at most 10 s) until the tracing output holds `needle` at least `count` times; the gateway writes it
    /// asynchronously, possibly after the client already saw the outcome.
    pub fn wait_for_stderr(&self, needle: &str, count: usize) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if self.stderr().matches(needle).count() >= count {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn ops_get(&self, path: &str) -> (u16, String) {
        http_plain(&self.ops_addr, "GET", path)
    }

    pub fn ops_post(&self, path: &str) -> (u16, String) {
        http_plain(&self.ops_addr, "POST", path)
    }

    /// Every byte of the database file(s) (SQLite) or a dump of every table (PostgreSQL), as text; a dump's
    /// `bytea` values (written as hex) follow it decoded, so a payload stored as bytes is searched as it is.
    pub fn database_bytes(&self) -> Vec<u8> {
        match self.backend {
            Backend::Sqlite => {
                let file = self.database_url.trim_start_matches("sqlite://");
                let mut out = Vec::new();
                for suffix in ["", "-wal", "-shm"] {
                    if let Ok(b) = std::fs::read(format!("{file}{suffix}")) {
                        out.extend(b);
                    }
                }
                out
            }
            Backend::Postgres => {
                let out = Command::new("pg_dump")
                    .args([self.database_url.as_str(), "--data-only"])
                    .output()
                    .expect("pg_dump");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let mut bytes = out.stdout;
                let decoded = bytea_contents(&bytes);
                bytes.extend(decoded);
                bytes
            }
        }
    }

    /// Every disclosure-log entry in the database, decoded, in (log, seq) order. Reads the database directly,
    /// alongside the running gateway.
    pub async fn log_entries(
        &self,
    ) -> Vec<(
        ketenpoort::store::StoredEntry,
        ketenpoort::audit::entry::LogEntry,
    )> {
        let store = ketenpoort::store::open(&self.database_url)
            .await
            .expect("open the gateway's database");
        let mut out = Vec::new();
        for log_id in store.log_ids().await.unwrap() {
            let mut from = 0;
            loop {
                let page = store.entries(&log_id, from, 5000).await.unwrap();
                if page.is_empty() {
                    break;
                }
                from += page.len() as u64;
                for e in page {
                    let decoded = ketenpoort::audit::entry::LogEntry::decode(&e.bytes)
                        .expect("a stored entry decodes");
                    out.push((e, decoded));
                }
            }
        }
        out
    }

    /// Runs `ketenpoort audit verify` against this gateway's database and keys.
    pub fn audit_verify(&self) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
            .args(["audit", "verify", "--config"])
            .arg(&self.config_path)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bytes of every `bytea` value in a `pg_dump` (which writes them as `\x` and hex digits), one after the
/// other: a value stored as bytes must be found by a scan of the dump as if it were text.
pub fn bytea_contents(dump: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < dump.len() {
        if dump[i] == b'\\' && dump[i + 1] == b'x' {
            let mut j = i + 2;
            while j + 1 < dump.len() {
                match (hex(dump[j]), hex(dump[j + 1])) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => break,
                }
                j += 2;
            }
            out.push(b'\n');
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

pub fn unsafe_kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status();
}

/// Minimal HTTP/1.1 over plain TCP for the ops listener.
pub fn http_plain(addr: &str, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf[9..12].parse().unwrap();
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

pub fn client_config(partner: Option<&str>) -> Arc<rustls::ClientConfig> {
    let certs = certs_dir();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(&certs.join("ca.crt")) {
        roots.add(c).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match partner {
        Some(p) => builder
            .with_client_auth_cert(
                load_certs(&certs.join(format!("{p}.crt"))),
                load_key(&certs.join(format!("{p}.key"))),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(cfg)
}

fn load_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(|c| c.unwrap())
        .collect()
}

fn load_key(path: &Path) -> PrivateKeyDer<'static> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_file(path).unwrap()
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The problem `code` of an RFC 9457 response (asserting its content type).
    pub fn code(&self) -> String {
        assert_eq!(
            self.headers
                .get("content-type")
                .map(|v| v.to_str().unwrap()),
            Some("application/problem+json"),
            "status {} body {}",
            self.status,
            self.text()
        );
        self.json()["code"].as_str().unwrap().to_owned()
    }
}

/// A partner system: a mutual-TLS HTTP/1.1 client with one partner's certificate.
pub struct Client {
    addr: String,
    config: Arc<rustls::ClientConfig>,
}

impl Client {
    pub fn new(addr: &str, partner: &str) -> Client {
        Client {
            addr: addr.to_owned(),
            config: client_config(Some(partner)),
        }
    }

    pub fn without_certificate(addr: &str) -> Client {
        Client {
            addr: addr.to_owned(),
            config: client_config(None),
        }
    }

    /// A TLS connection with this client's certificate (before any HTTP).
    pub async fn tls(
        &self,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
        let tcp = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|e| e.to_string())
    }

    /// An HTTP/1.1 keep-alive connection: every request sent on it uses the same TLS session and TCP socket.
    /// The client keeps TLS session tickets, so a second connection from the same `Client` resumes the session.
    pub async fn connect(&self) -> Result<Conn, String> {
        let tls = self.tls().await?;
        let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender, resumed })
    }

    /// One request on a fresh connection. `Err` when TLS or the connection fails.
    pub async fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Response, String> {
        self.connect()
            .await?
            .request(method, path, headers, body)
            .await
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Response {
        self.try_request(method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], None).await
    }

    pub async fn post(&self, path: &str, body: &[u8]) -> Response {
        self.request("POST", path, &[], Some(body.to_vec())).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.post(path, &serde_json::to_vec(body).unwrap()).await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, &[], None).await
    }

    /// Fetches the whole inbox (all pages).
    pub async fn inbox(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let r = self
                .get(&format!("/v1/inbox?limit=100&cursor={cursor}"))
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
            let v = r.json();
            out.extend(v["messages"].as_array().unwrap().iter().cloned());
            match v["next_cursor"].as_str() {
                Some(c) => cursor = c.to_owned(),
                None => return out,
            }
        }
    }
}

/// One HTTP/1.1 keep-alive connection of a [`Client`].
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// True when the TLS handshake resumed an earlier session instead of a full handshake.
    pub resumed: bool,
}

impl Conn {
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Response, String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        let has_body = body.is_some();
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if has_body
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes()
            .to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// A response read off a raw connection: everything the server wrote until it closed or went quiet.
#[derive(Debug)]
pub struct RawExchange {
    /// Status codes of every response found in the bytes, in order.
    pub statuses: Vec<u16>,
    pub bytes: Vec<u8>,
    /// The server closed the connection (rather than the read timing out).
    pub closed: bool,
}

impl RawExchange {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The body of the first response, as JSON.
    pub fn json(&self) -> Value {
        let text = self.text();
        let (_, rest) = text.split_once("\r\n\r\n").expect("a header block");
        let end = rest.find("HTTP/1.1 ").unwrap_or(rest.len());
        serde_json::from_str(&rest[..end]).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// Writes `parts` to `stream` (pausing `pause` between them), then reads until the server closes the connection
/// or sends nothing for `quiet`.
pub async fn raw_exchange<S>(
    mut stream: S,
    parts: &[&[u8]],
    pause: Duration,
    quiet: Duration,
) -> RawExchange
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        if stream.write_all(part).await.is_err() || stream.flush().await.is_err() {
            break;
        }
    }
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        match tokio::time::timeout(quiet, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    let statuses = text
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect();
    RawExchange {
        statuses,
        bytes,
        closed,
    }
}

/// Asserts none of `needles` occurs in `haystack`, naming where.
pub fn assert_absent(haystack: &[u8], needles: &[String], place: &str) {
    for n in needles {
        assert!(
            !haystack.windows(n.len()).any(|w| w == n.as_bytes()),
            "{n} leaked into {place}"
        );
    }
}

/// The first line a child writes on its (piped) stdout, delivered on the returned channel; the rest of its output is
/// read and discarded so the child never blocks on a full pipe.
pub fn first_stdout_line(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    rx
}

/// The file of flow `id` in a policy directory.
pub fn flow_file(dir: &Path, id: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .any(|l| l.trim() == format!("id = \"{id}\""))
        })
        .unwrap_or_else(|| panic!("no file holds flow {id}"))
}

/// The first `consent` field rule of flow `id` in a policy directory: the file, its text, the rule's line and the
/// rule's path.
pub fn first_consent_rule(dir: &Path, id: &str) -> (PathBuf, String, String, String) {
    let file = flow_file(dir, id);
    let text = std::fs::read_to_string(&file).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("action = \"consent\"") && l.contains("path = \""))
        .unwrap_or_else(|| panic!("{id} has no consent field rule"))
        .to_owned();
    let path = line
        .split("path = \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    (file, text, line, path)
}

/// Runs SQL statements directly against a gateway's database: sqlx on the SQLite file, psql on PostgreSQL.
pub async fn exec_sql(backend: Backend, database_url: &str, sql: &str) {
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect(database_url)
                .await
                .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            pool.close().await;
        }
        Backend::Postgres => {
            psql_at(database_url, sql);
        }
    }
}

/// Runs SQL on a PostgreSQL database with psql; its output, unaligned and without headers.
pub fn psql_at(database_url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([database_url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Registers a consent of a parent (`ouder`) for every category, by `by` for `recipient`, valid 2026-2030; its id.
pub async fn register_consent(
    gw: &Gateway,
    by: &str,
    pgn: &str,
    purpose: &str,
    recipient: &str,
    birth_date: &str,
) -> String {
    let r = gw
        .client(by)
        .post_json(
            "/v1/consents",
            &serde_json::json!({"subject": {"pgn": pgn}, "purpose": purpose, "recipient": recipient,
                "subject_birth_date": birth_date,
                "categories": ["*"], "given_by": "ouder", "evidence": "formulier in dossier",
                "valid_from": "2026-01-01", "valid_until": "2030-07-31"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["consent_id"].as_str().unwrap().to_owned()
}
