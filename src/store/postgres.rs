//! The PostgreSQL backend for operators who run several gateway instances on one database.
//!
//! Same schema, same statements as SQLite (see `sql`); only connecting, the durability check and the row-lock
//! clause of claims differ.
//!
//! Durability: the gateway's own sessions always run with `synchronous_commit = on` (set as a connection option,
//! so neither the server nor the database can turn it off for them), and the start-up check asserts that, plus
//! `fsync = on`, plus that the database's *own default* for a session (server configuration, `ALTER SYSTEM`,
//! `ALTER DATABASE`, `ALTER ROLE`, URL options) is durable. A database configured to lose commits is refused as a
//! whole: a failover replica, a restore or another client would inherit that choice. `storage.allow_non_durable`
//! is the only way past this check, and even then this gateway's own commits stay synchronous.

use super::StoreError;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;
use std::time::Duration;

pub struct PgStore {
    pool: PgPool,
    /// The URL's options without this gateway's session settings: what any other client would get.
    defaults: PgConnectOptions,
}

fn migrator() -> Migrator {
    super::migrator(&[
        (
            1,
            "init",
            include_str!("../../migrations/postgres/0001_init.sql"),
        ),
        (
            2,
            "pupil pseudonym on mailbox rows",
            include_str!("../../migrations/postgres/0002_message_subject.sql"),
        ),
        (
            3,
            "stored Merkle subtrees",
            include_str!("../../migrations/postgres/0003_log_subtrees.sql"),
        ),
        (
            4,
            "pupil birth date on consents",
            include_str!("../../migrations/postgres/0004_consent_birth_date.sql"),
        ),
        (
            5,
            "disclosure of a message by its id",
            include_str!("../../migrations/postgres/0005_message_disclosures.sql"),
        ),
        (
            6,
            "outbox and breach register",
            include_str!("../../migrations/postgres/0006_outbox_incidents.sql"),
        ),
        (
            7,
            "push delivery queue",
            include_str!("../../migrations/postgres/0007_push_queue.sql"),
        ),
        (
            8,
            "kerngroep case id on log entries",
            include_str!("../../migrations/postgres/0008_log_case_id.sql"),
        ),
    ])
}

impl PgStore {
    pub const BACKEND: &'static str = "postgres";

    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        let defaults = PgConnectOptions::from_str(url)?;
        let opts = defaults.clone().options([("synchronous_commit", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await?;
        migrator().run(&pool).await?;
        Ok(PgStore { pool, defaults })
    }

    async fn scan_log_rows(
        &self,
        log_id: &str,
        from: u64,
        limit: usize,
        visit: super::RowVisitor,
    ) -> Result<usize, StoreError> {
        sqlx_log_rows(&self.pool, log_id, from, limit, visit).await
    }

    async fn find_consents_for_subject(
        &self,
        subject: &str,
    ) -> Result<Vec<super::StoredConsent>, StoreError> {
        sqlx_consents_for_subject(&self.pool, subject).await
    }

    async fn scan_leaf_hashes(
        &self,
        log_id: &str,
        seqs: std::ops::Range<u64>,
    ) -> Result<Vec<super::Hash>, StoreError> {
        sqlx_leaf_hashes(&self.pool, log_id, seqs).await
    }

    async fn write_batch(&self, batch: std::sync::Arc<super::Batch>) -> Result<(), StoreError> {
        sqlx_commit_batch(&self.pool, &batch).await
    }

    /// `Store::spawn_writer`: a commit awaits the server without holding a thread, so the loop is a task.
    fn start_writer(
        &self,
        task: super::WriterTask,
    ) -> Result<tokio::task::JoinHandle<()>, StoreError> {
        Ok(tokio::spawn(task))
    }

    async fn write_probe(&self) -> Result<(), StoreError> {
        sqlx_probe_write(&self.pool).await
    }

    async fn durability(&self) -> Result<(), StoreError> {
        let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&self.pool)
            .await?;
        let fsync: String = sqlx::query_scalar("SHOW fsync")
            .fetch_one(&self.pool)
            .await?;
        if !durable_commit(&setting) {
            return Err(StoreError::NotDurable(format!(
                "PostgreSQL synchronous_commit is {setting} for the gateway's sessions, on is required"
            )));
        }
        if fsync != "on" {
            return Err(StoreError::NotDurable("PostgreSQL fsync is off".into()));
        }
        let mut plain: PgConnection = self.defaults.connect().await?;
        let default: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&mut plain)
            .await?;
        let _ = plain.close().await;
        if !durable_commit(&default) {
            return Err(StoreError::NotDurable(format!(
                "this database's default synchronous_commit is {default} (server, database or role setting), on is required"
            )));
        }
        Ok(())
    }
}

fn durable_commit(setting: &str) -> bool {
    matches!(setting, "on" | "remote_apply" | "remote_write")
}

super::sql::sql_store!(
    PgStore,
    sqlx::Postgres,
    sqlx::postgres::PgRow,
    " FOR UPDATE SKIP LOCKED",
    ""
);
