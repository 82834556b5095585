//! Peregrine's HTTP API: the tutorial's users resource (list, get, create, rename, delete)
//! over a `UserStore`, health probes and an OpenAPI document, with every error as
//! `application/problem+json`. [`app`] builds the router; [`bind`] and [`Bound::serve`]
//! serve it thread-per-core within [`Limits`] ([`Server`]: one listener, for tests).

mod auth;
mod cors;
mod health;
mod json_body;
mod openapi;
mod plain_read;
mod problem;
mod repeats;
mod request_id;
mod routes;
mod server;
mod users;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use peregrine_store::UserStore;

pub use cors::{MIN_COMPRESSED_BYTES, check_origin as check_cors_origin};
pub use health::{READY_AFTER, Readiness};
pub use json_body::{DEFAULT_BODY_TIMEOUT, MAX_BODY_BYTES};
pub use problem::{PROBLEM_JSON, Problem};
pub use repeats::REPEATS_INTERVAL;
pub use request_id::{MAX_REQUEST_ID_LEN, X_REQUEST_ID, current as current_request_id};
pub use server::connections_defaults::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CLIENT_BODIES, DEFAULT_MAX_CLIENT_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEAD_BYTES, DEFAULT_MAX_UNSENT_BYTES,
};
pub use server::{
    BindError, Bound, Draining, Limits, MAX_SCRAPE_CONNECTIONS, ServeConfig, Server, Stopped, bind,
};
pub use users::DEFAULT_PAGE_SIZE;

/// The router type of every resource module.
type Router = axum::Router<AppState>;

/// The whole API, ready to serve: what [`app`] builds and [`Server`] serves.
#[derive(Clone)]
pub struct App {
    router: axum::Router,
    /// What the plain reads need (see `plain_read`); `None` when every request must go
    /// through the router (CORS is configured).
    plain_reads: Option<AppState>,
}

/// Largest `limit` a list request may ask for unless configured otherwise.
pub const DEFAULT_MAX_PAGE_SIZE: u32 = 1000;

/// What the API needs to know besides the store.
#[derive(Clone)]
pub struct ApiSettings {
    /// The bearer token writes must present; `None` disables writes.
    pub api_token: Option<String>,
    /// The largest page a list request may ask for.
    pub max_page_size: u32,
    /// Origins allowed by CORS (`*` for any), each checked by [`check_cors_origin`];
    /// none: no CORS headers, `OPTIONS` is 405.
    pub cors_origins: Vec<String>,
    /// When `/readyz` last failed, shared by the apps of every worker (clones share it).
    pub readiness: Readiness,
}

/// The token is a secret: `Debug` says only whether one is set.
impl std::fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSettings")
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .field("max_page_size", &self.max_page_size)
            .field("cors_origins", &self.cors_origins)
            .finish()
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            api_token: None,
            max_page_size: DEFAULT_MAX_PAGE_SIZE,
            cors_origins: Vec::new(),
            readiness: Readiness::default(),
        }
    }
}

/// Shared by all handlers.
#[derive(Clone)]
struct AppState {
    store: Arc<UserStore>,
    settings: Arc<ApiSettings>,
}

/// The whole API as one router, ready to serve.
pub fn app(store: Arc<UserStore>, settings: ApiSettings) -> App {
    let document = openapi::document(settings.max_page_size);
    let cors = cors::layer(&settings.cors_origins);
    let state = AppState {
        store,
        settings: Arc::new(settings),
    };
    let plain_reads = cors.is_none().then(|| state.clone());
    let router = Router::new()
        .merge(users::router())
        .merge(health::router())
        .route(
            routes::OPENAPI,
            get(move || openapi::openapi_json(document.clone())),
        )
        .fallback(unknown_path)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(problem::fill_empty_errors))
        .layer(cors::compression())
        .with_state(state);
    let router = match cors {
        Some(cors) => router.layer(cors).layer(axum::middleware::map_response(
            cors::only_for_allowed_origins,
        )),
        None => router,
    };
    App {
        router,
        plain_reads,
    }
}

async fn unknown_path(uri: axum::http::Uri) -> Problem {
    Problem::not_found(format!("no route for {}", uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_never_print_the_token() {
        let settings = ApiSettings {
            api_token: Some("hunter2-token".into()),
            ..ApiSettings::default()
        };
        let shown = format!("{settings:?} {settings:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
