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

mod ages;
mod aggregate;
mod binding;
mod check;
mod decide;
mod diff;
mod explain;
mod labels;
mod load;
mod model;
mod path;
mod screen;
mod transform;

#[cfg(test)]
mod flow_tests;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use crate::domain::Role;

pub use ages::{consent_fits, About, AgeRule, Fit};
pub use binding::{bind_receiver, is_flow_of, CaseFacts, ReceiverBinding, Reference};
pub use check::{check, check_sources, lint, load_checked, load_for_serving, Finding, Severity};
pub use decide::{age_on, decide, DecisionRequest, BIRTH_DATE_PATH, PARENTS_PREFIX};
pub use diff::{diff, CatalogueDiff, Change, FlowDiff, PolicyDiff, Section, Status};
pub use explain::{explain, explanation, ExplainedField, Explanation};
pub use labels::{category_name, group_fields, CategoryGroup, NamedField, ACTIONS, CATEGORIES};
pub use load::PolicyError;
pub use path::{strip_paths, Pattern};

/// Stable refusal codes (the `code` of the problem document).
pub mod codes {
    use crate::refusal::ProblemCode;
    pub const NO_POLICY: ProblemCode = ProblemCode::NoPolicy;
    pub const WRONG_TYPE: ProblemCode = ProblemCode::WrongType;
    pub const NO_AGREEMENT: ProblemCode = ProblemCode::NoAgreement;
    pub const MISSING_SUBJECT: ProblemCode = ProblemCode::MissingSubject;
    pub const INVALID_DATA: ProblemCode = ProblemCode::InvalidData;
    pub const INVALID_DATE: ProblemCode = ProblemCode::InvalidDate;
    pub const CONSENT_REQUIRED: ProblemCode = ProblemCode::ConsentRequired;
    pub const CONSENT_AGE_UNKNOWN: ProblemCode = ProblemCode::ConsentAgeUnknown;
    pub const MISSING_REQUIRED_FIELD: ProblemCode = ProblemCode::MissingRequiredField;
    pub const SCREENED_TERM: ProblemCode = ProblemCode::ScreenedTerm;
    pub const IDENTIFYING_DATA: ProblemCode = ProblemCode::IdentifyingDataInAnonymousConsult;
    pub const JUSTIFICATION_REQUIRED: ProblemCode = ProblemCode::JustificationRequired;
    pub const PERSON_LEVEL_IN_AGGREGATE: ProblemCode = ProblemCode::PersonLevelInAggregate;
    pub const INVALID_AGGREGATE: ProblemCode = ProblemCode::InvalidAggregate;
    pub const INVALID_ENVELOPE: ProblemCode = ProblemCode::InvalidEnvelope;
    pub const RECEIVER_NOT_RESPONSIBLE: ProblemCode = ProblemCode::ReceiverNotResponsible;
    pub const UNKNOWN_REFERENCE: ProblemCode = ProblemCode::UnknownReference;
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

/// Which dates a `kind = "date"` field may hold (DOMAIN.md *Identifiers*: dates must be plausible). Every date,
/// whatever its rule, is on or after `EARLIEST_DATE`; a field without a rule may lie at most a year ahead, as a
/// `planned` one. `today` is the decision's day (the gateway's UTC date).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DateRule {
    /// A birth date: not after today.
    Birth,
    /// A date that may lie ahead, such as an aanmelding or a verzuim period: at most one year after today.
    Planned,
}

/// No date in a message is before this day (DOMAIN.md: a date before 1990 is refused).
pub const EARLIEST_DATE: time::Date = time::macros::date!(1990 - 01 - 01);

impl DateRule {
    pub fn as_str(self) -> &'static str {
        match self {
            DateRule::Birth => "birth",
            DateRule::Planned => "planned",
        }
    }
}

/// Why `d`, the value of a date field with `rule` (`None`: the general rule), is not plausible on `today`: the
/// rule it breaks, in words, or `None` when it is plausible. Never names the value.
pub fn implausible_date(
    rule: Option<DateRule>,
    d: time::Date,
    today: time::Date,
) -> Option<&'static str> {
    if d < EARLIEST_DATE {
        return Some("a date before 1990-01-01 is not plausible");
    }
    match rule {
        Some(DateRule::Birth) if d > today => Some("a birth date after today is not plausible"),
        Some(DateRule::Birth) => None,
        Some(DateRule::Planned) | None if d > a_year_after(today) => {
            Some("a date more than a year after today is not plausible")
        }
        Some(DateRule::Planned) | None => None,
    }
}

/// The same day a year later; 29 February becomes 28 February.
fn a_year_after(today: time::Date) -> time::Date {
    let next = today.year() + 1;
    today
        .replace_year(next)
        .or_else(|_| today.replace_day(28).and_then(|d| d.replace_year(next)))
        .unwrap_or(time::Date::MAX)
}

/// One field of a message type's catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueField {
    pub path: String,
    /// The field in Dutch words (`Achternaam leerling`), for explain, the console and the art. 15 report.
    pub label: String,
    pub category: String,
    pub class: Class,
    pub kind: Option<ValueKind>,
    /// For a field of kind `date`: which dates are plausible (`date = ...` in the catalogue; `None`: the general
    /// rule). Always `None` for other kinds.
    pub date: Option<DateRule>,
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
    /// The catalogue paths as a tree of steps, for the decision's walk over `data`.
    tree: PathTree,
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
}

/// The catalogue paths as a tree of steps (a key, or `[]` into an array), built at load so the decision resolves
/// each key of `data` by a search among its siblings: no path strings and no hashing per key. Node 0 is `data`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct PathTree {
    nodes: Vec<PathNode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct PathNode {
    /// The key steps below this node, in catalogue order.
    keys: Vec<(Box<str>, usize)>,
    /// Positions in `keys`, sorted by `by_length` of the key.
    sorted: Vec<usize>,
    /// The `[]` step below this node.
    array: Option<usize>,
    /// Position of this (key-ended) path among every catalogue path and prefix, in order of first appearance:
    /// the order in which the decision lists a node's children.
    rank: usize,
    /// The catalogue field whose path ends here (index into `MessageCatalogue::fields`).
    field: Option<usize>,
}

/// Shorter keys first, then by bytes: most comparisons of a search are then one of lengths.
fn by_length(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

impl PathTree {
    pub(super) const ROOT: usize = 0;

    /// The tree of `fields`' paths (each one valid, see `path::valid_catalogue_path`).
    pub(super) fn build(fields: &[CatalogueField]) -> PathTree {
        let mut t = PathTree {
            nodes: vec![PathNode::default()],
        };
        let mut next_rank = 0;
        for (i, f) in fields.iter().enumerate() {
            let mut cur = PathTree::ROOT;
            for seg in f.path.split('.') {
                let (name, array) = match seg.strip_suffix("[]") {
                    Some(name) => (name, true),
                    None => (seg, false),
                };
                cur = match t.key(cur, name, &mut 0) {
                    Some(n) => n,
                    None => {
                        let n = t.nodes.len();
                        t.nodes.push(PathNode {
                            rank: next_rank,
                            ..PathNode::default()
                        });
                        next_rank += 1;
                        let node = &mut t.nodes[cur];
                        let at = node
                            .sorted
                            .partition_point(|&j| by_length(&node.keys[j].0, name).is_lt());
                        node.sorted.insert(at, node.keys.len());
                        node.keys.push((name.into(), n));
                        n
                    }
                };
                if array {
                    cur = match t.nodes[cur].array {
                        Some(n) => n,
                        None => {
                            let n = t.nodes.len();
                            t.nodes.push(PathNode::default());
                            t.nodes[cur].array = Some(n);
                            n
                        }
                    };
                }
            }
            t.nodes[cur].field = Some(i);
        }
        t
    }

    /// The node below `node` by key `k`. `hint`: where in catalogue order to look first; it is set to just after
    /// `k`, so a sender that keeps to the catalogue's order has each key found at the first comparison.
    pub(super) fn key(&self, node: usize, k: &str, hint: &mut usize) -> Option<usize> {
        let n = &self.nodes[node];
        if let Some((x, child)) = n.keys.get(*hint) {
            if **x == *k {
                *hint += 1;
                return Some(*child);
            }
        }
        let i = n
            .sorted
            .binary_search_by(|&j| by_length(&n.keys[j].0, k))
            .ok()?;
        let at = n.sorted[i];
        *hint = at + 1;
        Some(n.keys[at].1)
    }

    /// The node below `node` by `[]`.
    pub(super) fn array(&self, node: usize) -> Option<usize> {
        self.nodes[node].array
    }

    pub(super) fn rank(&self, node: usize) -> usize {
        self.nodes[node].rank
    }

    pub(super) fn field(&self, node: usize) -> Option<usize> {
        self.nodes[node].field
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

/// `when` of a rule: its action applies only when a field of the message holds one of a closed list of values;
/// otherwise the stricter `otherwise` applies. A missing field, or a value that is not text, does not hold (the
/// stricter action then applies: the rule fails closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// Catalogue path of the field read.
    pub field: String,
    /// The rule's own field: each leaf reads its own value (per array element). Otherwise `field` is one field of
    /// the message outside any array, read once per message.
    pub own: bool,
    /// Compared with the value trimmed, ignoring ASCII case.
    pub one_of: Vec<String>,
    /// `Consent` or `Deny`.
    pub otherwise: RuleAction,
}

impl Condition {
    pub fn holds_for(&self, value: Option<&crate::data::Node>) -> bool {
        value
            .and_then(crate::data::Node::as_str)
            .map(str::trim)
            .is_some_and(|v| self.one_of.iter().any(|o| o.eq_ignore_ascii_case(v)))
    }
}

/// One `fields` entry of a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRule {
    pub pattern_text: String,
    pub pattern: Pattern,
    /// What the rule does (when its `condition` holds, if it has one).
    pub action: RuleAction,
    pub condition: Option<Condition>,
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

/// The longest `gateway_days` a flow may set: a quarter. The gateway is a transport, not an archive: a payload nobody
/// fetched in that time (longer than the six-week summer holiday, with room to spare) has a receiver that is not
/// listening, and the sender must hear that instead of the payload waiting for months in a second store.
pub const MAX_GATEWAY_DAYS: u32 = 90;

/// `[flow.retention]`: two periods that are not the same thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// How long the gateway keeps a payload that was not acknowledged, counted from sending (`1..=MAX_GATEWAY_DAYS`).
    /// Past it the payload is purged: `message-expired` when never fetched, `payload-purged` when fetched.
    pub gateway_days: u32,
    /// How long the receiver keeps what it received: told to the receiver, shown to the FG and in the art. 15
    /// report; the gateway does not enforce it.
    pub receiver: ReceiverRetention,
}

/// The receiver's retention period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverRetention {
    /// The period in words (`receiver_text`): some are no number of days ("in het leerlingdossier").
    pub text: String,
    /// The period in days from receipt, when it is one (`receiver_days`).
    pub days: Option<u32>,
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

impl Agreement {
    /// Its id, signatories and validity in Dutch, and after `separator` its description when it has one.
    pub fn summary_nl(&self, separator: &str) -> String {
        let mut s = format!(
            "{}, ondertekend door {}, geldig van {} tot en met {}",
            self.id,
            self.signatories.join(", "),
            self.valid_from,
            self.valid_until
        );
        if let Some(d) = &self.description {
            s.push_str(separator);
            s.push_str(d);
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequiredField {
    pub path: String,
    pub equals: Option<serde_json::Value>,
    /// The value must be the receiving organisation's partner id.
    pub equals_receiver: bool,
    /// What the sender must do first when the field is missing (added to the refusal's detail).
    pub hint: Option<String>,
    /// Required only when this condition holds; `None`: always.
    pub when: Option<RequiredWhen>,
}

/// `when` of a required field: it applies when `field` equals `equals`, and also when `field` is missing or holds
/// a value of another kind (fails closed: only a value of the same kind that differs lifts the requirement).
#[derive(Debug, Clone, PartialEq)]
pub struct RequiredWhen {
    pub field: String,
    pub equals: serde_json::Value,
}

/// A term list: a text field naming any of the terms refuses the whole message, or (`withhold`) is withheld with
/// its reason while the rest of the message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreenList {
    pub field: String,
    pub category: String,
    pub terms: Vec<String>,
    /// `patterns = ["date"]`: built-in patterns besides the terms (a date such as 12-03-2014 or 2014-03-12).
    pub patterns: Vec<ScreenPattern>,
    pub withhold: bool,
}

/// A built-in screening pattern, for what no term list can enumerate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScreenPattern {
    /// A calendar date written with digits: day-month-year or year-month-day, separated by `-`, `/` or `.`.
    Date,
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

impl AggregateRules {
    /// Each dimension as a reader sees it: its name, with its closed list of values where it has one.
    pub fn dimension_labels(&self) -> Vec<String> {
        self.dimensions
            .iter()
            .map(|d| match &d.values {
                Some(v) => format!("{} ({})", d.name, v.join("/")),
                None => d.name.clone(),
            })
            .collect()
    }
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
    /// `processing_activity_id`: a versioned URI into the register of processing activities.
    pub processing_activity_id: Option<String>,
    pub description: Option<String>,
    pub legal_basis: LegalBasis,
    pub retention: Retention,
    pub justification_required: bool,
    /// The whole flow rests on consent: no applying consent record, no message.
    pub consent: bool,
    /// `consent_12_15 = "ouder-en-jongere"`: from 12 to 15 only a consent of parents and young person together
    /// counts (a policy choice, stricter than the law).
    pub consent_12_15_both: bool,
    pub subject: SubjectDelivery,
    pub subject_basis: Option<String>,
    /// Who may receive this pupil's message (`receiver` in the file); `None` for aggregates.
    pub receiver: Option<ReceiverBinding>,
    /// With `receiver = "in-reply-to"`: the flow of the message this one answers (`answers`).
    pub answers: Option<String>,
    pub agreement: Option<Agreement>,
    pub required: Vec<RequiredField>,
    /// `anonymous = true`: no subject, and anything the flow does not deliver as sent (a field outside the flow or
    /// the catalogue, a denied or invalid value, a screening hit) refuses the whole message.
    pub anonymous: bool,
    /// `kerngroep = true`: one recipient's part of a kerngroep case (P13). Such a flow is reached only by a message
    /// with `recipients` and a `case_id`, never by `to`; a message with `recipients` reaches no other flow.
    pub kerngroep: bool,
    /// `[[flow.exactly_one]]`: of each list of catalogue paths, exactly one must be present.
    pub exactly_one: Vec<Vec<String>>,
    pub rules: Vec<FieldRule>,
    pub screening: Vec<ScreenList>,
    pub aggregate: Option<AggregateRules>,
    /// `rule_for` of every field of the flow's catalogue, resolved once at load: position in `rules` per
    /// position in `MessageCatalogue::fields`.
    pub(super) field_rules: Vec<Option<usize>>,
    /// What a decision's outcomes refer to instead of copying it per leaf, built at load.
    pub(super) table: Arc<FieldTable>,
    /// `legal_basis` as text (its `Display`), as every decision of the flow reports it.
    pub(super) legal_basis_text: String,
}

/// Per field of a flow's catalogue (same positions as `MessageCatalogue::fields`), what a `FieldOutcome` of it
/// says: shared by all decisions of the flow, so a decision keeps indexes and makes strings only when asked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct FieldTable {
    pub(super) fields: Vec<TableField>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TableField {
    pub(super) path: String,
    pub(super) category: String,
    pub(super) class: Class,
    /// The reason of the flow's rule for the field when that rule is a `deny`.
    pub(super) denied: Option<String>,
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
        self.rule_index_for_field(index).map(|i| &self.rules[i])
    }

    /// The position in `rules` of `rule_for_field(index)`.
    pub(super) fn rule_index_for_field(&self, index: usize) -> Option<usize> {
        self.field_rules.get(index).copied().flatten()
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
    /// The only consents covering the field were registered by another organisation than the sender.
    ConsentOtherOrganisation,
    /// Who may consent depends on the pupil's age and no birth date is known.
    ConsentAgeUnknown,
    /// The consent was not given by someone who may consent for the pupil at this age.
    ConsentWrongGiver,
    /// Data about the parents, and no consent of the parents.
    ConsentNotParents,
    NotInClosedList,
    InvalidValue,
    /// An aggregate cell below the minimum size, or suppressed to protect one.
    Suppressed,
    /// A free text naming a term of a category the flow screens out (`on_hit = "withhold"`).
    Screened,
}

impl WithheldReason {
    pub fn code(&self) -> &'static str {
        match self {
            WithheldReason::Denied(_) => "deny",
            WithheldReason::NotInFlow => "not-in-flow",
            WithheldReason::NotInCatalogue => "not-in-catalogue",
            WithheldReason::ConsentMissing => "consent-missing",
            WithheldReason::ConsentOtherOrganisation => "consent-other-organisation",
            WithheldReason::ConsentAgeUnknown => "consent-age-unknown",
            WithheldReason::ConsentWrongGiver => "consent-wrong-giver",
            WithheldReason::ConsentNotParents => "consent-not-parents",
            WithheldReason::NotInClosedList => "not-in-closed-list",
            WithheldReason::InvalidValue => "invalid-value",
            WithheldReason::Suppressed => "suppressed",
            WithheldReason::Screened => "screened-term",
        }
    }

    /// The human text of `Display` (after `code: `).
    pub fn text(&self) -> &str {
        match self {
            WithheldReason::Denied(reason) => reason.as_str(),
            WithheldReason::NotInFlow => "the flow does not name this field",
            WithheldReason::NotInCatalogue => {
                "the field is not in the catalogue of this message type"
            }
            WithheldReason::ConsentMissing => "no valid consent covers this field's category",
            WithheldReason::ConsentOtherOrganisation => {
                "a consent for this purpose was registered by another organisation, not by the sender; only the sender's own consent counts"
            }
            WithheldReason::ConsentAgeUnknown => {
                "who may consent depends on the pupil's age and no birth date is known (leerling.geboortedatum or the consent's subject_birth_date)"
            }
            WithheldReason::ConsentWrongGiver => {
                "the consent was not given by someone who may consent for the pupil at this age (UAVG art. 5, or Jeugdwet art. 7.3.11 when a youth-care organisation discloses)"
            }
            WithheldReason::ConsentNotParents => {
                "data about the parents needs the parents' consent (ouder, voogd or ouder-en-jongere)"
            }
            WithheldReason::NotInClosedList => {
                "the value is not one of the catalogue's closed list"
            }
            WithheldReason::InvalidValue => "the value is not of the catalogue's kind",
            WithheldReason::Suppressed => "small cell suppressed (disclosure control)",
            WithheldReason::Screened => {
                "the text names a term of a category this flow screens out; it is withheld and the rest of the message goes (the text is not repeated here)"
            }
        }
    }
}

impl fmt::Display for WithheldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.text())
    }
}

/// `code: text`, as `WithheldReason`'s `Display`.
fn reason_line(code: &str, text: &str) -> String {
    let mut s = String::with_capacity(code.len() + 2 + text.len());
    s.push_str(code);
    s.push_str(": ");
    s.push_str(text);
    s
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

/// The outcomes of a decision, one per leaf of the input, in catalogue order: a slice of `FieldOutcome`s (it
/// derefs to `[FieldOutcome]`). A record decision keeps them as indexes into its flow's `FieldTable`, and makes
/// the `FieldOutcome`s (their strings) only on first use; `Decision`'s methods read the indexes directly.
#[derive(Clone, Default)]
pub struct Fields {
    compact: Option<Compact>,
    full: OnceLock<Vec<FieldOutcome>>,
}

/// `Leaf::field` / `Leaf::consent` when there is none.
pub(super) const NONE: u32 = u32::MAX;

/// The outcomes of a record decision as indexes.
#[derive(Clone)]
pub(super) struct Compact {
    pub(super) table: Arc<FieldTable>,
    pub(super) leaves: Vec<Leaf>,
    /// The array indices of the catalogued leaves, one per `[]` of their catalogue path.
    pub(super) indices: Vec<usize>,
    /// Leaves outside the catalogue: (concrete path, catalogue path).
    pub(super) other: Vec<(String, Option<String>)>,
    /// The consents delivered leaves rest on.
    pub(super) consent_ids: Vec<String>,
}

/// One leaf of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Leaf {
    /// Its catalogue field (index into `FieldTable::fields`), or `NONE`.
    pub(super) field: u32,
    /// Catalogued: where its array indices start in `Compact::indices`; otherwise its position in `Compact::other`.
    pub(super) at: usize,
    /// Index into `Compact::consent_ids`, or `NONE`.
    pub(super) consent: u32,
    pub(super) action: LeafAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LeafAction {
    Delivered,
    Generalised(GeneraliseMethod),
    Pseudonymised,
    Withheld(Why),
}

impl LeafAction {
    pub(super) fn is_delivered(self) -> bool {
        !matches!(self, LeafAction::Withheld(_))
    }
}

/// `WithheldReason` of a record leaf; `Denied`'s reason is the field's `TableField::denied`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    Denied,
    NotInFlow,
    NotInCatalogue,
    ConsentMissing,
    ConsentOtherOrganisation,
    ConsentAgeUnknown,
    ConsentWrongGiver,
    ConsentNotParents,
    NotInClosedList,
    InvalidValue,
    Screened,
}

impl Why {
    /// The reason, except `Denied` (which needs the field's text).
    fn plain(self) -> Option<WithheldReason> {
        match self {
            Why::Denied => None,
            Why::NotInFlow => Some(WithheldReason::NotInFlow),
            Why::NotInCatalogue => Some(WithheldReason::NotInCatalogue),
            Why::ConsentMissing => Some(WithheldReason::ConsentMissing),
            Why::ConsentOtherOrganisation => Some(WithheldReason::ConsentOtherOrganisation),
            Why::ConsentAgeUnknown => Some(WithheldReason::ConsentAgeUnknown),
            Why::ConsentWrongGiver => Some(WithheldReason::ConsentWrongGiver),
            Why::ConsentNotParents => Some(WithheldReason::ConsentNotParents),
            Why::NotInClosedList => Some(WithheldReason::NotInClosedList),
            Why::InvalidValue => Some(WithheldReason::InvalidValue),
            Why::Screened => Some(WithheldReason::Screened),
        }
    }
}

impl Compact {
    fn table_field(&self, l: &Leaf) -> Option<&TableField> {
        (l.field != NONE).then(|| &self.table.fields[l.field as usize])
    }

    /// The concrete path of `l` (`toetsen[0].score`).
    fn path(&self, l: &Leaf) -> String {
        let Some(f) = self.table_field(l) else {
            return self.other[l.at].0.clone();
        };
        let mut indices = self.indices[l.at..].iter();
        let mut out = String::with_capacity(f.path.len() + 8);
        let mut rest = f.path.as_str();
        while let Some(p) = rest.find("[]") {
            out.push_str(&rest[..p]);
            out.push('[');
            path::push_index(&mut out, indices.next().copied().unwrap_or(0));
            out.push(']');
            rest = &rest[p + 2..];
        }
        out.push_str(rest);
        out
    }

    fn consent_id(&self, l: &Leaf) -> Option<&String> {
        (l.consent != NONE).then(|| &self.consent_ids[l.consent as usize])
    }

    /// `code: text` of a withheld leaf.
    fn reason_line(&self, l: &Leaf, why: Why) -> String {
        match why.plain() {
            Some(r) => reason_line(r.code(), r.text()),
            None => reason_line(
                "deny",
                self.table_field(l)
                    .and_then(|f| f.denied.as_deref())
                    .unwrap_or(""),
            ),
        }
    }

    fn outcome(&self, l: &Leaf) -> FieldOutcome {
        let f = self.table_field(l);
        let action = match l.action {
            LeafAction::Delivered => FieldAction::Delivered,
            LeafAction::Generalised(method) => FieldAction::Generalised {
                method: method.name(),
            },
            LeafAction::Pseudonymised => FieldAction::Pseudonymised,
            LeafAction::Withheld(why) => FieldAction::Withheld {
                reason: why.plain().unwrap_or_else(|| {
                    WithheldReason::Denied(f.and_then(|f| f.denied.clone()).unwrap_or_default())
                }),
            },
        };
        FieldOutcome {
            path: self.path(l),
            catalogue_path: match f {
                Some(f) => Some(f.path.clone()),
                None => self.other[l.at].1.clone(),
            },
            action,
            category: f.map(|f| f.category.clone()),
            class: f.map(|f| f.class),
            consent_id: self.consent_id(l).cloned(),
        }
    }
}

impl Fields {
    pub(super) fn compact(c: Compact) -> Fields {
        Fields {
            compact: Some(c),
            full: OnceLock::new(),
        }
    }

    pub fn as_slice(&self) -> &[FieldOutcome] {
        self.full.get_or_init(|| match &self.compact {
            Some(c) => c.leaves.iter().map(|l| c.outcome(l)).collect(),
            None => Vec::new(),
        })
    }
}

impl From<Vec<FieldOutcome>> for Fields {
    fn from(v: Vec<FieldOutcome>) -> Fields {
        Fields {
            compact: None,
            full: OnceLock::from(v),
        }
    }
}

impl std::ops::Deref for Fields {
    type Target = [FieldOutcome];

    fn deref(&self) -> &[FieldOutcome] {
        self.as_slice()
    }
}

impl<'a> IntoIterator for &'a Fields {
    type Item = &'a FieldOutcome;
    type IntoIter = std::slice::Iter<'a, FieldOutcome>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl PartialEq for Fields {
    fn eq(&self, other: &Fields) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The data object the receiver gets, as the compact JSON text that is sealed into its mailbox. The decision writes
/// it while it walks the message (no second tree of the input's values is built and dropped); `to_value` gives the
/// tree back where one is wanted. Never logged or shown: `Decision`'s `Debug` redacts it.
#[derive(Clone)]
pub struct Delivered(Box<serde_json::value::RawValue>);

impl Delivered {
    /// Takes JSON text written by the decision; it is checked to be one JSON object.
    fn from_json(json: String) -> Option<Delivered> {
        if !json.starts_with('{') {
            return None;
        }
        serde_json::value::RawValue::from_string(json)
            .ok()
            .map(Delivered)
    }

    fn from_value(value: &serde_json::Value) -> Option<Delivered> {
        serde_json::value::to_raw_value(value)
            .ok()
            .filter(|raw| raw.get().starts_with('{'))
            .map(Delivered)
    }

    fn empty() -> Delivered {
        Delivered::from_json("{}".to_owned()).expect("`{}` is a JSON object")
    }

    /// The JSON text, compact, in the order the decision visited the fields.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.0.get()).expect("delivered JSON was checked when it was made")
    }
}

impl serde::Serialize for Delivered {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl PartialEq for Delivered {
    fn eq(&self, other: &Delivered) -> bool {
        self.json() == other.json()
    }
}

/// The policy's decision about one message. `Debug` never shows the delivered values.
#[derive(Clone, PartialEq)]
pub struct Decision {
    pub flow_id: String,
    pub processing_activity_id: Option<String>,
    pub flow_name: String,
    pub policy_hash: String,
    pub legal_basis: String,
    /// The flow's two retention periods (the mailbox row expires after `gateway_days`; the receiver's period goes
    /// with the message and into the log entry).
    pub retention: Retention,
    pub agreement_id: Option<String>,
    /// The inbox's `subject`: `{"pgn": …}` (or `bsn`/`onderwijsnummer`), `{"pseudonym": …}`, or none.
    pub subject: Option<serde_json::Value>,
    /// The data object the receiver gets.
    pub delivered: Delivered,
    /// One entry per leaf of the input, in catalogue order.
    pub fields: Fields,
    pub consents_used: Vec<String>,
    /// (consent id, last day it counts): a consent that stops counting by the pupil's age before the gateway would
    /// purge the message (see `decide::counts_until`). Sealed with the payload, checked again at fetch.
    pub consent_counts_until: Vec<(String, time::Date)>,
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
        if let Some(c) = &self.fields.compact {
            return c
                .leaves
                .iter()
                .filter(|l| l.action.is_delivered())
                .map(|l| c.path(l))
                .collect();
        }
        self.fields
            .iter()
            .filter(|f| f.action.is_delivered())
            .map(|f| f.path.clone())
            .collect()
    }

    /// Concrete paths withheld, with `code: text` reasons.
    pub fn withheld(&self) -> Vec<(String, String)> {
        if let Some(c) = &self.fields.compact {
            return c
                .leaves
                .iter()
                .filter_map(|l| match l.action {
                    LeafAction::Withheld(why) => Some((c.path(l), c.reason_line(l, why))),
                    _ => None,
                })
                .collect();
        }
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
        if let Some(c) = &self.fields.compact {
            return c
                .leaves
                .iter()
                .filter(|l| l.action.is_delivered())
                .filter_map(|l| c.consent_id(l).map(|id| (c.path(l), id.clone())))
                .collect();
        }
        self.fields
            .iter()
            .filter(|f| f.action.is_delivered())
            .filter_map(|f| f.consent_id.as_ref().map(|c| (f.path.clone(), c.clone())))
            .collect()
    }

    /// What in this decision is not accounted for, given the `data` it decided: a leaf of `data` without an
    /// outcome, an outcome without a leaf, and a value in the delivered data at a path not reported as delivered.
    /// Empty when everything adds up. For the flow tests and the fuzz checks; a decision is never checked this way
    /// while a message is sent.
    pub fn unaccounted(&self, data: &serde_json::Value) -> Vec<String> {
        let mut problems = Vec::new();
        let mut input = Vec::new();
        path::for_each_leaf(data, &mut |segs, _| input.push(path::render(segs)));
        let mut outcomes: Vec<String> = self.fields.iter().map(|f| f.path.clone()).collect();
        input.sort();
        outcomes.sort();
        if input != outcomes {
            problems.push(format!(
                "the outcomes do not match the input leaves: leaves {input:?}, outcomes {outcomes:?}"
            ));
        }
        problems.extend(self.delivered_beyond_reported());
        problems
    }

    /// Each path at which the delivered data holds a value although no field outcome reports it delivered: what
    /// the receiver would get beyond what the flow allows and the sender was told. Empty when there is none.
    pub fn delivered_beyond_reported(&self) -> Vec<String> {
        let reported = self.delivered_paths();
        let mut problems = Vec::new();
        path::for_each_leaf(&self.delivered.to_value(), &mut |segs, v| {
            if !v.is_null() {
                let p = path::render(segs);
                if !reported.contains(&p) {
                    problems.push(format!("{p} in delivered data but not reported"));
                }
            }
        });
        problems
    }

    pub fn outcome(&self, path: &str) -> Option<&FieldOutcome> {
        self.fields.iter().find(|f| f.path == path)
    }
}

/// A message the policy refuses as a whole. `detail` names rules, paths and categories, never values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: crate::refusal::ProblemCode,
    /// The code's status (`ProblemCode::status`), kept beside it for callers that compare both.
    pub status: u16,
    pub detail: String,
}

impl Refusal {
    pub(crate) fn new(code: crate::refusal::ProblemCode, detail: impl Into<String>) -> Refusal {
        Refusal {
            code,
            status: code.status(),
            detail: detail.into(),
        }
    }
}

impl From<Refusal> for crate::refusal::Refusal {
    fn from(r: Refusal) -> crate::refusal::Refusal {
        crate::refusal::Refusal::new(r.code, r.detail)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.detail)
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_tree_knows_every_step_its_rank_and_field() {
        let field = |path: &str| CatalogueField {
            path: path.into(),
            label: path.into(),
            category: "ADM".into(),
            class: Class::S1,
            kind: None,
            date: None,
            values: None,
            note: None,
        };
        let fields: Vec<CatalogueField> = [
            "leerling.naam",
            "toetsen[].score",
            "leerling.adres.postcode",
            "dimensies[]",
            "toetsen[].datum",
            "a",
        ]
        .into_iter()
        .map(field)
        .collect();
        let t = PathTree::build(&fields);
        let walk = |steps: &[&str]| {
            steps.iter().try_fold(PathTree::ROOT, |n, s| match *s {
                "[]" => t.array(n),
                k => t.key(n, k, &mut 0),
            })
        };
        for (i, f) in fields.iter().enumerate() {
            let steps: Vec<&str> = f
                .path
                .split('.')
                .flat_map(|s| match s.strip_suffix("[]") {
                    Some(k) => vec![k, "[]"],
                    None => vec![s],
                })
                .collect();
            assert_eq!(walk(&steps).and_then(|n| t.field(n)), Some(i), "{}", f.path);
        }
        // Ranks in order of first appearance of each key-ended prefix.
        let rank = |steps: &[&str]| walk(steps).map(|n| t.rank(n));
        assert_eq!(rank(&["leerling"]), Some(0));
        assert_eq!(rank(&["leerling", "naam"]), Some(1));
        assert_eq!(rank(&["toetsen"]), Some(2));
        assert_eq!(rank(&["toetsen", "[]", "score"]), Some(3));
        assert_eq!(rank(&["leerling", "adres"]), Some(4));
        assert_eq!(rank(&["leerling", "adres", "postcode"]), Some(5));
        assert_eq!(rank(&["dimensies"]), Some(6));
        assert_eq!(rank(&["a"]), Some(8));
        assert_eq!(walk(&["leerling"]).and_then(|n| t.field(n)), None);
        assert_eq!(walk(&["toetsen", "score"]), None);
        assert_eq!(walk(&["leerling", "[]"]), None);
        assert_eq!(walk(&["onbekend"]), None);
        // Any key order, with or without a good hint.
        let root_keys = ["a", "dimensies", "toetsen", "leerling", "x"];
        let mut hint = 0;
        let found: Vec<Option<usize>> = root_keys
            .iter()
            .map(|k| t.key(PathTree::ROOT, k, &mut hint).map(|n| t.rank(n)))
            .collect();
        assert_eq!(found, [Some(8), Some(6), Some(2), Some(0), None]);
        let mut hint = 0;
        let in_order: Vec<Option<usize>> = ["leerling", "toetsen", "dimensies", "a"]
            .iter()
            .map(|k| t.key(PathTree::ROOT, k, &mut hint).map(|n| t.rank(n)))
            .collect();
        assert_eq!(in_order, [Some(0), Some(2), Some(6), Some(8)]);
    }
}
