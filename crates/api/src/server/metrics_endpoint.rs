//! `/metrics` on a listener of its own (`metrics_bind`), so that the API's public address
//! need not show it: only `GET /metrics` is answered there, until the server stops.

use std::convert::Infallible;
use std::sync::Arc;

use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::admission::Shared;
use super::metrics::CONTENT_TYPE;
use super::{Control, pause_after_accept_error, until_true};
use crate::problem::Problem;

/// Most connections open at once on this listener: scrapers are few, and its descriptors
/// come out of the ones the serving limit leaves free, so a flood here cannot starve the
/// API's listener (past this, new connections are closed at once).
pub const MAX_SCRAPE_CONNECTIONS: usize = 8;

/// Accepts scrapes until the server stops.
pub(super) async fn serve(listener: TcpListener, mut control: Control) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(control.shared.limits.idle_timeout)
        .max_header_size(control.shared.limits.max_head_bytes);
    let slots = Arc::new(Semaphore::new(MAX_SCRAPE_CONNECTIONS));
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(err) => {
                    pause_after_accept_error(&err).await;
                    continue;
                }
            },
            () = until_true(&mut control.stopped) => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let shared = Arc::clone(&control.shared);
        let service = hyper::service::service_fn(move |request| {
            std::future::ready(Ok::<_, Infallible>(scrape(&request, &shared)))
        });
        let connection = http.serve_connection(TokioIo::new(tcp), service);
        let mut stopped = control.stopped.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = connection => {}
                () = until_true(&mut stopped) => {}
            }
            drop(slot);
        });
    }
}

/// The exposition for `GET /metrics`, a problem for anything else.
fn scrape<B>(request: &Request<B>, shared: &Shared) -> Response<axum::body::Body> {
    if request.uri().path() != "/metrics" {
        return Problem::not_found("only /metrics is served here").into_response();
    }
    exposition(request.method(), shared)
}

/// What `/metrics` answers `method`: the exposition for GET and HEAD, else 405.
pub(super) fn exposition(method: &Method, shared: &Shared) -> Response<axum::body::Body> {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            .with_header(header::ALLOW, HeaderValue::from_static("GET,HEAD"))
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        shared.render_metrics(),
    )
        .into_response()
}
