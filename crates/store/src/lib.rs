//! Peregrine's storage layer: the `orguser` table of the tutorial behind one small interface,
//! with native backends for PostgreSQL (pipelined tokio-postgres) and SQLite (rusqlite),
//! embedded migrations for each, and tutorial-style seeding. Knows nothing of HTTP.

mod database_url;
mod db_stats;
mod error;
mod group_commit;
mod migrations;
mod model;
mod pg_config;
mod pg_connect;
mod postgres;
mod seed;
mod sqlite;
mod watchdog;

use std::time::{Duration, Instant};

pub use database_url::DatabaseUrl;
pub use db_stats::{DbFailure, DbStats, PIPELINE_DEPTH_BUCKETS, db_stats};
pub use error::{BoxError, StoreError, error_chain};
pub use migrations::MigrationReport;
pub use model::{
    InvalidUserId, InvalidUsername, Page, USERNAME_MAX_CHARS, User, UserId, Username,
    username_pattern,
};
pub use pg_config::{PgConfig, PgOptions, SslMode};
pub use postgres::{DEFAULT_DB_TIMEOUT, PostgresAdmin, PostgresStore, StatementMode};
pub use seed::Progress;
pub use sqlite::{SqliteStore, Synchronous};

/// How late a request's database call may fail past its deadline (`--db-timeout`): the
/// PostgreSQL watchdog's two ticks, SQLite's waits for a running job. Documented.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(100);

/// Receives the users of a page one at a time, borrowed from the database's row.
pub trait UserSink: Send + 'static {
    /// One user, in id order.
    fn user(&mut self, id: UserId, username: &str);
}

impl UserSink for Vec<User> {
    fn user(&mut self, id: UserId, username: &str) {
        self.push(User {
            id,
            username: Username::from_db(username.to_owned()),
        });
    }
}

/// The users store, over whichever backend the database URL chose.
#[expect(
    clippy::large_enum_variant,
    reason = "one store per process, created once and shared behind an Arc"
)]
pub enum UserStore {
    /// PostgreSQL, the production backend.
    Postgres(PostgresStore),
    /// SQLite, the zero-setup default.
    Sqlite(SqliteStore),
}

/// Dispatches a call to the backend in use.
macro_rules! dispatch {
    ($store:expr, $backend:ident => $call:expr) => {
        match $store {
            UserStore::Postgres($backend) => $call,
            UserStore::Sqlite($backend) => $call,
        }
    };
}

impl UserStore {
    /// Opens the store for `url` with `connections` database connections (SQLite: readers).
    /// PostgreSQL connects lazily; SQLite opens its file now.
    pub fn open(url: &DatabaseUrl, connections: usize) -> Result<Self, StoreError> {
        Ok(match url {
            DatabaseUrl::Postgres(config) => {
                Self::Postgres(PostgresStore::new((**config).clone(), connections))
            }
            DatabaseUrl::Sqlite(path) => Self::Sqlite(SqliteStore::open(path, connections)?),
        })
    }

    /// Sets the deadline of every call that serves a request (default
    /// [`DEFAULT_DB_TIMEOUT`]); past it the call is [`StoreError::Unavailable`]. Migrations
    /// and seeding are not bounded by it.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        match &mut self {
            Self::Postgres(store) => store.set_timeout(timeout),
            Self::Sqlite(store) => store.set_timeout(timeout),
        }
        self
    }

    /// Sets how PostgreSQL's serving connections send statements (default
    /// [`StatementMode::Auto`]); SQLite has no such choice.
    pub fn with_statements(mut self, mode: StatementMode) -> Self {
        if let Self::Postgres(store) = &mut self {
            store.set_statements(mode);
        }
        self
    }

    /// Sends PostgreSQL reads to these streaming replicas in turn, each with `connections`
    /// shared connections, falling back to the primary when the replica does not answer;
    /// writes stay on the primary. Reads go to the primary for `read_primary_after_write`
    /// after a write of this process. SQLite has no replicas: an error.
    pub fn with_replicas(
        mut self,
        replicas: &[PgConfig],
        connections: usize,
        read_primary_after_write: Duration,
    ) -> Result<Self, StoreError> {
        match &mut self {
            Self::Postgres(store) => {
                store.set_replicas(replicas, connections);
                store.set_read_primary_after_write(read_primary_after_write);
            }
            Self::Sqlite(_) if replicas.is_empty() => {}
            Self::Sqlite(_) => {
                return Err(StoreError::Config(
                    "read replicas are for PostgreSQL only, not SQLite".into(),
                ));
            }
        }
        Ok(self)
    }

    /// Sets how SQLite syncs commits (default [`Synchronous::Full`]) and returns the
    /// setting read back; `None` on PostgreSQL, whose durability is its server's
    /// (`synchronous_commit`, `fsync`).
    pub async fn set_sqlite_synchronous(
        &self,
        mode: Synchronous,
    ) -> Result<Option<Synchronous>, StoreError> {
        match self {
            Self::Postgres(_) => Ok(None),
            Self::Sqlite(store) => store.set_synchronous(mode).await.map(Some),
        }
    }

    /// How SQLite syncs commits, read back from its writer connection; `None` on
    /// PostgreSQL.
    pub async fn sqlite_synchronous(&self) -> Result<Option<Synchronous>, StoreError> {
        match self {
            Self::Postgres(_) => Ok(None),
            Self::Sqlite(store) => store.synchronous().await.map(Some),
        }
    }

    /// The backend's name, for logs: `postgres` or `sqlite`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    /// Creates or upgrades the schema; idempotent.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        dispatch!(self, s => s.migrate().await)
    }

    /// Users in id order, starting after `page.after`, at most `page.limit`.
    pub async fn list(&self, page: Page) -> Result<Vec<User>, StoreError> {
        self.list_into(page, Vec::new()).await
    }

    /// [`UserStore::list`], handing each user to `sink` as it is read, borrowed: no
    /// allocation per user. Returns the sink.
    pub async fn list_into<S: UserSink>(&self, page: Page, sink: S) -> Result<S, StoreError> {
        dispatch!(self, s => s.list_into(page, sink).await)
    }

    /// The user with `id`, or [`StoreError::NotFound`].
    pub async fn get(&self, id: UserId) -> Result<User, StoreError> {
        dispatch!(self, s => s.get(id).await)
    }

    /// Adds a user; [`StoreError::Conflict`] when the name is taken.
    pub async fn create(&self, username: &Username) -> Result<User, StoreError> {
        dispatch!(self, s => s.create(username).await)
    }

    /// Renames a user; [`StoreError::NotFound`] or [`StoreError::Conflict`] when it can't.
    pub async fn rename(&self, id: UserId, username: &Username) -> Result<User, StoreError> {
        dispatch!(self, s => s.rename(id, username).await)
    }

    /// Deletes a user, or [`StoreError::NotFound`].
    pub async fn delete(&self, id: UserId) -> Result<(), StoreError> {
        dispatch!(self, s => s.delete(id).await)
    }

    /// How many users exist.
    pub async fn count(&self) -> Result<u64, StoreError> {
        dispatch!(self, s => s.count().await)
    }

    /// Succeeds when the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping().await)
    }

    /// Adds exactly `count` new tutorial-style users (names that collide are skipped and
    /// drawn again) in one transaction; `progress` hears of each batch added.
    pub async fn seed(&self, count: u64, progress: Progress) -> Result<u64, StoreError> {
        dispatch!(self, s => s.seed(count, progress).await)
    }

    /// Waits until the database accepts connections (the schema may not exist yet),
    /// retrying while it is unavailable, for at most `wait`. A failure that waiting cannot
    /// fix (a wrong password, no such database, a TLS mismatch) returns at once; one line is
    /// logged per distinct cause, not per retry.
    pub async fn wait_until_ready(&self, wait: Duration) -> Result<(), StoreError> {
        let started = Instant::now();
        let deadline = started + wait;
        let mut delay = Duration::from_millis(50);
        let mut logged: Option<String> = None;
        loop {
            let answered = match self {
                Self::Postgres(store) => store.probe().await,
                // Opening the SQLite store already opened its file.
                Self::Sqlite(_) => Ok(()),
            };
            match answered {
                Err(StoreError::Unavailable { reason, .. })
                    if Instant::now() + delay < deadline =>
                {
                    if logged.as_ref() != Some(&reason) {
                        tracing::info!(%reason, wait = %humantime::format_duration(wait), "database not ready; retrying");
                        logged = Some(reason);
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(StoreError::Unavailable { reason, source }) if logged.is_some() => {
                    return Err(StoreError::Unavailable {
                        reason: format!(
                            "{reason} (still failing after {:.1}s of retries; --db-wait sets how long to wait)",
                            started.elapsed().as_secs_f64()
                        ),
                        source,
                    });
                }
                other => return other,
            }
        }
    }
}
