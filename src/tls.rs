//! TLS for the partner listener: the rustls server configuration (mutual TLS, client certificate
//! required and verified against the configured CA and CRL), the revocation list as the identity
//! stage consults it on every request, and the identity fields read from a verified client
//! certificate. For push delivery, the client configuration the gateway connects to a partner's
//! endpoint with (`push_client_config`).
//!
//! It must never accept a client without a verified certificate, never connect to a push endpoint
//! whose server certificate does not chain to that partner's configured CA, never fall back to
//! another crypto provider than ring, and never offer a TLS version below 1.2.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::OffsetDateTime;
use x509_parser::oid_registry::OID_X509_SERIALNUMBER;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

/// Files the partner listener's TLS is built from (all PEM; CRLs may also be DER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Trusted CA certificate(s) for client certificates.
    pub ca: PathBuf,
    /// Certificate revocation list(s) of those CAs.
    pub crl: Option<PathBuf>,
    /// The gateway's server certificate chain.
    pub cert: PathBuf,
    /// The gateway's private key.
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid PEM: {source}")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} contains no {what}")]
    Empty { path: PathBuf, what: &'static str },
    #[error("{path}: a CA certificate was refused as trust anchor: {source}")]
    TrustAnchor {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{path} holds an invalid CRL: {reason}")]
    Crl { path: PathBuf, reason: String },
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the client certificate is not valid X.509: {0}")]
    Certificate(String),
    #[error("the client certificate subject has no {0}")]
    MissingSubjectField(&'static str),
    #[error("the client certificate subject has more than one {0}")]
    AmbiguousSubjectField(&'static str),
}

/// Builds the partner listener's server configuration: ring provider, TLS 1.2 and 1.3, ALPN
/// `h2` and `http/1.1`, and a client certificate that must chain to `s.ca`, carry a clientAuth
/// EKU (or none) and not be revoked by `s.crl`.
pub fn server_config(s: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let mut roots = RootCertStore::empty();
    for ca in read_certs(&s.ca)? {
        roots.add(ca).map_err(|source| TlsError::TrustAnchor {
            path: s.ca.clone(),
            source,
        })?;
    }
    let crls = match &s.crl {
        Some(path) => read_crls(path)?,
        None => Vec::new(),
    };
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        .build()?;

    let chain = read_certs(&s.cert)?;
    let key = read_key(&s.key)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client configuration of push delivery to one partner: the gateway's own client certificate (`push.client_cert`,
/// clientAuth EKU), the endpoint's server certificate verified against `ca` only (never the system roots), ring,
/// TLS 1.2 and 1.3, ALPN `http/1.1`.
pub fn push_client_config(
    ca: &Path,
    client_cert: &Path,
    client_key: &Path,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in read_certs(ca)? {
        roots.add(c).map_err(|source| TlsError::TrustAnchor {
            path: ca.to_path_buf(),
            source,
        })?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_client_auth_cert(read_certs(client_cert)?, read_key(client_key)?)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            path: path.to_path_buf(),
            what: "private key",
        },
        source => TlsError::Pem {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// All CRLs in `path`: PEM `X509 CRL` blocks, or a single DER-encoded CRL.
fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let crls = if bytes.first() == Some(&0x30) {
        vec![CertificateRevocationListDer::from(bytes)]
    } else {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsError::Pem {
                path: path.to_path_buf(),
                source,
            })?
    };
    if crls.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_path_buf(),
            what: "CRL",
        });
    }
    Ok(crls)
}

/// Serial numbers compared without DER sign padding (leading zero bytes).
fn canonical_serial(serial: &[u8]) -> &[u8] {
    let start = serial
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(serial.len().saturating_sub(1));
    &serial[start..]
}

/// The revoked serial numbers of the configured CRL file, for the per-request check that also
/// covers resumed TLS sessions and long-lived keep-alive connections.
///
/// Serials of all CRLs in the file form one set: the file is expected to hold the CRLs of the
/// configured CAs only, whose serials are random and do not collide in practice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    serials: HashSet<Vec<u8>>,
    next_update: Option<OffsetDateTime>,
}

impl Revocations {
    /// Parses every CRL in `path` (PEM or DER). The CRL signatures are checked by the TLS
    /// verifier built from the same file, not here.
    pub fn load(path: &Path) -> Result<Revocations, TlsError> {
        let mut revocations = Revocations::default();
        for der in read_crls(path)? {
            let (_, crl) =
                CertificateRevocationList::from_der(&der).map_err(|e| TlsError::Crl {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            for revoked in crl.iter_revoked_certificates() {
                revocations
                    .serials
                    .insert(canonical_serial(revoked.raw_serial()).to_vec());
            }
            if let Some(next) = crl.next_update() {
                let next = next.to_datetime();
                revocations.next_update = Some(match revocations.next_update {
                    Some(earlier) if earlier < next => earlier,
                    _ => next,
                });
            }
        }
        Ok(revocations)
    }

    /// True when a certificate with this serial (raw DER bytes, sign padding allowed) is revoked.
    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        self.serials.contains(canonical_serial(serial))
    }

    /// True when `now` is past the earliest nextUpdate of the loaded CRLs (a CRL without
    /// nextUpdate never expires).
    pub fn expired(&self, now: OffsetDateTime) -> bool {
        self.next_update.is_some_and(|next| now > next)
    }

    /// The earliest nextUpdate of the loaded CRLs.
    pub fn next_update(&self) -> Option<OffsetDateTime> {
        self.next_update
    }

    /// Number of revoked serials.
    pub fn len(&self) -> usize {
        self.serials.len()
    }

    pub fn is_empty(&self) -> bool {
        self.serials.is_empty()
    }
}

/// What the gateway reads from a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// Subject serialNumber (OID 2.5.4.5): the OIN in PKIoverheid certificates.
    pub oin: String,
    pub common_name: String,
    /// Raw DER bytes of the certificate serial number.
    pub serial: Vec<u8>,
    /// Lower-case hex SHA-256 of the certificate DER.
    pub fingerprint_sha256: String,
    /// True when an extended key usage extension lists clientAuth (false when there is none).
    pub has_client_auth_eku: bool,
    /// Unix seconds.
    pub not_after: i64,
}

/// Reads the identity fields from a client certificate (DER). Does not verify it: call it on
/// the certificate the TLS verifier accepted.
pub fn parse_client_identity(der: &[u8]) -> Result<ClientIdentity, TlsError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| TlsError::Certificate(e.to_string()))?;
    let subject = cert.subject();
    let oin = single_attribute(subject.iter_by_oid(&OID_X509_SERIALNUMBER), "serialNumber")?;
    let common_name = single_attribute(subject.iter_common_name(), "commonName")?;
    let has_client_auth_eku = cert
        .extended_key_usage()
        .map_err(|e| TlsError::Certificate(e.to_string()))?
        .is_some_and(|eku| eku.value.client_auth);
    Ok(ClientIdentity {
        oin,
        common_name,
        serial: cert.raw_serial().to_vec(),
        fingerprint_sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, der)),
        has_client_auth_eku,
        not_after: cert.validity().not_after.timestamp(),
    })
}

fn single_attribute<'a>(
    mut values: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
    field: &'static str,
) -> Result<String, TlsError> {
    let first = values.next().ok_or(TlsError::MissingSubjectField(field))?;
    if values.next().is_some() {
        return Err(TlsError::AmbiguousSubjectField(field));
    }
    first
        .as_str()
        .map(str::to_owned)
        .map_err(|_| TlsError::Certificate(format!("subject {field} is not a string")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::test_support::TempCerts;
    use rustls::{CertificateError, ClientConfig, ProtocolVersion, SupportedProtocolVersion};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::{timeout, Duration};

    fn settings(certs: &TempCerts, crl: bool) -> TlsSettings {
        TlsSettings {
            ca: certs.path("ca.crt"),
            crl: crl.then(|| certs.path("crl.pem")),
            cert: certs.path("gateway.crt"),
            key: certs.path("gateway.key"),
        }
    }

    struct Outcome {
        /// The server side: the accepted client's identity and the negotiated ALPN and version.
        server: Result<(ClientIdentity, Option<Vec<u8>>, ProtocolVersion), std::io::Error>,
        /// The client side: the byte echoed back.
        client: Result<u8, std::io::Error>,
    }

    /// One real TCP + TLS connection on 127.0.0.1 to an acceptor built from `config`.
    async fn connect(
        config: Arc<ServerConfig>,
        certs: &TempCerts,
        client_stem: Option<&str>,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Outcome {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await?;
            let mut tls = acceptor.accept(tcp).await?;
            let (_, conn) = tls.get_ref();
            let leaf = conn.peer_certificates().expect("verified client chain")[0].clone();
            let identity = parse_client_identity(&leaf).expect("identity");
            let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
            let version = conn.protocol_version().expect("version");
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await?;
            tls.write_all(&byte).await?;
            tls.flush().await?;
            tls.shutdown().await?;
            Ok((identity, alpn, version))
        });

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in read_certs(&certs.path("ca.crt")).unwrap() {
            roots.add(ca).unwrap();
        }
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut client = match client_stem {
            Some(stem) => builder
                .with_client_auth_cert(
                    read_certs(&certs.path(&format!("{stem}.crt"))).unwrap(),
                    read_key(&certs.path(&format!("{stem}.key"))).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let client = async {
            let tcp = TcpStream::connect(addr).await?;
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut tls = connector.connect(name, tcp).await?;
            tls.write_all(&[0x2a]).await?;
            tls.flush().await?;
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await?;
            Ok(byte[0])
        };
        let client = timeout(Duration::from_secs(10), client)
            .await
            .expect("client finished in time");
        let server = timeout(Duration::from_secs(10), server)
            .await
            .expect("server finished in time")
            .unwrap();
        Outcome { server, client }
    }

    const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

    fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
        e.get_ref()?.downcast_ref::<rustls::Error>()
    }

    fn assert_refused(outcome: Outcome, what: &str, expected: impl Fn(&rustls::Error) -> bool) {
        assert!(
            outcome.client.is_err(),
            "{what}: client must not get an echo"
        );
        let err = outcome
            .server
            .err()
            .unwrap_or_else(|| panic!("{what}: server accepted"));
        let tls = rustls_error(&err).unwrap_or_else(|| panic!("{what}: not a TLS error: {err}"));
        assert!(expected(tls), "{what}: unexpected refusal {tls:?}");
    }

    #[tokio::test]
    async fn a_valid_partner_completes_the_handshake_and_round_trips_a_byte() {
        let certs = TempCerts::new();
        let config = server_config(&settings(&certs, true)).unwrap();
        for (versions, expected) in [
            (BOTH, ProtocolVersion::TLSv1_3),
            (&[&rustls::version::TLS12][..], ProtocolVersion::TLSv1_2),
        ] {
            let outcome = connect(config.clone(), &certs, Some("obs-de-linde"), versions).await;
            assert_eq!(outcome.client.unwrap(), 0x2a);
            let (identity, alpn, version) = outcome.server.unwrap();
            assert_eq!(identity.oin, "00000001800000000001");
            assert_eq!(identity.common_name, "obs-de-linde");
            assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
            assert_eq!(version, expected);
        }
    }

    #[tokio::test]
    async fn refused_clients_fail_the_handshake_for_the_right_reason() {
        let certs = TempCerts::new();
        let config = server_config(&settings(&certs, true)).unwrap();
        use rustls::Error::{InvalidCertificate, NoCertificatesPresented};
        use CertificateError as C;

        let outcome = connect(config.clone(), &certs, None, BOTH).await;
        assert_refused(outcome, "no certificate", |e| {
            matches!(e, NoCertificatesPresented)
        });
        let outcome = connect(config.clone(), &certs, Some("rogue-school"), BOTH).await;
        assert_refused(outcome, "rogue-school", |e| {
            matches!(e, InvalidCertificate(C::UnknownIssuer))
        });
        let outcome = connect(config.clone(), &certs, Some("expired-school"), BOTH).await;
        assert_refused(outcome, "expired-school", |e| {
            matches!(e, InvalidCertificate(C::Expired | C::ExpiredContext { .. }))
        });
        let outcome = connect(config.clone(), &certs, Some("no-eku-school"), BOTH).await;
        assert_refused(outcome, "no-eku-school", |e| {
            matches!(
                e,
                InvalidCertificate(C::InvalidPurpose | C::InvalidPurposeContext { .. })
            )
        });
        let outcome = connect(config.clone(), &certs, Some("revoked-school"), BOTH).await;
        assert_refused(outcome, "revoked-school", |e| {
            matches!(e, InvalidCertificate(C::Revoked))
        });
        let tls12 = &[&rustls::version::TLS12][..];
        let outcome = connect(config.clone(), &certs, Some("revoked-school"), tls12).await;
        assert_refused(outcome, "revoked-school over TLS 1.2", |e| {
            matches!(e, InvalidCertificate(C::Revoked))
        });
    }

    #[tokio::test]
    async fn the_crl_is_what_refuses_revoked_school_and_unknown_oins_pass_tls() {
        let certs = TempCerts::new();
        let without_crl = server_config(&settings(&certs, false)).unwrap();
        let outcome = connect(without_crl, &certs, Some("revoked-school"), BOTH).await;
        assert_eq!(outcome.client.unwrap(), 0x2a);
        assert_eq!(outcome.server.unwrap().0.oin, "00000001800000000016");

        let with_crl = server_config(&settings(&certs, true)).unwrap();
        let outcome = connect(with_crl, &certs, Some("unknown-school"), BOTH).await;
        assert_eq!(outcome.client.unwrap(), 0x2a);
        assert_eq!(outcome.server.unwrap().0.oin, "00000001800000000015");
    }

    #[test]
    fn client_identity_separates_organisation_and_function_by_common_name() {
        let certs = TempCerts::new();
        let school = parse_client_identity(&certs.der("lyceum-zuid")).unwrap();
        let fg = parse_client_identity(&certs.der("fg-lyceum-zuid")).unwrap();
        assert_eq!(school.oin, "00000001800000000003");
        assert_eq!(fg.oin, school.oin);
        assert_eq!(school.common_name, "lyceum-zuid");
        assert_eq!(fg.common_name, "fg-lyceum-zuid");
        assert_ne!(fg.serial, school.serial);
        assert_ne!(fg.fingerprint_sha256, school.fingerprint_sha256);
        assert_eq!(school.fingerprint_sha256.len(), 64);
        assert!(school.has_client_auth_eku && fg.has_client_auth_eku);
        let until = OffsetDateTime::from_unix_timestamp(school.not_after).unwrap();
        assert_eq!(until.date(), time::macros::date!(2045 - 01 - 01));

        let no_eku = parse_client_identity(&certs.der("no-eku-school")).unwrap();
        assert!(!no_eku.has_client_auth_eku);
        assert_eq!(no_eku.oin, "00000001800000000013");
        let expired = parse_client_identity(&certs.der("expired-school")).unwrap();
        assert!(expired.not_after < OffsetDateTime::now_utc().unix_timestamp());

        let gateway = parse_client_identity(&certs.der("gateway"));
        assert!(matches!(
            gateway,
            Err(TlsError::MissingSubjectField("serialNumber"))
        ));
        assert!(matches!(
            parse_client_identity(b"not a certificate"),
            Err(TlsError::Certificate(_))
        ));
    }

    #[test]
    fn revocations_hold_the_serial_of_revoked_school_only() {
        let certs = TempCerts::new();
        let revocations = Revocations::load(&certs.path("crl.pem")).unwrap();
        assert_eq!(revocations.len(), 1);
        let revoked = parse_client_identity(&certs.der("revoked-school")).unwrap();
        let good = parse_client_identity(&certs.der("obs-de-linde")).unwrap();
        assert!(revocations.is_revoked(&revoked.serial));
        let mut padded = vec![0u8];
        padded.extend_from_slice(&revoked.serial);
        assert!(revocations.is_revoked(&padded));
        assert!(!revocations.is_revoked(&good.serial));

        let next = revocations.next_update().unwrap();
        assert_eq!(next.date(), time::macros::date!(2045 - 01 - 01));
        assert!(!revocations.expired(OffsetDateTime::now_utc()));
        assert!(revocations.expired(next + time::Duration::seconds(1)));

        let der_path = certs.path("crl.der");
        let pem = std::fs::read(certs.path("crl.pem")).unwrap();
        let der = CertificateRevocationListDer::from_pem_slice(&pem).unwrap();
        std::fs::write(&der_path, der.as_ref()).unwrap();
        assert_eq!(Revocations::load(&der_path).unwrap(), revocations);
    }

    #[test]
    fn configuration_errors_name_the_file() {
        let certs = TempCerts::new();
        let mut s = settings(&certs, true);
        s.key = certs.path("missing.key");
        let err = server_config(&s).unwrap_err();
        assert!(matches!(err, TlsError::Io { .. }));
        assert!(err.to_string().contains("missing.key"));

        let mut s = settings(&certs, true);
        s.crl = Some(certs.path("README.md"));
        let err = server_config(&s).unwrap_err();
        assert!(matches!(err, TlsError::Empty { what: "CRL", .. }), "{err}");
        assert!(matches!(
            Revocations::load(&certs.path("README.md")),
            Err(TlsError::Empty { .. })
        ));

        let mut s = settings(&certs, true);
        s.key = certs.path("obs-de-linde.key");
        assert!(server_config(&s).is_err(), "key must match the certificate");
    }

    /// The tests generate their own PKI: the committed `certs-example/` directory is documentation
    /// for people trying the gateway, not a test fixture.
    #[test]
    fn tests_do_not_depend_on_the_committed_certs_example() {
        let certs = TempCerts::new();
        assert!(certs.dir().starts_with(std::env::temp_dir()));
        let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-example");
        assert!(!certs.dir().starts_with(&committed));
        let committed_ca = std::fs::read(committed.join("ca.crt")).unwrap_or_default();
        assert_ne!(std::fs::read(certs.path("ca.crt")).unwrap(), committed_ca);
        server_config(&settings(&certs, true)).expect("a generated set is complete");
    }
}
