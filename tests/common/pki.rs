//! Revocation lists made in the test, signed with the example CA's key (`certs-example/ca.key`).
#![allow(dead_code)]

use super::certs_dir;
use rcgen::{
    CertificateRevocationListParams, Issuer, KeyIdMethod, KeyPair, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use std::path::Path;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The serial number of `certs-example/<stem>.crt`.
pub fn serial_of(stem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let der =
        rustls::pki_types::CertificateDer::from_pem_file(certs_dir().join(format!("{stem}.crt")))
            .unwrap();
    let (_, cert) = X509Certificate::from_der(der.as_ref()).unwrap();
    cert.raw_serial().to_vec()
}

/// Writes a CRL of the example CA revoking the certificates `revoked` (stems in certs-example) with the
/// given nextUpdate. Written to a temporary file first and renamed, as an operator's tooling would.
pub fn write_crl(path: &Path, revoked: &[&str], next_update: OffsetDateTime) {
    let ca_pem = std::fs::read_to_string(certs_dir().join("ca.crt")).unwrap();
    let key =
        KeyPair::from_pem(&std::fs::read_to_string(certs_dir().join("ca.key")).unwrap()).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, key).unwrap();
    let now = OffsetDateTime::now_utc();
    let this_update = if next_update < now {
        next_update - time::Duration::days(1)
    } else {
        now - time::Duration::minutes(1)
    };
    let crl = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from_slice(&(now.unix_timestamp() as u32).to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|stem| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial_of(stem)),
                revocation_time: this_update,
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .unwrap();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, crl.pem().unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A CRL valid for a year revoking `revoked` (plus `revoked-school`, as the example CRL does).
pub fn write_valid_crl(path: &Path, revoked: &[&str]) {
    let mut all = vec!["revoked-school"];
    all.extend_from_slice(revoked);
    write_crl(
        path,
        &all,
        OffsetDateTime::now_utc() + time::Duration::days(365),
    );
}
