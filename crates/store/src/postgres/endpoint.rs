//! The servers and their connections: an endpoint (the primary or a replica) with the
//! settings of each kind of connection it opens, its slots (one shared connection each,
//! replaced when it dies), and reopening a connection with a back-off after a failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio_postgres::Client;

use super::connection::Connection;
use super::{LOCK_PROBE, PostgresStore};
use crate::db_stats::DbFailure;
use crate::pg_config::PgConfig;
use crate::pg_connect;
use crate::pg_tls::PgTls;
use crate::{DEFAULT_DB_TIMEOUT, StatementMode, StoreError};

/// How long a failed reconnect makes a slot answer "unavailable" at once instead of retrying.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);

/// PostgreSQL's port when the URL names none.
const DEFAULT_PORT: u16 = 5432;

/// One server (the primary or a replica) and its shared read connections.
pub(super) struct Endpoint {
    /// What the URL says.
    base: PgConfig,
    /// The TLS setup of every connection to it.
    pub(super) tls: PgTls,
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
    pub(super) deadline: Duration,
    readers: Box<[Slot]>,
    next: AtomicUsize,
}

/// One shared connection, replaced when it dies.
pub(super) struct Slot {
    /// Which server-side timeouts its connections get.
    role: Role,
    pub(super) live: ArcSwapOption<Connection>,
    reconnecting: tokio::sync::Mutex<()>,
    /// Milliseconds of the hub's clock at the last failed connect, plus one (0 = never
    /// failed).
    failed_at: AtomicU64,
    /// Whether a connection was ever opened here: the next one is a reconnect.
    opened: AtomicBool,
}

/// What a connection is for, which sets its server-side `lock_timeout`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Reads, and writes waiting for a row lock: `lock_timeout` is the deadline.
    Serving,
    /// Writes: `lock_timeout` is [`LOCK_PROBE`].
    Writing,
}

impl PostgresStore {
    /// The live connection of `slot`, reconnecting it when its connection died or hung.
    pub(super) async fn connection_of(
        &self,
        endpoint: &Endpoint,
        slot: &Slot,
    ) -> Result<Arc<Connection>, StoreError> {
        match slot.usable() {
            Some(conn) => Ok(conn),
            None => self.reconnect(endpoint, slot).await,
        }
    }
}

impl PostgresStore {
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
    /// The server `base` points at, TLS set up for it (its root certificates read now).
    pub(super) fn new(base: PgConfig, connections: usize) -> Result<Self, StoreError> {
        Ok(Self {
            tls: PgTls::for_config(&base)?,
            serving: base.clone(),
            writing: base.clone(),
            plain: base.clone(),
            base,
            options_refused: AtomicBool::new(false),
            deadline: DEFAULT_DB_TIMEOUT,
            readers: (0..connections.max(1)).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// The server's `statement_timeout` and `lock_timeout` for the serving connections, a
    /// connect timeout no longer than the deadline, and the `deadline` of the calls.
    pub(super) fn set_timeout(&mut self, timeout: Duration, deadline: Duration) {
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
    pub(super) fn reader(&self) -> &Slot {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        &self.readers[index]
    }

    /// Opens a serving connection, statements sent as `mode` says, watched by a watchdog.
    pub(super) async fn open(
        &self,
        mode: StatementMode,
        role: Role,
    ) -> Result<Arc<Connection>, StoreError> {
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
    pub(super) async fn connect(
        &self,
        role: Role,
    ) -> Result<(Client, tokio::task::AbortHandle), StoreError> {
        let config = match role {
            Role::Serving => &self.serving,
            Role::Writing => &self.writing,
        };
        if !self.options_refused.load(Ordering::Relaxed) {
            match pg_connect::connect(config, &self.tls).await {
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
        Ok(pg_connect::connect(&self.plain, &self.tls).await?)
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

impl Slot {
    /// Its connection, when it has a usable one.
    pub(super) fn usable(&self) -> Option<Arc<Connection>> {
        self.live.load_full().filter(|conn| conn.usable())
    }
}

impl Slot {
    /// An empty slot whose connections are for `role`.
    pub(super) fn new(role: Role) -> Self {
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
