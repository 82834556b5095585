//! Request ids: the client's `X-Request-Id` when it is a sensible one, else one the server
//! makes; returned on every response and in problem+json bodies, and current (a task-local)
//! while the request is answered, so that the logging can give every line logged meanwhile
//! the request's span ([`current`]).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use axum::http::{HeaderName, HeaderValue};

/// The header that carries a request's id, both ways.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied id kept; a longer one is replaced by the server's own.
pub const MAX_REQUEST_ID_LEN: usize = 128;

tokio::task_local! {
    /// The id of the request being answered on this task.
    static CURRENT: HeaderValue;
}

/// The client's id when it is 1 to [`MAX_REQUEST_ID_LEN`] visible ASCII characters (no
/// spaces, no controls), so that it is safe in logs and headers; `None` otherwise.
pub fn accepted(value: Option<&HeaderValue>) -> Option<HeaderValue> {
    let value = value?;
    let bytes = value.as_bytes();
    let sensible =
        (1..=MAX_REQUEST_ID_LEN).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_graphic);
    sensible.then(|| value.clone())
}

/// Runs `future` with `id` as the current request id.
pub async fn scope<F: Future>(id: HeaderValue, future: F) -> F::Output {
    CURRENT.scope(id, future).await
}

/// Runs `make` with `id` as the current request id.
pub fn sync_scope<R>(id: HeaderValue, make: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(id, make)
}

/// The id of the request being answered, if any.
pub fn current() -> Option<String> {
    CURRENT
        .try_with(|id| id.to_str().ok().map(str::to_owned))
        .ok()
        .flatten()
}

/// The process's maker of request ids: hands each worker a [`WorkerIds`] of its own.
pub struct ProcessIds {
    /// The per-process part of request ids: random, so ids of two runs or of two instances
    /// behind one balancer do not repeat each other.
    process_id: String,
    /// Workers given ids so far.
    workers: AtomicUsize,
}

impl ProcessIds {
    /// A maker with a fresh random process part.
    pub fn new() -> Self {
        let mut random = [0u8; 4];
        // Without randomness the ids are still unique within the process.
        let _ = getrandom::fill(&mut random);
        Self {
            process_id: random.iter().fold(String::new(), |mut hex, byte| {
                let _ = write!(hex, "{byte:02x}");
                hex
            }),
            workers: AtomicUsize::new(0),
        }
    }

    /// A new worker's ids.
    pub fn worker(&self) -> WorkerIds {
        let worker = self.workers.fetch_add(1, Ordering::Relaxed);
        WorkerIds {
            made: AtomicU64::new(0),
            prefix: format!("{}-{worker}-", self.process_id),
        }
    }
}

/// One worker's request ids: `PROCESS-WORKER-N`, unique in the process.
pub struct WorkerIds {
    /// Ids made so far by this worker.
    made: AtomicU64,
    /// What this worker's ids start with: the process's and the worker's.
    prefix: String,
}

impl WorkerIds {
    /// A new request id.
    pub fn next(&self) -> HeaderValue {
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        let mut id = bytes::BytesMut::with_capacity(self.prefix.len() + 20);
        id.extend_from_slice(self.prefix.as_bytes());
        id.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        HeaderValue::from_maybe_shared(id.freeze()).unwrap_or(HeaderValue::from_static("-"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_visible_ascii_ids_are_accepted() {
        let long = "a".repeat(MAX_REQUEST_ID_LEN);
        for good in [
            "abc-123",
            "0",
            "f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
            &long,
        ] {
            let value = HeaderValue::from_str(good).ok();
            assert!(accepted(value.as_ref()).is_some(), "{good}");
        }
        let too_long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for bad in ["", "has space", "tab\there", &too_long] {
            let value = HeaderValue::from_str(bad).ok();
            assert!(accepted(value.as_ref()).is_none(), "{bad:?}");
        }
        let non_ascii = HeaderValue::from_bytes("é".as_bytes()).ok();
        assert!(accepted(non_ascii.as_ref()).is_none());
        assert!(accepted(None).is_none());
    }

    #[test]
    fn request_ids_are_unique_and_visible_ascii() {
        let process = ProcessIds::new();
        let (first, second) = (process.worker(), process.worker());
        let ids = [first.next(), first.next(), second.next()];
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[0], ids[2]);
        for id in ids {
            assert!(id.as_bytes().iter().all(|b| b.is_ascii_graphic()), "{id:?}");
        }
    }
}
