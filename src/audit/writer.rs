//! The single log writer: group commit of log entries together with the changes they record.
//!
//! Requests hand their entries (and mailbox/consent mutations) to one loop, which appends everything queued in one
//! transaction, extends the Merkle tree and hash chain, signs a checkpoint at most once a second, and only then
//! answers. A caller that gets `Ok` knows its entries are durable; on any error nothing it asked for happened.
//! The in-memory tree state advances only after a commit succeeded. The loop runs where the store puts it
//! (`Store::spawn_writer`: a task, or on SQLite a thread of its own that commits in place).
//! A job whose mutations claim rows another request or instance changed first fails alone with
//! `AuditError::Conflict` (the batch is rolled back and its other jobs are retried one by one); a conflict says
//! nothing about the database's health.

use super::checkpoint::{Checkpoint, SigningKey};
use super::entry::LogEntry;
use super::merkle::{leaf_hash, Frontier, Hash};
use crate::store::{
    Batch, DynStore, LogState, Mutation, StoreError, StoredCheckpoint, StoredEntry, StoredSubtree,
};
use ring::digest;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error, Clone)]
pub enum AuditError {
    #[error("the disclosure log is unavailable: {0}")]
    Unavailable(String),
    #[error("the log writer has stopped")]
    Stopped,
    /// Another request or instance changed a row this job claims (see `store::Mutation`); nothing was appended.
    #[error("concurrent change: {0}")]
    Conflict(String),
}

/// Where an appended entry stands in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub log_id: String,
    pub seq: u64,
    pub leaf_hash: Hash,
}

struct Job {
    entries: Vec<LogEntry>,
    /// An `InsertMessage` is stamped with the position of the job's entry about that message (`message_id`), else of
    /// the job's first entry; an `InsertIdempotency` with the position of the first entry.
    mutations: Vec<Mutation>,
    reply: oneshot::Sender<Result<Vec<Receipt>, AuditError>>,
}

enum Command {
    Append(Job),
    Flush(oneshot::Sender<()>),
    /// Test the storage with `Store::probe_write`; healthy again only if it succeeds.
    Probe(oneshot::Sender<()>),
}

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub entries: AtomicU64,
    pub failures: AtomicU64,
    /// Sum of commit latencies in microseconds.
    pub commit_micros: AtomicU64,
    /// Each commit's latency (the stalls behind a p99: a slow sync, the WAL restart).
    pub commit_latency: crate::metrics::LatencyHistogram,
    pub size: AtomicU64,
    pub healthy: AtomicBool,
}

#[derive(Clone)]
pub struct LogWriter {
    tx: mpsc::Sender<Command>,
    log_id: Arc<str>,
    pub stats: Arc<WriterStats>,
}

pub struct WriterConfig {
    pub log_id: String,
    pub batch_max: usize,
    pub checkpoint_interval: Duration,
}

struct State {
    size: u64,
    frontier: Frontier,
    chain_head: Hash,
    checkpointed: u64,
    last_checkpoint: Instant,
}

impl LogWriter {
    /// Loads the persisted tree state (no recomputation) and starts the writer task.
    pub async fn start(
        store: DynStore,
        key: Arc<SigningKey>,
        cfg: WriterConfig,
    ) -> Result<(LogWriter, tokio::task::JoinHandle<()>), StoreError> {
        let state = load_state(&store, &cfg.log_id).await?;
        let stats = Arc::new(WriterStats::default());
        stats.size.store(state.size, Ordering::Relaxed);
        stats.healthy.store(true, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(16 * 1024);
        let worker = Worker {
            store,
            key,
            log_id: cfg.log_id.clone(),
            batch_max: cfg.batch_max,
            interval: cfg.checkpoint_interval,
            state,
            stale: false,
            stats: stats.clone(),
        };
        let handle = worker
            .store
            .clone()
            .spawn_writer(Box::pin(worker.run(rx)))?;
        Ok((
            LogWriter {
                tx,
                log_id: cfg.log_id.into(),
                stats,
            },
            handle,
        ))
    }

    pub fn log_id(&self) -> &str {
        &self.log_id
    }

    /// Appends entries (and the mutations they record) durably; returns their receipts in order.
    pub async fn append(
        &self,
        entries: Vec<LogEntry>,
        mutations: Vec<Mutation>,
    ) -> Result<Vec<Receipt>, AuditError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Append(Job {
                entries,
                mutations,
                reply,
            }))
            .await
            .map_err(|_| AuditError::Stopped)?;
        rx.await.map_err(|_| AuditError::Stopped)?
    }

    pub async fn append_one(&self, entry: LogEntry) -> Result<Receipt, AuditError> {
        let mut r = self.append(vec![entry], Vec::new()).await?;
        r.pop().ok_or(AuditError::Stopped)
    }

    /// Waits until everything queued before this call is committed and a checkpoint covers it.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// After a failure: asks the writer to prove the storage can take a real write again (`Store::probe_write`).
    pub async fn probe(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Probe(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.stats.healthy.load(Ordering::Relaxed)
    }
}

async fn load_state(store: &DynStore, log_id: &str) -> Result<State, StoreError> {
    let persisted = store.load_log_state(log_id).await?;
    let (size, frontier, chain_head) = match persisted {
        Some(LogState {
            size,
            frontier,
            chain_head,
            ..
        }) => {
            let f = Frontier::from_bytes(&frontier)
                .ok_or_else(|| StoreError::Corrupt("log frontier".into()))?;
            if f.size() != size {
                return Err(StoreError::Corrupt("log frontier size".into()));
            }
            (size, f, chain_head)
        }
        None => (0, Frontier::new(), [0u8; 32]),
    };
    let checkpointed = store
        .checkpoints(log_id, 1)
        .await?
        .first()
        .map(|c| c.tree_size)
        .unwrap_or(0);
    Ok(State {
        size,
        frontier,
        chain_head,
        checkpointed,
        last_checkpoint: Instant::now() - Duration::from_secs(3600),
    })
}

/// Adds one leaf to the tree and records the perfect subtrees it completes that the store keeps
/// (`merkle::STORED_LEVEL` and up), as every batch must.
pub fn extend_tree(frontier: &mut Frontier, leaf: Hash, subtrees: &mut Vec<StoredSubtree>) {
    frontier.push_reporting(leaf, |t, hash| {
        if t.is_stored() {
            subtrees.push(StoredSubtree {
                level: t.level,
                index: t.index,
                hash: *hash,
            });
        }
    });
}

/// SHA-256 over the previous chain head and the entry's leaf hash.
pub fn chain_hash(prev: &Hash, leaf: &Hash) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev);
    ctx.update(leaf);
    ctx.finish().as_ref().try_into().expect("32 bytes")
}

pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn format_time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

struct Worker {
    store: DynStore,
    key: Arc<SigningKey>,
    log_id: String,
    batch_max: usize,
    interval: Duration,
    state: State,
    /// Set after a failed commit: the database may hold more than we know, so reload first.
    stale: bool,
    stats: Arc<WriterStats>,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(c) => c,
                    None => break,
                },
                _ = tick.tick() => {
                    if self.state.size > self.state.checkpointed {
                        let _ = self.commit(&[], true).await;
                    }
                    continue;
                }
            };
            let mut jobs = Vec::new();
            let mut flushes = Vec::new();
            let mut count = 0;
            let mut probes = Vec::new();
            let mut push = |cmd: Command, jobs: &mut Vec<Job>, count: &mut usize| match cmd {
                Command::Append(job) => {
                    *count += job.entries.len();
                    jobs.push(job);
                }
                Command::Flush(done) => flushes.push(done),
                Command::Probe(done) => probes.push(done),
            };
            push(first, &mut jobs, &mut count);
            while count < self.batch_max {
                match rx.try_recv() {
                    Ok(cmd) => push(cmd, &mut jobs, &mut count),
                    Err(_) => break,
                }
            }
            let force_checkpoint = !flushes.is_empty();
            if !jobs.is_empty() || force_checkpoint {
                self.commit_jobs(jobs, force_checkpoint).await;
            }
            for done in flushes {
                let _ = done.send(());
            }
            if !probes.is_empty() {
                match self.store.probe_write().await {
                    Ok(()) => self.stats.healthy.store(true, Ordering::Relaxed),
                    Err(e) => {
                        tracing::warn!(error = %e, "storage readiness probe failed");
                        self.fail();
                    }
                }
                for done in probes {
                    let _ = done.send(());
                }
            }
        }
        if self.state.size > self.state.checkpointed {
            let _ = self.commit(&[], true).await;
        }
    }

    /// Commits all jobs in one transaction; if that fails and there were several, retries each alone so
    /// one bad job cannot take the others down with it.
    async fn commit_jobs(&mut self, jobs: Vec<Job>, force_checkpoint: bool) {
        match self.commit(&jobs, force_checkpoint).await {
            Ok(receipts) => reply_all(jobs, receipts),
            Err(err) if jobs.len() > 1 => {
                if matches!(err, AuditError::Conflict(_)) {
                    tracing::debug!(error = %err, jobs = jobs.len(), "group commit lost a race; retrying jobs one by one");
                } else {
                    tracing::warn!(error = %err, jobs = jobs.len(), "group commit failed; retrying jobs one by one");
                }
                for job in jobs {
                    let one = std::slice::from_ref(&job);
                    match self.commit(one, false).await {
                        Ok(receipts) => reply_all(vec![job], receipts),
                        Err(err) => {
                            let _ = job.reply.send(Err(err));
                        }
                    }
                }
            }
            Err(err) => {
                for job in jobs {
                    let _ = job.reply.send(Err(err.clone()));
                }
            }
        }
    }

    async fn commit(
        &mut self,
        jobs: &[Job],
        force_checkpoint: bool,
    ) -> Result<Vec<Vec<Receipt>>, AuditError> {
        if self.stale {
            match load_state(&self.store, &self.log_id).await {
                Ok(mut state) => {
                    state.last_checkpoint = self.state.last_checkpoint;
                    self.state = state;
                    self.stale = false;
                }
                Err(e) => {
                    self.fail();
                    return Err(AuditError::Unavailable(e.to_string()));
                }
            }
        }
        let time_ms = now_ms();
        let time = format_time(time_ms);
        let mut frontier = self.state.frontier.clone();
        let mut chain = self.state.chain_head;
        let mut seq = self.state.size;
        let mut stored = Vec::new();
        let mut subtrees = Vec::new();
        let mut receipts_per_job = Vec::with_capacity(jobs.len());
        let mut mutations = Vec::new();
        for job in jobs {
            let mut receipts = Vec::with_capacity(job.entries.len());
            for e in &job.entries {
                let bytes = e.encode_at(&self.log_id, seq, &time);
                let leaf = leaf_hash(&bytes);
                chain = chain_hash(&chain, &leaf);
                extend_tree(&mut frontier, leaf, &mut subtrees);
                stored.push(StoredEntry {
                    log_id: self.log_id.clone(),
                    seq,
                    time_ms,
                    event: e.event().as_str().to_owned(),
                    partner: e.partner.clone(),
                    organisation: e.organisation.clone(),
                    sender: e.sender.clone(),
                    receiver: e.receiver.clone(),
                    purpose: e.purpose.clone(),
                    flow_id: e.flow_id.clone(),
                    subject: e.subject.clone(),
                    outcome: e.outcome.clone(),
                    bytes,
                    leaf_hash: leaf,
                    chain_hash: chain,
                    case_id: e.case_id.clone(),
                });
                receipts.push(Receipt {
                    log_id: self.log_id.clone(),
                    seq,
                    leaf_hash: leaf,
                });
                seq += 1;
            }
            for m in &job.mutations {
                let mut m = m.clone();
                if let Some(first) = receipts.first() {
                    match &mut m {
                        Mutation::InsertMessage(msg) => {
                            let own = job
                                .entries
                                .iter()
                                .position(|e| e.message_id.as_deref() == Some(msg.id.as_str()))
                                .and_then(|i| receipts.get(i))
                                .unwrap_or(first);
                            msg.log_id = own.log_id.clone();
                            msg.seq = own.seq;
                            msg.leaf_hash = own.leaf_hash;
                        }
                        Mutation::InsertIdempotency(rec) => {
                            rec.log_id = first.log_id.clone();
                            rec.seq = first.seq;
                            rec.leaf_hash = first.leaf_hash;
                        }
                        _ => {}
                    }
                }
                mutations.push(m);
            }
            receipts_per_job.push(receipts);
        }
        let size = seq;
        let due = self.state.last_checkpoint.elapsed() >= self.interval;
        let checkpoint = if (due || force_checkpoint) && size > self.state.checkpointed {
            let signed = self.key.sign(Checkpoint {
                log_id: self.log_id.clone(),
                tree_size: size,
                root: frontier.root(),
                timestamp_ms: time_ms,
            });
            Some(StoredCheckpoint {
                log_id: self.log_id.clone(),
                tree_size: size,
                time_ms,
                note: signed.to_note(),
            })
        } else {
            None
        };
        let batch = Batch {
            entries: stored,
            subtrees,
            mutations,
            state: LogState {
                log_id: self.log_id.clone(),
                size,
                frontier: frontier.to_bytes(),
                chain_head: chain,
            },
            checkpoint,
        };
        let batch = std::sync::Arc::new(batch);
        let started = Instant::now();
        match self.store.commit_batch(batch.clone()).await {
            Ok(()) => {
                let n = batch.entries.len() as u64;
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats.entries.fetch_add(n, Ordering::Relaxed);
                let took = started.elapsed();
                self.stats
                    .commit_micros
                    .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
                self.stats.commit_latency.observe(took);
                self.stats.size.store(size, Ordering::Relaxed);
                // A commit without entries (checkpoint or state only) is too small to prove the storage is back.
                if n > 0 {
                    self.stats.healthy.store(true, Ordering::Relaxed);
                }
                self.state.size = size;
                self.state.frontier = frontier;
                self.state.chain_head = chain;
                if batch.checkpoint.is_some() {
                    self.state.checkpointed = size;
                    self.state.last_checkpoint = Instant::now();
                }
                Ok(receipts_per_job)
            }
            Err(StoreError::Conflict(why)) => {
                // Rolled back; the stored state may have moved on only if another writer shares this log id.
                tracing::debug!(reason = %why, "log batch lost a race for a row; nothing in it was committed");
                self.stale = true;
                Err(AuditError::Conflict(why))
            }
            Err(e) => {
                tracing::error!(error = %e, "disclosure log commit failed; nothing in this batch was delivered");
                self.fail();
                Err(AuditError::Unavailable(e.to_string()))
            }
        }
    }

    fn fail(&mut self) {
        self.stale = true;
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        self.stats.healthy.store(false, Ordering::Relaxed);
    }
}

fn reply_all(jobs: Vec<Job>, receipts: Vec<Vec<Receipt>>) {
    for (job, r) in jobs.into_iter().zip(receipts) {
        let _ = job.reply.send(Ok(r));
    }
}
