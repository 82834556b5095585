//! Migrating a PostgreSQL database: the embedded migrations applied once, under an advisory
//! lock so that servers starting together migrate once, and a current schema read without
//! writing (a read-only replica can be served).

use tokio_postgres::Client;

use super::{PostgresStore, connect_raw};
use crate::StoreError;
use crate::migrations::{self, MigrationReport};

/// Key of the advisory lock that serialises migrations between processes.
const MIGRATION_LOCK: i64 = 0x7065_7265_6772_696e; // "peregrin"

impl PostgresStore {
    /// Applies pending migrations on a connection of its own, holding an advisory lock so
    /// that servers starting together migrate once.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let mut client = connect_raw(&self.config, &self.primary.tls).await?;
        // Read first, without writing: a read-only database (a replica) whose schema is
        // current can be served.
        if let Some(newest) = newest_migration(&client).await?
            && migrations::pending(migrations::POSTGRES, Some(newest))?.is_empty()
        {
            return Ok(MigrationReport {
                applied: 0,
                version: newest,
            });
        }
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(migrations::POSTGRES_HISTORY_DDL).await?;
        let newest: Option<i64> = tx
            .query_one("SELECT max(version) FROM peregrine_migrations", &[])
            .await?
            .try_get(0)?;
        let pending = migrations::pending(migrations::POSTGRES, newest)?;
        for migration in pending {
            tx.batch_execute(migration.sql).await?;
            tx.execute(
                "INSERT INTO peregrine_migrations (version, name) VALUES ($1, $2)",
                &[&migration.version, &migration.name],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(MigrationReport {
            applied: pending.len(),
            version: pending.last().map_or(newest.unwrap_or(0), |m| m.version),
        })
    }
}

/// The newest migration applied, read without writing; `None` before the first.
async fn newest_migration(client: &Client) -> Result<Option<i64>, StoreError> {
    // Unnamed statements: outside a transaction, a named one may not survive a pooler.
    let exists: bool = client
        .query_typed_one(
            "SELECT to_regclass('peregrine_migrations') IS NOT NULL",
            &[],
        )
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(None);
    }
    Ok(client
        .query_typed_one("SELECT max(version) FROM peregrine_migrations", &[])
        .await?
        .try_get(0)?)
}
