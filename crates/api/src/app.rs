//! The whole API as one router: the resources' routers merged, the layers every answer
//! goes through (body limit, problem bodies, compression, CORS), and what the server's
//! plain reads need besides ([`App`]).

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use peregrine_store::UserStore;

use crate::json_body::MAX_BODY_BYTES;
use crate::problem::{self, Problem};
use crate::state::{ApiSettings, AppState, Router};
use crate::{compression, cors, health, openapi, routes, users};

/// The whole API, ready to serve: what [`app`] builds and `Server` serves.
#[derive(Clone)]
pub struct App {
    pub(crate) router: axum::Router,
    /// What the plain reads need (see `plain_read`); `None` when every request must go
    /// through the router (CORS is configured).
    pub(crate) plain_reads: Option<AppState>,
    /// The counters of the store's hub, for `/metrics`.
    pub(crate) database: Arc<peregrine_store::DbCounters>,
}

/// The whole API as one router, ready to serve.
pub fn app(store: Arc<UserStore>, settings: ApiSettings) -> App {
    let document = openapi::document(settings.max_page_size);
    let cors = cors::layer(&settings.cors_origins);
    let database = store.counters();
    let state = AppState {
        store,
        settings: Arc::new(settings),
    };
    // With CORS every answer carries the CORS layer's headers (`Vary: origin`, and for an
    // allowed origin `Access-Control-*`), which only the router's layers add: the plain
    // reads then go through the router too. What that costs is measured in docs/serve.md.
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
        .layer(compression::layer())
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
        database,
    }
}

async fn unknown_path(uri: axum::http::Uri) -> Problem {
    Problem::not_found(format!("no route for {}", uri.path()))
}
