//! HTTPS for the load generator: one rustls client setup per run, built from the plan's
//! [`TlsOptions`] — the system's root certificates by default, extra CA files
//! (`--ca-cert`, `modules.peregrine.ca-cert`), or no verification at all (`--insecure`,
//! `modules.peregrine.insecure`). HTTP/1.1 is offered by ALPN; SNI is rustls's default.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How HTTPS servers are trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Extra CA certificate files (PEM) trusted beside the system's roots.
    pub ca_certs: Vec<PathBuf>,
    /// Accept any certificate (self-signed staging servers): encrypted, not authenticated.
    pub insecure: bool,
}

/// What to tell a user whose server's certificate was refused.
pub const TRUST_HINT: &str = "trust its CA with --ca-cert FILE (or modules.peregrine.ca-cert in the config), or skip verification with --insecure";

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
        for file in &options.ca_certs {
            add_ca_file(&mut roots, file)?;
        }
        if roots.is_empty() {
            return Err(format!(
                "no trusted root certificates: this system has none (install ca-certificates); {TRUST_HINT}"
            ));
        }
        builder.with_root_certificates(roots).with_no_client_auth()
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

/// Says why a handshake failed; a refused certificate names the options that fix it.
pub fn handshake_failure(host: &str, err: &std::io::Error) -> String {
    let rejected = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .filter(|e| matches!(e, rustls::Error::InvalidCertificate(_)));
    match rejected {
        Some(rustls::Error::InvalidCertificate(why)) => {
            let why = certificate_problem(why);
            format!("TLS: the certificate of {host} is not trusted ({why}): {TRUST_HINT}")
        }
        _ => format!("TLS handshake with {host} failed: {err}"),
    }
}

/// Why a certificate was refused, without the current time that rustls puts in its
/// context (an expired certificate made a new error row every second).
fn certificate_problem(why: &rustls::CertificateError) -> String {
    use rustls::CertificateError as Why;
    match why {
        Why::Expired => "expired".into(),
        Why::ExpiredContext { not_after, .. } => {
            format!("expired at Unix time {}", not_after.as_secs())
        }
        Why::NotValidYet => "not valid yet".into(),
        Why::NotValidYetContext { not_before, .. } => {
            format!("not valid before Unix time {}", not_before.as_secs())
        }
        Why::ExpiredRevocationList | Why::ExpiredRevocationListContext { .. } => {
            "its revocation list has expired".into()
        }
        other => format!("{other:?}"),
    }
}

fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    roots
}

fn add_ca_file(roots: &mut RootCertStore, file: &Path) -> Result<(), String> {
    let shown = file.display();
    let pem = std::fs::read(file).map_err(|err| format!("CA certificate file {shown}: {err}"))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|err| format!("CA certificate file {shown}: not PEM: {err}"))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "CA certificate file {shown} holds no usable certificate (expected PEM: -----BEGIN CERTIFICATE-----)"
        ));
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The same expired certificate seen a second apart must give the same error row.
    #[test]
    fn a_certificate_error_does_not_carry_the_current_time() {
        let at = |secs| UnixTime::since_unix_epoch(Duration::from_secs(secs));
        let expired = |now| rustls::CertificateError::ExpiredContext {
            time: at(now),
            not_after: at(1_700_000_000),
        };
        let first = certificate_problem(&expired(1_800_000_000));
        assert_eq!(first, certificate_problem(&expired(1_800_000_001)));
        assert_eq!(first, "expired at Unix time 1700000000");
        let early = rustls::CertificateError::NotValidYetContext {
            time: at(5),
            not_before: at(9),
        };
        assert_eq!(certificate_problem(&early), "not valid before Unix time 9");
    }
}
