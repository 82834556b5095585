//! The front of every connection: the plain reads (see `plain_read`), which carry the
//! traffic, parsed and answered without hyper. A connection here holds no buffer while it
//! waits for a request (hyper keeps two 8 KiB buffers for a connection's whole life): a
//! request's bytes are read into the thread's scratch buffer and copied out at their size,
//! its answer is written from a buffer freed once it is sent, and the idle timeout is kept
//! by the server's sweep rather than by a timer per request.
//!
//! What a connection holds is bounded whether or not its client reads: it reads its next
//! bytes (at most 8 KiB) only once the answers to the last ones are written, and it gathers
//! answers into one write up to 32 KiB (64 KiB with the last one), writing what it has
//! gathered before adding an answer that would take it past 64 KiB; so a client that
//! never reads holds at most 64 KiB, or 32 KiB and one answer, counted against the
//! process's total of unsent bytes while it waits (the kernel holds at most its fixed
//! send buffer besides).
//!
//! Only a request whose whole head has arrived and that is plain in every way is answered
//! here: `GET`, HTTP/1.1, exactly one `Host`, no `Content-Length`, `Transfer-Encoding`,
//! `Expect` or `Upgrade`, no `Connection` but `keep-alive`, a head within the limit, and a
//! plain-read target. At the first request of any other kind the connection is handed to
//! hyper with the bytes read so far, and hyper serves it from then on: every rule and limit
//! it enforces applies to everything but the plain reads. The answer itself comes from the
//! same code as the router's handlers ([`PlainRead::answered`]) around the same
//! [`Exchange`]; only its bytes are written here, by `wire` (with `content-length`, and
//! hyper's `date`). The front depends on hyper's path (`hyper_path`), the exchange and
//! admission; none of them reaches back.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::server::conn::http1;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;

use super::admission::{OpenConnection, Tracked};
use super::exchange::{Exchange, Worker, host_rule};
use super::hyper_path::{self, Handlers};
use super::{metrics, wire};
use crate::plain_read::{Answered, PlainRead};
use crate::request_id::X_REQUEST_ID;
use crate::routes::Route;
use crate::state::AppState;
use crate::users::JSON_VALUE as JSON;

/// Bytes read at once: heads larger than this are hyper's to read.
const READ_BYTES: usize = 8 * 1024;
/// How long a connection told to close before its first request still waits for it.
const FIRST_REQUEST_AT_CLOSE: Duration = Duration::from_millis(100);
/// Headers a plain read may have; more go to hyper (which allows 100).
const MAX_HEADERS: usize = 64;
/// Answers to pipelined requests are gathered into one write up to this size.
const GATHER_BYTES: usize = 64 * 1024;
/// The names of a JSON answer's headers besides the request id (statics: nothing is made or
/// dropped per answer).
static JSON_HEADERS: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::LINK,
    header::VARY,
    header::CONNECTION,
];
/// `Vary` as the compression layer adds it.
static VARY_ACCEPT_ENCODING: HeaderValue = HeaderValue::from_static("accept-encoding");
/// `Connection` on the last answer of a connection.
static CLOSE: HeaderValue = HeaderValue::from_static("close");
/// Headers that make a request more than a plain read, whatever their value.
const NOT_PLAIN: [&str; 4] = ["content-length", "transfer-encoding", "expect", "upgrade"];

/// Serves one connection until it closes, or until it is told to close, then gracefully
/// (an in-flight request is answered first). The front answers plain reads; the first
/// request of any other kind hands the connection to hyper for the rest of its life.
pub(super) async fn serve_connection(
    http: http1::Builder,
    mut tcp: TcpStream,
    handlers: Handlers,
    tracked: Arc<Tracked>,
) {
    let _open = OpenConnection(Arc::clone(&tracked));
    let carried = match &handlers.plain_reads {
        Some(state) => match serve(&mut tcp, state, &handlers.worker, &tracked).await {
            Ended::Closed => return,
            Ended::HandOff(carried) => carried,
        },
        None => Vec::new(),
    };
    // Boxed: a connection the front serves does not carry hyper's state while it idles.
    Box::pin(hyper_path::serve(http, carried, tcp, handlers, tracked)).await;
}

/// How the front left a connection.
enum Ended {
    /// Closed: by the client, an error, the idle timeout, shedding or the shutdown.
    Closed,
    /// A request that is not a plain read came: hyper serves the rest, starting with
    /// these bytes.
    HandOff(Vec<u8>),
}

/// Answers the plain reads that come on `tcp` until it closes or a request of another kind
/// comes.
async fn serve(
    tcp: &mut TcpStream,
    state: &AppState,
    worker: &Arc<Worker>,
    tracked: &Arc<Tracked>,
) -> Ended {
    // Bytes read and not yet answered.
    let mut carried;
    let mut first = true;
    loop {
        match read(tcp, tracked, first).await {
            Some(bytes) => carried = bytes,
            None => return Ended::Closed,
        }
        first = false;
        // Boxed: while the connection idles, its future holds only the wait for bytes.
        match Box::pin(answer_all(tcp, state, worker, tracked, &mut carried)).await {
            After::Idle => {}
            After::Close => return Ended::Closed,
            After::HandOff => return Ended::HandOff(carried),
        }
    }
}

/// What comes after the requests of one read were answered.
enum After {
    /// Wait for the next request.
    Idle,
    Close,
    /// `carried` starts with a request the front does not answer.
    HandOff,
}

/// Answers the requests at the start of `carried` (one, or several pipelined) and writes
/// the answers, gathered.
async fn answer_all(
    tcp: &TcpStream,
    state: &AppState,
    worker: &Arc<Worker>,
    tracked: &Arc<Tracked>,
    carried: &mut Vec<u8>,
) -> After {
    let limits = *tracked.limits();
    let write_deadline = limits.idle_timeout;
    let mut out = Vec::new();
    while !carried.is_empty() {
        let Some(head) = Head::parse(
            carried,
            limits.max_head_bytes,
            tracked.metrics_here(),
            state.settings.max_page_size,
        ) else {
            // Answers already made go first: hyper answers what comes after them.
            return match write_all(tcp, &out, write_deadline, tracked).await {
                Ok(()) => After::HandOff,
                Err(_) => After::Close,
            };
        };
        // Freed (or kept for a pipelined request) before the answer is awaited.
        match head.len == carried.len() {
            true => *carried = Vec::new(),
            false => drop(carried.drain(..head.len)),
        }
        let Some(close) = answer(head, state, worker, tracked, tcp, &mut out).await else {
            return After::Close;
        };
        if close {
            let _ = write_all(tcp, &out, write_deadline, tracked).await;
            return After::Close;
        }
        // Written at half the gathering size, so that the next answer does not wait with
        // more than that beside it (see `gather_room`).
        if out.len() >= GATHER_BYTES / 2 {
            if write_all(tcp, &out, write_deadline, tracked).await.is_err() {
                return After::Close;
            }
            // Not kept at its size for the next answers: a large answer's buffer goes.
            out = Vec::new();
        }
    }
    if write_all(tcp, &out, write_deadline, tracked).await.is_err() || tracked.is_closing() {
        return After::Close;
    }
    After::Idle
}

/// Answers the request `head` into `out`; whether the connection closes after it, `None`
/// when the answer could not be made.
async fn answer(
    head: Head,
    state: &AppState,
    worker: &Arc<Worker>,
    tracked: &Arc<Tracked>,
    tcp: &TcpStream,
    out: &mut Vec<u8>,
) -> Option<bool> {
    let exchange = Exchange::begin(
        worker,
        Arc::clone(tracked),
        head.route,
        metrics::method_index(&axum::http::Method::GET),
        head.client_id.as_ref(),
    );
    // Boxed where it is made: moved into the wrappers by value, its 2 KiB would be copied
    // each time.
    let answered = exchange.run(Box::pin(head.read.answered(state))).await;
    let closing = tracked.is_closing();
    match answered {
        // Written here, as the router's path would write it.
        Answered::Json { body, link }
            if head.accept_encoding.is_empty() || !Answered::json_varies(&body) =>
        {
            let close = closing || exchange.draining();
            let id = exchange.record(StatusCode::OK, None);
            gather_room(tcp, out, body.len(), tracked).await.ok()?;
            // The headers the router's path gives this answer: `json_response`'s, `vary`
            // when the compression layer would add it, and what `Exchange::finish` adds.
            let [content_type, link_name, vary, connection] = &JSON_HEADERS;
            let headers = [
                Some((content_type, &JSON)),
                link.as_ref().map(|link| (link_name, link)),
                Answered::json_varies(&body).then_some((vary, &VARY_ACCEPT_ENCODING)),
                close.then_some((connection, &CLOSE)),
                Some((&X_REQUEST_ID, &id)),
            ];
            wire::write_answer(out, StatusCode::OK, headers.into_iter().flatten(), &body);
            Some(close)
        }
        answered => {
            let mut response = answered.into_response(head.accept_encoding).await;
            exchange.finish(&mut response);
            if closing {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, CLOSE.clone());
            }
            let close = says_close(response.headers());
            let (parts, body) = response.into_parts();
            let body = body.collect().await.ok()?.to_bytes();
            gather_room(tcp, out, body.len(), tracked).await.ok()?;
            let headers = parts
                .headers
                .iter()
                .filter(|(name, _)| !wire::framing(name));
            wire::write_answer(out, parts.status, headers, &body);
            Some(close)
        }
    }
}

/// Waits for the next bytes of the connection (idle meanwhile, for the sweep) and reads
/// them; `None` when it closed, failed or was told to close with nothing sent. A request
/// already sent when it is told to close (by the shutdown, say) is still read and answered
/// (with `Connection: close`): the client cannot know it came too late. So is the first
/// request of a `first` one (accepted in the instant the listeners closed) that comes
/// within [`FIRST_REQUEST_AT_CLOSE`].
async fn read(tcp: &mut TcpStream, tracked: &Tracked, first: bool) -> Option<Vec<u8>> {
    tracked.set_idle(true);
    let read = tokio::select! {
        biased;
        read = std::future::poll_fn(|cx| read_into_scratch(tcp, cx)) => read.ok(),
        () = tracked.closed() => match (tracked.is_aborted(), first) {
            (true, _) => None,
            (false, true) => {
                let read = std::future::poll_fn(|cx| read_into_scratch(tcp, cx));
                tokio::time::timeout(FIRST_REQUEST_AT_CLOSE, read).await.ok().and_then(Result::ok)
            }
            (false, false) => already_sent(tcp),
        },
    };
    tracked.set_idle(false);
    read.filter(|bytes| !bytes.is_empty())
}

/// What the client has sent and the connection not read, if anything: a read of the
/// socket itself, since the runtime may not have seen those bytes arrive yet.
fn already_sent(tcp: &TcpStream) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let socket = socket2::SockRef::from(tcp);
    let mut socket: &socket2::Socket = &socket;
    SCRATCH.with_borrow_mut(|scratch| {
        if scratch.len() < READ_BYTES {
            scratch.resize(READ_BYTES, 0);
        }
        match socket.read(scratch) {
            Ok(read) if read > 0 => scratch.get(..read).map(<[u8]>::to_vec),
            _ => None,
        }
    })
}

thread_local! {
    /// Where this thread's connections read: a request's bytes are copied out of it at
    /// their size, so no connection holds a read buffer of its own, and this one stays in
    /// the cache.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads what `tcp` has, once it has something, through `AsyncRead`: a read that comes
/// back short clears the socket's readiness, so the next wait sleeps at once instead of
/// first trying a read that finds nothing (one system call per request).
fn read_into_scratch(tcp: &mut TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<Vec<u8>>> {
    SCRATCH.with_borrow_mut(|scratch| {
        if scratch.len() < READ_BYTES {
            scratch.resize(READ_BYTES, 0);
        }
        let mut buf = ReadBuf::new(scratch);
        match Pin::new(tcp).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().to_vec())),
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => Poll::Pending,
        }
    })
}

/// Writes what `out` gathered first when adding an answer of `adding` bytes would take it
/// past [`GATHER_BYTES`]: a client that does not read holds one answer or the gathered
/// ones, never both.
async fn gather_room(
    tcp: &TcpStream,
    out: &mut Vec<u8>,
    adding: usize,
    tracked: &Tracked,
) -> io::Result<()> {
    if out.is_empty() || out.len() + adding <= GATHER_BYTES {
        return Ok(());
    }
    // The answer waits in hand meanwhile: it is counted as unsent too.
    let written = write_tracked(tcp, out, adding, tracked.limits().idle_timeout, tracked).await;
    tracked.set_unsent(0, false);
    *out = Vec::new();
    written
}

/// Writes all of `bytes`, waiting at most `deadline` each time the socket is full (a
/// client that stops reading is not waited for forever). While it waits, the bytes count
/// against the process's total of unsent bytes, and the wait ends when the connection is
/// aborted (shed to bring that total back within its limit).
async fn write_all(
    tcp: &TcpStream,
    bytes: &[u8],
    deadline: Duration,
    tracked: &Tracked,
) -> io::Result<()> {
    let written = write_tracked(tcp, bytes, 0, deadline, tracked).await;
    tracked.set_unsent(0, false);
    written
}

/// [`write_all`], with `beside` bytes more held while it waits.
async fn write_tracked(
    tcp: &TcpStream,
    mut bytes: &[u8],
    beside: usize,
    deadline: Duration,
    tracked: &Tracked,
) -> io::Result<()> {
    // The whole buffer is held until it is all written.
    let held = bytes.len() + beside;
    let mut progressed = true;
    while !bytes.is_empty() {
        match tcp.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => {
                bytes = &bytes[written..];
                progressed = true;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                tracked.set_unsent(held, progressed);
                progressed = false;
                if tracked.is_aborted() {
                    return Err(io::ErrorKind::ConnectionAborted.into());
                }
                tokio::select! {
                    writable = tokio::time::timeout(deadline, tcp.writable()) => {
                        writable.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
                    }
                    () = tracked.aborted() => return Err(io::ErrorKind::ConnectionAborted.into()),
                }
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// A plain read's head, parsed: what answering it needs, owned.
struct Head {
    /// Bytes of the head.
    len: usize,
    route: Route,
    read: PlainRead,
    client_id: Option<HeaderValue>,
    accept_encoding: HeaderMap,
}

impl Head {
    /// The head at the start of `bytes` when it is whole and a plain read in every way.
    fn parse(
        bytes: &[u8],
        max_head_bytes: usize,
        metrics_here: bool,
        max_page_size: u32,
    ) -> Option<Self> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let len = match request.parse(bytes) {
            Ok(httparse::Status::Complete(len)) if len <= max_head_bytes => len,
            _ => return None,
        };
        if request.method != Some("GET") || request.version != Some(1) {
            return None;
        }
        let target = request.path?;
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        let route = Route::of(path, metrics_here);
        let read = PlainRead::of(path, query, route, max_page_size)?;
        let mut hosts = 0;
        let mut client_id = None;
        let mut accept_encoding = HeaderMap::new();
        for field in request.headers.iter() {
            let name = field.name;
            if name.eq_ignore_ascii_case("host") {
                hosts += 1;
            } else if name.eq_ignore_ascii_case("x-request-id") {
                // The first one, as `HeaderMap::get` takes it.
                if client_id.is_none() {
                    client_id = Some(HeaderValue::from_bytes(field.value).ok()?);
                }
            } else if name.eq_ignore_ascii_case("accept-encoding") {
                let value = HeaderValue::from_bytes(field.value).ok()?;
                accept_encoding.append(header::ACCEPT_ENCODING, value);
            } else if name.eq_ignore_ascii_case("connection") {
                if !field.value.eq_ignore_ascii_case(b"keep-alive") {
                    return None;
                }
            } else if NOT_PLAIN
                .iter()
                .any(|other| name.eq_ignore_ascii_case(other))
            {
                return None;
            }
        }
        host_rule(hosts, true).is_none().then_some(Self {
            len,
            route,
            read,
            client_id,
            accept_encoding,
        })
    }
}

/// Whether a response says the connection closes after it.
fn says_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|value| value.as_bytes().eq_ignore_ascii_case(b"close"))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::super::admission::Shared;
    use super::super::limits::Limits;
    use super::*;

    fn parsed(head: &str) -> Option<Head> {
        Head::parse(head.as_bytes(), 16 * 1024, false, 1000)
    }

    #[test]
    fn only_whole_plain_heads_are_the_fronts() {
        let plain = "GET /users/7 HTTP/1.1\r\nHost: a\r\nX-Request-Id: r1\r\n\r\n";
        let head = parsed(plain);
        assert!(head.as_ref().is_some_and(|h| h.len == plain.len()));
        assert_eq!(
            head.and_then(|h| h.client_id),
            Some(HeaderValue::from_static("r1"))
        );
        assert!(parsed("GET /users/?limit=5&after=2 HTTP/1.1\r\nHost: a\r\n\r\n").is_some());
        assert!(
            parsed("GET /users HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n").is_some()
        );
        for other in [
            "GET /users/7 HTTP/1.1\r\nHost: a\r\n",
            "GET /users/7 HTTP/1.0\r\nHost: a\r\n\r\n",
            "HEAD /users/7 HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST /users HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /users/7 HTTP/1.1\r\n\r\n",
            "GET /users/7 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET /users/7 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            "GET /users/7 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /users/7 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            "GET /users/7 HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n",
            "GET /users/%37 HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /users?limit=1&limit=2 HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET http://a/users/7 HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(parsed(other).is_none(), "{other:?}");
        }
        let long = format!(
            "GET /users/7 HTTP/1.1\r\nHost: a\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(100)
        );
        assert!(Head::parse(long.as_bytes(), 64, false, 1000).is_none());
    }

    /// An idle connection costs its task's future (and the socket): what is large (the
    /// answer, hyper's connection) is boxed when needed, so that 10,000 idle connections
    /// stay within a few MiB.
    #[tokio::test]
    async fn a_connections_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await;
        let (tcp, _) = listener.accept().await.unwrap();
        let shared = Shared::new(Limits::default(), true, false);
        let tracked = shared.admit(IpAddr::from([127, 0, 0, 1])).unwrap();
        let handlers = Handlers::without_plain_reads(axum::Router::new(), Worker::new(&shared));
        let connection = serve_connection(http1::Builder::new(), tcp, handlers, tracked);
        let size = std::mem::size_of_val(&connection);
        assert!(size <= 1024, "a connection's future takes {size} bytes");
        drop(client);
    }
}
