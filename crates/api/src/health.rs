//! Liveness and readiness probes.

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
    state.store.ping().await.map_err(|err| {
        if crate::repeats::NOT_READY.first() {
            tracing::warn!(error = %peregrine_store::error_chain(&err), "readiness check failed");
        }
        Problem::unavailable()
    })?;
    Ok(Json(Health {
        status: "ready",
        database: Some(state.store.backend()),
    }))
}
