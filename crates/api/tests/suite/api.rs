//! The HTTP API end to end: the real router on a real socket, over a real SQLite file and a
//! real private PostgreSQL cluster. Each scenario runs on both backends. Over 600 lines: every
//! route and its errors, each asserted header by header.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use peregrine_api::{ApiSettings, Limits};
use peregrine_store::{DatabaseUrl, UserStore};
use peregrine_testkit::PgCluster;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const TOKEN: &str = "test-token-1234";

/// A server running in this process, stopped when dropped.
struct TestApp {
    base: String,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: Option<tempfile::TempDir>,
}

enum Backend {
    Sqlite,
    Postgres,
}

impl TestApp {
    async fn start(backend: Backend, settings: ApiSettings) -> Self {
        let (url, dir) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
                let url = format!("sqlite://{}", dir.path().join("api.db").display());
                (url, Some(dir))
            }
            Backend::Postgres => (PgCluster::shared().fresh_database().await, None),
        };
        let mut app = Self::start_on(&url, settings).await;
        app._dir = dir;
        app
    }

    async fn start_on(url: &str, settings: ApiSettings) -> Self {
        let url: DatabaseUrl = url.parse().unwrap_or_else(|e| panic!("{e}"));
        let store = UserStore::open(&url, 2).unwrap_or_else(|e| panic!("{e}"));
        store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
        let router = peregrine_api::app(Arc::new(store), settings);
        let (address, stop) = common::serve(router, Limits::default());
        Self {
            base: format!("http://{address}"),
            client: reqwest::Client::new(),
            _stop: stop,
            _dir: None,
        }
    }

    async fn with_token(backend: Backend) -> Self {
        let settings = ApiSettings {
            api_token: Some(TOKEN.into()),
            ..ApiSettings::default()
        };
        Self::start(backend, settings).await
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        send(self.request(Method::GET, path)).await
    }

    /// A write with the right token and a JSON body.
    async fn write(&self, method: Method, path: &str, body: Value) -> reqwest::Response {
        send(self.request(method, path).bearer_auth(TOKEN).json(&body)).await
    }

    async fn create(&self, username: &str) -> Value {
        let response = self
            .write(Method::POST, "/users", json!({ "username": username }))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        json_of(response).await
    }
}

async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    request.send().await.unwrap_or_else(|e| panic!("{e}"))
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.unwrap_or_else(|e| panic!("{e}"))
}

/// Asserts a problem+json response with `status`, returning its `detail`.
async fn assert_problem(response: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    let content_type = response.headers().get("content-type").cloned();
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let body = json_of(response).await;
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["type"], "about:blank");
    assert!(body["title"].is_string());
    body["detail"].as_str().unwrap_or_default().to_owned()
}

/// Runs each scenario against both backends.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test(super::Backend::Sqlite).await })*
        }
        mod on_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test(super::Backend::Postgres).await })*
        }
    };
}

on_both_backends!(
    plain_and_routed_forms_of_a_read_answer_alike,
    list_returns_users_ordered_by_id_with_or_without_trailing_slash,
    list_pages_by_keyset_with_a_next_link,
    list_rejects_bad_limit_and_after_with_400,
    max_page_size_is_configurable,
    get_user_is_200_with_the_user,
    get_unknown_user_is_404_problem,
    get_with_a_bad_id_is_400_problem,
    create_is_201_with_location,
    create_with_a_taken_name_is_409,
    create_with_an_invalid_name_or_shape_is_422,
    create_with_malformed_json_is_400,
    create_with_wrong_content_type_is_415,
    create_with_a_body_over_16_kib_is_413,
    a_declared_body_over_16_kib_is_413_at_once_without_100_continue,
    writes_without_a_valid_token_are_401_with_www_authenticate,
    writes_without_a_configured_token_are_403,
    rename_is_200_404_409_422,
    delete_is_204_then_404,
    unknown_path_is_404_and_wrong_method_is_405_with_allow,
    health_and_readiness_answer,
    names_that_need_escaping_list_as_valid_json,
    openapi_document_describes_every_route_as_served,
    concurrent_creates_of_one_name_give_one_201_and_the_rest_409,
    client_mistakes_never_get_a_5xx,
    numeric_parameters_follow_one_rule,
    spoofing_usernames_are_422_and_spellings_of_one_name_are_one_user,
    names_that_display_alike_anywhere_in_unicode_are_422_and_every_script_passes,
);

async fn list_returns_users_ordered_by_id_with_or_without_trailing_slash(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    assert_eq!(json_of(app.get("/users").await).await, json!([]));
    let names = ["e60202a4", "0c3d5f1b", "7b1e99aa"];
    for name in names {
        app.create(name).await;
    }
    for path in ["/users", "/users/"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("link").is_none());
        let users = json_of(response).await;
        let got: Vec<_> = users
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| u["username"].clone())
            .collect();
        assert_eq!(got, names.map(Value::from));
        let ids: Vec<_> = users
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| u["id"].as_i64())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    }
}

async fn list_pages_by_keyset_with_a_next_link(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    for i in 0..5 {
        app.create(&format!("user{i}")).await;
    }
    let mut path = "/users?limit=2".to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let response = app.get(&path).await;
        assert_eq!(response.status(), StatusCode::OK);
        let link = response
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let page = json_of(response).await;
        seen.extend(
            page.as_array()
                .into_iter()
                .flatten()
                .map(|u| u["username"].clone()),
        );
        pages += 1;
        match link {
            Some(link) => {
                assert!(link.ends_with(">; rel=\"next\""), "{link}");
                path = link
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<Value> = (0..5).map(|i| Value::from(format!("user{i}"))).collect();
    assert_eq!(seen, expected);
    // Exactly one page of rows left: no link, since nothing follows.
    let response = app.get("/users?limit=5").await;
    assert!(response.headers().get("link").is_none());
    // The default page size is 100.
    app.write(Method::POST, "/users", json!({"username": "x"}))
        .await;
    let first = json_of(app.get("/users?after=0").await).await;
    assert_eq!(first.as_array().map(Vec::len), Some(6));
}

async fn list_rejects_bad_limit_and_after_with_400(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    for query in [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "limit=-1",
        "after=-1",
        "after=x",
        "after=99999999999",
        "limit=+5",
        "after=+5",
        "limit= 5",
    ] {
        let detail = assert_problem(
            app.get(&format!("/users?{query}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        let key = query.split('=').next().unwrap_or_default();
        assert!(detail.starts_with(key), "{query}: {detail}");
    }
    assert_eq!(app.get("/users?limit=1000").await.status(), StatusCode::OK);
}

async fn max_page_size_is_configurable(backend: Backend) {
    let settings = ApiSettings {
        api_token: Some(TOKEN.into()),
        max_page_size: 10_000,
        ..ApiSettings::default()
    };
    let app = TestApp::start(backend, settings).await;
    assert_eq!(app.get("/users?limit=10000").await.status(), StatusCode::OK);
    let detail = assert_problem(app.get("/users?limit=10001").await, StatusCode::BAD_REQUEST).await;
    assert!(detail.contains("from 1 to 10000"), "{detail}");
}

async fn get_user_is_200_with_the_user(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    let created = app.create("e60202a4").await;
    let id = created["id"].as_i64().unwrap_or_default();
    for path in [format!("/users/{id}"), format!("/users/{id}/")] {
        let response = app.get(&path).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            json_of(response).await,
            json!({"id": id, "username": "e60202a4"})
        );
    }
}

async fn get_unknown_user_is_404_problem(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    let detail = assert_problem(app.get("/users/4242").await, StatusCode::NOT_FOUND).await;
    assert_eq!(detail, "no user with id 4242");
}

async fn get_with_a_bad_id_is_400_problem(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    for id in [
        "abc",
        "0",
        "-1",
        "1.5",
        "2147483648",
        "99999999999999999999",
        "%20",
    ] {
        let detail = assert_problem(
            app.get(&format!("/users/{id}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(
            detail.contains("user id must be an integer"),
            "{id}: {detail}"
        );
    }
}

async fn create_is_201_with_location(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    for path in ["/users", "/users/"] {
        let name = format!("made-at{path}");
        let response = app
            .write(Method::POST, path, json!({ "username": name }))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = json_of(response).await;
        assert_eq!(body["username"], name);
        assert_eq!(location, Some(format!("/users/{}", body["id"])));
        let fetched = json_of(app.get(&location.unwrap_or_default()).await).await;
        assert_eq!(fetched, body);
    }
}

async fn create_with_a_taken_name_is_409(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    app.create("taken").await;
    let response = app
        .write(Method::POST, "/users", json!({"username": "taken"}))
        .await;
    assert_eq!(
        assert_problem(response, StatusCode::CONFLICT).await,
        "username is already taken"
    );
    assert_eq!(
        json_of(app.get("/users").await)
            .await
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

async fn create_with_an_invalid_name_or_shape_is_422(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    let cases = [
        (json!({"username": ""}), "must not be empty"),
        (json!({"username": "x".repeat(256)}), "at most 255"),
        (json!({"username": "a\nb"}), "control characters"),
        (json!({"username": "a\u{0}b"}), "control characters"),
        (json!({"username": 7}), "invalid type"),
        (json!({"username": null}), "invalid type"),
        (json!({}), "missing field"),
        (json!({"username": "ok", "extra": 1}), "unknown field"),
        (json!(["x"]), "expected a JSON object"),
    ];
    for (body, expected) in cases {
        let detail = assert_problem(
            app.write(Method::POST, "/users", body.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert!(detail.contains(expected), "{body}: {detail}");
    }
    // 255 characters, multi-byte, is fine.
    app.create(&"é".repeat(255)).await;
    assert_eq!(
        json_of(app.get("/users").await)
            .await
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

async fn create_with_malformed_json_is_400(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    for body in ["{", "{\"username\": }", "", "nul"] {
        let request = app
            .request(Method::POST, "/users")
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body);
        let detail = assert_problem(send(request).await, StatusCode::BAD_REQUEST).await;
        assert!(detail.starts_with("malformed JSON"), "{body:?}: {detail}");
    }
}

async fn create_with_wrong_content_type_is_415(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    let plain = app
        .request(Method::POST, "/users")
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body(r#"{"username":"x"}"#);
    assert_problem(send(plain).await, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let missing = app
        .request(Method::POST, "/users")
        .bearer_auth(TOKEN)
        .body(r#"{"username":"x"}"#);
    assert_problem(send(missing).await, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let with_charset = app
        .request(Method::POST, "/users")
        .bearer_auth(TOKEN)
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"username":"x"}"#);
    assert_eq!(send(with_charset).await.status(), StatusCode::CREATED);
}

async fn create_with_a_body_over_16_kib_is_413(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    let big = json!({ "username": "x".repeat(17 * 1024) });
    let detail = assert_problem(
        app.write(Method::POST, "/users", big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert!(detail.contains("16384"), "{detail}");
    // Without Content-Length (chunked), the limit holds too.
    let chunks =
        futures_util::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>("x".repeat(1024))));
    let request = app
        .request(Method::POST, "/users")
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks));
    assert_problem(send(request).await, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(json_of(app.get("/users").await).await, json!([]));
}

async fn a_declared_body_over_16_kib_is_413_at_once_without_100_continue(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::with_token(backend).await;
    let address = app.base.trim_start_matches("http://").to_string();
    for (head, what) in [
        (
            "POST /users HTTP/1.1\r\nExpect: 100-continue\r\n",
            "POST with Expect",
        ),
        ("PUT /users/1 HTTP/1.1\r\n", "PUT without a body"),
    ] {
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let request = format!(
            "{head}Host: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut answer = vec![0; 4096];
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer within 2 s"))
            .unwrap_or_else(|e| panic!("{e}"));
        let answer = String::from_utf8_lossy(&answer[..read]);
        assert!(answer.starts_with("HTTP/1.1 413"), "{what}: {answer}");
        assert!(!answer.contains("100 Continue"), "{what}: {answer}");
        assert!(
            answer.contains("application/problem+json"),
            "{what}: {answer}"
        );
    }
}

async fn writes_without_a_valid_token_are_401_with_www_authenticate(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    let id = app.create("victim").await["id"].clone();
    let user_path = format!("/users/{id}");
    let writes = [
        (Method::POST, "/users"),
        (Method::PUT, user_path.as_str()),
        (Method::DELETE, user_path.as_str()),
    ];
    for (method, path) in writes {
        let body = json!({"username": "intruder"});
        let none = send(app.request(method.clone(), path).json(&body)).await;
        let challenge = none
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="peregrine""#));
        assert_problem(none, StatusCode::UNAUTHORIZED).await;
        for wrong in [
            "Bearer wrong",
            "Bearer test-token-12345",
            "Basic dGVzdA==",
            "test-token-1234",
        ] {
            let response = send(
                app.request(method.clone(), path)
                    .header("authorization", wrong)
                    .json(&body),
            )
            .await;
            assert!(response.headers().contains_key("www-authenticate"));
            assert_problem(response, StatusCode::UNAUTHORIZED).await;
        }
    }
    // Nothing changed.
    assert_eq!(
        json_of(app.get("/users").await).await,
        json!([{"id": id, "username": "victim"}])
    );
}

async fn writes_without_a_configured_token_are_403(backend: Backend) {
    let app = TestApp::start(backend, ApiSettings::default()).await;
    let response = send(
        app.request(Method::POST, "/users")
            .bearer_auth("anything")
            .json(&json!({"username": "x"})),
    )
    .await;
    let detail = assert_problem(response, StatusCode::FORBIDDEN).await;
    assert!(detail.contains("--api-token"), "{detail}");
    let response = send(app.request(Method::DELETE, "/users/1")).await;
    assert_problem(response, StatusCode::FORBIDDEN).await;
    // Reads stay public.
    assert_eq!(app.get("/users").await.status(), StatusCode::OK);
}

async fn rename_is_200_404_409_422(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    let alice = app.create("alice").await;
    app.create("bob").await;
    let path = format!("/users/{}", alice["id"]);
    let response = app
        .write(Method::PUT, &path, json!({"username": "carol"}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        json_of(response).await,
        json!({"id": alice["id"], "username": "carol"})
    );
    assert_eq!(json_of(app.get(&path).await).await["username"], "carol");
    let trailing = app
        .write(
            Method::PUT,
            &format!("{path}/"),
            json!({"username": "dave"}),
        )
        .await;
    assert_eq!(trailing.status(), StatusCode::OK);
    assert_problem(
        app.write(Method::PUT, "/users/999", json!({"username": "eve"}))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.write(Method::PUT, &path, json!({"username": "bob"}))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_problem(
        app.write(Method::PUT, &path, json!({"username": ""})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_problem(
        app.write(Method::PUT, "/users/zero", json!({"username": "x"}))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(json_of(app.get(&path).await).await["username"], "dave");
}

async fn delete_is_204_then_404(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    let user = app.create("gone").await;
    let path = format!("/users/{}", user["id"]);
    let response = send(app.request(Method::DELETE, &path).bearer_auth(TOKEN)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.bytes().await.map(|b| b.len()).ok(), Some(0));
    assert_problem(app.get(&path).await, StatusCode::NOT_FOUND).await;
    let again = send(
        app.request(Method::DELETE, &format!("{path}/"))
            .bearer_auth(TOKEN),
    )
    .await;
    assert_problem(again, StatusCode::NOT_FOUND).await;
}

async fn unknown_path_is_404_and_wrong_method_is_405_with_allow(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    for path in ["/", "/nope", "/users/1/extra", "/userz"] {
        assert_problem(app.get(path).await, StatusCode::NOT_FOUND).await;
    }
    for (method, path) in [
        (Method::PATCH, "/users/1"),
        (Method::DELETE, "/users"),
        (Method::POST, "/healthz"),
    ] {
        let response = send(app.request(method, path)).await;
        let allow = response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert!(
            allow.as_deref().is_some_and(|a| a.contains("GET")),
            "{path}: {allow:?}"
        );
        assert_problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
    }
}

async fn names_that_need_escaping_list_as_valid_json(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    let names = ["quote\"back\\slash", "ünïcødé 😀", "a&b=c%20d", "</script>"];
    for name in names {
        app.create(name).await;
    }
    let listed = json_of(app.get("/users/").await).await;
    let got: Vec<&str> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(got, names);
}

async fn health_and_readiness_answer(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(json_of(health).await, json!({"status": "ok"}));
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(json_of(ready).await["status"], "ready");
}

async fn openapi_document_describes_every_route_as_served(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let doc = json_of(response).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    let mut documented: Vec<String> = Vec::new();
    for (path, operations) in &paths {
        for (method, operation) in operations.as_object().into_iter().flatten() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            // Each documented operation is served: not 404 for the route, not 405.
            let concrete = path.replace("{id}", "1");
            let method =
                Method::from_bytes(method.to_uppercase().as_bytes()).unwrap_or(Method::GET);
            let response = send(
                app.request(method, &concrete)
                    .bearer_auth(TOKEN)
                    .json(&json!({"username": "doc"})),
            )
            .await;
            assert_ne!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
            let body = response.text().await.unwrap_or_default();
            assert!(
                !body.contains("no route for"),
                "{path} is documented but not served"
            );
            // Every documented response has a description; errors are problem+json.
            for (status, spec) in operation["responses"].as_object().into_iter().flatten() {
                assert!(spec["description"].is_string());
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        spec["content"]["application/problem+json"].is_object(),
                        "{path} {status}"
                    );
                }
            }
        }
    }
    documented.sort();
    let served = [
        "DELETE /users/{id}",
        "GET /healthz",
        "GET /openapi.json",
        "GET /readyz",
        "GET /users",
        "GET /users/{id}",
        "POST /users",
        "PUT /users/{id}",
    ];
    assert_eq!(documented, served);
    let schemes = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(schemes["scheme"], "bearer");
}

async fn concurrent_creates_of_one_name_give_one_201_and_the_rest_409(backend: Backend) {
    let app = Arc::new(TestApp::with_token(backend).await);
    let requests = (0..50).map(|_| {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            app.write(Method::POST, "/users", json!({"username": "same"}))
                .await
                .status()
        })
    });
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(request.await.unwrap_or_else(|e| panic!("{e}")));
    }
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, conflicts), (1, 49), "{statuses:?}");
    assert_eq!(
        json_of(app.get("/users").await)
            .await
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

async fn client_mistakes_never_get_a_5xx(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    let paths = [
        "/users/%FF",
        "/users/%00",
        "/users?limit=%FF",
        "/users?after=1&after=2",
        "/users?limit=",
        "/users/1/%2F",
        "/users//",
        "//users",
        "/users/\u{00e9}",
        "/users?%=%",
    ];
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ];
    for path in paths {
        for method in &methods {
            let response = send(
                app.request(method.clone(), path)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body("{\"username\":\"\u{1}\"}"),
            )
            .await;
            assert!(
                response.status().is_client_error() || response.status().is_success(),
                "{method} {path}: {}",
                response.status()
            );
        }
    }
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);
}

/// The database goes away under the running server: 503 with Retry-After, then recovery
/// without a restart once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_is_503_and_the_server_recovers_by_itself() {
    let cluster = PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let client = peregrine_testkit::connect(&cluster.url("postgres")).await;
    client
        .batch_execute("CREATE DATABASE outage")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(client);
    let app = TestApp::start_on(
        &cluster.url("outage"),
        ApiSettings {
            api_token: Some(TOKEN.into()),
            ..ApiSettings::default()
        },
    )
    .await;
    let id = app.create("survivor").await["id"].clone();
    assert_eq!(
        app.get(&format!("/users/{id}")).await.status(),
        StatusCode::OK
    );

    cluster.stop().unwrap_or_else(|e| panic!("{e}"));
    for path in [format!("/users/{id}"), "/users".into(), "/readyz".into()] {
        let started = Instant::now();
        let response = app.get(&path).await;
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{path} took {:?}",
            started.elapsed()
        );
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        let detail = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
        assert!(
            !detail.contains("127.0.0.1"),
            "5xx bodies must not leak internals: {detail}"
        );
    }
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);

    cluster.start_again().unwrap_or_else(|e| panic!("{e}"));
    // The two user requests above were 503s made of database errors (/readyz is a probe).
    let mut unavailable = 2;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = app.get(&format!("/users/{id}")).await;
        unavailable += usize::from(response.status() == StatusCode::SERVICE_UNAVAILABLE);
        if response.status() == StatusCode::OK {
            assert_eq!(json_of(response).await["username"], "survivor");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not recover: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every shared connection recovers, not just one.
    for _ in 0..10 {
        assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
        assert_eq!(
            app.write(
                Method::PUT,
                &format!("/users/{id}"),
                json!({"username": "back"})
            )
            .await
            .status(),
            StatusCode::OK
        );
    }
    let metrics = app.get("/metrics").await.text().await.unwrap_or_default();
    let counted = format!("peregrine_db_errors_total{{kind=\"unavailable\"}} {unavailable}\n");
    assert!(metrics.contains(&counted), "{counted}in\n{metrics}");
}

/// `after=00` is `after=0`, `limit=005` is `limit=5`: digits only, leading zeros allowed.
async fn numeric_parameters_follow_one_rule(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    for name in ["one", "two", "three"] {
        app.create(name).await;
    }
    let all = json_of(app.get("/users?after=0").await).await;
    for query in ["after=00", "after=000", "limit=003", "limit=3&after=00"] {
        let response = app.get(&format!("/users?{query}")).await;
        assert_eq!(response.status(), StatusCode::OK, "{query}");
        assert_eq!(json_of(response).await, all, "{query}");
    }
    let second = json_of(app.get("/users?after=01&limit=0001").await).await;
    assert_eq!(second, json!([all[1]]));
}

/// The server answers plain reads (digits only, no percent-encoding) without the router;
/// every other spelling of the same read goes through the router. Both must answer alike:
/// status, headers that matter and body (problem bodies without their request ids).
async fn plain_and_routed_forms_of_a_read_answer_alike(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    for name in ["one", "two", "three"] {
        app.create(name).await;
    }
    let pairs = [
        ("/users", "/users?unknown=1"),
        ("/users/", "/users/?limit=%31%30%30"),
        ("/users?limit=2", "/users?limit=%32"),
        ("/users/?after=1&limit=1", "/users/?limit=1&after=%31"),
        ("/users/1", "/users/%31"),
        ("/users/2/", "/users/%32/"),
        ("/users/0", "/users/%30"),
        ("/users/99", "/users/%39%39"),
        ("/users/99999999999", "/users/%399999999999"),
        ("/users?limit=0", "/users?limit=%30"),
        ("/users?limit=5000", "/users?limit=500%30"),
        ("/users?after=99999999999", "/users?after=9999999999%39"),
    ];
    for (plain, routed) in pairs {
        let (plain_answer, routed_answer) = (app.get(plain).await, app.get(routed).await);
        assert_eq!(
            plain_answer.status(),
            routed_answer.status(),
            "{plain} vs {routed}"
        );
        for name in ["content-type", "link", "vary", "content-encoding"] {
            assert_eq!(
                plain_answer.headers().get(name),
                routed_answer.headers().get(name),
                "{name}: {plain} vs {routed}"
            );
        }
        let mut bodies = [json_of(plain_answer).await, json_of(routed_answer).await];
        for body in &mut bodies {
            if let Some(problem) = body.as_object_mut() {
                problem.remove("request_id");
            }
        }
        assert_eq!(bodies[0], bodies[1], "{plain} vs {routed}");
    }
    let head = send(app.request(Method::HEAD, "/users/1")).await;
    assert_eq!(head.status(), StatusCode::OK);
}

/// Bidi overrides, zero-width characters, a BOM and surrounding spaces are 422; a name
/// spelled decomposed is the same user as its composed spelling; case matters.
async fn spoofing_usernames_are_422_and_spellings_of_one_name_are_one_user(backend: Backend) {
    let app = TestApp::with_token(backend).await;
    for spoof in [
        "admin\u{202e}txt.exe",
        "ad\u{200b}min",
        "\u{feff}admin",
        "   ",
        " admin",
        "admin ",
    ] {
        let response = app
            .write(Method::POST, "/users", json!({ "username": spoof }))
            .await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let composed = app.create("caf\u{e9}").await;
    assert_eq!(composed["username"], "caf\u{e9}");
    let decomposed = app
        .write(Method::POST, "/users", json!({ "username": "cafe\u{301}" }))
        .await;
    assert_problem(decomposed, StatusCode::CONFLICT).await;
    app.create("Alice").await;
    app.create("alice").await;
    let doc = json_of(app.get("/openapi.json").await).await;
    let username = &doc["components"]["schemas"]["UsernameBody"]["properties"]["username"];
    assert!(username["pattern"].is_string(), "{username}");
    let limit = doc["paths"]["/users"]["get"]["parameters"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "limit"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(limit["schema"]["maximum"], 1000, "{limit}");
}

/// Format and default-ignorable characters above U+FFFF and in combining blocks (the
/// look-alikes of "admin" an adversarial run created as six users) are 422 on POST and PUT;
/// names in many scripts pass; the published pattern, read by Python's `re` as schemathesis
/// reads it, says the same of each.
async fn names_that_display_alike_anywhere_in_unicode_are_422_and_every_script_passes(
    backend: Backend,
) {
    let app = TestApp::with_token(backend).await;
    let admin = app.create("admin").await;
    let id = admin["id"].as_i64().unwrap_or_default();
    let look_alikes = [
        "admin\u{e0061}\u{e0062}",
        "\u{e0001}admin",
        "ad\u{1bca0}min",
        "ad\u{34f}min",
        "admin\u{fe0f}",
        "ad\u{e0100}min",
        "ad\u{115f}min",
    ];
    for name in look_alikes {
        let body = json!({ "username": name });
        let created = app.write(Method::POST, "/users", body.clone()).await;
        let detail = assert_problem(created, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(detail.contains("U+"), "{name:?}: {detail}");
        let renamed = app.write(Method::PUT, &format!("/users/{id}"), body).await;
        assert_problem(renamed, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let list = json_of(app.get("/users").await).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let ordinary = [
        "Дмитрий",
        "محمد",
        "דוד",
        "हिन्दी",
        "தமிழ்",
        "ไทย",
        "한국어",
        "日本語",
        "ქართული",
        "Ἀθῆναι",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
        "🦀",
        "👍🏽",
        "Zoë",
    ];
    for name in ordinary {
        assert_eq!(app.create(name).await["username"], name);
    }
    let renamed = app
        .write(
            Method::PUT,
            &format!("/users/{id}"),
            json!({ "username": "𓂀 admin" }),
        )
        .await;
    assert_eq!(renamed.status(), StatusCode::OK);

    let doc = json_of(app.get("/openapi.json").await).await;
    let pattern = doc["components"]["schemas"]["UsernameBody"]["properties"]["username"]["pattern"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let verdicts = python_re_verdicts(&pattern, &[&look_alikes[..], &ordinary[..]].concat());
    let expected: Vec<bool> = look_alikes
        .iter()
        .map(|_| false)
        .chain(ordinary.iter().map(|_| true))
        .collect();
    assert_eq!(verdicts, expected, "Python re on {pattern:?}");
}

/// Whether Python's `re` (what schemathesis generates and checks with) full-matches each
/// name against `pattern`.
fn python_re_verdicts(pattern: &str, names: &[&str]) -> Vec<bool> {
    let script = "import json, re, sys\n\
                  data = json.loads(sys.stdin.buffer.read().decode('utf-8'))\n\
                  rx = re.compile(data['pattern'])\n\
                  print(json.dumps([rx.search(n) is not None for n in data['names']]))";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 (which schemathesis needs too): {e}"));
    let input = json!({ "pattern": pattern, "names": names }).to_string();
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(output.status.success(), "python3 failed on {pattern:?}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}"))
}

/// Values PostgreSQL cannot store as configured are the client's 422, not a 500: more bytes
/// than a `SQL_ASCII` database's varchar(255) holds (22001), a character LATIN1 lacks
/// (22P05).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_the_database_encoding_cannot_store_are_422() {
    let cluster = PgCluster::shared();
    let admin = peregrine_testkit::connect(&cluster.url("postgres")).await;
    let suffix = std::process::id();
    for (encoding, name, status) in [
        (
            "SQL_ASCII",
            "\u{e9}".repeat(200),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "LATIN1",
            "bird \u{1f426}".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("LATIN1", "caf\u{e9}".to_owned(), StatusCode::CREATED),
    ] {
        let database = format!("enc_{}_{suffix}_{}", encoding.to_lowercase(), name.len());
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {database} ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' \
                 TEMPLATE template0"
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let app = TestApp::start_on(
            &cluster.url(&database),
            ApiSettings {
                api_token: Some(TOKEN.into()),
                ..ApiSettings::default()
            },
        )
        .await;
        let response = app
            .write(Method::POST, "/users", json!({ "username": name }))
            .await;
        assert_eq!(response.status(), status, "{encoding} {name}");
        if status.is_client_error() {
            assert_problem(response, status).await;
        }
    }
}

/// SQLite writes that queue up together (here behind another connection's write lock)
/// share one commit: each POST still gets its own answer (one 201 per name, 409 for the
/// repeats), and every 201 is on disk when answered, as a new connection to the file reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writes_committed_together_each_get_their_own_answer_and_are_on_disk() {
    let app = Arc::new(TestApp::with_token(Backend::Sqlite).await);
    let path = app
        ._dir
        .as_ref()
        .map(|dir| dir.path().join("api.db"))
        .unwrap_or_else(|| panic!("no SQLite file"));
    let holder = rusqlite::Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
    holder
        .execute_batch("BEGIN IMMEDIATE")
        .unwrap_or_else(|e| panic!("{e}"));
    let requests: Vec<_> = (0..60)
        .map(|i| {
            let app = Arc::clone(&app);
            let username = format!("batched-{}", i % 20);
            tokio::spawn(async move {
                let response = app
                    .write(Method::POST, "/users", json!({ "username": username }))
                    .await;
                let status = response.status();
                (username, status, json_of(response).await)
            })
        })
        .collect();
    // The writes queue behind the held lock (well within their deadline), then go together.
    tokio::time::sleep(Duration::from_millis(500)).await;
    holder
        .execute_batch("ROLLBACK")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut created = std::collections::BTreeMap::new();
    let mut conflicts = 0;
    for request in requests {
        let (username, status, body) = request.await.unwrap_or_else(|e| panic!("{e}"));
        match status {
            StatusCode::CREATED => {
                assert_eq!(body["username"], username.as_str());
                let earlier = created.insert(username, body["id"].as_i64());
                assert_eq!(earlier, None, "two 201s for one name");
            }
            StatusCode::CONFLICT => conflicts += 1,
            other => panic!("{username}: {other} {body}"),
        }
    }
    assert_eq!((created.len(), conflicts), (20, 40));
    let on_disk: std::collections::BTreeMap<String, Option<i64>> = holder
        .prepare("SELECT username, id FROM orguser")
        .and_then(|mut rows| {
            rows.query_map([], |row| Ok((row.get(0)?, Some(row.get(1)?))))?
                .collect()
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(on_disk, created);
}
