//! One connection's life under the process's limits: admitted or shed (see `admission`),
//! its requests counted (for idle shedding and for the shutdown's tally), readiness and
//! `Connection: close` while draining, the body deadline and the `Host` rule of RFC 9112.
//!
//! Over 600 lines with its tests: what a connection is to the limits ([`Tracked`]) and what
//! a request is to the server ([`Exchange`]) are used by both the front and hyper's path.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderValue, Method, Request, Response, Version, header};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::admission::{Client, Registry as Connections, WatchedBody};
use super::bare_errors::WithProblemBodies;
use super::front;
use super::metrics::{self, DbErrorKind, Gauges, Registry, Route, WorkerMetrics};
use super::metrics_endpoint::exposition;
use crate::AppState;
use crate::json_body::{BodyDeadline, DEFAULT_BODY_TIMEOUT};
use crate::plain_read::{self, PlainRead};
use crate::problem::Problem;
use crate::request_id::{self, X_REQUEST_ID};

/// Connections per process unless configured otherwise: well under the usual open-file
/// limits, so that the database's sockets and the logs always find a descriptor.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Largest request head (request line and headers) unless configured otherwise.
pub const DEFAULT_MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long a connection may wait to send a request head unless configured otherwise.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Open connections per client address unless configured otherwise: a quarter of the
/// process's, so that one address cannot take every slot.
pub const DEFAULT_MAX_CLIENT_CONNECTIONS: usize = DEFAULT_MAX_CONNECTIONS / 4;
/// Request bodies being received at once per client address unless configured otherwise.
pub const DEFAULT_MAX_CLIENT_BODIES: usize = 64;
/// Bytes of answers waiting for clients that do not read them, in total, unless configured
/// otherwise.
pub const DEFAULT_MAX_UNSENT_BYTES: usize = 64 * 1024 * 1024;
/// How often idle connections are looked for, at least and at most (an eighth of the
/// idle timeout in between).
const SWEEP_MIN: Duration = Duration::from_millis(10);
const SWEEP_MAX: Duration = Duration::from_secs(1);

/// What a client may take of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections per process; past it the oldest idle connection is closed to make
    /// room, or the new one when none is idle.
    pub max_connections: usize,
    /// Largest request head in bytes; larger ones get 431.
    pub max_head_bytes: usize,
    /// How long a connection may take to send a request head, counted from its previous
    /// response (idle keep-alive) or from its opening.
    pub idle_timeout: Duration,
    /// How long a client may take to send a request body once its head arrived (408 past).
    pub body_timeout: Duration,
    /// Open connections per client address; past it that address's oldest idle connection
    /// is closed to make room, else the one that has been sending its body longest, else
    /// the new one.
    pub max_client_connections: usize,
    /// Request bodies one client address may be sending at once; past it the one of them
    /// that has been sending longest is closed.
    pub max_client_bodies: usize,
    /// Bytes of answers written and waiting for their clients to read them, in total; past
    /// it the connections that have not read for longest are closed.
    pub max_unsent_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_client_connections: DEFAULT_MAX_CLIENT_CONNECTIONS,
            max_client_bodies: DEFAULT_MAX_CLIENT_BODIES,
            max_unsent_bytes: DEFAULT_MAX_UNSENT_BYTES,
        }
    }
}

/// Set once the shutdown starts: `/readyz` reads it from its request's extensions.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// Whether the server is shutting down.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub(super) fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What the connections of every worker share.
pub(super) struct Shared {
    pub(super) limits: Limits,
    pub(super) draining: Draining,
    pub(super) metrics: Registry,
    /// Whether `/metrics` is answered on the API's listeners.
    metrics_here: bool,
    /// Whether every request gets an access log line.
    access_log: bool,
    pub(super) open: AtomicUsize,
    /// Listeners still open: the shutdown counts the connections left once every worker
    /// has taken the last ones its listener had and closed it.
    pub(super) listening: AtomicUsize,
    /// Bytes of answers waiting for their clients to read them (see
    /// [`Tracked::set_unsent`]); may dip below 0 for an instant.
    pub(super) unsent: AtomicI64,
    /// Requests in flight, one counter per worker so that workers do not contend for one
    /// cache line on every request.
    in_flight: Mutex<Vec<Arc<AtomicUsize>>>,
    /// Every open connection, oldest first (entries of closed ones are pruned lazily), and
    /// every client address with open connections.
    pub(super) registry: Mutex<Connections>,
    /// Set (under the registry's lock) once every connection was told to close: a worker
    /// that accepts one more before it sees the listeners close must close that one too,
    /// or it would hold the shutdown until the timeout.
    pub(super) all_closed: AtomicBool,
    /// Where the idle stamps of [`Tracked`] count from.
    epoch: std::time::Instant,
}

/// One open connection as the limits see it, and what its requests need to reach.
pub(super) struct Tracked {
    pub(super) shared: Arc<Shared>,
    /// Its client address's counters.
    pub(super) client: Arc<Client>,
    /// The in-flight counter of the connection's worker.
    worker_in_flight: Arc<AtomicUsize>,
    /// The metrics of the connection's worker.
    worker_metrics: Arc<WorkerMetrics>,
    /// Requests being answered on it.
    pub(super) busy: AtomicUsize,
    /// Told to close (shed, or the shutdown).
    pub(super) closing: AtomicBool,
    close: Notify,
    /// Told to close at once, whatever it is doing (shed while it holds a slot or memory
    /// that others need).
    pub(super) aborted: AtomicBool,
    abort: Notify,
    /// While it receives a request body: since when (milliseconds since [`Shared::epoch`]
    /// plus one); 0 otherwise.
    pub(super) body_since: AtomicU64,
    /// Bytes of answers it holds that its client has not read yet.
    pub(super) unsent: AtomicUsize,
    /// While it holds such bytes: since its client last read (as `body_since`).
    pub(super) stalled_since: AtomicU64,
    /// While the front waits for a request: when it began to wait, in milliseconds since
    /// [`Shared::epoch`] plus one; 0 when it is not waiting (busy, or served by hyper,
    /// which keeps its own header-read timer).
    idle_since: AtomicU64,
}

impl Shared {
    pub(super) fn new(limits: Limits, metrics_here: bool, access_log: bool) -> Arc<Self> {
        Arc::new(Self {
            limits,
            draining: Draining::default(),
            metrics: Registry::new(),
            metrics_here,
            access_log,
            open: AtomicUsize::new(0),
            listening: AtomicUsize::new(0),
            unsent: AtomicI64::new(0),
            in_flight: Mutex::new(Vec::new()),
            registry: Mutex::new(Connections::default()),
            all_closed: AtomicBool::new(false),
            epoch: std::time::Instant::now(),
        })
    }

    pub(super) fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Every metric in the text exposition format.
    pub(super) fn render_metrics(&self) -> String {
        self.metrics.render(&Gauges {
            in_flight: self.in_flight(),
            open_connections: self.open_connections(),
        })
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.lock().map_or(0, |counters| {
            counters.iter().map(|c| c.load(Ordering::Relaxed)).sum()
        })
    }

    /// A new worker's in-flight counter (allocated on the worker's thread).
    pub(super) fn worker_counter(&self) -> Arc<AtomicUsize> {
        let counter = Arc::new(AtomicUsize::new(0));
        if let Ok(mut counters) = self.in_flight.lock() {
            counters.push(Arc::clone(&counter));
        }
        counter
    }

    pub(super) fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Closes the connections whose front has waited for a request longer than the idle
    /// timeout, every `tick` until the listeners close. One sweep for all connections
    /// rather than a timer per request: a request that comes in time costs nothing.
    pub(super) async fn sweep_idle(self: Arc<Self>, mut closing: watch::Receiver<bool>) {
        let timeout = u64::try_from(self.limits.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let tick = (self.limits.idle_timeout / 8).clamp(SWEEP_MIN, SWEEP_MAX);
        let mut ticks = tokio::time::interval(tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = closing.wait_for(|closed| *closed) => return,
            }
            let now = self.millis() + 1;
            let Ok(mut registry) = self.registry.lock() else {
                return;
            };
            registry.prune();
            for connection in registry.live() {
                let since = connection.idle_since.load(Ordering::Relaxed);
                if since != 0 && now.saturating_sub(since) >= timeout {
                    connection.shut();
                }
            }
        }
    }

    /// Tells every open connection to close once its in-flight request is answered.
    pub(super) fn close_all_connections(&self) {
        if let Ok(registry) = self.registry.lock() {
            self.all_closed.store(true, Ordering::Relaxed);
            registry.live().for_each(|c| c.shut());
        }
    }
}

impl Tracked {
    pub(super) fn new(
        shared: &Arc<Shared>,
        client: Arc<Client>,
        worker_in_flight: &Arc<AtomicUsize>,
        worker_metrics: &Arc<WorkerMetrics>,
    ) -> Self {
        Self {
            shared: Arc::clone(shared),
            client,
            worker_in_flight: Arc::clone(worker_in_flight),
            worker_metrics: Arc::clone(worker_metrics),
            busy: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            close: Notify::new(),
            aborted: AtomicBool::new(false),
            abort: Notify::new(),
            body_since: AtomicU64::new(0),
            unsent: AtomicUsize::new(0),
            stalled_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
        }
    }

    /// Tells the connection to close once its in-flight request is answered.
    pub(super) fn shut(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.close.notify_one();
    }

    /// Tells the connection to close at once, dropping what it holds; what it held no
    /// longer counts against the process's total of unsent bytes from now on.
    pub(super) fn abort(&self) {
        self.aborted.store(true, Ordering::Relaxed);
        self.release_unsent();
        self.shut();
        self.abort.notify_one();
    }

    /// Whether the connection was told to close at once.
    pub(super) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Relaxed)
    }

    /// Waits until the connection was told to close at once.
    pub(super) async fn aborted(&self) {
        self.abort.notified().await;
    }

    /// Whether the connection was told to close.
    pub(super) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Waits until the connection was told to close.
    pub(super) async fn closed(&self) {
        self.close.notified().await;
    }

    /// Notes that the front starts (`true`) or stops waiting for a request.
    pub(super) fn set_idle(&self, idle: bool) {
        let stamp = match idle {
            true => self.shared.millis() + 1,
            false => 0,
        };
        self.idle_since.store(stamp, Ordering::Relaxed);
    }

    pub(super) fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// Whether `/metrics` is answered on the API's listeners.
    pub(super) fn metrics_here(&self) -> bool {
        self.shared.metrics_here
    }
}

/// What answers a worker's requests: the router, and what the plain reads need.
#[derive(Clone)]
pub(super) struct Handlers {
    router: TowerToHyperService<axum::Router>,
    plain_reads: Option<AppState>,
}

impl Handlers {
    pub(super) fn new(app: crate::App) -> Self {
        Self {
            router: TowerToHyperService::new(app.router),
            plain_reads: app.plain_reads,
        }
    }
}

/// Serves one connection until it closes, or until it is told to close, then gracefully
/// (an in-flight request is answered first). The front answers plain reads; the first
/// request of any other kind hands the connection to hyper for the rest of its life.
pub(super) async fn serve_connection(
    http: http1::Builder,
    mut tcp: TcpStream,
    handlers: Handlers,
    tracked: Arc<Tracked>,
) {
    let _open = OpenConnection(Arc::clone(&tracked));
    let carried = match &handlers.plain_reads {
        Some(state) => match front::serve(&mut tcp, state, &tracked).await {
            front::Ended::Closed => return,
            front::Ended::HandOff(carried) => carried,
        },
        None => Vec::new(),
    };
    let rewind = front::Rewind::new(carried, tcp, Arc::clone(&tracked));
    let io = TokioIo::new(WithProblemBodies::new(rewind));
    // Boxed: a connection the front serves does not carry hyper's state while it idles.
    Box::pin(with_hyper(http, io, handlers, tracked)).await;
}

/// Serves the rest of a connection with hyper and the router.
async fn with_hyper(
    http: http1::Builder,
    io: TokioIo<WithProblemBodies<front::Rewind>>,
    handlers: Handlers,
    tracked: Arc<Tracked>,
) {
    let service = {
        let tracked = Arc::clone(&tracked);
        hyper::service::service_fn(move |request| answer(request, &handlers, Arc::clone(&tracked)))
    };
    let connection = http.serve_connection(io, service);
    tokio::pin!(connection);
    // A client that goes away mid-request is the client's business: errors are ignored.
    // An aborted connection is dropped, which closes its socket and drops its request.
    tokio::select! {
        _ = connection.as_mut() => return,
        () = tracked.close.notified() => {}
        () = tracked.aborted() => return,
    }
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        _ = connection => {}
        () = tracked.aborted() => {}
    }
}

/// Counts the connection open (in the process and for its client) while it lives.
struct OpenConnection(Arc<Tracked>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let tracked = &self.0;
        tracked.release_unsent();
        tracked.client.connections.fetch_sub(1, Ordering::Relaxed);
        tracked.shared.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a request in flight (on its connection and its worker) while it lives.
struct InFlight(Arc<Tracked>);

impl InFlight {
    fn enter(tracked: Arc<Tracked>) -> Self {
        tracked.busy.fetch_add(1, Ordering::Relaxed);
        tracked.worker_in_flight.fetch_add(1, Ordering::Relaxed);
        Self(tracked)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.worker_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One request as the server sees it around the app's answer, whoever parsed it (hyper or
/// the front): counted in flight, given an id (the client's or a new one, current while
/// it is answered), then recorded in the metrics and the access log.
pub(super) struct Exchange {
    started: std::time::Instant,
    in_flight: InFlight,
    route: Route,
    method: usize,
    id: HeaderValue,
}

impl Exchange {
    /// Begins a request of `route` with `method` (an index of [`metrics::METHODS`]) and
    /// the client's `X-Request-Id`, if it sent one.
    pub(super) fn begin(
        tracked: Arc<Tracked>,
        route: Route,
        method: usize,
        client_id: Option<&HeaderValue>,
    ) -> Self {
        let started = std::time::Instant::now();
        let id = request_id::accepted(client_id).unwrap_or_else(|| {
            HeaderValue::from_maybe_shared(tracked.worker_metrics.next_request_id())
                .unwrap_or(HeaderValue::from_static("-"))
        });
        Self {
            started,
            in_flight: InFlight::enter(tracked),
            route,
            method,
            id,
        }
    }

    fn shared(&self) -> &Shared {
        &self.in_flight.0.shared
    }

    /// Runs `answer` as this request's: its id current (for problem bodies, and for the
    /// span the logging gives any line logged meanwhile).
    pub(super) async fn run<F: Future>(&self, answer: F) -> F::Output {
        request_id::scope(self.id.clone(), answer).await
    }

    /// Adds what only the server knows to `response` (its id; `Connection: close` while
    /// draining) and records it.
    pub(super) fn finish(self, response: &mut Response<axum::body::Body>) {
        let draining = self.draining();
        let db_error = response.extensions().get::<DbErrorKind>().copied();
        let id = self.record(response.status(), db_error);
        let headers = response.headers_mut();
        if draining {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        headers.insert(X_REQUEST_ID, id);
    }

    /// Whether the server is shutting down (answers then say `Connection: close`).
    pub(super) fn draining(&self) -> bool {
        self.shared().draining.is_draining()
    }

    /// Records the request as answered with `status` (and `db_error`, if the database
    /// failed it); returns its id, for the answer.
    pub(super) fn record(
        self,
        status: axum::http::StatusCode,
        db_error: Option<DbErrorKind>,
    ) -> HeaderValue {
        let elapsed = self.started.elapsed();
        let worker = &self.in_flight.0.worker_metrics;
        worker.record(self.route, self.method, status, elapsed);
        if let Some(kind) = db_error {
            worker.record_db_error(kind);
        }
        if self.shared().access_log {
            request_id::sync_scope(self.id.clone(), || {
                access_log(self.route, self.method, status, elapsed, db_error);
            });
        }
        self.id
    }
}

/// Answers one request hyper parsed through the app, with what only the server knows
/// added (see [`Exchange`]), and `/metrics` itself.
fn answer(
    request: Request<Incoming>,
    handlers: &Handlers,
    tracked: Arc<Tracked>,
) -> impl Future<Output = Result<Response<axum::body::Body>, Infallible>> + use<> {
    let route = Route::of(request.uri().path(), tracked.shared.metrics_here);
    let method = metrics::method_index(request.method());
    let has_body = has_body(&request);
    let watched = has_body.then(|| Arc::clone(&tracked));
    let mut request = request.map(|body| WatchedBody::new(body, watched));
    let exchange = Exchange::begin(tracked, route, method, request.headers().get(X_REQUEST_ID));
    let shared = exchange.shared();
    if has_body {
        let deadline = Instant::now() + shared.limits.body_timeout;
        request.extensions_mut().insert(BodyDeadline(deadline));
    }
    if route == Route::Readyz {
        request.extensions_mut().insert(shared.draining.clone());
    }
    let early = host_problem(&request)
        .map(|problem| request_id::sync_scope(exchange.id.clone(), || problem.into_response()))
        .or_else(|| {
            (route == Route::Metrics).then(|| {
                request_id::sync_scope(exchange.id.clone(), || exposition(request.method(), shared))
            })
        });
    let plain = match (&early, &handlers.plain_reads) {
        (None, Some(state)) if request.method() == Method::GET && !has_body => {
            let uri = request.uri();
            PlainRead::of(uri.path(), uri.query(), route, state.settings.max_page_size)
                // Boxed once here rather than moved, at its full size, into each wrapper below.
                .map(|read| {
                    Box::pin(read.answer(state.clone(), plain_read::accept_encoding(&request)))
                })
        }
        _ => None,
    };
    let call = (early.is_none() && plain.is_none())
        .then(|| hyper::service::Service::call(&handlers.router, request));
    async move {
        let mut response = match (early, plain, call) {
            (Some(response), _, _) => response,
            (None, Some(plain), _) => exchange.run(plain).await,
            (None, None, Some(call)) => exchange.run(call).await?,
            (None, None, None) => Problem::bad_request("bad request").into_response(),
        };
        exchange.finish(&mut response);
        Ok(response)
    }
}

/// One access log line: no user data beyond the route's template; a database failure's
/// kind when the database failed the request (the warning about it is summarised, see
/// `repeats`).
fn access_log(
    route: Route,
    method: usize,
    status: axum::http::StatusCode,
    elapsed: Duration,
    db_error: Option<DbErrorKind>,
) {
    // Whole microseconds print as short decimals (0.836, not 0.8364940000000001).
    let duration_ms = elapsed.as_micros() as f64 / 1000.0;
    let (method, route, status) = (metrics::METHODS[method], route.label(), status.as_u16());
    match db_error {
        None => tracing::info!(
            target: "peregrine::access",
            method, route, status, duration_ms, "answered"
        ),
        Some(kind) => tracing::info!(
            target: "peregrine::access",
            method, route, status, duration_ms, db_error = kind.label(), "answered"
        ),
    }
}

/// RFC 9112 §3.2: an HTTP/1.1 request without exactly one `Host` header is a 400; so is
/// any request with more than one.
fn host_problem<B>(request: &Request<B>) -> Option<Problem> {
    let hosts = request.headers().get_all(header::HOST).iter().count();
    let needs_one = request.version() == Version::HTTP_11;
    let detail = match hosts {
        0 if needs_one => "an HTTP/1.1 request must have a Host header",
        2.. => "a request must not have more than one Host header",
        _ => return None,
    };
    // What else the client sends on this connection cannot be trusted either.
    Some(
        Problem::bad_request(detail)
            .with_header(header::CONNECTION, HeaderValue::from_static("close")),
    )
}

/// Whether the request says a body follows.
fn has_body<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0")
        || matches!(
            *request.method(),
            Method::POST | Method::PUT | Method::PATCH
        )
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn a_connection_admitted_after_everything_was_closed_is_closed_at_once() {
        let shared = Shared::new(Limits::default(), true, false);
        let in_flight = shared.worker_counter();
        let metrics = shared.metrics.worker();
        let peer = IpAddr::from([127, 0, 0, 1]);
        let before = shared.admit(peer, &in_flight, &metrics);
        assert!(before.is_some_and(|c| !c.closing.load(Ordering::Relaxed)));
        shared.close_all_connections();
        let late = shared.admit(peer, &in_flight, &metrics);
        assert!(
            late.is_some_and(|c| c.closing.load(Ordering::Relaxed)),
            "a connection taken after the close must be told to close too"
        );
    }

    /// An idle connection costs its task's future (and the socket): what is large (the
    /// answer, hyper's connection) is boxed when needed, so that 10,000 idle connections
    /// stay within a few MiB.
    #[tokio::test]
    async fn a_connections_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await;
        let (tcp, _) = listener.accept().await.unwrap();
        let shared = Shared::new(Limits::default(), true, false);
        let tracked = shared
            .admit(
                IpAddr::from([127, 0, 0, 1]),
                &shared.worker_counter(),
                &shared.metrics.worker(),
            )
            .unwrap();
        let handlers = Handlers {
            router: TowerToHyperService::new(axum::Router::new()),
            plain_reads: None,
        };
        let connection = serve_connection(http1::Builder::new(), tcp, handlers, tracked);
        let size = std::mem::size_of_val(&connection);
        assert!(size <= 1024, "a connection's future takes {size} bytes");
        drop(client);
    }
}
