//! Who is calling: the partner behind the verified client certificate, and nothing else.
//!
//! The identity is read once per connection from the certificate the TLS verifier accepted and re-checked on every
//! request against the current revocation list (so a revoked partner is refused on a resumed session or an open
//! keep-alive connection too). It must never be taken from a header, a body or a query parameter.

use crate::domain::{Partner, Role};
use crate::problem::Problem;
use crate::tls::{ClientIdentity, Revocations};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum PartnersError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
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
    oin: String,
    organisation: Option<String>,
    #[serde(default)]
    sees_all: bool,
    common_name: Option<String>,
    rate_per_second: Option<u32>,
    burst: Option<u32>,
}

/// A partner known to the gateway, with its per-partner settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerInfo {
    pub partner: Partner,
    /// The operator's privacy officer sees every organisation's entries.
    pub sees_all: bool,
    pub rate_per_second: Option<u32>,
    pub burst: Option<u32>,
}

/// `partners.toml`: certificate (OIN, common name) -> partner.
#[derive(Debug, Default)]
pub struct PartnerDirectory {
    by_cert: HashMap<(String, String), Arc<PartnerInfo>>,
    by_id: HashMap<String, Arc<PartnerInfo>>,
}

impl PartnerDirectory {
    pub fn load(path: &Path) -> Result<PartnerDirectory, PartnersError> {
        let text = std::fs::read_to_string(path).map_err(|source| PartnersError::Read {
            path: path.display().to_string(),
            source,
        })?;
        PartnerDirectory::from_toml(&text).map_err(|message| PartnersError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn from_toml(text: &str) -> Result<PartnerDirectory, String> {
        let file: PartnerFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut dir = PartnerDirectory::default();
        for e in file.partner {
            if e.oin.len() != 20 || !e.oin.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("partner {}: an OIN is 20 digits", e.id));
            }
            if e.role == Role::PrivacyOfficer && e.organisation.is_none() {
                return Err(format!(
                    "partner {}: a privacy officer names its organisation",
                    e.id
                ));
            }
            let cn = e.common_name.clone().unwrap_or_else(|| e.id.clone());
            let info = Arc::new(PartnerInfo {
                partner: Partner {
                    id: e.id.clone(),
                    name: e.name,
                    role: e.role,
                    oin: e.oin.clone(),
                    organisation: e.organisation,
                },
                sees_all: e.sees_all,
                rate_per_second: e.rate_per_second,
                burst: e.burst,
            });
            if dir.by_id.insert(e.id.clone(), info.clone()).is_some() {
                return Err(format!("partner id {} appears twice", e.id));
            }
            if dir.by_cert.insert((e.oin, cn), info).is_some() {
                return Err(format!(
                    "partner {}: another partner has the same OIN and common name",
                    e.id
                ));
            }
        }
        Ok(dir)
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<PartnerInfo>> {
        self.by_id.get(id)
    }

    pub fn by_certificate(&self, oin: &str, common_name: &str) -> Option<&Arc<PartnerInfo>> {
        self.by_cert.get(&(oin.to_owned(), common_name.to_owned()))
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<PartnerInfo>> {
        self.by_id.values()
    }
}

/// The verified peer of one TLS connection, before it is mapped to a partner.
#[derive(Debug, Clone)]
pub struct Peer {
    pub cert: ClientIdentity,
}

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub info: Arc<PartnerInfo>,
    pub fingerprint: String,
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
) -> Result<Caller, Problem> {
    let Some(peer) = peer else {
        return Err(Problem::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "client-certificate-required",
            "a client certificate is required",
        ));
    };
    let cert = &peer.cert;
    if revocations.is_some_and(|r| r.is_revoked(&cert.serial)) {
        return Err(Problem::forbidden(
            "certificate-revoked",
            "the client certificate has been revoked",
        ));
    }
    if cert.not_after < now_unix {
        return Err(Problem::forbidden(
            "certificate-expired",
            "the client certificate has expired",
        ));
    }
    if !cert.has_client_auth_eku {
        return Err(Problem::forbidden(
            "certificate-not-for-clients",
            "the client certificate lacks the clientAuth extended key usage",
        ));
    }
    match partners.by_certificate(&cert.oin, &cert.common_name) {
        Some(info) => Ok(Caller {
            info: info.clone(),
            fingerprint: cert.fingerprint_sha256.clone(),
        }),
        None => Err(Problem::forbidden(
            "unknown-partner",
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
}
