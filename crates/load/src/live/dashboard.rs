//! The live web dashboard: one self-contained page (`/`, no external resources) updated each
//! second over server-sent events (`/events`), Prometheus metrics (`/metrics`), the current
//! state as JSON (`/snapshot.json`) and, once the run has ended, its HTML report
//! (`/report.html`). Every event stream ends after the run's verdict, so open pages never
//! keep the process alive.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use serde_json::json;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::board::Board;
use super::metrics;

/// The page, written for this dashboard: HTML, CSS and a small canvas chart script.
const PAGE: &str = include_str!("page.html");
/// How long closing waits for open connections before dropping them.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A running dashboard server.
pub struct Dashboard {
    address: SocketAddr,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

impl Dashboard {
    /// Binds `address` and serves `board` on it.
    pub async fn start(board: Arc<Board>, address: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let router = Router::new()
            .route("/", get(page))
            .route("/events", get(events))
            .route("/metrics", get(metrics_text))
            .route("/snapshot.json", get(snapshot))
            .route("/report.html", get(report))
            .with_state(board);
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(err) = served {
                tracing::warn!(error = %err, "the dashboard stopped serving");
            }
        });
        Ok(Self {
            address,
            shutdown,
            server,
        })
    }

    /// The address it listens on (with the real port when 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops serving: lets answers in progress finish for a moment, then drops them.
    pub async fn close(self) {
        let _ = self.shutdown.send(());
        let mut server = self.server;
        if tokio::time::timeout(CLOSE_GRACE, &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
    }
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn metrics_text(State(board): State<Arc<Board>>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(&board),
    )
        .into_response()
}

async fn snapshot(State(board): State<Arc<Board>>) -> Response {
    let body = state_json(&board, true);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn report(State(board): State<Arc<Board>>) -> Response {
    match board.report_html() {
        Some(html) => Html(html.to_string()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "the report is made when the run ends\n",
        )
            .into_response(),
    }
}

/// The state as JSON: meta, the current figures, the verdict once there is one, and the
/// history when `with_history`.
fn state_json(board: &Board, with_history: bool) -> String {
    let snapshot = board.snapshot();
    let mut value = json!({
        "meta": board.meta(),
        "now": snapshot.now(),
        "end": snapshot.end(),
    });
    if with_history {
        value["history"] = json!(snapshot.history());
    }
    value.to_string()
}

/// Where an event stream is.
enum Phase {
    Hello(Arc<Board>, watch::Receiver<u64>),
    Ticks(Arc<Board>, watch::Receiver<u64>),
    Done,
}

/// `hello` (everything so far), then `tick` each second, then `end` with the verdict.
async fn events(
    State(board): State<Arc<Board>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let changes = board.subscribe();
    let stream = futures_util::stream::unfold(Phase::Hello(board, changes), |phase| async move {
        let (board, mut changes, name, with_history) = match phase {
            Phase::Done => return None,
            Phase::Hello(board, mut changes) => {
                changes.mark_unchanged();
                (board, changes, "hello", true)
            }
            Phase::Ticks(board, mut changes) => {
                changes.changed().await.ok()?;
                (board, changes, "tick", false)
            }
        };
        let ended = board.snapshot().end().is_some();
        let name = if ended { "end" } else { name };
        let event = Event::default()
            .event(name)
            .data(state_json(&board, with_history));
        let next = if ended {
            Phase::Done
        } else {
            changes.mark_unchanged();
            Phase::Ticks(board, changes)
        };
        Some((Ok(event), next))
    });
    Sse::new(stream)
}
