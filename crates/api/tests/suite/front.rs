//! The connection front (plain reads answered without hyper) on raw sockets: its answers
//! are the router's, a connection moves to hyper at its first request of another kind with
//! nothing lost or reordered, and heads that arrive in pieces are still answered.

use crate::common;

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use peregrine_api::{ApiSettings, Limits};
use peregrine_store::{DatabaseUrl, UserStore};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const TOKEN: &str = "front-token-1234";

/// A server on a fresh SQLite file with `users` users, stopped when dropped.
struct Running {
    address: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn serve(users: usize) -> Running {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("sqlite://{}", dir.path().join("front.db").display());
    let url: DatabaseUrl = url.parse().unwrap_or_else(|e| panic!("{e}"));
    let store = UserStore::open(&url, 2).unwrap_or_else(|e| panic!("{e}"));
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    let settings = ApiSettings {
        api_token: Some(TOKEN.into()),
        ..ApiSettings::default()
    };
    let app = peregrine_api::app(Arc::new(store), settings);
    let (address, stop) = common::serve(app, Limits::default());
    let client = reqwest::Client::new();
    for i in 0..users {
        let created = client
            .post(format!("http://{address}/users"))
            .bearer_auth(TOKEN)
            .json(&json!({ "username": format!("user-number-{i:04}") }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(created.status(), 201);
    }
    Running {
        address,
        _stop: stop,
        _dir: dir,
    }
}

/// One response as it came over the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body, gzip-decoded when it says it is gzip.
    fn decoded(&self) -> Vec<u8> {
        match self.header("content-encoding") {
            Some("gzip") => {
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(&self.body[..])
                    .read_to_end(&mut plain)
                    .unwrap_or_else(|e| panic!("{e}"));
                plain
            }
            _ => self.body.clone(),
        }
    }
}

/// Reads `count` responses from `stream` (each with a content-length or chunked body).
async fn answers(stream: &mut TcpStream, count: usize) -> Vec<Answer> {
    let mut bytes = Vec::new();
    let mut answers = Vec::new();
    while answers.len() < count {
        match parse_answer(&bytes) {
            Some((answer, used)) => {
                bytes.drain(..used);
                answers.push(answer);
            }
            None => {
                let mut chunk = [0u8; 16 * 1024];
                let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk));
                let n = read
                    .await
                    .unwrap_or_else(|_| panic!("no answer within 10 s; got {answers:?}"))
                    .unwrap_or_else(|e| panic!("{e}"));
                assert!(n > 0, "closed after {} answers", answers.len());
                bytes.extend_from_slice(&chunk[..n]);
            }
        }
    }
    assert!(bytes.is_empty(), "more bytes than answers");
    answers
}

/// The first whole response in `bytes` and its length.
fn parse_answer(bytes: &[u8]) -> Option<(Answer, usize)> {
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut fields);
    let head = match response.parse(bytes).unwrap_or_else(|e| panic!("{e}")) {
        httparse::Status::Complete(head) => head,
        httparse::Status::Partial => return None,
    };
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|f| {
            let value = String::from_utf8_lossy(f.value).into_owned();
            (f.name.to_ascii_lowercase(), value)
        })
        .collect();
    let status = response.code.unwrap_or_default();
    let rest = &bytes[head..];
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let (body, used) = if find("transfer-encoding").is_some_and(|v| v == "chunked") {
        dechunk(rest)?
    } else {
        let length: usize = find("content-length").map_or(0, |v| v.parse().unwrap_or(0));
        (rest.get(..length)?.to_vec(), length)
    };
    Some((
        Answer {
            status,
            headers,
            body,
        },
        head + used,
    ))
}

/// A chunked body at the start of `bytes` and its length on the wire.
fn dechunk(bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + bytes.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&bytes[at..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            bytes.get(at..at + 2)?;
            return Some((body, at + 2));
        }
        body.extend_from_slice(bytes.get(at..at + size)?);
        at += size + 2;
    }
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: front\r\n{extra}\r\n")
}

/// Sends `request` on a new connection and reads its one answer.
async fn fresh(address: SocketAddr, request: &str) -> Answer {
    let mut stream = TcpStream::connect(address)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stream
        .write_all(request.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    answers(&mut stream, 1).await.remove(0)
}

/// On a fresh connection a plain read is the front's, its percent-encoded twin is hyper's
/// and the router's: they must agree on everything a client sees, compressed or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_reads_answer_on_a_fresh_connection_as_the_router_does() {
    let app = serve(40).await;
    let gzip = "Accept-Encoding: gzip\r\n";
    let cases = [
        ("/users", "/users?unknown=1", ""),
        ("/users/", "/users/?limit=%31%30%30", gzip),
        ("/users?limit=2", "/users?limit=%32", ""),
        ("/users/?after=1&limit=1", "/users/?limit=1&after=%31", gzip),
        ("/users/1", "/users/%31", ""),
        ("/users/2/", "/users/%32/", gzip),
        ("/users/99", "/users/%39%39", ""),
        ("/users/99999999999", "/users/%399999999999", ""),
        ("/users?limit=0", "/users?limit=%30", ""),
        ("/users?limit=5000", "/users?limit=500%30", ""),
    ];
    for (plain, routed, encoding) in cases {
        // One request id for both, so that problem bodies (which name it) can be compared.
        let extra = format!("{encoding}X-Request-Id: pair\r\n");
        let front = fresh(app.address, &get(plain, &extra)).await;
        let router = fresh(app.address, &get(routed, &extra)).await;
        assert_eq!(front.status, router.status, "{plain} vs {routed}");
        for name in ["content-type", "link", "vary", "content-encoding"] {
            assert_eq!(
                front.header(name),
                router.header(name),
                "{name} of {plain} vs {routed}"
            );
        }
        assert_eq!(front.decoded(), router.decoded(), "{plain} vs {routed}");
        for answer in [&front, &router] {
            assert_eq!(answer.header("x-request-id"), Some("pair"), "{answer:?}");
            assert!(answer.header("date").is_some(), "{answer:?}");
        }
        if front.status == 200 {
            let body: Value =
                serde_json::from_slice(&front.decoded()).unwrap_or_else(|e| panic!("{plain}: {e}"));
            assert!(body.is_array() || body.is_object(), "{plain}: {body}");
        }
    }
    // The 40 users' page is large enough to be compressed when asked, and is then.
    let compressed = fresh(app.address, &get("/users/", gzip)).await;
    assert_eq!(compressed.header("content-encoding"), Some("gzip"));
    let users: Value = serde_json::from_slice(&compressed.decoded()).unwrap_or_default();
    assert_eq!(users.as_array().map(Vec::len), Some(40));
    // The client's request id comes back.
    let named = fresh(app.address, &get("/users/3", "X-Request-Id: abc-123\r\n")).await;
    assert_eq!(named.header("x-request-id"), Some("abc-123"));
}

/// Plain reads, then a write (hyper's from then on), then reads again on one connection;
/// and pipelined requests of both kinds in one write: every answer comes, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_moves_to_hyper_at_its_first_request_of_another_kind() {
    let app = serve(3).await;
    let mut stream = TcpStream::connect(app.address)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let body = json!({ "username": "written-between-reads" }).to_string();
    let post = format!(
        "POST /users HTTP/1.1\r\nHost: front\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let steps = [
        (get("/users/1", ""), 200),
        (get("/users/", ""), 200),
        (post, 201),
        (get("/users/4", ""), 200),
        (get("/healthz", ""), 200),
        (get("/users/2", ""), 200),
    ];
    for (request, status) in &steps {
        stream
            .write_all(request.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let answer = answers(&mut stream, 1).await.remove(0);
        assert_eq!(answer.status, *status, "{request}: {answer:?}");
    }

    let mut pipelined = TcpStream::connect(app.address)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let batch = [
        get("/users/1", ""),
        get("/users/77", ""),
        get("/users/2", "X-Request-Id: second\r\n"),
        get("/openapi.json", ""),
        get("/users/3", ""),
    ]
    .concat();
    pipelined
        .write_all(batch.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = answers(&mut pipelined, 5).await;
    let statuses: Vec<u16> = got.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 404, 200, 200, 200]);
    assert_eq!(got[2].header("x-request-id"), Some("second"));
    let ids: Vec<Value> = [0, 2, 4]
        .iter()
        .map(|&i| serde_json::from_slice::<Value>(&got[i].body).unwrap_or_default()["id"].clone())
        .collect();
    assert_eq!(ids, [json!(1), json!(2), json!(3)]);
}

/// A head that arrives in pieces is answered, and so is one the rules reject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_in_pieces_and_bad_heads_are_answered() {
    let app = serve(1).await;
    let mut stream = TcpStream::connect(app.address)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for piece in ["GET /users/1 HTTP/1.1\r\nHo", "st: front\r\n", "\r\n"] {
        stream
            .write_all(piece.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let answer = answers(&mut stream, 1).await.remove(0);
    assert_eq!(answer.status, 200, "{answer:?}");
    // Still served after the split head.
    stream
        .write_all(get("/users/1", "").as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answers(&mut stream, 1).await[0].status, 200);

    let no_host = fresh(app.address, "GET /users/1 HTTP/1.1\r\n\r\n").await;
    assert_eq!(no_host.status, 400);
    assert_eq!(
        no_host.header("content-type"),
        Some("application/problem+json")
    );
}
