//! A tiny HTTP/1.1 server on 127.0.0.1 with a chosen behaviour (delay, status, body, a stall),
//! counting the requests it receives, for testing the load generator against real sockets.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

/// How the server answers.
#[derive(Debug, Clone)]
pub struct Behavior {
    /// Wait this long before answering each request.
    pub delay: Duration,
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: &'static str,
    /// `(after, length)`: requests arriving in this window after the start wait for its end.
    pub stall: Option<(Duration, Duration)>,
    /// Close every connection after one response (no keep-alive).
    pub close_connections: bool,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            status: 200,
            body: r#"[{"id":1,"username":"e60202a4"}]"#,
            stall: None,
            close_connections: false,
        }
    }
}

/// A running tiny server; dropping it stops it.
pub struct TinyServer {
    address: SocketAddr,
    /// Over TLS: the PEM of the CA that signed its certificate (for `localhost` and
    /// 127.0.0.1).
    ca: Option<String>,
    received: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    /// Over TLS: the server names (SNI) clients sent, one per handshake that named one.
    server_names: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TinyServer {
    /// Starts a server with `behavior` on a free port of 127.0.0.1.
    pub async fn start(behavior: Behavior) -> Self {
        Self::serve(behavior, None, IpAddr::from([127, 0, 0, 1])).await
    }

    /// Starts an HTTPS server with `behavior` on a free port of 127.0.0.1, its certificate
    /// (for `localhost` and 127.0.0.1) signed by a CA made for it: see [`TinyServer::ca_pem`].
    pub async fn start_tls(behavior: Behavior) -> Self {
        Self::start_tls_on(behavior, IpAddr::from([127, 0, 0, 1])).await
    }

    /// As [`TinyServer::start_tls`], listening on `ip` (where `localhost` resolves first).
    pub async fn start_tls_on(behavior: Behavior, ip: IpAddr) -> Self {
        let (ca, acceptor) = match tls_acceptor() {
            Ok(made) => made,
            Err(err) => panic!("{err}"),
        };
        let mut server = Self::serve(behavior, Some(acceptor), ip).await;
        server.ca = Some(ca);
        server
    }

    /// An HTTPS server on a free port of `ip` presenting `cert_pem` (with `key_pem`), e.g.
    /// a self-signed certificate; [`TinyServer::ca_pem`] is then `cert_pem`.
    pub async fn start_tls_with(
        behavior: Behavior,
        ip: IpAddr,
        cert_pem: &str,
        key_pem: &str,
    ) -> Self {
        let acceptor = match acceptor_for(cert_pem, key_pem) {
            Ok(acceptor) => acceptor,
            Err(err) => panic!("{err}"),
        };
        let mut server = Self::serve(behavior, Some(acceptor), ip).await;
        server.ca = Some(cert_pem.to_owned());
        server
    }

    async fn serve(behavior: Behavior, tls: Option<TlsAcceptor>, ip: IpAddr) -> Self {
        let listener = match TcpListener::bind((ip, 0)).await {
            Ok(listener) => listener,
            Err(err) => panic!("cannot bind a test server: {err}"),
        };
        let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let received = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&received);
        let connections = Arc::new(AtomicU64::new(0));
        let accepted = Arc::clone(&connections);
        let server_names = Arc::new(Mutex::new(Vec::new()));
        let names_seen = Arc::clone(&server_names);
        let started = Instant::now();
        let behavior = Arc::new(behavior);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                accepted.fetch_add(1, Ordering::SeqCst);
                let keep_alive = !behavior.close_connections;
                let counter = Arc::clone(&counter);
                let behavior = Arc::clone(&behavior);
                let service = service_fn(move |_request| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let behavior = Arc::clone(&behavior);
                    async move {
                        if let Some((after, length)) = behavior.stall {
                            let (from, to) = (started + after, started + after + length);
                            let now = Instant::now();
                            if now >= from && now < to {
                                tokio::time::sleep_until(to).await;
                            }
                        }
                        if !behavior.delay.is_zero() {
                            // The OS sleep is precise to well under a millisecond; tokio's
                            // timer rounds up to whole milliseconds.
                            let delay = behavior.delay;
                            let _ = tokio::task::spawn_blocking(move || std::thread::sleep(delay))
                                .await;
                        }
                        let response = hyper::Response::builder()
                            .status(behavior.status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(behavior.body.as_bytes())));
                        Ok::<_, Infallible>(response.unwrap_or_default())
                    }
                });
                let tls = tls.clone();
                let names_seen = Arc::clone(&names_seen);
                tokio::spawn(async move {
                    let mut http = hyper::server::conn::http1::Builder::new();
                    http.keep_alive(keep_alive);
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(acceptor) => {
                            // A refused handshake is the client's business: no connection.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                if let Some(name) = stream.get_ref().1.server_name()
                                    && let Ok(mut names) = names_seen.lock()
                                {
                                    names.push(name.to_owned());
                                }
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            address,
            ca: None,
            received,
            connections,
            server_names,
            task,
        }
    }

    /// `http://127.0.0.1:PORT{path}` (`https://…` over TLS).
    pub fn url(&self, path: &str) -> String {
        match self.ca {
            None => format!("http://{}{path}", self.address),
            Some(_) => format!("https://{}{path}", self.address),
        }
    }

    /// Over TLS: the server names (SNI) clients sent so far.
    pub fn server_names(&self) -> Vec<String> {
        self.server_names
            .lock()
            .map(|n| n.clone())
            .unwrap_or_default()
    }

    /// The PEM of the CA that signed an HTTPS server's certificate.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca.as_deref()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }
}

/// A CA (PEM) and a TLS acceptor whose certificate, for `localhost` and 127.0.0.1, it signed.
fn tls_acceptor() -> Result<(String, TlsAcceptor), String> {
    let (ca, cert, key) =
        crate::tls::certificate_for("Peregrine test CA", &["localhost", "127.0.0.1"])?;
    Ok((ca, acceptor_for(&cert, &key)?))
}

/// A TLS acceptor presenting `cert` (PEM, the chain) with `key` (PEM).
fn acceptor_for(cert: &str, key: &str) -> Result<TlsAcceptor, String> {
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("test certificate: {e}"))?;
    let key =
        PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| format!("test key: {e}"))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("test TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("test TLS: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl Drop for TinyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
