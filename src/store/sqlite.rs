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
}

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        "init".into(),
        MigrationType::Simple,
        include_str!("../../migrations/sqlite/0001_init.sql").into_sql_str(),
        false,
    )])
}

impl SqliteStore {
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await?;
        migrator().run(&pool).await?;
        Ok(SqliteStore { pool })
    }
}

impl SqliteStore {
    pub const BACKEND: &'static str = "sqlite";

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

super::sql::sql_store!(SqliteStore, sqlx::Sqlite, sqlx::sqlite::SqliteRow, "");
