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

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use futures_util::{SinkExt, TryStreamExt};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, Statement};

use crate::DEFAULT_DB_TIMEOUT;
use crate::db_stats::{DbFailure, StoreStats};
use crate::hub_state::HubState;
use crate::migrations::{self, MigrationReport};
use crate::pg_config::PgConfig;
use crate::pg_connect;
use crate::seed::{self, Progress};
use crate::watchdog::Watch;
use crate::{Page, StoreError, User, UserId, UserSink, Username};

/// How long a write waits for a row lock on the write connection (its server-side
/// `lock_timeout`) before it moves to the connection for lock waits: what a write to a
/// locked row costs the writes pipelined behind it.
const LOCK_PROBE: Duration = Duration::from_millis(10);
/// How long past the deadline a write waiting for a lock waits for the server's own
/// `lock_timeout` to end it (the connection is kept then) before giving up on its own.
const LOCK_WAIT_SLACK: Duration = Duration::from_millis(50);

/// How long a failed reconnect makes a slot answer "unavailable" at once instead of retrying.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);
/// Seeding reads the names already taken up front in tables of at most this many rows
/// (a few bytes of memory each), and asks per batch in larger ones.
const PRELOAD_NAMES_UP_TO: i64 = 5_000_000;
/// Key of the advisory lock that serialises migrations between processes.
const MIGRATION_LOCK: i64 = 0x7065_7265_6772_696e; // "peregrin"
/// PostgreSQL's port when the URL names none.
const DEFAULT_PORT: u16 = 5432;

/// How the serving connections send their statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatementMode {
    /// Named prepared statements, unless the server looks like a connection pooler: it
    /// refuses the `options` startup parameter, or reports a `port` other than the one
    /// connected to.
    #[default]
    Auto,
    /// Each statement prepared once per connection and kept (named): parsed and planned
    /// once. Breaks behind a pooler in transaction mode that does not track them.
    Prepared,
    /// Each call parses an unnamed statement and runs it in the same round trip; nothing is
    /// kept on the server between calls, so it works behind any pooler.
    Unnamed,
}

impl std::str::FromStr for StatementMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(Self::Auto),
            "prepared" => Ok(Self::Prepared),
            "unnamed" => Ok(Self::Unnamed),
            other => Err(format!(
                "{other:?} is not a statement mode: use auto, prepared or unnamed"
            )),
        }
    }
}

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
    /// After a write of this process, reads go to the primary for this long.
    read_primary_after_write: Duration,
    timeout: Duration,
}

/// One server (the primary or a replica) and its shared read connections.
struct Endpoint {
    /// What the URL says.
    base: PgConfig,
    /// For the serving connections: the server stops a statement at the deadline too.
    serving: PgConfig,
    /// `serving` for the write connection: a row lock is waited for [`LOCK_PROBE`] only.
    writing: PgConfig,
    /// `serving` without the server-side timeouts, for a server that refuses them.
    plain: PgConfig,
    /// Set once the server refused the `options` startup parameter (PgBouncer does unless
    /// told to ignore it): connect with `base`'s options only from then on.
    options_refused: AtomicBool,
    /// The deadline of the calls on its connections (kept by their watchdogs).
    deadline: Duration,
    readers: Box<[Slot]>,
    next: AtomicUsize,
}

/// One shared connection, replaced when it dies.
struct Slot {
    /// Which server-side timeouts its connections get.
    role: Role,
    live: ArcSwapOption<Connection>,
    reconnecting: tokio::sync::Mutex<()>,
    /// Milliseconds of the hub's clock at the last failed connect, plus one (0 = never
    /// failed).
    failed_at: AtomicU64,
    /// Whether a connection was ever opened here: the next one is a reconnect.
    opened: AtomicBool,
}

/// What a connection is for, which sets its server-side `lock_timeout`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Reads, and writes waiting for a row lock: `lock_timeout` is the deadline.
    Serving,
    /// Writes: `lock_timeout` is [`LOCK_PROBE`].
    Writing,
}

/// The statements the server runs for requests.
#[derive(Clone, Copy)]
enum Query {
    List,
    Get,
    Insert,
    Rename,
    Delete,
    Count,
    Ping,
}

impl Query {
    const ALL: [Query; 7] = [
        Query::List,
        Query::Get,
        Query::Insert,
        Query::Rename,
        Query::Delete,
        Query::Count,
        Query::Ping,
    ];

    fn sql(self) -> &'static str {
        match self {
            Query::List => "SELECT id, username FROM orguser WHERE id > $1 ORDER BY id LIMIT $2",
            Query::Get => "SELECT id, username FROM orguser WHERE id = $1",
            Query::Insert => "INSERT INTO orguser (username) VALUES ($1) RETURNING id",
            Query::Rename => "UPDATE orguser SET username = $2 WHERE id = $1",
            Query::Delete => "DELETE FROM orguser WHERE id = $1",
            Query::Count => "SELECT count(*) FROM orguser",
            Query::Ping => "SELECT 1",
        }
    }

    /// The parameters' types, given so that neither mode needs a round trip to learn them.
    fn types(self) -> &'static [Type] {
        match self {
            Query::List => &[Type::INT4, Type::INT8],
            Query::Get | Query::Delete => &[Type::INT4],
            Query::Insert => &[Type::VARCHAR],
            Query::Rename => &[Type::INT4, Type::VARCHAR],
            Query::Count | Query::Ping => &[],
        }
    }

    /// Whether the answer is a count of changed rows rather than rows.
    fn changes_rows(self) -> bool {
        matches!(self, Query::Rename | Query::Delete)
    }
}

/// What a query answered: its rows, or how many rows it changed.
struct Answer {
    rows: Vec<Row>,
    changed: u64,
}

type Params<'a> = [&'a (dyn ToSql + Sync)];

/// A connection, with its prepared statements in [`StatementMode::Prepared`].
struct Connection {
    client: Client,
    /// The task that drives the socket: stopped when the connection is dropped, so that a
    /// connection given up as hung does not linger, and by the watchdog, which makes the
    /// queries on it fail at once.
    driver: tokio::task::AbortHandle,
    /// Indexed by [`Query`]; `None` when statements are sent unnamed.
    prepared: Option<Box<[Statement]>>,
    /// Queries sent on it and not answered yet: the pipeline's depth.
    in_flight: AtomicU64,
    /// Its queries by when they were sent, for the watchdog.
    watch: Watch,
    /// The watchdog task, stopped with the connection.
    watchdog: OnceLock<tokio::task::AbortHandle>,
}

impl PostgresStore {
    /// A store for `config` with `connections` shared read connections and one write
    /// connection, opened on first use, with [`DEFAULT_DB_TIMEOUT`] as the deadline; one
    /// of the stores of the hub whose state is `hub`.
    pub(crate) fn new(config: PgConfig, connections: usize, hub: Arc<HubState>) -> Self {
        let mut store = Self {
            primary: Endpoint::new(config.clone(), connections),
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
        store
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
    pub fn set_replicas(&mut self, replicas: &[PgConfig], connections: usize) {
        self.replicas = replicas
            .iter()
            .map(|config| {
                let mut endpoint = Endpoint::new(config.clone(), connections);
                endpoint.set_timeout(self.timeout, self.timeout / 2);
                endpoint
            })
            .collect();
    }

    /// After a write made by this process, reads go to the primary for `window`, so that a
    /// client reading right after its write (through this instance) sees it.
    pub fn set_read_primary_after_write(&mut self, window: Duration) {
        self.read_primary_after_write = window;
    }

    /// Runs `query` on a shared connection of `slot` within `deadline`; past it the
    /// connection is dropped (it may be hung: a stopped server, a lost network) so that the
    /// next call opens a new one. On a live connection, when `deadline` is its endpoint's,
    /// the connection's watchdog keeps it: no timer of the call's own.
    async fn within_deadline(
        &self,
        endpoint: &Endpoint,
        slot: &Slot,
        deadline: Duration,
        query: Query,
        params: &Params<'_>,
    ) -> Result<Answer, StoreError> {
        match slot.usable() {
            Some(conn) if deadline >= endpoint.deadline => {
                self.run_on(&conn, deadline, query, params).await
            }
            // Connecting first (its phases have deadlines of their own, but the call as a
            // whole keeps `deadline`), or less time than the watchdog gives (a read falling
            // back from a replica): rare, so a timer of the call's own, boxed to keep the
            // usual call's future small.
            _ => {
                let attempt = async {
                    let conn = self.connection_of(endpoint, slot).await?;
                    self.run_on(&conn, deadline, query, params).await
                };
                Box::pin(self.timed(slot, deadline, attempt)).await
            }
        }
    }

    /// `attempt` (a call on `slot`) with a timer of its own: past `deadline`, the slot's
    /// connection is dropped.
    async fn timed(
        &self,
        slot: &Slot,
        deadline: Duration,
        attempt: impl Future<Output = Result<Answer, StoreError>>,
    ) -> Result<Answer, StoreError> {
        match tokio::time::timeout(deadline, attempt).await {
            Ok(result) => result,
            Err(_) => {
                self.stats.failed(DbFailure::Timeout);
                slot.live.store(None);
                tracing::warn!(
                    deadline_ms = deadline.as_millis(),
                    "PostgreSQL did not answer in time; replacing the connection"
                );
                Err(StoreError::timed_out(deadline))
            }
        }
    }

    /// The deadline of one call: the server's own statement timeout; the watchdog gives up
    /// on a call within two of its ticks after it.
    fn deadline(&self) -> Duration {
        self.timeout
    }

    /// Runs a read on a replica, taken in turn, when there are any and this process has
    /// not written within the window; on the primary when there are none, or when the
    /// replica does not answer within half the deadline (then the primary has what is left
    /// of the deadline: the call as a whole keeps it).
    async fn read(&self, query: Query, params: &Params<'_>) -> Result<Answer, StoreError> {
        if self.replicas.is_empty() || self.hub.wrote_within(self.read_primary_after_write) {
            return self.on_primary(self.deadline(), query, params).await;
        }
        let started = Instant::now();
        let index = self.next_replica.fetch_add(1, Ordering::Relaxed) % self.replicas.len();
        let replica = &self.replicas[index];
        let answer = self
            .within_deadline(replica, replica.reader(), replica.deadline, query, params)
            .await;
        match answer {
            Err(StoreError::Unavailable { reason, .. }) => {
                tracing::debug!(%reason, replica = index, "replica unavailable; reading from the primary");
            }
            answered => return answered,
        }
        let left = self.deadline().saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(StoreError::timed_out(self.deadline()));
        }
        self.on_primary(left, query, params).await
    }

    /// Runs a query on one of the primary's read connections within `deadline`.
    async fn on_primary(
        &self,
        deadline: Duration,
        query: Query,
        params: &Params<'_>,
    ) -> Result<Answer, StoreError> {
        let primary = &self.primary;
        self.within_deadline(primary, primary.reader(), deadline, query, params)
            .await
    }

    /// Runs a write on the primary's write connection, noting when it happened; one that
    /// meets a row lock held longer than [`LOCK_PROBE`] waits for it on the connection for
    /// lock waits, within what is left of the deadline.
    async fn write(&self, query: Query, params: &Params<'_>) -> Result<Answer, StoreError> {
        let started = Instant::now();
        let deadline = self.deadline();
        let mut result = self
            .within_deadline(&self.primary, &self.writer, deadline, query, params)
            .await;
        if result.as_ref().is_err_and(StoreError::is_lock_timeout) {
            result = match deadline.checked_sub(started.elapsed()) {
                Some(left) if !left.is_zero() => self.wait_for_lock(left, query, params).await,
                _ => Err(StoreError::timed_out(deadline)),
            };
        }
        if !self.replicas.is_empty() {
            self.hub.wrote();
        }
        result
    }

    /// Runs a write that met a held row lock on the connection for lock waits. The server
    /// ends the wait at its `lock_timeout` (the deadline, counted from a little later than
    /// the call's); past `left` and [`LOCK_WAIT_SLACK`] the call gives up by itself and the
    /// connection is replaced (its session still waits for the lock until then).
    async fn wait_for_lock(
        &self,
        left: Duration,
        query: Query,
        params: &Params<'_>,
    ) -> Result<Answer, StoreError> {
        let attempt = async {
            let conn = self.connection_of(&self.primary, &self.lock_waits).await?;
            self.run_on(&conn, left, query, params).await
        };
        match tokio::time::timeout(left + LOCK_WAIT_SLACK, attempt).await {
            Ok(Err(err)) if err.is_lock_timeout() => Err(StoreError::unavailable(format!(
                "no answer within the deadline of {} ms (another session holds the row's lock)",
                self.deadline().as_millis()
            ))),
            Ok(result) => result,
            Err(_) => {
                self.stats.failed(DbFailure::Timeout);
                self.lock_waits.live.store(None);
                Err(StoreError::unavailable(format!(
                    "no answer within the deadline of {} ms (waiting for a row lock)",
                    self.deadline().as_millis()
                )))
            }
        }
    }

    /// Applies pending migrations on a connection of its own, holding an advisory lock so
    /// that servers starting together migrate once.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let mut client = connect_raw(&self.config).await?;
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
            let (client, _driver) = pg_connect::connect(&self.config)
                .await
                .map_err(pg_connect::ConnectFailure::into_startup_error)?;
            client.simple_query("").await?;
            Ok(())
        };
        tokio::time::timeout(deadline, attempt)
            .await
            .unwrap_or_else(|_| Err(StoreError::timed_out(deadline)))
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

    /// The live connection of `slot`, reconnecting it when its connection died or hung.
    async fn connection_of(
        &self,
        endpoint: &Endpoint,
        slot: &Slot,
    ) -> Result<Arc<Connection>, StoreError> {
        match slot.usable() {
            Some(conn) => Ok(conn),
            None => self.reconnect(endpoint, slot).await,
        }
    }

    /// Runs `query` on `conn`. Under [`StatementMode::Auto`], a named statement the server
    /// does not know (or knows twice) means a pooler in transaction mode is in between,
    /// which the detection at connect time missed: the store sends every statement unnamed
    /// from then on, and this query again, unnamed, once (it never ran: the server refused
    /// the statement's name).
    ///
    /// A query the watchdog gave up (the connection hung) fails as no answer within
    /// `deadline`.
    async fn run_on(
        &self,
        conn: &Connection,
        deadline: Duration,
        query: Query,
        params: &Params<'_>,
    ) -> Result<Answer, StoreError> {
        let unnamed = self.unnamed_forced.load(Ordering::Relaxed);
        let result = match self.counted(conn, query, params, unnamed).await {
            Err(err)
                if !unnamed
                    && self.statements == StatementMode::Auto
                    && lost_named_statement(&err) =>
            {
                self.fall_back_to_unnamed(&err);
                self.counted(conn, query, params, true).await
            }
            result => result,
        };
        result.map_err(|err| match conn.gave_up(&err) {
            true => StoreError::timed_out(deadline),
            false => err.into(),
        })
    }

    /// [`Connection::run`], counted for `/metrics`: the query, its connection's pipeline
    /// depth, and its failure by kind.
    async fn counted(
        &self,
        conn: &Connection,
        query: Query,
        params: &Params<'_>,
        unnamed: bool,
    ) -> Result<Answer, tokio_postgres::Error> {
        let depth = conn.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        let _pipelined = Pipelined(&conn.in_flight);
        let _watched = conn.watch.sent();
        let _in_flight = self.stats.sent(depth);
        let result = conn.run(query, params, unnamed).await;
        if let Err(err) = &result {
            self.stats.failed(match err.as_db_error() {
                Some(_) => DbFailure::Server,
                None if conn.gave_up(err) => DbFailure::Timeout,
                None => DbFailure::ConnectionLost,
            });
        }
        result
    }

    /// Switches this store to unnamed statements, saying why once per hub.
    fn fall_back_to_unnamed(&self, err: &tokio_postgres::Error) {
        self.unnamed_forced.store(true, Ordering::Relaxed);
        if self.hub.first_unnamed_fallback() {
            tracing::warn!(
                error = %err,
                "the server lost a named prepared statement: a connection pooler in transaction \
                 mode (PgBouncer < 1.21, or without max_prepared_statements) is in between; \
                 sending every statement unnamed from now on (one round trip, parsed each time). \
                 Say so explicitly with --db-statements unnamed (PEREGRINE_DB_STATEMENTS=unnamed), \
                 or enable max_prepared_statements in the pooler and use --db-statements prepared"
            );
        }
    }

    async fn reconnect(
        &self,
        endpoint: &Endpoint,
        slot: &Slot,
    ) -> Result<Arc<Connection>, StoreError> {
        let _guard = slot.reconnecting.lock().await;
        // Another request may have reconnected while this one waited for the lock.
        if let Some(conn) = slot.usable() {
            return Ok(conn);
        }
        let now = self.hub.millis() + 1;
        let failed_at = slot.failed_at.load(Ordering::Relaxed);
        if failed_at != 0 && now - failed_at < RECONNECT_BACKOFF.as_millis() as u64 {
            return Err(StoreError::unavailable(
                "cannot connect to PostgreSQL (retrying shortly)",
            ));
        }
        let mode = match self.unnamed_forced.load(Ordering::Relaxed) {
            true => StatementMode::Unnamed,
            false => self.statements,
        };
        match endpoint.open(mode, slot.role).await {
            Ok(conn) => {
                if slot.opened.swap(true, Ordering::Relaxed) {
                    self.stats.reconnected();
                }
                slot.live.store(Some(Arc::clone(&conn)));
                slot.failed_at.store(0, Ordering::Relaxed);
                tracing::info!(
                    server = %endpoint.base,
                    statements = if conn.prepared.is_some() { "prepared" } else { "unnamed" },
                    "connected to PostgreSQL"
                );
                Ok(conn)
            }
            Err(err) => {
                self.stats.failed(DbFailure::Connect);
                slot.live.store(None);
                slot.failed_at
                    .store(self.hub.millis() + 1, Ordering::Relaxed);
                tracing::warn!(server = %endpoint.base, error = %err, "cannot connect to PostgreSQL");
                Err(err)
            }
        }
    }
}

impl Endpoint {
    fn new(base: PgConfig, connections: usize) -> Self {
        Self {
            serving: base.clone(),
            writing: base.clone(),
            plain: base.clone(),
            base,
            options_refused: AtomicBool::new(false),
            deadline: DEFAULT_DB_TIMEOUT,
            readers: (0..connections.max(1)).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The server's `statement_timeout` and `lock_timeout` for the serving connections, a
    /// connect timeout no longer than the deadline, and the `deadline` of the calls.
    fn set_timeout(&mut self, timeout: Duration, deadline: Duration) {
        self.deadline = deadline;
        let millis = timeout.as_millis().max(1);
        let ours = format!("-c statement_timeout={millis} -c lock_timeout={millis}");
        // The URL's own options come last, so that they win.
        let options = match self.base.client.get_options() {
            Some(given) if !given.is_empty() => format!("{ours} {given}"),
            _ => ours,
        };
        let connect = self.base.client.get_connect_timeout().copied();
        self.plain = self.base.clone();
        self.plain
            .client
            .connect_timeout(connect.map_or(timeout, |given| given.min(timeout)));
        self.serving = self.plain.clone();
        self.serving.client.options(&options);
        let probe = LOCK_PROBE.as_millis().min(millis);
        self.writing = self.plain.clone();
        self.writing
            .client
            .options(format!("{options} -c lock_timeout={probe}"));
    }

    /// A read connection, taken in turn.
    fn reader(&self) -> &Slot {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        &self.readers[index]
    }

    /// Opens a serving connection, statements sent as `mode` says, watched by a watchdog.
    async fn open(&self, mode: StatementMode, role: Role) -> Result<Arc<Connection>, StoreError> {
        let (client, driver) = self.connect(role).await?;
        let prepared = match mode {
            StatementMode::Prepared => true,
            StatementMode::Unnamed => false,
            StatementMode::Auto => {
                !self.options_refused.load(Ordering::Relaxed)
                    && !self.behind_a_proxy(&client).await?
            }
        };
        let conn = Connection::new(client, driver, prepared, self.deadline).await?;
        Ok(Connection::watched(conn))
    }

    /// Connects with the server-side timeouts in `options`, or without them once the
    /// server refused them (a pooler), saying so once.
    async fn connect(&self, role: Role) -> Result<(Client, tokio::task::AbortHandle), StoreError> {
        let config = match role {
            Role::Serving => &self.serving,
            Role::Writing => &self.writing,
        };
        if !self.options_refused.load(Ordering::Relaxed) {
            match pg_connect::connect(config).await {
                Err(failure) if failure.refused_parameter => {
                    self.options_refused.store(true, Ordering::Relaxed);
                    tracing::warn!(
                        server = %self.base,
                        "the server (a pooler such as PgBouncer?) refuses the `options` startup \
                         parameter: connecting without it, so PostgreSQL's statement_timeout and \
                         lock_timeout are not set by Peregrine; set them on the role (ALTER ROLE … \
                         SET statement_timeout = '5s') or list `options` in PgBouncer's \
                         ignore_startup_parameters"
                    );
                }
                connected => return Ok(connected?),
            }
        }
        Ok(pg_connect::connect(&self.plain).await?)
    }

    /// Whether something forwards this connection: the server's `port` setting is none of
    /// the ports connected to (a pooler, a proxy, a port mapping). One round trip, when
    /// the connection opens.
    async fn behind_a_proxy(&self, client: &Client) -> Result<bool, StoreError> {
        let messages = client.simple_query("SHOW port").await?;
        let port = messages.iter().find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        });
        let Some(port) = port.and_then(|p| p.parse::<u16>().ok()) else {
            return Ok(true);
        };
        let ports = self.base.client.get_ports();
        Ok(if ports.is_empty() {
            port != DEFAULT_PORT
        } else {
            !ports.contains(&port)
        })
    }
}

impl Connection {
    async fn new(
        client: Client,
        driver: tokio::task::AbortHandle,
        prepared: bool,
        deadline: Duration,
    ) -> Result<Self, StoreError> {
        let prepared = if prepared {
            let statements = Query::ALL
                .iter()
                .map(|query| client.prepare_typed(query.sql(), query.types()));
            Some(
                futures_util::future::try_join_all(statements)
                    .await?
                    .into_boxed_slice(),
            )
        } else {
            None
        };
        Ok(Self {
            client,
            driver,
            prepared,
            in_flight: AtomicU64::new(0),
            watch: Watch::new(deadline),
            watchdog: OnceLock::new(),
        })
    }

    /// `conn`, shared, with its watchdog started on the current runtime (the one that
    /// drives its socket).
    fn watched(conn: Self) -> Arc<Self> {
        let conn = Arc::new(conn);
        let watchdog = tokio::spawn(watch_over(Arc::downgrade(&conn)));
        let _ = conn.watchdog.set(watchdog.abort_handle());
        conn
    }

    /// Whether calls may be sent on it: neither closed nor given up as hung.
    fn usable(&self) -> bool {
        !self.client.is_closed() && !self.watch.is_hung()
    }

    /// Whether `err` (of a query on this connection) comes of the watchdog giving the
    /// connection up, rather than of the server.
    fn gave_up(&self, err: &tokio_postgres::Error) -> bool {
        err.as_db_error().is_none() && self.watch.is_hung()
    }

    /// Gives the connection up as hung: stops its socket's task, so that every query on it
    /// fails at once (as a timeout) and the next call opens a new connection.
    fn give_up(&self) {
        self.watch.give_up();
        self.driver.abort();
        tracing::warn!(
            deadline_ms = self.watch.deadline().as_millis(),
            in_flight = self.watch.in_flight(),
            "PostgreSQL did not answer in time; replacing the connection"
        );
    }

    /// Runs `query`: by its prepared statement unless `unnamed` (or none was prepared), else
    /// as an unnamed one with its types.
    async fn run(
        &self,
        query: Query,
        params: &Params<'_>,
        unnamed: bool,
    ) -> Result<Answer, tokio_postgres::Error> {
        let client = &self.client;
        let prepared = match unnamed {
            true => None,
            false => self.prepared.as_ref().map(|p| &p[query as usize]),
        };
        if query.changes_rows() {
            let changed = match prepared {
                Some(statement) => client.execute(statement, params).await?,
                None => {
                    client
                        .execute_typed(query.sql(), &typed(query, params))
                        .await?
                }
            };
            return Ok(Answer {
                rows: Vec::new(),
                changed,
            });
        }
        let rows = match prepared {
            Some(statement) => client.query(statement, params).await?,
            None => {
                client
                    .query_typed(query.sql(), &typed(query, params))
                    .await?
            }
        };
        Ok(Answer { rows, changed: 0 })
    }
}

/// Whether `err` says the server does not know a named statement, or already has one of
/// that name: what a pooler in transaction mode does to them.
fn lost_named_statement(err: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    err.code().is_some_and(|code| {
        *code == SqlState::INVALID_SQL_STATEMENT_NAME || *code == SqlState::DUPLICATE_PSTATEMENT
    })
}

/// Counts a query in its connection's pipeline while it lives (even when abandoned at the
/// deadline).
struct Pipelined<'a>(&'a AtomicU64);

impl Drop for Pipelined<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `params` paired with `query`'s parameter types, as unnamed statements take them.
fn typed<'a>(query: Query, params: &Params<'a>) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params
        .iter()
        .copied()
        .zip(query.types().iter().cloned())
        .collect()
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

/// Opens one connection (TLS as the sslmode says) and drives it on a task of its own.
async fn connect_raw(config: &PgConfig) -> Result<Client, StoreError> {
    Ok(connect_driven(config).await?.0)
}

/// [`connect_raw`], also returning the handle of the task that drives the socket.
async fn connect_driven(
    config: &PgConfig,
) -> Result<(Client, tokio::task::AbortHandle), StoreError> {
    Ok(pg_connect::connect(config).await?)
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
        if let Some(watchdog) = self.watchdog.get() {
            watchdog.abort();
        }
    }
}

/// Looks at `conn`'s queries every tick, giving the connection up when one of them is past
/// the deadline; ends with the connection.
async fn watch_over(conn: Weak<Connection>) {
    let Some(tick) = conn.upgrade().map(|c| c.watch.tick()) else {
        return;
    };
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    // A late tick is counted late, never twice: the ages it measures only ever fall short
    // of the truth, so a query is never given up before its deadline.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 1.. {
        ticks.tick().await;
        let Some(conn) = conn.upgrade() else {
            return;
        };
        if !conn.watch.advance(n) {
            conn.give_up();
            return;
        }
    }
}

impl Slot {
    /// Its connection, when it has a usable one.
    fn usable(&self) -> Option<Arc<Connection>> {
        self.live.load_full().filter(|conn| conn.usable())
    }
}

impl Slot {
    /// An empty slot whose connections are for `role`.
    fn new(role: Role) -> Self {
        Self {
            role,
            live: ArcSwapOption::empty(),
            reconnecting: tokio::sync::Mutex::new(()),
            failed_at: AtomicU64::new(0),
            opened: AtomicBool::new(false),
        }
    }
}

impl Default for Slot {
    fn default() -> Self {
        Self::new(Role::Serving)
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

fn user_from_row(row: &Row) -> Result<User, StoreError> {
    Ok(User {
        id: UserId::from_db(row.try_get(0)?),
        username: Username::from_db(row.try_get(1)?),
    })
}
