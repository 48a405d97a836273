//! Per-partner quotas: governor buckets keyed by the certificate's partner, with overrides in partners.toml.
//! Fairness: one partner flooding at ten times its quota gets 429 + Retry-After while three others, within
//! their own quotas, get no 429 at all.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// certs-example/partners.toml with `rate_per_second`/`burst` set for one partner.
fn partners_with_override(dir: &TempDir, id: &str, rate: u32, burst: u32) -> std::path::PathBuf {
    let text = std::fs::read_to_string(certs_dir().join("partners.toml")).unwrap();
    let marker = format!("id = \"{id}\"\n");
    assert!(text.contains(&marker));
    let text = text.replacen(
        &marker,
        &format!("{marker}rate_per_second = {rate}\nburst = {burst}\n"),
        1,
    );
    let path = dir.path().join("partners.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_partner_is_limited_and_the_others_get_no_429() {
    const FLOOD_RATE: u32 = 2;
    const FLOOD_BURST: u32 = 2;
    let dir = TempDir::new("kp-quota-");
    let mut opts = GatewayOptions::new(Backend::Sqlite);
    opts.partners = Some(partners_with_override(
        &dir,
        "obs-de-linde",
        FLOOD_RATE,
        FLOOD_BURST,
    ));
    // Everyone else: 5 requests/s, burst 5.
    opts.extra_config = "[limits]\nrate_per_second = 5\nburst = 5".into();
    let gw = Gateway::start_with(opts);

    // The override applies: the third immediate request of the flooder is refused (the default burst is 5).
    let flooder = gw.client("obs-de-linde");
    let mut conn = flooder.connect().await.unwrap();
    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(conn.request("GET", "/v1/inbox", &[], None).await.unwrap());
    }
    assert_eq!(
        first.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200, 429]
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The flood: 20 requests/s, ten times the flooder's rate, for 4 seconds; three others at 2.5/s (half theirs).
    let started = Instant::now();
    let flood = tokio::spawn(async move {
        let mut tick =
            tokio::time::interval(Duration::from_millis(1000 / (10 * FLOOD_RATE as u64)));
        let (mut ok, mut limited) = (0u32, 0u32);
        for _ in 0..(40 * FLOOD_RATE) {
            tick.tick().await;
            let r = conn.request("GET", "/v1/inbox", &[], None).await.unwrap();
            match r.status {
                200 => ok += 1,
                429 => {
                    assert_eq!(r.code(), "rate-limited");
                    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
                    assert!(retry >= 1);
                    limited += 1;
                }
                s => panic!("flooder got {s}: {}", r.text()),
            }
        }
        (ok, limited)
    });
    let mut others = Vec::new();
    for partner in ["lyceum-zuid", "cbs-het-anker", "wijkteam-noord"] {
        let client = gw.client(partner);
        others.push(tokio::spawn(async move {
            let mut conn = client.connect().await.unwrap();
            let mut tick = tokio::time::interval(Duration::from_millis(400));
            let mut latencies = Vec::new();
            let mut statuses = Vec::new();
            for i in 0..10 {
                tick.tick().await;
                let t = Instant::now();
                let r = if i % 2 == 0 {
                    conn.request("GET", "/v1/inbox", &[], None).await.unwrap()
                } else {
                    conn.request("GET", "/v1/consents", &[], None)
                        .await
                        .unwrap()
                };
                latencies.push(t.elapsed());
                statuses.push(r.status);
            }
            (partner, statuses, latencies)
        }));
    }
    let (ok, limited) = flood.await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let mut all = Vec::new();
    for h in others {
        let (partner, statuses, latencies) = h.await.unwrap();
        assert!(
            statuses.iter().all(|s| *s == 200),
            "{partner} was limited by another partner's flood: {statuses:?}"
        );
        all.extend(latencies);
    }
    all.sort();
    eprintln!(
        "flooder: {ok} admitted, {limited} refused with 429 in {elapsed:.1} s; others: {} requests, no 429, \
         latency p50 {:?} p99 {:?}",
        all.len(),
        percentile(&all, 0.5),
        percentile(&all, 0.99)
    );
    assert!(limited > 0, "the flood was never limited");
    // Never more than the bucket allows over the time it ran (one extra for the boundary).
    let allowed = FLOOD_BURST as f64 + FLOOD_RATE as f64 * elapsed + 1.0;
    assert!(
        f64::from(ok) <= allowed,
        "{ok} admitted, the quota allows {allowed:.0}"
    );
    let (_, metrics) = gw.ops_get("/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("rate-limited") && !l.ends_with(" 0")),
        "429s are not counted: {metrics}"
    );
}

/// A request refused with 429 is not written to the disclosure log (a flood must not be able to fill it) and
/// delivers nothing: after a run of messages on one connection, some of them over the quota, the log holds
/// exactly one new entry per message answered 201 or 403 and none for a 429, and the receiver's inbox exactly the
/// messages answered 201.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_requests_are_not_logged_and_deliver_nothing() {
    const LIMITED: usize = 5;
    let mut opts = GatewayOptions::new(Backend::Sqlite);
    opts.extra_config = "[limits]\nrate_per_second = 1\nburst = 2".into();
    let gw = Gateway::start_with(opts);
    let before = gw.log_entries().await.len();
    let mut refused = example_json("P1");
    refused["purpose"] = serde_json::json!("geen-enkele-flow");
    let refused = serde_json::to_vec(&refused).unwrap();
    let mut conn = gw.client("obs-de-linde").connect().await.unwrap();
    let (mut delivered, mut refused_logged, mut limited) = (0usize, 0usize, 0usize);
    // Back to back until LIMITED requests were refused with 429 (a request that takes a second or more lets the
    // bucket refill; the bound only keeps a broken quota from looping forever).
    for i in 0..500 {
        if limited == LIMITED {
            break;
        }
        let body = if i % 2 == 0 {
            example("P1")
        } else {
            refused.clone()
        };
        let r = conn
            .request("POST", "/v1/messages", &[], Some(body))
            .await
            .unwrap();
        match r.status {
            201 => delivered += 1,
            403 => {
                assert_eq!(r.code(), "no-policy");
                refused_logged += 1;
            }
            429 => {
                assert_eq!(r.code(), "rate-limited");
                limited += 1;
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    assert_eq!(limited, LIMITED, "the quota never refused a request");
    assert!(delivered > 0, "no P1 got through the quota");
    let entries = gw.log_entries().await;
    let new: Vec<&str> = entries[before..]
        .iter()
        .map(|(e, _)| e.event.as_str())
        .collect();
    assert_eq!(
        new.len(),
        delivered + refused_logged,
        "{delivered} delivered, {refused_logged} refused with 403, {limited} with 429; new entries {new:?}"
    );
    assert_eq!(
        new.iter().filter(|e| **e == "message-disclosed").count(),
        delivered,
        "{new:?}"
    );
    assert!(
        entries.iter().all(|(e, _)| e.outcome != "rate-limited"),
        "a 429 was logged"
    );
    assert_eq!(gw.client("lyceum-zuid").inbox().await.len(), delivered);
}
