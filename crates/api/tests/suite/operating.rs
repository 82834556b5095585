//! What an operator relies on, through HTTP on a real server over a real SQLite file:
//! Prometheus metrics (exact counts after known traffic, a well-formed exposition, the
//! separate listener), request ids, CORS and compression.
#![allow(
    clippy::unwrap_used,
    reason = "helpers of a test binary: a failed step should fail the test"
)]

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use peregrine_api::{ApiSettings, Limits, ServeConfig};
use peregrine_store::{DatabaseUrl, UserStore, Username};
use reqwest::{Method, StatusCode};
use serde_json::Value;

const TOKEN: &str = "operating-token";

/// A server on a fresh SQLite file, stopped when dropped.
struct Running {
    base: String,
    metrics: Option<String>,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

impl Running {
    /// `workers` workers, `users` users, `/metrics` on its own listener when `separate`.
    async fn start(workers: usize, users: usize, separate: bool, settings: ApiSettings) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url: DatabaseUrl = format!("sqlite://{}", dir.path().join("o.db").display())
            .parse()
            .unwrap();
        let store = UserStore::open(&url, 2).unwrap();
        store.migrate().await.unwrap();
        for n in 0..users {
            store
                .create(&Username::parse(format!("user-{n:04}")).unwrap())
                .await
                .unwrap();
        }
        let store = Arc::new(store);
        let bound = peregrine_api::bind(ServeConfig {
            bind: ([127, 0, 0, 1], 0).into(),
            workers,
            limits: Limits::default(),
            shutdown_grace: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(1),
            metrics_bind: separate.then(|| SocketAddr::from(([127, 0, 0, 1], 0))),
            access_log: false,
        })
        .unwrap();
        let base = format!("http://{}", bound.local_addr().unwrap());
        let metrics = bound.metrics_addr().map(|a| format!("http://{a}/metrics"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(bound.serve(
            move |_| Ok(peregrine_api::app(Arc::clone(&store), settings.clone())),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            base,
            metrics,
            // A new connection per request, so that the kernel spreads them over the
            // workers and the counts are sums over several workers' blocks.
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            _stop: stop,
            _dir: dir,
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// Sends `count` requests and checks each one's status.
    async fn send(&self, count: usize, method: Method, path: &str, status: StatusCode) {
        for n in 0..count {
            let response = self
                .request(method.clone(), path)
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({ "username": format!("name-{n}") }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), status, "{method} {path}");
        }
    }

    /// Scrapes `url` and checks the exposition's format.
    async fn scrape(&self, url: &str) -> HashMap<String, f64> {
        let response = self.client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        parse_exposition(&response.text().await.unwrap())
    }
}

fn token_settings() -> ApiSettings {
    ApiSettings {
        api_token: Some(TOKEN.into()),
        ..ApiSettings::default()
    }
}

/// Parses the text exposition format 0.0.4 strictly: every sample belongs to a family whose
/// `# TYPE` came first, names and label names are valid, label values are quoted, values
/// are numbers, and no series appears twice. Returns `name{labels}` → value.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    assert!(text.ends_with('\n'), "the exposition ends with a line feed");
    let valid_name = |name: &str| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let (keyword, name, rest) = (words.next(), words.next(), words.next());
            let name = name.unwrap_or_default();
            assert!(valid_name(name), "{line}");
            match keyword {
                Some("TYPE") => {
                    let kind = rest.unwrap_or_default();
                    assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                    assert!(types.insert(name.into(), kind.into()).is_none(), "{line}");
                }
                Some("HELP") => assert!(rest.is_some_and(|h| !h.is_empty()), "{line}"),
                _ => panic!("unknown comment {line}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            number => number.parse().unwrap_or_else(|_| panic!("{line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.strip_suffix('}').unwrap()),
            None => (series, ""),
        };
        assert!(valid_name(name), "{line}");
        for label in labels.split(',').filter(|l| !l.is_empty()) {
            let (key, quoted) = label.split_once('=').unwrap();
            assert!(valid_name(key), "{line}");
            assert!(
                quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'),
                "{line}"
            );
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "no # TYPE before {line}");
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "{line} twice"
        );
    }
    samples
}

fn requests(route: &str, method: &str, status: u16) -> String {
    format!(
        "peregrine_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}}"
    )
}

/// Checks the histogram of (route, method): cumulative buckets, +Inf = _count = `count`.
fn assert_histogram(samples: &HashMap<String, f64>, route: &str, method: &str, count: f64) {
    let name = "peregrine_http_request_duration_seconds";
    let labels = format!("route=\"{route}\",method=\"{method}\"");
    assert_eq!(samples[&format!("{name}_count{{{labels}}}")], count);
    let mut previous = 0.0;
    for bound in [
        "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
        "2.5", "5", "10", "+Inf",
    ] {
        let bucket = samples[&format!("{name}_bucket{{{labels},le=\"{bound}\"}}")];
        assert!(bucket >= previous, "{labels} le={bound}");
        previous = bucket;
    }
    assert_eq!(previous, count, "{labels}: +Inf");
    assert!(samples[&format!("{name}_sum{{{labels}}}")] > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_known_traffic_exactly_across_workers() {
    let server = Running::start(2, 0, false, token_settings()).await;
    server
        .send(3, Method::POST, "/users", StatusCode::CREATED)
        .await;
    server.send(5, Method::GET, "/users/", StatusCode::OK).await;
    server
        .send(4, Method::GET, "/users/1", StatusCode::OK)
        .await;
    server
        .send(2, Method::GET, "/users/999", StatusCode::NOT_FOUND)
        .await;
    server
        .send(1, Method::GET, "/users/abc", StatusCode::BAD_REQUEST)
        .await;
    server
        .send(1, Method::GET, "/nope", StatusCode::NOT_FOUND)
        .await;
    server
        .send(1, Method::PATCH, "/users", StatusCode::METHOD_NOT_ALLOWED)
        .await;
    let response = server
        .request(Method::DELETE, "/users/2")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let samples = server.scrape(&format!("{}/metrics", server.base)).await;
    let expected = [
        (requests("/users", "POST", 201), 3.0),
        (requests("/users", "GET", 200), 5.0),
        (requests("/users/{id}", "GET", 200), 4.0),
        (requests("/users/{id}", "GET", 404), 2.0),
        (requests("/users/{id}", "GET", 400), 1.0),
        (requests("unmatched", "GET", 404), 1.0),
        (requests("/users", "PATCH", 405), 1.0),
        (requests("/users/{id}", "DELETE", 401), 1.0),
    ];
    let counted: HashSet<&String> = samples
        .keys()
        .filter(|k| k.starts_with("peregrine_http_requests_total"))
        .collect();
    assert_eq!(
        counted,
        expected.iter().map(|(k, _)| k).collect(),
        "exactly these series"
    );
    for (series, count) in &expected {
        assert_eq!(samples[series], *count, "{series}");
    }
    assert_histogram(&samples, "/users", "GET", 5.0);
    assert_histogram(&samples, "/users/{id}", "GET", 7.0);
    assert_histogram(&samples, "/users", "POST", 3.0);
    // The scrape itself is in flight while it is rendered.
    assert_eq!(samples["peregrine_http_requests_in_flight"], 1.0);
    assert!(samples["peregrine_http_connections_open"] >= 1.0);
    assert_eq!(
        samples["peregrine_db_errors_total{kind=\"unavailable\"}"],
        0.0
    );
    let version = format!(
        "peregrine_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(samples[&version], 1.0);
    let again = server.scrape(&format!("{}/metrics", server.base)).await;
    assert_eq!(again[&requests("/metrics", "GET", 200)], 1.0);
    assert_eq!(again[&requests("/users", "GET", 200)], 5.0);
}

#[tokio::test]
async fn metrics_bind_serves_metrics_on_its_own_listener_only() {
    let server = Running::start(1, 1, true, ApiSettings::default()).await;
    let metrics = server.metrics.clone().unwrap();
    server
        .send(1, Method::GET, "/metrics", StatusCode::NOT_FOUND)
        .await;
    server
        .send(2, Method::GET, "/users/1", StatusCode::OK)
        .await;
    let samples = server.scrape(&metrics).await;
    assert_eq!(samples[&requests("unmatched", "GET", 404)], 1.0);
    assert_eq!(samples[&requests("/users/{id}", "GET", 200)], 2.0);
    // Scrapes of the metrics listener are not API requests.
    let again = server.scrape(&metrics).await;
    assert!(!again.keys().any(|k| k.contains("route=\"/metrics\"")));
    let elsewhere = metrics.replace("/metrics", "/users/");
    let response = server.client.get(elsewhere).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = server.client.post(&metrics).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// The response's `X-Request-Id`.
fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn request_ids_are_echoed_or_made_and_named_in_problem_bodies() {
    let server = Running::start(1, 1, false, ApiSettings::default()).await;
    let first = server
        .request(Method::GET, "/users/1")
        .send()
        .await
        .unwrap();
    let second = server
        .request(Method::GET, "/healthz")
        .send()
        .await
        .unwrap();
    let (first, second) = (request_id(&first), request_id(&second));
    assert_ne!(first, second);
    for made in [&first, &second] {
        assert!(
            !made.is_empty() && made.len() <= 64 && made.bytes().all(|b| b.is_ascii_graphic()),
            "{made}"
        );
    }
    let echoed = server
        .request(Method::GET, "/users/999")
        .header("x-request-id", "client-id-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.status(), StatusCode::NOT_FOUND);
    assert_eq!(request_id(&echoed), "client-id-42");
    let body: Value = echoed.json().await.unwrap();
    assert_eq!(body["request_id"], "client-id-42");
    for unusable in ["x".repeat(129), "has spaces".into(), String::new()] {
        let response = server
            .request(Method::GET, "/users/1")
            .header("x-request-id", &unusable)
            .send()
            .await
            .unwrap();
        let made = request_id(&response);
        assert!(made != unusable && !made.is_empty(), "{unusable:?}");
    }
    // axum's own 405 gets its body from a middleware; it names the id too.
    let refused = server
        .request(Method::PATCH, "/users")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
    let id = request_id(&refused);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["request_id"], id.as_str());
}

fn cors_settings(origins: &[&str]) -> ApiSettings {
    ApiSettings {
        cors_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
        ..ApiSettings::default()
    }
}

#[tokio::test]
async fn cors_answers_preflights_and_marks_allowed_origins_only() {
    const APP: &str = "https://app.example";
    let server = Running::start(1, 1, false, cors_settings(&[APP])).await;
    let preflight = |origin: &str| {
        server
            .request(Method::OPTIONS, "/users")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let allowed = preflight(APP).await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], APP);
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let allowed_headers = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert_no_cors_headers(&refused);
    let simple = |origin: &'static str| {
        server
            .request(Method::GET, "/users/1")
            .header("origin", origin)
            .send()
    };
    let from_app = simple(APP).await.unwrap();
    assert_eq!(from_app.status(), StatusCode::OK);
    assert_eq!(from_app.headers()["access-control-allow-origin"], APP);
    let exposed = from_app.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    let from_elsewhere = simple("https://evil.example").await.unwrap();
    assert_eq!(from_elsewhere.status(), StatusCode::OK);
    assert_no_cors_headers(&from_elsewhere);

    let any = Running::start(1, 1, false, cors_settings(&["*"])).await;
    let response = any
        .request(Method::GET, "/users/1")
        .header("origin", "https://anywhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "*");

    let without = Running::start(1, 1, false, ApiSettings::default()).await;
    let response = without
        .request(Method::OPTIONS, "/users")
        .header("origin", APP)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_no_cors_headers(&response);
}

/// GET `path` with `Accept-Encoding: encoding`: (Content-Encoding, raw body bytes).
async fn fetch_encoded(server: &Running, path: &str, encoding: &str) -> (Option<String>, Vec<u8>) {
    let response = server
        .request(Method::GET, path)
        .header("accept-encoding", encoding)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let vary: Vec<_> = response.headers().get_all("vary").iter().collect();
    assert!(
        vary.iter()
            .any(|v| v.to_str().unwrap().contains("accept-encoding")),
        "{vary:?}"
    );
    let encoded = response
        .headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_owned());
    (encoded, response.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn large_bodies_are_compressed_as_the_client_asks_and_small_ones_are_not() {
    let server = Running::start(1, 100, false, ApiSettings::default()).await;
    let page = "/users/?limit=100";
    let plain = server
        .request(Method::GET, page)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    assert!(plain.len() > 2048, "{}", plain.len());

    let (encoding, gzipped) = fetch_encoded(&server, page, "gzip").await;
    assert_eq!(encoding.as_deref(), Some("gzip"));
    assert!(gzipped.len() < plain.len() / 2, "{}", gzipped.len());
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gzipped[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain);

    let (encoding, brotli) = fetch_encoded(&server, page, "br").await;
    assert_eq!(encoding.as_deref(), Some("br"));
    let mut unbrotlied = Vec::new();
    brotli_decompressor::Decompressor::new(&brotli[..], 4096)
        .read_to_end(&mut unbrotlied)
        .unwrap();
    assert_eq!(unbrotlied, plain);

    let small = server
        .request(Method::GET, "/users/1")
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert!(!small.headers().contains_key("content-encoding"));
    assert_eq!(small.json::<Value>().await.unwrap()["id"], 1);
}

fn assert_no_cors_headers(response: &reqwest::Response) {
    let cors: Vec<_> = response
        .headers()
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .collect();
    assert!(cors.is_empty(), "{cors:?}");
}
