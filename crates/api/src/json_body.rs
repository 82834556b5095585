//! A JSON request body, rejected as problem+json: 415 wrong type, 413 too big,
//! 400 malformed, 422 well-formed but wrong shape.

use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use std::time::Duration;
use tokio::time::Instant;

use crate::problem::Problem;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// How long a client may take to send a request body unless configured otherwise.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// When the body of this request must have arrived: a request extension the server sets.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub Instant);

/// Extracts and deserializes a JSON object body, with each failure its own status code.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        if !is_json(request.headers().get(header::CONTENT_TYPE)) {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the request body must be JSON: send Content-Type: application/json",
            ));
        }
        // A declared length over the limit is refused before the body is read: reading it
        // would make hyper invite the upload (`100 Continue`) and then wait for it.
        if declared_length(&request).is_some_and(|length| length > MAX_BODY_BYTES as u64) {
            return Err(too_large());
        }
        // The server sets when the body must have arrived; without one (a router served by
        // other means), the default.
        let deadline = request
            .extensions()
            .get::<BodyDeadline>()
            .map_or_else(|| Instant::now() + DEFAULT_BODY_TIMEOUT, |d| d.0);
        let read = Bytes::from_request(request, state);
        let bytes = tokio::time::timeout_at(deadline, read)
            .await
            .map_err(|_| Problem::request_timeout())?
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => too_large(),
                _ => Problem::bad_request(format!("cannot read the request body: {rejection}")),
            })?;
        let value = serde_json::from_slice(&bytes).map_err(|err| {
            use serde_json::error::Category;
            match err.classify() {
                Category::Data => Problem::unprocessable(format!("invalid request body: {err}")),
                Category::Syntax | Category::Eof | Category::Io => {
                    Problem::bad_request(format!("malformed JSON: {err}"))
                }
            }
        })?;
        // serde also reads a struct from an array of its fields; the API takes objects only.
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err(Problem::unprocessable(
                "invalid request body: expected a JSON object",
            ));
        }
        Ok(Self(value))
    }
}

/// The body's length as its `Content-Length` declares it (hyper has refused a malformed or
/// ambiguous one already).
fn declared_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
    )
}

/// `application/json`, `application/<anything>+json`, with or without parameters.
fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || subtype.to_ascii_lowercase().ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge+json",
        ] {
            assert!(is_json(Some(&header::HeaderValue::from_static(ok))), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/jsonx",
            "json",
            "application/x-www-form-urlencoded",
        ] {
            assert!(
                !is_json(Some(&header::HeaderValue::from_static(bad))),
                "{bad}"
            );
        }
        assert!(!is_json(None));
    }
}
