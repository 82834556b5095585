//! HTTPS for the load generator: one rustls client setup per run, built from the plan's
//! [`TlsOptions`] — the system's root certificates by default, extra CA files
//! (`--ca-cert`, `modules.peregrine.ca-cert`), or no verification at all (`--insecure`,
//! `modules.peregrine.insecure`). HTTP/1.1 is offered by ALPN; SNI is rustls's default.
//!
//! A certificate given with `--ca-cert` is trusted as curl's `--cacert` trusts it: as a CA
//! that signs the server's certificate, and also as the server's own certificate when the
//! server presents exactly it (a self-signed certificate, which `openssl req -x509` makes
//! with CA:TRUE, a shape webpki alone refuses as a server's). The host name and the
//! validity dates are checked either way. Why a handshake failed is told in words by
//! [`failure`].

mod failure;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

pub use failure::handshake_failure;

/// How HTTPS servers are trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Extra CA certificate files (PEM) trusted beside the system's roots.
    pub ca_certs: Vec<PathBuf>,
    /// Accept any certificate (self-signed staging servers): encrypted, not authenticated.
    pub insecure: bool,
}

/// The warning printed once when verification is off.
pub const INSECURE_WARNING: &str = "TLS certificate verification is OFF (--insecure / modules.peregrine.insecure): any server, or anyone in between, is accepted as the target";

/// The rustls client setup for `options`.
pub fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("cannot set up TLS: {err}"))?;
    let mut config = if options.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny { provider }))
            .with_no_client_auth()
    } else {
        let mut roots = system_roots();
        let mut given = Vec::new();
        for file in &options.ca_certs {
            given.extend(add_ca_file(&mut roots, file)?);
        }
        if roots.is_empty() {
            return Err("no trusted root certificates: this system has none (install the ca-certificates package); trust the server's CA with --ca-cert FILE (or modules.peregrine.ca-cert in the config), or skip verification with --insecure".to_owned());
        }
        let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|err| format!("cannot use the trusted certificates: {err}"))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(GivenOrChained { chain, given }))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name the server's certificate must carry (also sent as SNI; an IP address is
/// checked against the certificate's IP entries and not sent).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_owned())
        .map_err(|err| format!("{host:?}: not a valid TLS server name: {err}"))
}

fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    roots
}

/// Adds the certificates of `file` to `roots` and returns them.
fn add_ca_file(
    roots: &mut RootCertStore,
    file: &Path,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = file.display();
    let pem = std::fs::read(file).map_err(|err| format!("CA certificate file {shown}: {err}"))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|err| format!("CA certificate file {shown}: not PEM: {err}"))?;
    let (added, _) = roots.add_parsable_certificates(certs.iter().cloned());
    if added == 0 {
        return Err(format!(
            "CA certificate file {shown} holds no usable certificate (expected PEM: -----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(certs)
}

/// Trusts a server presenting exactly a certificate given with `--ca-cert` (its name and
/// dates still checked), and otherwise any certificate that chains to a trusted root.
#[derive(Debug)]
struct GivenOrChained {
    chain: Arc<WebPkiServerVerifier>,
    given: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for GivenOrChained {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.given.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            return self.chain.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            );
        }
        let parsed = ParsedCertificate::try_from(end_entity)?;
        check_dates(end_entity, now)?;
        rustls::client::verify_server_name(&parsed, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// The certificate's notBefore..notAfter holds `now`, as webpki checks it for a chain.
fn check_dates(der: &CertificateDer<'_>, now: UnixTime) -> Result<(), CertificateError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|_| CertificateError::BadEncoding)?;
    let validity = cert.validity();
    let at = |seconds: i64| {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(seconds).unwrap_or(0),
        ))
    };
    let time = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if time < validity.not_before.timestamp() {
        return Err(CertificateError::NotValidYetContext {
            time: now,
            not_before: at(validity.not_before.timestamp()),
        });
    }
    if time > validity.not_after.timestamp() {
        return Err(CertificateError::ExpiredContext {
            time: now,
            not_after: at(validity.not_after.timestamp()),
        });
    }
    Ok(())
}

/// Accepts every certificate but still checks the handshake's signatures (so the session
/// keys belong to whoever sent the certificate).
#[derive(Debug)]
struct AcceptAny {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
