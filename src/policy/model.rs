//! The policy files as written: serde structs mirroring the TOML of `policies/*.toml`.
//!
//! Every struct rejects unknown keys, so a misspelt key is an error with a file and line, never a
//! silently ignored rule. Nothing here decides anything; `load` checks and compiles these into a
//! `PolicySet`.

use serde::Deserialize;
use toml::Spanned;

use crate::domain::Role;

/// One policy file: field catalogues (`[[message]]`) and/or one flow (`[flow]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyFile {
    #[serde(default)]
    pub message: Vec<Spanned<MessageDef>>,
    pub flow: Option<Spanned<FlowDef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MessageDef {
    #[serde(rename = "type")]
    pub message_type: String,
    #[serde(default)]
    pub aggregate: bool,
    #[serde(default)]
    pub description: Option<String>,
    pub fields: Vec<Spanned<FieldDef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FieldDef {
    pub path: String,
    /// What the field is, in Dutch words a privacy officer or a parent reads (`Achternaam leerling`). Required.
    pub label: String,
    pub category: String,
    pub class: super::Class,
    #[serde(default)]
    pub kind: Option<super::ValueKind>,
    #[serde(default)]
    pub date: Option<super::DateRule>,
    #[serde(default)]
    pub values: Option<Vec<String>>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum JustificationDef {
    Required,
    Optional,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FlowDef {
    pub id: String,
    pub name: String,
    pub from: Vec<Role>,
    pub to: Vec<Role>,
    pub purpose: String,
    pub message: String,
    /// The versioned URI of this flow's entry in the organisation's register of processing activities (AVG art. 30),
    /// as the Logboek Dataverwerkingen records it (`dpl.core.processing_activity_id`).
    /// Required by `policy check` (and so for serving); optional for the parser so test sets stay small.
    #[serde(default)]
    pub processing_activity_id: Option<String>,
    pub justification: JustificationDef,
    #[serde(default)]
    pub consent: bool,
    /// `"ouder-en-jongere"`: from 12 to 15 only a consent of parents and young person together counts.
    #[serde(default)]
    pub consent_12_15: Option<Consent1215Def>,
    pub subject: super::SubjectDelivery,
    #[serde(default)]
    pub subject_basis: Option<String>,
    #[serde(default)]
    pub receiver: Option<Spanned<String>>,
    #[serde(default)]
    pub answers: Option<Spanned<String>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub fields: Vec<Spanned<RuleDef>>,
    pub legal_basis: LegalBasisDef,
    pub retention: Spanned<RetentionDef>,
    #[serde(default)]
    pub agreement: Option<AgreementDef>,
    #[serde(default)]
    pub required: Vec<Spanned<RequiredDef>>,
    /// `anonymous = true`: an anonymous consultation (P12): no subject, and anything not delivered as sent refuses.
    #[serde(default)]
    pub anonymous: bool,
    /// `kerngroep = true`: one recipient's part of a kerngroep case (P13), reached only through `recipients`.
    #[serde(default)]
    pub kerngroep: bool,
    #[serde(default)]
    pub exactly_one: Vec<Spanned<ExactlyOneDef>>,
    #[serde(default)]
    pub screening: Vec<Spanned<ScreenDef>>,
    #[serde(default)]
    pub aggregate: Option<Spanned<AggregateDef>>,
}

/// The only stricter rule for 12 to 15 a flow may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Consent1215Def {
    OuderEnJongere,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum ActionName {
    Allow,
    Consent,
    Generalise,
    Pseudonymise,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum MethodName {
    DateYear,
    DateYearMonth,
    PostcodePc4,
    NumberBand,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleDef {
    pub path: String,
    pub action: ActionName,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub method: Option<MethodName>,
    #[serde(default)]
    pub band: Option<u32>,
    #[serde(default)]
    pub consent: Option<bool>,
    #[serde(default)]
    pub note: Option<String>,
    /// The action applies only when this holds; otherwise `otherwise` applies.
    #[serde(default)]
    pub when: Option<WhenDef>,
    #[serde(default)]
    pub otherwise: Option<OtherwiseName>,
}

/// `when = { field = "advies.schooladvies", one_of = ["pro", ...] }` of a rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WhenDef {
    pub field: String,
    pub one_of: Vec<String>,
}

/// What a rule with `when` does when the condition does not hold: always stricter than its action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum OtherwiseName {
    Consent,
    Deny,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LegalBasisDef {
    pub ground: String,
    pub article: String,
    #[serde(default)]
    pub special: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetentionDef {
    /// Days the gateway keeps a payload that was not acknowledged (`MAX_GATEWAY_DAYS` at most).
    pub gateway_days: u32,
    /// What the receiver keeps its copy for, in words the FG and the parents read.
    pub receiver_text: String,
    /// The same as a number of days from receipt, when the period is one.
    #[serde(default)]
    pub receiver_days: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AgreementDef {
    pub id: String,
    pub signatories: Vec<String>,
    pub valid_from: Spanned<toml::value::Datetime>,
    pub valid_until: Spanned<toml::value::Datetime>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RequiredDef {
    pub path: String,
    #[serde(default)]
    pub equals: Option<toml::Value>,
    #[serde(default)]
    pub equals_receiver: bool,
    /// What the sender must do first when the field is missing, added to the refusal's detail.
    #[serde(default)]
    pub hint: Option<String>,
    /// The field is required only when another field holds this value (P9: the reason when the client was not told).
    #[serde(default)]
    pub when: Option<RequiredWhenDef>,
}

/// `[[flow.exactly_one]] paths = ["casus.leeftijdsband", "casus.leerjaar"]`: exactly one of them is present.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExactlyOneDef {
    pub paths: Vec<String>,
}

/// `when = { field = "meldcode.client_geinformeerd", equals = false }` of a required field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RequiredWhenDef {
    pub field: String,
    pub equals: toml::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScreenDef {
    pub field: String,
    pub category: String,
    #[serde(default)]
    pub terms: Vec<String>,
    /// Built-in patterns besides the terms (`["date"]`).
    #[serde(default)]
    pub patterns: Vec<super::ScreenPattern>,
    /// `refuse` (default): a hit refuses the whole message; `withhold`: the field is withheld with its reason
    /// and the rest of the message goes.
    #[serde(default)]
    pub on_hit: OnHitDef,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum OnHitDef {
    #[default]
    Refuse,
    Withhold,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AggregateDef {
    pub dimensions: Vec<DimensionDef>,
    pub categories: Vec<String>,
    pub max_dimensions: usize,
    pub min_cell: u64,
    pub rounding: u64,
    pub secondary_suppression: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DimensionDef {
    pub name: String,
    #[serde(default)]
    pub values: Option<Vec<String>>,
}
