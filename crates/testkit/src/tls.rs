//! Certificates for a TLS test cluster, made at start: a CA of its own and a server
//! certificate it signs.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A new CA named `ca_name`, and a certificate for `host` signed by it: (CA PEM,
/// certificate PEM, key PEM).
pub fn server_certificate(ca_name: &str, host: &str) -> Result<(String, String, String), String> {
    certificate_for(ca_name, &[host])
}

/// As [`server_certificate`], for several names (DNS names or IP addresses).
pub fn certificate_for(ca_name: &str, hosts: &[&str]) -> Result<(String, String, String), String> {
    let host = hosts.first().copied().unwrap_or("localhost");
    let failed = |e: rcgen::Error| format!("cannot make test certificates: {e}");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    let ca_key = KeyPair::generate().map_err(failed)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(failed)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let names = hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>();
    let mut params = CertificateParams::new(names).map_err(failed)?;
    params.distinguished_name.push(DnType::CommonName, host);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(failed)?;
    let cert = params.signed_by(&key, &issuer).map_err(failed)?;
    Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
}
