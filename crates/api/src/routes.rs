//! The route table: every path the API answers, once. The router registers these templates
//! (see `users::router`, `health::router`), the metrics and the access log label requests
//! with them, and the plain reads and the server's front classify a path with [`Route::of`],
//! so that the three cannot disagree on what a path is.

/// `GET`/`POST` the users (list, create).
pub const USERS: &str = "/users";
/// `GET`/`PUT`/`DELETE` one user.
pub const USER: &str = "/users/{id}";
/// Liveness.
pub const HEALTHZ: &str = "/healthz";
/// Readiness.
pub const READYZ: &str = "/readyz";
/// The OpenAPI document.
pub const OPENAPI: &str = "/openapi.json";
/// The Prometheus exposition, when served on the API's listener.
pub const METRICS: &str = "/metrics";

/// What [`USER`]'s paths start with: `{id}` is the one non-empty segment after it.
const USER_PREFIX: &str = "/users/";

/// The route templates of the API, as the `route` label shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/users` and `/users/`.
    Users,
    /// `/users/{id}` and `/users/{id}/`.
    User,
    /// `/healthz`.
    Healthz,
    /// `/readyz`.
    Readyz,
    /// `/openapi.json`.
    OpenApi,
    /// `/metrics`, when served on the API's listener.
    Metrics,
    /// Any other path: no route answers it (404).
    Unmatched,
}

impl Route {
    /// Every route, in the order of their indexes (`route as usize`).
    pub const ALL: [Self; 7] = [
        Self::Users,
        Self::User,
        Self::Healthz,
        Self::Readyz,
        Self::OpenApi,
        Self::Metrics,
        Self::Unmatched,
    ];

    /// The template of the route that answers `path`, as the router matches it (one
    /// optional trailing slash for the users' routes; `{id}` is any one non-empty segment).
    pub fn of(path: &str, metrics_here: bool) -> Self {
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        match trimmed {
            USERS => Self::Users,
            HEALTHZ if path == trimmed => Self::Healthz,
            READYZ if path == trimmed => Self::Readyz,
            OPENAPI if path == trimmed => Self::OpenApi,
            METRICS if path == trimmed && metrics_here => Self::Metrics,
            _ => match trimmed.strip_prefix(USER_PREFIX) {
                Some(id) if !id.is_empty() && !id.contains('/') => Self::User,
                _ => Self::Unmatched,
            },
        }
    }

    /// The `route` label's value: the template, or `unmatched`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Users => USERS,
            Self::User => USER,
            Self::Healthz => HEALTHZ,
            Self::Readyz => READYZ,
            Self::OpenApi => OPENAPI,
            Self::Metrics => METRICS,
            Self::Unmatched => "unmatched",
        }
    }
}

/// `template` followed by a slash: the users' routes answer both spellings.
pub fn with_slash(template: &str) -> String {
    format!("{template}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_the_routers_templates() {
        for (path, route) in [
            ("/users", Route::Users),
            ("/users/", Route::Users),
            ("/users/7", Route::User),
            ("/users/abc/", Route::User),
            ("/users/7/x", Route::Unmatched),
            ("/users//", Route::Unmatched),
            ("/healthz", Route::Healthz),
            ("/healthz/", Route::Unmatched),
            ("/readyz", Route::Readyz),
            ("/openapi.json", Route::OpenApi),
            ("/metrics", Route::Metrics),
            ("/", Route::Unmatched),
            ("/nope", Route::Unmatched),
        ] {
            assert_eq!(Route::of(path, true), route, "{path}");
        }
        assert_eq!(Route::of("/metrics", false), Route::Unmatched);
    }

    #[test]
    fn every_route_is_at_its_index() {
        for (index, route) in Route::ALL.iter().enumerate() {
            assert_eq!(*route as usize, index);
        }
    }
}
