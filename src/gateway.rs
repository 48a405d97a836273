//! The running gateway's shared state, built once at start-up from the configuration.
//!
//! Holds the parts every stage needs (partners, policies, keys, store, log writer, limits, metrics). Reloadable
//! parts (policies, revocation list) are swapped whole: a bad new version never replaces a good one. The last
//! reload that changed the policies is kept with its diff (`PolicyChange`) for the console.

use crate::audit::checkpoint::SigningKey;
use crate::audit::entry::{EventKind, LogEntry, TraceRef};
use crate::audit::writer::{format_time, now_ms, AuditError, LogWriter, WriterConfig};
use crate::config::Config;
use crate::identity::{Caller, PartnerDirectory, PeerCache};
use crate::keys::Keys;
use crate::metrics::{Gauges, Metrics};
use crate::policy::{PolicyDiff, PolicySet};
use crate::ratelimit::RateLimits;
use crate::refusal::Refusal;
use crate::store::{self, DynStore};
use crate::tls::Revocations;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// How often the start-up entry is tried again after losing the race for its place in the log (see `Gateway::start`).
const START_UP_CONFLICT_RETRIES: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("partners: {0}")]
    Partners(#[from] crate::identity::PartnersError),
    #[error("policies: {0}")]
    Policy(String),
    #[error("keys: {0}")]
    Keys(#[from] crate::keys::KeyError),
    #[error("log signing key: {0}")]
    SigningKey(String),
    #[error("storage: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("push delivery: {0}")]
    Push(String),
}

/// Why a policy reload left the running set in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The files do not form a valid policy set (the error names the file).
    #[error("{0}")]
    Invalid(String),
    /// The new set is valid but its `policy-loaded` entry could not be written.
    #[error("the disclosure log cannot be written; the running policies stay")]
    LogUnavailable,
}

/// A reload that replaced the running policy set by one with another hash: what the console's policy page shows as
/// the last change. Holds hashes, file names and policy text only, never anything from a message.
#[derive(Debug, Clone)]
pub struct PolicyChange {
    /// When the new set took over (RFC 3339, UTC), just after its `policy-loaded` entry was durable.
    pub at: String,
    /// The position of that `policy-loaded` entry in this instance's log.
    pub log_seq: u64,
    /// What changed: `old_hash` is the set that was running, `new_hash` the one that runs now.
    pub diff: PolicyDiff,
}

pub struct Gateway {
    pub config: Config,
    pub partners: PartnerDirectory,
    /// Verified client certificates already read (`identity::PeerCache`).
    pub peers: PeerCache,
    pub policies: RwLock<Arc<PolicySet>>,
    pub revocations: RwLock<Option<Arc<Revocations>>>,
    pub keys: Keys,
    pub signing_key: Arc<SigningKey>,
    pub store: DynStore,
    pub writer: LogWriter,
    pub limits: Arc<RateLimits>,
    pub metrics: Metrics,
    /// Wakes this instance's push worker when a message for a push receiver was committed.
    pub push_wake: tokio::sync::Notify,
    /// (sender, Idempotency-Key) pairs being processed right now.
    pub in_flight: Mutex<HashSet<(String, String)>>,
    /// When this instance started (RFC 3339, UTC).
    pub started_at: String,
    /// The last reload that changed the policy set; `None` when none did since start-up.
    pub last_policy_change: RwLock<Option<Arc<PolicyChange>>>,
    /// Held for the whole of a policy reload, so reloads (ops endpoint, SIGHUP) apply one at a time: the running
    /// set, the order of their `policy-loaded` entries and `last_policy_change` then always agree.
    reload_lock: tokio::sync::Mutex<()>,
}

impl Gateway {
    /// Opens storage (running migrations), checks durability, loads partners, policies and keys,
    /// starts the log writer and records a `policy-loaded` entry.
    pub async fn start(
        config: Config,
    ) -> Result<(Arc<Gateway>, tokio::task::JoinHandle<()>), StartError> {
        let partners = PartnerDirectory::load(&config.tls.partners)?;
        let policies = crate::policy::load_for_serving(&config.policies.dir)
            .map_err(|e| StartError::Policy(e.to_string()))?;
        let revocations = match &config.tls.crl {
            Some(path) => Some(Arc::new(Revocations::load(path)?)),
            None => None,
        };
        let keys = Keys::load_or_create(&config.storage.key_dir)?;
        let signing_key = Arc::new(
            SigningKey::load_or_create(&config.storage.signing_key_path())
                .map_err(|e| StartError::SigningKey(e.to_string()))?,
        );
        let store = store::open(&config.storage.database_url).await?;
        if let Err(e) = store.check_durability().await {
            if config.storage.allow_non_durable {
                tracing::warn!(error = %e, "starting with non-durable storage because the configuration allows it");
            } else {
                return Err(e.into());
            }
        }
        let log_id = config.log.log_id.clone().unwrap_or_else(|| {
            format!("ketenpoort-{}", hex::encode(&signing_key.public_key()[..6]))
        });
        let (writer, handle) = LogWriter::start(
            store.clone(),
            signing_key.clone(),
            WriterConfig {
                log_id,
                batch_max: config.log.batch_max,
                checkpoint_interval: Duration::from_secs(1),
            },
        )
        .await?;
        let limits = Arc::new(RateLimits::new(
            config.limits.rate_per_second,
            config.limits.burst,
            config.limits.max_connections_per_partner,
        ));
        let gw = Arc::new(Gateway {
            config,
            partners,
            peers: PeerCache::default(),
            policies: RwLock::new(Arc::new(policies)),
            revocations: RwLock::new(revocations),
            keys,
            signing_key,
            store,
            writer,
            limits,
            metrics: Metrics::default(),
            push_wake: tokio::sync::Notify::new(),
            in_flight: Mutex::new(HashSet::new()),
            started_at: format_time(now_ms()),
            last_policy_change: RwLock::new(None),
            reload_lock: tokio::sync::Mutex::new(()),
        });
        // After a crash, PostgreSQL may still finish the dead process's last COMMIT after this one read the log state:
        // the start-up entry then loses the race for its sequence number. The writer reloads the state after a
        // conflict, so the entry is tried again a few times before start-up gives up.
        let mut attempt = 0;
        loop {
            let mut entry = gw.gateway_entry(EventKind::PolicyLoaded);
            entry.detail = Some("start-up".into());
            match gw.writer.append_one(entry).await {
                Ok(_) => break,
                Err(AuditError::Conflict(why)) if attempt < START_UP_CONFLICT_RETRIES => {
                    attempt += 1;
                    tracing::info!(reason = %why, attempt, "start-up entry lost a race for its place in the log; retrying on the reloaded state");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => {
                    return Err(StartError::Store(crate::store::StoreError::Unavailable(
                        e.to_string(),
                    )))
                }
            }
        }
        Ok((gw, handle))
    }

    pub fn policy(&self) -> Arc<PolicySet> {
        self.policies.read().expect("policy lock").clone()
    }

    pub fn revocations(&self) -> Option<Arc<Revocations>> {
        self.revocations.read().expect("revocation lock").clone()
    }

    /// The last reload that changed the policy set, if any since start-up.
    pub fn last_policy_change(&self) -> Option<Arc<PolicyChange>> {
        self.last_policy_change
            .read()
            .expect("policy change lock")
            .clone()
    }

    /// Loads the policy directory again; the running set is replaced only when the new one is valid and its
    /// `policy-loaded` entry is durable (a set no entry names would decide unexplainable disclosures). When the
    /// new set's hash differs from the running one's, the change and its diff become `last_policy_change`.
    pub async fn reload_policies(&self) -> Result<String, ReloadError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        match crate::policy::load_for_serving(&self.config.policies.dir) {
            Ok(set) => {
                let hash = set.hash().to_owned();
                let mut entry = LogEntry::new(EventKind::PolicyLoaded);
                entry.partner = "gateway".into();
                entry.organisation = "gateway".into();
                entry.policy_hash = Some(hash.clone());
                entry.detail = Some("reload".into());
                let receipt = match self.writer.append_one(entry).await {
                    Ok(r) => r,
                    Err(e) => {
                        self.metrics
                            .policy_reload_failures
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, "policy reload not applied: the disclosure log cannot be written");
                        return Err(ReloadError::LogUnavailable);
                    }
                };
                let at = format_time(now_ms());
                let new = Arc::new(set);
                let old = std::mem::replace(
                    &mut *self.policies.write().expect("policy lock"),
                    new.clone(),
                );
                if old.hash() != new.hash() {
                    let change = PolicyChange {
                        at,
                        log_seq: receipt.seq,
                        diff: crate::policy::diff(&old, &new),
                    };
                    *self.last_policy_change.write().expect("policy change lock") =
                        Some(Arc::new(change));
                }
                self.metrics.policy_reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(policy_hash = %hash, "policies reloaded");
                Ok(hash)
            }
            Err(e) => {
                self.metrics
                    .policy_reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "policy reload refused; the running policies stay");
                // The refusal is an event the privacy officer can find: a `policy-loaded` entry with the running
                // set's hash (the set that stays) and the error, which names the file (policies hold no pupil data).
                let mut entry = self.gateway_entry(EventKind::PolicyLoaded);
                entry.outcome = crate::refusal::ProblemCode::PolicyInvalid.as_str().into();
                let error: String = e.to_string().chars().take(500).collect();
                entry.detail = Some(format!("reload refused: {error}"));
                if let Err(log) = self.writer.append_one(entry).await {
                    tracing::error!(error = %log, "the refused policy reload could not be logged");
                }
                Err(ReloadError::Invalid(e.to_string()))
            }
        }
    }

    /// Re-reads the CRL; a CRL that cannot be read leaves the previous one in force.
    pub fn reload_revocations(&self) -> Result<usize, String> {
        let Some(path) = &self.config.tls.crl else {
            return Ok(0);
        };
        let r = Revocations::load(path).map_err(|e| e.to_string())?;
        let n = r.len();
        *self.revocations.write().expect("revocation lock") = Some(Arc::new(r));
        Ok(n)
    }

    /// A log entry with the caller's identity and the hash of the running policy set filled in.
    /// (A disclosure overwrites the hash with the one of the set that decided it.)
    pub fn entry_for(&self, caller: &Caller, event: EventKind) -> LogEntry {
        let mut e = LogEntry::new(event);
        e.partner = caller.id().to_owned();
        e.organisation = caller.partner().organisation_id().to_owned();
        e.cert_fingerprint = caller.fingerprint.clone();
        e.trace = caller.trace.as_ref().map(|t| TraceRef {
            trace_id: t.trace_id.clone(),
            span_id: t.span_id.clone(),
            parent_span_id: t.parent_span_id.clone(),
            transaction_id: t.transaction_id.clone(),
        });
        e.policy_hash = Some(self.policy().hash().to_owned());
        e
    }

    /// The one way a refused request is logged: `entry` already describes the request (its `detail` too); the
    /// refusal's code becomes the outcome. When even this entry cannot be written the caller gets 503 instead,
    /// with the writer's error kept as the cause.
    pub async fn log_refusal(&self, mut entry: LogEntry, refusal: Refusal) -> Refusal {
        self.metrics.refusal(refusal.code.as_str());
        entry.outcome = refusal.code.as_str().to_owned();
        match self.writer.append_one(entry).await {
            Ok(_) => refusal,
            Err(e) => Refusal::audit_unavailable().because(e),
        }
    }

    /// A log entry the gateway makes on its own behalf (start-up, reload, retention), with the hash of the
    /// running policy set.
    pub fn gateway_entry(&self, event: EventKind) -> LogEntry {
        let mut e = LogEntry::new(event);
        e.partner = "gateway".into();
        e.organisation = "gateway".into();
        e.policy_hash = Some(self.policy().hash().to_owned());
        e
    }

    /// Fills in the flow of a stored message (sender role, receiver role, purpose) in the running policy set:
    /// its id, the policy hash and the flow's agreement. Left as it is when the partners or the flow are gone.
    pub fn describe_stored_flow(
        &self,
        e: &mut LogEntry,
        sender: &str,
        receiver: &str,
        purpose: &str,
    ) {
        let (Some(s), Some(r)) = (self.partners.by_id(sender), self.partners.by_id(receiver))
        else {
            return;
        };
        let policies = self.policy();
        e.receiver_role = Some(r.partner.role.as_str().to_owned());
        e.policy_hash = Some(policies.hash().to_owned());
        if let Some(flow) = policies.find_flow(s.partner.role, r.partner.role, purpose) {
            e.flow_id = Some(flow.id.clone());
            e.processing_activity_id = flow.processing_activity_id.clone();
            e.agreement_id = flow.agreement.as_ref().map(|a| a.id.clone());
        }
    }

    pub fn gauges(&self) -> Gauges {
        let s = &self.writer.stats;
        Gauges {
            log_size: s.size.load(Ordering::Relaxed),
            log_batches: s.batches.load(Ordering::Relaxed),
            log_entries: s.entries.load(Ordering::Relaxed),
            log_commit_micros: s.commit_micros.load(Ordering::Relaxed),
            log_commit_buckets: s.commit_latency.snapshot().0,
            log_failures: s.failures.load(Ordering::Relaxed),
            log_healthy: s.healthy.load(Ordering::Relaxed),
            policy_hash: self.policy().hash().to_owned(),
            incidents: None,
            push: None,
        }
    }

    /// `gauges` with the breach registers' counts read from the store.
    pub async fn gauges_with_incidents(&self) -> Gauges {
        let mut g = self.gauges();
        if let Ok(all) = self.store.incidents(None).await {
            let now = crate::audit::writer::now_ms();
            let open = all.iter().filter(|i| i.status == "open");
            let late = open
                .clone()
                .filter(|i| !i.decided && i.deadline_ms < now)
                .count();
            g.incidents = Some((open.count() as u64, late as u64));
        }
        if let Ok(q) = self.store.push_queue_stats().await {
            let now = crate::audit::writer::now_ms();
            g.push = Some(crate::metrics::PushGauges {
                waiting: q.waiting,
                gave_up: q.gave_up,
                oldest_waiting_seconds: q
                    .oldest_waiting_ms
                    .map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0),
            });
        }
        g
    }

    /// Ready when the database answers and the log writer's last commit succeeded.
    pub async fn ready(&self) -> Result<(), String> {
        self.store.ping().await.map_err(|e| e.to_string())?;
        if !self.writer.is_healthy() {
            // A ping succeeded: let the writer prove it with a write that needs fresh space.
            self.writer.probe().await;
            if !self.writer.is_healthy() {
                return Err("the disclosure log cannot be written".into());
            }
        }
        Ok(())
    }
}

/// Re-reads the CRL file whenever its modification time or size changes, checked every `tls.crl_poll_secs`.
/// A file that cannot be read (e.g. caught half-written) leaves the running list in force and is tried again.
pub async fn watch_crl(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    let (Some(path), secs) = (gw.config.tls.crl.clone(), gw.config.tls.crl_poll_secs) else {
        return;
    };
    if secs == 0 {
        return;
    }
    let stamp = |p: &std::path::Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut seen = stamp(&path);
    let mut tick = tokio::time::interval(Duration::from_secs(secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = stamp(&path);
        if now == seen {
            continue;
        }
        match gw.reload_revocations() {
            Ok(n) => {
                seen = now;
                tracing::info!(revoked = n, "revocation list changed on disk; reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "changed revocation list refused; the previous list stays")
            }
        }
    }
}
