//! An HTTP server whose capacity is known by construction: `workers` workers, each busy a
//! fixed (or exponentially distributed) time per request, so it answers at most
//! `workers / busy` requests per second; more queue for a free worker. For testing the
//! capacity search against a known truth.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// A running busy server; dropping it stops it.
pub struct BusyServer {
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl BusyServer {
    /// `workers` workers each busy exactly `busy` per request: capacity `workers / busy`.
    pub async fn start(workers: usize, busy: Duration) -> Self {
        Self::serve(workers, busy, false).await
    }

    /// As [`BusyServer::start`] with busy times drawn from an exponential distribution of
    /// mean `busy`: the same capacity, with latency rising well before it.
    pub async fn start_exponential(workers: usize, busy: Duration) -> Self {
        Self::serve(workers, busy, true).await
    }

    async fn serve(workers: usize, busy: Duration, exponential: bool) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|e| panic!("cannot bind a test server: {e}"));
        let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let permits = Arc::new(Semaphore::new(workers));
        let counter = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let permits = Arc::clone(&permits);
                let counter = Arc::clone(&counter);
                let service = service_fn(move |_request| {
                    let permits = Arc::clone(&permits);
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let time = if exponential {
                        busy.mul_f64(exponential_draw(n))
                    } else {
                        busy
                    };
                    async move {
                        if let Ok(_worker) = permits.acquire().await {
                            // The OS sleep is precise to well under a millisecond; tokio's
                            // timer rounds up to whole milliseconds, which would lower
                            // the capacity below `workers / busy`.
                            let _ =
                                tokio::task::spawn_blocking(move || std::thread::sleep(time)).await;
                        }
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"ok",
                        ))))
                    }
                });
                tokio::spawn(async move {
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { address, task }
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

/// An exponential draw of mean 1 from the `n`-th value of a fixed pseudo-random sequence
/// (splitmix64), capped at 20 so one draw cannot stall a worker for long.
fn exponential_draw(n: u64) -> f64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let uniform = ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    (-uniform.ln()).min(20.0)
}

impl Drop for BusyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
