//! PostgreSQL backend: a few long-lived connections shared by all reads, so concurrent
//! queries pipeline on each socket, and one connection of their own for writes, so that a
//! write waiting on a row lock never holds up the reads queued behind it. A write waits for
//! a row lock on the write connection only [`LOCK_PROBE`] long; then it goes on waiting on a
//! third connection, for lock waits, so that it does not hold up the writes to other rows
//! pipelined behind it either. Statements are
//! prepared once per connection, or sent unnamed behind a connection pooler (PgBouncer in
//! transaction mode keeps nothing between transactions); reads may go to streaming replicas,
//! the primary answering when they do not. Every call has a deadline, past which the
//! connection is taken for hung and replaced (a watchdog per connection keeps it: see
//! [`crate::watchdog`]); a dead connection is replaced when the server comes back.
//!
//! Its rooms: [`routing`] (where a call goes, within its deadline), [`endpoint`] (the
//! servers, their connections, reconnecting), [`connection`] (one connection, its
//! statements and watchdog), [`statements`] (prepared or unnamed), [`schema`]
//! (migrations), [`seeding`] and [`admin`].

mod admin;
mod connection;
mod endpoint;
mod routing;
mod schema;
mod seeding;
mod statements;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;

use tokio_postgres::{Client, Row};

pub use admin::PostgresAdmin;
pub use statements::StatementMode;

use self::connection::Query;
use self::endpoint::{Endpoint, Role, Slot};
use crate::db_stats::StoreStats;
use crate::hub_state::HubState;
use crate::pg_config::PgConfig;
use crate::pg_tls::PgTls;
use crate::{DEFAULT_DB_TIMEOUT, Page, StoreError, User, UserId, UserSink, Username, pg_connect};

/// How long a write waits for a row lock on the write connection (its server-side
/// `lock_timeout`) before it moves to the connection for lock waits: what a write to a
/// locked row costs the writes pipelined behind it.
const LOCK_PROBE: Duration = Duration::from_millis(10);

/// The PostgreSQL user store.
pub struct PostgresStore {
    /// For migrations and seeding: no statement or lock timeout of the server's own.
    config: PgConfig,
    /// The primary: every write, and reads when no replica answers.
    primary: Endpoint,
    /// The primary's connection for writes: waits for a row lock [`LOCK_PROBE`] at most.
    writer: Slot,
    /// The primary's connection for writes that met a held row lock: they wait for it
    /// here, up to the deadline, out of the way of the other writes.
    lock_waits: Slot,
    /// Streaming replicas that serve reads, taken in turn.
    replicas: Box<[Endpoint]>,
    next_replica: AtomicUsize,
    statements: StatementMode,
    /// Set when [`StatementMode::Auto`] met a pooler that loses named statements: every
    /// call is sent unnamed from then on.
    unnamed_forced: AtomicBool,
    /// What `/metrics` shows of this store: its block of its hub's counters.
    stats: Arc<StoreStats>,
    /// What it shares with the other stores of its hub: the clock, the last write.
    hub: Arc<HubState>,
    /// After a write of a store of its hub (the process, in a server), reads go to the
    /// primary for this long.
    read_primary_after_write: Duration,
    timeout: Duration,
}

impl PostgresStore {
    /// A store for `config` with `connections` shared read connections and one write
    /// connection, opened on first use, with [`DEFAULT_DB_TIMEOUT`] as the deadline; one
    /// of the stores of the hub whose state is `hub`. Sets TLS up (reading the root
    /// certificates) now.
    pub(crate) fn new(
        config: PgConfig,
        connections: usize,
        hub: Arc<HubState>,
    ) -> Result<Self, StoreError> {
        let mut store = Self {
            primary: Endpoint::new(config.clone(), connections)?,
            config,
            writer: Slot::new(Role::Writing),
            lock_waits: Slot::default(),
            replicas: Box::new([]),
            next_replica: AtomicUsize::new(0),
            statements: StatementMode::default(),
            unnamed_forced: AtomicBool::new(false),
            stats: hub.counters.block(),
            hub,
            read_primary_after_write: Duration::ZERO,
            timeout: DEFAULT_DB_TIMEOUT,
        };
        store.set_timeout(DEFAULT_DB_TIMEOUT);
        Ok(store)
    }

    /// Sets the deadline of every call that serves a request. The server's own
    /// `statement_timeout` and `lock_timeout` of the serving connections are set to it, so
    /// the database stops the work too; this side gives up at the deadline plus at most two
    /// ticks of the connection's watchdog (see [`crate::watchdog`]), so that the server
    /// usually answers first and the connection can be kept, and a call that gets no answer
    /// fails by the deadline plus 100 ms.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
        let deadline = self.deadline();
        self.primary.set_timeout(timeout, deadline);
        for replica in self.replicas.iter_mut() {
            replica.set_timeout(timeout, timeout / 2);
        }
    }

    /// Sets how the serving connections send statements (default [`StatementMode::Auto`]).
    pub fn set_statements(&mut self, mode: StatementMode) {
        self.statements = mode;
    }

    /// Sends reads to these streaming replicas in turn (each with `connections` shared
    /// connections), falling back to the primary when the replica does not answer within
    /// half the deadline. Writes always go to the primary.
    pub fn set_replicas(
        &mut self,
        replicas: &[PgConfig],
        connections: usize,
    ) -> Result<(), StoreError> {
        self.replicas = replicas
            .iter()
            .map(|config| {
                let mut endpoint = Endpoint::new(config.clone(), connections)?;
                endpoint.set_timeout(self.timeout, self.timeout / 2);
                Ok(endpoint)
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(())
    }

    /// After a write made by a store of its hub (a server has one), reads go to the primary
    /// for `window`, so that a client reading right after its write (through this
    /// instance) sees it.
    pub fn set_read_primary_after_write(&mut self, window: Duration) {
        self.read_primary_after_write = window;
    }
}

impl PostgresStore {
    /// Users in id order, starting after `page.after`.
    pub async fn list_into<S: UserSink>(&self, page: Page, mut sink: S) -> Result<S, StoreError> {
        let after = page.after.map_or(0, UserId::get);
        let limit = i64::from(page.limit);
        let answer = self.read(Query::List, &[&after, &limit]).await?;
        for row in &answer.rows {
            sink.user(UserId::from_db(row.try_get(0)?), row.try_get(1)?);
        }
        Ok(sink)
    }

    /// The user with `id`.
    pub async fn get(&self, id: UserId) -> Result<User, StoreError> {
        let answer = self.read(Query::Get, &[&id.get()]).await?;
        answer
            .rows
            .first()
            .map_or(Err(StoreError::NotFound), user_from_row)
    }

    /// Adds a user named `username`.
    pub async fn create(&self, username: &Username) -> Result<User, StoreError> {
        let answer = self.write(Query::Insert, &[&username.as_str()]).await?;
        let row = answer
            .rows
            .first()
            .ok_or_else(|| StoreError::internal("INSERT … RETURNING returned no row"))?;
        Ok(User {
            id: UserId::from_db(row.try_get(0)?),
            username: username.clone(),
        })
    }

    /// Renames the user with `id`.
    pub async fn rename(&self, id: UserId, username: &Username) -> Result<User, StoreError> {
        let answer = self
            .write(Query::Rename, &[&id.get(), &username.as_str()])
            .await?;
        match answer.changed {
            0 => Err(StoreError::NotFound),
            _ => Ok(User {
                id,
                username: username.clone(),
            }),
        }
    }

    /// Deletes the user with `id`.
    pub async fn delete(&self, id: UserId) -> Result<(), StoreError> {
        match self.write(Query::Delete, &[&id.get()]).await?.changed {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    /// How many users exist (on the primary).
    pub async fn count(&self) -> Result<u64, StoreError> {
        let answer = self.on_primary(self.deadline(), Query::Count, &[]).await?;
        let row = answer
            .rows
            .first()
            .ok_or_else(|| StoreError::internal("count(*) returned no row"))?;
        Ok(u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0))
    }

    /// Succeeds when the primary answers a query within the deadline, on a read
    /// connection: what a read request would meet.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.on_primary(self.deadline(), Query::Ping, &[])
            .await
            .map(drop)
    }

    /// Succeeds when the server accepts a connection, whether or not the schema exists yet.
    /// A failure that waiting cannot fix (authentication, no such database, TLS mismatch)
    /// is a [`StoreError::Config`]; one that may pass is [`StoreError::Unavailable`], as is
    /// no answer within the deadline (a hung server that accepted the TCP connection).
    pub async fn probe(&self) -> Result<(), StoreError> {
        let deadline = self.deadline();
        let attempt = async {
            let (client, _driver) = pg_connect::connect(&self.config, &self.primary.tls)
                .await
                .map_err(pg_connect::ConnectFailure::into_startup_error)?;
            client.simple_query("").await?;
            Ok(())
        };
        tokio::time::timeout(deadline, attempt)
            .await
            .unwrap_or_else(|_| Err(StoreError::timed_out(deadline)))
    }
}

/// Opens one connection (TLS as the sslmode says) and drives it on a task of its own: for
/// migrations, seeding and administration.
async fn connect_raw(config: &PgConfig, tls: &PgTls) -> Result<Client, StoreError> {
    Ok(pg_connect::connect(config, tls).await?.0)
}

fn user_from_row(row: &Row) -> Result<User, StoreError> {
    Ok(User {
        id: UserId::from_db(row.try_get(0)?),
        username: Username::from_db(row.try_get(1)?),
    })
}
