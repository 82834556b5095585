//! The two reads that carry the traffic, `GET /users` and `GET /users/{id}`, answered
//! without the router when the request is plain: no body, no percent-encoding, at most
//! `limit` and `after` as digits, and no CORS configured. They are answered by the same
//! code as the router's handlers ([`ListPage`], [`one_user`]), and large answers pass
//! through the same compression; what the plain path skips is the router's generic
//! machinery (path and query deserialisation, layers with nothing to do for these
//! requests), about half of the server's work per request. Any other form of these
//! requests, `HEAD` included, goes through the router.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use peregrine_store::UserId;

use crate::compression;
use crate::problem::Problem;
use crate::routes::Route;
use crate::state::AppState;
use crate::users::{ListPage, json_response, one_user};

/// A plain read, parsed; a parse error is answered as the router would answer it.
pub(crate) enum PlainRead {
    List(ListPage),
    Get(UserId),
    Invalid(Problem),
}

impl PlainRead {
    /// The plain read a `GET` without a body of `path` and `query` is, if it is one.
    /// `route` is the server's classification of `path` (`/users` or `/users/{id}`, each
    /// with or without a trailing slash).
    pub(crate) fn of(
        path: &str,
        query: Option<&str>,
        route: Route,
        max_page_size: u32,
    ) -> Option<Self> {
        match route {
            Route::Users => list(query, max_page_size),
            Route::User => {
                let id = path
                    .strip_suffix('/')
                    .unwrap_or(path)
                    .strip_prefix("/users/")?;
                if query.is_some() || !digits(id) {
                    return None;
                }
                Some(match UserId::parse(id) {
                    Ok(id) => Self::Get(id),
                    Err(err) => Self::Invalid(Problem::bad_request(err.to_string())),
                })
            }
            _ => None,
        }
    }

    /// The answer, compressed as the router's layer would compress it.
    pub(crate) async fn answer(self, state: AppState, accept_encoding: HeaderMap) -> Response {
        self.answered(&state)
            .await
            .into_response(accept_encoding)
            .await
    }

    /// The answer before compression: a page or a user as JSON, or any other response.
    pub(crate) async fn answered(self, state: &AppState) -> Answered {
        let json = match self {
            Self::List(page) => page.json(state).await,
            Self::Get(id) => match one_user(state, id).await {
                // As `Json` writes it (one serde_json call into a buffer).
                Ok(user) => match serde_json::to_vec(&user) {
                    Ok(body) => Ok((body, None)),
                    Err(_) => return Answered::Response(Json(user).into_response()),
                },
                Err(problem) => Err(problem),
            },
            Self::Invalid(problem) => Err(problem),
        };
        match json {
            Ok((body, link)) => Answered::Json { body, link },
            Err(problem) => Answered::Response(problem.into_response()),
        }
    }
}

/// A plain read's answer, before compression.
pub(crate) enum Answered {
    /// 200 with this JSON body (`application/json`) and `Link`, if any.
    Json {
        body: Vec<u8>,
        link: Option<HeaderValue>,
    },
    /// Any other answer (a problem), whole.
    Response(Response),
}

impl Answered {
    /// Whether the compression layer adds `Vary: accept-encoding` to this JSON body.
    pub(crate) fn json_varies(body: &[u8]) -> bool {
        compression::acts_on(body.len())
    }

    /// As a response, compressed as the router's layer would compress it.
    pub(crate) async fn into_response(self, accept_encoding: HeaderMap) -> Response {
        let response = match self {
            Self::Json { body, link } => json_response(body, link),
            Self::Response(response) => response,
        };
        compression::compressed(response, accept_encoding).await
    }
}

/// A list read whose query has only `limit` and `after`, each at most once, as digits.
fn list(query: Option<&str>, max_page_size: u32) -> Option<PlainRead> {
    let (mut limit, mut after) = (None, None);
    for pair in query.map(|query| query.split('&')).into_iter().flatten() {
        let (name, value) = pair.split_once('=')?;
        let slot = match name {
            "limit" => &mut limit,
            "after" => &mut after,
            _ => return None,
        };
        if slot.is_some() || !digits(value) {
            return None;
        }
        *slot = Some(value);
    }
    Some(match ListPage::parse(limit, after, max_page_size) {
        Ok(page) => PlainRead::List(page),
        Err(problem) => PlainRead::Invalid(problem),
    })
}

fn digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}
