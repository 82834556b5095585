//! CORS for browser front-ends on other origins (`--cors-origin`). With CORS configured,
//! every request goes through the router (the server's front does not take the plain reads:
//! see `app`), which docs/architecture.md measures.

use std::time::Duration;

use axum::http::{HeaderValue, Method, header};
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::request_id::X_REQUEST_ID;

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(3600);

/// Checks one `--cors-origin` value: `*`, or an origin as browsers send it in `Origin`,
/// `http://` or `https://` and a host with an optional port, nothing after it.
pub fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| format!("{origin:?} must be * or start with http:// or https://"))?;
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if !host_ok {
        return Err(format!(
            "{origin:?} must be a scheme and a host with an optional port, such as \
             https://app.example.com or http://localhost:3000, with no path or trailing slash"
        ));
    }
    Ok(())
}

/// The CORS layer for `origins` (already checked); `None` when there are none, so that
/// `OPTIONS` stays a 405 as without CORS.
pub fn layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::DELETE,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, X_REQUEST_ID])
            .expose_headers([
                header::LOCATION,
                header::LINK,
                header::RETRY_AFTER,
                X_REQUEST_ID,
            ])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

/// Middleware outside the CORS layer: a response that allows no origin (the request's
/// origin is not allowed, or it sent none) carries no other `Access-Control-*` header either,
/// which the CORS layer adds regardless. `Vary` stays, for caches.
pub async fn only_for_allowed_origins(mut response: Response) -> Response {
    let headers = response.headers_mut();
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        for name in [
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            header::ACCESS_CONTROL_ALLOW_METHODS,
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            header::ACCESS_CONTROL_MAX_AGE,
        ] {
            headers.remove(name);
        }
    }
    response
}
