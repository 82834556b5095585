//! How Peregrine's TLS clients check a server's certificate: one rustls
//! [`ServerCertVerifier`] for the load generator's HTTPS and the PostgreSQL connection.
//!
//! - A chain to a trusted root, checked by webpki (rustls's own verifier).
//! - A certificate the user gave as trusted (`--ca-cert`) is also trusted as the server's own
//!   certificate when the server presents exactly it, as curl's `--cacert` trusts it: a
//!   self-signed certificate, which `openssl req -x509` makes with CA:TRUE, a shape webpki
//!   alone refuses as a server's. Its host name and validity dates are checked all the same.
//! - The host name may be left unchecked (PostgreSQL's `sslmode=verify-ca`), and the
//!   certificate not checked at all (`--insecure`; `sslmode=require` without a root): then the
//!   connection is encrypted, not authenticated.
//!
//! The handshake's signatures are always checked, so the session keys belong to whoever sent
//! the certificate (and channel binding, which hashes that certificate, stays meaningful:
//! [`end_point_hash`]).

mod end_point;

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

pub use end_point::end_point_hash;

/// Checks a server's certificate: see the crate's documentation.
#[derive(Debug)]
pub struct ServerCheck {
    /// `None`: any certificate is accepted.
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// Certificates trusted as the server's own when presented exactly.
    given: Vec<CertificateDer<'static>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCheck {
    /// Trusts certificates that chain to `roots`, and `given` ones presented as they are.
    pub fn chained(
        roots: RootCertStore,
        given: Vec<CertificateDer<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, rustls::client::VerifierBuilderError> {
        let chain =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()?;
        Ok(Self {
            chain: Some(chain),
            given,
            check_name: true,
            provider,
        })
    }

    /// Accepts any certificate (its handshake signatures still checked): encrypted, not
    /// authenticated.
    pub fn any(provider: Arc<CryptoProvider>) -> Self {
        Self {
            chain: None,
            given: Vec::new(),
            check_name: false,
            provider,
        }
    }

    /// Leaves the host name unchecked (the chain and dates still are).
    #[must_use]
    pub fn without_name_check(mut self) -> Self {
        self.check_name = false;
        self
    }
}

impl ServerCertVerifier for ServerCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        if self.given.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            let parsed = ParsedCertificate::try_from(end_entity)?;
            check_dates(end_entity, now)?;
            if self.check_name {
                rustls::client::verify_server_name(&parsed, server_name)?;
            }
            return Ok(ServerCertVerified::assertion());
        }
        // webpki checks the chain before the name, so a name error means the chain is good.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
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
