//! hyper answers a request it cannot parse (a head too large, a bad method, a target too
//! long, broken framing) itself, with a status and an empty body, before the app sees it.
//! This socket wrapper gives those answers the problem+json body every error promises.
//!
//! The app's own error responses always carry a body, so a 4xx response head that says
//! `content-length: 0` can only be one of hyper's; it is rewritten on its way out.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::problem::Problem;

/// A socket whose bare 4xx responses get a problem+json body.
pub(super) struct WithProblemBodies<S> {
    inner: S,
    /// A rewritten response not yet fully written.
    pending: Vec<u8>,
    written: usize,
}

impl<S> WithProblemBodies<S> {
    pub(super) fn new(inner: S) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> WithProblemBodies<S> {
    /// Writes what is pending; ready when nothing is.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

/// `head` with a problem+json body, when it is a bare 4xx response head.
fn with_problem_body(head: &[u8]) -> Option<Vec<u8>> {
    let rest = head
        .strip_prefix(b"HTTP/1.1 4")
        .or_else(|| head.strip_prefix(b"HTTP/1.0 4"))?;
    let text = std::str::from_utf8(head).ok()?;
    let empty = "\r\ncontent-length: 0\r\n";
    if !text.ends_with("\r\n\r\n") || !text.contains(empty) || rest.len() < 2 {
        return None;
    }
    let code: u16 = text.get(9..12)?.parse().ok()?;
    let status = StatusCode::from_u16(code).ok()?;
    let detail = match status {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "the request head is too large",
        StatusCode::URI_TOO_LONG => "the request target is too long",
        _ => "the request is malformed",
    };
    let body = serde_json::to_vec(&Problem::new(status, detail).body()).ok()?;
    let headers = format!(
        "\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
        crate::problem::PROBLEM_JSON,
        body.len()
    );
    let mut rewritten = text.replacen(empty, &headers, 1).into_bytes();
    rewritten.extend_from_slice(&body);
    Some(rewritten)
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WithProblemBodies<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        // Only a 4xx head is looked at: the 2xx hot path costs one comparison.
        if buf.get(9) == Some(&b'4')
            && let Some(rewritten) = with_problem_body(buf)
        {
            this.pending = rewritten;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    /// As the socket does, so hyper writes head and body as it would without this wrapper.
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        let mut filled = bufs.iter().filter(|buf| !buf.is_empty());
        // A bare response is its head alone.
        if let (Some(head), None) = (filled.next(), filled.next())
            && head.get(9) == Some(&b'4')
            && let Some(rewritten) = with_problem_body(head)
        {
            this.pending = rewritten;
            return Poll::Ready(Ok(head.len()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WithProblemBodies<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bare_4xx_heads_are_rewritten() {
        let bare =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let rewritten = String::from_utf8(with_problem_body(bare).unwrap()).unwrap();
        assert!(rewritten.starts_with("HTTP/1.1 431 "));
        assert!(rewritten.contains("content-type: application/problem+json\r\n"));
        assert!(rewritten.ends_with(r#""status":431,"detail":"the request head is too large"}"#));
        let length: usize = rewritten
            .split("content-length: ")
            .nth(1)
            .and_then(|rest| rest.split("\r\n").next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert_eq!(length, rewritten.split("\r\n\r\n").nth(1).unwrap().len());
        for untouched in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 40\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
        ] {
            assert!(with_problem_body(untouched).is_none());
        }
    }
}
