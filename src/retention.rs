//! Retention: a background task that purges message payloads the gateway kept for their flow's `gateway_days`.
//!
//! The gateway's period is not the receiver's: `[flow.retention] gateway_days` (days) sets the mailbox row's
//! `expires_ms` when the message is sent; what the receiver keeps its copy for travels with the message and is not
//! enforced here. Past `expires_ms` the payload goes, with one log entry in the same transaction as the deletion:
//! - never fetched: `message-expired` ("verlopen, niet opgehaald"), naming the flow, sender, receiver and pupil
//!   pseudonym (never a value), so the sender's FG finds it (the entry names the sender);
//! - fetched but never acknowledged: `payload-purged` (the receiver has its copy; only the gateway's goes).
//!
//! So a payload never disappears unrecorded. Log entries themselves are never purged (they hold no payload values),
//! which is why purging never breaks verification. The task must never delete anything without its log entry.

use crate::audit::entry::EventKind;
use crate::audit::writer::{now_ms, AuditError};
use crate::gateway::Gateway;
use crate::store::{MessageEnd, Mutation, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Messages purged per log commit.
const BATCH: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("reading expired messages: {0}")]
    Store(#[from] StoreError),
    #[error("logging the purge: {0}")]
    Audit(#[from] AuditError),
}

/// Sweeps at start and then every `log.retention_sweep_secs` (0 disables) until `stop` changes.
pub async fn run(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    let secs = gw.config.log.retention_sweep_secs;
    if secs == 0 {
        tracing::warn!("retention sweeps are disabled (log.retention_sweep_secs = 0)");
        return;
    }
    let every = Duration::from_secs(secs);
    loop {
        match sweep(&gw, now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "retention: expired payloads purged"),
            Err(e) => {
                tracing::warn!(error = %e, "retention sweep failed; retrying at the next interval")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
    }
}

/// Purges every message whose gateway retention ended before `now_ms`; returns how many were purged.
pub async fn sweep(gw: &Gateway, now_ms: i64) -> Result<usize, RetentionError> {
    let mut purged = 0;
    loop {
        let expired = gw.store.expired_messages(now_ms, BATCH).await?;
        if expired.is_empty() {
            return Ok(purged);
        }
        let n = expired.len();
        let mut entries = Vec::with_capacity(n);
        let mut mutations = Vec::with_capacity(n);
        for row in expired {
            let fetched = row.fetch_count > 0;
            let m = row.msg;
            let mut e = gw.gateway_entry(if fetched {
                EventKind::PayloadPurged
            } else {
                EventKind::MessageExpired
            });
            gw.describe_stored_flow(&mut e, &m.sender, &m.receiver, &m.purpose);
            e.message_id = Some(m.id.clone());
            e.subject = m.subject;
            e.sender = Some(m.sender);
            e.receiver = Some(m.receiver);
            e.message_type = Some(m.message_type);
            e.purpose = Some(m.purpose);
            e.detail = Some(if fetched {
                format!(
                    "fetched but not acknowledged within the gateway's retention; disclosed as {}#{}",
                    m.log_id, m.seq
                )
            } else {
                format!(
                    "not fetched within the gateway's retention; disclosed as {}#{}",
                    m.log_id, m.seq
                )
            });
            entries.push(e);
            mutations.push(Mutation::DeleteMessage {
                id: m.id,
                end: if fetched {
                    MessageEnd::Purged
                } else {
                    MessageEnd::Expired
                },
                at_ms: now_ms,
                unfetched_only: false,
            });
        }
        gw.writer.append(entries, mutations).await?;
        purged += n;
        if n < BATCH {
            return Ok(purged);
        }
    }
}
