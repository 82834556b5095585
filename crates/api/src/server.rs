//! Binding and serving, one entry point for `peregrine serve`, the demo and the tests:
//! thread-per-core (each worker thread runs a single-threaded runtime with its own listener
//! on the shared address), with limits a client cannot get around (connections per process,
//! request head size, time to send a head or a body) and a shutdown a load balancer can
//! follow (readiness fails at once, new connections are still taken for a grace period,
//! in-flight requests finish within a deadline and those that cannot are counted).
//!
//! Its rooms, each reading only those before it: `limits`; `admission` (who may hold a
//! connection, shedding, the idle sweep); `exchange` (one request around its answer);
//! `hyper_path` (hyper's connection and the router); `front` (a connection's life: the
//! plain reads answered without hyper, then the hand-over to `hyper_path`), which writes its
//! answers with `wire`. `metrics` and `metrics_endpoint` count and show.

mod admission;
mod bare_errors;
mod exchange;
mod front;
mod hyper_path;
mod limits;
mod metrics;
mod metrics_endpoint;
mod wire;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use peregrine_store::StoreError;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, watch};

use crate::app::App;
use crate::json_body::MAX_BODY_BYTES;

use admission::Shared;
use exchange::Worker;
use front::serve_connection;
pub use limits::Limits;
pub use metrics_endpoint::MAX_SCRAPE_CONNECTIONS;

/// The default limits' values.
pub mod connections_defaults {
    pub use super::limits::{
        DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CLIENT_BODIES, DEFAULT_MAX_CLIENT_CONNECTIONS,
        DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEAD_BYTES, DEFAULT_MAX_UNSENT_BYTES,
    };
}

/// Pending connections the kernel may queue (capped by `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;
/// Kernel send buffer per connection, as asked for (Linux doubles it for its bookkeeping).
const SEND_BUFFER_BYTES: usize = 64 * 1024;
/// Pause after an accept error such as running out of file descriptors.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// How often the shutdown looks whether the last connection has closed.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// How to serve: where, on how many threads, within which limits, and how to stop.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The address to listen on; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Worker threads, each with its own runtime and listener.
    pub workers: usize,
    /// What a client may take.
    pub limits: Limits,
    /// After the shutdown signal, how long new connections are still accepted (while
    /// `/readyz` already answers 503), so a load balancer stops sending first.
    pub shutdown_grace: Duration,
    /// Then, how long in-flight requests may take to finish.
    pub shutdown_timeout: Duration,
    /// Where `/metrics` is served: `None` on the API's own listeners, else only on a
    /// listener of its own at this address (port 0 picks a free port).
    pub metrics_bind: Option<SocketAddr>,
    /// Whether every request gets an access log line (info level, target
    /// `peregrine::access`).
    pub access_log: bool,
}

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Requests still in flight when the shutdown timeout ran out, dropped unanswered.
    pub dropped_requests: usize,
}

/// The first listener, bound (port 0 resolved), before the app exists: bind, then open the
/// database, so a busy port fails at once.
pub struct Bound {
    listener: TcpListener,
    /// The listener of `/metrics`, when it has one of its own.
    metrics_listener: Option<TcpListener>,
    config: ServeConfig,
}

/// Binds `config.bind` for [`Bound::serve`]. Fails with "address already in use" when any
/// other socket listens there, even one that allows sharing: two servers splitting one
/// address's traffic between them is never what was meant. Call it inside a runtime.
pub fn bind(config: ServeConfig) -> Result<Bound, BindError> {
    let api_error = |source| BindError {
        address: config.bind,
        metrics: false,
        source,
    };
    // Sharing sockets (SO_REUSEPORT) of another process would let ours bind beside them;
    // a plain bind would not. Hold it only long enough to learn that the address is free.
    let probe = std::net::TcpListener::bind(config.bind).map_err(api_error)?;
    let address = probe.local_addr().map_err(api_error)?;
    drop(probe);
    let listener = bind_shared(address).map_err(api_error)?;
    let metrics_listener = match config.metrics_bind {
        Some(metrics) => Some(
            plain_listener(metrics)
                .and_then(TcpListener::from_std)
                .map_err(|source| BindError {
                    address: metrics,
                    metrics: true,
                    source,
                })?,
        ),
        None => None,
    };
    Ok(Bound {
        listener,
        metrics_listener,
        config,
    })
}

/// A listener [`bind`] could not open: which one, at which address, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address}: {source}")]
pub struct BindError {
    /// The address asked for.
    pub address: SocketAddr,
    /// Whether it is the `/metrics` listener (`metrics_bind`) rather than the API's.
    pub metrics: bool,
    /// Why it failed.
    #[source]
    pub source: io::Error,
}

/// A non-blocking listener of this process only.
fn plain_listener(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Binds `address` with `SO_REUSEPORT`, so that one listener per worker can listen on it
/// and the kernel spreads connections across them.
fn bind_shared(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// What every worker shares: the limits' counters, the shutdown's phases.
struct Control {
    shared: Arc<Shared>,
    /// Becomes true when listeners must close (the grace period is over).
    closing: watch::Receiver<bool>,
    /// Becomes true when workers must stop waiting for their connections.
    stopped: watch::Receiver<bool>,
}

impl Bound {
    /// The address actually bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address `/metrics` has to itself, when `metrics_bind` asked for one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then shuts down as [`ServeConfig`] says.
    /// `make_app(worker)` builds the app of each worker (on this thread, in order), so each
    /// worker can have its own database connections.
    pub async fn serve(
        self,
        mut make_app: impl FnMut(usize) -> Result<App, StoreError>,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<Stopped> {
        let address = self.local_addr()?;
        let metrics_listener = self.metrics_listener;
        let config = self.config;
        let shared = Shared::new(
            config.limits,
            config.metrics_bind.is_none(),
            config.access_log,
        );
        let (close, closing) = watch::channel(false);
        let (stop, stopped) = watch::channel(false);
        let control = || Control {
            shared: Arc::clone(&shared),
            closing: closing.clone(),
            stopped: stopped.clone(),
        };
        let mut threads = Vec::with_capacity(config.workers.saturating_sub(1));
        let mut started = async || {
            for worker in 1..config.workers.max(1) {
                let app = make_app(worker).map_err(io::Error::other)?;
                threads.push(spawn_worker(worker, address, app, control()).await?);
            }
            make_app(0).map_err(io::Error::other)
        };
        let app = match started().await {
            Ok(app) => app,
            Err(err) => {
                // The workers already started stop with the error.
                let _ = close.send(true);
                let _ = stop.send(true);
                return Err(err);
            }
        };
        tokio::spawn(Arc::clone(&shared).sweep_idle(closing.clone()));
        tokio::spawn(crate::repeats::summarise_until(closing.clone()));
        if let Some(listener) = metrics_listener {
            tokio::spawn(metrics_endpoint::serve(listener, control()));
        }
        let first = run_worker(self.listener, app, control());
        let orchestrate = async {
            shutdown.await;
            shutdown_in_phases(&shared, &config, &close, &stop).await
        };
        let ((), dropped_requests) = tokio::join!(first, orchestrate);
        for thread in threads {
            if thread.join().is_err() {
                return Err(io::Error::other("a server worker thread panicked"));
            }
        }
        Ok(Stopped { dropped_requests })
    }
}

/// The shutdown, as a load balancer can follow it: readiness fails and responses say
/// `Connection: close` at once; new connections are taken for the grace period; then the
/// listeners close, idle connections close, and in-flight requests get the timeout to
/// finish. Returns how many were still in flight at the end.
async fn shutdown_in_phases(
    shared: &Shared,
    config: &ServeConfig,
    close: &watch::Sender<bool>,
    stop: &watch::Sender<bool>,
) -> usize {
    shared.draining.start();
    tracing::info!(
        grace = %humantime::format_duration(config.shutdown_grace),
        "shutting down: /readyz answers 503; still accepting connections for the grace period"
    );
    tokio::time::sleep(config.shutdown_grace).await;
    let _ = close.send(true);
    shared.close_all_connections();
    tracing::info!(
        timeout = %humantime::format_duration(config.shutdown_timeout),
        "finishing in-flight requests"
    );
    let deadline = tokio::time::Instant::now() + config.shutdown_timeout;
    // Connections taken from a listener's queue as it closes count too.
    while shared.listening.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    while shared.open_connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    let dropped = shared.in_flight();
    // Repeats counted since the last summary are not lost with the process.
    crate::repeats::summarise_all(true);
    if dropped > 0 {
        tracing::error!(
            dropped,
            "the shutdown timeout ran out: dropping requests still in flight"
        );
    }
    let _ = stop.send(true);
    dropped
}

/// Starts worker `index` on a thread of its own, and returns once it listens.
async fn spawn_worker(
    index: usize,
    address: SocketAddr,
    app: App,
    control: Control,
) -> io::Result<std::thread::JoinHandle<()>> {
    let (ready, listening) = oneshot::channel::<io::Result<()>>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name(format!("peregrine-worker-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                match bind_shared(address) {
                    Ok(listener) => {
                        let _ = ready.send(Ok(()));
                        run_worker(listener, app, control).await;
                    }
                    Err(err) => {
                        let _ = ready.send(Err(err));
                    }
                }
            });
        })?;
    listening
        .await
        .map_err(|_| io::Error::other("a server worker thread stopped"))??;
    Ok(thread)
}

/// One worker: accepts until the listeners close, then waits for the stop.
async fn run_worker(listener: TcpListener, app: App, mut control: Control) {
    let mut http = http1::Builder::new();
    let limits = control.shared.limits;
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_header_size(limits.max_head_bytes)
        .max_buf_size(limits.max_head_bytes.max(8192) + MAX_BODY_BYTES);
    control.shared.metrics.database(&app.database);
    let handlers = hyper_path::Handlers::new(app, Worker::new(&control.shared));
    control.shared.listening.fetch_add(1, Ordering::Relaxed);
    let take = |tcp: TcpStream, peer: SocketAddr| {
        let Some(tracked) = control.shared.admit(peer.ip()) else {
            // Over the limit with no idle connection to shed: closed at once.
            return;
        };
        // Small responses must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        // A fixed send buffer: left to autotuning, the kernel takes up to 4 MiB of answers
        // per connection from a client that does not read (tcp_wmem), memory a container
        // is charged for; past this the connection's own bound applies (see `front`).
        let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(SEND_BUFFER_BYTES);
        tokio::spawn(serve_connection(
            http.clone(),
            tcp,
            handlers.clone(),
            tracked,
        ));
    };
    loop {
        // Accepting is exempt from the scheduler's fairness budget, so that a burst of
        // new connections is taken off the kernel's queue at once rather than 128 per
        // round of all other tasks: the queue is capped (net.core.somaxconn), and a
        // client whose connection overflows it waits for a SYN retransmission (1 s+).
        let (tcp, peer) = tokio::select! {
            accepted = tokio::task::unconstrained(listener.accept()) => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    pause_after_accept_error(&err).await;
                    continue;
                }
            },
            () = until_true(&mut control.closing) => break,
        };
        take(tcp, peer);
    }
    // Connections the kernel completed before the listener closes are taken (and their
    // requests answered): closing the listener would reset them, requests and all. Taken
    // by the system call itself: the runtime may not have seen the last ones arrive.
    let backlog = socket2::SockRef::from(&listener);
    loop {
        let (socket, peer) = match backlog.accept() {
            Ok(accepted) => accepted,
            Err(err) if err.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(_) => break,
        };
        let std = std::net::TcpStream::from(socket);
        let tcp = std
            .set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(std));
        if let (Ok(tcp), Some(peer)) = (tcp, peer.as_socket()) {
            take(tcp, peer);
        }
    }
    drop(listener);
    control.shared.listening.fetch_sub(1, Ordering::Relaxed);
    until_true(&mut control.stopped).await;
}

/// Waits until `flag` is true (or its sender is gone).
async fn until_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

/// A single listener on the calling runtime: what the tests serve with.
pub struct Server {
    bound: Bound,
    app: App,
}

impl Server {
    /// Binds `address` with default limits; `127.0.0.1:0` picks a free port.
    pub async fn bind(address: SocketAddr, app: App) -> io::Result<Self> {
        Self::bind_with(address, app, Limits::default())
    }

    /// Binds `address` with `limits`.
    pub fn bind_with(address: SocketAddr, app: App, limits: Limits) -> io::Result<Self> {
        let bound = bind(ServeConfig {
            bind: address,
            workers: 1,
            limits,
            shutdown_grace: Duration::ZERO,
            shutdown_timeout: Duration::ZERO,
            metrics_bind: None,
            access_log: false,
        })
        .map_err(|err| err.source)?;
        Ok(Self { bound, app })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.bound.local_addr()
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish for at most
    /// `drain`.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
        drain: Duration,
    ) -> io::Result<Stopped> {
        self.bound.config.shutdown_timeout = drain;
        let app = self.app;
        let mut app = Some(app);
        self.bound
            .serve(
                move |_| {
                    app.take()
                        .ok_or_else(|| StoreError::internal("one worker only"))
                },
                shutdown,
            )
            .await
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
