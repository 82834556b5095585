//! Write access: `Authorization: Bearer <token>` against the configured token.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use subtle::ConstantTimeEq;

use crate::problem::Problem;
use crate::state::AppState;

/// Proof that the request may write: extracting it checks the bearer token.
pub struct WriteAccess;

impl FromRequestParts<AppState> for WriteAccess {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let Some(expected) = state.settings.api_token.as_deref() else {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "writes are disabled: start the server with --api-token or PEREGRINE_API_TOKEN \
                 and send Authorization: Bearer <token>",
            ));
        };
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token);
        match presented {
            None => Err(unauthorized(
                "writes need Authorization: Bearer <token>",
                r#"Bearer realm="peregrine""#,
            )),
            // Constant-time in the token's content; only its length can be learned.
            Some(token) if bool::from(token.as_bytes().ct_eq(expected.as_bytes())) => Ok(Self),
            Some(_) => Err(unauthorized(
                "the bearer token is not valid",
                r#"Bearer realm="peregrine", error="invalid_token""#,
            )),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn unauthorized(detail: &str, challenge: &'static str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, detail).with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_parsed() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
