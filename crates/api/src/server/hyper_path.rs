//! hyper's path: a connection the front handed over (at its first request that is not a
//! plain read) is served by hyper's HTTP/1.1 connection and the router from then on, with
//! every rule and limit they enforce. The bytes the front read come first ([`Rewind`]), a
//! request body is watched for the client's limits, and hyper's own bare 4xx answers get a
//! problem+json body (see `bare_errors`).

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{Method, Request, Response, header};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::admission::{Tracked, WatchedBody};
use super::bare_errors::WithProblemBodies;
use super::exchange::{Exchange, Worker, host_problem};
use super::metrics;
use super::metrics_endpoint::exposition;
use crate::app::App;
use crate::compression;
use crate::json_body::BodyDeadline;
use crate::plain_read::PlainRead;
use crate::problem::Problem;
use crate::request_id::X_REQUEST_ID;
use crate::routes::Route;
use crate::state::AppState;

/// What answers a worker's requests: the router, what the plain reads need, and what the
/// worker counts them into.
#[derive(Clone)]
pub(super) struct Handlers {
    router: TowerToHyperService<axum::Router>,
    pub(super) plain_reads: Option<AppState>,
    pub(super) worker: Arc<Worker>,
}

impl Handlers {
    pub(super) fn new(app: App, worker: Arc<Worker>) -> Self {
        Self {
            router: TowerToHyperService::new(app.router),
            plain_reads: app.plain_reads,
            worker,
        }
    }

    /// Handlers that send every request through `router`.
    #[cfg(test)]
    pub(super) fn without_plain_reads(router: axum::Router, worker: Arc<Worker>) -> Self {
        Self {
            router: TowerToHyperService::new(router),
            plain_reads: None,
            worker,
        }
    }
}

/// Serves the rest of a connection with hyper and the router, starting with the bytes
/// `carried` (read by the front and not answered there).
pub(super) async fn serve(
    http: http1::Builder,
    carried: Vec<u8>,
    tcp: TcpStream,
    handlers: Handlers,
    tracked: Arc<Tracked>,
) {
    let rewind = Rewind::new(carried, tcp, Arc::clone(&tracked));
    let io = TokioIo::new(WithProblemBodies::new(rewind));
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
        () = tracked.closed() => {}
        () = tracked.aborted() => return,
    }
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        _ = connection => {}
        () = tracked.aborted() => {}
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
    let exchange = Exchange::begin(
        &handlers.worker,
        tracked,
        route,
        method,
        request.headers().get(X_REQUEST_ID),
    );
    let shared = exchange.shared();
    if has_body {
        let deadline = Instant::now() + shared.limits.body_timeout;
        request.extensions_mut().insert(BodyDeadline(deadline));
    }
    if route == Route::Readyz {
        request.extensions_mut().insert(shared.draining.clone());
    }
    let early = host_problem(&request)
        .map(|problem| exchange.run_now(|| problem.into_response()))
        .or_else(|| {
            (route == Route::Metrics)
                .then(|| exchange.run_now(|| exposition(request.method(), shared)))
        });
    let plain = match (&early, &handlers.plain_reads) {
        (None, Some(state)) if request.method() == Method::GET && !has_body => {
            let uri = request.uri();
            PlainRead::of(uri.path(), uri.query(), route, state.settings.max_page_size)
                // Boxed once here rather than moved, at its full size, into each wrapper below.
                .map(|read| {
                    Box::pin(read.answer(state.clone(), compression::accept_encoding(&request)))
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

/// A connection handed to hyper: the bytes the front read and did not answer come first.
/// What hyper could not write counts against the process's total of unsent bytes while it
/// waits (hyper holds it: at most one answer being written and one made).
struct Rewind {
    carried: Vec<u8>,
    at: usize,
    tcp: TcpStream,
    tracked: Arc<Tracked>,
}

impl Rewind {
    fn new(carried: Vec<u8>, tcp: TcpStream, tracked: Arc<Tracked>) -> Self {
        Self {
            carried,
            at: 0,
            tcp,
            tracked,
        }
    }

    /// Counts `waiting` bytes as unsent while a write is pending.
    fn note(&self, polled: Poll<io::Result<usize>>, waiting: usize) -> Poll<io::Result<usize>> {
        match &polled {
            Poll::Pending => self.tracked.set_unsent(waiting, false),
            Poll::Ready(_) => self.tracked.set_unsent(0, false),
        }
        polled
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let left = this.carried.get(this.at..).unwrap_or_default();
        if left.is_empty() {
            return Pin::new(&mut this.tcp).poll_read(cx, buf);
        }
        let n = left.len().min(buf.remaining());
        buf.put_slice(&left[..n]);
        this.at += n;
        if this.at == this.carried.len() {
            this.carried = Vec::new();
            this.at = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.note(polled, buf.len())
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.note(polled, bufs.iter().map(|buf| buf.len()).sum())
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}
