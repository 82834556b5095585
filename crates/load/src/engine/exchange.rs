//! One request on a user's connection: connect when needed, send the prepared bytes, read
//! the response, check the assertions, and measure it all as a [`Sample`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use super::PreparedRequest;
use crate::assertion::check_assertions;
use crate::http1::{Connection, ExchangeError};
use crate::stats::{ErrorKind, Sample};

/// Sends one request on `connection` (connecting when it is empty) and measures it: the
/// sample (times from `start`, the run's beginning, and from `due`) and when it ended.
pub async fn measure(
    connection: &mut Option<Link>,
    step: &PreparedRequest,
    due: Instant,
    start: Instant,
) -> Measured {
    let request = &step.request;
    let sent = Instant::now();
    // From `sent`, not a new reading of the clock: this is the per-request hot path. The
    // timeout is at most a year (checked when the config is read), far from overflowing.
    let deadline = sent.checked_add(request.timeout).unwrap_or(sent);
    let outcome = match tokio::time::timeout_at(deadline, exchange(connection, step, sent)).await {
        Ok(outcome) => outcome,
        Err(_) => {
            // The response may still come on this connection: never reuse it.
            *connection = None;
            Err(RequestFailure::new(
                ErrorKind::Timeout,
                format!("no response within {:?}", request.timeout),
            ))
        }
    };
    let ended = Instant::now();
    let (status, latency, opening, bytes, mut error, body, headers) = match outcome {
        Ok(done) => (
            done.status,
            done.latency,
            done.opening,
            done.bytes,
            done.error,
            done.body,
            done.headers,
        ),
        Err(failure) => {
            *connection = None;
            (
                0,
                ended - sent,
                failure.opening,
                0,
                Some((failure.kind, failure.message)),
                Vec::new(),
                http::HeaderMap::new(),
            )
        }
    };
    // Assertions are checked after the response is complete: the time they take (a JSON
    // path over a large body can take seconds) is the generator's, not the server's.
    let mut check_time = Duration::ZERO;
    if error.is_none()
        && (!request.assertions.is_empty()
            || !request.json_assertions.is_empty()
            || !request.xpath_assertions.is_empty())
    {
        error = check(request, status, &headers, &body);
        check_time = ended.elapsed();
    }
    // JMeter's Duration and Size Assertions, on what was measured.
    if error.is_none() {
        let took = ended - sent;
        let slow = request
            .max_duration
            .filter(|limit| took > *limit)
            .map(|limit| {
                format!(
                    "assertion failed: the response took {} ms, over {} ms",
                    took.as_millis(),
                    limit.as_millis()
                )
            });
        error = slow
            .or_else(|| request.size_check.and_then(|c| c.check(bytes)))
            .map(|m| (ErrorKind::Assertion, Arc::from(m)));
    }
    let sample = Sample {
        label: request.label,
        due: due.saturating_duration_since(start),
        response_time: ended.saturating_duration_since(due),
        service_time: ended - sent,
        latency,
        connect_time: opening.connect,
        tls_time: opening.tls,
        status,
        bytes,
        error,
        check_time,
    };
    Measured {
        sample,
        ended,
        body,
        headers,
    }
}

/// The first assertion of `request` the response fails, as a sample's error.
fn check(
    request: &crate::plan::Request,
    status: u16,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Option<(ErrorKind, Arc<str>)> {
    check_assertions(&request.assertions, status, headers, body)
        .or_else(|| request.json_assertions.iter().find_map(|a| a.check(body)))
        .or_else(|| request.xpath_assertions.iter().find_map(|a| a.check(body)))
        .map(|m| (ErrorKind::Assertion, Arc::from(m)))
}

/// One measured request: its sample, when it ended, and the parts of the response kept.
pub struct Measured {
    /// The sample.
    pub sample: Sample,
    /// When it ended.
    pub ended: Instant,
    /// The body, when kept (else empty).
    pub body: Vec<u8>,
    /// The headers, when kept (else empty).
    pub headers: http::HeaderMap,
}

/// An open connection, plain or over TLS. Matched once per request; everything below is
/// compiled for each stream type.
pub enum Link {
    /// `http://`.
    Plain(Connection<TcpStream>),
    /// `https://`, after the handshake.
    Tls(Box<Connection<TlsStream<TcpStream>>>),
}

/// Where a connection goes: the address and, over TLS, the server name it was opened for.
type Destination = (Option<SocketAddr>, Option<ServerName<'static>>);

/// Most connections a user keeps open at once.
const MAX_OPEN: usize = 16;

/// A user's connections, one per destination (scenarios usually have one).
#[derive(Default)]
pub struct Connections {
    open: Vec<(Destination, Option<Link>)>,
}

impl Connections {
    /// The connection slot for `step`'s destination, created empty on first use.
    pub fn slot(&mut self, step: &PreparedRequest) -> &mut Option<Link> {
        let name = step.tls.as_ref().map(|tls| &tls.name);
        let index = match self
            .open
            .iter()
            .position(|((a, n), _)| *a == step.address && n.as_ref() == name)
        {
            Some(index) => index,
            None => {
                // URLs decided at run time may name many hosts: keep the latest few open.
                if self.open.len() == MAX_OPEN {
                    self.open.remove(0);
                }
                self.open.push(((step.address, name.cloned()), None));
                self.open.len() - 1
            }
        };
        &mut self.open[index].1
    }
}

/// Time spent opening a connection: TCP connect plus TLS handshake (`connect`, as Taurus
/// counts it) and the handshake alone (`tls`).
#[derive(Clone, Copy, Default)]
struct Opening {
    connect: Duration,
    tls: Duration,
}

struct Exchanged {
    status: u16,
    latency: Duration,
    opening: Opening,
    bytes: u64,
    error: Option<(ErrorKind, Arc<str>)>,
    /// The body, when kept (for assertions or extractors).
    body: Vec<u8>,
    /// The headers, when kept (for assertions, cookies, redirects).
    headers: http::HeaderMap,
}

struct RequestFailure {
    kind: ErrorKind,
    message: Arc<str>,
    opening: Opening,
}

impl RequestFailure {
    fn new(kind: ErrorKind, message: impl Into<Arc<str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            opening: Opening::default(),
        }
    }
}

/// Opens a connection for `step` (with its TLS handshake for https), adding the time spent
/// to `opening`, counted from `began`.
async fn connect(
    step: &PreparedRequest,
    began: Instant,
    opening: &mut Opening,
) -> Result<Link, RequestFailure> {
    let address = step.address.ok_or_else(|| {
        RequestFailure::new(
            ErrorKind::Connect,
            format!("cannot resolve {}", step.request.host),
        )
    })?;
    step.connects.begun.fetch_add(1, Ordering::Relaxed);
    let _ = step.connects.first_address.set(address);
    let tcp = TcpStream::connect(address).await;
    let connected = Instant::now();
    if tcp.is_ok() {
        step.connects.established.fetch_add(1, Ordering::Relaxed);
    }
    let stream = tcp.map_err(|e| {
        opening.connect += connected - began;
        connect_failure(address, &e)
    })?;
    let Some(tls) = &step.tls else {
        opening.connect += connected - began;
        return Ok(Link::Plain(Connection::new(stream)));
    };
    let _ = stream.set_nodelay(true);
    let handshake = tls.connector.connect(tls.name.clone(), stream).await;
    let done = Instant::now();
    opening.connect += done - began;
    opening.tls += done - connected;
    let stream = handshake.map_err(|err| {
        RequestFailure::new(
            ErrorKind::Connect,
            crate::tls::handshake_failure(&step.request.host, &err, &tls.ca_certs),
        )
    })?;
    Ok(Link::Tls(Box::new(Connection::over(stream))))
}

/// Why a connect failed: the machine running out of files or ports is its own kind (the
/// target is not at fault, and the fix is here: `ulimit -n`, fewer users).
fn connect_failure(address: SocketAddr, err: &std::io::Error) -> RequestFailure {
    /// EMFILE, ENFILE: the process's or the system's open files.
    const OUT_OF_FILES: [i32; 2] = [24, 23];
    /// EADDRNOTAVAIL: no free local port for another connection.
    const OUT_OF_PORTS: i32 = 99;
    match err.raw_os_error() {
        Some(code) if OUT_OF_FILES.contains(&code) => RequestFailure::new(
            ErrorKind::Resources,
            "cannot open a connection: too many open files (raise `ulimit -n` or use fewer users)",
        ),
        Some(OUT_OF_PORTS) => RequestFailure::new(
            ErrorKind::Resources,
            format!("cannot connect to {address}: no free local port (fewer users, or keep-alive)"),
        ),
        _ => RequestFailure::new(
            ErrorKind::Connect,
            format!("cannot connect to {address}: {}", err.kind()),
        ),
    }
}

/// Sends one request and reads the whole response, connecting first when needed. A reused
/// connection that the server had closed is retried once on a new one.
async fn exchange(
    connection: &mut Option<Link>,
    step: &PreparedRequest,
    sent: Instant,
) -> Result<Exchanged, RequestFailure> {
    let mut opening = Opening::default();
    let mut reused = true;
    // When the current attempt began: the response's latency counts from there.
    let mut began = sent;
    loop {
        if connection.is_none() {
            let opened = connect(step, began, &mut opening).await.map_err(|mut f| {
                f.opening = opening;
                f
            })?;
            began = Instant::now();
            *connection = Some(opened);
            reused = false;
        }
        let attempt = match connection.as_mut() {
            Some(Link::Plain(conn)) => send_and_read(conn, step, reused, began).await,
            Some(Link::Tls(conn)) => send_and_read(conn.as_mut(), step, reused, began).await,
            None => continue,
        };
        match attempt {
            Ok((mut exchanged, reusable)) => {
                if !(step.request.keepalive && reusable) {
                    *connection = None;
                }
                exchanged.opening = opening;
                return Ok(exchanged);
            }
            Err(Attempt::Retry) => {
                *connection = None;
                began = Instant::now();
            }
            Err(Attempt::Failed(failure)) => {
                return Err(RequestFailure { opening, ..failure });
            }
        }
    }
}

/// Why one attempt on a connection did not give a response.
enum Attempt {
    /// The reused connection had been closed by the server: try a new one.
    Retry,
    /// The request failed.
    Failed(RequestFailure),
}

/// One request on an open connection: the exchange's figures and whether the connection can
/// carry the next request.
async fn send_and_read<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
    step: &PreparedRequest,
    reused: bool,
    sent: Instant,
) -> Result<(Exchanged, bool), Attempt> {
    let mut latency = Duration::ZERO;
    let response = connection
        .exchange(&step.wire, &step.request.method, step.parts, || {
            latency = sent.elapsed();
        })
        .await;
    let response = match response {
        Ok(response) => response,
        Err(ExchangeError::ClosedBeforeResponse) if reused => return Err(Attempt::Retry),
        Err(ExchangeError::ClosedBeforeResponse) => {
            return Err(Attempt::Failed(RequestFailure::new(
                ErrorKind::Io,
                "request failed: connection closed before a response",
            )));
        }
        Err(ExchangeError::Io(err)) => {
            return Err(Attempt::Failed(RequestFailure::new(
                ErrorKind::Io,
                format!("request failed: {err}"),
            )));
        }
        Err(ExchangeError::BodyTooLarge(limit)) => {
            return Err(Attempt::Failed(RequestFailure::new(
                ErrorKind::Assertion,
                format!(
                    "the body is over the {limit} bytes an assertion may read (assert-body-limit)"
                ),
            )));
        }
        Err(ExchangeError::Malformed(message)) => {
            return Err(Attempt::Failed(RequestFailure::new(
                ErrorKind::Io,
                format!("invalid response: {message}"),
            )));
        }
    };
    let status = response.status;
    let error = if status >= 400 {
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|code| code.canonical_reason())
            .unwrap_or("");
        let text = format!("HTTP {status} {reason}");
        Some((ErrorKind::Http, Arc::from(text.trim_end())))
    } else {
        None
    };
    Ok((
        Exchanged {
            status,
            latency,
            opening: Opening::default(),
            bytes: response.body_bytes,
            error,
            body: response.body,
            headers: response.headers,
        },
        response.reusable,
    ))
}
