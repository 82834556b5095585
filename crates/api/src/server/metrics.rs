//! Prometheus metrics, kept cheap for a thread-per-core server: every worker counts into its
//! own fixed block of atomics (indexed by route template, method and status, all resolved
//! to small integers, so a request allocates nothing and takes no lock), and a scrape sums
//! the blocks into the text exposition format 0.0.4.
//!
//! Hand-rolled rather than `metrics` or `prometheus-client`: their hot paths look labels up
//! by value (a hash of the label set, or a map behind a lock) on every update, where here
//! the label set of a request is three array indexes known before it is answered.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Method, StatusCode};

use crate::problem::{DB_ERROR_KINDS, DbErrorKind};
use crate::routes::Route;

/// Routes by index, as the blocks are laid out.
const ROUTES: [Route; Route::ALL.len()] = Route::ALL;

/// The media type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `method` label values; anything else is `other`, so a client cannot add series.
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "other",
];

/// The index of `method` in [`METHODS`].
pub fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::OPTIONS => 5,
        Method::PATCH => 6,
        _ => 7,
    }
}

/// The status codes the server answers with, each with a slot of its own; any other code
/// is counted in a map behind a lock, which only such rare responses take.
const STATUSES: [u16; 18] = [
    200, 201, 204, 304, 400, 401, 403, 404, 405, 408, 409, 413, 415, 422, 431, 500, 501, 503,
];

fn status_slot(status: u16) -> Option<usize> {
    STATUSES.iter().position(|&known| known == status)
}

/// Upper bounds of the latency buckets, in seconds (the +Inf bucket follows): from half a
/// millisecond, what a cached read takes, to the database deadline's range.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// [`BUCKETS`] in nanoseconds, compared with each observation.
const BUCKET_NANOS: [u64; 14] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// One latency histogram: counts per bucket (not cumulative) and the sum in nanoseconds.
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let slot = BUCKET_NANOS
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(BUCKETS.len());
        add(&self.buckets[slot], 1);
        add(&self.sum_nanos, nanos);
    }
}

/// Counts one worker's requests; only that worker writes it.
pub struct WorkerMetrics {
    /// `[route][method][status slot]`.
    requests: [[[AtomicU64; STATUSES.len()]; METHODS.len()]; ROUTES.len()],
    /// Requests with a status outside [`STATUSES`], by (route, method, status).
    rare: Mutex<HashMap<(usize, usize, u16), u64>>,
    /// `[route][method]`.
    latency: [[Histogram; METHODS.len()]; ROUTES.len()],
    db_errors: [AtomicU64; DB_ERROR_KINDS.len()],
}

/// Adds to a counter. Only the block's worker writes it, so the cache line stays in that
/// core (an uncontended `lock xadd`); the scrape only reads.
fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl WorkerMetrics {
    fn new() -> Self {
        Self {
            requests: Default::default(),
            rare: Mutex::new(HashMap::new()),
            latency: Default::default(),
            db_errors: Default::default(),
        }
    }

    /// Counts one answered request.
    pub fn record(&self, route: Route, method: usize, status: StatusCode, elapsed: Duration) {
        let route = route as usize;
        let code = status.as_u16();
        match status_slot(code) {
            Some(slot) => add(&self.requests[route][method][slot], 1),
            None => {
                if let Ok(mut rare) = self.rare.lock() {
                    *rare.entry((route, method, code)).or_default() += 1;
                }
            }
        }
        self.latency[route][method].observe(elapsed);
    }

    /// Counts a response made of a database error.
    pub fn record_db_error(&self, kind: DbErrorKind) {
        add(&self.db_errors[kind as usize], 1);
    }
}

/// Every worker's metrics, summed at scrape time.
pub struct Registry {
    workers: Mutex<Vec<Arc<WorkerMetrics>>>,
    /// The counters of the store hubs the workers' apps use (one, as a server makes them).
    databases: Mutex<Vec<Arc<peregrine_store::DbCounters>>>,
}

/// The gauges the server keeps elsewhere, read at scrape time.
pub struct Gauges {
    /// Requests being answered.
    pub in_flight: usize,
    /// Open client connections.
    pub open_connections: usize,
}

impl Registry {
    pub fn new() -> Self {
        Self {
            workers: Mutex::new(Vec::new()),
            databases: Mutex::new(Vec::new()),
        }
    }

    /// A new worker's block.
    pub fn worker(&self) -> Arc<WorkerMetrics> {
        let block = Arc::new(WorkerMetrics::new());
        if let Ok(mut workers) = self.workers.lock() {
            workers.push(Arc::clone(&block));
        }
        block
    }

    /// Counts `counters` (a worker's store hub's) in the database figures, once.
    pub fn database(&self, counters: &Arc<peregrine_store::DbCounters>) {
        if let Ok(mut databases) = self.databases.lock()
            && !databases.iter().any(|known| Arc::ptr_eq(known, counters))
        {
            databases.push(Arc::clone(counters));
        }
    }

    /// The database figures summed over the store hubs of the workers.
    fn database_totals(&self) -> peregrine_store::DbStats {
        let mut total = peregrine_store::DbStats::default();
        if let Ok(databases) = self.databases.lock() {
            for counters in databases.iter() {
                total += counters.totals();
            }
        }
        total
    }

    /// The text exposition of every metric.
    pub fn render(&self, gauges: &Gauges) -> String {
        let workers = self
            .workers
            .lock()
            .map(|workers| workers.clone())
            .unwrap_or_default();
        let mut out = String::with_capacity(8192);
        render_requests(&mut out, &workers);
        render_latency(&mut out, &workers);
        render_gauges(&mut out, &workers, gauges);
        render_database(&mut out, &self.database_totals());
        out
    }
}

fn sum(workers: &[Arc<WorkerMetrics>], read: impl Fn(&WorkerMetrics) -> &AtomicU64) -> u64 {
    workers
        .iter()
        .map(|w| read(w).load(Ordering::Relaxed))
        .fold(0, u64::wrapping_add)
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn render_requests(out: &mut String, workers: &[Arc<WorkerMetrics>]) {
    const NAME: &str = "peregrine_http_requests_total";
    header(
        out,
        NAME,
        "counter",
        "HTTP requests answered, by route template, method and status.",
    );
    let mut rows: Vec<((usize, usize, u16), u64)> = Vec::new();
    for route in 0..ROUTES.len() {
        for method in 0..METHODS.len() {
            for (slot, &status) in STATUSES.iter().enumerate() {
                let count = sum(workers, |w| &w.requests[route][method][slot]);
                if count > 0 {
                    rows.push(((route, method, status), count));
                }
            }
        }
    }
    for worker in workers {
        if let Ok(rare) = worker.rare.lock() {
            rows.extend(rare.iter().map(|(key, count)| (*key, *count)));
        }
    }
    rows.sort_unstable_by_key(|(key, _)| *key);
    for ((route, method, status), count) in rows {
        let _ = writeln!(
            out,
            "{NAME}{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {count}",
            ROUTES[route].label(),
            METHODS[method]
        );
    }
}

fn render_latency(out: &mut String, workers: &[Arc<WorkerMetrics>]) {
    const NAME: &str = "peregrine_http_request_duration_seconds";
    header(
        out,
        NAME,
        "histogram",
        "Time from a request's head to its response's head, by route template and method.",
    );
    for (route, template) in ROUTES.iter().enumerate() {
        for (method, method_label) in METHODS.iter().enumerate() {
            let counts: Vec<u64> = (0..=BUCKETS.len())
                .map(|slot| sum(workers, |w| &w.latency[route][method].buckets[slot]))
                .collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let labels = format!("route=\"{}\",method=\"{method_label}\"", template.label());
            let mut cumulative = 0u64;
            for (slot, count) in counts.iter().enumerate() {
                cumulative += count;
                let bound = BUCKETS.get(slot).map_or("+Inf".into(), f64::to_string);
                let _ = writeln!(out, "{NAME}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
            }
            let nanos = sum(workers, |w| &w.latency[route][method].sum_nanos);
            let seconds = Duration::from_nanos(nanos).as_secs_f64();
            let _ = writeln!(out, "{NAME}_sum{{{labels}}} {seconds}");
            let _ = writeln!(out, "{NAME}_count{{{labels}}} {total}");
        }
    }
}

fn render_gauges(out: &mut String, workers: &[Arc<WorkerMetrics>], gauges: &Gauges) {
    let name = "peregrine_http_requests_in_flight";
    header(out, name, "gauge", "Requests being answered.");
    let _ = writeln!(out, "{name} {}", gauges.in_flight);
    let name = "peregrine_http_connections_open";
    header(out, name, "gauge", "Open client connections.");
    let _ = writeln!(out, "{name} {}", gauges.open_connections);
    let name = "peregrine_db_errors_total";
    header(
        out,
        name,
        "counter",
        "Responses made of a database error, by kind: unavailable and read_only are 503s, internal a 500.",
    );
    for (kind, label) in DB_ERROR_KINDS.iter().enumerate() {
        let count = sum(workers, |w| &w.db_errors[kind]);
        let _ = writeln!(out, "{name}{{kind=\"{label}\"}} {count}");
    }
    let name = "peregrine_build_info";
    header(out, name, "gauge", "Always 1; the version is a label.");
    let _ = writeln!(out, "{name}{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
}

/// A metric of one unlabelled sample: its header and its value.
fn single(out: &mut String, (name, kind): (&str, &str), help: &str, value: u64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// The PostgreSQL serving connections' figures (all zero on SQLite).
fn render_database(out: &mut String, stats: &peregrine_store::DbStats) {
    single(
        out,
        ("peregrine_db_queries_total", "counter"),
        "Queries sent to PostgreSQL on the serving connections.",
        stats.queries,
    );
    single(
        out,
        ("peregrine_db_queries_in_flight", "gauge"),
        "Queries sent to PostgreSQL and not answered yet.",
        stats.queries_in_flight,
    );
    single(
        out,
        ("peregrine_db_reconnects_total", "counter"),
        "Serving connections opened again after their previous one died or was given up as hung.",
        stats.reconnects,
    );
    let name = "peregrine_db_failures_total";
    header(
        out,
        name,
        "counter",
        "Failed database calls by kind: timeout, connect, connection_lost, server (an error PostgreSQL answered).",
    );
    for (kind, count) in peregrine_store::DbFailure::ALL.iter().zip(stats.failures) {
        let _ = writeln!(out, "{name}{{kind=\"{}\"}} {count}", kind.label());
    }
    let name = "peregrine_db_pipeline_depth";
    header(
        out,
        name,
        "histogram",
        "Queries in flight on a connection when a query is sent on it, that one included.",
    );
    let mut cumulative = 0;
    for (n, count) in stats.pipeline_depth.iter().enumerate() {
        cumulative += count;
        let bound = peregrine_store::PIPELINE_DEPTH_BUCKETS
            .get(n)
            .map_or_else(|| "+Inf".to_owned(), ToString::to_string);
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_sum {}", stats.pipeline_depth_sum);
    let _ = writeln!(out, "{name}_count {cumulative}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(500));
        histogram.observe(Duration::from_micros(501));
        histogram.observe(Duration::from_secs(11));
        let counts: Vec<u64> = histogram
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts[0], 1);
        assert_eq!(counts[1], 1);
        assert_eq!(counts[BUCKETS.len()], 1);
        assert_eq!(histogram.sum_nanos.load(Ordering::Relaxed), 11_001_001_000);
    }
}
