//! The embedded default backend: one SQLite file, WAL, `synchronous = FULL`.
//!
//! Every statement here is a static string with bind parameters; rows are mapped to the store's domain rows.
//!
//! Reads go through the sqlx pool (bulk log reads through a rusqlite reader, see `scan_log_rows`). Writes
//! (`commit_batch`, `probe_write`) go through one dedicated rusqlite connection, the writer: in place on the log
//! writer's own thread (`spawn_writer_thread`), else one `spawn_blocking` per write. sqlx's SQLite driver ships
//! every statement and its bound values to its worker thread and back, which the gateway's profile put at about a
//! third of its CPU per message; on the writer, `benches/micro.rs` measured a
//! commit's CPU (user + sys) 25-40 % lower (1 row: 0.45 -> 0.26 ms, 16 rows: 1.7 -> 1.1 ms, 512 rows: 34 -> 26 ms).
//! It runs the same statements as the sqlx code (`sql`'s `*_SQL` constants) as cached prepared statements, rows one
//! by one (64-row statements were no faster without the worker hop). The writer has the pool's settings (WAL,
//! `synchronous = FULL`, `wal_autocheckpoint = 0`, 5 s busy timeout; `check_durability` checks both) and links the
//! same bundled SQLite as sqlx, so both share one view of the file locks. A writer connection whose transaction failed
//! with a database error, a failed COMMIT or a failed ROLLBACK (SQLite may keep the transaction and its write lock
//! when COMMIT fails on a full disk) is closed and a fresh one opened for the next write. A database that is not a
//! file (in memory) has no writer and keeps the sqlx path.

use super::StoreError;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

pub struct SqliteStore {
    pool: SqlitePool,
    /// The database file, for the bulk log reader.
    path: std::path::PathBuf,
    /// The write connection of a file-backed database; `None` in memory (writes go through the pool).
    writer: Option<Arc<Writer>>,
    /// Read connections for the per-message consent lookup of a file-backed database; `None` in memory.
    readers: Option<Readers>,
    /// The background WAL checkpointer; stops when the store is dropped.
    _checkpointer: Checkpointer,
}

/// How often the WAL is copied back into the database file (`Writer::checkpoint_pass`). Commits never do it
/// themselves (`wal_autocheckpoint = 0`), so no request waits for a checkpoint's copy and fsync. Often, so that each
/// pass hands the disk little: the writeback a pass starts is queued ahead of the next commit's sync, and at 500 ms
/// (tens of MB at 6,500 messages/s) that sync waited 10-15 ms behind it about once a tick; at 25 ms no commit took
/// over 10 ms at 50 % or 75 % of the maximum rate (BENCHMARKS.md).
const WAL_CHECKPOINT_EVERY: Duration = Duration::from_millis(25);
/// While the writer has written nothing since a pass found the whole WAL copied, passes run this often instead (for
/// writes by other connections); an idle gateway does not run a pass 40 times a second.
const WAL_CHECKPOINT_IDLE: Duration = Duration::from_millis(500);

/// A checkpoint pass this short left little behind (`checkpoint_pass`).
const FINISH_AFTER: Duration = Duration::from_millis(5);
/// Passes of one tick without the writer held, at most.
const CHECKPOINT_PASSES: usize = 4;
/// A WAL of this many frames (4 KiB pages, 64 MiB) is started again from its beginning (`checkpoint_pass`).
const RESTART_FRAMES: i64 = 16_384;

/// The WAL checkpointer's thread ("ketenpoort-wal-checkpoint"): a pass every `WAL_CHECKPOINT_EVERY` while the
/// writer has written since the last pass that found the WAL copied. Dropping this stops it (after the pass it may
/// be in); `None` for a database without a file.
struct Checkpointer {
    _stop: Option<std::sync::mpsc::Sender<()>>,
}

impl Checkpointer {
    fn spawn(writer: Arc<Writer>) -> Result<Checkpointer, StoreError> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("ketenpoort-wal-checkpoint".into())
            .spawn(move || {
                use std::sync::mpsc::RecvTimeoutError;
                use std::time::Instant;
                // The writer's write count when a pass last found the whole WAL copied, and when.
                let mut copied: Option<(u64, Instant)> = None;
                let mut next = Instant::now() + WAL_CHECKPOINT_EVERY;
                loop {
                    match stopped.recv_timeout(next.saturating_duration_since(Instant::now())) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                    next += WAL_CHECKPOINT_EVERY;
                    let writes = writer.writes.load(Ordering::Acquire);
                    if copied.is_some_and(|(seen, at)| {
                        seen == writes && at.elapsed() < WAL_CHECKPOINT_IDLE
                    }) {
                        continue;
                    }
                    // A pass that panics counts as one that did not catch up; the next tick tries again.
                    let caught_up = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        writer.checkpoint_pass()
                    }))
                    .unwrap_or(false);
                    copied = caught_up.then(|| (writes, Instant::now()));
                    // A pass that ran past the next tick moves the ticks after it: no passes back to back to catch up.
                    let now = Instant::now();
                    if next <= now {
                        next = now + WAL_CHECKPOINT_EVERY;
                    }
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("WAL checkpointer thread: {e}")))?;
        Ok(Checkpointer { _stop: Some(stop) })
    }
}

fn migrator() -> Migrator {
    super::migrator(&[
        (
            1,
            "init",
            include_str!("../../migrations/sqlite/0001_init.sql"),
        ),
        (
            2,
            "log entries in a rowid table",
            include_str!("../../migrations/sqlite/0002_log_entries_rowid.sql"),
        ),
        (
            3,
            "pupil pseudonym on mailbox rows",
            include_str!("../../migrations/sqlite/0003_message_subject.sql"),
        ),
        (
            4,
            "stored Merkle subtrees",
            include_str!("../../migrations/sqlite/0004_log_subtrees.sql"),
        ),
        (
            5,
            "log entry filters in the time index",
            include_str!("../../migrations/sqlite/0005_log_entries_filters.sql"),
        ),
        (
            6,
            "no organisation, sender or receiver indexes",
            include_str!("../../migrations/sqlite/0006_drop_party_indexes.sql"),
        ),
        (
            7,
            "pupil birth date on consents",
            include_str!("../../migrations/sqlite/0007_consent_birth_date.sql"),
        ),
        (
            8,
            "disclosure of a message by its id",
            include_str!("../../migrations/sqlite/0008_message_disclosures.sql"),
        ),
        (
            9,
            "outbox and breach register",
            include_str!("../../migrations/sqlite/0009_outbox_incidents.sql"),
        ),
        (
            10,
            "push delivery queue",
            include_str!("../../migrations/sqlite/0010_push_queue.sql"),
        ),
        (
            11,
            "kerngroep case id on log entries",
            include_str!("../../migrations/sqlite/0011_log_case_id.sql"),
        ),
    ])
}

impl SqliteStore {
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .pragma("wal_autocheckpoint", "0")
            .busy_timeout(Duration::from_secs(5));
        let path = opts.get_filename().to_owned();
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await?;
        migrator().run(&pool).await?;
        // After the migrations, so the writer never sees a schema that is still changing.
        let writer = if path.is_file() {
            let writer_path = path.clone();
            let writer = tokio::task::spawn_blocking(move || Writer::open(writer_path))
                .await
                .map_err(|e| {
                    StoreError::Unavailable(format!("opening the writer stopped: {e}"))
                })??;
            Some(Arc::new(writer))
        } else {
            None
        };
        // An in-memory database has no WAL to copy back.
        let checkpointer = match &writer {
            Some(writer) => Checkpointer::spawn(Arc::clone(writer))?,
            None => Checkpointer { _stop: None },
        };
        let readers = writer.as_ref().map(|_| Readers::new(path.clone()));
        Ok(SqliteStore {
            pool,
            path,
            writer,
            readers,
            _checkpointer: checkpointer,
        })
    }
}

/// Leaf hashes read through the sqlx pool rather than a fresh rusqlite reader (which opens a connection and maps
/// the file first): up to a few pages of a proof's own leaves.
const SMALL_LEAF_READ: u64 = 4096;

impl SqliteStore {
    pub const BACKEND: &'static str = "sqlite";

    /// Whether the bulk readers can open the database file with rusqlite (not for an in-memory database).
    fn file_backed(&self) -> bool {
        self.path.is_file()
    }

    /// Runs a rusqlite read of the database file on a blocking thread.
    async fn read_blocking<T: Send + 'static>(
        &self,
        read: impl FnOnce(&std::path::Path) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || read(&path))
            .await
            .map_err(|e| StoreError::Unavailable(format!("log reader stopped: {e}")))?
    }

    /// `Store::leaf_hashes` for proofs: the same rusqlite reader as `scan_log_rows` for long runs (a log without
    /// stored subtrees), the pool for short ones.
    async fn scan_leaf_hashes(
        &self,
        log_id: &str,
        seqs: std::ops::Range<u64>,
    ) -> Result<Vec<super::Hash>, StoreError> {
        // A proof's few hundred leaves come faster through the pool than through a reader opened for them.
        if !self.file_backed() || seqs.end.saturating_sub(seqs.start) <= SMALL_LEAF_READ {
            return sqlx_leaf_hashes(&self.pool, log_id, seqs).await;
        }
        let log_id = log_id.to_owned();
        self.read_blocking(move |path| read_leaf_hashes(path, &log_id, seqs))
            .await
    }

    /// `Store::consents_for_subject`, once per message with a subject: a point read of an indexed table on one of
    /// the store's rusqlite readers, run where the caller is (see `Readers`). When the reader cannot answer at once
    /// (SQLite busy, e.g. while another connection recovers the WAL), the lookup goes through the sqlx pool instead,
    /// which waits up to the full busy timeout without holding a runtime thread.
    async fn find_consents_for_subject(
        &self,
        subject: &str,
    ) -> Result<Vec<super::StoredConsent>, StoreError> {
        if let Some(readers) = &self.readers {
            if let Some(found) = readers.consents_for_subject(subject) {
                return Ok(found);
            }
        }
        sqlx_consents_for_subject(&self.pool, subject).await
    }

    /// `Store::visit_log_rows` for `audit verify`: read with rusqlite on a blocking thread, on the same bundled
    /// SQLite, because sqlx hands rows one by one from its worker thread (about 10 µs a row; BENCHMARKS.md); each
    /// row is lent to `visit` straight from SQLite's page (memory-mapped where the map reaches).
    async fn scan_log_rows(
        &self,
        log_id: &str,
        from: u64,
        limit: usize,
        visit: super::RowVisitor,
    ) -> Result<usize, StoreError> {
        if !self.file_backed() {
            return sqlx_log_rows(&self.pool, log_id, from, limit, visit).await;
        }
        let log_id = log_id.to_owned();
        self.read_blocking(move |path| read_log_rows(path, &log_id, from, limit, visit))
            .await
    }

    /// `Store::spawn_writer`: with a writer connection, the loop runs on a thread of its own (`spawn_writer_thread`)
    /// and commits there; in memory (writes through the pool) it is a task.
    fn start_writer(
        &self,
        task: super::WriterTask,
    ) -> Result<tokio::task::JoinHandle<()>, StoreError> {
        if self.writer.is_none() {
            return Ok(tokio::spawn(task));
        }
        spawn_writer_thread(task)
    }

    /// `Store::commit_batch`: on the writer connection, else (in memory) through the pool.
    async fn write_batch(&self, batch: Arc<super::Batch>) -> Result<(), StoreError> {
        let Some(writer) = &self.writer else {
            return sqlx_commit_batch(&self.pool, &batch).await;
        };
        writer
            .run(move |conn| transaction(conn, |conn| write_batch_rows(conn, &batch)))
            .await
    }

    /// `Store::probe_write`: on the writer connection (the connection whose writes readiness is about).
    async fn write_probe(&self) -> Result<(), StoreError> {
        let Some(writer) = &self.writer else {
            return sqlx_probe_write(&self.pool).await;
        };
        let note = probe_note();
        writer
            .run(move |conn| {
                transaction(conn, |conn| {
                    exec(conn, PROBE_INSERT_SQL, [&note])?;
                    exec(conn, PROBE_DELETE_SQL, ())?;
                    Ok(())
                })
            })
            .await
    }

    async fn durability(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await?;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await?;
        drop(conn);
        require_durable("", sync, &mode)?;
        if let Some(writer) = &self.writer {
            let (sync, mode) = writer
                .run(|conn| {
                    let pragmas = || -> rusqlite::Result<(i64, String)> {
                        Ok((
                            conn.query_row("PRAGMA synchronous", (), |r| r.get(0))?,
                            conn.query_row("PRAGMA journal_mode", (), |r| r.get(0))?,
                        ))
                    };
                    pragmas().map_err(|e| Failed::retire(db_error(e)))
                })
                .await?;
            require_durable(" (writer connection)", sync, &mode)?;
        }
        Ok(())
    }
}

/// `synchronous` (2 = FULL, 3 = EXTRA) and `journal_mode` of one connection.
fn require_durable(which: &str, sync: i64, mode: &str) -> Result<(), StoreError> {
    if sync < 2 {
        return Err(StoreError::NotDurable(format!(
            "SQLite synchronous is {sync}{which}, FULL (2) is required"
        )));
    }
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NotDurable(format!(
            "SQLite journal_mode is {mode}{which}, WAL is required"
        )));
    }
    Ok(())
}

thread_local! {
    /// Set on the thread `spawn_writer_thread` starts: there `Writer::run` writes in place.
    static ON_WRITER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs the log writer's loop on a thread of its own ("ketenpoort-log-writer", a single-threaded runtime with timers
/// and nothing else on it), where `Writer::run` commits without a `spawn_blocking` hand-off: a batch then costs one
/// wake-up of this thread and the wake-ups of the requests it answers. The returned task ends when the loop does,
/// and fails if the thread panicked.
fn spawn_writer_thread(task: super::WriterTask) -> Result<tokio::task::JoinHandle<()>, StoreError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| StoreError::Unavailable(format!("log writer runtime: {e}")))?;
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("ketenpoort-log-writer".into())
        .spawn(move || {
            ON_WRITER_THREAD.set(true);
            runtime.block_on(task);
            let _ = done.send(());
        })
        .map_err(|e| StoreError::Unavailable(format!("log writer thread: {e}")))?;
    Ok(tokio::spawn(async move {
        if finished.await.is_err() {
            panic!("the log writer thread panicked");
        }
    }))
}

/// The store's one write connection (rusqlite), used from one blocking thread at a time, and the WAL checkpointer
/// that works beside it.
struct Writer {
    path: std::path::PathBuf,
    /// `None` after a failed transaction retired the connection; the next write opens a fresh one.
    conn: Mutex<Option<rusqlite::Connection>>,
    /// The background checkpointer's own connection (`checkpoint_pass`); opened on its first pass.
    checkpointer: Mutex<Option<rusqlite::Connection>>,
    /// Writes done on `conn` (successful or not): the checkpointer skips its pass while this has not moved.
    writes: AtomicU64,
}

/// A failed write, and whether its connection must not be used again.
struct Failed {
    error: StoreError,
    retire: bool,
}

impl Failed {
    fn retire(error: StoreError) -> Failed {
        Failed {
            error,
            retire: true,
        }
    }
}

/// Prepared statements the writer keeps: all of its statements (about 15), so none is ever prepared twice.
const WRITER_STATEMENTS: usize = 32;

impl Writer {
    fn open(path: std::path::PathBuf) -> Result<Writer, StoreError> {
        let conn = open_writer(&path)?;
        Ok(Writer {
            path,
            conn: Mutex::new(Some(conn)),
            checkpointer: Mutex::new(None),
            writes: AtomicU64::new(0),
        })
    }

    /// One pass of the background checkpointer (blocking): a PASSIVE checkpoint beside the writer, which copies what
    /// no reader still needs and blocks nobody. Under continuous load such a pass never copies the frames written
    /// while it ran, and SQLite starts the WAL again from its beginning only when a write transaction begins on a
    /// completely copied WAL: without more, the WAL grows without bound (hundreds of MB in one benchmark run) and
    /// every commit appends to fresh file pages (page-cache allocation and zeroing, ext4 block allocation). So passes
    /// run back to back until one is short (`FINISH_AFTER`) and, once the WAL holds `RESTART_FRAMES` or more, the
    /// rest is copied with the writer held between two batches, and the next batch restarts the WAL (from then on
    /// over file pages it already has: `journal_size_limit` is above the restart size). Holding the writer stalls
    /// commits for that last pass (its copy and the database file's sync), so it is done only when the WAL is that
    /// large, not at every tick: at every tick it put the p99 at 50 % of the maximum rate from 8 to 36 ms.
    /// A failed pass changes nothing committed; the next one goes on.
    /// Returns whether the last pass found the whole WAL copied.
    fn checkpoint_pass(&self) -> bool {
        let mut slot = self
            .checkpointer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let conn = match &mut *slot {
            Some(conn) => conn,
            None => match open_reader(&self.path) {
                Ok(conn) => slot.insert(conn),
                Err(e) => {
                    tracing::debug!(error = %e, "WAL checkpointer cannot open the database; retried later");
                    return false;
                }
            },
        };
        // The number of frames in the WAL (copied or not) as the pass found it, and how many of them are copied.
        let passive = |conn: &rusqlite::Connection| {
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", (), |r| {
                Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            })
        };
        // Passes back to back, each copying what was written during the one before, until one is short.
        let (mut frames, mut copied) = (0, 0);
        for _ in 0..CHECKPOINT_PASSES {
            let started = std::time::Instant::now();
            match passive(conn) {
                Ok(n) => (frames, copied) = n,
                Err(e) => {
                    tracing::debug!(error = %e, "WAL checkpoint failed; retried at the next tick");
                    *slot = None;
                    return false;
                }
            }
            if started.elapsed() <= FINISH_AFTER {
                break;
            }
        }
        // SQLite syncs the database file only in a pass that reaches the end of the WAL, which under load is the held
        // pass below: it then flushed every page the passive passes had copied since the last restart, 12-24 ms with
        // commits waiting. Starting that writeback now, a tick (`WAL_CHECKPOINT_EVERY`) at a time, leaves it little
        // to flush, and each tick's share is small enough not to hold up the commits' own syncs behind it.
        if let Err(e) = start_writeback(&self.path) {
            tracing::debug!(error = %e, "cannot start the database file's writeback; the held pass flushes it");
        }
        if frames < RESTART_FRAMES {
            return frames == copied;
        }
        // The rest with the writer held: no write is in progress while the guard is held.
        let _writing = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match passive(conn) {
            Ok((frames, copied)) => frames == copied,
            Err(e) => {
                tracing::debug!(error = %e, "WAL checkpoint failed; retried at the next tick");
                *slot = None;
                false
            }
        }
    }

    /// Runs `write` on the writer connection (opening a connection if a failure retired the last one): in place on
    /// the log writer's own thread, else on a blocking thread; a connection `write` reports as failed is closed,
    /// never used again. The write runs to completion even if the caller stops waiting.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        write: impl FnOnce(&rusqlite::Connection) -> Result<T, Failed> + Send + 'static,
    ) -> Result<T, StoreError> {
        if ON_WRITER_THREAD.get() {
            return self.run_blocking(write);
        }
        let writer = Arc::clone(self);
        tokio::task::spawn_blocking(move || writer.run_blocking(write))
            .await
            .map_err(|e| StoreError::Unavailable(format!("log writer thread stopped: {e}")))?
    }

    fn run_blocking<T>(
        &self,
        write: impl FnOnce(&rusqlite::Connection) -> Result<T, Failed>,
    ) -> Result<T, StoreError> {
        let mut slot = self.conn.lock().unwrap_or_else(|poisoned| {
            // A write panicked part-way: its connection's state is unknown, so it goes.
            let mut slot = poisoned.into_inner();
            *slot = None;
            self.conn.clear_poison();
            slot
        });
        let conn = match &mut *slot {
            Some(conn) => conn,
            None => slot.insert(open_writer(&self.path)?),
        };
        let result = write(conn);
        // Counted once the write is over, so a commit that ends after a checkpoint pass began is seen by the next tick.
        self.writes.fetch_add(1, Ordering::Release);
        match result {
            Ok(v) => Ok(v),
            Err(Failed { error, retire }) => {
                if retire {
                    // Closing rolls back whatever SQLite still holds and releases the file locks.
                    *slot = None;
                }
                Err(error)
            }
        }
    }
}

/// Starts the kernel's writeback of the database file's dirty pages and returns without waiting for it (Linux
/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`; elsewhere nothing). Durability does not rest on it: SQLite still syncs.
fn start_writeback(path: &std::path::Path) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: `file` keeps the descriptor open for the call; the call reads no memory of ours.
        let rc =
            unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    drop(file);
    Ok(())
}

fn open_writer(path: &std::path::Path) -> Result<rusqlite::Connection, StoreError> {
    let conn = open_reader(path)?;
    // The pool's settings (`SqliteStore::open`); `check_durability` reads them back.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 134217728; PRAGMA foreign_keys = ON;",
    )
    .map_err(db_error)?;
    conn.set_prepared_statement_cache_capacity(WRITER_STATEMENTS);
    Ok(conn)
}

/// rusqlite's errors as the store's, like `From<sqlx::Error>`: a UNIQUE or PRIMARY KEY violation is a `Conflict`
/// (another job wrote the row first), everything else `Unavailable`.
fn db_error(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi;
    if let rusqlite::Error::SqliteFailure(failure, message) = &e {
        if matches!(
            failure.extended_code,
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        ) {
            return StoreError::Conflict(message.clone().unwrap_or_else(|| e.to_string()));
        }
    }
    StoreError::Unavailable(e.to_string())
}

/// Runs one cached statement that returns no rows; the number of rows it changed.
fn exec(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<usize, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute(params))
        .map_err(db_error)
}

/// `body` in one `BEGIN IMMEDIATE` transaction (the write lock first, so the busy timeout applies to taking it,
/// never to upgrading a read). On failure it is rolled back; the connection is kept only when the rollback left it
/// clean after one of the store's own refusals (`Conflict`, `Corrupt`); after a database error, a failed COMMIT or a
/// failed ROLLBACK it is retired (SQLite may keep the transaction and its write lock when COMMIT fails, e.g. on a
/// full disk).
fn transaction(
    conn: &rusqlite::Connection,
    body: impl FnOnce(&rusqlite::Connection) -> Result<(), StoreError>,
) -> Result<(), Failed> {
    exec(conn, "BEGIN IMMEDIATE", ()).map_err(Failed::retire)?;
    let error = match body(conn) {
        Ok(()) => match exec(conn, "COMMIT", ()) {
            Ok(_) => return Ok(()),
            Err(error) => {
                if !conn.is_autocommit() {
                    let _ = exec(conn, "ROLLBACK", ());
                }
                return Err(Failed::retire(error));
            }
        },
        Err(error) => error,
    };
    // SQLite may already have rolled back on its own (e.g. SQLITE_FULL, SQLITE_IOERR).
    let rolled_back = conn.is_autocommit() || exec(conn, "ROLLBACK", ()).is_ok();
    let retire =
        !rolled_back || !conn.is_autocommit() || matches!(error, StoreError::Unavailable(_));
    Err(Failed { error, retire })
}

/// The statements of `sqlx_commit_batch`, in the same order, with the same outcomes: log rows, new mailbox rows,
/// the other mutations in order (claims conflict when the row is gone or was fetched since), the log state
/// compare-and-set, the checkpoint.
fn write_batch_rows(conn: &rusqlite::Connection, batch: &super::Batch) -> Result<(), StoreError> {
    use super::Mutation;
    {
        let mut stmt = conn.prepare_cached(&INSERT_ENTRY_SQL).map_err(db_error)?;
        for e in &batch.entries {
            stmt.execute((
                &e.log_id,
                e.seq as i64,
                e.time_ms,
                &e.event,
                &e.partner,
                &e.organisation,
                &e.sender,
                &e.receiver,
                &e.purpose,
                &e.flow_id,
                &e.subject,
                &e.outcome,
                &e.bytes,
                &e.leaf_hash[..],
                &e.chain_hash[..],
                &e.case_id,
            ))
            .map_err(db_error)?;
        }
    }
    if !batch.subtrees.is_empty() {
        let mut stmt = conn.prepare_cached(INSERT_SUBTREE_SQL).map_err(db_error)?;
        for t in &batch.subtrees {
            stmt.execute((
                &batch.state.log_id,
                i64::from(t.level),
                t.index as i64,
                &t.hash[..],
            ))
            .map_err(db_error)?;
        }
    }
    // New mailbox rows first (no other mutation of a batch can refer to a row inserted in the same batch: a fetch
    // or ack needs a committed message), then the rest in order.
    {
        let mut stmt = conn.prepare_cached(&INSERT_MESSAGE_SQL).map_err(db_error)?;
        for m in &batch.mutations {
            let Mutation::InsertMessage(m) = m else {
                continue;
            };
            stmt.execute((
                &m.id,
                &m.sender,
                &m.receiver,
                &m.message_type,
                &m.purpose,
                &m.subject,
                &m.sealed,
                &m.consent_paths,
                m.created_ms,
                m.expires_ms,
                &m.log_id,
                m.seq as i64,
                &m.leaf_hash[..],
            ))
            .map_err(db_error)?;
        }
    }
    for m in &batch.mutations {
        match m {
            Mutation::InsertMessage(_) => {}
            Mutation::DeleteMessage {
                id,
                end,
                at_ms,
                unfetched_only,
            } => {
                if claim_row(conn, id)? != 0 && *unfetched_only {
                    return Err(StoreError::Conflict("message was fetched".into()));
                }
                if *unfetched_only && push_in_doubt(conn, id)? {
                    return Err(StoreError::Conflict(
                        "a push of this message may have reached its receiver".into(),
                    ));
                }
                exec(conn, DELETE_MESSAGE_SQL, [id])?;
                exec(conn, DELETE_PUSH_SQL, [id])?;
                exec(
                    conn,
                    END_OUTBOX_SQL,
                    (end.status(), at_ms, end.reason(), id),
                )?;
            }
            Mutation::ClaimFetched { claims, at_ms } => {
                for c in claims {
                    if claim_row(conn, &c.id)? != c.seen {
                        return Err(StoreError::Conflict(
                            "message was fetched concurrently".into(),
                        ));
                    }
                    exec(conn, COUNT_FETCH_SQL, [&c.id])?;
                    exec(conn, FETCH_OUTBOX_SQL, (c.stripped, at_ms, &c.id))?;
                }
            }
            Mutation::EndOutbox { id, end, at_ms } => {
                let done = exec(
                    conn,
                    END_GONE_OUTBOX_SQL,
                    (end.status(), at_ms, end.reason(), id),
                )?;
                if done != 1 {
                    return Err(StoreError::Conflict(
                        "no such sent message, or it was already recalled or reported".into(),
                    ));
                }
            }
            Mutation::InsertIncident(i) => {
                exec(
                    conn,
                    INSERT_INCIDENT_SQL,
                    (
                        &i.id,
                        &i.organisation,
                        &i.status,
                        i.discovered_ms,
                        i.deadline_ms,
                        i64::from(i.decided),
                        i.updated_ms,
                        &i.record,
                    ),
                )?;
            }
            Mutation::UpdateIncident {
                incident: i,
                previous_updated_ms,
            } => {
                let done = exec(
                    conn,
                    UPDATE_INCIDENT_SQL,
                    (
                        &i.status,
                        i64::from(i.decided),
                        i.updated_ms,
                        &i.record,
                        &i.id,
                        previous_updated_ms,
                    ),
                )?;
                if done != 1 {
                    return Err(StoreError::Conflict(
                        "the incident was changed by another request".into(),
                    ));
                }
            }
            Mutation::InsertIdempotency(r) => {
                exec(
                    conn,
                    INSERT_IDEMPOTENCY_SQL,
                    (
                        &r.sender,
                        &r.key,
                        &r.body_hash,
                        r.status as i64,
                        &r.response,
                        &r.log_id,
                        r.seq as i64,
                        &r.leaf_hash[..],
                    ),
                )?;
            }
            Mutation::InsertConsent(c) => {
                exec(
                    conn,
                    INSERT_CONSENT_SQL,
                    (
                        &c.id,
                        &c.registered_by,
                        &c.subject,
                        &c.purpose,
                        &c.recipient,
                        &c.categories,
                        &c.given_by,
                        &c.evidence,
                        &c.valid_from,
                        &c.valid_until,
                        c.created_ms,
                        c.withdrawn_ms,
                        &c.subject_birth_date,
                    ),
                )?;
            }
            Mutation::QueuePush {
                id,
                receiver,
                at_ms,
            } => {
                exec(conn, QUEUE_PUSH_SQL, (id, receiver, at_ms, at_ms))?;
            }
            Mutation::EndPush { id, owner, attempt } => {
                if exec(conn, END_PUSH_SQL, (id, owner, attempt))? != 1 {
                    return Err(StoreError::Conflict(
                        "the push was ended or leased by another instance".into(),
                    ));
                }
            }
            Mutation::WithdrawConsent { id, at_ms } => {
                exec(conn, WITHDRAW_CONSENT_SQL, (at_ms, id))?;
            }
        }
    }
    let s = &batch.state;
    let previous = s
        .size
        .checked_sub(batch.entries.len() as u64)
        .ok_or_else(|| StoreError::Corrupt("log state smaller than the batch".into()))?;
    let updated = exec(
        conn,
        SET_LOG_STATE_SQL,
        (
            &s.log_id,
            s.size as i64,
            &s.frontier,
            &s.chain_head[..],
            previous as i64,
        ),
    )?;
    if updated != 1 {
        return Err(StoreError::Conflict(
            "another writer appended to this log".into(),
        ));
    }
    if let Some(cp) = &batch.checkpoint {
        exec(
            conn,
            INSERT_CHECKPOINT_SQL,
            (&cp.log_id, cp.tree_size as i64, cp.time_ms, &cp.note),
        )?;
    }
    Ok(())
}

/// The mailbox row's fetch count; `Conflict` when it is gone (the write transaction excludes every other writer).
fn claim_row(conn: &rusqlite::Connection, id: &str) -> Result<i64, StoreError> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached(CLAIM_SQL)
        .and_then(|mut stmt| stmt.query_row([id], |r| r.get(0)).optional())
        .map_err(db_error)?
        .ok_or_else(|| {
            StoreError::Conflict("message is gone or being changed by another request".into())
        })
}

/// Whether a push of the message may have reached its receiver (`PUSH_IN_DOUBT_SQL`).
fn push_in_doubt(conn: &rusqlite::Connection, id: &str) -> Result<bool, StoreError> {
    use rusqlite::OptionalExtension;
    let doubt: Option<i64> = conn
        .prepare_cached(PUSH_IN_DOUBT_SQL)
        .and_then(|mut stmt| stmt.query_row([id], |r| r.get(0)).optional())
        .map_err(db_error)?;
    Ok(doubt.is_some_and(|d| d != 0))
}

/// `INSERT INTO <table> (<columns>) VALUES (?1, ..., ?n)`: one row.
fn insert_one(table: &str, columns: &str) -> String {
    let params: Vec<String> = (1..=columns.split(',').count())
        .map(|i| format!("?{i}"))
        .collect();
    format!(
        "INSERT INTO {table} ({columns}) VALUES ({})",
        params.join(", ")
    )
}

/// One log row. Rows go in one by one through a cached statement: without sqlx's worker hop per statement this was
/// measured as fast as 64-row statements (benches/micro.rs `commit_batch`, CPU per batch within noise at 16, 128
/// and 512 rows), with less code.
static INSERT_ENTRY_SQL: LazyLock<String> =
    LazyLock::new(|| insert_one("log_entries", ENTRY_COLUMNS));
static INSERT_MESSAGE_SQL: LazyLock<String> =
    LazyLock::new(|| insert_one("messages", NEW_MESSAGE_COLUMNS));

fn read_leaf_hashes(
    path: &std::path::Path,
    log_id: &str,
    seqs: std::ops::Range<u64>,
) -> Result<Vec<super::Hash>, StoreError> {
    let unavailable = |e: rusqlite::Error| StoreError::Unavailable(e.to_string());
    let conn = open_reader(path)?;
    let mut stmt = conn.prepare(LEAF_HASHES_SQL).map_err(unavailable)?;
    let mut rows = stmt
        .query((log_id, seqs.start as i64, seqs.end as i64))
        .map_err(unavailable)?;
    let mut out = Vec::with_capacity(seqs.end.saturating_sub(seqs.start).min(1 << 24) as usize);
    while let Some(r) = rows.next().map_err(unavailable)? {
        let v = r.get_ref(0).map_err(unavailable)?;
        let b = v
            .as_blob()
            .map_err(|_| StoreError::Corrupt("leaf hash column is not a blob".into()))?;
        out.push(super::to_hash(b)?);
    }
    Ok(out)
}

/// A rusqlite connection to the database file with the pool's busy timeout (the bulk readers use it as it is; the
/// writer sets its pragmas on top).
fn open_reader(path: &std::path::Path) -> Result<rusqlite::Connection, StoreError> {
    use rusqlite::OpenFlags;
    let unavailable = |e: rusqlite::Error| StoreError::Unavailable(e.to_string());
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(unavailable)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(unavailable)?;
    Ok(conn)
}

/// Idle read connections for the consent lookup, each with its prepared statement cached.
///
/// The lookup runs on the calling (runtime) thread, not on a blocking thread: it is one indexed point read of a
/// small table whose pages are in SQLite's and the OS's cache, microseconds like taking a lock, and the hop to a
/// worker thread and back (sqlx's SQLite driver, or `spawn_blocking`) cost more than the read itself (~12 % of the
/// gateway's CPU per P1 message, BENCHMARKS.md). In WAL mode a reader never waits for the writer; it can only be
/// busy while another connection recovers or restarts the WAL, so its busy timeout is short and a busy reader hands
/// the lookup to the sqlx pool (`find_consents_for_subject`).
struct Readers {
    path: std::path::PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

/// Read connections kept open (the runtime has one thread per core; more callers open and close their own).
const IDLE_READERS: usize = 4;
/// How long a consent reader waits for a busy database before handing the lookup over.
const READER_BUSY_TIMEOUT: Duration = Duration::from_millis(20);

impl Readers {
    fn new(path: std::path::PathBuf) -> Readers {
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The consent rows of one pupil pseudonym, or `None` when the reader could not answer (to be asked elsewhere).
    fn consents_for_subject(&self, subject: &str) -> Option<Vec<super::StoredConsent>> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let conn = open_reader(&self.path).ok()?;
                conn.busy_timeout(READER_BUSY_TIMEOUT).ok()?;
                conn
            }
        };
        match read_consents(&conn, subject) {
            Ok(rows) => {
                let mut idle = self
                    .idle
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if idle.len() < IDLE_READERS {
                    idle.push(conn);
                }
                Some(rows)
            }
            // The connection is closed (whatever state it is in) and the lookup goes elsewhere.
            Err(_) => None,
        }
    }
}

fn read_consents(
    conn: &rusqlite::Connection,
    subject: &str,
) -> rusqlite::Result<Vec<super::StoredConsent>> {
    let mut stmt = conn.prepare_cached(CONSENTS_FOR_SUBJECT_SQL)?;
    let rows = stmt.query_map([subject], |r| {
        Ok(super::StoredConsent {
            id: r.get(0)?,
            registered_by: r.get(1)?,
            subject: r.get(2)?,
            purpose: r.get(3)?,
            recipient: r.get(4)?,
            categories: r.get(5)?,
            given_by: r.get(6)?,
            evidence: r.get(7)?,
            valid_from: r.get(8)?,
            valid_until: r.get(9)?,
            created_ms: r.get(10)?,
            withdrawn_ms: r.get(11)?,
            subject_birth_date: r.get(12)?,
        })
    })?;
    rows.collect()
}

fn read_log_rows(
    path: &std::path::Path,
    log_id: &str,
    from: u64,
    limit: usize,
    mut visit: super::RowVisitor,
) -> Result<usize, StoreError> {
    let unavailable = |e: rusqlite::Error| StoreError::Unavailable(e.to_string());
    fn blob(v: rusqlite::types::ValueRef<'_>) -> Result<&[u8], StoreError> {
        v.as_blob()
            .map_err(|_| StoreError::Corrupt("log entry column is not a blob".into()))
    }
    let conn = open_reader(path)?;
    // Pages of the file are read through a memory map (up to `READER_MMAP_BYTES`; beyond it with read calls):
    // no read system call and no copy of every 4 KB page, and `visit` gets the entry's bytes in place. The log is append-only, so the file never shrinks
    // under the map. Each page of the log is read once, so the page cache only needs the B-tree paths: a small
    // one is not allocated afresh (and faulted in) for every call.
    conn.pragma_update(None, "mmap_size", READER_MMAP_BYTES)
        .map_err(unavailable)?;
    conn.pragma_update(None, "cache_size", READER_CACHE_PAGES)
        .map_err(unavailable)?;
    let mut stmt = conn
        .prepare(
            "SELECT seq, entry, leaf_hash, chain_hash FROM log_entries WHERE log_id = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3",
        )
        .map_err(unavailable)?;
    let mut rows = stmt
        .query((log_id, from as i64, limit as i64))
        .map_err(unavailable)?;
    let mut count = 0;
    while let Some(r) = rows.next().map_err(unavailable)? {
        let seq: i64 = r.get(0).map_err(unavailable)?;
        visit(super::LogRowRef {
            seq: seq as u64,
            bytes: blob(r.get_ref(1).map_err(unavailable)?)?,
            leaf_hash: super::to_hash(blob(r.get_ref(2).map_err(unavailable)?)?)?,
            chain_hash: super::to_hash(blob(r.get_ref(3).map_err(unavailable)?)?)?,
        });
        count += 1;
    }
    Ok(count)
}

/// `mmap_size` of the bulk log reader, 64 GiB: the bundled SQLite's compile-time maximum (`SQLITE_MAX_MMAP_SIZE`
/// in `.cargo/config.toml`; SQLite's own default maximum, 2 GB, covered half of a 1-million-entry log, 4.3 GB, and
/// the rest cost a `pread` and a copy per page: ~20 % of `audit verify`'s CPU). Address space only: the kernel's page
/// cache holds the pages either way.
const READER_MMAP_BYTES: i64 = 1 << 36;
/// `cache_size` (pages) of the bulk log reader.
const READER_CACHE_PAGES: i64 = 64;

super::sql::sql_store!(SqliteStore, sqlx::Sqlite, sqlx::sqlite::SqliteRow, "", "+");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Batch, LogState, Mutation, Store, StoredCheckpoint, StoredEntry};

    fn migrated() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        for m in migrator().iter() {
            conn.execute_batch(m.sql.as_str()).unwrap();
        }
        conn
    }

    /// How SQLite plans an officer's search (`query_entries`), as `EXPLAIN QUERY PLAN` details.
    fn plan_of(conn: &rusqlite::Connection, filter: &EntryFilter) -> Vec<String> {
        let query = entries_query(filter);
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", query.sql().as_str()))
            .unwrap();
        let unbound = std::iter::repeat_n(rusqlite::types::Null, stmt.parameter_count());
        stmt.query_map(rusqlite::params_from_iter(unbound), |r| {
            r.get::<_, String>(3)
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    /// The first column of every row `sql` returns.
    fn names(conn: &rusqlite::Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map((), |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Every search by organisation (each officer's scope), partner, purpose, flow, outcome or event walks the time
    /// index, which holds the columns they test, in order and stops at the page's last row: no sort of every match
    /// (an organisation with a million entries took 1.9 s that way) and no read of every table row (a rare partner,
    /// 1.6 s). A pupil search uses the subject index.
    #[test]
    fn officer_searches_walk_the_time_index_in_order() {
        let conn = migrated();
        let some = || Some("x".to_owned());
        let filters = [
            EntryFilter {
                organisation: some(),
                ..Default::default()
            },
            EntryFilter {
                partner: some(),
                ..Default::default()
            },
            EntryFilter {
                organisation: some(),
                partner: some(),
                purpose: some(),
                ..Default::default()
            },
            EntryFilter {
                organisation: some(),
                from_ms: Some(5),
                until_ms: Some(9),
                ..Default::default()
            },
            EntryFilter {
                flow_id: some(),
                outcome: some(),
                event: some(),
                ..Default::default()
            },
            EntryFilter {
                organisation: some(),
                after: Some((5, "log".into(), 3)),
                ..Default::default()
            },
        ];
        for f in &filters {
            let plan = plan_of(&conn, f);
            assert_eq!(plan.len(), 1, "{f:?}: {plan:?}");
            assert!(
                plan[0].starts_with("SCAN log_entries USING INDEX log_entries_time")
                    || plan[0].starts_with("SEARCH log_entries USING INDEX log_entries_time"),
                "{f:?}: {plan:?}"
            );
        }
        // Tested in the index, not in a ~3 KB table row read for each entry.
        let indexed = names(
            &conn,
            "SELECT name FROM pragma_index_info('log_entries_time')",
        );
        for column in [
            "organisation",
            "partner",
            "sender",
            "receiver",
            "purpose",
            "flow_id",
            "outcome",
            "event",
        ] {
            assert!(
                indexed.iter().any(|c| c == column),
                "{column} not in {indexed:?}"
            );
        }
        let pupil = EntryFilter {
            organisation: some(),
            subject: some(),
            ..Default::default()
        };
        let plan = plan_of(&conn, &pupil);
        assert!(
            plan[0].contains("USING INDEX log_entries_subject (subject=?)"),
            "{plan:?}"
        );
        let case = EntryFilter {
            organisation: some(),
            case_id: some(),
            ..Default::default()
        };
        let plan = plan_of(&conn, &case);
        assert!(
            plan[0].contains("USING INDEX log_entries_case (case_id=?)"),
            "{plan:?}"
        );
        // Every index on the log is one a statement reads (or its primary key): each costs every commit a page; the
        // kerngroep cases' index only for entries that have a case id.
        let indexes = names(
            &conn,
            "SELECT name FROM pragma_index_list('log_entries') ORDER BY name",
        );
        assert_eq!(
            indexes,
            [
                "log_entries_case",
                "log_entries_subject",
                "log_entries_time",
                "sqlite_autoindex_log_entries_1"
            ]
        );
    }

    /// rusqlite binds by position and SQLite numbers `$n` parameters in order of first appearance: every shared
    /// statement the writer runs must name them `$1`, `$2`, ... in that order, or values would land in the wrong column.
    #[test]
    fn shared_statements_number_their_parameters_in_order() {
        let conn = migrated();
        for sql in [
            CLAIM_SQL,
            DELETE_MESSAGE_SQL,
            COUNT_FETCH_SQL,
            FETCH_OUTBOX_SQL,
            END_OUTBOX_SQL,
            END_GONE_OUTBOX_SQL,
            INSERT_INCIDENT_SQL,
            UPDATE_INCIDENT_SQL,
            INSERT_IDEMPOTENCY_SQL,
            INSERT_CONSENT_SQL,
            WITHDRAW_CONSENT_SQL,
            PUSH_IN_DOUBT_SQL,
            QUEUE_PUSH_SQL,
            END_PUSH_SQL,
            DELETE_PUSH_SQL,
            SET_LOG_STATE_SQL,
            INSERT_CHECKPOINT_SQL,
            INSERT_SUBTREE_SQL,
            LEAF_HASHES_SQL,
            PROBE_INSERT_SQL,
            PROBE_DELETE_SQL,
        ] {
            let stmt = conn.prepare(sql).unwrap();
            for i in 1..=stmt.parameter_count() {
                assert_eq!(
                    stmt.parameter_name(i),
                    Some(format!("${i}").as_str()),
                    "{sql}"
                );
            }
        }
    }

    /// The checkpointer starts writeback on a read-only descriptor of the database file: the kernel must accept it
    /// (a refusal would leave the held pass to flush a second of pages again), and a missing file is an error.
    #[test]
    fn writeback_starts_on_a_read_only_descriptor() {
        let dir = std::env::temp_dir().join(format!("kp-writeback-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db");
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        start_writeback(&path).expect("sync_file_range on a read-only descriptor");
        assert!(start_writeback(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn batch(size_before: u64, n: u64, mutations: Vec<Mutation>) -> Batch {
        let entries = (size_before..size_before + n)
            .map(|seq| StoredEntry {
                log_id: "log".into(),
                seq,
                time_ms: seq as i64,
                event: "e".into(),
                partner: "p".into(),
                organisation: "o".into(),
                sender: None,
                receiver: Some("r".into()),
                purpose: None,
                flow_id: None,
                subject: None,
                outcome: "ok".into(),
                bytes: vec![seq as u8; 100],
                leaf_hash: [1; 32],
                chain_hash: [2; 32],
                case_id: None,
            })
            .collect();
        Batch {
            entries,
            subtrees: vec![],
            mutations,
            state: LogState {
                log_id: "log".into(),
                size: size_before + n,
                frontier: vec![],
                chain_head: [3; 32],
            },
            checkpoint: Some(StoredCheckpoint {
                log_id: "log".into(),
                tree_size: size_before + n,
                time_ms: 0,
                note: "note".into(),
            }),
        }
    }

    #[tokio::test]
    async fn an_in_memory_database_writes_through_the_pool() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        assert!(store.writer.is_none());
        store
            .commit_batch(Arc::new(batch(0, 3, vec![])))
            .await
            .unwrap();
        store.probe_write().await.unwrap();
        assert_eq!(store.load_log_state("log").await.unwrap().unwrap().size, 3);
    }

    fn has_connection(store: &SqliteStore) -> bool {
        store
            .writer
            .as_ref()
            .unwrap()
            .conn
            .lock()
            .unwrap()
            .is_some()
    }

    /// A store on a fresh file in a directory of its own: (directory, file, store).
    async fn file_store(name: &str) -> (std::path::PathBuf, std::path::PathBuf, SqliteStore) {
        let dir = std::env::temp_dir().join(format!(
            "kp-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.db");
        let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        (dir, path, store)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_writer_loop_commits_on_its_own_thread_and_elsewhere_writes_are_handed_off() {
        let (dir, _path, store) = file_store("writer-thread").await;
        let store = Arc::new(store);
        let writer = store.writer.clone().expect("a file has a writer");
        let thread_of_write = |writer: Arc<Writer>| async move {
            writer
                .run(|_| Ok(std::thread::current().name().map(str::to_owned)))
                .await
                .unwrap()
        };
        // Outside the writer's thread: on a blocking thread, not the caller's.
        let caller = std::thread::current().name().map(str::to_owned);
        let elsewhere = thread_of_write(writer.clone()).await;
        assert_ne!(elsewhere, caller);
        assert_ne!(elsewhere.as_deref(), Some("ketenpoort-log-writer"));

        // The loop `spawn_writer` starts: on "ketenpoort-log-writer", and its writes (a real commit among them) run
        // there, in place.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let looped = store.clone();
        let handle = store
            .spawn_writer(Box::pin(async move {
                let looping = std::thread::current().name().map(str::to_owned);
                looped
                    .commit_batch(Arc::new(batch(0, 3, vec![])))
                    .await
                    .unwrap();
                let _ = tx.send((looping, thread_of_write(writer).await));
            }))
            .unwrap();
        let (looping, written) = rx.await.unwrap();
        assert_eq!(looping.as_deref(), Some("ketenpoort-log-writer"));
        assert_eq!(written.as_deref(), Some("ketenpoort-log-writer"));
        handle.await.unwrap();
        assert_eq!(store.load_log_state("log").await.unwrap().unwrap().size, 3);

        // A loop that panics ends its handle with that failure, as a task's would.
        let failed = store
            .spawn_writer(Box::pin(async { panic!("writer loop failed") }))
            .unwrap()
            .await;
        assert!(failed.is_err_and(|e| e.is_panic()));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn in_memory_the_log_writer_loop_is_a_task() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let caller = std::thread::current().id();
        store
            .spawn_writer(Box::pin(async move {
                let _ = tx.send(std::thread::current().id());
            }))
            .unwrap()
            .await
            .unwrap();
        assert_eq!(
            rx.await.unwrap(),
            caller,
            "a task on the caller's single-threaded runtime"
        );
    }

    #[tokio::test]
    async fn a_checkpoint_pass_says_when_the_whole_wal_is_copied_and_writes_are_counted() {
        let (dir, path, store) = file_store("ckpt").await;
        let writer = store.writer.clone().expect("a file has a writer");
        let before = writer.writes.load(Ordering::Acquire);
        store
            .commit_batch(Arc::new(batch(0, 40, vec![])))
            .await
            .unwrap();
        assert_eq!(
            writer.writes.load(Ordering::Acquire),
            before + 1,
            "a commit is counted"
        );
        // A reader holding a snapshot keeps the frames after it from being copied: the pass is not complete.
        let reader = rusqlite::Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM log_entries", (), |r| r.get(0))
            .unwrap();
        store
            .commit_batch(Arc::new(batch(40, 10, vec![])))
            .await
            .unwrap();
        let w = writer.clone();
        assert!(!tokio::task::spawn_blocking(move || w.checkpoint_pass())
            .await
            .unwrap());
        reader.execute_batch("COMMIT").unwrap();
        let w = writer.clone();
        assert!(tokio::task::spawn_blocking(move || w.checkpoint_pass())
            .await
            .unwrap());
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn the_writer_survives_a_conflict_and_is_replaced_after_a_database_error() {
        let (dir, path, store) = file_store("writer").await;
        store.check_durability().await.unwrap();
        store
            .commit_batch(Arc::new(batch(0, 130, vec![])))
            .await
            .unwrap();

        let gone = Mutation::DeleteMessage {
            id: "nope".into(),
            end: MessageEnd::Acknowledged,
            at_ms: 0,
            unfetched_only: false,
        };
        assert!(matches!(
            store
                .commit_batch(Arc::new(batch(130, 1, vec![gone])))
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert!(has_connection(&store), "a conflict rolls back cleanly");
        assert!(matches!(
            store.commit_batch(Arc::new(batch(129, 1, vec![]))).await,
            Err(StoreError::Conflict(_))
        ));

        // A database error (the table is gone) retires the connection; the next write opens a new one.
        let other = rusqlite::Connection::open(&path).unwrap();
        other
            .execute_batch("ALTER TABLE checkpoints RENAME TO checkpoints_away")
            .unwrap();
        assert!(matches!(
            store.commit_batch(Arc::new(batch(130, 1, vec![]))).await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(!has_connection(&store), "retired after a database error");
        other
            .execute_batch("ALTER TABLE checkpoints_away RENAME TO checkpoints")
            .unwrap();
        store
            .commit_batch(Arc::new(batch(130, 1, vec![])))
            .await
            .unwrap();
        assert!(has_connection(&store));
        store.probe_write().await.unwrap();
        let state = store.load_log_state("log").await.unwrap().unwrap();
        assert_eq!(state.size, 131);
        assert_eq!(store.entries("log", 0, 1000).await.unwrap().len(), 131);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
