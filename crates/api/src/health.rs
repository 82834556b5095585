//! Liveness and readiness probes, and the flag that says the server is shutting down
//! ([`Draining`]), which turns readiness to 503 at once. When a failed check counts is
//! `readiness`'s rule.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json};
use serde::Serialize;

use crate::problem::{Problem, ProblemBody};
use crate::routes;
use crate::state::{AppState, Router};

/// `/healthz` and `/readyz`.
pub fn router() -> Router {
    Router::new()
        .route(routes::HEALTHZ, get(healthz))
        .route(routes::READYZ, get(readyz))
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
    match state.store.ping().await {
        Ok(()) => readiness.succeeded(),
        Err(err) => {
            if crate::repeats::NOT_READY.first() {
                tracing::warn!(error = %peregrine_store::error_chain(&err), "readiness check failed");
            }
            if readiness.failed() {
                return Err(Problem::unavailable());
            }
        }
    }
    Ok(Json(Health {
        status: "ready",
        database: Some(state.store.backend()),
    }))
}

/// Set once the shutdown starts: `/readyz` reads it from its request's extensions.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// Whether the server is shutting down.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
