//! Push delivery: the gateway POSTs each new message to its receiver's endpoint (`push` in partners.toml) over mutual
//! TLS with its own client certificate, so the receiver need not poll. A push is a fetch on the receiver's behalf: the
//! message is opened by `exchange::delivery::prepare_fetch` (consent re-checked and stripped as for a pull), and an
//! accepted push (2xx) is recorded by the same `message-fetched` entry and `ClaimFetched` as a pull, in one commit
//! with the end of the queue row.
//!
//! The queue is the `push_queue` table (a row per message, added in the commit of its disclosure), so it survives a
//! restart. An instance leases one due row at a time (`Store::lease_push`: the row and its message locked, an attempt
//! counted, the row marked in doubt); a failed attempt is tried again after an exponential, jittered backoff until
//! `push.max_attempts`, after which the push gives up and the message waits in the pull inbox as every message does.
//! A recall, a "niet voor ons" report, an acknowledgement or the retention purge removes the row in its own commit;
//! a recall is refused while an attempt may have reached the receiver (`in_doubt`).
//!
//! Exactly-once: the receiver gets `Idempotency-Key` = the message id and must accept each key once. The gateway
//! records the fetch only after a 2xx, so a crash between the receiver's 2xx and that commit makes the next attempt
//! POST the same message with the same key again: at least once on the wire, exactly once at a receiver that honours
//! the key, and exactly one `message-fetched` entry for the push.
//!
//! It must never hand a message out without committing its fetch entry after the receiver accepted it, never record a
//! push the receiver did not accept, and never put a payload value or anything the receiver wrote in a log entry, a
//! trace, an error or a metric (outcomes are fixed codes).

pub mod wire;

use crate::audit::entry::TraceRef;
use crate::audit::writer::{now_ms, AuditError};
use crate::exchange::delivery::{prepare_fetch, Fetch};
use crate::gateway::Gateway;
use crate::identity::{Caller, PartnerInfo};
use crate::store::{Mutation, PushLease, PushRelease};
use crate::trace::TraceContext;
use hyper::body::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use wire::{Answer, PushRequest};

/// The TLS client configuration per push partner, built once at start-up (a bad CA or client certificate stops the
/// start).
pub struct Pusher {
    clients: HashMap<String, Arc<rustls::ClientConfig>>,
}

impl Pusher {
    /// `None` when no partner has a push endpoint.
    pub fn new(gw: &Gateway) -> Result<Option<Pusher>, String> {
        let mut clients = HashMap::new();
        for info in gw.partners.all() {
            let Some(ep) = &info.push else { continue };
            let (Some(cert), Some(key)) = (&gw.config.push.client_cert, &gw.config.push.client_key)
            else {
                return Err(format!(
                    "partner {} has a push endpoint, but [push] client_cert and client_key are not set",
                    info.partner.id
                ));
            };
            let config = crate::tls::push_client_config(&ep.ca, cert, key)
                .map_err(|e| format!("partner {}: {e}", info.partner.id))?;
            clients.insert(info.partner.id.clone(), config);
        }
        Ok((!clients.is_empty()).then_some(Pusher { clients }))
    }
}

/// The wait before attempt `attempt + 1` after attempt `attempt` (from 1) failed: `base · 2^(attempt-1)` capped at
/// `max`, drawn between half of it and all of it (`jitter` in [0, 1]).
pub fn backoff_ms(attempt: i64, base_ms: u64, max_ms: u64, jitter: f64) -> u64 {
    let shift = attempt.clamp(1, 40) as u32 - 1;
    let full = base_ms.saturating_mul(1u64 << shift.min(32)).min(max_ms);
    let half = full / 2;
    half + (half as f64 * jitter.clamp(0.0, 1.0)) as u64
}

fn jitter() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 2];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX)
}

/// The worker: frees this instance's leases from before a restart, then leases due pushes (up to
/// `push.concurrency` at once) until `stop` changes; idle, it removes pushes made moot by a pull fetch and waits
/// `push.poll_ms` or until a send wakes it.
pub async fn run(gw: Arc<Gateway>, pusher: Pusher, mut stop: watch::Receiver<bool>) {
    let pusher = Arc::new(pusher);
    let owner: Arc<str> = gw.writer.log_id().into();
    match gw.store.release_leases(&owner).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            released = n,
            "push: leases of this instance's previous process released"
        ),
        Err(e) => tracing::warn!(error = %e, "push: could not release earlier leases; they expire"),
    }
    let cfg = gw.config.push.clone();
    let lease_ms = (cfg.connect_timeout_ms + cfg.response_timeout_ms) as i64 + 5_000;
    loop {
        let mut running = tokio::task::JoinSet::new();
        while running.len() < cfg.concurrency {
            let now = now_ms();
            match gw.store.lease_push(&owner, now, now + lease_ms).await {
                Ok(Some(lease)) => {
                    running.spawn(attempt(gw.clone(), pusher.clone(), owner.clone(), lease));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "push: the queue cannot be read; trying again");
                    break;
                }
            }
        }
        if running.is_empty() {
            match gw.store.sweep_pushes(now_ms()).await {
                Ok(0) => {}
                Ok(n) => {
                    for _ in 0..n {
                        gw.metrics.push("stopped");
                    }
                    tracing::info!(
                        stopped = n,
                        "push: stopped, the messages were fetched by pull"
                    );
                }
                Err(e) => tracing::warn!(error = %e, "push: the queue cannot be swept"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(cfg.poll_ms)) => {}
                _ = gw.push_wake.notified() => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        loop {
            tokio::select! {
                next = running.join_next() => if next.is_none() { break },
                _ = stop.changed() => return,
            }
        }
    }
}

/// The trace of a push: the sender's trace (sealed with the message) with a new span of the gateway's, and the
/// exchange's FSC transaction id; a new trace when the message has none.
fn push_trace(message: &serde_json::Value) -> TraceContext {
    let stored = message.get("trace");
    let field = |k: &str| {
        stored
            .and_then(|t| t.get(k))
            .and_then(serde_json::Value::as_str)
            .map(str::as_bytes)
    };
    TraceContext::from_headers(field("traceparent"), field("fsc_transaction_id"), now_ms())
        .or_else(|_| TraceContext::from_headers(None, None, now_ms()))
        .expect("a new trace context is always valid")
}

/// One leased attempt, start to end: open the message as a fetch, POST it, and record what happened.
async fn attempt(gw: Arc<Gateway>, pusher: Arc<Pusher>, owner: Arc<str>, lease: PushLease) {
    let id = lease.message_id.clone();
    let row = match gw.store.message(&id).await {
        Ok(Some(row)) if row.fetch_count == 0 => row,
        Ok(_) => {
            // Purged or fetched by pull since it was queued: nothing to push.
            if let Ok(true) = gw.store.drop_push(&id, &owner, lease.attempt).await {
                gw.metrics.push("stopped");
                tracing::info!(message_id = %id, "push: stopped, the message was fetched or purged");
            }
            return;
        }
        Err(e) => {
            tracing::warn!(message_id = %id, error = %e, "push: the message cannot be read");
            retry(&gw, &owner, &lease, "store-unavailable", false).await;
            return;
        }
    };
    let (Some(info), Some(tls)) = (
        gw.partners.by_id(&lease.receiver).cloned(),
        pusher.clients.get(&lease.receiver).cloned(),
    ) else {
        give_up(&gw, &owner, &lease, "no-endpoint").await;
        return;
    };
    let Some(endpoint) = info.push.clone() else {
        give_up(&gw, &owner, &lease, "no-endpoint").await;
        return;
    };
    let today = time::OffsetDateTime::now_utc().date();
    let mut caller = receiver_caller(&info);
    let fetch = match prepare_fetch(&gw, &caller, &row, today).await {
        Ok(f) => f,
        Err(r) => {
            tracing::warn!(message_id = %id, code = r.code.as_str(), "push: the message cannot be opened");
            retry(&gw, &owner, &lease, "open-failed", false).await;
            return;
        }
    };
    let trace = push_trace(&fetch.message);
    let Ok(body) = serde_json::to_vec(&fetch.message) else {
        retry(&gw, &owner, &lease, "open-failed", false).await;
        return;
    };
    let headers = [
        ("idempotency-key", id.clone()),
        ("traceparent", trace.traceparent()),
        ("fsc-transaction-id", trace.transaction_id.clone()),
    ];
    let cfg = &gw.config.push;
    let answer = wire::post(
        tls,
        PushRequest {
            endpoint: &endpoint,
            headers: &headers,
            body: Bytes::from(body),
        },
        Duration::from_millis(cfg.connect_timeout_ms),
        Duration::from_millis(cfg.response_timeout_ms),
    )
    .await;
    match answer {
        Answer::Status { status, server } if (200..300).contains(&status) => {
            caller.fingerprint = server;
            caller.trace = Some(trace);
            record_accepted(&gw, &caller, &owner, &lease, fetch).await;
        }
        Answer::Status { status, .. } => {
            tracing::info!(message_id = %id, receiver = %lease.receiver, status, attempt = lease.attempt, "push: not accepted");
            after_failure(&gw, &owner, &lease, status_code(status), false).await;
        }
        Answer::Failed {
            code,
            may_have_reached,
        } => {
            tracing::info!(message_id = %id, receiver = %lease.receiver, outcome = code, attempt = lease.attempt, "push: no answer");
            after_failure(&gw, &owner, &lease, code, may_have_reached).await;
        }
    }
}

/// The receiver as the caller of the fetch the push makes for it; its `fingerprint` becomes the endpoint's server
/// certificate once the push is accepted (the log entry names where the message went).
fn receiver_caller(info: &Arc<PartnerInfo>) -> Caller {
    Caller {
        info: info.clone(),
        fingerprint: String::new(),
        trace: None,
    }
}

/// A status code as a fixed outcome code: the common ones by number, the rest by class.
fn status_code(status: u16) -> &'static str {
    const EXACT: [(u16, &str); 7] = [
        (408, "status-408"),
        (409, "status-409"),
        (429, "status-429"),
        (500, "status-500"),
        (502, "status-502"),
        (503, "status-503"),
        (504, "status-504"),
    ];
    if let Some((_, code)) = EXACT.iter().find(|(s, _)| *s == status) {
        return code;
    }
    match status / 100 {
        1 => "status-1xx",
        3 => "status-3xx",
        4 => "status-4xx",
        5 => "status-5xx",
        _ => "status-other",
    }
}

/// How many times an accepted push tries to commit its fetch after losing a race (a pull fetch of the same message
/// counted first) before it leaves it to the instance that won.
const COMMIT_ATTEMPTS: u32 = 10;

/// The receiver accepted: the `message-fetched` entry, the fetch claim and the end of the queue row in one commit.
async fn record_accepted(
    gw: &Gateway,
    caller: &Caller,
    owner: &str,
    lease: &PushLease,
    fetch: Fetch,
) {
    let Fetch {
        mut entry,
        mut claim,
        ..
    } = fetch;
    entry.trace = caller.trace.as_ref().map(|t| TraceRef {
        trace_id: t.trace_id.clone(),
        span_id: t.span_id.clone(),
        parent_span_id: t.parent_span_id.clone(),
        transaction_id: t.transaction_id.clone(),
    });
    entry.cert_fingerprint = caller.fingerprint.clone();
    entry.detail = Some("push".into());
    for attempt in 0..COMMIT_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
            // A pull fetch may have counted first: claim the count as it is now (a second delivery, truthfully
            // recorded); a message purged meanwhile ends here.
            match gw.store.message(&lease.message_id).await {
                Ok(Some(row)) => claim.seen = row.fetch_count,
                Ok(None) => break,
                Err(_) => continue,
            }
        }
        let mutations = vec![
            Mutation::ClaimFetched {
                claims: vec![claim.clone()],
                at_ms: now_ms(),
            },
            Mutation::EndPush {
                id: lease.message_id.clone(),
                owner: owner.to_owned(),
                attempt: lease.attempt,
            },
        ];
        match gw.writer.append(vec![entry.clone()], mutations).await {
            Ok(_) => {
                gw.metrics.push("delivered");
                tracing::info!(message_id = %lease.message_id, receiver = %lease.receiver, attempt = lease.attempt, "push: accepted by the receiver, logged as fetched");
                return;
            }
            Err(AuditError::Conflict(_)) => continue,
            Err(e) => {
                // Accepted but not recorded: the same message is POSTed again with the same Idempotency-Key, and
                // recorded then. Never given up: the receiver has it.
                tracing::error!(message_id = %lease.message_id, error = %e, "push: accepted, but the fetch could not be logged; the push is repeated");
                retry_unlimited(gw, owner, lease, "log-unavailable").await;
                return;
            }
        }
    }
    gw.metrics.push("stopped");
    tracing::info!(message_id = %lease.message_id, "push: accepted, but another instance recorded it or the message ended meanwhile");
}

async fn after_failure(
    gw: &Gateway,
    owner: &str,
    lease: &PushLease,
    outcome: &'static str,
    may_have_reached: bool,
) {
    if lease.attempt >= i64::from(gw.config.push.max_attempts) {
        release(gw, owner, lease, outcome, may_have_reached, None).await;
        gw.metrics.push("gave-up");
        tracing::warn!(message_id = %lease.message_id, receiver = %lease.receiver, attempts = lease.attempt, outcome, "push: gave up; the message waits in the receiver's pull inbox");
    } else {
        retry(gw, owner, lease, outcome, may_have_reached).await;
    }
}

async fn retry(
    gw: &Gateway,
    owner: &str,
    lease: &PushLease,
    outcome: &'static str,
    may_have_reached: bool,
) {
    let next = next_attempt_ms(gw, lease);
    if release(gw, owner, lease, outcome, may_have_reached, Some(next)).await {
        gw.metrics.push("retry");
    }
}

/// When the next attempt is due: now plus the jittered backoff of this attempt.
fn next_attempt_ms(gw: &Gateway, lease: &PushLease) -> i64 {
    let cfg = &gw.config.push;
    let wait = backoff_ms(
        lease.attempt,
        cfg.backoff_base_ms,
        cfg.backoff_max_ms,
        jitter(),
    );
    now_ms() + wait as i64
}

async fn retry_unlimited(gw: &Gateway, owner: &str, lease: &PushLease, outcome: &'static str) {
    if release(
        gw,
        owner,
        lease,
        outcome,
        true,
        Some(next_attempt_ms(gw, lease)),
    )
    .await
    {
        gw.metrics.push("retry");
    }
}

async fn give_up(gw: &Gateway, owner: &str, lease: &PushLease, outcome: &'static str) {
    if release(gw, owner, lease, outcome, false, None).await {
        gw.metrics.push("gave-up");
    }
}

/// Ends the lease; `false` when it was lost meanwhile (another instance took the expired lease) or the store failed
/// (the lease then expires).
async fn release(
    gw: &Gateway,
    owner: &str,
    lease: &PushLease,
    outcome: &'static str,
    in_doubt: bool,
    next_ms: Option<i64>,
) -> bool {
    let r = PushRelease {
        message_id: lease.message_id.clone(),
        owner: owner.to_owned(),
        attempt: lease.attempt,
        next_ms,
        in_doubt,
        outcome,
    };
    match gw.store.release_push(&r).await {
        Ok(true) => true,
        Ok(false) => false,
        Err(e) => {
            tracing::warn!(message_id = %lease.message_id, error = %e, "push: the attempt's end cannot be stored; the lease expires");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter_in_the_upper_half() {
        assert_eq!(backoff_ms(1, 1000, 60_000, 1.0), 1000);
        assert_eq!(backoff_ms(1, 1000, 60_000, 0.0), 500);
        assert_eq!(backoff_ms(2, 1000, 60_000, 1.0), 2000);
        assert_eq!(backoff_ms(4, 1000, 60_000, 1.0), 8000);
        assert_eq!(backoff_ms(10, 1000, 60_000, 1.0), 60_000);
        assert_eq!(backoff_ms(10, 1000, 60_000, 0.0), 30_000);
        assert_eq!(backoff_ms(1_000, 1000, 60_000, 0.5), 45_000);
        for j in [0.0, 0.3, 0.99] {
            let b = backoff_ms(3, 1000, 60_000, j);
            assert!((2000..=4000).contains(&b), "{b}");
        }
    }

    #[test]
    fn a_status_is_told_by_a_fixed_code() {
        assert_eq!(status_code(503), "status-503");
        assert_eq!(status_code(418), "status-4xx");
        assert_eq!(status_code(302), "status-3xx");
        assert_eq!(status_code(999), "status-other");
    }
}
