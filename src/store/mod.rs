//! Storage behind one trait: the disclosure log, mailboxes, idempotency records and consents.
//!
//! All SQL lives in this module's backends (`sqlite`, `postgres`). The trait speaks in domain rows; it never
//! decides anything. A batch is one transaction: log entries and the mailbox changes they record are durable
//! together or not at all. Payloads reach the store only sealed (AES-256-GCM).

pub mod postgres;
mod sql;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type Hash = [u8; 32];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database settings are not durable: {0}")]
    NotDurable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Another writer (another instance, or another job) changed the same rows first; nothing of the batch
    /// was committed. Retrying after re-reading is safe.
    #[error("concurrent change: {0}")]
    Conflict(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            // 40001 serialization failure, 40P01 deadlock (PostgreSQL).
            let retryable = matches!(db.code().as_deref(), Some("40001" | "40P01"));
            if db.kind() == sqlx::error::ErrorKind::UniqueViolation || retryable {
                return StoreError::Conflict(db.message().to_owned());
            }
        }
        StoreError::Unavailable(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Unavailable(format!("migration failed: {e}"))
    }
}

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The loop that commits the log's batches (`audit::writer`), handed to `Store::spawn_writer`.
pub type WriterTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One appended log entry with its hashes, as stored.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub log_id: String,
    pub seq: u64,
    /// Milliseconds since the epoch; used to merge several logs in time order.
    pub time_ms: i64,
    pub event: String,
    pub partner: String,
    pub organisation: String,
    pub sender: Option<String>,
    pub receiver: Option<String>,
    pub purpose: Option<String>,
    pub flow_id: Option<String>,
    pub subject: Option<String>,
    pub outcome: String,
    pub bytes: Vec<u8>,
    pub leaf_hash: Hash,
    pub chain_hash: Hash,
    /// The kerngroep case (P13) the entry belongs to (`LogEntry::case_id`), a column so the officer can filter on it.
    pub case_id: Option<String>,
}

/// The part of a stored entry `audit verify` recomputes, as `Store::visit_log_rows` lends it: its position, its
/// bytes borrowed from the reader's own buffers, and its stored hashes.
#[derive(Debug, Clone, Copy)]
pub struct LogRowRef<'a> {
    pub seq: u64,
    pub bytes: &'a [u8],
    pub leaf_hash: Hash,
    pub chain_hash: Hash,
}

/// Work done on every row of a bulk read, on the thread that reads it, while its bytes are at hand.
pub type RowVisitor = Box<dyn FnMut(LogRowRef<'_>) + Send>;

/// What the log writer persists to continue without recomputing anything at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogState {
    pub log_id: String,
    pub size: u64,
    /// `audit::merkle::Frontier::to_bytes()`.
    pub frontier: Vec<u8>,
    pub chain_head: Hash,
}

/// The hash of one perfect subtree of a log's Merkle tree: leaves `[index << level, (index + 1) << level)`.
/// The writer stores those it completes at `audit::merkle::STORED_LEVEL` and up, so proofs need not read every leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSubtree {
    pub level: u8,
    pub index: u64,
    pub hash: Hash,
}

/// Stored subtrees of one level with index in `indices`: one term of `Store::subtrees`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtreeSpan {
    pub level: u8,
    pub indices: std::ops::Range<u64>,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub sender: String,
    pub receiver: String,
    pub message_type: String,
    pub purpose: String,
    /// Keyed pseudonym of the pupil (as in the log), `None` for aggregates.
    pub subject: Option<String>,
    pub sealed: Vec<u8>,
    /// JSON list of `[leaf path, consent id]` pairs re-checked when the message is fetched.
    pub consent_paths: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub log_id: String,
    pub seq: u64,
    pub leaf_hash: Hash,
}

#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub pos: i64,
    pub msg: NewMessage,
    pub fetch_count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub sender: String,
    pub key: String,
    pub body_hash: String,
    pub status: u16,
    /// The first response, without its `disclosure` member (added from the fields below on replay).
    pub response: Vec<u8>,
    pub log_id: String,
    pub seq: u64,
    pub leaf_hash: Hash,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConsent {
    pub id: String,
    pub registered_by: String,
    /// Keyed pseudonym of the pupil.
    pub subject: String,
    pub purpose: String,
    pub recipient: String,
    /// JSON list of category codes.
    pub categories: String,
    pub given_by: String,
    pub evidence: String,
    pub valid_from: String,
    pub valid_until: String,
    pub created_ms: i64,
    pub withdrawn_ms: Option<i64>,
    /// The pupil's birth date (`YYYY-MM-DD`) registered with the consent, for the age rules.
    pub subject_birth_date: Option<String>,
}

/// A change recorded by the log entries of the same batch.
///
/// Changes to existing mailbox rows are claims: they first lock the row (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so
/// no instance ever waits on another's row lock; SQLite: the single write transaction) and fail the whole batch
/// with `StoreError::Conflict` when the row is gone, locked by another transaction, or not in the state the caller
/// saw. So a log entry claiming a fetch or an acknowledgement is committed only by the one writer that won the row.
#[derive(Debug, Clone)]
pub enum Mutation {
    InsertMessage(Box<NewMessage>),
    /// Purge on acknowledgement, retention, recall or a "niet voor ons" report: the payload goes, the log entry stays,
    /// the sender's outbox row says how it ended, and its push (if any) ends with it. Conflict if already gone, or
    /// (`unfetched_only`, a recall) if it was fetched or a push of it may have reached the receiver (`in_doubt`): so a
    /// recall and a fetch racing each other have exactly one winner.
    DeleteMessage {
        id: String,
        end: MessageEnd,
        at_ms: i64,
        unfetched_only: bool,
    },
    /// Counts a fetch of each claim; conflict if any row is gone or was fetched since, so one fetch count is handed
    /// out (e.g. as "new") exactly once. The outbox row records the first fetch, and whether consent-only fields
    /// were stripped.
    ClaimFetched {
        claims: Vec<FetchClaim>,
        at_ms: i64,
    },
    /// Ends the outbox row of a message whose mailbox row is already gone (a "niet voor ons" report after the
    /// acknowledgement). Conflict when there is no such row or it already ended as recalled or misaddressed.
    EndOutbox {
        id: String,
        end: MessageEnd,
        at_ms: i64,
    },
    /// A new incident in the breach register.
    InsertIncident(StoredIncident),
    /// The incident as it stands after a change; conflict when it was changed since `previous_updated_ms`, so two
    /// officers editing at once cannot overwrite each other unseen.
    UpdateIncident {
        incident: StoredIncident,
        previous_updated_ms: i64,
    },
    InsertIdempotency(IdempotencyRecord),
    /// Queues a new message for push delivery to its receiver (`push_queue`), in the commit of its disclosure.
    QueuePush {
        id: String,
        receiver: String,
        at_ms: i64,
    },
    /// Ends the push of a message its receiver accepted, with the `message-fetched` entry (and `ClaimFetched`) of
    /// the same batch. Conflict unless the queue row is still leased by `owner` for `attempt`: so of two instances
    /// whose leases overlapped only one records the fetch, and a message purged meanwhile records none.
    EndPush {
        id: String,
        owner: String,
        attempt: i64,
    },
    InsertConsent(StoredConsent),
    WithdrawConsent {
        id: String,
        at_ms: i64,
    },
}

/// One message claimed by a fetch.
#[derive(Debug, Clone)]
pub struct FetchClaim {
    pub id: String,
    /// The fetch count as read: the claim fails if it changed.
    pub seen: i64,
    /// Consent-only fields stripped from what this fetch handed out.
    pub stripped: i64,
}

/// One push attempt leased by one instance (`Store::lease_push`): the queue row is its own until `lease_until_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushLease {
    pub message_id: String,
    pub receiver: String,
    /// This attempt's number, from 1; with the owner it names the lease.
    pub attempt: i64,
    pub created_ms: i64,
}

/// How a push attempt that was not accepted ends (`Store::release_push`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRelease {
    pub message_id: String,
    pub owner: String,
    pub attempt: i64,
    /// When to try again; `None`: the attempts are used up (`gave-up`).
    pub next_ms: Option<i64>,
    /// Whether the attempt may have reached the receiver (a timeout after the request was sent).
    pub in_doubt: bool,
    /// A fixed code (`connect-failed`, `tls-failed`, `timeout`, `status-NNN`), never text from the receiver.
    pub outcome: &'static str,
}

/// The push queue as the metrics page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PushQueueStats {
    pub waiting: u64,
    pub gave_up: u64,
    /// When the oldest waiting push was queued.
    pub oldest_waiting_ms: Option<i64>,
}

/// A message's push as its sender's outbox shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushStatus {
    pub state: String,
    pub attempts: i64,
    pub last_outcome: Option<String>,
    /// An attempt is in flight, or an earlier one may have reached the receiver: no recall.
    pub in_doubt: bool,
}

/// How a message's mailbox row ended, as the sender's outbox shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageEnd {
    Acknowledged,
    /// Past the gateway's period, never fetched.
    Expired,
    /// Past the gateway's period, fetched but not acknowledged.
    Purged,
    /// By the sender before any fetch, with its reason code.
    Recalled(String),
    /// Reported by the receiver as not for it, with its reason code.
    Misaddressed(String),
}

impl MessageEnd {
    /// The outbox status it leaves.
    pub fn status(&self) -> &'static str {
        match self {
            MessageEnd::Acknowledged => "acknowledged",
            MessageEnd::Expired => "expired",
            MessageEnd::Purged => "purged",
            MessageEnd::Recalled(_) => "recalled",
            MessageEnd::Misaddressed(_) => "misaddressed",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            MessageEnd::Recalled(r) | MessageEnd::Misaddressed(r) => Some(r),
            _ => None,
        }
    }
}

/// A message as its sender's outbox shows it, with its disclosure entry (which names the flow and the fields).
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: String,
    pub sender: String,
    pub receiver: String,
    pub purpose: String,
    pub message_type: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub status: String,
    pub fetched_ms: Option<i64>,
    pub stripped: i64,
    pub ended_ms: Option<i64>,
    pub end_reason: Option<String>,
    /// Its push delivery while one is waiting or gave up.
    pub push: Option<PushStatus>,
    pub disclosure: StoredEntry,
}

/// Filters of the outbox; the sender is always the caller.
#[derive(Debug, Clone, Default)]
pub struct OutboxFilter {
    pub sender: String,
    pub status: Option<String>,
    pub purpose: Option<String>,
    pub receiver: Option<String>,
    pub from_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Page after this (created_ms, id), newest first.
    pub before: Option<(i64, String)>,
    pub limit: usize,
}

/// One incident of the breach register as stored: the columns the register is searched by, and the whole record as
/// JSON (`oversight::incidents::Incident`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIncident {
    pub id: String,
    pub organisation: String,
    pub status: String,
    pub discovered_ms: i64,
    pub deadline_ms: i64,
    /// Whether the decision on notifying the AP is recorded.
    pub decided: bool,
    pub updated_ms: i64,
    pub record: String,
}

#[derive(Debug, Clone)]
pub struct Batch {
    pub entries: Vec<StoredEntry>,
    /// The perfect subtrees these entries complete (levels the writer keeps), for the same log.
    pub subtrees: Vec<StoredSubtree>,
    pub mutations: Vec<Mutation>,
    /// The log state after the batch; committed only if the stored size is still `state.size - entries.len()`
    /// (else `Conflict`: another writer appended to this log).
    pub state: LogState,
    /// A signed checkpoint note for `state.size`, when one is due.
    pub checkpoint: Option<StoredCheckpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub log_id: String,
    pub tree_size: u64,
    pub time_ms: i64,
    pub note: String,
}

/// Filters a privacy officer may combine; all are optional.
#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    pub from_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Entries where this organisation is the requester, sender or receiver.
    pub organisation: Option<String>,
    pub partner: Option<String>,
    pub purpose: Option<String>,
    pub flow_id: Option<String>,
    pub outcome: Option<String>,
    pub event: Option<String>,
    pub subject: Option<String>,
    /// The entries of one kerngroep case (P13).
    pub case_id: Option<String>,
    /// Page after this (time_ms, log_id, seq) position.
    pub after: Option<(i64, String, u64)>,
    pub limit: usize,
}

pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> &'static str;
    /// Fails unless every commit is flushed to stable storage before it returns.
    fn check_durability(&self) -> StoreFuture<'_, ()>;
    fn ping(&self) -> StoreFuture<'_, ()>;
    /// Commits (and removes in the same transaction) a row of `PROBE_BYTES`, so readiness after a storage failure
    /// rests on a write that needs fresh space, not on a tiny commit that free pages or WAL slack can absorb.
    fn probe_write(&self) -> StoreFuture<'_, ()>;

    /// Starts the loop that calls `commit_batch` (the log writer's). A backend whose commits block a thread gives it a
    /// thread of its own, where a commit runs without being handed to another thread and back; otherwise it is a
    /// task on the current runtime. The handle ends when the loop does.
    fn spawn_writer(&self, task: WriterTask) -> Result<tokio::task::JoinHandle<()>, StoreError>;

    fn load_log_state<'a>(&'a self, log_id: &'a str) -> StoreFuture<'a, Option<LogState>>;
    /// One transaction: entries, mutations, the new log state and an optional checkpoint.
    /// Shared, not borrowed: a backend may hand the batch to a thread of its own without copying it.
    fn commit_batch(&self, batch: Arc<Batch>) -> StoreFuture<'_, ()>;
    fn log_ids(&self) -> StoreFuture<'_, Vec<String>>;
    /// Entries of one log with `seq` in `[from, from + limit)`, in order.
    fn entries<'a>(
        &'a self,
        log_id: &'a str,
        from: u64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredEntry>>;
    /// Position, bytes and hashes of one log's entries with `seq` in `[from, from + limit)`, each lent to `visit`
    /// in order; the number of rows. `audit verify` hashes them where they were read (no copy of every entry, no
    /// second thread) and needs nothing else.
    fn visit_log_rows<'a>(
        &'a self,
        log_id: &'a str,
        from: u64,
        limit: usize,
        visit: RowVisitor,
    ) -> StoreFuture<'a, usize>;
    /// Leaf hashes of one log for `seq` in `seqs`, in order.
    fn leaf_hashes<'a>(
        &'a self,
        log_id: &'a str,
        seqs: std::ops::Range<u64>,
    ) -> StoreFuture<'a, Vec<Hash>>;
    /// The stored subtrees of one log within any of `spans`, ordered by level and index.
    fn subtrees<'a>(
        &'a self,
        log_id: &'a str,
        spans: &'a [SubtreeSpan],
    ) -> StoreFuture<'a, Vec<StoredSubtree>>;
    fn checkpoints<'a>(
        &'a self,
        log_id: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredCheckpoint>>;
    /// Entries across all logs matching the filter, in (time, log, seq) order.
    fn query_entries<'a>(&'a self, filter: &'a EntryFilter) -> StoreFuture<'a, Vec<StoredEntry>>;

    fn inbox<'a>(
        &'a self,
        receiver: &'a str,
        after_pos: i64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredMessage>>;
    fn message<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<StoredMessage>>;
    /// The log entry that disclosed message `id` (its `message-disclosed` entry), also after the mailbox row is gone.
    fn disclosure_of_message<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<StoredEntry>>;
    /// Messages whose retention ended before `now_ms`.
    fn expired_messages(&self, now_ms: i64, limit: usize) -> StoreFuture<'_, Vec<StoredMessage>>;

    fn idempotency<'a>(
        &'a self,
        sender: &'a str,
        key: &'a str,
    ) -> StoreFuture<'a, Option<IdempotencyRecord>>;

    fn consents_for_subject<'a>(&'a self, subject: &'a str) -> StoreFuture<'a, Vec<StoredConsent>>;
    fn consents_registered_by<'a>(
        &'a self,
        partner: &'a str,
    ) -> StoreFuture<'a, Vec<StoredConsent>>;
    fn consent<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<StoredConsent>>;
    /// The sender's outbox, newest first.
    fn outbox<'a>(&'a self, filter: &'a OutboxFilter) -> StoreFuture<'a, Vec<OutboxRow>>;
    /// One message of the outbox by id (whoever sent it: the caller checks).
    fn outbox_message<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<OutboxRow>>;
    /// Incidents of `organisation` (every organisation's when `None`), newest discovery first.
    fn incidents<'a>(
        &'a self,
        organisation: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<StoredIncident>>;
    fn incident<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<StoredIncident>>;

    /// Leases the push that is due first (`now_ms`) and not leased by a live instance, for `owner` until
    /// `lease_until_ms`, counting an attempt and marking it in doubt; `None` when nothing is due. Only a push whose
    /// message is still in the mailbox and unfetched; the message row is locked with the queue row (PostgreSQL
    /// `FOR UPDATE SKIP LOCKED`), so a recall either ran before or sees the push in doubt.
    fn lease_push<'a>(
        &'a self,
        owner: &'a str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> StoreFuture<'a, Option<PushLease>>;
    /// Ends an attempt that was not accepted (to be tried again, or given up); `false` when the lease was lost.
    fn release_push<'a>(&'a self, r: &'a PushRelease) -> StoreFuture<'a, bool>;
    /// Removes a leased push whose message needs none any more (fetched by pull meanwhile); `false` when the lease
    /// was lost.
    fn drop_push<'a>(&'a self, id: &'a str, owner: &'a str, attempt: i64) -> StoreFuture<'a, bool>;
    /// Frees the leases `owner` held before a restart (its earlier process is gone), so its pushes go on at once.
    fn release_leases<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, u64>;
    /// Removes the pushes nobody holds a live lease on whose message was fetched by pull meanwhile (or is gone);
    /// how many.
    fn sweep_pushes(&self, now_ms: i64) -> StoreFuture<'_, u64>;
    fn push_queue_stats(&self) -> StoreFuture<'_, PushQueueStats>;
}

pub type DynStore = Arc<dyn Store>;

/// Size of the readiness probe's row: more than a full batch of ordinary messages needs.
pub const PROBE_BYTES: usize = 256 * 1024;

/// Opens the backend named by the URL scheme and runs its migrations.
pub async fn open(url: &str) -> Result<DynStore, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::open(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else {
        Err(StoreError::Unavailable(
            "unsupported database URL scheme".into(),
        ))
    }
}

/// A backend's migrations, `(version, description, SQL)` in order, as plain SQL run once each.
fn migrator(migrations: &[(i64, &'static str, &'static str)]) -> sqlx::migrate::Migrator {
    use sqlx::migrate::{Migration, MigrationType};
    use sqlx::SqlSafeStr;
    sqlx::migrate::Migrator::with_migrations(
        migrations
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

pub(crate) fn to_hash(bytes: &[u8]) -> Result<Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("hash column is not 32 bytes".into()))
}
