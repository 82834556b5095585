//! Opening one PostgreSQL connection: TLS through rustls with libpq's `sslmode` checks, one
//! deadline over the whole handshake, and a failure sorted into what happened (refused, no
//! such host, authentication failed, TLS refused…), what to do about it, and whether
//! retrying can help.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use peregrine_tls::ServerCheck;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::{Client, Socket};

use crate::StoreError;
use crate::pg_config::{PgConfig, RootCert, SslMode};

/// A connection attempt that failed: what happened and what to do, and whether waiting
/// for the server could change the outcome.
#[derive(Debug)]
pub(crate) struct ConnectFailure {
    /// Retrying cannot help (wrong password, no such database, TLS mismatch…).
    pub(crate) permanent: bool,
    /// The cause and the remedy, without the password.
    pub(crate) message: String,
    /// The server refused a startup parameter (PgBouncer refuses `options` unless its
    /// `ignore_startup_parameters` lists it): connecting without it may succeed.
    pub(crate) refused_parameter: bool,
}

impl ConnectFailure {
    fn retry(message: String) -> Self {
        Self {
            permanent: false,
            message,
            refused_parameter: false,
        }
    }

    fn fatal(message: String) -> Self {
        Self {
            permanent: true,
            message,
            refused_parameter: false,
        }
    }

    /// As a store error at start-up: permanent failures are configuration errors, so
    /// waiting for the database stops at once.
    pub(crate) fn into_startup_error(self) -> StoreError {
        if self.permanent {
            StoreError::Config(self.message)
        } else {
            StoreError::unavailable(self.message)
        }
    }
}

/// While serving, any failed connect is "unavailable" to the request (503), whatever its cause.
impl From<ConnectFailure> for StoreError {
    fn from(failure: ConnectFailure) -> Self {
        Self::unavailable(failure.message)
    }
}

/// Opens one connection per `config` (TLS as its sslmode says) and drives it on a task.
pub(crate) async fn connect(
    config: &PgConfig,
) -> Result<(Client, tokio::task::AbortHandle), ConnectFailure> {
    let hosts = u32::try_from(config.client.get_hosts().len().max(1)).unwrap_or(1);
    let per_host = config
        .client
        .get_connect_timeout()
        .copied()
        .unwrap_or(Duration::from_secs(5));
    // tokio-postgres's connect_timeout covers opening the socket only; this covers the
    // TLS handshake and authentication too, host after host.
    let deadline = per_host * hosts;
    let connecting = config.client.connect(MakeRustls(config.tls.clone()));
    let (client, connection) = match tokio::time::timeout(deadline, connecting).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(err)) => return Err(classify(config, &err)),
        Err(_) => {
            return Err(ConnectFailure::retry(format!(
                "no answer from {} within {} (connect_timeout)",
                targets(config),
                humanize(deadline)
            )));
        }
    };
    let driver = tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(error = %err, "PostgreSQL connection closed");
        }
    });
    Ok((client, driver.abort_handle()))
}

/// Sorts a failed connect by its cause, naming a remedy.
fn classify(config: &PgConfig, err: &tokio_postgres::Error) -> ConnectFailure {
    if let Some(db) = err.as_db_error() {
        return classify_server_refusal(config, db);
    }
    let source = std::error::Error::source(err);
    if let Some(tls) = source.and_then(|s| s.downcast_ref::<TlsFailure>()) {
        return classify_tls(config, tls);
    }
    if let Some(io) = source.and_then(|s| s.downcast_ref::<io::Error>()) {
        return classify_io(config, io);
    }
    // tokio-postgres's `Display` leaves out the cause; the cause's text tells some apart.
    let text = match source {
        Some(cause) => format!("{err}: {cause}"),
        None => err.to_string(),
    };
    if text.contains("server does not support TLS") {
        return ConnectFailure::fatal(format!(
            "TLS required but the server at {} does not offer it (sslmode={}): enable ssl on the server, or use sslmode=prefer to connect without TLS",
            targets(config),
            config.sslmode
        ));
    }
    if text.contains("password missing") {
        return ConnectFailure::fatal(
            "the server asks for a password and none is given: put it in the URL (postgres://USER:PASSWORD@HOST/DATABASE) or set PGPASSWORD".into(),
        );
    }
    if text.starts_with("authentication error") {
        // Decided by the client: e.g. channel_binding=require and the server offers none.
        return ConnectFailure::fatal(format!(
            "authentication failed ({text}): check the user, password and channel_binding in the database URL"
        ));
    }
    if text.contains("timeout") {
        return ConnectFailure::retry(format!("no answer from {} ({text})", targets(config)));
    }
    ConnectFailure::retry(format!("cannot connect to {}: {text}", targets(config)))
}

/// The server answered and refused: its SQLSTATE says whether waiting can help.
fn classify_server_refusal(
    config: &PgConfig,
    db: &tokio_postgres::error::DbError,
) -> ConnectFailure {
    let message = db.message();
    match db.code().code() {
        "28P01" => ConnectFailure::fatal(format!(
            "authentication failed ({message}): check the user name and password in the database URL (or PGPASSWORD)"
        )),
        "28000" if message.contains("no encryption") => ConnectFailure::fatal(format!(
            "TLS required: the server accepts this connection only over TLS ({message}); use sslmode=require or stronger instead of sslmode={}",
            config.sslmode
        )),
        "28000" => ConnectFailure::fatal(format!(
            "the server refused the connection ({message}): its pg_hba.conf has no rule letting this user in from here"
        )),
        "3D000" => ConnectFailure::fatal(format!(
            "{message}: create it first (e.g. createdb {}) or fix the database name in the URL",
            config.dbname()
        )),
        "42501" => {
            ConnectFailure::fatal(format!("{message}: grant the user CONNECT on the database"))
        }
        "08P01" if message.starts_with("unsupported startup parameter") => ConnectFailure {
            refused_parameter: true,
            ..ConnectFailure::fatal(format!(
                "{message}: the server (a connection pooler such as PgBouncer?) refuses it; \
                 list it in PgBouncer's ignore_startup_parameters, or leave it out of the URL"
            ))
        },
        "53300" => ConnectFailure::retry(format!(
            "{message}: raise the server's max_connections, or lower --workers or --db-pool-size"
        )),
        code if code.starts_with("08") || code.starts_with("53") || code.starts_with("57") => {
            ConnectFailure::retry(format!(
                "the server is not accepting connections yet ({message})"
            ))
        }
        code => ConnectFailure::fatal(format!(
            "the server refused the connection ({code}: {message})"
        )),
    }
}

fn classify_tls(config: &PgConfig, failure: &TlsFailure) -> ConnectFailure {
    let mode = config.sslmode;
    let roots = match &config.root_cert {
        Some(RootCert::System) => "the system's trusted roots (sslrootcert=system)".to_owned(),
        Some(RootCert::File(path)) => format!("sslrootcert={}", path.display()),
        None => "the default root certificate (~/.postgresql/root.crt)".to_owned(),
    };
    match failure {
        TlsFailure::Rejected(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => ConnectFailure::fatal(format!(
            "the server's TLS certificate is not valid for host {} (sslmode={mode} checks the host name): connect with a host name the certificate lists, or use sslmode=verify-ca",
            targets(config)
        )),
        TlsFailure::Rejected(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        )) => ConnectFailure::fatal(format!(
            "the server's TLS certificate is not signed by a CA in {roots} (sslmode={mode}): point sslrootcert at the CA that signed it"
        )),
        TlsFailure::Rejected(err) => ConnectFailure::fatal(format!(
            "TLS handshake with {} failed (sslmode={mode}): {err}",
            targets(config)
        )),
        TlsFailure::Io(err) => ConnectFailure::retry(format!(
            "the TLS handshake with {} was cut short: {err}",
            targets(config)
        )),
        TlsFailure::BadName(host) => ConnectFailure::fatal(format!(
            "{host:?} cannot be checked against a TLS certificate: use a host name or IP address"
        )),
        TlsFailure::NotConfigured => {
            ConnectFailure::fatal("TLS was asked for with sslmode=disable".to_owned())
        }
    }
}

fn classify_io(config: &PgConfig, err: &io::Error) -> ConnectFailure {
    let text = err.to_string();
    if let Some(detail) = text.strip_prefix("failed to lookup address information: ") {
        return ConnectFailure::retry(format!(
            "no such host: {} cannot be resolved ({detail}); check the host name in the database URL",
            host_names(config)
        ));
    }
    match err.kind() {
        io::ErrorKind::ConnectionRefused => ConnectFailure::retry(format!(
            "connection refused by {}: is PostgreSQL running and listening there? (check the host and port)",
            targets(config)
        )),
        io::ErrorKind::NotFound => ConnectFailure::retry(format!(
            "no PostgreSQL socket at {}: is the server running, and is that its socket directory and port?",
            targets(config)
        )),
        io::ErrorKind::TimedOut => ConnectFailure::retry(format!(
            "no answer from {} (connect_timeout): is a firewall dropping the packets?",
            targets(config)
        )),
        _ => ConnectFailure::retry(format!("cannot connect to {}: {text}", targets(config))),
    }
}

/// `host:port` of every host tried, for messages.
fn targets(config: &PgConfig) -> String {
    let ports = config.client.get_ports();
    let hosts = config.client.get_hosts();
    let list: Vec<String> = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                tokio_postgres::config::Host::Unix(dir) => {
                    dir.join(format!(".s.PGSQL.{port}")).display().to_string()
                }
            }
        })
        .collect();
    list.join(", ")
}

fn host_names(config: &PgConfig) -> String {
    let names: Vec<String> = config
        .client
        .get_hosts()
        .iter()
        .filter_map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => Some(format!("{name:?}")),
            tokio_postgres::config::Host::Unix(_) => None,
        })
        .collect();
    names.join(", ")
}

fn humanize(duration: Duration) -> String {
    format!("{}s", duration.as_secs())
}

/// The TLS setup for `mode` and `root` as libpq chooses it: no TLS for `disable`; for
/// `verify-ca`/`verify-full` the CA must be given (or be in `~/.postgresql/root.crt`); for
/// `prefer`/`require` the chain is checked only when a root certificate is there.
pub(crate) fn tls_config(
    mode: SslMode,
    root: Option<&RootCert>,
) -> Result<Option<Arc<ClientConfig>>, String> {
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
struct MakeRustls(Option<Arc<ClientConfig>>);

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

struct RustlsConnect {
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

/// Why a TLS handshake failed, kept typed so that [`classify`] can name the cause.
#[derive(Debug)]
enum TlsFailure {
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
struct RustlsStream(tokio_rustls::client::TlsStream<Socket>);

/// Offers SCRAM's channel binding (SCRAM-SHA-256-PLUS), so `channel_binding=require` works.
impl TlsStream for RustlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        match session.peer_certificates().and_then(<[_]>::first) {
            Some(certificate) => ChannelBinding::tls_server_end_point(end_point_hash(certificate)),
            None => ChannelBinding::none(),
        }
    }
}

/// RFC 5929's tls-server-end-point: the server's certificate hashed with the hash of its
/// signature algorithm (SHA-256 for MD5, SHA-1, SHA-256 and anything else).
fn end_point_hash(certificate: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    const SHA384: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c], // sha384WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],       // ecdsa-with-SHA384
    ];
    const SHA512: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d], // sha512WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],       // ecdsa-with-SHA512
    ];
    match signature_algorithm(certificate) {
        Some(oid) if SHA384.contains(&oid) => sha2::Sha384::digest(certificate).to_vec(),
        Some(oid) if SHA512.contains(&oid) => sha2::Sha512::digest(certificate).to_vec(),
        _ => sha2::Sha256::digest(certificate).to_vec(),
    }
}

/// The OID of a DER certificate's signatureAlgorithm: Certificate ::= SEQUENCE {
/// tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE { algorithm OID, … }, … }.
fn signature_algorithm(certificate: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let (fields, _) = der_element(certificate, SEQUENCE)?;
    let (_, after_tbs) = der_element(fields, SEQUENCE)?;
    let (algorithm, _) = der_element(after_tbs, SEQUENCE)?;
    der_element(algorithm, OID).map(|(oid, _)| oid)
}

/// The content of the DER element with `tag` at the start of `data`, and what follows it.
fn der_element(data: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = data.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if found != tag {
        return None;
    }
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low bits say how many length bytes follow (at most 4 here).
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(count)?;
        let length = bytes
            .iter()
            .fold(0usize, |length, &byte| (length << 8) | usize::from(byte));
        (length, rest)
    };
    rest.split_at_checked(length)
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

    /// A certificate's outline: SEQUENCE { tbs SEQUENCE, SEQUENCE { OID }, BIT STRING }.
    fn outline(oid: &[u8]) -> Vec<u8> {
        let algorithm_len = u8::try_from(oid.len() + 2).unwrap_or(0);
        let oid_len = u8::try_from(oid.len()).unwrap_or(0);
        let mut fields = vec![
            0x30,
            0x03,
            0x02,
            0x01,
            0x01,
            0x30,
            algorithm_len,
            0x06,
            oid_len,
        ];
        fields.extend_from_slice(oid);
        fields.extend_from_slice(&[0x03, 0x01, 0x00]);
        let mut certificate = vec![0x30, u8::try_from(fields.len()).unwrap_or(0)];
        certificate.extend(fields);
        certificate
    }

    #[test]
    fn the_end_point_hash_follows_the_signature_algorithm() {
        let sha384 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
        let sha256 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let sha512 = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
        assert_eq!(signature_algorithm(&outline(&sha384)), Some(&sha384[..]));
        assert_eq!(end_point_hash(&outline(&sha384)).len(), 48);
        assert_eq!(end_point_hash(&outline(&sha512)).len(), 64);
        assert_eq!(end_point_hash(&outline(&sha256)).len(), 32);
        // Truncated or foreign input falls back to SHA-256, never panics.
        assert_eq!(signature_algorithm(&outline(&sha384)[..6]), None);
        assert_eq!(end_point_hash(b"\x30\x84\xff\xff\xff\xff").len(), 32);
    }
}
