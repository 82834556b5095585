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

/// The media type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The route templates of the API, as the `route` label shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/users` and `/users/`.
    Users,
    /// `/users/{id}` and `/users/{id}/`.
    User,
    /// `/healthz`.
    Healthz,
    /// `/readyz`.
    Readyz,
    /// `/openapi.json`.
    OpenApi,
    /// `/metrics`, when served on the API's listener.
    Metrics,
    /// Any other path: no route answers it (404).
    Unmatched,
}

const ROUTES: [Route; 7] = [
    Route::Users,
    Route::User,
    Route::Healthz,
    Route::Readyz,
    Route::OpenApi,
    Route::Metrics,
    Route::Unmatched,
];

impl Route {
    /// The template of the route that answers `path`, as the router matches it (one
    /// optional trailing slash; `{id}` is any one non-empty segment).
    pub fn of(path: &str, metrics_here: bool) -> Self {
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        match trimmed {
            "/users" => Self::Users,
            "/healthz" if path == trimmed => Self::Healthz,
            "/readyz" if path == trimmed => Self::Readyz,
            "/openapi.json" if path == trimmed => Self::OpenApi,
            "/metrics" if path == trimmed && metrics_here => Self::Metrics,
            _ => match trimmed.strip_prefix("/users/") {
                Some(id) if !id.is_empty() && !id.contains('/') => Self::User,
                _ => Self::Unmatched,
            },
        }
    }

    /// The `route` label's value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Users => "/users",
            Self::User => "/users/{id}",
            Self::Healthz => "/healthz",
            Self::Readyz => "/readyz",
            Self::OpenApi => "/openapi.json",
            Self::Metrics => "/metrics",
            Self::Unmatched => "unmatched",
        }
    }
}

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

/// Kinds of database error a response was made of, as the `kind` label shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// The database did not answer in time or the connection failed (503).
    Unavailable,
    /// The database refused a write because it is read-only (503).
    ReadOnly,
    /// Any other failure (500).
    Internal,
}

const DB_ERROR_KINDS: [&str; 3] = ["unavailable", "read_only", "internal"];

impl DbErrorKind {
    /// Its name in metrics and logs.
    pub fn label(self) -> &'static str {
        DB_ERROR_KINDS[self as usize]
    }
}

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
    /// Request ids made so far by this worker.
    ids: AtomicU64,
    /// What this worker's request ids start with: the process's and the worker's.
    id_prefix: String,
}

/// Adds to a counter. Only the block's worker writes it, so the cache line stays in that
/// core (an uncontended `lock xadd`); the scrape only reads.
fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl WorkerMetrics {
    fn new(id_prefix: String) -> Self {
        Self {
            requests: Default::default(),
            rare: Mutex::new(HashMap::new()),
            latency: Default::default(),
            db_errors: Default::default(),
            ids: AtomicU64::new(0),
            id_prefix,
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

    /// A new request id, unique in this process: `PROCESS-WORKER-N`.
    pub fn next_request_id(&self) -> bytes::Bytes {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let mut id = bytes::BytesMut::with_capacity(self.id_prefix.len() + 20);
        id.extend_from_slice(self.id_prefix.as_bytes());
        id.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        id.freeze()
    }
}

/// Every worker's metrics, summed at scrape time.
pub struct Registry {
    workers: Mutex<Vec<Arc<WorkerMetrics>>>,
    /// The counters of the store hubs the workers' apps use (one, as a server makes them).
    databases: Mutex<Vec<Arc<peregrine_store::DbCounters>>>,
    /// The per-process part of request ids: random, so ids of two runs or of two instances
    /// behind one balancer do not repeat each other.
    process_id: String,
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
        let mut random = [0u8; 4];
        // Without randomness the ids are still unique within the process.
        let _ = getrandom::fill(&mut random);
        Self {
            workers: Mutex::new(Vec::new()),
            databases: Mutex::new(Vec::new()),
            process_id: random.iter().fold(String::new(), |mut hex, byte| {
                let _ = write!(hex, "{byte:02x}");
                hex
            }),
        }
    }

    /// A new worker's block.
    pub fn worker(&self) -> Arc<WorkerMetrics> {
        let Ok(mut workers) = self.workers.lock() else {
            return Arc::new(WorkerMetrics::new(format!("{}-x-", self.process_id)));
        };
        let block = Arc::new(WorkerMetrics::new(format!(
            "{}-{}-",
            self.process_id,
            workers.len()
        )));
        workers.push(Arc::clone(&block));
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

impl Registry {
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
    fn paths_map_to_the_routers_templates() {
        for (path, route) in [
            ("/users", Route::Users),
            ("/users/", Route::Users),
            ("/users/7", Route::User),
            ("/users/abc/", Route::User),
            ("/users/7/x", Route::Unmatched),
            ("/users//", Route::Unmatched),
            ("/healthz", Route::Healthz),
            ("/healthz/", Route::Unmatched),
            ("/readyz", Route::Readyz),
            ("/openapi.json", Route::OpenApi),
            ("/metrics", Route::Metrics),
            ("/", Route::Unmatched),
            ("/nope", Route::Unmatched),
        ] {
            assert_eq!(Route::of(path, true), route, "{path}");
        }
        assert_eq!(Route::of("/metrics", false), Route::Unmatched);
    }

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

    #[test]
    fn request_ids_are_unique_and_visible_ascii() {
        let registry = Registry::new();
        let (first, second) = (registry.worker(), registry.worker());
        let ids = [
            first.next_request_id(),
            first.next_request_id(),
            second.next_request_id(),
        ];
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[0], ids[2]);
        for id in ids {
            assert!(id.iter().all(|b| b.is_ascii_graphic()), "{id:?}");
        }
    }
}
