//! Peregrine's HTTP API: the tutorial's users resource (list, get, create, rename, delete)
//! over a `UserStore`, health probes and an OpenAPI document, with every error as
//! `application/problem+json`. [`app`] builds the router, [`Server`] serves it.

mod auth;
mod health;
mod json_body;
mod openapi;
mod problem;
mod server;
mod users;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use peregrine_store::UserStore;

pub use json_body::MAX_BODY_BYTES;
pub use problem::{PROBLEM_JSON, Problem};
pub use server::Server;
pub use users::DEFAULT_PAGE_SIZE;

/// The router type of every resource module.
type Router = axum::Router<AppState>;

/// The whole API, ready to serve: what [`app`] builds and [`Server`] serves.
pub type App = axum::Router;

/// Largest `limit` a list request may ask for unless configured otherwise.
pub const DEFAULT_MAX_PAGE_SIZE: u32 = 1000;

/// What the API needs to know besides the store.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// The bearer token writes must present; `None` disables writes.
    pub api_token: Option<String>,
    /// The largest page a list request may ask for.
    pub max_page_size: u32,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            api_token: None,
            max_page_size: DEFAULT_MAX_PAGE_SIZE,
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
    let state = AppState {
        store,
        settings: Arc::new(settings),
    };
    let document = openapi::document();
    Router::new()
        .merge(users::router())
        .merge(health::router())
        .route(
            "/openapi.json",
            get(move || openapi::openapi_json(document.clone())),
        )
        .fallback(unknown_path)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(problem::fill_empty_errors))
        .with_state(state)
}

async fn unknown_path(uri: axum::http::Uri) -> Problem {
    Problem::not_found(format!("no route for {}", uri.path()))
}
