//! The load generator's HTTP/1.1 client: one connection, one request at a time, the request
//! written from bytes prepared once per run and the response parsed in place by `httparse`.
//!
//! A general-purpose client (hyper's included) hands each request through channels to a
//! connection task and builds a header map for every response; measured here, that was a
//! quarter of the generator's CPU time per request. This client does only what load
//! generation needs: write, read the head, skip or keep the body as framed by
//! `Content-Length`, chunked encoding or the end of the connection, and tell whether the
//! connection can carry the next request.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HeaderName, HeaderValue, LOCATION, SET_COOKIE};
use http::{HeaderMap, Method};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::assertion::ResponseParts;
use crate::plan::Request;

/// Most response headers a response may have.
const MAX_HEADERS: usize = 100;
/// Largest response head accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How much the read buffer grows by.
const READ_CHUNK: usize = 16 * 1024;

/// The request as written on the connection: request line, headers, body.
pub fn wire_bytes(request: &Request) -> Bytes {
    let mut out = BytesMut::with_capacity(128 + request.body.len());
    out.put_slice(request.method.as_str().as_bytes());
    out.put_u8(b' ');
    let target = request
        .target
        .path_and_query()
        .map_or("/", |target| target.as_str());
    out.put_slice(target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in &request.headers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    let body_expected = matches!(request.method, Method::POST | Method::PUT | Method::PATCH);
    if !request.headers.contains_key(CONTENT_LENGTH) && (body_expected || !request.body.is_empty())
    {
        out.put_slice(format!("content-length: {}\r\n", request.body.len()).as_bytes());
    }
    if !request.keepalive {
        out.put_slice(b"connection: close\r\n");
    }
    out.put_slice(b"\r\n");
    out.put_slice(&request.body);
    out.freeze()
}

/// What came back for one request.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The response headers, when they were asked for.
    pub headers: HeaderMap,
    /// The body, when it was asked for.
    pub body: Vec<u8>,
    /// Body bytes received.
    pub body_bytes: u64,
    /// Whether the connection can carry another request.
    pub reusable: bool,
}

/// Why an exchange gave no response.
pub enum ExchangeError {
    /// A body an assertion reads was larger than the limit.
    BodyTooLarge(usize),
    /// The connection was closed before any byte of a response arrived (a server closing an
    /// idle keep-alive connection looks like this).
    ClosedBeforeResponse,
    /// Reading or writing failed.
    Io(io::Error),
    /// The response was not valid HTTP/1.x, or was cut short.
    Malformed(String),
}

impl From<io::Error> for ExchangeError {
    fn from(err: io::Error) -> Self {
        Self::Io(err)
    }
}

/// One client connection over a plain TCP stream or a TLS stream: generic, so the hot
/// path is compiled for each with no dynamic dispatch.
pub struct Connection<S = TcpStream> {
    stream: S,
    buffer: BytesMut,
}

/// A parsed response head.
struct ResponseHead {
    status: u16,
    framing: Framing,
    reusable: bool,
    headers: HeaderMap,
    length: usize,
}

/// How the body of a response ends.
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

impl Connection<TcpStream> {
    /// Wraps a connected TCP stream, with Nagle's algorithm off.
    pub fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        Self::over(stream)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps a connected stream (a TLS stream after its handshake).
    pub fn over(stream: S) -> Self {
        Self {
            stream,
            buffer: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// Writes `wire` (from [`wire_bytes`]) and reads the whole response. `on_head` is called
    /// once the response head has arrived (for the time to first byte).
    pub async fn exchange(
        &mut self,
        wire: &[u8],
        method: &Method,
        keep: ResponseParts,
        mut on_head: impl FnMut(),
    ) -> Result<Response, ExchangeError> {
        self.buffer.clear();
        // The flush sends what a TLS stream buffered; on TCP it does nothing.
        let written = match self.stream.write_all(wire).await {
            Ok(()) => self.stream.flush().await,
            Err(err) => Err(err),
        };
        if let Err(err) = written {
            return Err(closed_or(err));
        }
        let mut first_read = true;
        loop {
            let head = self.read_head(&mut first_read, &keep).await?;
            self.buffer.advance(head.length);
            // Interim responses (100 Continue, 103 Early Hints) precede the real one.
            if (100..200).contains(&head.status) && head.status != 101 {
                continue;
            }
            on_head();
            let framing = if *method == Method::HEAD || head.status == 204 || head.status == 304 {
                Framing::None
            } else {
                head.framing
            };
            // A body that ends with the connection leaves nothing to reuse.
            let reusable = head.reusable && !matches!(framing, Framing::UntilClose);
            let mut body = Vec::new();
            let body_bytes = match framing {
                Framing::None => 0,
                Framing::Length(length) => self.read_length(length, keep, &mut body).await?,
                Framing::Chunked => self.read_chunked(keep, &mut body).await?,
                Framing::UntilClose => self.read_until_close(keep, &mut body).await?,
            };
            return Ok(Response {
                status: head.status,
                headers: head.headers,
                body,
                body_bytes,
                reusable,
            });
        }
    }

    /// Reads until a whole response head is buffered and parses it.
    async fn read_head(
        &mut self,
        first_read: &mut bool,
        keep: &ResponseParts,
    ) -> Result<ResponseHead, ExchangeError> {
        loop {
            if !self.buffer.is_empty() {
                let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut parsed = httparse::Response::new(&mut slots);
                match parsed.parse(&self.buffer) {
                    Ok(httparse::Status::Complete(head_len)) => {
                        return describe(&parsed, head_len, keep);
                    }
                    Ok(httparse::Status::Partial) if self.buffer.len() > MAX_HEAD_BYTES => {
                        return Err(ExchangeError::Malformed(format!(
                            "response head larger than {MAX_HEAD_BYTES} bytes"
                        )));
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(err) => {
                        return Err(ExchangeError::Malformed(format!("invalid response: {err}")));
                    }
                }
            }
            let read = match self.fill().await {
                Ok(read) => read,
                Err(err) if *first_read && self.buffer.is_empty() => return Err(closed_or(err)),
                Err(err) => return Err(ExchangeError::Io(err)),
            };
            if read == 0 {
                return Err(if *first_read && self.buffer.is_empty() {
                    ExchangeError::ClosedBeforeResponse
                } else {
                    ExchangeError::Malformed(
                        "connection closed before the response head ended".into(),
                    )
                });
            }
            *first_read = false;
        }
    }

    async fn read_length(
        &mut self,
        length: u64,
        keep: ResponseParts,
        body: &mut Vec<u8>,
    ) -> Result<u64, ExchangeError> {
        let mut left = length;
        while left > 0 {
            if self.buffer.is_empty() && self.fill().await? == 0 {
                return Err(ExchangeError::Malformed(format!(
                    "connection closed {left} bytes before the body's end"
                )));
            }
            let take = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.buffer.len());
            self.consume(take, keep, body)?;
            left -= take as u64;
        }
        Ok(length)
    }

    async fn read_until_close(
        &mut self,
        keep: ResponseParts,
        body: &mut Vec<u8>,
    ) -> Result<u64, ExchangeError> {
        let mut total = 0u64;
        loop {
            let available = self.buffer.len();
            self.consume(available, keep, body)?;
            total += available as u64;
            if self.fill().await? == 0 {
                return Ok(total);
            }
        }
    }

    async fn read_chunked(
        &mut self,
        keep: ResponseParts,
        body: &mut Vec<u8>,
    ) -> Result<u64, ExchangeError> {
        let mut total = 0u64;
        loop {
            let line = self.read_line().await?;
            let size_text = line[..].split(|&b| b == b';').next().unwrap_or_default();
            let size = std::str::from_utf8(size_text)
                .ok()
                .and_then(|text| u64::from_str_radix(text.trim(), 16).ok())
                .ok_or_else(|| ExchangeError::Malformed("invalid chunk size".into()))?;
            if size == 0 {
                // Trailers, if any, end with an empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(total);
            }
            total += self.read_length(size, keep, body).await?;
            if !self.read_line().await?.is_empty() {
                return Err(ExchangeError::Malformed(
                    "chunk longer than its size".into(),
                ));
            }
        }
    }

    /// One CRLF-terminated line, without its CRLF.
    async fn read_line(&mut self) -> Result<BytesMut, ExchangeError> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\r\n") {
                let line = self.buffer.split_to(end);
                self.buffer.advance(2);
                return Ok(line);
            }
            if self.buffer.len() > MAX_HEAD_BYTES {
                return Err(ExchangeError::Malformed(
                    "chunk header line too long".into(),
                ));
            }
            if self.fill().await? == 0 {
                return Err(ExchangeError::Malformed(
                    "connection closed inside a chunked body".into(),
                ));
            }
        }
    }

    fn consume(
        &mut self,
        count: usize,
        keep: ResponseParts,
        body: &mut Vec<u8>,
    ) -> Result<(), ExchangeError> {
        if keep.body {
            if body.len() + count > keep.body_limit {
                return Err(ExchangeError::BodyTooLarge(keep.body_limit));
            }
            body.extend_from_slice(&self.buffer[..count]);
        }
        self.buffer.advance(count);
        Ok(())
    }

    async fn fill(&mut self) -> io::Result<usize> {
        if self.buffer.capacity() - self.buffer.len() < READ_CHUNK / 4 {
            self.buffer.reserve(READ_CHUNK);
        }
        match self.stream.read_buf(&mut self.buffer).await {
            // A TLS peer that closes without close_notify: the end of the stream all the
            // same (the framing tells a truncated body).
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            other => other,
        }
    }
}

/// An I/O error before any byte of the response: a reset or broken pipe means the server
/// had closed the connection (retried on a new one when it was a reused connection).
fn closed_or(err: io::Error) -> ExchangeError {
    match err.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
            ExchangeError::ClosedBeforeResponse
        }
        _ => ExchangeError::Io(err),
    }
}

/// Status, body framing and reusability of a parsed head, and its headers when kept.
fn describe(
    parsed: &httparse::Response<'_, '_>,
    length: usize,
    keep: &ResponseParts,
) -> Result<ResponseHead, ExchangeError> {
    let status = parsed
        .code
        .ok_or_else(|| ExchangeError::Malformed("response without a status code".into()))?;
    let mut reusable = parsed.version == Some(1);
    let mut framing = Framing::UntilClose;
    let mut headers = HeaderMap::new();
    for header in parsed.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case(CONTENT_LENGTH.as_str()) {
            if !matches!(framing, Framing::Chunked) {
                let length = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|text| text.trim().parse::<u64>().ok())
                    .ok_or_else(|| ExchangeError::Malformed("invalid Content-Length".into()))?;
                // Two different lengths: the body's end is unknowable (RFC 9112 6.3), and
                // waiting for the longer one would show as a timeout.
                if matches!(framing, Framing::Length(earlier) if earlier != length) {
                    return Err(ExchangeError::Malformed(
                        "conflicting Content-Length headers".into(),
                    ));
                }
                framing = Framing::Length(length);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if contains_token(header.value, "chunked") {
                framing = Framing::Chunked;
            }
        } else if name.eq_ignore_ascii_case(CONNECTION.as_str()) {
            if contains_token(header.value, "close") {
                reusable = false;
            } else if contains_token(header.value, "keep-alive") {
                reusable = true;
            }
        }
        let kept = keep.headers
            || keep.session_headers
                && (name.eq_ignore_ascii_case(SET_COOKIE.as_str())
                    || name.eq_ignore_ascii_case(LOCATION.as_str()));
        if kept
            && let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(header.value),
            )
        {
            headers.append(name, value);
        }
    }
    Ok(ResponseHead {
        status,
        framing,
        reusable,
        headers,
        length,
    })
}

/// Whether a comma-separated header value lists `token` (case-insensitively).
fn contains_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    //! Each test talks to a real TCP server on 127.0.0.1 that answers with exact bytes, to
    //! cover framings a well-behaved HTTP library server would not produce on demand.

    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";
    const KEEP_BODY: ResponseParts = ResponseParts {
        headers: true,
        body: true,
        session_headers: false,
        body_limit: 1024,
    };

    /// A server for one connection that answers the n-th request head it reads with the
    /// n-th of `answers` (an empty answer: close without answering), then closes.
    async fn server(answers: Vec<&'static [u8]>) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut received = Vec::new();
            let mut chunk = [0u8; 4096];
            for (index, answer) in answers.into_iter().enumerate() {
                // The tests send no request bodies: a head ends each request.
                while received.windows(4).filter(|w| w == b"\r\n\r\n").count() <= index {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => received.extend_from_slice(&chunk[..n]),
                    }
                }
                if answer.is_empty() || socket.write_all(answer).await.is_err() {
                    return;
                }
            }
        });
        Ok(address)
    }

    /// A connection to a fresh [`server`] with `answers`.
    async fn connected(answers: Vec<&'static [u8]>) -> io::Result<Connection> {
        let address = server(answers).await?;
        Ok(Connection::new(TcpStream::connect(address).await?))
    }

    /// One exchange; a failure becomes an error saying which kind it was.
    async fn get(connection: &mut Connection, method: &Method) -> io::Result<Response> {
        connection
            .exchange(GET, method, KEEP_BODY, || {})
            .await
            .map_err(|failure| {
                io::Error::other(match failure {
                    ExchangeError::ClosedBeforeResponse => "closed before response".to_string(),
                    ExchangeError::Io(err) => format!("io: {err}"),
                    ExchangeError::Malformed(message) => format!("malformed: {message}"),
                    ExchangeError::BodyTooLarge(limit) => format!("body over {limit}"),
                })
            })
    }

    /// What the failure of one exchange said ("" if it succeeded).
    async fn failure_of(answers: Vec<&'static [u8]>) -> io::Result<String> {
        let mut connection = connected(answers).await?;
        Ok(get(&mut connection, &Method::GET)
            .await
            .err()
            .map(|err| err.to_string())
            .unwrap_or_default())
    }

    #[tokio::test]
    async fn chunked_bodies_with_extensions_and_trailers_keep_the_connection() -> io::Result<()> {
        let chunked: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            4;name=value\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n";
        let mut connection = connected(vec![chunked, chunked]).await?;
        for _ in 0..2 {
            let response = get(&mut connection, &Method::GET).await?;
            assert_eq!(response.status, 200);
            assert_eq!(response.body, b"Wikipedia");
            assert_eq!(response.body_bytes, 9);
            assert!(response.reusable);
        }
        Ok(())
    }

    #[tokio::test]
    async fn conflicting_content_lengths_are_an_invalid_response_not_a_wait() -> io::Result<()> {
        let conflicting: &[u8] =
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\nok";
        let failure = failure_of(vec![conflicting]).await?;
        assert!(failure.contains("conflicting Content-Length"), "{failure}");
        // The same length twice is only redundant.
        let repeated: &[u8] =
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok";
        let mut connection = connected(vec![repeated]).await?;
        assert_eq!(get(&mut connection, &Method::GET).await?.body, b"ok");
        Ok(())
    }

    #[tokio::test]
    async fn a_body_without_length_ends_with_the_connection() -> io::Result<()> {
        let mut connection = connected(vec![b"HTTP/1.1 200 OK\r\n\r\nuntil the end"]).await?;
        let response = get(&mut connection, &Method::GET).await?;
        assert_eq!(response.body, b"until the end");
        assert!(!response.reusable);
        Ok(())
    }

    #[tokio::test]
    async fn interim_responses_are_skipped_and_headers_kept() -> io::Result<()> {
        let mut connection = connected(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Id: 7\r\n\r\nok",
        ]).await?;
        let response = get(&mut connection, &Method::GET).await?;
        assert_eq!(response.status, 201);
        assert_eq!(response.body, b"ok");
        assert_eq!(
            response.headers.get("x-id").map(HeaderValue::as_bytes),
            Some(&b"7"[..])
        );
        Ok(())
    }

    #[tokio::test]
    async fn head_and_no_content_responses_have_no_body() -> io::Result<()> {
        let mut connection = connected(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nend",
        ])
        .await?;
        let head = get(&mut connection, &Method::HEAD).await?;
        assert_eq!((head.body_bytes, head.reusable), (0, true));
        let empty = get(&mut connection, &Method::GET).await?;
        assert_eq!(
            (empty.status, empty.body_bytes, empty.reusable),
            (204, 0, true)
        );
        let last = get(&mut connection, &Method::GET).await?;
        assert_eq!((last.body.as_slice(), last.reusable), (&b"end"[..], false));
        Ok(())
    }

    #[tokio::test]
    async fn a_closed_connection_and_garbage_are_told_apart() -> io::Result<()> {
        assert_eq!(failure_of(vec![b""]).await?, "closed before response");
        let garbage = failure_of(vec![b"SMTP ready\r\n\r\n"]).await?;
        assert!(
            garbage.starts_with("malformed: invalid response"),
            "{garbage}"
        );
        let cut = failure_of(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"]).await?;
        assert!(cut.contains("5 bytes before the body's end"), "{cut}");
        Ok(())
    }
}
