//! The users store over whichever backend the database URL chose: one interface for the
//! server, dispatching each call to PostgreSQL or SQLite, and waiting for the database to
//! answer at start-up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::db_stats::DbCounters;
use crate::hub_state::HubState;
use crate::migrations::MigrationReport;
use crate::postgres::{PostgresStore, StatementMode};
use crate::seed::Progress;
use crate::sqlite::{SqliteStore, Synchronous};
use crate::{DatabaseUrl, Page, PgConfig, StoreError, User, UserId, UserSink, Username};

/// The users store, over whichever backend the database URL chose.
pub struct UserStore {
    backend: Backend,
    /// What it shares with the other stores of its hub.
    hub: Arc<HubState>,
}

#[expect(
    clippy::large_enum_variant,
    reason = "one store per worker, created once and shared behind an Arc"
)]
enum Backend {
    /// PostgreSQL, the production backend.
    Postgres(PostgresStore),
    /// SQLite, the zero-setup default.
    Sqlite(SqliteStore),
}

/// Dispatches a call to the backend in use.
macro_rules! dispatch {
    ($store:expr, $backend:ident => $call:expr) => {
        match &$store.backend {
            Backend::Postgres($backend) => $call,
            Backend::Sqlite($backend) => $call,
        }
    };
}

impl UserStore {
    /// Opens the store for `url` with `connections` database connections (SQLite: readers),
    /// a hub of its own. PostgreSQL connects lazily; SQLite opens its file now.
    pub fn open(url: &DatabaseUrl, connections: usize) -> Result<Self, StoreError> {
        Self::open_in(url, connections, HubState::new())
    }

    /// [`UserStore::open`] as one of the stores of the hub whose state is `hub`.
    pub(crate) fn open_in(
        url: &DatabaseUrl,
        connections: usize,
        hub: Arc<HubState>,
    ) -> Result<Self, StoreError> {
        let backend = match url {
            DatabaseUrl::Postgres(config) => Backend::Postgres(PostgresStore::new(
                (**config).clone(),
                connections,
                Arc::clone(&hub),
            )?),
            DatabaseUrl::Sqlite(path) => Backend::Sqlite(SqliteStore::open(path, connections)?),
        };
        Ok(Self { backend, hub })
    }

    /// The counters of this store's hub: every store it made, this one included.
    pub fn counters(&self) -> Arc<DbCounters> {
        Arc::clone(&self.hub.counters)
    }

    /// Sets the deadline of every call that serves a request (default
    /// [`crate::DEFAULT_DB_TIMEOUT`]); past it the call is [`StoreError::Unavailable`]. Migrations
    /// and seeding are not bounded by it.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        match &mut self.backend {
            Backend::Postgres(store) => store.set_timeout(timeout),
            Backend::Sqlite(store) => store.set_timeout(timeout),
        }
        self
    }

    /// Sets how PostgreSQL's serving connections send statements (default
    /// [`StatementMode::Auto`]); SQLite has no such choice.
    pub fn with_statements(mut self, mode: StatementMode) -> Self {
        if let Backend::Postgres(store) = &mut self.backend {
            store.set_statements(mode);
        }
        self
    }

    /// Sends PostgreSQL reads to these streaming replicas in turn, each with `connections`
    /// shared connections, falling back to the primary when the replica does not answer;
    /// writes stay on the primary. Reads go to the primary for `read_primary_after_write`
    /// after a write of a store of its hub (every store of a server). SQLite has no
    /// replicas: an error.
    pub fn with_replicas(
        mut self,
        replicas: &[PgConfig],
        connections: usize,
        read_primary_after_write: Duration,
    ) -> Result<Self, StoreError> {
        match &mut self.backend {
            Backend::Postgres(store) => {
                store.set_replicas(replicas, connections)?;
                store.set_read_primary_after_write(read_primary_after_write);
            }
            Backend::Sqlite(_) if replicas.is_empty() => {}
            Backend::Sqlite(_) => {
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
        match &self.backend {
            Backend::Postgres(_) => Ok(None),
            Backend::Sqlite(store) => store.set_synchronous(mode).await.map(Some),
        }
    }

    /// How SQLite syncs commits, read back from its writer connection; `None` on
    /// PostgreSQL.
    pub async fn sqlite_synchronous(&self) -> Result<Option<Synchronous>, StoreError> {
        match &self.backend {
            Backend::Postgres(_) => Ok(None),
            Backend::Sqlite(store) => store.synchronous().await.map(Some),
        }
    }

    /// The backend's name, for logs: `postgres` or `sqlite`.
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
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
            let answered = match &self.backend {
                Backend::Postgres(store) => store.probe().await,
                // Opening the SQLite store already opened its file.
                Backend::Sqlite(_) => Ok(()),
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
