//! Policy reload: a bad policy set is refused whole and the running one stays (ops POST and SIGHUP);
//! a good one replaces it, and its hash is what the next disclosure records.

mod common;

use common::*;

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

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
    assert_ne!(v["policy_hash"].as_str().unwrap(), hash_before);
    let r = c.post("/v1/messages", &example("P1")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.code(), "no-policy");
    let (ok, out) = gw.audit_verify();
    assert!(ok, "{out}");
}
