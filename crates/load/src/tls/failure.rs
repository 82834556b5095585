//! Why a TLS handshake failed, in words a user can act on: never an internal name such as
//! `CaUsedAsEndEntity`, and a hint that never repeats what the user already did (a
//! `--ca-cert` that did not help is named as the file that does not hold the right
//! certificate, not suggested again).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rustls::pki_types::UnixTime;
use rustls::{AlertDescription, CertificateError};

/// Says why the handshake with `host` failed; `ca_certs` are the files given with
/// `--ca-cert` (or `modules.peregrine.ca-cert`).
pub fn handshake_failure(host: &str, err: &std::io::Error, ca_certs: &[PathBuf]) -> String {
    let rustls_error = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(why)) => refused(host, why, ca_certs),
        Some(other) => format!(
            "TLS handshake with {host} failed: {}",
            protocol_failure(other, host)
        ),
        None if err.kind() == std::io::ErrorKind::UnexpectedEof => format!(
            "TLS handshake with {host} failed: the server closed the connection during the handshake"
        ),
        None => format!("TLS handshake with {host} failed: {err}"),
    }
}

/// What is wrong with a certificate, and what to do about it.
fn refused(host: &str, why: &CertificateError, ca_certs: &[PathBuf]) -> String {
    let (what, fix) = match why {
        CertificateError::UnknownIssuer => (
            "it is not signed by a CA this client trusts".to_owned(),
            trust_fix(ca_certs),
        ),
        CertificateError::BadSignature => (
            "its signature does not verify with the CA that should have signed it".to_owned(),
            trust_fix(ca_certs),
        ),
        CertificateError::Other(other)
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ) =>
        {
            (
                "it is a CA certificate (CA:TRUE) presented as the server's own, which is trusted only when that very certificate is given".to_owned(),
                trust_fix(ca_certs),
            )
        }
        CertificateError::NotValidForName => (
            format!("it is not valid for the name {host}"),
            "connect by a name the certificate lists, or skip verification with --insecure"
                .to_owned(),
        ),
        CertificateError::NotValidForNameContext { presented, .. } => (
            format!(
                "it is for {}, not {host}",
                if presented.is_empty() {
                    "no host name".to_owned()
                } else {
                    presented
                        .iter()
                        .map(|n| bare_name(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
            "connect by a name the certificate lists, or skip verification with --insecure"
                .to_owned(),
        ),
        CertificateError::Expired => ("it has expired".to_owned(), DATES_FIX.to_owned()),
        CertificateError::ExpiredContext { not_after, .. } => (
            format!("it expired at {}", date(*not_after)),
            DATES_FIX.to_owned(),
        ),
        CertificateError::NotValidYet => ("it is not valid yet".to_owned(), DATES_FIX.to_owned()),
        CertificateError::NotValidYetContext { not_before, .. } => (
            format!("it is not valid before {}", date(*not_before)),
            DATES_FIX.to_owned(),
        ),
        CertificateError::Revoked => (
            "it has been revoked".to_owned(),
            "the server needs a new certificate".to_owned(),
        ),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => (
            "it is not meant for a TLS server (its extended key usage lacks serverAuth)"
                .to_owned(),
            "the server needs a certificate for serverAuth, or skip verification with --insecure"
                .to_owned(),
        ),
        CertificateError::BadEncoding => (
            "it is not a well-formed X.509 certificate".to_owned(),
            "skip verification with --insecure".to_owned(),
        ),
        CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => (
            "it is signed with an algorithm this client does not support".to_owned(),
            "skip verification with --insecure".to_owned(),
        ),
        _ => (
            "the certificate checks refused it".to_owned(),
            "skip verification with --insecure".to_owned(),
        ),
    };
    format!("TLS: the certificate of {host} is not trusted: {what}; {fix}")
}

const DATES_FIX: &str = "the server needs a current certificate (or this machine's clock is wrong); or skip verification with --insecure";

/// What to do about a certificate no trusted certificate vouches for.
fn trust_fix(ca_certs: &[PathBuf]) -> String {
    if ca_certs.is_empty() {
        return "trust it with --ca-cert FILE (the CA that signed it, or the server's own certificate when it is self-signed; modules.peregrine.ca-cert in a config), or skip verification with --insecure".to_owned();
    }
    let files: Vec<String> = ca_certs.iter().map(|f| f.display().to_string()).collect();
    format!(
        "the CA file given ({}) holds neither the CA that signed it nor the server's own certificate: give the file that does, or skip verification with --insecure",
        files.join(", ")
    )
}

/// A handshake failure that is not about the certificate.
fn protocol_failure(err: &rustls::Error, host: &str) -> String {
    match err {
        rustls::Error::AlertReceived(alert) => alert_words(*alert, host),
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => {
            "the server did not answer in TLS (if it serves plain HTTP, use http://)".to_owned()
        }
        rustls::Error::PeerIncompatible(_) => {
            "the server has no TLS version or cipher suite in common with this client".to_owned()
        }
        rustls::Error::PeerMisbehaved(_) => "the server broke the TLS protocol".to_owned(),
        rustls::Error::NoCertificatesPresented => "the server sent no certificate".to_owned(),
        rustls::Error::DecryptError => "a message from the server did not decrypt".to_owned(),
        rustls::Error::NoApplicationProtocol => "the server does not speak HTTP/1.1".to_owned(),
        _ => "an error in the TLS protocol".to_owned(),
    }
}

/// The server's fatal alert, in words.
fn alert_words(alert: AlertDescription, host: &str) -> String {
    let words = match alert {
        AlertDescription::HandshakeFailure => {
            "it found no TLS version or cipher suite in common".to_owned()
        }
        AlertDescription::ProtocolVersion => {
            "it supports no TLS version this client offers".to_owned()
        }
        AlertDescription::UnrecognisedName => format!("it has no certificate for the name {host}"),
        AlertDescription::CertificateRequired => {
            "it asks for a client certificate, which peregrine does not send".to_owned()
        }
        AlertDescription::NoApplicationProtocol => "it does not speak HTTP/1.1".to_owned(),
        AlertDescription::InternalError => "an internal error on the server".to_owned(),
        AlertDescription::AccessDenied => "it denied access".to_owned(),
        other => format!("TLS alert number {}", u8::from(other)),
    };
    format!("the server ended the handshake: {words}")
}

/// `localhost` of webpki's `DnsName("localhost")` (`127.0.0.1` of `IpAddress(127.0.0.1)`).
fn bare_name(presented: &str) -> &str {
    presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .map_or(presented, |inner| inner.trim_matches('"'))
}

/// `2026-01-31T12:00:00Z`.
fn date(time: UnixTime) -> String {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(time.as_secs());
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod time_free_tests {
    use super::*;

    /// The same expired certificate seen a second apart must give the same error row.
    #[test]
    fn a_certificate_error_does_not_carry_the_current_time() {
        let at = |secs| UnixTime::since_unix_epoch(Duration::from_secs(secs));
        let expired = |now| CertificateError::ExpiredContext {
            time: at(now),
            not_after: at(1_700_000_000),
        };
        let first = refused("h", &expired(1_800_000_000), &[]);
        assert_eq!(first, refused("h", &expired(1_800_000_001), &[]));
        let early = |now| CertificateError::NotValidYetContext {
            time: at(now),
            not_before: at(1_900_000_000),
        };
        assert_eq!(refused("h", &early(5), &[]), refused("h", &early(6), &[]));
    }
}
