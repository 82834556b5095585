//! One request on a user's connection: connect when needed, send the prepared bytes, read
//! the response, check the assertions, and measure it all as a [`Sample`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::PreparedRequest;
use crate::assertion::check_assertions;
use crate::http1::{Connection, ExchangeError};
use crate::stats::{ErrorKind, Sample};

/// Sends one request on `connection` (connecting when it is empty) and measures it: the
/// sample (times from `start`, the run's beginning, and from `due`) and when it ended.
pub async fn measure(
    connection: &mut Option<Connection>,
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
    let (status, latency, connect_time, bytes, error, body, headers) = match outcome {
        Ok(done) => (
            done.status,
            done.latency,
            done.connect_time,
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
                failure.connect_time,
                0,
                Some((failure.kind, failure.message)),
                Vec::new(),
                http::HeaderMap::new(),
            )
        }
    };
    let sample = Sample {
        label: request.label,
        due: due.saturating_duration_since(start),
        response_time: ended.saturating_duration_since(due),
        service_time: ended - sent,
        latency,
        connect_time,
        status,
        bytes,
        error,
    };
    Measured {
        sample,
        ended,
        body,
        headers,
    }
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

/// A user's connections, one per target address (scenarios usually have one).
#[derive(Default)]
pub struct Connections {
    open: Vec<(Option<SocketAddr>, Option<Connection>)>,
}

impl Connections {
    /// The connection slot for `address`, created empty on first use.
    pub fn slot(&mut self, address: Option<SocketAddr>) -> &mut Option<Connection> {
        let index = match self.open.iter().position(|(a, _)| *a == address) {
            Some(index) => index,
            None => {
                self.open.push((address, None));
                self.open.len() - 1
            }
        };
        &mut self.open[index].1
    }
}

struct Exchanged {
    status: u16,
    latency: Duration,
    connect_time: Duration,
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
    connect_time: Duration,
}

impl RequestFailure {
    fn new(kind: ErrorKind, message: impl Into<Arc<str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            connect_time: Duration::ZERO,
        }
    }
}

async fn connect(step: &PreparedRequest) -> Result<Connection, RequestFailure> {
    let address = step.address.ok_or_else(|| {
        RequestFailure::new(
            ErrorKind::Connect,
            format!("cannot resolve {}", step.request.host),
        )
    })?;
    let stream = TcpStream::connect(address).await.map_err(|e| {
        RequestFailure::new(
            ErrorKind::Connect,
            format!("cannot connect to {address}: {}", e.kind()),
        )
    })?;
    Ok(Connection::new(stream))
}

/// Sends one request and reads the whole response, connecting first when needed. A reused
/// connection that the server had closed is retried once on a new one.
async fn exchange(
    connection: &mut Option<Connection>,
    step: &PreparedRequest,
    sent: Instant,
) -> Result<Exchanged, RequestFailure> {
    let mut connect_time = Duration::ZERO;
    let mut reused = true;
    // When the current attempt began: the response's latency counts from there.
    let mut began = sent;
    loop {
        if connection.is_none() {
            let opened = connect(step).await.map_err(|mut f| {
                f.connect_time = began.elapsed();
                f
            })?;
            let now = Instant::now();
            connect_time += now - began;
            began = now;
            *connection = Some(opened);
            reused = false;
        }
        let Some(conn) = connection.as_mut() else {
            continue;
        };
        match send_and_read(conn, step, reused, began).await {
            Ok((mut exchanged, reusable)) => {
                if !(step.request.keepalive && reusable) {
                    *connection = None;
                }
                exchanged.connect_time = connect_time;
                return Ok(exchanged);
            }
            Err(Attempt::Retry) => {
                *connection = None;
                began = Instant::now();
            }
            Err(Attempt::Failed(failure)) => {
                return Err(RequestFailure {
                    connect_time,
                    ..failure
                });
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
async fn send_and_read(
    connection: &mut Connection,
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
        check_assertions(
            &step.request.assertions,
            status,
            &response.headers,
            &response.body,
        )
        .or_else(|| {
            step.request
                .json_assertions
                .iter()
                .find_map(|a| a.check(&response.body))
        })
        .map(|m| (ErrorKind::Assertion, Arc::from(m)))
    };
    Ok((
        Exchanged {
            status,
            latency,
            connect_time: Duration::ZERO,
            bytes: response.body_bytes,
            error,
            body: response.body,
            headers: response.headers,
        },
        response.reusable,
    ))
}
