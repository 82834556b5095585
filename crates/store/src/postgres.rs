//! PostgreSQL backend: a few long-lived connections shared by all requests, so concurrent
//! queries pipeline on each socket, with statements prepared once per connection and a
//! reconnect when the server comes back after an outage.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use futures_util::{SinkExt, TryStreamExt};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, Row, Statement};

use crate::migrations::{self, MigrationReport};
use crate::seed::{self, Progress};
use crate::{Page, StoreError, User, UserId, UserSink, Username};

/// How long a failed reconnect makes a slot answer "unavailable" at once instead of retrying.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);
/// Connect timeout used when the URL sets none.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Seeding reads the names already taken up front in tables of at most this many rows
/// (a few bytes of memory each), and asks per batch in larger ones.
const PRELOAD_NAMES_UP_TO: i64 = 5_000_000;
/// Key of the advisory lock that serialises migrations between processes.
const MIGRATION_LOCK: i64 = 0x7065_7265_6772_696e; // "peregrin"

/// The PostgreSQL user store.
pub struct PostgresStore {
    config: tokio_postgres::Config,
    slots: Box<[Slot]>,
    next: AtomicUsize,
    started: Instant,
}

/// One shared connection, replaced when it dies.
struct Slot {
    live: ArcSwapOption<Connection>,
    reconnecting: tokio::sync::Mutex<()>,
    /// Milliseconds since `started` of the last failed connect, plus one (0 = never failed).
    failed_at: AtomicU64,
}

/// A connection with its prepared statements.
struct Connection {
    client: Client,
    list: Statement,
    get: Statement,
    insert: Statement,
    rename: Statement,
    delete: Statement,
}

impl PostgresStore {
    /// A store for `config` with `connections` shared connections, opened on first use.
    pub fn new(mut config: tokio_postgres::Config, connections: usize) -> Self {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("peregrine");
        }
        let slots = (0..connections.max(1))
            .map(|_| Slot {
                live: ArcSwapOption::empty(),
                reconnecting: tokio::sync::Mutex::new(()),
                failed_at: AtomicU64::new(0),
            })
            .collect();
        Self {
            config,
            slots,
            next: AtomicUsize::new(0),
            started: Instant::now(),
        }
    }

    /// Applies pending migrations on a connection of its own, holding an advisory lock so
    /// that servers starting together migrate once.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let mut client = connect_raw(&self.config).await?;
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

    /// Users in id order, starting after `page.after`.
    pub async fn list_into<S: UserSink>(&self, page: Page, mut sink: S) -> Result<S, StoreError> {
        let conn = self.connection().await?;
        let after = page.after.map_or(0, UserId::get);
        let rows = conn
            .client
            .query(&conn.list, &[&after, &i64::from(page.limit)])
            .await?;
        for row in &rows {
            sink.user(UserId::from_db(row.try_get(0)?), row.try_get(1)?);
        }
        Ok(sink)
    }

    /// The user with `id`.
    pub async fn get(&self, id: UserId) -> Result<User, StoreError> {
        let conn = self.connection().await?;
        let row = conn.client.query_opt(&conn.get, &[&id.get()]).await?;
        row.as_ref()
            .map_or(Err(StoreError::NotFound), user_from_row)
    }

    /// Adds a user named `username`.
    pub async fn create(&self, username: &Username) -> Result<User, StoreError> {
        let conn = self.connection().await?;
        let row = conn
            .client
            .query_one(&conn.insert, &[&username.as_str()])
            .await?;
        Ok(User {
            id: UserId::from_db(row.try_get(0)?),
            username: username.clone(),
        })
    }

    /// Renames the user with `id`.
    pub async fn rename(&self, id: UserId, username: &Username) -> Result<User, StoreError> {
        let conn = self.connection().await?;
        let updated = conn
            .client
            .execute(&conn.rename, &[&id.get(), &username.as_str()])
            .await?;
        match updated {
            0 => Err(StoreError::NotFound),
            _ => Ok(User {
                id,
                username: username.clone(),
            }),
        }
    }

    /// Deletes the user with `id`.
    pub async fn delete(&self, id: UserId) -> Result<(), StoreError> {
        let conn = self.connection().await?;
        match conn.client.execute(&conn.delete, &[&id.get()]).await? {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    /// How many users exist.
    pub async fn count(&self) -> Result<u64, StoreError> {
        let conn = self.connection().await?;
        let row = conn
            .client
            .query_one("SELECT count(*) FROM orguser", &[])
            .await?;
        Ok(u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0))
    }

    /// Succeeds when the database answers a query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let conn = self.connection().await?;
        conn.client.simple_query("").await?;
        Ok(())
    }

    /// Succeeds when the server accepts a connection, whether or not the schema exists yet.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let client = connect_raw(&self.config).await?;
        client.simple_query("").await?;
        Ok(())
    }

    /// Creates database `name` on this server; the name must be a plain identifier.
    pub async fn create_database(&self, name: &str) -> Result<(), StoreError> {
        let client = connect_raw(&self.config).await?;
        client
            .batch_execute(&format!("CREATE DATABASE {}", identifier(name)?))
            .await?;
        Ok(())
    }

    /// Drops database `name` on this server (it must not be in use).
    pub async fn drop_database(&self, name: &str) -> Result<(), StoreError> {
        let client = connect_raw(&self.config).await?;
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {}", identifier(name)?))
            .await?;
        Ok(())
    }

    /// The server's major version, e.g. 15 (from `server_version_num` 150018).
    pub async fn server_major_version(&self) -> Result<u32, StoreError> {
        let client = connect_raw(&self.config).await?;
        let rows = client.simple_query("SHOW server_version_num").await?;
        let number = rows.iter().find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        });
        number
            .and_then(|n| n.parse::<u32>().ok())
            .map(|n| n / 10_000)
            .ok_or_else(|| StoreError::Internal("unexpected server_version_num".into()))
    }

    /// Adds exactly `count` new random users in one transaction, skipping names that exist.
    ///
    /// Names already in the table are read once up front (when there are at most
    /// [`PRELOAD_NAMES_UP_TO`] rows), so new names are known to be free before they are sent
    /// and each batch goes in by `COPY`; in a larger table each batch asks which of its names
    /// are taken instead. Should a concurrent writer take a name meanwhile, the batch is
    /// rolled back to its savepoint and inserted again, skipping the taken names.
    pub async fn seed(&self, count: u64, progress: Progress) -> Result<u64, StoreError> {
        let mut client = connect_raw(&self.config).await?;
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

    /// A live shared connection, reconnecting the chosen slot when its connection died.
    async fn connection(&self) -> Result<Arc<Connection>, StoreError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let slot = &self.slots[index];
        if let Some(conn) = slot.live.load_full().filter(|c| !c.client.is_closed()) {
            return Ok(conn);
        }
        self.reconnect(slot).await
    }

    async fn reconnect(&self, slot: &Slot) -> Result<Arc<Connection>, StoreError> {
        let _guard = slot.reconnecting.lock().await;
        // Another request may have reconnected while this one waited for the lock.
        if let Some(conn) = slot.live.load_full().filter(|c| !c.client.is_closed()) {
            return Ok(conn);
        }
        let now = self.elapsed_ms() + 1;
        let failed_at = slot.failed_at.load(Ordering::Relaxed);
        if failed_at != 0 && now - failed_at < RECONNECT_BACKOFF.as_millis() as u64 {
            return Err(StoreError::Unavailable(
                "cannot connect to PostgreSQL (retrying shortly)".into(),
            ));
        }
        match Connection::open(&self.config).await {
            Ok(conn) => {
                let conn = Arc::new(conn);
                slot.live.store(Some(Arc::clone(&conn)));
                slot.failed_at.store(0, Ordering::Relaxed);
                tracing::info!("connected to PostgreSQL");
                Ok(conn)
            }
            Err(err) => {
                slot.live.store(None);
                slot.failed_at
                    .store(self.elapsed_ms() + 1, Ordering::Relaxed);
                tracing::warn!(error = %err, "cannot connect to PostgreSQL");
                Err(err)
            }
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Connection {
    async fn open(config: &tokio_postgres::Config) -> Result<Self, StoreError> {
        let client = connect_raw(config).await?;
        let (list, get, insert, rename, delete) = tokio::try_join!(
            client.prepare_typed(
                "SELECT id, username FROM orguser WHERE id > $1 ORDER BY id LIMIT $2",
                &[Type::INT4, Type::INT8],
            ),
            client.prepare_typed(
                "SELECT id, username FROM orguser WHERE id = $1",
                &[Type::INT4],
            ),
            client.prepare_typed(
                "INSERT INTO orguser (username) VALUES ($1) RETURNING id",
                &[Type::VARCHAR],
            ),
            client.prepare_typed(
                "UPDATE orguser SET username = $2 WHERE id = $1",
                &[Type::INT4, Type::VARCHAR],
            ),
            client.prepare_typed("DELETE FROM orguser WHERE id = $1", &[Type::INT4]),
        )?;
        Ok(Self {
            client,
            list,
            get,
            insert,
            rename,
            delete,
        })
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

/// Opens one connection and drives it on a task of its own.
async fn connect_raw(config: &tokio_postgres::Config) -> Result<Client, StoreError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(error = %err, "PostgreSQL connection closed");
        }
    });
    Ok(client)
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

fn user_from_row(row: &Row) -> Result<User, StoreError> {
    Ok(User {
        id: UserId::from_db(row.try_get(0)?),
        username: Username::from_db(row.try_get(1)?),
    })
}
