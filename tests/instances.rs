//! What only PostgreSQL deployments have: several real gateway processes on one database (each its own log,
//! one shared set of mailboxes), and the durability check of the database's own defaults.
//! Needs `KETENPOORT_TEST_POSTGRES` (skipped without it locally, a failure under `CI=true`).

mod common;

use common::*;
use ketenpoort::audit::checkpoint::SigningKey;
use ketenpoort::audit::entry::{EventKind, LogEntry};
use ketenpoort::audit::writer::{now_ms, LogWriter, WriterConfig};
use ketenpoort::keys::Keys;
use ketenpoort::store::{EntryFilter, Mutation, NewMessage, StoredEntry};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

fn postgres_available() -> bool {
    backends().contains(&Backend::Postgres)
}

/// Two instances on one database. They share the key directory (payload and pseudonym keys); A signs its log
/// with the default `<key_dir>/log-signing.key`, B with `storage.signing_key = <key_dir>/instance-b.key`.
struct Pair {
    // Declared first so B stops before A's directory and database go.
    b: Gateway,
    a: Gateway,
    keys: PathBuf,
}

fn start_pair() -> Pair {
    let a = Gateway::start(Backend::Postgres);
    let keys = a.dir.path().join("keys");
    let mut opts = GatewayOptions::new(Backend::Postgres);
    opts.database_url = Some(a.database_url.clone());
    opts.key_dir = Some(keys.clone());
    opts.storage_extra = format!(
        "signing_key = \"{}\"",
        keys.join("instance-b.key").display()
    );
    let b = Gateway::start_with(opts);
    Pair { b, a, keys }
}

/// Every entry of every log in the database, merged in time order (as the privacy officer reads them).
async fn all_entries(url: &str) -> Vec<StoredEntry> {
    let store = ketenpoort::store::open(url).await.unwrap();
    let mut out = Vec::new();
    let mut f = EntryFilter {
        limit: 1000,
        ..Default::default()
    };
    loop {
        let page = store.query_entries(&f).await.unwrap();
        let full = page.len() == f.limit;
        if let Some(e) = page.last() {
            f.after = Some((e.time_ms, e.log_id.clone(), e.seq));
        }
        out.extend(page);
        if !full {
            return out;
        }
    }
}

fn count(entries: &[StoredEntry], event: &str) -> usize {
    entries.iter().filter(|e| e.event == event).count()
}

/// Delivers `n` messages to `receiver` the way the send pipeline stores them (sealed with the shared payload key,
/// recorded by a disclosure entry in the same commit), through the library's log writer with its own signing key
/// (`seed.key` in the key directory, so `audit verify` finds its public key like any instance's).
async fn deliver(url: &str, key_dir: &Path, receiver: &str, n: usize) -> Vec<String> {
    let store = ketenpoort::store::open(url).await.unwrap();
    let keys = Arc::new(Keys::load_or_create(key_dir).unwrap());
    let signing = Arc::new(SigningKey::load_or_create(&key_dir.join("seed.key")).unwrap());
    let log_id = format!("ketenpoort-seed-{}", signing.key_id());
    let (writer, handle) = LogWriter::start(
        store,
        signing,
        WriterConfig {
            log_id,
            batch_max: 512,
            checkpoint_interval: Duration::from_secs(1),
        },
    )
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..n {
        let (writer, keys, receiver) = (writer.clone(), keys.clone(), receiver.to_owned());
        tasks.push(tokio::spawn(async move {
            let id = ketenpoort::exchange::new_id();
            let stored = json!({
                "subject": null,
                "actor": {"id": "mentor-1", "name": "J. de Vries", "function": "mentor"},
                "justification": null,
                "data": {"volgnummer": i},
            });
            let sealed = keys
                .seal(&serde_json::to_vec(&stored).unwrap(), id.as_bytes())
                .unwrap();
            let mut entry = LogEntry::new(EventKind::MessageDisclosed);
            entry.partner = "obs-de-linde".into();
            entry.organisation = "obs-de-linde".into();
            entry.sender = Some("obs-de-linde".into());
            entry.receiver = Some(receiver.clone());
            entry.message_id = Some(id.clone());
            entry.message_type = Some("onderwijskundig-rapport".into());
            entry.purpose = Some("overstap".into());
            let created_ms = now_ms();
            let msg = NewMessage {
                id: id.clone(),
                sender: "obs-de-linde".into(),
                receiver,
                message_type: "onderwijskundig-rapport".into(),
                purpose: "overstap".into(),
                subject: None,
                sealed,
                consent_paths: "[]".into(),
                created_ms,
                expires_ms: created_ms + 86_400_000,
                log_id: String::new(),
                seq: 0,
                leaf_hash: [0; 32],
            };
            writer
                .append(vec![entry], vec![Mutation::InsertMessage(Box::new(msg))])
                .await
                .unwrap();
            id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    writer.flush().await;
    drop(writer);
    handle.await.unwrap();
    ids
}

/// Pages through a whole inbox; returns (message id, redelivery) in the order handed out.
async fn fetch_all(client: &Client, limit: usize) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = client
            .get(&format!("/v1/inbox?limit={limit}&cursor={cursor}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        for m in v["messages"].as_array().unwrap() {
            out.push((
                m["message_id"].as_str().unwrap().to_owned(),
                m["redelivery"].as_bool().unwrap(),
            ));
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => return out,
        }
    }
}

fn audit_verify(config: &Path, public_keys: &[PathBuf]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ketenpoort"));
    cmd.args(["audit", "verify", "--config"]).arg(config);
    for k in public_keys {
        cmd.arg("--public-key").arg(k);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_via_a_is_fetched_and_acknowledged_via_b_exactly_once() {
    if !postgres_available() {
        return;
    }
    let p = start_pair();
    let r =
        p.a.client("obs-de-linde")
            .post("/v1/messages", &example("P1"))
            .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let sent = r.json();
    let id = sent["message_id"].as_str().unwrap().to_owned();
    let log_a = sent["disclosure"]["log_id"].as_str().unwrap().to_owned();

    let via_b = p.b.client("lyceum-zuid").inbox().await;
    assert_eq!(via_b.len(), 1);
    assert_eq!(via_b[0]["message_id"], id.as_str());
    assert_eq!(via_b[0]["redelivery"], false);
    assert_eq!(via_b[0]["disclosure"]["log_id"], log_a.as_str());
    let via_a = p.a.client("lyceum-zuid").inbox().await;
    assert_eq!(via_a.len(), 1);
    assert_eq!(
        via_a[0]["redelivery"], true,
        "the fetch through B counts for A too"
    );
    assert_eq!(via_a[0]["data"], via_b[0]["data"]);

    let ack =
        p.b.client("lyceum-zuid")
            .post(&format!("/v1/inbox/{id}/ack"), b"")
            .await;
    assert_eq!(ack.status, 200, "{}", ack.text());
    let log_b = ack.json()["disclosure"]["log_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(log_a, log_b, "each instance writes its own log");
    let again =
        p.a.client("lyceum-zuid")
            .post(&format!("/v1/inbox/{id}/ack"), b"")
            .await;
    assert_eq!(again.status, 404);
    assert_eq!(again.code(), "not-found");
    assert!(p.a.client("lyceum-zuid").inbox().await.is_empty());
    assert!(p.b.client("lyceum-zuid").inbox().await.is_empty());

    let entries = all_entries(&p.a.database_url).await;
    let about = |event: &str| -> Vec<&str> {
        let mut logs: Vec<&str> = entries
            .iter()
            .filter(|e| e.event == event && e.bytes.windows(id.len()).any(|w| w == id.as_bytes()))
            .map(|e| e.log_id.as_str())
            .collect();
        logs.sort();
        logs
    };
    assert_eq!(about("message-disclosed"), vec![log_a.as_str()]);
    let mut both = vec![log_a.as_str(), log_b.as_str()];
    both.sort();
    assert_eq!(about("message-fetched"), both);
    assert_eq!(about("message-acknowledged"), vec![log_b.as_str()]);
    assert!(
        entries.windows(2).all(|w| w[0].time_ms <= w[1].time_ms),
        "merged in time order"
    );

    let (ok, out) = p.a.audit_verify();
    assert!(ok, "{out}");
    assert!(out.contains(&format!("log {log_a}: ok")), "{out}");
    assert!(out.contains(&format!("log {log_b}: ok")), "{out}");
}

/// Runs the fetchers at once, each paging through the whole inbox; asserts every one of `ids` was handed out as
/// new to exactly one fetcher and that one fetch entry was logged per message handed out.
async fn fetch_concurrently(url: &str, fetchers: Vec<(&'static str, Client)>, ids: &[String]) {
    let mut tasks = Vec::new();
    for (name, client) in fetchers {
        tasks.push((
            name,
            tokio::spawn(async move { fetch_all(&client, 20).await }),
        ));
    }
    let mut new_to: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut handed_out = 0;
    for (name, t) in tasks {
        let got = t.await.unwrap();
        let distinct: BTreeSet<_> = got.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(
            (distinct.len(), got.len()),
            (ids.len(), ids.len()),
            "{name} saw every unacknowledged message once"
        );
        handed_out += got.len();
        for (id, redelivery) in got {
            let slot = new_to.entry(id).or_default();
            if !redelivery {
                slot.push(name);
            }
        }
    }
    assert_eq!(
        new_to.keys().cloned().collect::<BTreeSet<_>>(),
        ids.iter().cloned().collect::<BTreeSet<_>>()
    );
    let wrong: Vec<_> = new_to.iter().filter(|(_, who)| who.len() != 1).collect();
    assert!(
        wrong.is_empty(),
        "{} message(s) not handed out as new exactly once, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    // Nothing handed out unlogged: one fetch entry per message per response.
    let entries = all_entries(url).await;
    assert_eq!(count(&entries, "message-fetched"), handed_out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fetches_on_one_instance_hand_each_message_out_as_new_once() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let ids = deliver(
            &gw.database_url,
            &gw.dir.path().join("keys"),
            "lyceum-zuid",
            100,
        )
        .await;
        let fetchers = ["f1", "f2", "f3"]
            .into_iter()
            .map(|n| (n, gw.client("lyceum-zuid")))
            .collect();
        fetch_concurrently(&gw.database_url, fetchers, &ids).await;
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{backend:?}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fetches_through_both_instances_hand_each_message_out_as_new_once() {
    if !postgres_available() {
        return;
    }
    let p = start_pair();
    let ids = deliver(&p.a.database_url, &p.keys, "lyceum-zuid", 200).await;
    // Two fetchers per instance, small pages, all at once.
    let fetchers = vec![
        ("a1", p.a.client("lyceum-zuid")),
        ("a2", p.a.client("lyceum-zuid")),
        ("b1", p.b.client("lyceum-zuid")),
        ("b2", p.b.client("lyceum-zuid")),
    ];
    fetch_concurrently(&p.a.database_url, fetchers, &ids).await;
    let entries = all_entries(&p.a.database_url).await;
    let logs: BTreeSet<_> = entries
        .iter()
        .filter(|e| e.event == "message-fetched")
        .map(|e| e.log_id.clone())
        .collect();
    assert_eq!(logs.len(), 2, "both instances logged fetches: {logs:?}");
    let (ok, out) = p.a.audit_verify();
    assert!(ok, "{out}");
    assert_eq!(out.matches(": ok,").count(), 3, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_acks_through_both_instances_acknowledge_once_and_every_log_verifies() {
    if !postgres_available() {
        return;
    }
    let p = start_pair();
    let ids = deliver(&p.a.database_url, &p.keys, "lyceum-zuid", 30).await;
    let (ca, cb) = (
        Arc::new(p.a.client("lyceum-zuid")),
        Arc::new(p.b.client("lyceum-zuid")),
    );
    let mut tasks = Vec::new();
    for id in &ids {
        let path = format!("/v1/inbox/{id}/ack");
        let (ca, cb) = (ca.clone(), cb.clone());
        tasks.push(tokio::spawn(async move {
            let (ra, rb) = tokio::join!(ca.post(&path, b""), cb.post(&path, b""));
            (ra.status, rb.status)
        }));
    }
    let mut by_a = 0;
    for t in tasks {
        match t.await.unwrap() {
            (200, 404) => by_a += 1,
            (404, 200) => {}
            other => panic!("expected exactly one acknowledgement, got {other:?}"),
        }
    }
    eprintln!("acknowledged through A: {by_a}, through B: {}", 30 - by_a);
    assert!(ca.inbox().await.is_empty());
    let entries = all_entries(&p.a.database_url).await;
    assert_eq!(count(&entries, "message-acknowledged"), 30);
    for id in &ids {
        let acks = entries
            .iter()
            .filter(|e| {
                e.event == "message-acknowledged"
                    && e.bytes.windows(id.len()).any(|w| w == id.as_bytes())
            })
            .count();
        assert_eq!(acks, 1, "{id}");
    }

    // Default trusted keys: every *.pub in the shared key directory (A, B and the delivering writer).
    let (ok, out) = p.a.audit_verify();
    assert!(ok, "{out}");
    assert_eq!(out.matches(": ok,").count(), 3, "{out}");
    assert_eq!(out.matches("trusted key ").count(), 3, "{out}");
    // Only A's key: the other logs' checkpoints are not trusted.
    let only_a = [p.keys.join("log-signing.key.pub")];
    let (ok, out) = audit_verify(&p.a.config_path, &only_a);
    assert!(!ok, "{out}");
    assert!(out.contains("not signed by a trusted key"), "{out}");
    // Every key named explicitly.
    let all: Vec<_> = ["log-signing.key.pub", "instance-b.key.pub", "seed.key.pub"]
        .iter()
        .map(|k| p.keys.join(k))
        .collect();
    let (ok, out) = audit_verify(&p.a.config_path, &all);
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_sent_through_both_instances_delivers_once() {
    if !postgres_available() {
        return;
    }
    let p = start_pair();
    let (ca, cb) = (
        Arc::new(p.a.client("obs-de-linde")),
        Arc::new(p.b.client("obs-de-linde")),
    );
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (ca, cb) = (ca.clone(), cb.clone());
        tasks.push(tokio::spawn(async move {
            let key = format!("overdracht-{i}");
            let headers = [("idempotency-key", key.as_str())];
            let body = example("P1");
            let (ra, rb) = tokio::join!(
                ca.request("POST", "/v1/messages", &headers, Some(body.clone())),
                cb.request("POST", "/v1/messages", &headers, Some(body)),
            );
            let mut statuses = [ra.status, rb.status];
            statuses.sort();
            assert_eq!(statuses, [200, 201], "{} / {}", ra.text(), rb.text());
            assert_eq!(ra.json()["message_id"], rb.json()["message_id"]);
            assert_eq!(ra.json()["disclosure"], rb.json()["disclosure"]);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(p.b.client("lyceum-zuid").inbox().await.len(), 10);
    let entries = all_entries(&p.a.database_url).await;
    assert_eq!(count(&entries, "message-disclosed"), 10);
    assert_eq!(p.a.ops_get("/readyz").0, 200);
    assert_eq!(p.b.ops_get("/readyz").0, 200);
}

/// The gateway's own sessions force `synchronous_commit = on`; a database whose own default is `off` is refused at
/// start, unless `storage.allow_non_durable = true` (then it starts, warns, and still commits synchronously).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_defaulting_to_asynchronous_commit_is_refused_unless_allowed() {
    if !postgres_available() {
        return;
    }
    let db = PgDatabase::create();
    psql(
        &db.server,
        &format!("ALTER DATABASE {} SET synchronous_commit = off", db.name),
    );
    let shown = Command::new("psql")
        .args([db.url().as_str(), "-tAc", "SHOW synchronous_commit"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), "off");

    let mut opts = GatewayOptions::new(Backend::Postgres);
    opts.database_url = Some(db.url());
    let err = match Gateway::try_start_with(opts) {
        Ok(_) => panic!("started on a database that defaults to synchronous_commit = off"),
        Err(stderr) => stderr,
    };
    assert!(
        err.contains("synchronous_commit is off"),
        "refusal names the setting: {err}"
    );

    let mut opts = GatewayOptions::new(Backend::Postgres);
    opts.database_url = Some(db.url());
    opts.storage_extra = "allow_non_durable = true".into();
    let gw = Gateway::try_start_with(opts).unwrap_or_else(|e| panic!("override ignored: {e}"));
    assert_eq!(gw.ops_get("/readyz").0, 200);
    let stderr = gw.stderr();
    assert!(stderr.contains("non-durable"), "{stderr}");
    // Its log works (the start-up entry is committed and verifies).
    let (ok, out) = gw.audit_verify();
    assert!(ok, "{out}");

    // Back to a durable default: starts without the override.
    psql(
        &db.server,
        &format!("ALTER DATABASE {} RESET synchronous_commit", db.name),
    );
    let mut opts = GatewayOptions::new(Backend::Postgres);
    opts.database_url = Some(db.url());
    let gw2 = Gateway::try_start_with(opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(gw2.ops_get("/readyz").0, 200);
    drop((gw, gw2));
}

/// The directory of PostgreSQL's server programs (`initdb`, `pg_ctl`): `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn postgres_server_bin() -> Option<PathBuf> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    debian.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    from_pg_config
        .into_iter()
        .chain(debian.into_iter().rev())
        .find(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
}

/// A PostgreSQL server of the test's own (initdb in a temporary directory, its own port and socket directory),
/// for server-wide settings (`fsync`, `ALTER SYSTEM`) that must not touch the shared test server other tests use.
/// Stopped and removed on drop.
struct PrivateServer {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// As root the server runs as the `postgres` user (PostgreSQL refuses to run as root).
    as_postgres: bool,
    _dir: TempDir,
}

impl PrivateServer {
    /// `None` (SKIPPED locally, a failure in CI) when the server programs are not installed.
    fn start() -> Option<PrivateServer> {
        let Some(bin) = postgres_server_bin() else {
            if in_ci() {
                panic!(
                    "initdb and pg_ctl are required in CI for the server-wide durability checks"
                );
            }
            eprintln!("SKIPPED server-wide durability checks: no initdb/pg_ctl on this machine");
            return None;
        };
        let uid = Command::new("id").arg("-u").output().unwrap();
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        let dir = TempDir::new("kp-pgserver-");
        if as_postgres {
            let out = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = PrivateServer {
            bin,
            data: dir.path().join("data"),
            port,
            as_postgres,
            _dir: dir,
        };
        server.run(
            "initdb",
            &[
                "-D",
                &server.data.display().to_string(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            server._dir.path().display()
        );
        let log = server._dir.path().join("server.log").display().to_string();
        server.run(
            "pg_ctl",
            &[
                "-D",
                &server.data.display().to_string(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
        Some(server)
    }

    fn run(&self, program: &str, args: &[&str]) -> String {
        let program = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = cmd.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{} {args:?}: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// One SQL statement on the server; returns what it printed (unaligned, tuples only).
    fn sql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([self.url().as_str(), "-v", "ON_ERROR_STOP=1", "-tAqc", sql])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `ALTER SYSTEM` (`value` None: `RESET`), then a configuration reload; returns once a new session sees the
    /// value (the reload reaches new sessions asynchronously).
    fn alter_system(&self, setting: &str, value: Option<&str>, shown: &str) {
        match value {
            Some(v) => self.sql(&format!("ALTER SYSTEM SET {setting} = {v}")),
            None => self.sql(&format!("ALTER SYSTEM RESET {setting}")),
        };
        self.sql("SELECT pg_reload_conf()");
        for _ in 0..200 {
            if self.sql(&format!("SHOW {setting}")) == shown {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{setting} never became {shown} after the reload");
    }

    /// Starts a gateway on this server's `postgres` database; `Err` with its stderr when it refuses.
    fn gateway(&self) -> Result<Gateway, String> {
        let mut opts = GatewayOptions::new(Backend::Postgres);
        opts.database_url = Some(self.url());
        Gateway::try_start_with(opts)
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let program = self.bin.join("pg_ctl");
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let _ = cmd.args(["-D", &data, "-m", "immediate", "stop"]).output();
    }
}

/// Server-wide settings that lose commits refuse the start, as `PgStore::durability` promises: `fsync = off` and a
/// server default of `synchronous_commit = off` (`ALTER SYSTEM`), each on a server of the test's own; with the
/// setting reset the same gateway starts.
#[test]
fn a_server_with_fsync_off_or_asynchronous_commit_by_alter_system_is_refused() {
    if !postgres_available() {
        return;
    }
    let Some(server) = PrivateServer::start() else {
        return;
    };
    server.alter_system("fsync", Some("off"), "off");
    match server.gateway() {
        Ok(_) => panic!("started on a server with fsync = off"),
        Err(stderr) => assert!(
            stderr.contains("fsync is off"),
            "refusal names the setting: {stderr}"
        ),
    }

    server.alter_system("fsync", None, "on");
    server.alter_system("synchronous_commit", Some("off"), "off");
    match server.gateway() {
        Ok(_) => {
            panic!("started on a server whose default is synchronous_commit = off (ALTER SYSTEM)")
        }
        Err(stderr) => assert!(
            stderr.contains("default synchronous_commit is off"),
            "refusal names the setting: {stderr}"
        ),
    }

    server.alter_system("synchronous_commit", None, "on");
    let gw = server
        .gateway()
        .unwrap_or_else(|e| panic!("refused on a durable server: {e}"));
    assert_eq!(gw.ops_get("/readyz").0, 200);
    drop(gw);
}

/// A partner connection kept alive for many requests (HTTP/1.1 over mutual TLS).
async fn keep_alive(
    addr: &str,
    partner: &str,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Full<hyper::body::Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(client_config(Some(partner)))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name}"))
        .parse()
        .unwrap()
}

/// 8 clients on kept-alive connections send `KETENPOORT_LOAD_N` (default 200) P1 messages at once; every one must be
/// answered 201 (a 5xx, a refusal or any other status fails the run, the warm-up included) and logged, which the log
/// size proves. Prints figures; asserts nothing about speed
/// (`KETENPOORT_LOAD_N=2000 cargo test --test instances load_ -- --nocapture` for the closing-note figures).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_send_over_keep_alive() {
    use http_body_util::BodyExt;
    let n: usize = std::env::var("KETENPOORT_LOAD_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let clients = 8;
    for backend in backends() {
        let mut opts = GatewayOptions::new(backend);
        opts.extra_config = "[limits]\nrate_per_second = 1000000\nburst = 1000000\n".into();
        let gw = Gateway::start_with(opts);
        let body = hyper::body::Bytes::from(example("P1"));
        let run = |count: usize| {
            let (addr, body) = (gw.partner_addr.clone(), body.clone());
            async move {
                let mut tasks = Vec::new();
                for c in 0..clients {
                    let (addr, body) = (addr.clone(), body.clone());
                    let share = count / clients + usize::from(c < count % clients);
                    tasks.push(tokio::spawn(async move {
                        let mut sender = keep_alive(&addr, "obs-de-linde").await;
                        let mut statuses = BTreeMap::new();
                        for _ in 0..share {
                            sender.ready().await.unwrap();
                            let req = hyper::Request::post("/v1/messages")
                                .header("host", "localhost")
                                .header("content-type", "application/json")
                                .body(http_body_util::Full::new(body.clone()))
                                .unwrap();
                            let resp = sender.send_request(req).await.unwrap();
                            let status = resp.status().as_u16();
                            resp.into_body().collect().await.unwrap();
                            *statuses.entry(status).or_insert(0usize) += 1;
                        }
                        statuses
                    }));
                }
                let mut all = BTreeMap::new();
                for t in tasks {
                    for (s, c) in t.await.unwrap() {
                        *all.entry(s).or_insert(0usize) += c;
                    }
                }
                all
            }
        };
        let warm_up = run(200).await;
        assert_all_created(&warm_up, 200, backend, "warm-up");
        let before = gw.ops_get("/metrics").1;
        let started = std::time::Instant::now();
        let statuses = run(n).await;
        let secs = started.elapsed().as_secs_f64();
        let after = gw.ops_get("/metrics").1;
        let delta = |m: &str| metric(&after, m) - metric(&before, m);
        assert_all_created(&statuses, n, backend, "measured run");
        let logged = delta("ketenpoort_log_size") as usize;
        let batches = delta("ketenpoort_log_batches_total");
        let commit = delta("ketenpoort_log_append_seconds_total");
        let answered_logged: usize = statuses
            .iter()
            .filter(|(s, _)| matches!(**s, 201 | 403 | 422))
            .map(|(_, c)| c)
            .sum();
        assert_eq!(logged, answered_logged, "{statuses:?}");
        eprintln!(
            "LOAD {backend:?}: {n} requests, {clients} keep-alive clients, {secs:.2} s, {:.0} req/s; statuses {statuses:?}; \
             {batches} log commits ({:.1} entries/commit, {:.2} ms/commit)",
            n as f64 / secs,
            logged as f64 / batches,
            commit * 1000.0 / batches
        );
    }
}

/// Every one of `n` requests was answered 201 (P1 under the shipped policies): no 5xx, no refusal.
fn assert_all_created(statuses: &BTreeMap<u16, usize>, n: usize, backend: Backend, run: &str) {
    let server_errors: usize = statuses
        .iter()
        .filter(|(s, _)| **s >= 500)
        .map(|(_, c)| c)
        .sum();
    assert_eq!(
        server_errors, 0,
        "{backend:?} {run}: {server_errors} answers were 5xx: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().map(|(s, c)| (*s, *c)).collect::<Vec<_>>(),
        [(201, n)],
        "{backend:?} {run}: not every P1 was answered 201: {statuses:?}"
    );
}

#[test]
fn audit_verify_without_any_trusted_key_refuses_instead_of_skipping_signatures() {
    let mut gw = Gateway::start(Backend::Sqlite);
    gw.stop();
    let (ok, out) = gw.audit_verify();
    assert!(ok, "{out}");
    std::fs::remove_file(gw.dir.path().join("keys/log-signing.key.pub")).unwrap();
    let (ok, out) = gw.audit_verify();
    assert!(!ok, "{out}");
    assert!(out.contains("no public key"), "{out}");
}
