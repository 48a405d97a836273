//! Who is calling: the partner behind the verified client certificate, and nothing else.
//!
//! The identity is read once per connection from the certificate the TLS verifier accepted and re-checked on every
//! request against the current revocation list (so a revoked partner is refused on a resumed session or an open
//! keep-alive connection too). It must never be taken from a header, a body or a query parameter.

use crate::domain::{is_gemeentecode, Partner, Responsibilities, Role};
use crate::refusal::{ProblemCode, Refusal};
use crate::tls::{parse_client_identity, ClientIdentity, Revocations};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum PartnersError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// `{path}:{line}: …` when the error is about one line, else `{path}: …`.
    #[error("{path}:{}", located(.message))]
    Parse { path: String, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartnerFile {
    #[serde(default)]
    partner: Vec<PartnerEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartnerEntry {
    id: String,
    name: String,
    role: Role,
    oin: toml::Spanned<String>,
    organisation: Option<String>,
    #[serde(default)]
    sees_all: bool,
    common_name: Option<String>,
    rate_per_second: Option<u32>,
    burst: Option<u32>,
    /// The organisation provides jeugdhulp: its consents follow Jeugdwet art. 7.3.11 (DOMAIN.md).
    #[serde(default)]
    jeugdhulp: bool,
    /// The samenwerkingsverbanden a school belongs to (partner ids).
    #[serde(default)]
    swv: Vec<String>,
    /// The gemeenten (CBS gemeentecode, 4 digits) a leerplicht office, wijkteam, jgz or Veilig Thuis serves.
    #[serde(default)]
    gemeenten: Vec<String>,
    /// The JGZ attached to a school (partner ids).
    #[serde(default)]
    jgz: Vec<String>,
    /// Push delivery: the gateway POSTs each new message to this endpoint (`exchange::push`).
    push: Option<PushEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushEntry {
    url: String,
    /// The CA (PEM) the endpoint's server certificate must chain to; relative to partners.toml's directory.
    ca: std::path::PathBuf,
}

/// A partner's push endpoint (`push = { url = "https://...", ca = "..." }` in partners.toml), checked at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEndpoint {
    pub url: String,
    /// Host name or address as the URL names it (what the server certificate must be for).
    pub host: String,
    pub port: u16,
    /// Path and query of the request.
    pub path: String,
    /// The CA file, resolved against partners.toml's directory.
    pub ca: std::path::PathBuf,
}

impl PushEndpoint {
    /// An `https://host[:port][/path]` URL; anything else (another scheme, user info, a fragment) is refused.
    pub fn parse(url: &str, ca: std::path::PathBuf) -> Result<PushEndpoint, String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| "push url must start with https://".to_owned())?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') || path.contains('#') {
            return Err(
                "push url must be https://host[:port]/path, without user info or fragment".into(),
            );
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (h, after) = v6
                    .split_once(']')
                    .ok_or_else(|| "push url has an unclosed [IPv6 address]".to_owned())?;
                (h, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        let port = match port {
            None => 443,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| "push url has an invalid port".to_owned())?,
        };
        if host.is_empty()
            || path
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err("push url has no host, or a path with spaces".into());
        }
        Ok(PushEndpoint {
            url: url.to_owned(),
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            ca,
        })
    }
}

/// The prefixes of the OIN stelsel (Logius) a partner's OIN may have: the first 8 of its 20 digits say what it is
/// derived from (DOMAIN.md "Roles"). Another prefix is refused: a typo in `partners.toml` must not become an
/// identity no certificate will ever carry, or the wrong one.
pub const OIN_PREFIXES: [(&str, &str); 4] = [
    ("00000001", "RSIN"),
    ("00000003", "KvK-nummer"),
    ("00000004", "SubOIN"),
    ("00000099", "test"),
];

/// Whether `oin` is 20 digits with a known prefix; the reason when not (naming no more than its length).
pub fn check_oin(oin: &str) -> Result<(), String> {
    if oin.len() != 20 || !oin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "an OIN is 20 digits (this one has {} characters)",
            oin.chars().count()
        ));
    }
    if !OIN_PREFIXES.iter().any(|(p, _)| oin.starts_with(p)) {
        let known: Vec<String> = OIN_PREFIXES
            .iter()
            .map(|(p, what)| format!("{p} ({what})"))
            .collect();
        return Err(format!(
            "the OIN's first 8 digits are no known prefix: {}",
            known.join(", ")
        ));
    }
    Ok(())
}

/// A `from_toml` message after the file name: `12: …` stays (a line), anything else gets a space.
fn located(message: &str) -> String {
    if message.starts_with(|c: char| c.is_ascii_digit()) {
        message.to_owned()
    } else {
        format!(" {message}")
    }
}

/// A partner known to the gateway, with its per-partner settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerInfo {
    pub partner: Partner,
    /// The operator's privacy officer sees every organisation's entries.
    pub sees_all: bool,
    pub rate_per_second: Option<u32>,
    pub burst: Option<u32>,
    /// `jeugdhulp = true`: a youth-care provider, whose disclosures fall under Jeugdwet art. 7.3.11's consent
    /// rules instead of UAVG art. 5's.
    pub jeugdhulp: bool,
    /// What this organisation is responsible for (DOMAIN.md "Who is responsible for a pupil").
    pub responsible: Responsibilities,
    /// Where the gateway pushes this partner's new messages; `None`: pull only.
    pub push: Option<PushEndpoint>,
}

/// `partners.toml`: certificate (OIN, common name) -> partner.
#[derive(Debug, Default)]
pub struct PartnerDirectory {
    /// OIN -> common name -> partner (nested, so a lookup copies neither).
    by_cert: HashMap<String, HashMap<String, Arc<PartnerInfo>>>,
    by_id: HashMap<String, Arc<PartnerInfo>>,
}

impl PartnerDirectory {
    pub fn load(path: &Path) -> Result<PartnerDirectory, PartnersError> {
        let text = std::fs::read_to_string(path).map_err(|source| PartnersError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let dir = PartnerDirectory::from_toml_in(&text, base).map_err(|message| {
            PartnersError::Parse {
                path: path.display().to_string(),
                message,
            }
        })?;
        for info in dir.by_id.values() {
            if let Some(push) = &info.partner_push() {
                check_push_ca(&push.ca).map_err(|message| PartnersError::Parse {
                    path: path.display().to_string(),
                    message: format!(
                        "partner {}: push ca {}: {message}",
                        info.partner.id,
                        push.ca.display()
                    ),
                })?;
            }
        }
        Ok(dir)
    }

    /// Parses partners.toml text; relative push `ca` paths are taken relative to the current directory.
    pub fn from_toml(text: &str) -> Result<PartnerDirectory, String> {
        PartnerDirectory::from_toml_in(text, Path::new("."))
    }

    /// Parses partners.toml text; relative push `ca` paths are taken relative to `base`.
    pub fn from_toml_in(text: &str, base: &Path) -> Result<PartnerDirectory, String> {
        let file: PartnerFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut dir = PartnerDirectory::default();
        for mut e in file.partner {
            let line = text[..e.oin.span().start.min(text.len())]
                .lines()
                .count()
                .max(1);
            if let Err(why) = check_oin(e.oin.get_ref()) {
                return Err(format!("{line}: partner {}: {why}", e.id));
            }
            let oin = std::mem::take(e.oin.get_mut());
            if let Some(g) = e.gemeenten.iter().find(|g| !is_gemeentecode(g)) {
                return Err(format!(
                    "partner {}: gemeente `{}` is not a CBS gemeentecode (4 digits)",
                    e.id,
                    g.chars().take(16).collect::<String>()
                ));
            }
            if e.role == Role::PrivacyOfficer && e.organisation.is_none() {
                return Err(format!(
                    "partner {}: a privacy officer names its organisation",
                    e.id
                ));
            }
            let push = match e.push {
                Some(p) => {
                    let ca = if p.ca.is_relative() {
                        base.join(&p.ca)
                    } else {
                        p.ca
                    };
                    Some(
                        PushEndpoint::parse(&p.url, ca)
                            .map_err(|why| format!("partner {}: {why}", e.id))?,
                    )
                }
                None => None,
            };
            let cn = e.common_name.clone().unwrap_or_else(|| e.id.clone());
            let info = Arc::new(PartnerInfo {
                partner: Partner {
                    id: e.id.clone(),
                    name: e.name,
                    role: e.role,
                    oin: oin.clone(),
                    organisation: e.organisation,
                },
                sees_all: e.sees_all,
                rate_per_second: e.rate_per_second,
                burst: e.burst,
                jeugdhulp: e.jeugdhulp,
                responsible: Responsibilities {
                    swv: e.swv,
                    gemeenten: e.gemeenten,
                    jgz: e.jgz,
                },
                push,
            });
            if dir.by_id.insert(e.id.clone(), info.clone()).is_some() {
                return Err(format!("partner id {} appears twice", e.id));
            }
            if dir
                .by_cert
                .entry(oin)
                .or_default()
                .insert(cn, info)
                .is_some()
            {
                return Err(format!(
                    "partner {}: another partner has the same OIN and common name",
                    e.id
                ));
            }
        }
        dir.check_references()?;
        Ok(dir)
    }

    /// Every partner id named under `swv` or `jgz` is a partner of the right role.
    fn check_references(&self) -> Result<(), String> {
        for info in self.by_id.values() {
            let r = &info.responsible;
            let lists: [(&str, &[String], &[Role]); 2] = [
                ("swv", &r.swv, &[Role::SwvPo, Role::SwvVo]),
                ("jgz", &r.jgz, &[Role::Jgz]),
            ];
            for (key, ids, roles) in lists {
                for id in ids {
                    match self.by_id.get(id) {
                        None => {
                            return Err(format!(
                                "partner {}: `{key}` names `{id}`, which is not a partner",
                                info.partner.id
                            ))
                        }
                        Some(other) if !roles.contains(&other.partner.role) => {
                            return Err(format!(
                                "partner {}: `{key}` names `{id}`, whose role is {}",
                                info.partner.id, other.partner.role
                            ))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        Ok(())
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<PartnerInfo>> {
        self.by_id.get(id)
    }

    pub fn by_certificate(&self, oin: &str, common_name: &str) -> Option<&Arc<PartnerInfo>> {
        self.by_cert.get(oin)?.get(common_name)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<PartnerInfo>> {
        self.by_id.values()
    }
}

impl PartnerInfo {
    fn partner_push(&self) -> Option<&PushEndpoint> {
        self.push.as_ref()
    }
}

/// A push endpoint's CA file must be readable and hold at least one certificate.
fn check_push_ca(path: &Path) -> Result<(), String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let pem = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    let n = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "is not PEM".to_owned())?
        .len();
    if n == 0 {
        return Err("holds no certificate".into());
    }
    Ok(())
}

/// The verified peer of one TLS connection, before it is mapped to a partner.
#[derive(Debug, Clone)]
pub struct Peer {
    pub cert: ClientIdentity,
}

/// The peers of earlier connections, by their whole certificate (DER), so a partner's next connection does not read
/// its certificate again. Only certificates the TLS verifier has accepted are looked up, and a hit is exactly what
/// reading the same bytes gives; revocation and expiry are still checked on every request (`identify`). Bounded:
/// emptied when full.
#[derive(Debug, Default)]
pub struct PeerCache {
    peers: Mutex<HashMap<Box<[u8]>, Arc<Peer>>>,
}

impl PeerCache {
    /// Certificates kept at most; far more than the partners of one gateway.
    pub const MAX: usize = 1024;

    /// The peer of a verified certificate, or `None` when its identity fields cannot be read.
    pub fn peer(&self, der: &[u8]) -> Option<Arc<Peer>> {
        if let Some(peer) = self.lock().get(der) {
            return Some(peer.clone());
        }
        let peer = Arc::new(Peer {
            cert: parse_client_identity(der).ok()?,
        });
        let mut peers = self.lock();
        if peers.len() >= Self::MAX {
            peers.clear();
        }
        peers.insert(der.into(), peer.clone());
        Some(peer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<[u8]>, Arc<Peer>>> {
        // The map holds only finished entries, so one left by a panicking holder is still sound.
        self.peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub info: Arc<PartnerInfo>,
    pub fingerprint: String,
    /// The request's trace context (set by the HTTP layer from its headers; never identity).
    pub trace: Option<crate::trace::TraceContext>,
}

impl Caller {
    pub fn partner(&self) -> &Partner {
        &self.info.partner
    }

    pub fn id(&self) -> &str {
        &self.info.partner.id
    }
}

/// Maps a verified certificate to a partner, refusing revoked, expired or non-client certificates.
pub fn identify(
    peer: Option<&Peer>,
    partners: &PartnerDirectory,
    revocations: Option<&Revocations>,
    now_unix: i64,
) -> Result<Caller, Refusal> {
    let Some(peer) = peer else {
        return Err(Refusal::new(
            ProblemCode::ClientCertificateRequired,
            "a client certificate is required",
        ));
    };
    let cert = &peer.cert;
    if revocations.is_some_and(|r| r.is_revoked(&cert.serial)) {
        return Err(Refusal::new(
            ProblemCode::CertificateRevoked,
            "the client certificate has been revoked",
        ));
    }
    if cert.not_after < now_unix {
        return Err(Refusal::new(
            ProblemCode::CertificateExpired,
            "the client certificate has expired",
        ));
    }
    if !cert.has_client_auth_eku {
        return Err(Refusal::new(
            ProblemCode::CertificateNotForClients,
            "the client certificate lacks the clientAuth extended key usage",
        ));
    }
    match partners.by_certificate(&cert.oin, &cert.common_name) {
        Some(info) => Ok(Caller {
            info: info.clone(),
            fingerprint: cert.fingerprint_sha256.clone(),
            trace: None,
        }),
        None => Err(Refusal::new(
            ProblemCode::UnknownPartner,
            "the certificate is valid but names no partner of this gateway",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARTNERS: &str = r#"
[[partner]]
id = "lyceum-zuid"
name = "Lyceum Zuid"
role = "school-vo"
oin = "00000001800000000003"

[[partner]]
id = "fg-lyceum-zuid"
name = "FG Lyceum Zuid"
role = "privacy-officer"
oin = "00000001800000000003"
organisation = "lyceum-zuid"
"#;

    fn peer(oin: &str, cn: &str, eku: bool, not_after: i64) -> Peer {
        Peer {
            cert: ClientIdentity {
                oin: oin.into(),
                common_name: cn.into(),
                serial: vec![1, 2, 3],
                fingerprint_sha256: "ab".into(),
                has_client_auth_eku: eku,
                not_after,
            },
        }
    }

    #[test]
    fn one_oin_two_functions_are_told_apart_by_common_name() {
        let dir = PartnerDirectory::from_toml(PARTNERS).unwrap();
        let school = identify(
            Some(&peer("00000001800000000003", "lyceum-zuid", true, i64::MAX)),
            &dir,
            None,
            0,
        )
        .unwrap();
        assert_eq!(school.partner().role, Role::SchoolVo);
        let fg = identify(
            Some(&peer(
                "00000001800000000003",
                "fg-lyceum-zuid",
                true,
                i64::MAX,
            )),
            &dir,
            None,
            0,
        )
        .unwrap();
        assert_eq!(fg.partner().role, Role::PrivacyOfficer);
        assert_eq!(fg.partner().organisation_id(), "lyceum-zuid");
    }

    #[test]
    fn refusals_have_stable_codes() {
        let dir = PartnerDirectory::from_toml(PARTNERS).unwrap();
        let code = |p: Option<&Peer>, now| identify(p, &dir, None, now).unwrap_err().code;
        assert_eq!(code(None, 0), "client-certificate-required");
        assert_eq!(
            code(Some(&peer("00000001800000000009", "x", true, i64::MAX)), 0),
            "unknown-partner"
        );
        assert_eq!(
            code(
                Some(&peer(
                    "00000001800000000003",
                    "lyceum-zuid",
                    false,
                    i64::MAX
                )),
                0
            ),
            "certificate-not-for-clients"
        );
        assert_eq!(
            code(
                Some(&peer("00000001800000000003", "lyceum-zuid", true, 10)),
                11
            ),
            "certificate-expired"
        );
    }

    #[test]
    fn a_certificate_read_once_is_reused_and_the_cache_stays_bounded() {
        let certs = crate::certs::test_support::TempCerts::new();
        let cache = PeerCache::default();
        let school = certs.der("obs-de-linde");
        let first = cache.peer(&school).expect("identity fields");
        assert_eq!(first.cert.oin, "00000001800000000001");
        assert_eq!(first.cert.common_name, "obs-de-linde");
        let again = cache.peer(&school).expect("identity fields");
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second connection reuses the first one's reading"
        );
        let other = cache
            .peer(&certs.der("lyceum-zuid"))
            .expect("identity fields");
        assert_eq!(other.cert.common_name, "lyceum-zuid");
        assert_eq!(cache.lock().len(), 2);
        // A certificate whose fields cannot be read is refused, and not kept.
        assert!(cache.peer(b"not a certificate").is_none());
        assert_eq!(cache.lock().len(), 2);
        // Full: emptied, then the new certificate is kept.
        {
            let mut peers = cache.lock();
            for i in 0..PeerCache::MAX {
                peers.insert(i.to_be_bytes().to_vec().into(), first.clone());
            }
        }
        let third = cache
            .peer(&certs.der("swv-vo-zuid"))
            .expect("identity fields");
        assert_eq!(third.cert.common_name, "swv-vo-zuid");
        assert_eq!(cache.lock().len(), 1);
        assert!(
            !Arc::ptr_eq(&cache.peer(&school).unwrap(), &first),
            "read again after emptying"
        );
    }

    #[test]
    fn partners_toml_carries_membership_and_service_areas() {
        let certs = crate::certs::test_support::TempCerts::new();
        let dir = PartnerDirectory::load(&certs.path("partners.toml")).unwrap();
        let r = |id: &str| dir.by_id(id).unwrap().responsible.clone();
        assert_eq!(r("lyceum-zuid").swv, ["swv-vo-zuid"]);
        assert!(r("obs-de-linde").swv.is_empty());
        for school in [
            "obs-de-linde",
            "cbs-het-anker",
            "lyceum-zuid",
            "so-de-brug",
            "mbo-college-zuid",
        ] {
            assert_eq!(r(school).jgz, ["jgz-ggd-zuid"], "{school}");
        }
        for office in [
            "leerplicht-gemeente",
            "wijkteam-noord",
            "jgz-ggd-zuid",
            "veilig-thuis-zuid",
        ] {
            assert_eq!(
                r(office).gemeenten,
                [crate::certs::EXAMPLE_GEMEENTE],
                "{office}"
            );
        }
        assert_eq!(
            r("leerplicht-buurgemeente").gemeenten,
            [crate::certs::OTHER_GEMEENTE]
        );
        assert_eq!(
            dir.by_id("so-de-brug").unwrap().partner.role,
            Role::SchoolSo
        );
        assert_eq!(
            dir.by_id("veilig-thuis-zuid").unwrap().partner.role,
            Role::VeiligThuis
        );
    }

    #[test]
    fn a_push_endpoint_is_https_and_its_ca_is_resolved_against_partners_toml() {
        let with = |push: &str| {
            PARTNERS.replacen(
                "role = \"school-vo\"\n",
                &format!("role = \"school-vo\"\n{push}\n"),
                1,
            )
        };
        let dir = PartnerDirectory::from_toml_in(
            &with(r#"push = { url = "https://sis.example.nl:8443/in?x=1", ca = "push-ca.crt" }"#),
            Path::new("/etc/kp"),
        )
        .unwrap();
        let push = dir.by_id("lyceum-zuid").unwrap().push.clone().unwrap();
        assert_eq!(
            (push.host.as_str(), push.port, push.path.as_str()),
            ("sis.example.nl", 8443, "/in?x=1")
        );
        assert_eq!(push.ca, Path::new("/etc/kp/push-ca.crt"));
        assert!(dir.by_id("fg-lyceum-zuid").unwrap().push.is_none());
        let v6 = PushEndpoint::parse("https://[::1]/p", "ca".into()).unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 443));
        for (bad, why) in [
            (
                r#"push = { url = "http://sis.example.nl/in", ca = "c" }"#,
                "https://",
            ),
            (
                r#"push = { url = "https://u:p@sis.example.nl/in", ca = "c" }"#,
                "user info",
            ),
            (
                r#"push = { url = "https://sis.example.nl:0/in", ca = "c" }"#,
                "port",
            ),
            (r#"push = { url = "https://sis.example.nl/in" }"#, "ca"),
            (
                r#"push = { url = "https://sis.example.nl/in", ca = "c", insecure = true }"#,
                "insecure",
            ),
        ] {
            let err = PartnerDirectory::from_toml(&with(bad)).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_partner_files_are_refused() {
        assert!(PartnerDirectory::from_toml(
            "[[partner]]\nid='a'\nname='a'\nrole='school-po'\noin='1'\n"
        )
        .is_err());
        assert!(PartnerDirectory::from_toml(
            "[[partner]]\nid='a'\nname='a'\nrole='privacy-officer'\noin='00000001800000000003'\n"
        )
        .is_err());
        assert!(PartnerDirectory::from_toml(
            "[[partner]]\nid='a'\nname='a'\nrole='nobody'\noin='00000001800000000003'\n"
        )
        .is_err());
        let twice = format!(
            "{PARTNERS}{}",
            &PARTNERS[..PARTNERS.find("[[partner]]\nid = \"fg").unwrap()]
        );
        assert!(PartnerDirectory::from_toml(&twice).is_err());
    }

    #[test]
    fn an_oin_is_20_digits_with_a_known_prefix_and_a_bad_one_names_its_line() {
        assert!(check_oin("00000001800000000003").is_ok());
        assert!(check_oin("00000099000000000001").is_ok());
        for bad in [
            "0000000180000000000",
            "000000018000000000031",
            "0000000180000000000x",
            "12345678800000000003",
            "00000002800000000003",
        ] {
            assert!(check_oin(bad).is_err(), "{bad}");
        }
        let text = "[[partner]]\nid = 'a'\nname = 'a'\nrole = 'school-po'\noin = '00000001800000000001'\n\n[[partner]]\nid = 'b'\nname = 'b'\nrole = 'school-po'\noin = '99999999800000000002'\n";
        let e = PartnerDirectory::from_toml(text).unwrap_err();
        assert!(
            e.starts_with("11: partner b: the OIN's first 8 digits are no known prefix"),
            "{e}"
        );
        let shown = PartnersError::Parse {
            path: "partners.toml".into(),
            message: e,
        }
        .to_string();
        assert!(shown.starts_with("partners.toml:11: partner b:"), "{shown}");
        let shown = PartnersError::Parse {
            path: "partners.toml".into(),
            message: "TOML parse error".into(),
        }
        .to_string();
        assert_eq!(shown, "partners.toml: TOML parse error");
    }

    #[test]
    fn responsibilities_are_read_and_checked() {
        let ok = format!(
            "{PARTNERS}swv = [\"swv-vo-zuid\"]\n\n[[partner]]\nid = \"swv-vo-zuid\"\nname = \"S\"\nrole = \"swv-vo\"\noin = \"00000001800000000004\"\n\n[[partner]]\nid = \"lp\"\nname = \"L\"\nrole = \"leerplicht\"\noin = \"00000001800000000005\"\ngemeenten = [\"0599\"]\n"
        );
        let dir = PartnerDirectory::from_toml(&ok).unwrap();
        // `swv` was appended to the last partner of PARTNERS (the privacy officer), which is enough to read it.
        assert_eq!(
            dir.by_id("fg-lyceum-zuid").unwrap().responsible.swv,
            vec!["swv-vo-zuid".to_owned()]
        );
        assert_eq!(dir.by_id("lp").unwrap().responsible.gemeenten, vec!["0599"]);
        let bad_code = ok.replace("\"0599\"", "\"599\"");
        assert!(PartnerDirectory::from_toml(&bad_code)
            .unwrap_err()
            .contains("gemeentecode"));
        let unknown = ok.replace("swv = [\"swv-vo-zuid\"]", "swv = [\"swv-elders\"]");
        assert!(PartnerDirectory::from_toml(&unknown)
            .unwrap_err()
            .contains("not a partner"));
        let wrong_role = ok.replace("swv = [\"swv-vo-zuid\"]", "swv = [\"lp\"]");
        assert!(PartnerDirectory::from_toml(&wrong_role)
            .unwrap_err()
            .contains("whose role"));
        let jgz = ok.replace("swv = [\"swv-vo-zuid\"]", "jgz = [\"lp\"]");
        assert!(PartnerDirectory::from_toml(&jgz).is_err());
    }
}
