//! TLS for PostgreSQL connections: the rustls setup libpq's `sslmode` and `sslrootcert` ask
//! for (root certificates read when a store is opened, never while parsing the URL), and
//! tokio-postgres's TLS hook over it, which offers SCRAM's channel binding. The server's
//! certificate is checked, and hashed for channel binding, by `peregrine_tls`: the same path
//! as the load generator's HTTPS.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use peregrine_tls::ServerCheck;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::Socket;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::StoreError;
use crate::pg_config::{PgConfig, RootCert, SslMode};

/// The TLS setup of one server's connections; none when TLS is never attempted.
#[derive(Clone)]
pub(crate) struct PgTls(Option<Arc<ClientConfig>>);

impl PgTls {
    /// The setup `config`'s sslmode and sslrootcert ask for, its root certificates read
    /// now: a missing or unreadable file is an error naming where sslrootcert came from.
    pub(crate) fn for_config(config: &PgConfig) -> Result<Self, StoreError> {
        tls_config(config.sslmode, config.root_cert.as_ref())
            .map(Self)
            .map_err(|err| match &config.root_cert_from {
                Some(source) => StoreError::Config(format!("{err} (sslrootcert from {source})")),
                None => StoreError::Config(err),
            })
    }

    /// tokio-postgres's TLS hook for this setup.
    pub(crate) fn connector(&self) -> MakeRustls {
        MakeRustls(self.0.clone())
    }
}

/// The TLS setup for `mode` and `root` as libpq chooses it: no TLS for `disable`; for
/// `verify-ca`/`verify-full` the CA must be given (or be in `~/.postgresql/root.crt`); for
/// `prefer`/`require` the chain is checked only when a root certificate is there.
fn tls_config(mode: SslMode, root: Option<&RootCert>) -> Result<Option<Arc<ClientConfig>>, String> {
    if mode == SslMode::Disable {
        return Ok(None);
    }
    let roots = match root {
        Some(RootCert::System) => Some(system_roots()?),
        Some(RootCert::File(path)) => Some(roots_from_file(path)?),
        None => match default_root_file() {
            Some(path) if path.is_file() => Some(roots_from_file(&path)?),
            _ if mode.verifies() => {
                return Err(format!(
                    "sslmode={mode} needs the CA that signed the server's certificate: set sslrootcert=FILE (or --db-sslrootcert), or sslrootcert=system for a publicly trusted server"
                ));
            }
            _ => None,
        },
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // The chain when roots are known, the host name only for `verify-full`; without a root
    // (prefer/require), encrypted, not authenticated, as libpq does.
    let check = match roots {
        Some(roots) => ServerCheck::chained(roots, Vec::new(), Arc::clone(&provider))
            .map_err(|err| format!("cannot use the root certificates: {err}"))?,
        None => ServerCheck::any(Arc::clone(&provider)),
    };
    let verifier = Arc::new(if mode == SslMode::VerifyFull {
        check
    } else {
        check.without_name_check()
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("cannot set up TLS: {err}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

/// libpq's default root certificate file, `~/.postgresql/root.crt`.
fn default_root_file() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".postgresql/root.crt"))
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| format!("cannot read sslrootcert file {shown}: {err}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("sslrootcert file {shown} is not valid PEM: {err}"))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "sslrootcert file {shown} holds no usable CA certificate (expected PEM: -----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err("sslrootcert=system: this system has no trusted root certificates (install the ca-certificates package)".to_owned());
    }
    Ok(roots)
}

/// tokio-postgres's hook for TLS, over rustls; `None` when the sslmode is `disable`.
pub(crate) struct MakeRustls(Option<Arc<ClientConfig>>);

impl MakeTlsConnect<Socket> for MakeRustls {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = TlsFailure;

    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnect, TlsFailure> {
        // The name is checked in `connect`: this is called for Unix sockets too (no name),
        // where no handshake follows.
        Ok(RustlsConnect {
            config: self.0.clone(),
            host: host.to_owned(),
        })
    }
}

pub(crate) struct RustlsConnect {
    config: Option<Arc<ClientConfig>>,
    host: String,
}

impl TlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = TlsFailure;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream, TlsFailure>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move {
            let config = self.config.ok_or(TlsFailure::NotConfigured)?;
            let name = ServerName::try_from(self.host.clone())
                .map_err(|_| TlsFailure::BadName(self.host))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, socket)
                .await
                .map_err(TlsFailure::from_io)?;
            Ok(RustlsStream(stream))
        })
    }
}

/// Why a TLS handshake failed, kept typed so that [`crate::pg_connect`] can name the cause.
#[derive(Debug)]
pub(crate) enum TlsFailure {
    /// rustls refused: an untrusted or misnamed certificate, no common protocol…
    Rejected(rustls::Error),
    /// The socket failed during the handshake.
    Io(io::Error),
    /// The host cannot be a TLS server name.
    BadName(String),
    /// TLS was attempted with no TLS set up (sslmode=disable).
    NotConfigured,
}

impl TlsFailure {
    fn from_io(err: io::Error) -> Self {
        match err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rejected) => Self::Rejected(rejected.clone()),
            None => Self::Io(err),
        }
    }
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rejected(err) => write!(f, "{err}"),
            Self::Io(err) => write!(f, "{err}"),
            Self::BadName(host) => write!(f, "{host:?} is not a valid TLS server name"),
            Self::NotConfigured => f.write_str("TLS is disabled"),
        }
    }
}

impl std::error::Error for TlsFailure {}

/// A TLS connection to PostgreSQL.
pub(crate) struct RustlsStream(tokio_rustls::client::TlsStream<Socket>);

/// Offers SCRAM's channel binding (SCRAM-SHA-256-PLUS), so `channel_binding=require` works.
impl TlsStream for RustlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        match session.peer_certificates().and_then(<[_]>::first) {
            Some(certificate) => {
                ChannelBinding::tls_server_end_point(peregrine_tls::end_point_hash(certificate))
            }
            None => ChannelBinding::none(),
        }
    }
}

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str) -> PgConfig {
        PgConfig::parse(url, &crate::PgOptions::default(), &|_| None)
            .unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn a_missing_root_file_is_refused_naming_it_and_where_it_was_set() {
        let config = parsed("postgres://u@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem");
        let err = match PgTls::for_config(&config) {
            Ok(_) => panic!("a missing sslrootcert file was accepted"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        assert!(err.contains("sslrootcert from the database URL"), "{err}");
        // Without TLS nothing is read.
        let plain = parsed("postgres://u@h/db?sslmode=disable&sslrootcert=/nonexistent/ca.pem");
        assert!(PgTls::for_config(&plain).is_ok_and(|tls| tls.0.is_none()));
    }
}
