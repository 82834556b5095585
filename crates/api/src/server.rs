//! Binding and serving: bind first (port 0 works), then serve until a shutdown signal,
//! then drain in-flight requests for a bounded time.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::{TcpListener, TcpSocket};

/// Pending connections the kernel may queue (capped by `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;

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
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        drain: Duration,
    ) -> io::Result<()> {
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let listener = self.listener.tap_io(|tcp| {
            // Small responses must not wait for Nagle's algorithm.
            let _ = tcp.set_nodelay(true);
        });
        let serving = axum::serve(listener, self.app).with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        });
        let mut serving = tokio::spawn(serving.into_future());
        tokio::select! {
            finished = &mut serving => return finished.unwrap_or_else(|e| Err(io::Error::other(e))),
            () = shutdown => {}
        }
        tracing::info!(drain = ?drain, "shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
        match tokio::time::timeout(drain, &mut serving).await {
            Ok(finished) => finished.unwrap_or_else(|e| Err(io::Error::other(e))),
            Err(_) => {
                serving.abort();
                tracing::warn!("drain time is up: closing the remaining connections");
                Ok(())
            }
        }
    }
}
