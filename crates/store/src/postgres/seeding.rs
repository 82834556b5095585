//! Seeding a PostgreSQL database with tutorial-style users: in one transaction, batch after
//! batch by `COPY`, skipping names that are taken.

use futures_util::{SinkExt, TryStreamExt};
use tokio_postgres::Statement;
use tokio_postgres::types::Type;

use super::{PostgresStore, connect_raw};
use crate::StoreError;
use crate::seed::{self, Progress};

/// Seeding reads the names already taken up front in tables of at most this many rows
/// (a few bytes of memory each), and asks per batch in larger ones.
const PRELOAD_NAMES_UP_TO: i64 = 5_000_000;

impl PostgresStore {
    /// Adds exactly `count` new random users in one transaction, skipping names that exist.
    ///
    /// Names already in the table are read once up front (when there are at most
    /// [`PRELOAD_NAMES_UP_TO`] rows), so new names are known to be free before they are sent
    /// and each batch goes in by `COPY`; in a larger table each batch asks which of its names
    /// are taken instead. Should a concurrent writer take a name meanwhile, the batch is
    /// rolled back to its savepoint and inserted again, skipping the taken names.
    pub async fn seed(&self, count: u64, progress: Progress) -> Result<u64, StoreError> {
        let mut client = connect_raw(&self.config, &self.primary.tls).await?;
        let mut tx = client.transaction().await?;
        let insert = tx
            .prepare_typed(
                "INSERT INTO orguser (username) SELECT unnest($1) ON CONFLICT DO NOTHING",
                &[Type::VARCHAR_ARRAY],
            )
            .await?;
        let copy = tx.prepare("COPY orguser (username) FROM STDIN").await?;
        let mut source = seed::NameSource::default();
        let rows: i64 = tx
            .query_one("SELECT count(*) FROM orguser", &[])
            .await?
            .try_get(0)?;
        // In a larger table, the statement that asks which of a batch's names are taken.
        let taken = if rows <= PRELOAD_NAMES_UP_TO {
            let names = tx
                .query_raw("SELECT username FROM orguser", std::iter::empty::<i32>())
                .await?;
            futures_util::pin_mut!(names);
            while let Some(row) = names.try_next().await? {
                source.mark_taken(row.try_get(0)?);
            }
            None
        } else {
            let statement = tx
                .prepare_typed(
                    "SELECT username FROM orguser WHERE username = ANY($1)",
                    &[Type::VARCHAR_ARRAY],
                )
                .await?;
            Some(statement)
        };
        let mut added = 0;
        while added < count {
            let mut names = source.fresh((count - added).min(seed::BATCH))?;
            if let Some(taken) = &taken {
                let existing: std::collections::HashSet<String> = tx
                    .query(taken, &[&names])
                    .await?
                    .iter()
                    .map(|row| row.try_get(0))
                    .collect::<Result<_, _>>()?;
                names.retain(|name| !existing.contains(name));
            }
            let attempt = tx.savepoint("seed_batch").await?;
            let inserted = match copy_names(&attempt, &copy, &names).await {
                Ok(inserted) => {
                    attempt.commit().await?;
                    tracing::debug!(inserted, "seed batch copied");
                    inserted
                }
                Err(StoreError::Conflict) => {
                    attempt.rollback().await?;
                    tracing::debug!(
                        "seed batch collided with existing names; inserting it instead"
                    );
                    tx.execute(&insert, &[&names]).await?
                }
                Err(other) => return Err(other),
            };
            added += inserted;
            progress(inserted);
        }
        tx.commit().await?;
        Ok(added)
    }
}

/// Sends `names` through `COPY … FROM STDIN` (text format: one name per line, escaped).
async fn copy_names(
    tx: &tokio_postgres::Transaction<'_>,
    copy: &Statement,
    names: &[String],
) -> Result<u64, StoreError> {
    let mut data = Vec::with_capacity(names.len() * 9);
    for name in names {
        for byte in name.bytes() {
            // Text COPY treats backslash specially; the generated names are hex, but stay safe.
            if byte == b'\\' {
                data.push(b'\\');
            }
            data.push(byte);
        }
        data.push(b'\n');
    }
    let sink = tx.copy_in::<_, bytes::Bytes>(copy).await?;
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from(data)).await?;
    Ok(sink.finish().await?)
}
