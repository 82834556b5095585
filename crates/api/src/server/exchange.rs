//! One request as the server sees it around the app's answer, whoever parsed it (the front
//! or hyper's path): counted in flight on its connection and its worker, given an id (the
//! client's or one its worker makes), recorded in the metrics and the access log once
//! answered; and the `Host` rule of RFC 9112, which both paths apply.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{HeaderValue, Request, Response, Version, header};

use super::admission::{Shared, Tracked};
use super::metrics::{self, WorkerMetrics};
use crate::problem::{DbErrorKind, Problem};
use crate::request_id::{self, WorkerIds, X_REQUEST_ID};
use crate::routes::Route;

/// What one worker's requests count into: its in-flight counter, its block of metrics and
/// its request ids (each worker has its own, so that workers never contend for them).
pub(super) struct Worker {
    in_flight: Arc<AtomicUsize>,
    metrics: Arc<WorkerMetrics>,
    ids: WorkerIds,
}

impl Worker {
    /// A new worker's share (made on the worker's thread).
    pub(super) fn new(shared: &Shared) -> Arc<Self> {
        Arc::new(Self {
            in_flight: shared.worker_counter(),
            metrics: shared.metrics.worker(),
            ids: shared.ids.worker(),
        })
    }
}

/// Counts a request in flight (on its connection and its worker) while it lives.
struct InFlight {
    tracked: Arc<Tracked>,
    worker: Arc<Worker>,
}

impl InFlight {
    fn enter(worker: &Arc<Worker>, tracked: Arc<Tracked>) -> Self {
        tracked.busy.fetch_add(1, Ordering::Relaxed);
        worker.in_flight.fetch_add(1, Ordering::Relaxed);
        Self {
            tracked,
            worker: Arc::clone(worker),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.tracked.busy.fetch_sub(1, Ordering::Relaxed);
        self.worker.in_flight.fetch_sub(1, Ordering::Relaxed);
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
        worker: &Arc<Worker>,
        tracked: Arc<Tracked>,
        route: Route,
        method: usize,
        client_id: Option<&HeaderValue>,
    ) -> Self {
        let started = std::time::Instant::now();
        let id = request_id::accepted(client_id).unwrap_or_else(|| worker.ids.next());
        Self {
            started,
            in_flight: InFlight::enter(worker, tracked),
            route,
            method,
            id,
        }
    }

    pub(super) fn shared(&self) -> &Shared {
        &self.in_flight.tracked.shared
    }

    /// Runs `answer` as this request's: its id current (for problem bodies, and for the
    /// span the logging gives any line logged meanwhile).
    pub(super) async fn run<F: Future>(&self, answer: F) -> F::Output {
        request_id::scope(self.id.clone(), answer).await
    }

    /// Runs `make` as this request's (see [`Exchange::run`]).
    pub(super) fn run_now<R>(&self, make: impl FnOnce() -> R) -> R {
        request_id::sync_scope(self.id.clone(), make)
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
        let worker = &self.in_flight.worker.metrics;
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
/// any request with more than one. What is wrong with a request of `hosts` such headers,
/// if anything (the front, which takes only HTTP/1.1, leaves any such request to hyper's
/// path, which answers it with [`host_problem`]).
pub(super) fn host_rule(hosts: usize, http_11: bool) -> Option<&'static str> {
    match hosts {
        0 if http_11 => Some("an HTTP/1.1 request must have a Host header"),
        2.. => Some("a request must not have more than one Host header"),
        _ => None,
    }
}

/// The 400 a request that breaks the `Host` rule ([`host_rule`]) gets.
pub(super) fn host_problem<B>(request: &Request<B>) -> Option<Problem> {
    let hosts = request.headers().get_all(header::HOST).iter().count();
    let detail = host_rule(hosts, request.version() == Version::HTTP_11)?;
    // What else the client sends on this connection cannot be trusted either.
    Some(
        Problem::bad_request(detail)
            .with_header(header::CONNECTION, HeaderValue::from_static("close")),
    )
}
