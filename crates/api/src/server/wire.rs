//! The bytes of an answer the front writes itself, as hyper would write the same response:
//! one function ([`write_answer`]) for every such answer, whatever made it.

use std::cell::RefCell;
use std::time::SystemTime;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};

/// Appends an HTTP/1.1 response to `out`: its status line, `headers` (none of them
/// [`framing`]: the body is whole), `date` when they have none (as hyper adds it),
/// `content-length`, and `body`.
pub(super) fn write_answer<'a>(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>,
    body: &[u8],
) {
    out.reserve(256 + body.len());
    if status == StatusCode::OK {
        // Nearly every answer: one copy rather than the status line's four parts.
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut dated = false;
    for (name, value) in headers {
        dated |= name == header::DATE;
        write_header(out, name, value);
    }
    if !dated {
        write_date(out);
    }
    write_length(out, body.len());
    out.extend_from_slice(body);
}

/// Whether `name` frames a body (`content-length`, `transfer-encoding`): a response's own
/// such headers are left out, [`write_answer`] writes the length of the whole body.
pub(super) fn framing(name: &HeaderName) -> bool {
    name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING
}

#[inline]
fn write_header(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `content-length` and the blank line that ends the head.
fn write_length(out: &mut Vec<u8>, length: usize) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

thread_local! {
    /// The `date` header's value, formatted once a second per thread: the second it is
    /// for, and the text.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

fn write_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != second || text.is_empty() {
            *at = second;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\r\n");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_has_its_date_and_length_and_no_framing_of_its_own() {
        let mut out = Vec::new();
        let kind = HeaderValue::from_static("application/json");
        let length = HeaderValue::from_static("99");
        let headers = [
            (&header::CONTENT_TYPE, &kind),
            (&header::CONTENT_LENGTH, &length),
        ];
        let headers = headers.into_iter().filter(|(name, _)| !framing(name));
        write_answer(&mut out, StatusCode::NOT_FOUND, headers, b"{}");
        let text = String::from_utf8(out).unwrap_or_default();
        let mut ok = Vec::new();
        write_answer(&mut ok, StatusCode::OK, [], b"");
        assert!(ok.starts_with(b"HTTP/1.1 200 OK\r\ndate: "));
        assert!(
            text.starts_with("HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ndate: "),
            "{text}"
        );
        assert!(text.ends_with("\r\ncontent-length: 2\r\n\r\n{}"), "{text}");
        assert!(!text.contains("99"), "{text}");
    }
}
