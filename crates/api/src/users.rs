//! The users resource: list, get, create, rename, delete.

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use peregrine_store::{Page, User, UserId, UserSink, Username};
use serde::Deserialize;

use crate::auth::WriteAccess;
use crate::json_body::JsonBody;
use crate::problem::{Problem, ProblemBody};
use crate::routes;
use crate::state::{AppState, Router};

/// Page size when the request names none.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// The routes of this resource, each with and without a trailing slash.
pub fn router() -> Router {
    Router::new()
        .route(routes::USERS, get(list_users).post(create_user))
        .route(
            &routes::with_slash(routes::USERS),
            get(list_users).post(create_user),
        )
        .route(
            routes::USER,
            get(get_user).put(rename_user).delete(delete_user),
        )
        .route(
            &routes::with_slash(routes::USER),
            get(get_user).put(rename_user).delete(delete_user),
        )
}

/// A user as the API shows it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Only describes `peregrine_store::User`, which is what is serialized.
pub struct UserBody {
    /// The user's id.
    #[schema(example = 7, minimum = 1, maximum = 2147483647)]
    id: i32,
    /// The user's unique name.
    #[schema(example = "e60202a4", min_length = 1, max_length = 255)]
    username: String,
}

/// The body of a create or rename.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsernameBody {
    /// 1 to 255 characters; none of general category Cc, Cf, Zl or Zp nor
    /// Default_Ignorable_Code_Point, anywhere in Unicode (zero-width, bidirectional and tag
    /// characters, variation selectors, the byte-order mark…), and no white space at either
    /// end. Stored in Unicode normalization form C; case-sensitive (`Alice` and `alice` are
    /// two users). The pattern writes code points above U+FFFF as the characters themselves.
    #[schema(example = "e60202a4", min_length = 1, max_length = 255)]
    username: String,
}

impl UsernameBody {
    fn parse(self) -> Result<Username, Problem> {
        Username::parse(self.username).map_err(|err| Problem::unprocessable(err.to_string()))
    }
}

/// The query of a list request, as typed.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// How many users to return (1 up to the server's maximum page size, 1000 by default).
    #[param(value_type = Option<u32>, minimum = 1)]
    limit: Option<String>,
    /// Return only users whose id is greater than this (the last id of the previous page).
    #[param(value_type = Option<i32>, minimum = 0, maximum = 2147483647)]
    after: Option<String>,
}

/// The `{id}` path segment, parsed; a bad id is a 400 problem.
pub struct IdPath(UserId);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| Problem::bad_request(rejection.body_text()))?;
        UserId::parse(&raw)
            .map(Self)
            .map_err(|err| Problem::bad_request(err.to_string()))
    }
}

/// List users in id order, a page at a time.
#[utoipa::path(
    get, path = "/users", tag = "users", params(ListQuery),
    responses(
        (status = 200, description = "Users ordered by id; a `Link: <…>; rel=\"next\"` header when more follow", body = [UserBody]),
        (status = 400, description = "`limit` or `after` is not a valid number", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn list_users(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|rejection| Problem::bad_request(rejection.body_text()))?;
    let page = ListPage::parse(
        query.limit.as_deref(),
        query.after.as_deref(),
        state.settings.max_page_size,
    )?;
    page.answer(&state).await
}

/// A list request's page, parsed: what the router's handler and the server's plain-read
/// path both answer with.
pub(crate) struct ListPage {
    limit: u32,
    after: Option<UserId>,
}

impl ListPage {
    /// `limit` and `after` as the query string gives them (already percent-decoded).
    pub(crate) fn parse(
        limit: Option<&str>,
        after: Option<&str>,
        max_page_size: u32,
    ) -> Result<Self, Problem> {
        let limit = match limit {
            None => DEFAULT_PAGE_SIZE.min(max_page_size),
            Some(text) => number_in("limit", text, 1, max_page_size)?,
        };
        let after = match after {
            None => None,
            Some(text) => match number_in("after", text, 0, i32::MAX as u32)? {
                0 => None,
                _ => {
                    Some(UserId::parse(text).map_err(|err| Problem::bad_request(err.to_string()))?)
                }
            },
        };
        Ok(Self { limit, after })
    }

    /// The page as JSON, with a `Link` to the next one when more follow.
    pub(crate) async fn answer(self, state: &AppState) -> Result<Response, Problem> {
        let (body, link) = self.json(state).await?;
        Ok(json_response(body, link))
    }

    /// The page's JSON text, and the `Link` to the next page when more follow.
    pub(crate) async fn json(
        self,
        state: &AppState,
    ) -> Result<(Vec<u8>, Option<HeaderValue>), Problem> {
        let limit = self.limit;
        // One row more than asked tells whether another page follows.
        let page = Page {
            after: self.after,
            limit: limit + 1,
        };
        let json = state.store.list_into(page, JsonPage::new(limit)).await?;
        let next = json
            .more
            .then_some(json.last)
            .flatten()
            .map(|last| format!("</users?limit={limit}&after={last}>; rel=\"next\""))
            .and_then(|link| HeaderValue::from_str(&link).ok());
        Ok((json.finish(), next))
    }
}

/// The `Content-Type` of every JSON answer but errors.
pub(crate) const JSON: HeaderValue = HeaderValue::from_static("application/json");
/// [`JSON`] as a static, for answers written without a `Response`.
pub(crate) static JSON_VALUE: HeaderValue = JSON;

/// A 200 answer with `body` as JSON and `link`, if any.
pub(crate) fn json_response(body: Vec<u8>, link: Option<HeaderValue>) -> Response {
    let mut response = ([(header::CONTENT_TYPE, JSON)], body).into_response();
    if let Some(link) = link {
        response.headers_mut().insert(header::LINK, link);
    }
    response
}

/// The one rule of every numeric query parameter: decimal digits only (leading zeros are
/// fine: `00` is 0; signs, spaces and fractions are not), from `lowest` to `highest`.
fn number_in(name: &str, text: &str, lowest: u32, highest: u32) -> Result<u32, Problem> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let trimmed = text.trim_start_matches('0');
    let value = match trimmed {
        "" if digits => Some(0),
        _ if digits => trimmed.parse::<u32>().ok(),
        _ => None,
    };
    value
        .filter(|value| (lowest..=highest).contains(value))
        .ok_or_else(|| {
            let shown: String = text.chars().take(40).collect();
            Problem::bad_request(format!(
                "{name} must be an integer from {lowest} to {highest}, got {shown:?}"
            ))
        })
}

/// A page of users written straight into its JSON text as the store reads the rows: the
/// list route's hot path allocates one buffer, not a string per user.
struct JsonPage {
    buffer: Vec<u8>,
    limit: usize,
    written: usize,
    last: Option<UserId>,
    more: bool,
}

impl JsonPage {
    fn new(limit: u32) -> Self {
        // Allocated at the first row, not while the request waits for the database: a
        // request queued behind others holds no page.
        Self {
            buffer: Vec::new(),
            limit: limit as usize,
            written: 0,
            last: None,
            more: false,
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.buffer.is_empty() {
            self.buffer.push(b'[');
        }
        self.buffer.push(b']');
        self.buffer
    }
}

impl UserSink for JsonPage {
    fn user(&mut self, id: UserId, username: &str) {
        if self.written == self.limit {
            self.more = true;
            return;
        }
        if self.buffer.is_empty() {
            // About 40 bytes per user in the tutorial's data.
            self.buffer.reserve(2 + 40 * self.limit.min(1024));
            self.buffer.push(b'[');
        } else {
            self.buffer.push(b',');
        }
        self.buffer.extend_from_slice(b"{\"id\":");
        self.buffer
            .extend_from_slice(itoa::Buffer::new().format(id.get()).as_bytes());
        self.buffer.extend_from_slice(b",\"username\":");
        // Writing to a Vec cannot fail, and serde_json escapes the name as JSON requires.
        let _ = serde_json::to_writer(&mut self.buffer, username);
        self.buffer.push(b'}');
        self.written += 1;
        self.last = Some(id);
    }
}

/// Get one user.
#[utoipa::path(
    get, path = "/users/{id}", tag = "users",
    params(("id" = i32, Path, description = "The user's id", minimum = 1, maximum = 2147483647)),
    responses(
        (status = 200, description = "The user", body = UserBody),
        (status = 400, description = "`id` is not an integer from 1 to 2147483647", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No user has this id", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn get_user(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<User>, Problem> {
    one_user(&state, id).await.map(Json)
}

/// The user with `id`, or a 404 naming it.
pub(crate) async fn one_user(state: &AppState, id: UserId) -> Result<User, Problem> {
    state.store.get(id).await.map_err(|e| user_problem(e, id))
}

/// Create a user.
#[utoipa::path(
    post, path = "/users", tag = "users",
    request_body(content = UsernameBody, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; `Location` names the new user", body = UserBody),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Writes are disabled: no token configured", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The username is taken", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Body over 16 KiB", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid username or body shape", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn create_user(
    State(state): State<AppState>,
    _access: WriteAccess,
    JsonBody(body): JsonBody<UsernameBody>,
) -> Result<Response, Problem> {
    let username = body.parse()?;
    let user = state.store.create(&username).await?;
    let location = HeaderValue::from_str(&format!("/users/{}", user.id))
        .map_err(|_| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error"))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(user),
    )
        .into_response())
}

/// Rename a user.
#[utoipa::path(
    put, path = "/users/{id}", tag = "users",
    params(("id" = i32, Path, description = "The user's id", minimum = 1, maximum = 2147483647)),
    request_body(content = UsernameBody, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Renamed", body = UserBody),
        (status = 400, description = "Bad id or malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Writes are disabled: no token configured", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No user has this id", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The username is taken", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Body over 16 KiB", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid username or body shape", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn rename_user(
    State(state): State<AppState>,
    _access: WriteAccess,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<UsernameBody>,
) -> Result<Json<User>, Problem> {
    let username = body.parse()?;
    let user = state
        .store
        .rename(id, &username)
        .await
        .map_err(|e| user_problem(e, id))?;
    Ok(Json(user))
}

/// Delete a user.
#[utoipa::path(
    delete, path = "/users/{id}", tag = "users",
    params(("id" = i32, Path, description = "The user's id", minimum = 1, maximum = 2147483647)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "`id` is not an integer from 1 to 2147483647", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Writes are disabled: no token configured", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No user has this id", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn delete_user(
    State(state): State<AppState>,
    _access: WriteAccess,
    IdPath(id): IdPath,
) -> Result<StatusCode, Problem> {
    state
        .store
        .delete(id)
        .await
        .map_err(|e| user_problem(e, id))?;
    Ok(StatusCode::NO_CONTENT)
}

/// A store error about user `id`, with the id in the 404's detail.
fn user_problem(err: peregrine_store::StoreError, id: UserId) -> Problem {
    match err {
        peregrine_store::StoreError::NotFound => {
            Problem::not_found(format!("no user with id {id}"))
        }
        other => other.into(),
    }
}
