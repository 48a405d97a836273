//! `ketenpoort serve` as an operator runs it: the committed `ketenpoort.toml` with every command-line override
//! (`--listen`, `--ops-listen`, `--database-url`, `--key-dir`, `--policies`), and the refusal to start on an
//! invalid policy file, naming the file and the line.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn committed_config() -> PathBuf {
    root().join("ketenpoort.toml")
}

/// `ketenpoort serve --config <repo>/ketenpoort.toml <overrides>`, run from `cwd` (a temporary directory, so a
/// relative default could never land in the repository).
fn serve_command(cwd: &Path, overrides: &[String], stderr: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ketenpoort"));
    cmd.current_dir(cwd)
        .arg("serve")
        .arg("--config")
        .arg(committed_config())
        .args(overrides)
        .env("RUST_LOG", "ketenpoort=debug,info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).unwrap());
    cmd
}

fn overrides(dir: &Path, database_url: &str, policies: &Path) -> Vec<String> {
    vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--ops-listen".into(),
        "127.0.0.1:0".into(),
        "--database-url".into(),
        database_url.into(),
        "--key-dir".into(),
        dir.join("keys").display().to_string(),
        "--policies".into(),
        policies.display().to_string(),
    ]
}

/// Waits for the start-up line on stdout (`ketenpoort listening partner=... ops=...`); `Err(exit status)` when
/// the process exits instead.
fn wait_listening(child: &mut Child) -> Result<String, Option<ExitStatus>> {
    let rx = first_stdout_line(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
            return Ok(line);
        }
        if let Ok(Some(status)) = child.try_wait() {
            // A line written just before exiting still counts.
            return rx.try_recv().map_err(|_| Some(status));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(None);
        }
    }
}

fn address(line: &str, name: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        .split("://")
        .nth(1)
        .unwrap()
        .to_owned()
}

/// Copies `policies/` into `to`.
fn copy_policies(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(root().join("policies")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// The repository paths the committed configuration would use without the overrides.
fn repository_defaults() -> [PathBuf; 2] {
    [root().join("ketenpoort.db"), root().join("keys")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_config_with_every_serve_override_sends_and_fetches_p1() {
    let canaries = canaries();
    let defaults_before: Vec<bool> = repository_defaults().iter().map(|p| p.exists()).collect();
    for backend in backends() {
        let dir = TempDir::new("kp-cli-serve-");
        let pg = (backend == Backend::Postgres).then(|| std::sync::Arc::new(PgDatabase::create()));
        let database_url = match &pg {
            Some(db) => db.url(),
            None => format!("sqlite://{}", dir.path().join("x.db").display()),
        };
        let stderr_path = dir.path().join("stderr");
        let mut child = serve_command(
            dir.path(),
            &overrides(dir.path(), &database_url, &root().join("policies")),
            &stderr_path,
        )
        .spawn()
        .expect("start ketenpoort");
        let line = wait_listening(&mut child).unwrap_or_else(|status| {
            panic!(
                "serve with the committed config did not start ({status:?}): {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            )
        });
        let partner_addr = address(&line, "partner=");
        let ops_addr = address(&line, "ops=");
        // --listen and --ops-listen replaced the committed 8443 and 9090 (port 0: the system chose).
        for (addr, committed) in [(&partner_addr, "8443"), (&ops_addr, "9090")] {
            let port = addr.rsplit(':').next().unwrap();
            assert!(
                addr.starts_with("127.0.0.1:") && port != committed && port != "0",
                "{addr} ({line})"
            );
        }
        let gw = Gateway {
            child,
            partner_addr,
            ops_addr,
            dir,
            database_url: database_url.clone(),
            config_path: committed_config(),
            stderr_path,
            pg,
            backend,
        };
        gw.wait_ready();

        // The committed certs-example/ (CA, CRL, gateway certificate, partners.toml; relative to the config
        // file) admit the example partners; --policies delivers P1 as the committed policy says.
        let r = gw
            .client("obs-de-linde")
            .post("/v1/messages", &example("P1"))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let sent = r.json();
        assert_eq!(sent["flow"], "P1");
        let id = sent["message_id"].as_str().unwrap().to_owned();
        let lyceum = gw.client("lyceum-zuid");
        let inbox = lyceum.inbox().await;
        assert_eq!(inbox.len(), 1, "{inbox:?}");
        assert_eq!(inbox[0]["message_id"], id.as_str());
        assert_eq!(inbox[0]["data"]["leerling"]["achternaam"], "Jansen");
        let fetched = serde_json::to_vec(&inbox).unwrap();
        assert_absent(&fetched, &canaries, "the fetched P1");
        let r = lyceum.post(&format!("/v1/inbox/{id}/ack"), b"").await;
        assert_eq!(r.status, 200, "{}", r.text());
        // The CRL of the committed config is in force: the revoked school is refused.
        assert!(
            gw.client("revoked-school")
                .try_request("GET", "/v1/inbox", &[], None)
                .await
                .map(|r| r.status >= 400)
                .unwrap_or(true),
            "revoked-school was admitted"
        );

        // --database-url: the log is in the database named on the command line.
        let events: Vec<String> = gw
            .log_entries()
            .await
            .iter()
            .filter(|(_, e)| e.message_id.as_deref() == Some(id.as_str()))
            .map(|(_, e)| e.event().as_str().to_owned())
            .collect();
        assert_eq!(
            events,
            [
                "message-disclosed",
                "message-fetched",
                "message-acknowledged"
            ],
            "log of {id}"
        );
        if backend == Backend::Sqlite {
            assert!(gw.dir.path().join("x.db").is_file());
        }
        // --key-dir: the keys were created in the directory named on the command line.
        let keys = gw.dir.path().join("keys");
        for f in ["log-signing.key", "log-signing.key.pub"] {
            assert!(keys.join(f).is_file(), "no {f} in {}", keys.display());
        }
        assert_absent(gw.stderr().as_bytes(), &canaries, "the tracing output");
        assert_absent(
            gw.stderr().as_bytes(),
            &["628194821".to_owned()],
            "the tracing output",
        );

        // `audit verify` with the committed config and the same overrides checks the log just written.
        let mut gw = gw;
        gw.stop();
        let out = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
            .current_dir(gw.dir.path())
            .args(["audit", "verify", "--config"])
            .arg(committed_config())
            .arg("--database-url")
            .arg(&database_url)
            .arg("--public-key")
            .arg(keys.join("log-signing.key.pub"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(text.contains("verified"), "{text}");
    }
    // Nothing was written where the committed config points without the overrides.
    let defaults_after: Vec<bool> = repository_defaults().iter().map(|p| p.exists()).collect();
    assert_eq!(
        defaults_before,
        defaults_after,
        "{:?} appeared: an override was ignored",
        repository_defaults()
    );
}

/// `--policies` is the directory actually loaded: without the P1 file, P1 is refused as having no policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policies_flag_replaces_the_configured_policy_directory() {
    let dir = TempDir::new("kp-cli-policies-");
    let policies = dir.path().join("policies");
    copy_policies(&policies);
    std::fs::remove_file(policies.join("p1-overstap-po-vo.toml")).unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("x.db").display());
    let stderr_path = dir.path().join("stderr");
    let mut child = serve_command(
        dir.path(),
        &overrides(dir.path(), &database_url, &policies),
        &stderr_path,
    )
    .spawn()
    .unwrap();
    let line = wait_listening(&mut child).unwrap_or_else(|s| {
        panic!(
            "did not start ({s:?}): {}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        )
    });
    let gw = Gateway {
        child,
        partner_addr: address(&line, "partner="),
        ops_addr: address(&line, "ops="),
        dir,
        database_url,
        config_path: committed_config(),
        stderr_path,
        pg: None,
        backend: Backend::Sqlite,
    };
    gw.wait_ready();
    let r = gw
        .client("obs-de-linde")
        .post("/v1/messages", &example("P1"))
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.code(), "no-policy");
    // P3 (still in the directory) is delivered.
    let r = gw
        .client("lyceum-zuid")
        .post("/v1/messages", &example("P3"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

/// One way of breaking `p3-verzuimmelding.toml`: the line to change (found by its text) and its replacement.
struct Breakage {
    what: &'static str,
    line_containing: &'static str,
    replace: (&'static str, &'static str),
    message: &'static str,
}

#[test]
fn serve_refuses_to_start_on_an_invalid_policy_file_naming_the_file_and_line() {
    let cases = [
        Breakage {
            what: "TOML syntax error",
            line_containing: "consent = false",
            replace: ("consent = false", "consent = fals"),
            // The TOML parser's own words: `fals` is neither a boolean nor a quoted string.
            message: "invalid string",
        },
        Breakage {
            what: "unknown field action",
            line_containing: "path = \"toetsen[].*\"",
            replace: ("action = \"deny\"", "action = \"misschien\""),
            message: "misschien",
        },
        Breakage {
            what: "unknown key in a flow",
            line_containing: "justification = \"optional\"",
            replace: (
                "justification = \"optional\"",
                "justification = \"optional\"\nbewaartermijn = 3",
            ),
            message: "bewaartermijn",
        },
        Breakage {
            what: "deny rule without a reason",
            line_containing: "path = \"sociaal_emotioneel.*\"",
            replace: (", reason = ", ", toelichting = "),
            message: "reason",
        },
    ];
    for case in &cases {
        let dir = TempDir::new("kp-cli-badpolicy-");
        let policies = dir.path().join("policies");
        copy_policies(&policies);
        let file = policies.join("p3-verzuimmelding.toml");
        let text = std::fs::read_to_string(&file).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let index = lines
            .iter()
            .position(|l| l.contains(case.line_containing))
            .unwrap_or_else(|| panic!("{}: no line with {}", case.what, case.line_containing));
        assert!(lines[index].contains(case.replace.0), "{}", case.what);
        lines[index] = lines[index].replace(case.replace.0, case.replace.1);
        // The broken line: an inserted line comes right after the one it was added to.
        let broken_line = if case.replace.1.contains('\n') {
            index + 2
        } else {
            index + 1
        };
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();

        let database_url = format!("sqlite://{}", dir.path().join("x.db").display());
        let stderr_path = dir.path().join("stderr");
        let mut child = serve_command(
            dir.path(),
            &overrides(dir.path(), &database_url, &policies),
            &stderr_path,
        )
        .spawn()
        .unwrap();
        let result = wait_listening(&mut child);
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        match result {
            Ok(line) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{}: the gateway started on a broken policy: {line}\n{stderr}",
                    case.what
                );
            }
            Err(None) => panic!(
                "{}: the gateway neither started nor exited\n{stderr}",
                case.what
            ),
            Err(Some(status)) => assert!(!status.success(), "{}: exit {status}", case.what),
        }
        let location = format!("p3-verzuimmelding.toml:{broken_line}");
        assert!(
            stderr.contains(&location),
            "{}: stderr does not name {location}:\n{stderr}",
            case.what
        );
        assert!(
            stderr.contains(case.message),
            "{}: stderr does not say what is wrong ({}):\n{stderr}",
            case.what,
            case.message
        );
        // Only the broken file is named.
        for other in ["p1-overstap-po-vo.toml", "p6-status-verzuimmelding.toml"] {
            assert!(
                !stderr.contains(other),
                "{}: {other} named:\n{stderr}",
                case.what
            );
        }
    }
}
