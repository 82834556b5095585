//! Peregrine's HTTP API: the tutorial's users resource (list, get, create, rename, delete)
//! over a `UserStore`, health probes and an OpenAPI document, with every error as
//! `application/problem+json`. [`app`] builds the router; [`bind`] and [`Bound::serve`]
//! serve it thread-per-core within [`Limits`] ([`Server`]: one listener, for tests).

mod app;
mod auth;
mod compression;
mod cors;
mod health;
mod json_body;
mod openapi;
mod plain_read;
mod problem;
mod readiness;
mod repeats;
mod request_id;
mod routes;
mod server;
mod state;
mod users;

pub use app::{App, app};
pub use compression::MIN_COMPRESSED_BYTES;
pub use cors::check_origin as check_cors_origin;
pub use health::Draining;
pub use json_body::{DEFAULT_BODY_TIMEOUT, MAX_BODY_BYTES};
pub use problem::{PROBLEM_JSON, Problem};
pub use readiness::{READY_AFTER, Readiness};
pub use repeats::REPEATS_INTERVAL;
pub use request_id::{MAX_REQUEST_ID_LEN, X_REQUEST_ID, current as current_request_id};
pub use server::connections_defaults::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CLIENT_BODIES, DEFAULT_MAX_CLIENT_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEAD_BYTES, DEFAULT_MAX_UNSENT_BYTES,
};
pub use server::{
    BindError, Bound, Limits, MAX_SCRAPE_CONNECTIONS, ServeConfig, Server, Stopped, bind,
};
pub use state::{ApiSettings, DEFAULT_MAX_PAGE_SIZE};
pub use users::DEFAULT_PAGE_SIZE;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use peregrine_testkit::module_cycles::{cycles, edges, sources};

    /// The rooms of the server depend one way: the front on hyper's path, both on the
    /// exchange, the exchange on admission; and no module imports one that imports it back.
    #[test]
    fn no_module_of_the_crate_imports_one_that_imports_it_back() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let files = sources(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        assert!(files.len() > 20, "read only {} files", files.len());
        let edges = edges(&files).unwrap_or_else(|e| panic!("{e}"));
        let module = |path: &str| path.split("::").map(str::to_owned).collect::<Vec<_>>();
        for (from, to) in [
            ("server::front", "server::hyper_path"),
            ("server::front", "server::exchange"),
            ("server::hyper_path", "server::exchange"),
            ("server::exchange", "server::admission"),
            ("server::metrics", "routes"),
            ("plain_read", "routes"),
        ] {
            let reached = edges.get(&module(from));
            assert!(
                reached.is_some_and(|e| e.contains_key(&module(to))),
                "{from} does not reach {to}"
            );
        }
        let cycles = cycles(&edges);
        assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
    }
}
