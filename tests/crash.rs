//! Crash safety: several partners send bursts while the gateway is killed with SIGKILL at random moments and
//! restarted, again and again. After every restart:
//! - every acknowledged write is in the log: consent registrations (201, with their log position), refusals
//!   (403 `no-policy`, found by their unique purpose) and P1 messages (201, with an Idempotency-Key);
//! - every message a receiver fetched has a `message-disclosed` entry at the position the fetch names;
//! - every disclosure to the receiver has its own entry: each fetch it got a `message-fetched` entry (one per fetch
//!   response that held the message, so a message fetched twice needs two), each acknowledgement answered 200 a
//!   `message-acknowledged` entry at the position the answer names, and no message more than one of those;
//! - no message is delivered twice: one message id per Idempotency-Key (resends of unanswered requests use the
//!   same key), and nothing comes back after its acknowledgement;
//! - a recall answered 200 is logged (`message-recalled`), and its message was never handed to the receiver, before
//!   or after; a "niet voor ons" report answered 200 is logged (`message-misaddressed`) and its message never comes
//!   back; at the end every sent message is in exactly one state in its sender's outbox, the one the clients were
//!   told (recalled, misaddressed, acknowledged, or still to be fetched);
//! - `ketenpoort audit verify` passes (every 10 cycles and at the end).
//!
//! Recovery time is measured from starting the new process until `/readyz` answers 200.
//! `KETENPOORT_CRASH_CYCLES` (default 50) sets the cycles per backend, `KETENPOORT_CRASH_SEED` the random seed;
//! `scripts/crash-long.sh` runs the long version.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The sending partners; the first two are primary schools, which also send P1 messages to lyceum-zuid.
const SENDERS: [&str; 4] = [
    "obs-de-linde",
    "cbs-het-anker",
    "leerplicht-gemeente",
    "wijkteam-noord",
];
const P1_SENDERS: [&str; 2] = ["obs-de-linde", "cbs-het-anker"];
/// The receiver of the P1 messages, which fetches and acknowledges them.
const RECEIVER: &str = "lyceum-zuid";
const BURST: usize = 4;

/// xorshift64*: reproducible random moments from a printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A log position as a response names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Receipt {
    log_id: String,
    seq: u64,
    hash: String,
}

impl Receipt {
    fn from(v: &Value) -> Receipt {
        Receipt {
            log_id: v["log_id"].as_str().unwrap().to_owned(),
            seq: v["seq"].as_u64().unwrap(),
            hash: v["hash"].as_str().unwrap().to_owned(),
        }
    }
}

/// Everything the clients were told, across all cycles.
#[derive(Default)]
struct Ledger {
    /// Consent id -> (registering partner, its receipt).
    consents: HashMap<String, (String, Receipt)>,
    /// Unique purposes of refusals answered 403, with the sender.
    refusals: HashMap<String, String>,
    /// Idempotency-Key -> message id answered 201/200.
    sent: HashMap<String, String>,
    /// Message id -> receipt from the 201.
    sent_receipts: HashMap<String, Receipt>,
    /// Keys sent without an answer (the gateway died): resent with the same key after the restart.
    unanswered: Vec<(String, String)>,
    /// Message id -> receipt named by the fetch, for every message a receiver got.
    fetched: HashMap<String, Receipt>,
    /// Idempotency-Key (carried as actor.id) -> message ids fetched for it.
    fetched_per_key: HashMap<String, HashSet<String>>,
    /// Messages whose acknowledgement was answered 200.
    acked: HashSet<String>,
    /// Message id -> how many fetch responses held it (each one a disclosure with its own `message-fetched` entry).
    fetches: HashMap<String, usize>,
    /// Message id -> receipt named by the answer to its acknowledgement (the `message-acknowledged` entry).
    ack_receipts: HashMap<String, Receipt>,
    /// A message fetched again after its acknowledgement was answered.
    fetched_after_ack: usize,
    /// A resend answered with another message id than the first answer for its key.
    second_ids: usize,
    /// Messages whose recall was answered 200.
    recalled: HashSet<String>,
    /// Messages whose "niet voor ons" report was answered 200 (or 409 `already-reported`: an earlier, unanswered
    /// report committed).
    reported: HashSet<String>,
    /// A message fetched again after its report was answered.
    fetched_after_report: usize,
}

fn consent_body(n: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "subject": {"pgn": "628194821"}, "purpose": "vroegsignalering", "recipient": "wijkteam-noord",
        "categories": ["*"], "given_by": "ouder", "evidence": format!("formulier {n}"),
        "valid_from": "2026-01-01", "valid_until": "2030-12-31"}))
    .unwrap()
}

fn refusal_body(purpose: &str) -> Vec<u8> {
    let mut v = example_json("P1");
    v["purpose"] = json!(purpose);
    serde_json::to_vec(&v).unwrap()
}

fn delivery_body(key: &str) -> Vec<u8> {
    let mut v = example_json("P1");
    v["actor"]["id"] = json!(key);
    serde_json::to_vec(&v).unwrap()
}

enum Outcome {
    /// The gateway is gone (connection failed): stop this client.
    Gone,
    Answered,
}

/// One request of a burst; records what was acknowledged.
async fn one(
    client: &Client,
    partner: &str,
    tag: String,
    n: u64,
    kind: u64,
    sends_p1: bool,
    ledger: &Mutex<Ledger>,
) -> Outcome {
    match kind {
        0 => match client
            .try_request("POST", "/v1/consents", &[], Some(consent_body(n)))
            .await
        {
            Err(_) => Outcome::Gone,
            Ok(r) => {
                assert_eq!(r.status, 201, "consent: {}", r.text());
                let v = r.json();
                ledger.lock().unwrap().consents.insert(
                    v["consent_id"].as_str().unwrap().to_owned(),
                    (partner.to_owned(), Receipt::from(&v["disclosure"])),
                );
                Outcome::Answered
            }
        },
        1 if sends_p1 => {
            let key = format!("k-{tag}");
            ledger
                .lock()
                .unwrap()
                .unanswered
                .push((partner.to_owned(), key.clone()));
            match client
                .try_request(
                    "POST",
                    "/v1/messages",
                    &[("idempotency-key", &key)],
                    Some(delivery_body(&key)),
                )
                .await
            {
                Err(_) => Outcome::Gone,
                Ok(r) => {
                    record_sent(ledger, &key, &r);
                    // Every third message is recalled at once, racing the receiver's fetch.
                    if n % 3 == 0 {
                        let id = r.json()["message_id"].as_str().unwrap().to_owned();
                        let body = br#"{"reason": "verkeerde-ontvanger"}"#.to_vec();
                        match client
                            .try_request(
                                "POST",
                                &format!("/v1/outbox/{id}/recall"),
                                &[],
                                Some(body),
                            )
                            .await
                        {
                            Err(_) => return Outcome::Gone,
                            Ok(r) if r.status == 200 => {
                                ledger.lock().unwrap().recalled.insert(id);
                            }
                            Ok(r) => {
                                let code = r.code();
                                assert!(
                                    code == "already-fetched"
                                        || code == "not-recallable"
                                        || code == "mailbox-busy",
                                    "recall: {} {}",
                                    r.status,
                                    r.text()
                                );
                            }
                        }
                    }
                    Outcome::Answered
                }
            }
        }
        _ => {
            let purpose = format!("crash-{tag}");
            match client
                .try_request("POST", "/v1/messages", &[], Some(refusal_body(&purpose)))
                .await
            {
                Err(_) => Outcome::Gone,
                Ok(r) => {
                    assert_eq!(
                        (r.status, r.code()),
                        (403, "no-policy".to_owned()),
                        "{}",
                        r.text()
                    );
                    ledger
                        .lock()
                        .unwrap()
                        .refusals
                        .insert(purpose, partner.to_owned());
                    Outcome::Answered
                }
            }
        }
    }
}

fn record_sent(ledger: &Mutex<Ledger>, key: &str, r: &Response) {
    assert!(
        r.status == 201 || r.status == 200,
        "message: {} {}",
        r.status,
        r.text()
    );
    let v = r.json();
    let id = v["message_id"].as_str().unwrap().to_owned();
    let mut l = ledger.lock().unwrap();
    l.unanswered.retain(|(_, k)| k != key);
    match l.sent.get(key) {
        Some(first) if *first != id => l.second_ids += 1,
        Some(_) => {}
        None => {
            l.sent.insert(key.to_owned(), id.clone());
        }
    }
    l.sent_receipts.insert(id, Receipt::from(&v["disclosure"]));
}

/// A sending partner: bursts of `BURST` concurrent requests until the gateway dies or `stop` is set.
async fn sender(
    gw_addr: String,
    partner: &'static str,
    cycle: usize,
    seed: u64,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
) {
    let client = Arc::new(Client::new(&gw_addr, partner));
    let mut rng = Rng(seed | 1);
    let mut n = 0u64;
    let sends_p1 = P1_SENDERS.contains(&partner);
    while !stop.load(Ordering::Relaxed) {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..BURST {
            n += 1;
            let kind = rng.below(3);
            let tag = format!("{seed:x}-{cycle}-{partner}-{n}");
            let (client, ledger) = (client.clone(), ledger.clone());
            set.spawn(async move { one(&client, partner, tag, n, kind, sends_p1, &ledger).await });
        }
        let mut gone = false;
        while let Some(r) = set.join_next().await {
            gone |= matches!(r.unwrap(), Outcome::Gone);
        }
        if gone {
            return;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(20))).await;
    }
}

/// The receiver: fetches its inbox and acknowledges what it got, until the gateway dies or `stop` is set.
async fn receiver(gw_addr: String, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let client = Client::new(&gw_addr, RECEIVER);
    loop {
        let Ok(r) = client
            .try_request("GET", "/v1/inbox?limit=100", &[], None)
            .await
        else {
            return;
        };
        assert_eq!(r.status, 200, "{}", r.text());
        let messages = r.json()["messages"].as_array().unwrap().clone();
        {
            let mut l = ledger.lock().unwrap();
            for m in &messages {
                let id = m["message_id"].as_str().unwrap().to_owned();
                if l.acked.contains(&id) {
                    l.fetched_after_ack += 1;
                }
                if l.reported.contains(&id) {
                    l.fetched_after_report += 1;
                }
                let key = m["actor"]["id"].as_str().unwrap_or_default().to_owned();
                l.fetched_per_key.entry(key).or_default().insert(id.clone());
                *l.fetches.entry(id.clone()).or_default() += 1;
                l.fetched.insert(id, Receipt::from(&m["disclosure"]));
            }
        }
        for m in &messages {
            let id = m["message_id"].as_str().unwrap();
            // About one in four messages (by its id, so a refetch after a crash decides the same) is reported as not
            // for the receiver instead of acknowledged.
            if id.ends_with(['0', '1', '2', '3']) {
                let body = br#"{"reason": "verkeerde-school", "copies_deleted": true}"#.to_vec();
                match client
                    .try_request(
                        "POST",
                        &format!("/v1/inbox/{id}/misaddressed"),
                        &[],
                        Some(body),
                    )
                    .await
                {
                    Err(_) => return,
                    Ok(r) => {
                        assert!(
                            r.status == 200 || (r.status == 409 && r.code() == "already-reported"),
                            "report: {} {}",
                            r.status,
                            r.text()
                        );
                        ledger.lock().unwrap().reported.insert(id.to_owned());
                    }
                }
                continue;
            }
            match client
                .try_request("POST", &format!("/v1/inbox/{id}/ack"), &[], None)
                .await
            {
                Err(_) => return,
                Ok(r) => {
                    assert_eq!(r.status, 200, "ack: {}", r.text());
                    let receipt = Receipt::from(&r.json()["disclosure"]);
                    let mut l = ledger.lock().unwrap();
                    l.acked.insert(id.to_owned());
                    l.ack_receipts.insert(id.to_owned(), receipt);
                }
            }
        }
        if messages.is_empty() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Resends every request that got no answer, with its key, until answered.
async fn resend_unanswered(gw: &Gateway, ledger: &Mutex<Ledger>) {
    let pending = std::mem::take(&mut ledger.lock().unwrap().unanswered);
    for (partner, key) in pending {
        let r = gw
            .client(&partner)
            .request(
                "POST",
                "/v1/messages",
                &[("idempotency-key", &key)],
                Some(delivery_body(&key)),
            )
            .await;
        record_sent(ledger, &key, &r);
    }
}

#[derive(Debug, Default)]
struct Findings {
    acknowledged_missing: usize,
    delivered_unlogged: usize,
    /// Fetch responses to the receiver without their own `message-fetched` entry.
    fetches_unlogged: usize,
    /// Acknowledgements answered 200 without their `message-acknowledged` entry at the answered position.
    acks_unlogged: usize,
    duplicates: usize,
    /// A message recalled (200) that the receiver got, or a recall or report answered 200 without its entry.
    recall_or_report_broken: usize,
}

/// Compares the ledger with the log as it is in the database now.
async fn check(gw: &Gateway, ledger: &Mutex<Ledger>) -> Findings {
    let entries = gw.log_entries().await;
    let by_pos: HashMap<(String, u64), (&str, String, Option<&str>)> = entries
        .iter()
        .map(|(e, d)| {
            (
                (e.log_id.clone(), e.seq),
                (
                    e.event.as_str(),
                    hex::encode(e.leaf_hash),
                    d.message_id.as_deref(),
                ),
            )
        })
        .collect();
    let refused: HashSet<(&str, &str)> = entries
        .iter()
        .filter(|(e, _)| e.event == "message-refused" && e.outcome == "no-policy")
        .filter_map(|(e, _)| Some((e.partner.as_str(), e.purpose.as_deref()?)))
        .collect();
    let disclosed: HashSet<&str> = entries
        .iter()
        .filter(|(e, _)| e.event == "message-disclosed")
        .filter_map(|(_, d)| d.message_id.as_deref())
        .collect();
    // The receiver's own disclosures: `message-fetched` and `message-acknowledged` entries per message id.
    let mut fetch_entries: HashMap<&str, usize> = HashMap::new();
    let mut ack_entries: HashMap<&str, usize> = HashMap::new();
    for (e, d) in &entries {
        let (Some(id), true) = (d.message_id.as_deref(), e.partner == RECEIVER) else {
            continue;
        };
        match e.event.as_str() {
            "message-fetched" => *fetch_entries.entry(id).or_default() += 1,
            "message-acknowledged" => *ack_entries.entry(id).or_default() += 1,
            _ => {}
        }
    }
    let l = ledger.lock().unwrap();
    let mut f = Findings::default();
    let at = |r: &Receipt| by_pos.get(&(r.log_id.clone(), r.seq));
    for (id, (_, r)) in &l.consents {
        match at(r) {
            Some((event, hash, _)) if *event == "consent-recorded" && *hash == r.hash => {}
            other => {
                eprintln!("acknowledged consent {id} missing: {other:?}");
                f.acknowledged_missing += 1;
            }
        }
    }
    for (purpose, partner) in &l.refusals {
        if !refused.contains(&(partner.as_str(), purpose.as_str())) {
            eprintln!("acknowledged refusal {purpose} of {partner} missing");
            f.acknowledged_missing += 1;
        }
    }
    for (id, r) in &l.sent_receipts {
        match at(r) {
            Some((event, hash, Some(mid)))
                if *event == "message-disclosed" && *hash == r.hash && *mid == id => {}
            other => {
                eprintln!("acknowledged message {id} missing: {other:?}");
                f.acknowledged_missing += 1;
            }
        }
    }
    for (id, r) in &l.fetched {
        let logged = matches!(at(r), Some((event, hash, Some(mid))) if *event == "message-disclosed" && *hash == r.hash && *mid == id);
        if !logged || !disclosed.contains(id.as_str()) {
            eprintln!("fetched message {id} has no disclosure entry at {r:?}");
            f.delivered_unlogged += 1;
        }
    }
    for (id, fetched) in &l.fetches {
        let logged = fetch_entries.get(id.as_str()).copied().unwrap_or(0);
        if logged < *fetched {
            eprintln!(
                "message {id} was fetched {fetched} times but has {logged} message-fetched entries"
            );
            f.fetches_unlogged += fetched - logged;
        }
    }
    for (id, r) in &l.ack_receipts {
        let logged = matches!(at(r), Some((event, hash, Some(mid))) if *event == "message-acknowledged" && *hash == r.hash && *mid == id);
        if !logged {
            eprintln!("acknowledged message {id} has no message-acknowledged entry at {r:?}");
            f.acks_unlogged += 1;
        }
    }
    let logged_ok = |event: &str| -> HashSet<&str> {
        entries
            .iter()
            .filter(|(e, _)| e.event == event && e.outcome == "ok")
            .filter_map(|(_, d)| d.message_id.as_deref())
            .collect()
    };
    let (recall_entries, report_entries) = (
        logged_ok("message-recalled"),
        logged_ok("message-misaddressed"),
    );
    for id in &l.recalled {
        if l.fetched.contains_key(id) {
            eprintln!("message {id} was recalled (200) and the receiver got it");
            f.recall_or_report_broken += 1;
        }
        if !recall_entries.contains(id.as_str()) {
            eprintln!("recall of {id} answered 200 has no message-recalled entry");
            f.recall_or_report_broken += 1;
        }
    }
    for id in &l.reported {
        if !report_entries.contains(id.as_str()) {
            eprintln!("report of {id} answered has no message-misaddressed entry");
            f.recall_or_report_broken += 1;
        }
    }
    f.duplicates += l.fetched_after_report;
    let acked_twice = ack_entries.values().filter(|n| **n > 1).count();
    if acked_twice > 0 {
        eprintln!("{acked_twice} messages have more than one message-acknowledged entry");
    }
    f.duplicates = acked_twice
        + l.second_ids
        + l.fetched_after_ack
        + l.fetched_per_key
            .values()
            .map(|ids| ids.len().saturating_sub(1))
            .sum::<usize>();
    f
}

/// Message id -> outbox status, for every message of the P1 senders.
async fn outbox_states(gw: &Gateway) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for partner in P1_SENDERS {
        let client = gw.client(partner);
        let mut cursor = String::new();
        loop {
            let r = client
                .get(&format!("/v1/outbox?limit=500&cursor={cursor}"))
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
            let v = r.json();
            for m in v["messages"].as_array().unwrap() {
                out.insert(
                    m["message_id"].as_str().unwrap().to_owned(),
                    m["status"].as_str().unwrap().to_owned(),
                );
            }
            match v["next_cursor"].as_str() {
                Some(c) => cursor = c.to_owned(),
                None => break,
            }
        }
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(backend: Backend, cycles: usize, seed: u64) {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = Rng(seed);
    let mut gw = Gateway::start(backend);
    gw.wait_ready();
    let mut recoveries = Vec::new();
    let started = Instant::now();
    for cycle in 0..=cycles {
        let last = cycle == cycles;
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (i, partner) in SENDERS.into_iter().enumerate() {
            tasks.push(tokio::spawn(sender(
                gw.partner_addr.clone(),
                partner,
                cycle,
                seed ^ ((cycle as u64) << 8) ^ i as u64,
                ledger.clone(),
                stop.clone(),
            )));
        }
        tasks.push(tokio::spawn(receiver(
            gw.partner_addr.clone(),
            ledger.clone(),
            stop.clone(),
        )));
        tokio::time::sleep(Duration::from_millis(50 + rng.below(550))).await;
        if last {
            // A clean end: let everyone finish, resend what is unanswered, drain the inbox.
            stop.store(true, Ordering::Relaxed);
            for t in tasks {
                t.await.unwrap();
            }
            resend_unanswered(&gw, &ledger).await;
            receiver(gw.partner_addr.clone(), ledger.clone(), stop.clone()).await;
            break;
        }
        let (next, recovery) = tokio::task::spawn_blocking(move || gw.crash_restart())
            .await
            .unwrap();
        gw = next;
        recoveries.push(recovery);
        for t in tasks {
            t.await.unwrap();
        }
        resend_unanswered(&gw, &ledger).await;
        let f = check(&gw, &ledger).await;
        assert_eq!(
            (
                f.acknowledged_missing,
                f.delivered_unlogged,
                f.fetches_unlogged,
                f.acks_unlogged,
                f.duplicates,
                f.recall_or_report_broken
            ),
            (0, 0, 0, 0, 0, 0),
            "cycle {cycle} (seed {seed:#x}): {f:?}"
        );
        if cycle % 10 == 9 {
            let (ok, out) = gw.audit_verify();
            assert!(ok, "cycle {cycle} (seed {seed:#x}): {out}");
        }
    }
    let f = check(&gw, &ledger).await;
    let states = outbox_states(&gw).await;
    let (ok, out) = gw.audit_verify();
    let l = ledger.lock().unwrap();
    // Each message is in exactly one state, the one its clients were told.
    let mut wrong_state = 0;
    for id in l.sent.values() {
        let state = states.get(id).map(String::as_str);
        let expected = if l.recalled.contains(id) {
            Some("recalled")
        } else if l.reported.contains(id) {
            Some("misaddressed")
        } else if l.acked.contains(id) {
            Some("acknowledged")
        } else {
            // A recall whose answer was lost in a crash may have committed: then it is recalled and never fetched.
            (!l.fetched.contains_key(id)).then_some("recalled")
        };
        if state.is_none() || (expected.is_some() && state != expected) {
            eprintln!("message {id}: outbox says {state:?}, the clients were told {expected:?}");
            wrong_state += 1;
        }
    }
    let lost = l
        .sent
        .values()
        .filter(|id| {
            !l.fetched.contains_key(*id) && states.get(*id).map(String::as_str) != Some("recalled")
        })
        .count();
    recoveries.sort();
    eprintln!(
        "crash[{backend:?}] seed {seed:#x}: {cycles} kill -9 cycles in {:.0} s; acknowledged: {} consents, {} refusals, \
         {} messages ({} fetched in {} fetch responses, {} acked); acknowledged-but-missing {}, delivered-but-unlogged {}, \
         fetches-unlogged {}, acks-unlogged {}, duplicates {}, sent-but-never-fetched {lost}; recalled {} reported {} \
         (broken {}, wrong outbox state {wrong_state}); audit verify {}; \
         recovery p50 {:?} p99 {:?} max {:?}\n{}",
        started.elapsed().as_secs_f64(),
        l.consents.len(),
        l.refusals.len(),
        l.sent.len(),
        l.fetched.len(),
        l.fetches.values().sum::<usize>(),
        l.acked.len(),
        f.acknowledged_missing,
        f.delivered_unlogged,
        f.fetches_unlogged,
        f.acks_unlogged,
        f.duplicates,
        l.recalled.len(),
        l.reported.len(),
        f.recall_or_report_broken,
        if ok { "ok" } else { "FAILED" },
        percentile(&recoveries, 0.5),
        percentile(&recoveries, 0.99),
        recoveries.last().unwrap(),
        out.trim()
    );
    assert!(ok, "{out}");
    assert_eq!(
        (
            f.acknowledged_missing,
            f.delivered_unlogged,
            f.fetches_unlogged,
            f.acks_unlogged,
            f.duplicates,
            lost,
            f.recall_or_report_broken,
            wrong_state
        ),
        (0, 0, 0, 0, 0, 0, 0, 0),
        "{f:?}"
    );
    assert!(
        !l.recalled.is_empty() && !l.reported.is_empty(),
        "no recall or no report was answered: the workload does not exercise them"
    );
    assert!(
        !l.ack_receipts.is_empty(),
        "no acknowledgement was answered"
    );
    assert!(
        !l.consents.is_empty() && !l.refusals.is_empty(),
        "the workload acknowledged nothing"
    );
    assert!(!l.sent.is_empty(), "no message was acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_no_acknowledged_entry_and_delivers_nothing_twice() {
    let cycles = std::env::var("KETENPOORT_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed = std::env::var("KETENPOORT_CRASH_SEED")
        .ok()
        .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    for backend in backends() {
        run(backend, cycles, seed).await;
    }
}
