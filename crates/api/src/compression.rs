//! Compression of answers large enough to gain from it: the router's layer ([`layer`]),
//! the one rule of which bodies it acts on ([`acts_on`], which the server's front reads to
//! know whether an answer it writes itself carries `Vary`), and that layer applied to one
//! answer made outside the router ([`compressed`]).

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{HeaderMap, Request, header};
use axum::response::Response;
use hyper::body::Body as _;
use tower::{Layer as _, ServiceExt as _};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate, SizeAbove};

/// Smallest body compressed: below about a kilobyte gzip's header and the CPU cost outweigh
/// the bytes saved (a 1,000-user page is about 40 KiB; one user is 40 bytes).
pub const MIN_COMPRESSED_BYTES: u16 = 1024;

/// gzip or brotli, as the client's `Accept-Encoding` prefers, for bodies of at least
/// [`MIN_COMPRESSED_BYTES`] (brotli at quality 4, tower-http's default for it).
pub fn layer() -> CompressionLayer<impl Predicate> {
    CompressionLayer::new()
        .compress_when(DefaultPredicate::new().and(SizeAbove::new(MIN_COMPRESSED_BYTES)))
}

/// Whether [`layer`] acts on a JSON body of `len` bytes (compresses it when the client
/// accepts an encoding, and adds `Vary: accept-encoding` whether or not it does). A test
/// holds it to what the layer does.
pub fn acts_on(len: usize) -> bool {
    len >= usize::from(MIN_COMPRESSED_BYTES)
}

/// `response` through the router's compression layer when it is large enough for the
/// layer to act on (it then also adds `Vary: accept-encoding`); as it is otherwise.
pub(crate) async fn compressed(response: Response, accept_encoding: HeaderMap) -> Response {
    let large = response
        .body()
        .size_hint()
        .exact()
        .is_none_or(|size| usize::try_from(size).is_ok_and(acts_on));
    if !large {
        return response;
    }
    let mut request = Request::new(());
    *request.headers_mut() = accept_encoding;
    let mut response = Some(response);
    let answer = tower::service_fn(move |_: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(response.take().unwrap_or_default()))
    });
    match layer().layer(answer).oneshot(request).await {
        Ok(compressed) => compressed.map(Body::new),
        Err(never) => match never {},
    }
}

/// The request's `Accept-Encoding` headers: all the compression layer reads.
pub(crate) fn accept_encoding<B>(request: &Request<B>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in request.headers().get_all(header::ACCEPT_ENCODING) {
        headers.append(header::ACCEPT_ENCODING, value.clone());
    }
    headers
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use axum::response::IntoResponse as _;

    use super::*;

    /// What the layer does to a JSON body of `len` bytes for a client that accepts gzip:
    /// whether it added `Vary`.
    async fn layer_varies(len: usize) -> bool {
        let json = HeaderValue::from_static("application/json");
        let response = ([(header::CONTENT_TYPE, json)], vec![b' '; len]).into_response();
        let mut accept = HeaderMap::new();
        accept.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let answer = compressed(response, accept).await;
        answer.headers().contains_key(header::VARY)
    }

    #[tokio::test]
    async fn the_rule_is_the_layers() {
        let min = usize::from(MIN_COMPRESSED_BYTES);
        for len in [0, 40, min - 1, min, min + 1, 40 * 1024] {
            let layered = {
                // Through the layer itself, not the shortcut `compressed` takes below the size.
                let json = HeaderValue::from_static("application/json");
                let response = ([(header::CONTENT_TYPE, json)], vec![b' '; len]).into_response();
                let mut request = Request::new(());
                request
                    .headers_mut()
                    .insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
                let mut response = Some(response);
                let answer = tower::service_fn(move |_: Request<()>| {
                    std::future::ready(Ok::<_, Infallible>(response.take().unwrap_or_default()))
                });
                match layer().layer(answer).oneshot(request).await {
                    Ok(answer) => answer.headers().contains_key(header::VARY),
                    Err(never) => match never {},
                }
            };
            assert_eq!(acts_on(len), layered, "{len} bytes");
            assert_eq!(layer_varies(len).await, layered, "{len} bytes");
        }
    }
}
