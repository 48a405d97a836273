//! The decision: one message + the policy set + consent records → what the receiver gets.
//!
//! Pure: no I/O, no clock (the caller passes `today`), no randomness. Refusal details and withheld
//! reasons name rules, field paths and categories; they never contain a value from the message.

use serde_json::{Map, Value};

use super::path;
use super::transform::{self, pseudonym, pseudonym_input, receiver_key};
use super::{
    aggregate, codes, screen, Decision, FieldAction, FieldOutcome, Flow, MessageCatalogue,
    PolicySet, Refusal, RuleAction, SubjectDelivery, WithheldReason, MIN_JUSTIFICATION_CHARS,
};
use crate::domain::{ConsentRecord, GivenBy, Partner, SubjectId};

/// Everything the decision depends on.
pub struct DecisionRequest<'a> {
    pub sender: &'a Partner,
    pub receiver: &'a Partner,
    pub message_type: &'a str,
    pub purpose: &'a str,
    pub subject: Option<&'a SubjectId>,
    pub justification: Option<&'a str>,
    /// The envelope's `data`.
    pub data: &'a Value,
    /// The consent records of this subject; `decide` checks purpose, recipient, validity,
    /// categories and who gave them.
    pub consents: &'a [ConsentRecord],
    pub today: time::Date,
    /// The gateway's pseudonym secret; the key per receiving organisation is derived from it.
    pub pseudonym_key: &'a [u8],
}

/// Where the pupil's birth date is read from for the consent age rules.
pub const BIRTH_DATE_PATH: &str = "leerling.geboortedatum";

/// Decides what of `req.data` the receiver may get, or refuses the message as a whole.
pub fn decide(policy: &PolicySet, req: &DecisionRequest) -> Result<Decision, Refusal> {
    let flow = policy
        .find_flow(req.sender.role, req.receiver.role, req.purpose)
        .ok_or_else(|| {
            Refusal::new(
                codes::NO_POLICY,
                403,
                format!(
                    "no flow allows {} → {} for this purpose",
                    req.sender.role, req.receiver.role
                ),
            )
        })?;
    if flow.message_type != req.message_type {
        return Err(Refusal::new(
            codes::WRONG_TYPE,
            422,
            format!(
                "flow {} carries message type `{}` only",
                flow.id, flow.message_type
            ),
        ));
    }
    if let Some(a) = &flow.agreement {
        let signed = |p: &Partner| a.signatories.iter().any(|s| s == p.organisation_id());
        if !signed(req.sender) || !signed(req.receiver) {
            return Err(Refusal::new(
                codes::NO_AGREEMENT,
                403,
                format!(
                    "flow {} is bound to agreement {}, which sender and receiver have not both signed",
                    flow.id, a.id
                ),
            ));
        }
        if req.today < a.valid_from || req.today > a.valid_until {
            return Err(Refusal::new(
                codes::NO_AGREEMENT,
                403,
                format!(
                    "agreement {} of flow {} is valid from {} to {}",
                    a.id, flow.id, a.valid_from, a.valid_until
                ),
            ));
        }
    }
    let catalogue = policy.catalogue(&flow.message_type).ok_or_else(|| {
        Refusal::new(
            codes::NO_POLICY,
            403,
            format!("flow {} has no catalogue", flow.id),
        )
    })?;
    let base = Decision {
        flow_id: flow.id.clone(),
        flow_name: flow.name.clone(),
        policy_hash: policy.hash().to_owned(),
        legal_basis: flow.legal_basis.to_string(),
        retention_days: flow.retention_days,
        agreement_id: flow.agreement.as_ref().map(|a| a.id.clone()),
        subject: None,
        delivered: Value::Object(Map::new()),
        fields: Vec::new(),
        consents_used: Vec::new(),
        suppressed_cells: Vec::new(),
    };
    match &flow.aggregate {
        Some(rules) => aggregate::decide(base, rules, catalogue, req),
        None => decide_record(base, flow, catalogue, req),
    }
}

/// Age in whole years on `today`.
pub fn age_on(birth: time::Date, today: time::Date) -> i32 {
    let mut age = today.year() - birth.year();
    if (u8::from(today.month()), today.day()) < (u8::from(birth.month()), birth.day()) {
        age -= 1;
    }
    age
}

/// Who may consent at `age` (DOMAIN.md, UAVG art. 5): the parents or guardian under 12 (a consent
/// given together with the child also counts), parents and child together from 12 to 15, the young
/// person alone from 16. Unknown age: any.
pub fn consent_fits_age(given_by: GivenBy, age: Option<i32>) -> bool {
    match age {
        None => true,
        Some(a) if a < 12 => matches!(
            given_by,
            GivenBy::Ouder | GivenBy::Voogd | GivenBy::OuderEnJongere
        ),
        Some(a) if a < 16 => given_by == GivenBy::OuderEnJongere,
        Some(_) => given_by == GivenBy::Jongere,
    }
}

/// The consent records that count for this message, best first (longest valid, then by id) so the
/// choice does not depend on the order the caller passed them in.
fn usable_consents<'c>(req: &DecisionRequest<'c>, age: Option<i32>) -> Vec<&'c ConsentRecord> {
    let mut v: Vec<&ConsentRecord> = req
        .consents
        .iter()
        .filter(|c| c.applies(req.purpose, req.receiver, req.today))
        .filter(|c| consent_fits_age(c.given_by, age))
        .collect();
    v.sort_by(|a, b| {
        b.valid_until
            .cmp(&a.valid_until)
            .then_with(|| a.consent_id.cmp(&b.consent_id))
    });
    v
}

fn justification_ok(j: Option<&str>) -> bool {
    j.is_some_and(|t| t.chars().filter(|c| !c.is_whitespace()).count() >= MIN_JUSTIFICATION_CHARS)
}

fn value_present(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

fn check_required(flow: &Flow, req: &DecisionRequest) -> Result<(), Refusal> {
    for r in &flow.required {
        let v = path::get_dotted(req.data, &r.path);
        let ok = match (&r.equals, r.equals_receiver) {
            (Some(expected), _) => v == Some(expected),
            (None, true) => v
                .and_then(Value::as_str)
                .is_some_and(|s| s == req.receiver.organisation_id()),
            (None, false) => value_present(v),
        };
        if !ok {
            let what = match (&r.equals, r.equals_receiver) {
                (Some(expected), _) => format!("must be {expected}"),
                (None, true) => "must name the receiving organisation".to_owned(),
                (None, false) => "must be present".to_owned(),
            };
            return Err(Refusal::new(
                codes::MISSING_REQUIRED_FIELD,
                422,
                format!("flow {}: field `{}` {what}", flow.id, r.path),
            ));
        }
    }
    Ok(())
}

fn check_screening(flow: &Flow, req: &DecisionRequest) -> Result<(), Refusal> {
    let mut hits: Vec<(&str, &str)> = Vec::new();
    for list in &flow.screening {
        let Some(text) = path::get_dotted(req.data, &list.field).and_then(Value::as_str) else {
            continue;
        };
        if screen::names_any(text, &list.terms) && !hits.contains(&(&list.field, &list.category)) {
            hits.push((&list.field, &list.category));
        }
    }
    if hits.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = hits
        .iter()
        .map(|(field, category)| format!("`{field}` names a term of category {category}"))
        .collect();
    Err(Refusal::new(
        codes::SCREENED_TERM,
        422,
        format!(
            "flow {}: {} (not allowed in this flow; the text is not repeated here)",
            flow.id,
            named.join("; ")
        ),
    ))
}

fn decide_record(
    mut d: Decision,
    flow: &Flow,
    catalogue: &MessageCatalogue,
    req: &DecisionRequest,
) -> Result<Decision, Refusal> {
    let subject = req.subject.ok_or_else(|| {
        Refusal::new(
            codes::MISSING_SUBJECT,
            422,
            format!("flow {} is about one pupil: `subject` is required", flow.id),
        )
    })?;
    if !req.data.is_object() {
        return Err(Refusal::new(
            codes::INVALID_DATA,
            422,
            "`data` must be an object",
        ));
    }
    let age = path::get_dotted(req.data, BIRTH_DATE_PATH)
        .and_then(transform::parse_date)
        .map(|b| age_on(b, req.today));
    let consents = usable_consents(req, age);
    if flow.consent && consents.is_empty() {
        return Err(Refusal::new(
            codes::CONSENT_REQUIRED,
            403,
            format!(
                "flow {} rests on consent and no valid consent for this purpose and receiver was found",
                flow.id
            ),
        ));
    }
    check_required(flow, req)?;
    check_screening(flow, req)?;

    let key = receiver_key(req.pseudonym_key, req.receiver.organisation_id());
    let mut walk = Walk {
        flow,
        catalogue,
        consents: &consents,
        key: &key,
        concrete: String::with_capacity(64),
        cat: String::with_capacity(64),
        fields: Vec::with_capacity(64),
    };
    let delivered = walk
        .value(req.data, true, true)
        .unwrap_or_else(|| Value::Object(Map::new()));
    d.fields = walk.fields;

    let special_delivered = d
        .fields
        .iter()
        .any(|o| o.action.is_delivered() && o.class.is_some_and(|c| c.is_special()));
    if (flow.justification_required || special_delivered) && !justification_ok(req.justification) {
        let why = if flow.justification_required {
            format!("flow {} requires a justification", flow.id)
        } else {
            format!(
                "flow {} would deliver special-category (S4/art. 10) fields, which needs a justification",
                flow.id
            )
        };
        return Err(Refusal::new(
            codes::JUSTIFICATION_REQUIRED,
            422,
            format!("{why} of at least {MIN_JUSTIFICATION_CHARS} characters: why this is needed and why nothing lighter serves"),
        ));
    }

    let mut used: Vec<String> = Vec::new();
    for c in d.fields.iter().filter_map(|o| o.consent_id.as_ref()) {
        if !used.contains(c) {
            used.push(c.clone());
        }
    }
    if flow.consent {
        if let Some(c) = consents.first() {
            if !used.contains(&c.consent_id) {
                used.push(c.consent_id.clone());
            }
        }
    }
    used.sort();
    d.consents_used = used;
    d.delivered = delivered;
    d.subject = match flow.subject {
        SubjectDelivery::AsIs => {
            let mut m = Map::new();
            m.insert(
                subject.kind().as_str().to_owned(),
                Value::String(subject.number().to_owned()),
            );
            Some(Value::Object(m))
        }
        SubjectDelivery::Pseudonymise => {
            let mut m = Map::new();
            m.insert(
                "pseudonym".to_owned(),
                Value::String(pseudonym(&key, "subject", subject.number())),
            );
            Some(Value::Object(m))
        }
        SubjectDelivery::None => None,
    };
    Ok(d)
}

/// One walk over the message's `data`: every leaf is decided (`decide_leaf`) and what is delivered is built on the
/// way back up. Children are visited in catalogue order (known keys by catalogue position, unknown keys after them
/// by name, array elements by index), so `fields` and the delivered tree do not depend on the key order of the
/// input. Array positions are kept: an element with nothing delivered becomes `null` (trailing ones are dropped).
struct Walk<'p, 'c> {
    flow: &'p Flow,
    catalogue: &'p MessageCatalogue,
    consents: &'p [&'c ConsentRecord],
    key: &'p ring::hmac::Key,
    /// The concrete path of the current node as reported (`toetsen[0].score`).
    concrete: String,
    /// Its catalogue path (`toetsen[].score`), meaningful while every key fits the grammar.
    cat: String,
    fields: Vec<FieldOutcome>,
}

impl Walk<'_, '_> {
    /// `valid`: every key so far fits the catalogue grammar; `known`: every prefix so far is in the catalogue.
    fn value(&mut self, v: &Value, valid: bool, known: bool) -> Option<Value> {
        match v {
            Value::Object(m) => {
                let mut children: Vec<(Option<usize>, &str, &Value)> = Vec::with_capacity(m.len());
                for (k, child) in m {
                    let rank = if known && path::valid_key(k) {
                        let mark = self.cat.len();
                        self.push_cat(k);
                        let r = self.catalogue.rank(&self.cat);
                        self.cat.truncate(mark);
                        r
                    } else {
                        None
                    };
                    children.push((rank, k, child));
                }
                // Known keys by rank, then unknown ones by name.
                children.sort_by(|a, b| match (a.0, b.0) {
                    (Some(x), Some(y)) => x.cmp(&y),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => a.1.cmp(b.1),
                });
                let mut out = Map::new();
                for (rank, k, child) in children {
                    let (concrete_mark, cat_mark) = (self.concrete.len(), self.cat.len());
                    let key_valid = path::valid_key(k);
                    if !self.concrete.is_empty() {
                        self.concrete.push('.');
                    }
                    self.concrete
                        .push_str(if key_valid { k } else { path::INVALID_KEY });
                    let child_valid = valid && key_valid;
                    if child_valid {
                        self.push_cat(k);
                    }
                    let delivered = self.value(child, child_valid, known && rank.is_some());
                    self.concrete.truncate(concrete_mark);
                    self.cat.truncate(cat_mark);
                    if let Some(d) = delivered {
                        out.insert(k.to_owned(), d);
                    }
                }
                (!out.is_empty()).then_some(Value::Object(out))
            }
            Value::Array(a) => {
                let mut out: Vec<Value> = Vec::new();
                for (i, child) in a.iter().enumerate() {
                    let (concrete_mark, cat_mark) = (self.concrete.len(), self.cat.len());
                    use std::fmt::Write;
                    let _ = write!(self.concrete, "[{i}]");
                    self.cat.push_str("[]");
                    let delivered = self.value(child, valid, known);
                    self.concrete.truncate(concrete_mark);
                    self.cat.truncate(cat_mark);
                    if let Some(d) = delivered {
                        out.resize(i, Value::Null);
                        out.push(d);
                    }
                }
                (!out.is_empty()).then_some(Value::Array(out))
            }
            leaf => {
                let (outcome, out) = decide_leaf(
                    self.flow,
                    self.catalogue,
                    self.consents,
                    self.key,
                    self.concrete.clone(),
                    valid.then(|| self.cat.clone()),
                    leaf,
                );
                self.fields.push(outcome);
                out
            }
        }
    }

    fn push_cat(&mut self, k: &str) {
        if !self.cat.is_empty() {
            self.cat.push('.');
        }
        self.cat.push_str(k);
    }
}

fn decide_leaf(
    flow: &Flow,
    catalogue: &MessageCatalogue,
    consents: &[&ConsentRecord],
    key: &ring::hmac::Key,
    path: String,
    cat_path: Option<String>,
    value: &Value,
) -> (FieldOutcome, Option<Value>) {
    let found = cat_path.as_deref().and_then(|p| catalogue.field_at(p));
    let mut outcome = FieldOutcome {
        path,
        catalogue_path: cat_path,
        action: FieldAction::Withheld {
            reason: WithheldReason::NotInCatalogue,
        },
        category: None,
        class: None,
        consent_id: None,
    };
    let withhold = |mut o: FieldOutcome, reason| {
        o.action = FieldAction::Withheld { reason };
        (o, None)
    };
    let Some((index, field)) = found else {
        return (outcome, None);
    };
    outcome.category = Some(field.category.clone());
    outcome.class = Some(field.class);
    let Some(rule) = flow.rule_for_field(index) else {
        return withhold(outcome, WithheldReason::NotInFlow);
    };
    if let RuleAction::Deny { reason } = &rule.action {
        return withhold(outcome, WithheldReason::Denied(reason.clone()));
    }
    if !transform::kind_ok(field.kind, value) {
        return withhold(outcome, WithheldReason::InvalidValue);
    }
    if let Some(list) = &field.values {
        if !transform::in_closed_list(list, value) {
            return withhold(outcome, WithheldReason::NotInClosedList);
        }
    }
    if flow.consent || rule.action.needs_consent() {
        match consents.iter().find(|c| c.covers_category(&field.category)) {
            Some(c) => outcome.consent_id = Some(c.consent_id.clone()),
            None => return withhold(outcome, WithheldReason::ConsentMissing),
        }
    }
    let (action, out) = match &rule.action {
        RuleAction::Allow | RuleAction::Consent => (FieldAction::Delivered, value.clone()),
        RuleAction::Generalise { method, .. } => match transform::generalise(*method, value) {
            Some(v) => (
                FieldAction::Generalised {
                    method: method.name(),
                },
                v,
            ),
            None => {
                outcome.consent_id = None;
                return withhold(outcome, WithheldReason::InvalidValue);
            }
        },
        RuleAction::Pseudonymise { .. } => (
            FieldAction::Pseudonymised,
            Value::String(pseudonym(key, "field", &pseudonym_input(value))),
        ),
        RuleAction::Deny { .. } => unreachable!("handled above"),
    };
    outcome.action = action;
    (outcome, Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn age_counts_whole_years() {
        assert_eq!(age_on(date!(2014 - 03 - 02), date!(2026 - 03 - 01)), 11);
        assert_eq!(age_on(date!(2014 - 03 - 02), date!(2026 - 03 - 02)), 12);
        assert_eq!(age_on(date!(2010 - 12 - 31), date!(2026 - 12 - 30)), 15);
    }

    #[test]
    fn who_may_consent_depends_on_age() {
        use GivenBy::*;
        for g in [Ouder, Voogd, OuderEnJongere] {
            assert!(consent_fits_age(g, Some(11)));
        }
        assert!(!consent_fits_age(Jongere, Some(11)));
        assert!(consent_fits_age(OuderEnJongere, Some(12)));
        assert!(!consent_fits_age(Ouder, Some(15)));
        assert!(!consent_fits_age(Jongere, Some(15)));
        assert!(consent_fits_age(Jongere, Some(16)));
        assert!(!consent_fits_age(Ouder, Some(16)));
        assert!(!consent_fits_age(OuderEnJongere, Some(17)));
        assert!(consent_fits_age(Jongere, None));
    }

    #[test]
    fn justification_counts_non_space_characters() {
        assert!(!justification_ok(None));
        assert!(!justification_ok(Some(
            "a b c d e f g h i j k l m n o p q r s"
        )));
        assert!(justification_ok(Some("abcdefghij klmnopqrst")));
    }
}
