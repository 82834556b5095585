//! The OpenAPI 3.1 document, generated from the handlers' annotations and served as JSON.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::{health, problem, users};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Peregrine users API",
        description = "The users API of the Falcon + peewee tutorial, served by Peregrine. \
            Every route also answers with a trailing slash (`/users/`, `/users/7/`). \
            Errors are `application/problem+json` (RFC 9457). Reads are public; writes need \
            `Authorization: Bearer <token>`."
    ),
    paths(
        users::list_users, users::get_user, users::create_user, users::rename_user,
        users::delete_user, health::healthz, health::readyz, openapi_json,
    ),
    components(schemas(users::UserBody, users::UsernameBody, problem::ProblemBody, health::Health)),
    modifiers(&BearerAuth),
    tags(
        (name = "users", description = "The tutorial's users"),
        (name = "health", description = "Probes for orchestrators"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document, serialized once, saying what this server accepts: the largest `limit`
/// it is configured for and the username rules of the store.
pub fn document(max_page_size: u32) -> Bytes {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    if let Some(username) = doc.pointer_mut("/components/schemas/UsernameBody/properties/username")
    {
        username["pattern"] = peregrine_store::username_pattern().into();
    }
    let parameters = doc
        .pointer_mut("/paths/~1users/get/parameters")
        .and_then(|p| p.as_array_mut());
    for parameter in parameters.into_iter().flatten() {
        if parameter["name"] == "limit" {
            parameter["schema"]["maximum"] = max_page_size.into();
        }
    }
    Bytes::from(serde_json::to_vec_pretty(&doc).unwrap_or_default())
}

/// This OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json")))]
pub async fn openapi_json(document: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document,
    )
        .into_response()
}
