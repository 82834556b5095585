//! HTTPS for the load generator: one rustls client setup per run, built from the plan's
//! [`TlsOptions`] — the system's root certificates by default, extra CA files
//! (`--ca-cert`, `modules.peregrine.ca-cert`), or no verification at all (`--insecure`,
//! `modules.peregrine.insecure`). HTTP/1.1 is offered by ALPN; SNI is rustls's default.
//!
//! A certificate given with `--ca-cert` is trusted as curl's `--cacert` trusts it: as a CA
//! that signs the server's certificate, and also as the server's own certificate when the
//! server presents exactly it (a self-signed certificate, which `openssl req -x509` makes
//! with CA:TRUE, a shape webpki alone refuses as a server's). The host name and the
//! validity dates are checked either way: the check is `peregrine_tls::ServerCheck`, which
//! the PostgreSQL connection uses too. Why a handshake failed is told in words by
//! [`failure`].

mod failure;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use peregrine_tls::ServerCheck;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

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
            .with_custom_certificate_verifier(Arc::new(ServerCheck::any(provider)))
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
        let check = ServerCheck::chained(roots, given, provider)
            .map_err(|err| format!("cannot use the trusted certificates: {err}"))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(check))
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
