//! The policy stage: which fields of a message a receiver may get, for this purpose, under this
//! legal basis and these consents (DESIGN.md "Policies").
//!
//! `PolicySet` is loaded from the TOML files of `policies/` (documented for privacy officers in
//! `policies/README.md`); `decide` is a pure function of the set, the message and the consent
//! records. Default deny: a field not named by the flow, or not in the catalogue, is withheld; a
//! flow that is not written down does not exist.
//!
//! This module must never do I/O other than reading policy files, and must never put a value from
//! a message into an error, a refusal detail, a withheld reason or `Debug` output: those name
//! field paths, rules and categories only.

mod aggregate;
mod check;
mod decide;
mod explain;
mod load;
mod model;
mod path;
mod screen;
mod transform;

#[cfg(test)]
mod flow_tests;

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::domain::Role;

pub use check::{check, check_sources, lint, Finding, Severity};
pub use decide::{age_on, consent_fits_age, decide, DecisionRequest, BIRTH_DATE_PATH};
pub use explain::explain;
pub use load::PolicyError;
pub use path::{strip_paths, Pattern};

/// Stable refusal codes (the `code` of the problem document).
pub mod codes {
    pub const NO_POLICY: &str = "no-policy";
    pub const WRONG_TYPE: &str = "wrong-type";
    pub const NO_AGREEMENT: &str = "no-agreement";
    pub const MISSING_SUBJECT: &str = "missing-subject";
    pub const INVALID_DATA: &str = "invalid-data";
    pub const CONSENT_REQUIRED: &str = "consent-required";
    pub const MISSING_REQUIRED_FIELD: &str = "missing-required-field";
    pub const SCREENED_TERM: &str = "screened-term";
    pub const JUSTIFICATION_REQUIRED: &str = "justification-required";
    pub const PERSON_LEVEL_IN_AGGREGATE: &str = "person-level-in-aggregate";
    pub const INVALID_AGGREGATE: &str = "invalid-aggregate";
}

/// Minimum number of non-whitespace characters of a justification.
pub const MIN_JUSTIFICATION_CHARS: usize = 20;

/// Sensitivity class of a catalogue field (DOMAIN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub enum Class {
    S0,
    S1,
    S1X,
    S2,
    S3,
    S4,
    #[serde(rename = "ART10")]
    Art10,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::S0 => "S0",
            Class::S1 => "S1",
            Class::S1X => "S1X",
            Class::S2 => "S2",
            Class::S3 => "S3",
            Class::S4 => "S4",
            Class::Art10 => "ART10",
        }
    }

    /// Special categories (AVG art. 9), professional secrecy and criminal data (art. 10).
    pub fn is_special(self) -> bool {
        matches!(self, Class::S4 | Class::Art10)
    }
}

/// What kind of value a catalogue field holds; a value of another kind is withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValueKind {
    /// A short string or a number (names, codes, house numbers).
    String,
    /// Free text.
    Text,
    /// `YYYY-MM-DD`.
    Date,
    Bool,
    Number,
    /// A Dutch postcode, `1234AB` or `1234 AB`.
    Postcode,
}

impl ValueKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::String => "string",
            ValueKind::Text => "text",
            ValueKind::Date => "date",
            ValueKind::Bool => "bool",
            ValueKind::Number => "number",
            ValueKind::Postcode => "postcode",
        }
    }
}

/// One field of a message type's catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueField {
    pub path: String,
    pub category: String,
    pub class: Class,
    pub kind: Option<ValueKind>,
    /// A closed list: any other value is withheld (`not-in-closed-list`).
    pub values: Option<Vec<String>>,
    pub note: Option<String>,
}

/// The field catalogue of one message type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageCatalogue {
    pub message_type: String,
    pub aggregate: bool,
    pub description: Option<String>,
    pub fields: Vec<CatalogueField>,
    pub file: String,
    pub line: usize,
    /// Each catalogue path and every prefix of one, in order of first appearance.
    order: std::collections::HashMap<String, usize>,
    /// Index into `fields` by path.
    by_path: std::collections::HashMap<String, usize>,
}

impl MessageCatalogue {
    pub fn field(&self, path: &str) -> Option<&CatalogueField> {
        self.by_path.get(path).map(|&i| &self.fields[i])
    }

    /// The field and its position in `fields` (the index `Flow::rule_for_field` takes).
    pub fn field_at(&self, path: &str) -> Option<(usize, &CatalogueField)> {
        self.by_path.get(path).map(|&i| (i, &self.fields[i]))
    }

    fn rank(&self, prefix: &str) -> Option<usize> {
        self.order.get(prefix).copied()
    }
}

/// How a field is generalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneraliseMethod {
    /// `2014-03-02` → `2014`.
    DateYear,
    /// `2014-03-02` → `2014-03`.
    DateYearMonth,
    /// `3011 AB` → `3011`.
    PostcodePc4,
    /// `14` with band 10 → `10-19`.
    NumberBand(u32),
}

impl GeneraliseMethod {
    pub fn name(self) -> String {
        match self {
            GeneraliseMethod::DateYear => "date-year".into(),
            GeneraliseMethod::DateYearMonth => "date-year-month".into(),
            GeneraliseMethod::PostcodePc4 => "postcode-pc4".into(),
            GeneraliseMethod::NumberBand(b) => format!("number-band-{b}"),
        }
    }

    /// The value kind the method works on.
    pub fn kind(self) -> ValueKind {
        match self {
            GeneraliseMethod::DateYear | GeneraliseMethod::DateYearMonth => ValueKind::Date,
            GeneraliseMethod::PostcodePc4 => ValueKind::Postcode,
            GeneraliseMethod::NumberBand(_) => ValueKind::Number,
        }
    }
}

/// The action of a rule. `consent` on generalise/pseudonymise means a consent is needed as well;
/// in a flow with `consent = true` every delivered field needs one anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAction {
    Allow,
    Consent,
    Generalise {
        method: GeneraliseMethod,
        consent: bool,
    },
    Pseudonymise {
        consent: bool,
    },
    Deny {
        reason: String,
    },
}

impl RuleAction {
    pub fn delivers(&self) -> bool {
        !matches!(self, RuleAction::Deny { .. })
    }

    /// Whether this rule alone (apart from a whole-flow consent) asks for a consent.
    pub fn needs_consent(&self) -> bool {
        match self {
            RuleAction::Consent => true,
            RuleAction::Generalise { consent, .. } | RuleAction::Pseudonymise { consent } => {
                *consent
            }
            RuleAction::Allow | RuleAction::Deny { .. } => false,
        }
    }
}

/// One `fields` entry of a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRule {
    pub pattern_text: String,
    pub pattern: Pattern,
    pub action: RuleAction,
    /// An explanation for readers of the policy; shown by `explain`.
    pub note: Option<String>,
    pub line: usize,
}

/// What the receiver gets as the message's `subject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubjectDelivery {
    /// The identifier as sent (needs `subject_basis`, UAVG art. 46).
    AsIs,
    /// A keyed pseudonym, different for every receiving organisation.
    Pseudonymise,
    /// Nothing.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalBasis {
    /// AVG art. 6 ground: `6.1.a` … `6.1.f`.
    pub ground: String,
    /// The Dutch article(s).
    pub article: String,
    /// The art. 9 / art. 10 exception that lets the flow deliver S4 / ART10 fields without consent.
    pub special: Option<String>,
}

impl fmt::Display for LegalBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ground.strip_prefix("6.1.") {
            Some(sub) => write!(f, "AVG art. 6 lid 1 sub {sub}; {}", self.article)?,
            None => write!(f, "AVG art. {}; {}", self.ground, self.article)?,
        }
        if let Some(s) = &self.special {
            write!(f, "; {s}")?;
        }
        Ok(())
    }
}

/// A convenant the flow is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    pub id: String,
    /// Partner ids of the organisations that signed.
    pub signatories: Vec<String>,
    pub valid_from: time::Date,
    pub valid_until: time::Date,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequiredField {
    pub path: String,
    pub equals: Option<serde_json::Value>,
    /// The value must be the receiving organisation's partner id.
    pub equals_receiver: bool,
}

/// A term list: a text field naming any of the terms refuses the whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreenList {
    pub field: String,
    pub category: String,
    pub terms: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dimension {
    pub name: String,
    pub values: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateRules {
    pub dimensions: Vec<Dimension>,
    pub categories: Vec<String>,
    pub max_dimensions: usize,
    pub min_cell: u64,
    pub rounding: u64,
    pub secondary_suppression: bool,
}

/// One flow: (sender role, receiver role, purpose) → what may be disclosed.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub id: String,
    pub name: String,
    pub file: String,
    pub line: usize,
    pub senders: Vec<Role>,
    pub receivers: Vec<Role>,
    pub purpose: String,
    pub message_type: String,
    pub description: Option<String>,
    pub legal_basis: LegalBasis,
    pub retention_days: u32,
    pub retention_text: String,
    pub justification_required: bool,
    /// The whole flow rests on consent: no applying consent record, no message.
    pub consent: bool,
    pub subject: SubjectDelivery,
    pub subject_basis: Option<String>,
    pub agreement: Option<Agreement>,
    pub required: Vec<RequiredField>,
    pub rules: Vec<FieldRule>,
    pub screening: Vec<ScreenList>,
    pub aggregate: Option<AggregateRules>,
    /// `rule_for` of every field of the flow's catalogue, resolved once at load: position in `rules` per
    /// position in `MessageCatalogue::fields`.
    pub(super) field_rules: Vec<Option<usize>>,
}

impl Flow {
    /// The most specific rule naming `catalogue_path`, if any.
    pub fn rule_for(&self, catalogue_path: &str) -> Option<&FieldRule> {
        self.rules
            .iter()
            .filter(|r| r.pattern.matches(catalogue_path))
            .max_by_key(|r| r.pattern.specificity())
    }

    /// `rule_for` the catalogue field at `index` (see `MessageCatalogue::field_at`), without matching patterns.
    pub fn rule_for_field(&self, index: usize) -> Option<&FieldRule> {
        self.field_rules
            .get(index)
            .copied()
            .flatten()
            .map(|i| &self.rules[i])
    }

    pub fn matches(&self, sender: Role, receiver: Role, purpose: &str) -> bool {
        self.purpose == purpose
            && self.senders.contains(&sender)
            && self.receivers.contains(&receiver)
    }
}

/// A loaded, checked set of policy files.
#[derive(Debug, Clone)]
pub struct PolicySet {
    flows: Vec<Flow>,
    catalogues: BTreeMap<String, MessageCatalogue>,
    files: Vec<String>,
    hash: String,
}

impl PolicySet {
    /// Hex SHA-256 over the sorted (file name, text) pairs of the set.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn flows(&self) -> impl Iterator<Item = &Flow> {
        self.flows.iter()
    }

    pub fn catalogues(&self) -> impl Iterator<Item = &MessageCatalogue> {
        self.catalogues.values()
    }

    pub fn catalogue(&self, message_type: &str) -> Option<&MessageCatalogue> {
        self.catalogues.get(message_type)
    }

    /// The file names the set was loaded from, sorted.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    pub fn find_flow(&self, sender: Role, receiver: Role, purpose: &str) -> Option<&Flow> {
        self.flows
            .iter()
            .find(|f| f.matches(sender, receiver, purpose))
    }
}

/// Why a field was not delivered. `Display` gives `code: human text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WithheldReason {
    /// A `deny` rule, with the reason written in the policy.
    Denied(String),
    NotInFlow,
    NotInCatalogue,
    ConsentMissing,
    NotInClosedList,
    InvalidValue,
    /// An aggregate cell below the minimum size, or suppressed to protect one.
    Suppressed,
}

impl WithheldReason {
    pub fn code(&self) -> &'static str {
        match self {
            WithheldReason::Denied(_) => "deny",
            WithheldReason::NotInFlow => "not-in-flow",
            WithheldReason::NotInCatalogue => "not-in-catalogue",
            WithheldReason::ConsentMissing => "consent-missing",
            WithheldReason::NotInClosedList => "not-in-closed-list",
            WithheldReason::InvalidValue => "invalid-value",
            WithheldReason::Suppressed => "suppressed",
        }
    }
}

impl fmt::Display for WithheldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            WithheldReason::Denied(reason) => reason.as_str(),
            WithheldReason::NotInFlow => "the flow does not name this field",
            WithheldReason::NotInCatalogue => {
                "the field is not in the catalogue of this message type"
            }
            WithheldReason::ConsentMissing => "no valid consent covers this field's category",
            WithheldReason::NotInClosedList => {
                "the value is not one of the catalogue's closed list"
            }
            WithheldReason::InvalidValue => "the value is not of the catalogue's kind",
            WithheldReason::Suppressed => "small cell suppressed (disclosure control)",
        };
        write!(f, "{}: {}", self.code(), text)
    }
}

/// What happened to one leaf of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldAction {
    Delivered,
    Generalised { method: String },
    Pseudonymised,
    Withheld { reason: WithheldReason },
}

impl FieldAction {
    pub fn is_delivered(&self) -> bool {
        !matches!(self, FieldAction::Withheld { .. })
    }
}

/// The outcome for one concrete leaf path of the input (`toetsen[0].score`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldOutcome {
    pub path: String,
    /// `toetsen[].score`; `None` when a key does not fit the catalogue grammar.
    pub catalogue_path: Option<String>,
    pub action: FieldAction,
    pub category: Option<String>,
    pub class: Option<Class>,
    /// The consent a delivered field rests on.
    pub consent_id: Option<String>,
}

/// The policy's decision about one message. `Debug` never shows the delivered values.
#[derive(Clone, PartialEq)]
pub struct Decision {
    pub flow_id: String,
    pub flow_name: String,
    pub policy_hash: String,
    pub legal_basis: String,
    pub retention_days: u32,
    pub agreement_id: Option<String>,
    /// The inbox's `subject`: `{"pgn": …}` (or `bsn`/`onderwijsnummer`), `{"pseudonym": …}`, or none.
    pub subject: Option<serde_json::Value>,
    /// The data object the receiver gets.
    pub delivered: serde_json::Value,
    /// One entry per leaf of the input, in catalogue order.
    pub fields: Vec<FieldOutcome>,
    pub consents_used: Vec<String>,
    /// Aggregates: indices into `cellen` of the suppressed cells.
    pub suppressed_cells: Vec<usize>,
}

impl fmt::Debug for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decision")
            .field("flow_id", &self.flow_id)
            .field("policy_hash", &self.policy_hash)
            .field("agreement_id", &self.agreement_id)
            .field("subject", &self.subject.as_ref().map(|_| "<redacted>"))
            .field("delivered", &"<redacted>")
            .field("fields", &self.fields)
            .field("consents_used", &self.consents_used)
            .field("suppressed_cells", &self.suppressed_cells)
            .finish()
    }
}

impl Decision {
    /// Concrete paths delivered (as is, generalised or pseudonymised).
    pub fn delivered_paths(&self) -> Vec<String> {
        self.fields
            .iter()
            .filter(|f| f.action.is_delivered())
            .map(|f| f.path.clone())
            .collect()
    }

    /// Concrete paths withheld, with `code: text` reasons.
    pub fn withheld(&self) -> Vec<(String, String)> {
        self.fields
            .iter()
            .filter_map(|f| match &f.action {
                FieldAction::Withheld { reason } => Some((f.path.clone(), reason.to_string())),
                _ => None,
            })
            .collect()
    }

    /// (concrete path, consent id) of every delivered field that rests on a consent: at fetch
    /// time, the paths whose consent no longer holds go to `strip_paths`.
    pub fn consent_dependent(&self) -> Vec<(String, String)> {
        self.fields
            .iter()
            .filter(|f| f.action.is_delivered())
            .filter_map(|f| f.consent_id.as_ref().map(|c| (f.path.clone(), c.clone())))
            .collect()
    }

    pub fn outcome(&self, path: &str) -> Option<&FieldOutcome> {
        self.fields.iter().find(|f| f.path == path)
    }
}

/// A message the policy refuses as a whole. `detail` names rules, paths and categories, never values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub status: u16,
    pub detail: String,
}

impl Refusal {
    pub(crate) fn new(code: &'static str, status: u16, detail: impl Into<String>) -> Refusal {
        Refusal {
            code,
            status,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.detail)
    }
}

impl std::error::Error for Refusal {}
