//! The decision: one message + the policy set + consent records → what the receiver gets.
//!
//! Pure: no I/O, no clock (the caller passes `today`), no randomness. Refusal details and withheld
//! reasons name rules, field paths and categories; they never contain a value from the message.

use ring::hmac;
use serde_json::{Map, Value};

use crate::data::Node;

use super::path::{self, Seg};
use super::transform::{self, pseudonym, pseudonym_input, receiver_key};
use super::{
    aggregate, codes, screen, Compact, Decision, Delivered, Fields, Flow, Leaf, LeafAction,
    MessageCatalogue, PathTree, PolicySet, Refusal, RuleAction, SubjectDelivery, Why,
    MIN_JUSTIFICATION_CHARS, NONE,
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
    pub data: &'a Node<'a>,
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
                format!(
                    "no flow allows {} → {} for this purpose",
                    req.sender.role, req.receiver.role
                ),
            )
        })?;
    if flow.message_type != req.message_type {
        return Err(Refusal::new(
            codes::WRONG_TYPE,
            format!(
                "flow {} carries message type `{}` only",
                flow.id, flow.message_type
            ),
        ));
    }
    if let Some(a) = &flow.agreement {
        let signed = |p: &Partner| a.signatories.iter().any(|s| s == p.organisation_id());
        if !signed(req.sender) || !signed(req.receiver) {
            return Err(Refusal::new(codes::NO_AGREEMENT, format!(
                    "flow {} is bound to agreement {}, which sender and receiver have not both signed",
                    flow.id, a.id
                ),
            ));
        }
        if req.today < a.valid_from || req.today > a.valid_until {
            return Err(Refusal::new(
                codes::NO_AGREEMENT,
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
            format!("flow {} has no catalogue", flow.id),
        )
    })?;
    let base = Decision {
        flow_id: flow.id.clone(),
        flow_name: flow.name.clone(),
        policy_hash: policy.hash().to_owned(),
        legal_basis: flow.legal_basis_text.clone(),
        retention_days: flow.retention_days,
        agreement_id: flow.agreement.as_ref().map(|a| a.id.clone()),
        subject: None,
        delivered: Delivered::empty(),
        fields: Fields::default(),
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

fn value_present(v: Option<&Node>) -> bool {
    match v {
        None | Some(Node::Null) => false,
        Some(Node::String(s)) => !s.trim().is_empty(),
        Some(Node::Array(a)) => !a.is_empty(),
        Some(Node::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

fn check_required(flow: &Flow, req: &DecisionRequest) -> Result<(), Refusal> {
    for r in &flow.required {
        let v = path::get_dotted(req.data, &r.path);
        let ok = match (&r.equals, r.equals_receiver) {
            (Some(expected), _) => v.is_some_and(|v| v.equals(expected)),
            (None, true) => v
                .and_then(Node::as_str)
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
                format!("flow {}: field `{}` {what}", flow.id, r.path),
            ));
        }
    }
    Ok(())
}

fn check_screening(flow: &Flow, req: &DecisionRequest) -> Result<(), Refusal> {
    let mut hits: Vec<(&str, &str)> = Vec::new();
    for list in &flow.screening {
        let Some(text) = path::get_dotted(req.data, &list.field).and_then(Node::as_str) else {
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
    // A reply that delivers no pupil number (P5) names no pupil: it is the one of the message it answers, which the
    // receiver binding (`binding::bind_receiver`) has checked before the decision.
    let from_reference = flow.answers.is_some() && flow.subject == SubjectDelivery::None;
    let subject = match req.subject {
        Some(s) => Some(s),
        None if from_reference => None,
        None => {
            return Err(Refusal::new(
                codes::MISSING_SUBJECT,
                format!("flow {} is about one pupil: `subject` is required", flow.id),
            ))
        }
    };
    if !req.data.is_object() {
        return Err(Refusal::new(
            codes::INVALID_DATA,
            "`data` must be an object",
        ));
    }
    let age = path::get_dotted(req.data, BIRTH_DATE_PATH)
        .and_then(transform::parse_date)
        .map(|b| age_on(b, req.today));
    let consents = usable_consents(req, age);
    if flow.consent && consents.is_empty() {
        return Err(Refusal::new(codes::CONSENT_REQUIRED, format!(
                "flow {} rests on consent and no valid consent for this purpose and receiver was found",
                flow.id
            ),
        ));
    }
    check_required(flow, req)?;
    check_screening(flow, req)?;

    let mut walk = Walk {
        flow,
        catalogue,
        tree: &catalogue.tree,
        consents: &consents,
        secret: req.pseudonym_key,
        organisation: req.receiver.organisation_id(),
        key: None,
        segs: Vec::with_capacity(8),
        children: Vec::with_capacity(32),
        leaves: Vec::with_capacity(64),
        indices: Vec::new(),
        other: Vec::new(),
        consent_slots: vec![NONE; consents.len()],
        consent_ids: Vec::new(),
        out: Vec::with_capacity(2048),
    };
    let delivered = if walk.value(req.data, Some(PathTree::ROOT)) {
        String::from_utf8(std::mem::take(&mut walk.out))
            .ok()
            .and_then(Delivered::from_json)
            .ok_or_else(|| {
                Refusal::new(
                    codes::INVALID_DATA,
                    "`data` could not be written out for the receiver",
                )
            })?
    } else {
        Delivered::empty()
    };

    let special_delivered = walk.leaves.iter().any(|l| {
        l.action.is_delivered()
            && l.field != NONE
            && catalogue.fields[l.field as usize].class.is_special()
    });
    if (flow.justification_required || special_delivered) && !justification_ok(req.justification) {
        let why = if flow.justification_required {
            format!("flow {} requires a justification", flow.id)
        } else {
            format!(
                "flow {} would deliver special-category (S4/art. 10) fields, which needs a justification",
                flow.id
            )
        };
        return Err(Refusal::new(codes::JUSTIFICATION_REQUIRED, format!("{why} of at least {MIN_JUSTIFICATION_CHARS} characters: why this is needed and why nothing lighter serves"),
        ));
    }

    let mut used: Vec<String> = Vec::new();
    for c in &walk.consent_ids {
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
    d.subject = match (flow.subject, subject) {
        (SubjectDelivery::None, _) | (_, None) => None,
        (SubjectDelivery::AsIs, Some(subject)) => {
            let mut m = Map::with_capacity(1);
            m.insert(
                subject.kind().as_str().to_owned(),
                Value::String(subject.number().to_owned()),
            );
            Some(Value::Object(m))
        }
        (SubjectDelivery::Pseudonymise, Some(subject)) => {
            let mut m = Map::with_capacity(1);
            m.insert(
                "pseudonym".to_owned(),
                Value::String(pseudonym(walk.key(), "subject", subject.number())),
            );
            Some(Value::Object(m))
        }
    };
    d.fields = Fields::compact(Compact {
        table: flow.table.clone(),
        leaves: walk.leaves,
        indices: walk.indices,
        other: walk.other,
        consent_ids: walk.consent_ids,
    });
    Ok(d)
}

/// One walk over the message's `data`: every leaf is decided (`Walk::leaf`) and what is delivered is written as
/// compact JSON into `out` on the way (an object or array is taken back out when nothing in it was delivered).
/// Children are visited in catalogue order (known keys by catalogue position, unknown keys after them by name, array
/// elements by index), so `fields` and the delivered data do not depend on the key order of the input. Array
/// positions are kept: an element with nothing delivered becomes `null` (trailing ones are dropped).
///
/// Keys are resolved through the catalogue's `PathTree`, and outcomes are recorded as indexes (`Leaf`): strings
/// are made only for what is delivered and for leaves outside the catalogue.
struct Walk<'p, 'c, 'v, 'b> {
    flow: &'p Flow,
    catalogue: &'p MessageCatalogue,
    tree: &'p PathTree,
    consents: &'p [&'c ConsentRecord],
    secret: &'p [u8],
    organisation: &'p str,
    /// The receiver's pseudonym key, derived when first needed.
    key: Option<hmac::Key>,
    /// The path of the current node.
    segs: Vec<Seg<'v>>,
    /// The children of the objects being visited, each object's after its parent's: (tree node, key, value).
    children: Vec<(Option<usize>, &'v str, &'v Node<'b>)>,
    leaves: Vec<Leaf>,
    indices: Vec<usize>,
    other: Vec<(String, Option<String>)>,
    /// Per usable consent, its position in `consent_ids` once a delivered leaf rests on it.
    consent_slots: Vec<u32>,
    consent_ids: Vec<String>,
    /// The delivered data's JSON text so far.
    out: Vec<u8>,
}

impl<'v, 'b> Walk<'_, '_, 'v, 'b> {
    fn key(&mut self) -> &hmac::Key {
        let (secret, organisation) = (self.secret, self.organisation);
        self.key
            .get_or_insert_with(|| receiver_key(secret, organisation))
    }

    /// `node`: the catalogue tree node of this value's path, if the path is in the tree. Writes what is delivered
    /// of `v` to `out` and says whether anything was.
    fn value(&mut self, v: &'v Node<'b>, node: Option<usize>) -> bool {
        match v {
            Node::Object(m) => {
                let start = self.children.len();
                let tree = self.tree;
                let mut hint = 0;
                for (k, child) in m.iter() {
                    let n = node.and_then(|n| tree.key(n, k, &mut hint));
                    self.children.push((n, k, child));
                }
                let end = self.children.len();
                // Known keys by rank, then unknown ones by name (keys are unique: no two compare equal).
                self.children[start..end].sort_unstable_by(|a, b| match (a.0, b.0) {
                    (Some(x), Some(y)) => tree.rank(x).cmp(&tree.rank(y)),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => a.1.cmp(b.1),
                });
                let mut any = false;
                for i in start..end {
                    let (n, k, child) = self.children[i];
                    let mark = self.out.len();
                    self.out.push(if any { b',' } else { b'{' });
                    write_json(&mut self.out, k);
                    self.out.push(b':');
                    self.segs.push(Seg::key(k));
                    let delivered = self.value(child, n);
                    self.segs.pop();
                    if delivered {
                        any = true;
                    } else {
                        self.out.truncate(mark);
                    }
                }
                self.children.truncate(start);
                if any {
                    self.out.push(b'}');
                }
                any
            }
            Node::Array(a) => {
                let n = node.and_then(|n| self.tree.array(n));
                let open = self.out.len();
                let mut last_delivered = None;
                for (i, child) in a.iter().enumerate() {
                    self.out.push(if i == 0 { b'[' } else { b',' });
                    self.segs.push(Seg::Index(i));
                    let delivered = self.value(child, n);
                    self.segs.pop();
                    if delivered {
                        last_delivered = Some(self.out.len());
                    } else {
                        self.out.extend_from_slice(b"null");
                    }
                }
                // Positions are kept: nulls before a delivered element stay, trailing ones go.
                match last_delivered {
                    Some(end) => {
                        self.out.truncate(end);
                        self.out.push(b']');
                        true
                    }
                    None => {
                        self.out.truncate(open);
                        false
                    }
                }
            }
            leaf => self.leaf(leaf, node.and_then(|n| self.tree.field(n))),
        }
    }

    /// Decides one leaf (`field`: its catalogue field) and returns what is delivered of it.
    fn leaf(&mut self, value: &Node, field: Option<usize>) -> bool {
        let Some(index) = field else {
            self.leaves.push(Leaf {
                field: NONE,
                at: self.other.len(),
                consent: NONE,
                action: LeafAction::Withheld(Why::NotInCatalogue),
            });
            self.other
                .push((path::render(&self.segs), path::catalogue_path(&self.segs)));
            return false;
        };
        let at = self.indices.len();
        self.indices
            .extend(self.segs.iter().filter_map(|s| match s {
                Seg::Index(i) => Some(*i),
                Seg::Key(_) => None,
            }));
        let (action, consent) = self.decide_leaf(index, value);
        self.leaves.push(Leaf {
            field: index as u32,
            at,
            consent,
            action,
        });
        action.is_delivered()
    }

    /// Decides one catalogue leaf and, when it is delivered, writes the delivered value to `out`.
    fn decide_leaf(&mut self, index: usize, value: &Node) -> (LeafAction, u32) {
        let withhold = |why| (LeafAction::Withheld(why), NONE);
        let (flow, field) = (self.flow, &self.catalogue.fields[index]);
        let Some(rule) = flow.rule_for_field(index) else {
            return withhold(Why::NotInFlow);
        };
        if let RuleAction::Deny { .. } = rule.action {
            return withhold(Why::Denied);
        }
        if !transform::kind_ok(field.kind, value) {
            return withhold(Why::InvalidValue);
        }
        if let Some(list) = &field.values {
            if !transform::in_closed_list(list, value) {
                return withhold(Why::NotInClosedList);
            }
        }
        let mut consent = None;
        if flow.consent || rule.action.needs_consent() {
            match self
                .consents
                .iter()
                .position(|c| c.covers_category(&field.category))
            {
                Some(j) => consent = Some(j),
                None => return withhold(Why::ConsentMissing),
            }
        }
        let action = match &rule.action {
            RuleAction::Allow | RuleAction::Consent => {
                write_json(&mut self.out, value);
                LeafAction::Delivered
            }
            RuleAction::Generalise { method, .. } => match transform::generalise(*method, value) {
                Some(v) => {
                    write_json(&mut self.out, &v);
                    LeafAction::Generalised(*method)
                }
                None => return withhold(Why::InvalidValue),
            },
            RuleAction::Pseudonymise { .. } => {
                let p = pseudonym(self.key(), "field", &pseudonym_input(value));
                write_json(&mut self.out, &p);
                LeafAction::Pseudonymised
            }
            RuleAction::Deny { .. } => return withhold(Why::Denied),
        };
        let consent = consent.map_or(NONE, |j| self.consent_slot(j));
        (action, consent)
    }

    /// The position in `consent_ids` of usable consent `j`.
    fn consent_slot(&mut self, j: usize) -> u32 {
        if self.consent_slots[j] == NONE {
            self.consent_slots[j] = self.consent_ids.len() as u32;
            self.consent_ids.push(self.consents[j].consent_id.clone());
        }
        self.consent_slots[j]
    }
}

/// Appends `v` as compact JSON. A string or a JSON value written to a `Vec` cannot fail (no I/O, and every map
/// key is a string); should serde_json ever report an error, what it wrote is removed, the text then misses a
/// value, and `Delivered::from_json` refuses it: the message is refused, never delivered in part.
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    let mark = out.len();
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.truncate(mark);
    }
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

    /// `Decision`'s methods read the compact outcomes; they must say what the `FieldOutcome`s say, whose paths
    /// must be those of the input.
    #[test]
    fn methods_agree_with_the_field_outcomes() {
        use super::super::FieldAction;
        use crate::domain::{Partner, SubjectId, SubjectKind};
        use serde_json::json;

        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let set = PolicySet::load_dir(&root.join("policies")).unwrap();
        let partner = |id: &str, role| Partner {
            id: id.into(),
            name: id.into(),
            role,
            oin: "00000001800000000001".into(),
            organisation: None,
        };
        let mut decided = 0;
        for entry in std::fs::read_dir(root.join("examples")).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let env: Value = serde_json::from_str(&text).unwrap();
            let Some(flow) = set.flows().find(|f| env["purpose"] == f.purpose.as_str()) else {
                continue;
            };
            let sender = partner("afzender", flow.senders[0]);
            let receiver = partner(env["to"].as_str().unwrap(), flow.receivers[0]);
            let subject = env["subject"]["pgn"]
                .as_str()
                .map(|n| SubjectId::new(SubjectKind::Pgn, n).unwrap());
            let consents: Vec<ConsentRecord> =
                [GivenBy::Ouder, GivenBy::OuderEnJongere, GivenBy::Jongere]
                    .into_iter()
                    .enumerate()
                    .map(|(i, given_by)| ConsentRecord {
                        consent_id: format!("c{i}"),
                        registered_by: "afzender".into(),
                        purpose: flow.purpose.clone(),
                        recipient: receiver.id.clone(),
                        categories: vec!["*".into()],
                        given_by,
                        valid_from: time::macros::date!(2026 - 01 - 01),
                        valid_until: time::macros::date!(2027 - 07 - 31),
                        withdrawn: false,
                    })
                    .collect();
            // Also with keys outside the catalogue, a key outside its grammar and longer arrays.
            let mut odd = env["data"].clone();
            if let Some(m) = odd.as_object_mut() {
                for v in m.values_mut() {
                    if let Value::Array(a) = v {
                        if let Some(first) = a.first().cloned() {
                            a.extend([Value::Null, first, json!({"onbekend": 1})]);
                        }
                    }
                }
                m.insert("Odd Key".into(), json!("x"));
                m.insert("onbekend".into(), json!({"a": [1, {"b": true}]}));
            }
            for data in [&env["data"], &odd] {
                let data = &Node::from_value(data);
                for consents in [&consents[..], &[]] {
                    let req = DecisionRequest {
                        sender: &sender,
                        receiver: &receiver,
                        message_type: env["type"].as_str().unwrap(),
                        purpose: &flow.purpose,
                        subject: subject.as_ref(),
                        justification: env["justification"].as_str(),
                        data,
                        consents,
                        today: time::macros::date!(2026 - 03 - 15),
                        pseudonym_key: b"test",
                    };
                    let Ok(d) = decide(&set, &req) else { continue };
                    decided += 1;
                    let f = &d.fields;
                    let delivered: Vec<String> = f
                        .iter()
                        .filter(|o| o.action.is_delivered())
                        .map(|o| o.path.clone())
                        .collect();
                    assert_eq!(d.delivered_paths(), delivered);
                    let withheld: Vec<(String, String)> = f
                        .iter()
                        .filter_map(|o| match &o.action {
                            FieldAction::Withheld { reason } => {
                                Some((o.path.clone(), reason.to_string()))
                            }
                            _ => None,
                        })
                        .collect();
                    assert_eq!(d.withheld(), withheld);
                    let dependent: Vec<(String, String)> = f
                        .iter()
                        .filter(|o| o.action.is_delivered())
                        .filter_map(|o| Some((o.path.clone(), o.consent_id.clone()?)))
                        .collect();
                    assert_eq!(d.consent_dependent(), dependent);
                    for o in f.iter() {
                        if o.path.contains(path::INVALID_KEY) {
                            continue;
                        }
                        let pointer: String = path::parse_concrete(&o.path)
                            .unwrap()
                            .iter()
                            .map(|s| match s {
                                Seg::Key(k) => format!("/{k}"),
                                Seg::Index(i) => format!("/{i}"),
                            })
                            .collect();
                        let input = data.clone().into_value();
                        assert!(input.pointer(&pointer).is_some(), "{}", o.path);
                        let cp = path::catalogue_path(&path::parse_concrete(&o.path).unwrap());
                        assert_eq!(o.catalogue_path, cp, "{}", o.path);
                    }
                }
            }
        }
        assert!(decided >= 8, "only {decided} decisions");
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
