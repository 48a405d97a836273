//! The embedded default backend: one SQLite file, WAL, `synchronous = FULL`.
//!
//! Every statement here is a static string with bind parameters; rows are mapped to the store's domain rows.

use super::StoreError;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::SqlSafeStr;
use std::str::FromStr;
use std::time::Duration;

pub struct SqliteStore {
    pool: SqlitePool,
    /// The database file, for the bulk log reader.
    path: std::path::PathBuf,
    /// The background WAL checkpointer; stops when the store is dropped.
    _checkpointer: Checkpointer,
}

/// How often the WAL is copied back into the database file. Commits never do it themselves
/// (`wal_autocheckpoint = 0`), so no request waits for a checkpoint's copy and fsync.
const WAL_CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

struct Checkpointer(tokio::task::JoinHandle<()>);

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "log entries in a rowid table".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0002_log_entries_rowid.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "pupil pseudonym on mailbox rows".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0003_message_subject.sql").into_sql_str(),
            false,
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
        let checkpoints = pool.clone();
        let checkpointer = Checkpointer(tokio::spawn(async move {
            let mut tick = tokio::time::interval(WAL_CHECKPOINT_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // PASSIVE: copies what no reader still needs, never blocks the writer or readers.
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&checkpoints)
                    .await
                {
                    tracing::debug!(error = %e, "WAL checkpoint failed; retried at the next tick");
                }
            }
        }));
        Ok(SqliteStore {
            pool,
            path,
            _checkpointer: checkpointer,
        })
    }
}

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

    /// `Store::leaf_hashes` for proofs: the same rusqlite reader as `scan_log_rows`.
    async fn scan_leaf_hashes(
        &self,
        log_id: &str,
        size: u64,
    ) -> Result<Vec<super::Hash>, StoreError> {
        if !self.file_backed() {
            return sqlx_leaf_hashes(&self.pool, log_id, size).await;
        }
        let log_id = log_id.to_owned();
        self.read_blocking(move |path| read_leaf_hashes(path, &log_id, size))
            .await
    }

    /// `Store::log_rows` for `audit verify`: read with rusqlite on a blocking thread, on the same bundled SQLite,
    /// because sqlx hands rows one by one from its worker thread (about 10 µs a row; BENCHMARKS.md).
    async fn scan_log_rows(
        &self,
        log_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<super::LogRow>, StoreError> {
        if !self.file_backed() {
            return sqlx_log_rows(&self.pool, log_id, from, limit).await;
        }
        let log_id = log_id.to_owned();
        self.read_blocking(move |path| read_log_rows(path, &log_id, from, limit))
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
        // 2 = FULL, 3 = EXTRA.
        if sync < 2 {
            return Err(StoreError::NotDurable(format!(
                "SQLite synchronous is {sync}, FULL (2) is required"
            )));
        }
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NotDurable(format!(
                "SQLite journal_mode is {mode}, WAL is required"
            )));
        }
        Ok(())
    }
}

fn read_leaf_hashes(
    path: &std::path::Path,
    log_id: &str,
    size: u64,
) -> Result<Vec<super::Hash>, StoreError> {
    let unavailable = |e: rusqlite::Error| StoreError::Unavailable(e.to_string());
    let conn = open_reader(path)?;
    let mut stmt = conn
        .prepare("SELECT leaf_hash FROM log_entries WHERE log_id = ?1 AND seq < ?2 ORDER BY seq")
        .map_err(unavailable)?;
    let mut rows = stmt.query((log_id, size as i64)).map_err(unavailable)?;
    let mut out = Vec::with_capacity(size.min(1 << 24) as usize);
    while let Some(r) = rows.next().map_err(unavailable)? {
        let v = r.get_ref(0).map_err(unavailable)?;
        let b = v
            .as_blob()
            .map_err(|_| StoreError::Corrupt("leaf hash column is not a blob".into()))?;
        out.push(super::to_hash(b)?);
    }
    Ok(out)
}

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

fn read_log_rows(
    path: &std::path::Path,
    log_id: &str,
    from: u64,
    limit: usize,
) -> Result<Vec<super::LogRow>, StoreError> {
    let unavailable = |e: rusqlite::Error| StoreError::Unavailable(e.to_string());
    let blob = |v: rusqlite::types::ValueRef<'_>| -> Result<Vec<u8>, StoreError> {
        v.as_blob()
            .map(<[u8]>::to_vec)
            .map_err(|_| StoreError::Corrupt("log entry column is not a blob".into()))
    };
    let conn = open_reader(path)?;
    let mut stmt = conn
        .prepare(
            "SELECT seq, entry, leaf_hash, chain_hash FROM log_entries WHERE log_id = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3",
        )
        .map_err(unavailable)?;
    let mut rows = stmt
        .query((log_id, from as i64, limit as i64))
        .map_err(unavailable)?;
    let mut out = Vec::with_capacity(limit.min(1 << 16));
    while let Some(r) = rows.next().map_err(unavailable)? {
        let seq: i64 = r.get(0).map_err(unavailable)?;
        out.push(super::LogRow {
            seq: seq as u64,
            bytes: blob(r.get_ref(1).map_err(unavailable)?)?,
            leaf_hash: super::to_hash(&blob(r.get_ref(2).map_err(unavailable)?)?)?,
            chain_hash: super::to_hash(&blob(r.get_ref(3).map_err(unavailable)?)?)?,
        });
    }
    Ok(out)
}

super::sql::sql_store!(SqliteStore, sqlx::Sqlite, sqlx::sqlite::SqliteRow, "");
