//! Administering a PostgreSQL server rather than storing users: creating and dropping
//! databases, reading the server's version.

use tokio_postgres::Client;

use super::connect_raw;
use crate::StoreError;
use crate::pg_config::PgConfig;
use crate::pg_tls::PgTls;

/// Administration of a PostgreSQL server, not user storage: creating and dropping
/// databases, reading the server's version. Each call opens a connection of its own.
pub struct PostgresAdmin {
    config: PgConfig,
}

impl PostgresAdmin {
    /// Administers the server `config` points at (connecting to its database).
    pub fn new(config: PgConfig) -> Self {
        Self { config }
    }

    /// A connection of its own, TLS set up for it (its root certificates read now).
    async fn connect(&self) -> Result<Client, StoreError> {
        connect_raw(&self.config, &PgTls::for_config(&self.config)?).await
    }

    /// Creates database `name` on this server; the name must be a plain identifier.
    pub async fn create_database(&self, name: &str) -> Result<(), StoreError> {
        let client = self.connect().await?;
        client
            .batch_execute(&format!("CREATE DATABASE {}", identifier(name)?))
            .await?;
        Ok(())
    }

    /// Drops database `name` on this server (it must not be in use).
    pub async fn drop_database(&self, name: &str) -> Result<(), StoreError> {
        let client = self.connect().await?;
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {}", identifier(name)?))
            .await?;
        Ok(())
    }

    /// The server's major version, e.g. 15 (from `server_version_num` 150018).
    pub async fn server_major_version(&self) -> Result<u32, StoreError> {
        let client = self.connect().await?;
        let rows = client.simple_query("SHOW server_version_num").await?;
        let number = rows.iter().find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        });
        number
            .and_then(|n| n.parse::<u32>().ok())
            .map(|n| n / 10_000)
            .ok_or_else(|| StoreError::internal("unexpected server_version_num"))
    }
}

/// `name` quoted as an SQL identifier, accepting only letters, digits and underscores.
fn identifier(name: &str) -> Result<String, StoreError> {
    let plain = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if plain {
        Ok(format!("\"{name}\""))
    } else {
        Err(StoreError::Config(format!(
            "{name:?} is not a plain database name"
        )))
    }
}
