//! A tiny HTTP/1.1 app on 127.0.0.1 with a login flow, for testing the load generator's
//! variables, extractors and logic blocks end to end: `POST /login` with
//! `{"username":U,"password":"secret"}` answers `{"token":"tok-U"}`, `GET /me` wants
//! `Authorization: Bearer tok-U`, `GET /items` lists three ids, `/session/start` sets the
//! cookie `sid=abc` that `/session/check` wants, `/redirect/N` redirects (302) to
//! `/redirect/N-1` down to `/redirect/0`, `/page` is an HTML page,
//! `/catalog.xml` an XML document; any other path answers 200 `ok`. Every request is
//! recorded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// One request the app received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `Cookie` header, if any.
    pub cookie: Option<String>,
    /// The body, as text.
    pub body: String,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// The running app; dropping it stops it.
pub struct LoginApp {
    address: SocketAddr,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LoginApp {
    /// Starts the app on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(listener) => listener,
            Err(err) => panic!("cannot bind a test server: {err}"),
        };
        let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&recorded);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let log = Arc::clone(&log);
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let entry = Recorded {
                            method: parts.method.to_string(),
                            target: parts
                                .uri
                                .path_and_query()
                                .map_or("/", |p| p.as_str())
                                .to_owned(),
                            authorization: parts
                                .headers
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned),
                            cookie: parts
                                .headers
                                .get("cookie")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned),
                            body: String::from_utf8_lossy(&body).into_owned(),
                            at: std::time::Instant::now(),
                        };
                        let (status, text) = answer(&entry);
                        let extra = extra_header(&entry);
                        log.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(entry);
                        let mut response = hyper::Response::builder()
                            .status(status)
                            .header("content-type", "application/json");
                        if let Some((name, value)) = extra {
                            response = response.header(name, value);
                        }
                        let response = response.body(Full::new(Bytes::from(text)));
                        Ok::<_, Infallible>(response.unwrap_or_default())
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            address,
            recorded,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every request received so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for LoginApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(request: &Recorded) -> (u16, String) {
    let path = request.target.split('?').next().unwrap_or("");
    match (request.method.as_str(), path) {
        ("POST", "/login") => match json_field(&request.body, "username") {
            Some(user) if json_field(&request.body, "password").as_deref() == Some("secret") => (
                200,
                format!(r#"{{"token":"tok-{user}","user":{{"name":"{user}"}}}}"#),
            ),
            _ => (401, r#"{"error":"bad credentials"}"#.into()),
        },
        ("GET", "/me") => match request
            .authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer tok-"))
        {
            Some(user) => (200, format!(r#"{{"name":"{user}"}}"#)),
            None => (401, r#"{"error":"no token"}"#.into()),
        },
        ("GET", "/session/check")
            if request
                .cookie
                .as_deref()
                .is_some_and(|c| c.contains("sid=abc")) =>
        {
            (200, "in session".into())
        }
        ("GET", "/session/check") => (401, "no session".into()),
        ("GET", p) if p.starts_with("/redirect/") && p != "/redirect/0" => (302, String::new()),
        ("GET", "/items") => (200, r#"[{"id":1},{"id":2},{"id":3}]"#.into()),
        ("GET", "/page") => (200, PAGE.into()),
        ("GET", "/catalog.xml") => (200, CATALOG.into()),
        _ => (200, "ok".into()),
    }
}

/// An HTML page (not well-formed XML: `<br>`, an unquoted attribute) for CSS and XPath
/// extractors.
const PAGE: &str = r#"<!DOCTYPE html>
<html><head><title>Shop</title></head>
<body><h1>  Welcome
  back </h1><br>
<form action=/buy><input type="hidden" name="csrf" value="c-42"><input name=qty></form>
<ul><li><a class="item" href="/items/1">One</a></li><li><a class="item" href="/items/2">Two</a></li></ul>
</body></html>"#;

/// An XML document for XPath extractors.
const CATALOG: &str = r#"<?xml version="1.0"?>
<catalog><book id="b1"><title>Rust</title></book><book id="b2"><title>Go</title></book></catalog>"#;

/// The one extra header a route sends: the session cookie or a redirect's location.
fn extra_header(request: &Recorded) -> Option<(&'static str, String)> {
    let path = request.target.split('?').next().unwrap_or("");
    if path == "/session/start" {
        return Some(("set-cookie", "sid=abc; Path=/; HttpOnly".into()));
    }
    let hops: u32 = path.strip_prefix("/redirect/")?.parse().ok()?;
    (hops > 0).then(|| ("location", format!("/redirect/{}", hops - 1)))
}

/// The string value of `"name":"…"` in a flat JSON body.
fn json_field(body: &str, name: &str) -> Option<String> {
    let compact: String = body.split_whitespace().collect();
    let start = compact.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let end = compact[start..].find('"')?;
    Some(compact[start..start + end].to_owned())
}
