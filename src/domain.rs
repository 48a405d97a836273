//! Shared domain vocabulary: roles, partners, pupil identifiers and consent records.
//!
//! Pure types with validation; no I/O. Nothing here may format a pupil identifier into an
//! error message: `SubjectError` says which rule failed, never the value.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The role of a partner organisation in the chain (DOMAIN.md "Roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    SchoolPo,
    SchoolSo,
    SchoolVo,
    SchoolVso,
    SchoolMbo,
    SwvPo,
    SwvVo,
    Leerplicht,
    Wijkteam,
    Jgz,
    VeiligThuis,
    PrivacyOfficer,
}

impl Role {
    pub const ALL: [Role; 12] = [
        Role::SchoolPo,
        Role::SchoolSo,
        Role::SchoolVo,
        Role::SchoolVso,
        Role::SchoolMbo,
        Role::SwvPo,
        Role::SwvVo,
        Role::Leerplicht,
        Role::Wijkteam,
        Role::Jgz,
        Role::VeiligThuis,
        Role::PrivacyOfficer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::SchoolPo => "school-po",
            Role::SchoolSo => "school-so",
            Role::SchoolVo => "school-vo",
            Role::SchoolVso => "school-vso",
            Role::SchoolMbo => "school-mbo",
            Role::SwvPo => "swv-po",
            Role::SwvVo => "swv-vo",
            Role::Leerplicht => "leerplicht",
            Role::Wijkteam => "wijkteam",
            Role::Jgz => "jgz",
            Role::VeiligThuis => "veilig-thuis",
            Role::PrivacyOfficer => "privacy-officer",
        }
    }

    /// A school of any kind (po, so, vo, vso, mbo).
    pub fn is_school(self) -> bool {
        matches!(
            self,
            Role::SchoolPo | Role::SchoolSo | Role::SchoolVo | Role::SchoolVso | Role::SchoolMbo
        )
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A partner as known from `partners.toml`, found only from a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partner {
    /// Stable partner id, e.g. `obs-de-linde`.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// OIN: 20 digits, from the certificate's subject serialNumber.
    pub oin: String,
    /// For privacy-officer functions: the partner id of the organisation they serve;
    /// `None` for the operator's FG (sees all) and for ordinary partners.
    pub organisation: Option<String>,
}

impl Partner {
    /// The organisation this partner acts for: itself, or the organisation of a privacy officer.
    pub fn organisation_id(&self) -> &str {
        self.organisation.as_deref().unwrap_or(&self.id)
    }
}

/// Which kind of identifier names the pupil.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    Pgn,
    Bsn,
    Onderwijsnummer,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Pgn => "pgn",
            SubjectKind::Bsn => "bsn",
            SubjectKind::Onderwijsnummer => "onderwijsnummer",
        }
    }
}

/// A validated pupil identifier. `Debug` never prints the number.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SubjectId {
    kind: SubjectKind,
    number: String,
}

impl fmt::Debug for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectId({}:<redacted>)", self.kind.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("the subject identifier must be exactly 9 digits")]
    NotNineDigits,
    #[error("the subject identifier fails the 11-proef")]
    Checksum,
    #[error("an onderwijsnummer starts with 10")]
    OnderwijsnummerPrefix,
}

impl SubjectId {
    /// Validates `number` for `kind`. A PGN is either a BSN or an onderwijsnummer.
    pub fn new(kind: SubjectKind, number: &str) -> Result<SubjectId, SubjectError> {
        let digits: Vec<u32> = number.chars().filter_map(|c| c.to_digit(10)).collect();
        if number.len() != 9 || digits.len() != 9 {
            return Err(SubjectError::NotNineDigits);
        }
        let ok = match kind {
            SubjectKind::Bsn => bsn_check(&digits),
            SubjectKind::Onderwijsnummer => {
                if !number.starts_with("10") {
                    return Err(SubjectError::OnderwijsnummerPrefix);
                }
                onderwijsnummer_check(&digits)
            }
            SubjectKind::Pgn => {
                bsn_check(&digits) || (number.starts_with("10") && onderwijsnummer_check(&digits))
            }
        };
        if ok {
            Ok(SubjectId {
                kind,
                number: number.to_owned(),
            })
        } else {
            Err(SubjectError::Checksum)
        }
    }

    pub fn kind(&self) -> SubjectKind {
        self.kind
    }

    /// The raw number. Callers must only use it to pseudonymise or to deliver where a flow allows.
    pub fn number(&self) -> &str {
        &self.number
    }
}

fn weighted_sum(d: &[u32], last_weight: i64) -> i64 {
    let head: i64 = d[..8]
        .iter()
        .zip((2..=9).rev())
        .map(|(&x, w)| x as i64 * w)
        .sum();
    head + last_weight * d[8] as i64
}

fn bsn_check(d: &[u32]) -> bool {
    let s = weighted_sum(d, -1);
    s != 0 && s % 11 == 0
}

fn onderwijsnummer_check(d: &[u32]) -> bool {
    weighted_sum(d, 1) % 11 == 0
}

/// Who gave a consent (DOMAIN.md: parents under 12, child and parents 12–15, the young person from 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GivenBy {
    Ouder,
    Voogd,
    Jongere,
    /// Parent (or guardian) and the young person together, needed from 12 to 15.
    #[serde(rename = "ouder-en-jongere")]
    OuderEnJongere,
}

/// A consent as the policy decision sees it. The subject is already matched by the caller
/// (through the keyed pseudonym), so the record holds no identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    pub consent_id: String,
    /// Partner id of the organisation that registered it.
    pub registered_by: String,
    pub purpose: String,
    /// A partner id or a role name (`wijkteam`).
    pub recipient: String,
    /// Category codes (`ADM`, `DIAG`, ...) or `*` for every consent-only field of the flow.
    pub categories: Vec<String>,
    pub given_by: GivenBy,
    pub valid_from: time::Date,
    pub valid_until: time::Date,
    pub withdrawn: bool,
}

impl ConsentRecord {
    /// True when this record is in force on `day` for `purpose` towards `receiver`.
    pub fn applies(&self, purpose: &str, receiver: &Partner, day: time::Date) -> bool {
        self.lapse_on(day).is_none()
            && self.purpose == purpose
            && (self.recipient == receiver.id || self.recipient == receiver.role.as_str())
    }

    /// Why this record is not in force on `day` (`consent-withdrawn`, `consent-expired`, `consent-not-yet-valid`),
    /// or `None` while it is.
    pub fn lapse_on(&self, day: time::Date) -> Option<&'static str> {
        if self.withdrawn {
            Some("consent-withdrawn")
        } else if day > self.valid_until {
            Some("consent-expired")
        } else if day < self.valid_from {
            Some("consent-not-yet-valid")
        } else {
            None
        }
    }

    pub fn covers_category(&self, category: &str) -> bool {
        self.categories.iter().any(|c| c == "*" || c == category)
    }
}

/// A CBS gemeentecode: exactly 4 digits.
pub fn is_gemeentecode(s: &str) -> bool {
    s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The facts of `partners.toml` that bind a receiver to a pupil's case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Responsibilities {
    /// A school: the samenwerkingsverbanden it belongs to (partner ids).
    pub swv: Vec<String>,
    /// A leerplicht office, wijkteam, jgz or Veilig Thuis: the gemeenten it serves (CBS gemeentecodes).
    pub gemeenten: Vec<String>,
    /// A school: the JGZ attached to it (partner ids).
    pub jgz: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_pgns_pass_the_11_proef() {
        for n in [
            "628194821",
            "252760189",
            "507529170",
            "121547280",
            "123456782",
        ] {
            assert!(SubjectId::new(SubjectKind::Pgn, n).is_ok(), "{n}");
            assert!(SubjectId::new(SubjectKind::Bsn, n).is_ok(), "{n}");
        }
    }

    #[test]
    fn bad_numbers_are_refused_with_the_rule_not_the_value() {
        assert_eq!(
            SubjectId::new(SubjectKind::Pgn, "123456789"),
            Err(SubjectError::Checksum)
        );
        assert_eq!(
            SubjectId::new(SubjectKind::Pgn, "12345678"),
            Err(SubjectError::NotNineDigits)
        );
        assert_eq!(
            SubjectId::new(SubjectKind::Pgn, "12345678a"),
            Err(SubjectError::NotNineDigits)
        );
        assert_eq!(
            SubjectId::new(SubjectKind::Bsn, "000000000"),
            Err(SubjectError::Checksum)
        );
        let err = SubjectId::new(SubjectKind::Pgn, "123456789").unwrap_err();
        assert!(!err.to_string().contains("123456789"));
    }

    #[test]
    fn onderwijsnummer_uses_plus_one_on_the_last_digit() {
        // 1*... : find one valid onderwijsnummer by construction.
        let base = [1u32, 0, 1, 2, 3, 4, 5, 6];
        let head: i64 = base
            .iter()
            .zip((2..=9).rev())
            .map(|(&x, w)| x as i64 * w)
            .sum();
        let last = (0..10)
            .find(|l| (head + l) % 11 == 0)
            .expect("a check digit exists");
        let n: String = base.iter().map(|d| d.to_string()).collect::<String>() + &last.to_string();
        assert!(SubjectId::new(SubjectKind::Onderwijsnummer, &n).is_ok());
        assert!(SubjectId::new(SubjectKind::Pgn, &n).is_ok());
        assert_eq!(
            SubjectId::new(SubjectKind::Onderwijsnummer, "628194821"),
            Err(SubjectError::OnderwijsnummerPrefix)
        );
        assert!(
            format!("{:?}", SubjectId::new(SubjectKind::Pgn, &n).unwrap()).contains("redacted")
        );
    }
}
