//! Binding and serving: bind first (port 0 works), then serve until a shutdown signal,
//! then drain in-flight requests for a bounded time.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};

/// Pending connections the kernel may queue (capped by `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;
/// How long a client may take to send a request's headers once it has started.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after an accept error such as running out of file descriptors.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A bound, not yet serving, HTTP server.
pub struct Server {
    listener: TcpListener,
    app: axum::Router,
}

impl Server {
    /// Binds `address`; `127.0.0.1:0` picks a free port, see [`Server::local_addr`].
    pub async fn bind(address: SocketAddr, app: axum::Router) -> io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        Ok(Self { listener, app })
    }

    /// Binds `address` with `SO_REUSEPORT`, so that one server per runtime can listen on the
    /// same address and the kernel spreads connections across them. Call it inside the
    /// runtime that will serve.
    pub fn bind_shared(address: SocketAddr, app: axum::Router) -> io::Result<Self> {
        let socket = if address.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(address)?;
        let listener = socket.listen(LISTEN_BACKLOG)?;
        Ok(Self { listener, app })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests
    /// finish for at most `drain`, and closes the remaining connections.
    ///
    /// HTTP/1.1 only, one task per connection on the calling runtime, and a bound on how long
    /// a client may take to send its headers.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        drain: Duration,
    ) -> io::Result<()> {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        let service = TowerToHyperService::new(self.app);
        let connections = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            // Accepting is exempt from the scheduler's fairness budget, so that a burst of
            // new connections is taken off the kernel's queue at once rather than 128 per
            // round of all other tasks: the queue is capped (net.core.somaxconn), and a
            // client whose connection overflows it waits for a SYN retransmission (1 s+).
            let tcp = tokio::select! {
                accepted = tokio::task::unconstrained(self.listener.accept()) => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(err) => {
                        pause_after_accept_error(&err).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Small responses must not wait for Nagle's algorithm.
            let _ = tcp.set_nodelay(true);
            let connection = http.serve_connection(TokioIo::new(tcp), service.clone());
            let connection = connections.watch(connection);
            tokio::spawn(async move {
                // A client that goes away mid-request is the client's business.
                let _ = connection.await;
            });
        }
        drop(self.listener);
        tracing::info!(drain = ?drain, "shutting down: finishing in-flight requests");
        if tokio::time::timeout(drain, connections.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("drain time is up: closing the remaining connections");
        }
        Ok(())
    }
}

/// Waits as long as an accept error calls for. Errors of a single connection (reset before
/// it was accepted) need no pause; running out of file descriptors or memory does, or the
/// loop would spin while nothing can be accepted anyway.
async fn pause_after_accept_error(err: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %err, "cannot accept a connection; retrying in 100 ms");
    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
}
