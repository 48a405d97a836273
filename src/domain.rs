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

/// The 11-proef's weighted sum 9*d1 + 8*d2 + ... + 2*d8 - 1*d9.
fn weighted_sum(d: &[u32]) -> i64 {
    let head: i64 = d[..8]
        .iter()
        .zip((2..=9).rev())
        .map(|(&x, w)| x as i64 * w)
        .sum();
    head - d[8] as i64
}

/// BSN: the weighted sum is divisible by 11 (and not 0).
fn bsn_check(d: &[u32]) -> bool {
    let s = weighted_sum(d);
    s != 0 && s % 11 == 0
}

/// Onderwijsnummer (DOMAIN.md, as python-stdnum's `stdnum.nl.onderwijsnummer`): the same weighted sum leaves
/// remainder 5 modulo 11. The caller checks the `10` prefix.
fn onderwijsnummer_check(d: &[u32]) -> bool {
    weighted_sum(d).rem_euclid(11) == 5
}

/// Who gave a consent. Whether it counts depends on who discloses and on the pupil's age
/// (DOMAIN.md "Legal bases"; `policy::consent_fits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GivenBy {
    /// A parent with gezag.
    Ouder,
    Voogd,
    Jongere,
    /// Parent (or guardian) and the young person together: counts at every age.
    #[serde(rename = "ouder-en-jongere")]
    OuderEnJongere,
    /// The representative of a person of 18 or over under curatele or mentorschap.
    Vertegenwoordiger,
}

impl GivenBy {
    pub const ALL: [GivenBy; 5] = [
        GivenBy::Ouder,
        GivenBy::Voogd,
        GivenBy::Jongere,
        GivenBy::OuderEnJongere,
        GivenBy::Vertegenwoordiger,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GivenBy::Ouder => "ouder",
            GivenBy::Voogd => "voogd",
            GivenBy::Jongere => "jongere",
            GivenBy::OuderEnJongere => "ouder-en-jongere",
            GivenBy::Vertegenwoordiger => "vertegenwoordiger",
        }
    }
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
    /// The pupil's birth date as registered with the consent, for the age rules when the message carries none.
    pub subject_birth_date: Option<time::Date>,
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

/// A kerngroep case id (P13): a UUID (8-4-4-4-12 hexadecimal digits with hyphens, any version) the sender generates;
/// never a name or a dossier number, so it can stand in the log.
pub fn is_case_id(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
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

    /// Test vectors from python-stdnum 2.2 (`stdnum.nl.onderwijsnummer`, the reference implementation DOMAIN.md
    /// names): `101222331`, `100252333`, `1012223333` and `211222337` are its doctests, the others were drawn at
    /// random and classified by its `validate` (`scripts/onderwijsnummer-vectors.py` checks this list against it).
    const ONDERWIJSNUMMERS_VALID: [&str; 12] = [
        "101222331", // the doctest, and DOMAIN.md's example
        "104577776",
        "105444024",
        "102154801",
        "107011317",
        "107624352",
        "106796829",
        "106608521",
        "108784569",
        "103502690",
        "101119751",
        "106991432",
    ];

    /// Invalid onderwijsnummers with python-stdnum's reason, and whether the number is a BSN (then it is still a
    /// valid PGN).
    const ONDERWIJSNUMMERS_INVALID: [(&str, SubjectError, bool); 14] = [
        // InvalidChecksum: the weighted sum leaves another remainder than 5 (the remainder in the comment).
        ("100252333", SubjectError::Checksum, true), // doctest; remainder 0: a BSN
        ("101036774", SubjectError::Checksum, false), // 9
        ("105510184", SubjectError::Checksum, false), // 6
        ("105209408", SubjectError::Checksum, false), // 8
        ("101415379", SubjectError::Checksum, false), // 2
        ("101602067", SubjectError::Checksum, false), // 10
        ("107533359", SubjectError::Checksum, false), // 4; passed the old rule (+1*d9, remainder 0)
        ("101234562", SubjectError::Checksum, false), // 7; the old test's number, built for the old rule
        // InvalidFormat: remainder 5, but the number does not start with 10.
        ("211222337", SubjectError::OnderwijsnummerPrefix, false), // doctest
        ("597258886", SubjectError::OnderwijsnummerPrefix, false),
        ("827069322", SubjectError::OnderwijsnummerPrefix, false),
        // Wrong length (python-stdnum: InvalidLength; it pads 8 digits with a 0, so `10122233` is InvalidFormat).
        ("1012223333", SubjectError::NotNineDigits, false), // doctest `1012.22.3333`
        ("1012223310", SubjectError::NotNineDigits, false),
        ("10122233", SubjectError::NotNineDigits, false),
    ];

    #[test]
    fn onderwijsnummers_leave_remainder_5() {
        for n in ONDERWIJSNUMMERS_VALID {
            assert!(
                SubjectId::new(SubjectKind::Onderwijsnummer, n).is_ok(),
                "{n}"
            );
            assert!(SubjectId::new(SubjectKind::Pgn, n).is_ok(), "{n}");
            assert_eq!(
                SubjectId::new(SubjectKind::Bsn, n),
                Err(SubjectError::Checksum),
                "{n}"
            );
        }
        for (n, rule, is_bsn) in ONDERWIJSNUMMERS_INVALID {
            assert_eq!(
                SubjectId::new(SubjectKind::Onderwijsnummer, n),
                Err(rule),
                "{n}"
            );
            assert_eq!(SubjectId::new(SubjectKind::Pgn, n).is_ok(), is_bsn, "{n}");
            assert!(!rule.to_string().contains(n));
        }
        let valid = SubjectId::new(SubjectKind::Pgn, "101222331").unwrap();
        assert_eq!(valid.kind(), SubjectKind::Pgn);
        assert!(format!("{valid:?}").contains("redacted"));
        assert!(!format!("{valid:?}").contains("101222331"));
    }
}
