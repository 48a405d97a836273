//! The PostgreSQL backend for operators who run several gateway instances on one database.
//!
//! Same schema, same statements as SQLite (see `sql`); only connecting and the durability check differ.
//! Sessions must run with `synchronous_commit = on`.

use super::StoreError;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::SqlSafeStr;
use std::str::FromStr;
use std::time::Duration;

pub struct PgStore {
    pool: PgPool,
}

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        "init".into(),
        MigrationType::Simple,
        include_str!("../../migrations/postgres/0001_init.sql").into_sql_str(),
        false,
    )])
}

impl PgStore {
    pub const BACKEND: &'static str = "postgres";

    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        let opts = PgConnectOptions::from_str(url)?.options([("synchronous_commit", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await?;
        migrator().run(&pool).await?;
        Ok(PgStore { pool })
    }

    async fn durability(&self) -> Result<(), StoreError> {
        let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&self.pool)
            .await?;
        let fsync: String = sqlx::query_scalar("SHOW fsync")
            .fetch_one(&self.pool)
            .await?;
        if setting != "on" && setting != "remote_apply" && setting != "remote_write" {
            return Err(StoreError::NotDurable(format!(
                "PostgreSQL synchronous_commit is {setting}, on is required"
            )));
        }
        if fsync != "on" {
            return Err(StoreError::NotDurable("PostgreSQL fsync is off".into()));
        }
        Ok(())
    }
}

super::sql::sql_store!(PgStore, sqlx::Postgres, sqlx::postgres::PgRow);
