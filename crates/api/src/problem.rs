//! Errors as `application/problem+json` (RFC 9457): one type, mapped to a response in one place.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use peregrine_store::{StoreError, error_chain};
use serde::Serialize;

/// Kinds of database error a response was made of, as the `kind` label shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// The database did not answer in time or the connection failed (503).
    Unavailable,
    /// The database refused a write because it is read-only (503).
    ReadOnly,
    /// Any other failure (500).
    Internal,
}

pub(crate) const DB_ERROR_KINDS: [&str; 3] = ["unavailable", "read_only", "internal"];

impl DbErrorKind {
    /// Its name in metrics and logs.
    pub fn label(self) -> &'static str {
        DB_ERROR_KINDS[self as usize]
    }
}

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// How long a client should wait before retrying after a 503, in seconds.
const RETRY_AFTER_SECONDS: &str = "1";

/// An HTTP error: status, a human-readable detail and any header the status calls for.
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    detail: String,
    header: Option<(HeaderName, HeaderValue)>,
    /// The database error this problem reports, for the metrics.
    db_error: Option<DbErrorKind>,
}

/// The JSON body of a [`Problem`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemBody {
    /// Always `about:blank`: the status code says what kind of problem this is.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The status code's reason phrase.
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, in words.
    pub detail: String,
    /// The request's id, as in its `X-Request-Id` response header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Problem {
    /// A problem with `status` and `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            header: None,
            db_error: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404: nothing is there.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 422: well-formed, but the values are not acceptable.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    /// 503 with `Retry-After`: the database cannot be reached right now.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database is unavailable; retry shortly",
        )
        .with_header(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECONDS),
        )
    }

    /// 408: the request body did not arrive in time; the connection is closed.
    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        )
        .with_header(header::CONNECTION, HeaderValue::from_static("close"))
    }

    /// Adds a response header, such as `WWW-Authenticate` or `Retry-After`.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.header = Some((name, value));
        self
    }

    fn counted_as(mut self, kind: DbErrorKind) -> Self {
        self.db_error = Some(kind);
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The body as it is sent.
    pub fn body(&self) -> ProblemBody {
        ProblemBody {
            kind: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            request_id: crate::request_id::current(),
        }
    }
}

impl From<StoreError> for Problem {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => Self::not_found("no such user"),
            StoreError::Conflict => Self::new(StatusCode::CONFLICT, "username is already taken"),
            StoreError::Unstorable { reason } => {
                Self::unprocessable(format!("the database cannot store this username: {reason}"))
            }
            StoreError::ReadOnly => {
                if crate::repeats::READ_ONLY.first() {
                    tracing::warn!("the database is read-only: writes are refused");
                }
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database accepts no writes right now (it is read-only); retry later",
                )
                .with_header(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECONDS),
                )
                .counted_as(DbErrorKind::ReadOnly)
            }
            err @ StoreError::Unavailable { .. } => {
                if crate::repeats::DATABASE_UNAVAILABLE.first() {
                    tracing::warn!(error = %error_chain(&err), "database unavailable");
                }
                Self::unavailable().counted_as(DbErrorKind::Unavailable)
            }
            err @ (StoreError::Config(_) | StoreError::Internal { .. }) => {
                // The cause goes to the log only: 5xx bodies never show internals.
                tracing::error!(error = %error_chain(&err), "store error");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
                    .counted_as(DbErrorKind::Internal)
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut headers = HeaderMap::with_capacity(2);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some((name, value)) = self.header {
            headers.insert(name, value);
        }
        let mut response = (self.status, headers, body).into_response();
        if let Some(kind) = self.db_error {
            response.extensions_mut().insert(kind);
        }
        response
    }
}

/// Middleware: an error response that has no body of its own (axum's 405, a body-limit 413…)
/// gets a problem+json body; its status and headers (such as `Allow`) stay as they are.
pub async fn fill_empty_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    // axum adds `Allow` to a 405 outside this layer, so it is kept, not read, here.
    let detail = status.canonical_reason().unwrap_or("error").to_lowercase();
    let filled = Problem::new(status, detail).into_response();
    let (filled_parts, body) = filled.into_parts();
    parts.headers.extend(filled_parts.headers);
    Response::from_parts(parts, body)
}
