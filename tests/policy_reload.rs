//! Policy reload: a bad policy set is refused whole and the running one stays (ops POST and SIGHUP);
//! a good one replaces it, and its hash is what the next disclosure records. The console's policy page shows the
//! diff of the last reload that changed the set.

mod common;

use common::*;
use ketenpoort::audit::entry::{EventKind, LogEntry};

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The disclosure entry of one message.
async fn disclosure_of(gw: &Gateway, message_id: &str) -> LogEntry {
    let mut found: Vec<LogEntry> = gw
        .log_entries()
        .await
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| {
            e.event() == EventKind::MessageDisclosed && e.message_id.as_deref() == Some(message_id)
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

/// A broken policy file is refused by `POST /policies/reload` and by SIGHUP; the error is logged (naming the file)
/// and counted in `/metrics`, and the next disclosure still records the running set's hash. A good set then
/// replaces it, and the next disclosure records the new hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_policies_never_replace_good_ones() {
    let dir = TempDir::new("kp-policies-");
    copy_dir(&root().join("policies"), dir.path());
    let mut opts = GatewayOptions::new(Backend::Sqlite);
    opts.policies = dir.path().to_owned();
    let gw = Gateway::start_with(opts);
    let (_, ready) = gw.ops_get("/readyz");
    let hash_before: serde_json::Value = serde_json::from_str(&ready).unwrap();
    let hash_before = hash_before["policy_hash"].as_str().unwrap().to_owned();

    std::fs::write(dir.path().join("zz-broken.toml"), "this is [not valid toml").unwrap();
    let (status, body) = gw.ops_post("/policies/reload");
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("zz-broken.toml"),
        "the error does not name the file: {body}"
    );
    unsafe_kill(gw.child.id(), "HUP");
    let c = gw.client("obs-de-linde");
    let r = c.post("/v1/messages", &example("P1")).await;
    assert_eq!(
        r.status,
        201,
        "the running policies were dropped: {}",
        r.text()
    );
    let mut failures = String::new();
    for _ in 0..50 {
        let (_, metrics) = gw.ops_get("/metrics");
        failures = metrics
            .lines()
            .find(|l| l.starts_with("ketenpoort_policy_reload_failures_total"))
            .unwrap_or_default()
            .to_owned();
        if failures.ends_with(" 2") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(failures, "ketenpoort_policy_reload_failures_total 2");
    // Both refusals are logged with the error, naming the file; the disclosure made meanwhile records the
    // running (old) set, and no policy-loaded entry names a set that never ran.
    assert!(
        gw.wait_for_stderr("policy reload refused", 2),
        "the refused reloads were not logged: {}",
        gw.stderr()
    );
    let refused_lines: Vec<String> = gw
        .stderr()
        .lines()
        .filter(|l| l.contains("policy reload refused"))
        .map(str::to_owned)
        .collect();
    assert_eq!(refused_lines.len(), 2, "{refused_lines:?}");
    for l in &refused_lines {
        assert!(
            l.contains("zz-broken.toml"),
            "the logged error does not name the file: {l}"
        );
    }
    let first_id = r.json()["message_id"].as_str().unwrap().to_owned();
    let disclosed = disclosure_of(&gw, &first_id).await;
    assert_eq!(disclosed.policy_hash.as_deref(), Some(&*hash_before));

    // Remove the broken file and drop P1's flow: the reload is accepted and P1 is no longer allowed.
    std::fs::remove_file(dir.path().join("zz-broken.toml")).unwrap();
    let mut removed = false;
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        if p.extension().is_some_and(|x| x == "toml")
            && text.contains("overstap-po-vo")
            && !text.contains("[catalogue")
        {
            std::fs::remove_file(&p).unwrap();
            removed = true;
        }
    }
    assert!(removed, "no policy file holds the P1 flow");
    let (status, body) = gw.ops_post("/policies/reload");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let hash_after = v["policy_hash"].as_str().unwrap().to_owned();
    assert_ne!(hash_after, hash_before);
    let r = c.post("/v1/messages", &example("P1")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.code(), "no-policy");
    // The next disclosure records the new set's hash.
    let r = gw
        .client("lyceum-zuid")
        .post("/v1/messages", &example("P2"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let next = disclosure_of(&gw, r.json()["message_id"].as_str().unwrap()).await;
    assert_eq!(next.policy_hash.as_deref(), Some(&*hash_after));
    let entries = gw.log_entries().await;
    let loaded: Vec<Option<String>> = entries
        .iter()
        .filter(|(_, e)| e.event() == EventKind::PolicyLoaded && e.outcome == "ok")
        .map(|(_, e)| e.policy_hash.clone())
        .collect();
    assert_eq!(loaded, [Some(hash_before.clone()), Some(hash_after)]);
    // Both refused reloads are in the log too: with the hash of the set that stayed, and the error naming the file.
    let refused: Vec<_> = entries
        .iter()
        .filter(|(_, e)| e.event() == EventKind::PolicyLoaded && e.outcome != "ok")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    for e in refused {
        assert_eq!(e.outcome, "policy-invalid");
        assert_eq!(e.policy_hash.as_deref(), Some(&*hash_before));
        let detail = e.detail.as_deref().unwrap_or_default();
        assert!(
            detail.starts_with("reload refused: ") && detail.contains("zz-broken.toml"),
            "{detail}"
        );
    }
    let (ok, out) = gw.audit_verify();
    assert!(ok, "{out}");
}

/// A set that parses but that `policy check` fails (here a flow whose legal basis cites no article, as P7 once cited
/// its convenant) is refused at reload like a broken file, naming the file and the rule, and the running set stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_that_policy_check_fails_is_never_served() {
    let dir = TempDir::new("kp-policies-");
    copy_dir(&root().join("policies"), dir.path());
    let mut opts = GatewayOptions::new(Backend::Sqlite);
    opts.policies = dir.path().to_owned();
    let gw = Gateway::start_with(opts);
    let p7 = dir.path().join("p7-monitoring-thuiszitters.toml");
    let text = std::fs::read_to_string(&p7).unwrap();
    let start = text.find("article = ").expect("P7 cites an article");
    let end = start + text[start..].find('\n').unwrap();
    let uncited = format!(
        "{}article = \"Convenant thuiszitters\"{}",
        &text[..start],
        &text[end..]
    );
    std::fs::write(&p7, uncited).unwrap();
    let (status, body) = gw.ops_post("/policies/reload");
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("p7-monitoring-thuiszitters.toml") && body.contains("cites no article"),
        "{body}"
    );
    // The running set still serves.
    let r = gw
        .client("obs-de-linde")
        .post("/v1/messages", &example("P1"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // And a gateway does not start on it.
    let mut opts = GatewayOptions::new(Backend::Sqlite);
    opts.policies = dir.path().to_owned();
    match Gateway::try_start_with(opts) {
        Ok(_) => panic!("the gateway started on a set policy check fails"),
        Err(out) => assert!(out.contains("cites no article"), "{out}"),
    }
}

/// Before any reload `/console/beleid` says the policies did not change since start; after `POST /policies/reload`
/// with one field rule of P4 changed it shows "Laatste wijziging van het beleid" with both hashes and that field's
/// old and new action (the new deny reason, which holds markup, escaped). A reload of the same files keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_page_shows_the_diff_of_the_last_reload() {
    for backend in backends() {
        let dir = TempDir::new("kp-policies-");
        copy_dir(&root().join("policies"), dir.path());
        let mut opts = GatewayOptions::new(backend);
        opts.policies = dir.path().to_owned();
        let gw = Gateway::start_with(opts);
        let fg = gw.client("fg-lyceum-zuid");
        let page = fg.get("/console/beleid").await;
        assert_eq!(page.status, 200, "{}", page.text());
        let html = page.text();
        assert!(
            html.contains("<h2 id=\"laatste-wijziging\">Laatste wijziging van het beleid</h2>"),
            "{html}"
        );
        assert!(
            html.contains("Het beleid is sinds de start van de gateway ("),
            "{html}"
        );
        let (_, ready) = gw.ops_get("/readyz");
        let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
        let hash_before = ready["policy_hash"].as_str().unwrap().to_owned();

        // P4: its first `consent` field rule becomes a deny whose reason holds markup.
        let (file, text, line, path) = first_consent_rule(dir.path(), "P4");
        let denied = line.replacen(
            "action = \"consent\"",
            "action = \"deny\", reason = \"<b>niet</b> & nooit\"",
            1,
        );
        std::fs::write(&file, text.replacen(&line, &denied, 1)).unwrap();
        let (status, body) = gw.ops_post("/policies/reload");
        assert_eq!(status, 200, "{body}");
        let reloaded: serde_json::Value = serde_json::from_str(&body).unwrap();
        let hash_after = reloaded["policy_hash"].as_str().unwrap().to_owned();
        assert_ne!(hash_after, hash_before);

        let row = format!(
            "<tr><td><code>{path}</code></td><td>verstrekken, alleen met toestemming</td>\
             <td>weigeren (reden: &lt;b&gt;niet&lt;/b&gt; &amp; nooit)</td></tr>"
        );
        for round in ["after the reload", "after reloading the same files"] {
            let html = fg.get("/console/beleid").await.text();
            assert!(
                html.contains("Laatste wijziging van het beleid"),
                "{round}: {html}"
            );
            assert!(
                !html.contains("sinds de start van de gateway"),
                "{round}: {html}"
            );
            assert!(
                html.contains(&format!(
                    "Oude beleid-hash <code>{hash_before}</code>, nieuwe beleid-hash <code>{hash_after}</code>."
                )),
                "{round}: {html}"
            );
            assert!(html.contains("<h3>Flow P4 — "), "{round}: {html}");
            assert!(
                html.contains("Verschillen: 1 flow gewijzigd."),
                "{round}: {html}"
            );
            assert!(html.contains(&row), "{round}: {row} not in {html}");
            assert!(!html.contains("<b>niet"), "{round}: unescaped: {html}");
            let (status, body) = gw.ops_post("/policies/reload");
            assert_eq!(status, 200, "{body}");
        }
    }
}
