//! The storage floor and the large log for `audit verify` and start-up.
//!
//! The floor writes what the gateway writes per message — its log entry and its mailbox row, copied byte for byte
//! from rows the gateway itself wrote during the benchmark — through the same `Store::commit_batch` (same SQL,
//! same durability settings: SQLite WAL + synchronous FULL, PostgreSQL synchronous_commit on), with the log state
//! row and a signed checkpoint once a second as the writer does, but with no TLS, HTTP, JSON or policy. Its commits
//! run where the gateway's writer runs them (`Store::spawn_writer`: on SQLite the writer's own thread).

use anyhow::{bail, Context};
use ketenpoort::audit::checkpoint::{Checkpoint, SigningKey};
use ketenpoort::audit::entry::LogEntry;
use ketenpoort::audit::merkle::{leaf_hash, Frontier};
use ketenpoort::audit::writer::{chain_hash, extend_tree, now_ms, LogWriter, WriterConfig};
use ketenpoort::store::{
    Batch, DynStore, LogState, Mutation, NewMessage, StoredCheckpoint, StoredEntry,
};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rows the gateway wrote for real messages, used as templates.
#[derive(Clone)]
pub struct Templates {
    pub entries: Vec<StoredEntry>,
    pub messages: Vec<NewMessage>,
}

impl Templates {
    /// Reads the first `n` `message-disclosed` entries of the gateway's log and the receiver's mailbox rows.
    pub async fn capture(url: &str, receiver: &str, n: usize) -> anyhow::Result<Templates> {
        let store = ketenpoort::store::open(url).await?;
        let log_id = store
            .log_ids()
            .await?
            .into_iter()
            .next()
            .context("the gateway wrote no log")?;
        let entries: Vec<StoredEntry> = store
            .entries(&log_id, 0, n * 4)
            .await?
            .into_iter()
            .filter(|e| e.event == "message-disclosed")
            .take(n)
            .collect();
        let messages: Vec<NewMessage> = store
            .inbox(receiver, 0, n)
            .await?
            .into_iter()
            .map(|m| m.msg)
            .collect();
        if entries.is_empty() || messages.is_empty() {
            bail!("no disclosed messages to copy");
        }
        Ok(Templates { entries, messages })
    }

    pub fn mean_entry_bytes(&self) -> usize {
        self.entries.iter().map(|e| e.bytes.len()).sum::<usize>() / self.entries.len()
    }
    pub fn mean_message_bytes(&self) -> usize {
        self.messages.iter().map(|m| m.sealed.len()).sum::<usize>() / self.messages.len()
    }
}

pub struct FloorResult {
    pub messages: u64,
    pub elapsed: Duration,
    /// CPU (µs) of the thread the batches were built and committed on: on SQLite the log writer's own thread. (On
    /// PostgreSQL the loop is a tokio task that may move between threads: the figure means nothing there.)
    pub loop_thread_cpu_us: u64,
}

impl FloorResult {
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }
}

/// `storage_floor` run by the store's writer loop, as the gateway's commits are.
pub async fn storage_floor_on_writer(
    store: DynStore,
    key: SigningKey,
    t: Templates,
    batch: usize,
    duration: Duration,
) -> anyhow::Result<FloorResult> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let looped = store.clone();
    let handle = store.spawn_writer(Box::pin(async move {
        let result = storage_floor(&looped, &key, "floor", &t, batch, duration).await;
        let _ = tx.send(result);
    }))?;
    let result = rx.await.context("the floor's writer loop stopped")?;
    handle.await?;
    result
}

/// Commits batches of `batch` messages (entry + mailbox row each, and the stored Merkle subtrees they complete, as
/// the gateway's writer does) for `duration`.
pub async fn storage_floor(
    store: &DynStore,
    key: &SigningKey,
    log_id: &str,
    t: &Templates,
    batch: usize,
    duration: Duration,
) -> anyhow::Result<FloorResult> {
    let mut frontier = Frontier::new();
    let mut chain = [0u8; 32];
    let mut size = 0u64;
    let mut last_checkpoint = Instant::now();
    let thread_cpu_before = crate::servers::this_thread_cpu_micros()?;
    let started = Instant::now();
    while started.elapsed() < duration {
        let time_ms = now_ms();
        let mut entries = Vec::with_capacity(batch);
        let mut mutations = Vec::with_capacity(batch);
        let mut subtrees = Vec::new();
        for i in 0..batch {
            let seq = size + i as u64;
            let mut e = t.entries[seq as usize % t.entries.len()].clone();
            e.log_id = log_id.to_owned();
            e.seq = seq;
            e.time_ms = time_ms;
            e.leaf_hash = leaf_hash(&e.bytes);
            chain = chain_hash(&chain, &e.leaf_hash);
            e.chain_hash = chain;
            extend_tree(&mut frontier, e.leaf_hash, &mut subtrees);
            let mut m = t.messages[seq as usize % t.messages.len()].clone();
            m.id = format!("{log_id}-{seq:012}");
            m.log_id = log_id.to_owned();
            m.seq = seq;
            m.leaf_hash = e.leaf_hash;
            entries.push(e);
            mutations.push(Mutation::InsertMessage(Box::new(m)));
        }
        size += batch as u64;
        let checkpoint = (last_checkpoint.elapsed() >= Duration::from_secs(1)).then(|| {
            last_checkpoint = Instant::now();
            let signed = key.sign(Checkpoint {
                log_id: log_id.to_owned(),
                tree_size: size,
                root: frontier.root(),
                timestamp_ms: time_ms,
            });
            StoredCheckpoint {
                log_id: log_id.to_owned(),
                tree_size: size,
                time_ms,
                note: signed.to_note(),
            }
        });
        store
            .commit_batch(std::sync::Arc::new(Batch {
                entries,
                subtrees,
                mutations,
                state: LogState {
                    log_id: log_id.to_owned(),
                    size,
                    frontier: frontier.to_bytes(),
                    chain_head: chain,
                },
                checkpoint,
            }))
            .await?;
    }
    Ok(FloorResult {
        messages: size,
        elapsed: started.elapsed(),
        loop_thread_cpu_us: crate::servers::this_thread_cpu_micros()?
            .saturating_sub(thread_cpu_before),
    })
}

/// Writes a log of `n` entries (copies of a real disclosure entry) through the gateway's own `LogWriter`,
/// signed with the gateway's key in `key_dir`, so `audit verify` and `serve` can be timed on it.
pub async fn generate_log(
    url: &str,
    key_dir: &Path,
    template: &LogEntry,
    n: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let store = ketenpoort::store::open(url).await?;
    std::fs::create_dir_all(key_dir)?;
    let key = Arc::new(SigningKey::load_or_create(
        &key_dir.join("log-signing.key"),
    )?);
    let log_id = format!("ketenpoort-{}", hex::encode(&key.public_key()[..6]));
    let (writer, handle) = LogWriter::start(
        store,
        key,
        WriterConfig {
            log_id,
            batch_max: 4096,
            checkpoint_interval: Duration::from_secs(1),
        },
    )
    .await?;
    const JOB: u64 = 512;
    let tasks = 4;
    let mut handles = Vec::new();
    for task in 0..tasks {
        let writer = writer.clone();
        let template = template.clone();
        handles.push(tokio::spawn(async move {
            let mut job = task;
            while job * JOB < n {
                let count = JOB.min(n - job * JOB);
                let entries = (0..count)
                    .map(|i| {
                        let mut e = template.clone();
                        e.message_id = Some(format!("gen-{:012}", job * JOB + i));
                        e
                    })
                    .collect();
                writer.append(entries, Vec::new()).await?;
                job += tasks;
            }
            Ok::<_, ketenpoort::audit::writer::AuditError>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    writer.flush().await;
    drop(writer);
    handle.await?;
    Ok(started.elapsed())
}
