//! RFC 5929's `tls-server-end-point` channel binding: the hash of the server's certificate
//! a TLS client binds its authentication to (PostgreSQL's SCRAM-SHA-256-PLUS), read from the
//! certificate with the same X.509 parser the certificate checks use.

use sha2::Digest;
use x509_parser::der_parser::oid::Oid;
use x509_parser::oid_registry::{
    OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA, OID_SIG_ECDSA_WITH_SHA384,
    OID_SIG_ECDSA_WITH_SHA512,
};

/// The server certificate `der` hashed with the hash of its signature algorithm: SHA-384
/// or SHA-512 for those, SHA-256 for MD5, SHA-1, SHA-256 and anything else (an unreadable
/// certificate included), as RFC 5929 and PostgreSQL's server do.
pub fn end_point_hash(der: &[u8]) -> Vec<u8> {
    let algorithm = x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, certificate)| certificate.signature_algorithm.algorithm.clone());
    match algorithm.as_ref().map(hash_of) {
        Some(Hash::Sha384) => sha2::Sha384::digest(der).to_vec(),
        Some(Hash::Sha512) => sha2::Sha512::digest(der).to_vec(),
        _ => sha2::Sha256::digest(der).to_vec(),
    }
}

/// The hash a signature algorithm binds with.
#[derive(Debug, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

fn hash_of(algorithm: &Oid<'_>) -> Hash {
    if *algorithm == OID_PKCS1_SHA384WITHRSA || *algorithm == OID_SIG_ECDSA_WITH_SHA384 {
        Hash::Sha384
    } else if *algorithm == OID_PKCS1_SHA512WITHRSA || *algorithm == OID_SIG_ECDSA_WITH_SHA512 {
        Hash::Sha512
    } else {
        Hash::Sha256
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(algorithm: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(algorithm).unwrap_or_else(|e| panic!("{e}"));
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap_or_else(|e| panic!("{e}"));
        let made = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        made.der().to_vec()
    }

    #[test]
    fn the_end_point_hash_follows_the_signature_algorithm() {
        let p384 = certificate(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(end_point_hash(&p384), sha2::Sha384::digest(&p384).to_vec());
        let p256 = certificate(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(end_point_hash(&p256), sha2::Sha256::digest(&p256).to_vec());
        assert_eq!(hash_of(&OID_PKCS1_SHA512WITHRSA), Hash::Sha512);
        assert_eq!(hash_of(&OID_SIG_ECDSA_WITH_SHA512), Hash::Sha512);
        assert_eq!(hash_of(&OID_PKCS1_SHA384WITHRSA), Hash::Sha384);
        // Truncated or foreign input falls back to SHA-256, never panics.
        assert_eq!(end_point_hash(&p384[..40]).len(), 32);
        assert_eq!(end_point_hash(b"\x30\x84\xff\xff\xff\xff").len(), 32);
    }
}
