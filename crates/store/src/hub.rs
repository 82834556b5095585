//! The store hub, one per server process: it makes the store of each serving worker and
//! owns what those stores share (their counters, their clock, when one of them last wrote).
//!
//! On PostgreSQL every worker but the first gets a store, and so connections, of its own,
//! so that a request never leaves its thread; SQLite's store has threads of its own and is
//! shared by every worker.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::db_stats::DbCounters;
use crate::hub_state::HubState;
use crate::{DatabaseUrl, PgConfig, StatementMode, StoreError, UserStore};

/// How each worker's store serves: its connections, deadline, statements and read
/// replicas.
#[derive(Clone)]
pub struct Serving {
    /// Shared read connections per worker (per replica too); SQLite: readers.
    pub connections: usize,
    /// Deadline of every database call of a request.
    pub timeout: Duration,
    /// How PostgreSQL statements are sent.
    pub statements: StatementMode,
    /// Streaming replicas that serve reads.
    pub replicas: Vec<PgConfig>,
    /// After a write of a store of its hub (the process, in a server), reads go to the
    /// primary for this long.
    pub read_primary_after_write: Duration,
}

impl Serving {
    /// `connections` and `timeout` with the defaults for the rest: statements as
    /// [`StatementMode::Auto`] decides, no replicas.
    pub fn new(connections: usize, timeout: Duration) -> Self {
        Self {
            connections,
            timeout,
            statements: StatementMode::Auto,
            replicas: Vec::new(),
            read_primary_after_write: Duration::ZERO,
        }
    }

    /// `store` set up to serve as these settings say.
    fn apply(&self, store: UserStore) -> Result<UserStore, StoreError> {
        store
            .with_timeout(self.timeout)
            .with_statements(self.statements)
            .with_replicas(
                &self.replicas,
                self.connections,
                self.read_primary_after_write,
            )
    }
}

/// Makes the stores of a server's workers, and owns their counters and clock.
pub struct StoreHub {
    url: DatabaseUrl,
    serving: Serving,
    state: Arc<HubState>,
    /// Worker 0's store (every worker's on SQLite), once [`StoreHub::first_worker`] set it.
    first: OnceLock<Arc<UserStore>>,
}

impl StoreHub {
    /// A hub for the database at `url`, its workers' stores serving as `serving` says.
    /// Opens nothing yet.
    pub fn new(url: DatabaseUrl, serving: Serving) -> Self {
        Self {
            url,
            serving,
            state: HubState::new(),
            first: OnceLock::new(),
        }
    }

    /// The database's URL.
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// Opens the first store (with the default deadline: for waiting for the database,
    /// migrating and seeding before serving). PostgreSQL connects lazily; SQLite opens its
    /// file now.
    pub fn open(&self) -> Result<UserStore, StoreError> {
        UserStore::open_in(&self.url, self.serving.connections, Arc::clone(&self.state))
    }

    /// Sets `store` (from [`StoreHub::open`]) up to serve and makes it worker 0's store
    /// (every worker's on SQLite).
    pub fn first_worker(&self, store: UserStore) -> Result<Arc<UserStore>, StoreError> {
        let store = Arc::new(self.serving.apply(store)?);
        self.first
            .set(Arc::clone(&store))
            .map_err(|_| StoreError::internal("the hub's first store is set already"))?;
        Ok(store)
    }

    /// The store of serving worker `worker`: the first one for worker 0 and on SQLite, a
    /// new one with connections of its own otherwise.
    pub fn worker_store(&self, worker: usize) -> Result<Arc<UserStore>, StoreError> {
        let first = self
            .first
            .get()
            .ok_or_else(|| StoreError::internal("the hub has no first store yet"))?;
        Ok(match (&self.url, worker) {
            (DatabaseUrl::Sqlite(_), _) | (_, 0) => Arc::clone(first),
            (DatabaseUrl::Postgres(_), _) => Arc::new(self.serving.apply(self.open()?)?),
        })
    }

    /// The counters of every store the hub made.
    pub fn counters(&self) -> Arc<DbCounters> {
        Arc::clone(&self.state.counters)
    }
}
