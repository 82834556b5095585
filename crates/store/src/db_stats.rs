//! Counters of the PostgreSQL serving connections, for a server's `/metrics`: queries,
//! queries in flight and pipeline depth (in flight on one connection when a query is sent),
//! failures by kind, and reconnects. Each store writes a block of its own (a server's worker
//! has its own store, so these cache lines are not contended); its hub's [`DbCounters`]
//! keeps every block as long as the hub lives and sums them when scraped, so counters
//! never go down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Upper bounds of the pipeline-depth histogram's buckets (queries in flight on one
/// connection, the new one included); a last bucket takes the rest.
pub const PIPELINE_DEPTH_BUCKETS: [u64; 7] = [1, 2, 4, 8, 16, 32, 64];

/// Why a database call failed, as a `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFailure {
    /// No answer within the deadline (the connection is then replaced).
    Timeout,
    /// A new connection could not be opened.
    Connect,
    /// The connection broke while the query was on it.
    ConnectionLost,
    /// PostgreSQL answered with an error (a SQLSTATE), a unique violation included.
    Server,
}

impl DbFailure {
    /// Every kind, in the order of [`DbStats::failures`].
    pub const ALL: [Self; 4] = [
        Self::Timeout,
        Self::Connect,
        Self::ConnectionLost,
        Self::Server,
    ];

    /// The `kind` label's value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::ConnectionLost => "connection_lost",
            Self::Server => "server",
        }
    }
}

/// What the stores of a hub counted so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbStats {
    /// Queries sent on the serving connections.
    pub queries: u64,
    /// Queries sent and not yet answered.
    pub queries_in_flight: u64,
    /// Serving connections opened again after an earlier one of theirs died or hung.
    pub reconnects: u64,
    /// Failed calls, indexed like [`DbFailure::ALL`].
    pub failures: [u64; 4],
    /// Queries per pipeline depth bucket ([`PIPELINE_DEPTH_BUCKETS`], then the rest); not
    /// cumulative.
    pub pipeline_depth: [u64; PIPELINE_DEPTH_BUCKETS.len() + 1],
    /// Sum of the depths observed.
    pub pipeline_depth_sum: u64,
}

/// The blocks of counters of the stores of one hub (see [`crate::StoreHub`]), kept as long
/// as the hub lives.
#[derive(Default)]
pub struct DbCounters {
    blocks: Mutex<Vec<Arc<StoreStats>>>,
}

impl DbCounters {
    /// The sums over every store of the hub.
    pub fn totals(&self) -> DbStats {
        let mut total = DbStats::default();
        let Ok(blocks) = self.blocks.lock() else {
            return total;
        };
        for block in blocks.iter() {
            let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
            total.queries += read(&block.queries);
            total.queries_in_flight += read(&block.in_flight);
            total.reconnects += read(&block.reconnects);
            for (sum, counter) in total.failures.iter_mut().zip(&block.failures) {
                *sum += read(counter);
            }
            for (sum, counter) in total.pipeline_depth.iter_mut().zip(&block.depth) {
                *sum += read(counter);
            }
            total.pipeline_depth_sum += read(&block.depth_sum);
        }
        total
    }

    /// A new store's block, summed from now on.
    pub(crate) fn block(&self) -> Arc<StoreStats> {
        let block = Arc::new(StoreStats::default());
        if let Ok(mut blocks) = self.blocks.lock() {
            blocks.push(Arc::clone(&block));
        }
        block
    }
}

/// Figures of several hubs added up (a server whose workers' stores came from more than
/// one hub).
impl std::ops::AddAssign for DbStats {
    fn add_assign(&mut self, other: Self) {
        self.queries += other.queries;
        self.queries_in_flight += other.queries_in_flight;
        self.reconnects += other.reconnects;
        for (sum, part) in self.failures.iter_mut().zip(other.failures) {
            *sum += part;
        }
        for (sum, part) in self.pipeline_depth.iter_mut().zip(other.pipeline_depth) {
            *sum += part;
        }
        self.pipeline_depth_sum += other.pipeline_depth_sum;
    }
}

/// One store's counters.
#[derive(Default)]
pub(crate) struct StoreStats {
    queries: AtomicU64,
    in_flight: AtomicU64,
    reconnects: AtomicU64,
    failures: [AtomicU64; 4],
    depth: [AtomicU64; PIPELINE_DEPTH_BUCKETS.len() + 1],
    depth_sum: AtomicU64,
}

impl StoreStats {
    /// Counts a query sent on a connection that now has `depth` in flight (it included);
    /// the guard counts it answered (or abandoned) when dropped.
    pub(crate) fn sent(&self, depth: u64) -> InFlightQuery<'_> {
        add(&self.queries);
        add(&self.in_flight);
        let slot = PIPELINE_DEPTH_BUCKETS
            .iter()
            .position(|&bound| depth <= bound)
            .unwrap_or(PIPELINE_DEPTH_BUCKETS.len());
        add(&self.depth[slot]);
        self.depth_sum.fetch_add(depth, Ordering::Relaxed);
        InFlightQuery(self)
    }

    pub(crate) fn failed(&self, kind: DbFailure) {
        add(&self.failures[kind as usize]);
    }

    pub(crate) fn reconnected(&self) {
        add(&self.reconnects);
    }
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A query in flight in the store's gauge while it lives.
pub(crate) struct InFlightQuery<'a>(&'a StoreStats);

impl Drop for InFlightQuery<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
