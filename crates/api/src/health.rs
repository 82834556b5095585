//! Liveness and readiness probes. Readiness has hysteresis: after a failed check it stays
//! 503 until the database has answered for [`READY_AFTER`] with no check failing on any
//! worker, so that a load balancer polling it right after an outage does not see it flap
//! (200, 503, 503, 200) while the workers' connections come back one by one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json};
use serde::Serialize;

use crate::problem::{Problem, ProblemBody};
use crate::{AppState, Draining, Router};

/// `/healthz` and `/readyz`.
pub fn router() -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// How long after the last failed readiness check `/readyz` says 503 although the
/// database answers.
pub const READY_AFTER: Duration = Duration::from_secs(1);

/// When a readiness check last failed, shared by every worker's app.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<(Instant, AtomicU64)>);

impl Default for Readiness {
    fn default() -> Self {
        Self(Arc::new((Instant::now(), AtomicU64::new(0))))
    }
}

impl Readiness {
    fn millis(&self) -> u64 {
        u64::try_from(self.0.0.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn failed(&self) {
        self.0.1.store(self.millis(), Ordering::Relaxed);
    }

    /// Whether no check failed in the last [`READY_AFTER`].
    fn settled(&self) -> bool {
        let failed = self.0.1.load(Ordering::Relaxed);
        failed == 0 || self.millis().saturating_sub(failed) >= READY_AFTER.as_millis() as u64
    }
}

/// The body of a successful probe.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` (alive) or `ready` (the database answers).
    #[schema(example = "ready")]
    status: &'static str,
    /// The database backend, on `/readyz`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "postgres")]
    database: Option<&'static str>,
}

/// Liveness: the process answers HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        database: None,
    })
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "The database answers", body = Health),
        (status = 503, description = "The database does not answer within the deadline (see `Retry-After`), or the server is shutting down", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn readyz(
    State(state): State<AppState>,
    draining: Option<Extension<Draining>>,
) -> Result<Json<Health>, Problem> {
    if draining.is_some_and(|Extension(draining)| draining.is_draining()) {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        ));
    }
    let readiness = &state.settings.readiness;
    state.store.ping().await.map_err(|err| {
        readiness.failed();
        if crate::repeats::NOT_READY.first() {
            tracing::warn!(error = %peregrine_store::error_chain(&err), "readiness check failed");
        }
        Problem::unavailable()
    })?;
    if !readiness.settled() {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database answers again; ready once no check has failed for 1 s",
        )
        .with_header(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        ));
    }
    Ok(Json(Health {
        status: "ready",
        database: Some(state.store.backend()),
    }))
}
