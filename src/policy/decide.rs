//! The decision: one message + the policy set + consent records → what the receiver gets.
//!
//! Pure: no I/O, no clock (the caller passes `today`), no randomness. Refusal details and withheld
//! reasons name rules, field paths and categories; they never contain a value from the message.

use ring::hmac;
use serde_json::{Map, Value};

use crate::data::Node;

use super::ages::{consent_fits, About, AgeRule, Fit};
use super::path::{self, Seg};
use super::transform::{self, pseudonym, pseudonym_input, receiver_key};
use super::{
    aggregate, codes, implausible_date, screen, Compact, DateRule, Decision, Delivered, Fields,
    Flow, Leaf, LeafAction, MessageCatalogue, PathTree, PolicySet, Refusal, RequiredWhen,
    RuleAction, ScreenPattern, SubjectDelivery, ValueKind, Why, MIN_JUSTIFICATION_CHARS, NONE,
};
use crate::domain::{ConsentRecord, Partner, SubjectId};

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
    /// The sender provides jeugdhulp (`partners.toml` `jeugdhulp = true`): its consents follow Jeugdwet
    /// art. 7.3.11 instead of UAVG art. 5.
    pub sender_provides_jeugdhulp: bool,
    /// The sender named the pupil by a message it received (`subject.message_id`), which the caller resolved: the
    /// pupil is known, its number is not.
    pub subject_by_message: bool,
}

/// Where the pupil's birth date is read from for the consent age rules.
pub const BIRTH_DATE_PATH: &str = "leerling.geboortedatum";

/// Catalogue paths of data about the parents themselves: their consent is needed at every age.
pub const PARENTS_PREFIX: &str = "ouders[].";

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
        processing_activity_id: flow.processing_activity_id.clone(),
        flow_name: flow.name.clone(),
        policy_hash: policy.hash().to_owned(),
        legal_basis: flow.legal_basis_text.clone(),
        retention: flow.retention.clone(),
        agreement_id: flow.agreement.as_ref().map(|a| a.id.clone()),
        subject: None,
        delivered: Delivered::empty(),
        fields: Fields::default(),
        consents_used: Vec::new(),
        consent_counts_until: Vec::new(),
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

/// One consent record that applies to this message (purpose, receiver, in force on the day), judged once.
struct Judged<'c> {
    rec: &'c ConsentRecord,
    /// Registered by the sender's organisation: the only one whose consent may unlock its disclosure.
    own: bool,
    /// Whether it counts for data about the pupil, and about the parents (`ouders[].*`).
    pupil: Fit,
    parents: Fit,
    /// The birth date its age rule was judged by (the message's, else the one registered with it).
    birth: Option<time::Date>,
}

impl Judged<'_> {
    fn fit(&self, about: About) -> Fit {
        match about {
            About::Pupil => self.pupil,
            About::Parents => self.parents,
        }
    }
}

/// The consent records of this message that apply, best first (longest valid, then by id) so the choice does
/// not depend on the order the caller passed them in.
struct Consents<'c> {
    all: Vec<Judged<'c>>,
}

impl<'c> Consents<'c> {
    fn judge(req: &DecisionRequest<'c>, flow: &Flow) -> Consents<'c> {
        let envelope_birth =
            path::get_dotted(req.data, BIRTH_DATE_PATH).and_then(transform::parse_date);
        let rule = AgeRule::for_discloser(req.sender_provides_jeugdhulp);
        let sender = req.sender.organisation_id();
        let mut all: Vec<Judged<'c>> = req
            .consents
            .iter()
            .filter(|c| c.applies(req.purpose, req.receiver, req.today))
            .map(|rec| {
                // The message's birth date first; else the one registered with the consent.
                let birth = envelope_birth.or(rec.subject_birth_date);
                let age = birth.map(|b| age_on(b, req.today));
                let fit =
                    |about| consent_fits(rule, flow.consent_12_15_both, rec.given_by, about, age);
                Judged {
                    rec,
                    own: rec.registered_by == sender,
                    pupil: fit(About::Pupil),
                    parents: fit(About::Parents),
                    birth,
                }
            })
            .collect();
        all.sort_by(|a, b| {
            b.rec
                .valid_until
                .cmp(&a.rec.valid_until)
                .then_with(|| a.rec.consent_id.cmp(&b.rec.consent_id))
        });
        Consents { all }
    }

    /// The position of the best consent that counts for data `about` someone in `category` (any category when
    /// `None`).
    fn find(&self, about: About, category: Option<&str>) -> Option<usize> {
        self.all.iter().position(|j| {
            j.own
                && j.fit(about) == Fit::Counts
                && category.is_none_or(|c| j.rec.covers_category(c))
        })
    }

    /// Why no consent counts for data `about` someone in `category` (any when `None`): the most useful reason
    /// for the sender, naming no value.
    fn why_not(&self, about: About, category: Option<&str>) -> Why {
        let covering = || {
            self.all
                .iter()
                .filter(move |j| category.is_none_or(|c| j.rec.covers_category(c)))
        };
        if covering().any(|j| j.own && j.fit(about) == Fit::AgeUnknown) {
            Why::ConsentAgeUnknown
        } else if covering().any(|j| j.own && j.fit(about) == Fit::WrongGiver) {
            match about {
                About::Pupil => Why::ConsentWrongGiver,
                About::Parents => Why::ConsentNotParents,
            }
        } else if covering().any(|j| !j.own) {
            Why::ConsentOtherOrganisation
        } else {
            Why::ConsentMissing
        }
    }
}

/// Whom a catalogue field is about.
fn about(field_path: &str) -> About {
    if field_path.starts_with(PARENTS_PREFIX) {
        About::Parents
    } else {
        About::Pupil
    }
}

/// The refusal of a message that needs a consent no record gives: 422 when only the pupil's unknown age stands in
/// the way (a birth date would settle it), else 403. The detail names the rule, never a value.
fn no_consent(flow: &Flow, req: &DecisionRequest, why: Why) -> Refusal {
    let rule = AgeRule::for_discloser(req.sender_provides_jeugdhulp);
    match why {
        Why::ConsentAgeUnknown => Refusal::new(
            codes::CONSENT_AGE_UNKNOWN,
            format!(
                "flow {}: who may consent depends on the pupil's age ({}) and no birth date is known: send \
                 leerling.geboortedatum or register the consent with subject_birth_date",
                flow.id,
                rule.citation()
            ),
        ),
        Why::ConsentWrongGiver | Why::ConsentNotParents => Refusal::new(
            codes::CONSENT_REQUIRED,
            format!(
                "flow {} rests on consent and no consent for this purpose and receiver was given by someone who may \
                 consent for the pupil at this age ({})",
                flow.id,
                rule.citation()
            ),
        ),
        Why::ConsentOtherOrganisation => Refusal::new(
            codes::CONSENT_REQUIRED,
            format!(
                "flow {} rests on consent: a consent for this purpose was registered by another organisation, not by \
                 the sender; only the sender's own consent counts",
                flow.id
            ),
        ),
        _ => Refusal::new(
            codes::CONSENT_REQUIRED,
            format!(
                "flow {} rests on consent and no valid consent for this purpose and receiver was found",
                flow.id
            ),
        ),
    }
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
        if r.when
            .as_ref()
            .is_some_and(|w| !condition_may_hold(req.data, w))
        {
            continue;
        }
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
            let hint = r
                .hint
                .as_deref()
                .map(|h| format!(": {h}"))
                .unwrap_or_default();
            let when = r
                .when
                .as_ref()
                .map(|w| format!(" when `{}` is {}", w.field, w.equals))
                .unwrap_or_default();
            return Err(Refusal::new(
                codes::MISSING_REQUIRED_FIELD,
                format!("flow {}: field `{}` {what}{when}{hint}", flow.id, r.path),
            ));
        }
    }
    Ok(())
}

/// Whether a required field's condition may hold: only a value of the same kind as `equals` that differs from it
/// lifts the requirement; a missing field, or one of another kind, keeps it (fail closed).
fn condition_may_hold(data: &Node, w: &RequiredWhen) -> bool {
    let same_kind = |v: &Node| {
        matches!(
            (v, &w.equals),
            (Node::Bool(_), Value::Bool(_))
                | (Node::Number(_), Value::Number(_))
                | (Node::String(_), Value::String(_))
        )
    };
    match path::get_dotted(data, &w.field) {
        Some(v) if same_kind(v) => v.equals(&w.equals),
        _ => true,
    }
}

/// The refusal of an anonymous consultation (`anonymous = true`) that could identify the pupil: the path and why,
/// never the value.
fn identifying(flow: &Flow, path: &str, why: &str) -> Refusal {
    Refusal::new(
        codes::IDENTIFYING_DATA,
        format!(
            "flow {}: `{path}` {why}: an anonymous consultation may not identify the pupil, so the whole message is \
             refused and nothing is delivered or stored",
            flow.id
        ),
    )
}

/// An anonymous flow delivers every field as sent or nothing: any key outside the catalogue (at any depth, also
/// with an empty value), any field the flow does not allow, and any value of the wrong kind or outside its closed
/// list refuses the whole message, naming the first such path.
fn anonymous_fields<'v>(
    flow: &Flow,
    catalogue: &MessageCatalogue,
    v: &'v Node<'_>,
    node: Option<usize>,
    segs: &mut Vec<Seg<'v>>,
) -> Result<(), Refusal> {
    let tree = &catalogue.tree;
    let refuse = |segs: &[Seg], why: &str| Err(identifying(flow, &path::render(segs), why));
    let outside = "is not a field of this anonymous message type";
    match v {
        // Outside the catalogue (`node` is `None`) the walk goes on to the first leaf, so the refusal names the
        // field's whole path (`leerling.achternaam`); an empty object or list there is refused where it stands.
        Node::Object(m) if m.is_empty() && node.is_none() => refuse(segs, outside),
        Node::Array(a) if a.is_empty() && node.and_then(|n| tree.array(n)).is_none() => {
            refuse(segs, outside)
        }
        Node::Object(m) => {
            for (k, child) in m.iter() {
                let n = node.and_then(|n| tree.key(n, k, &mut 0));
                segs.push(Seg::key(k));
                anonymous_fields(flow, catalogue, child, n, segs)?;
                segs.pop();
            }
            Ok(())
        }
        Node::Array(a) => {
            let n = node.and_then(|n| tree.array(n));
            for (i, child) in a.iter().enumerate() {
                segs.push(Seg::Index(i));
                anonymous_fields(flow, catalogue, child, n, segs)?;
                segs.pop();
            }
            Ok(())
        }
        leaf => {
            let Some(index) = node.and_then(|n| tree.field(n)) else {
                return refuse(segs, outside);
            };
            let field = &catalogue.fields[index];
            match flow.rule_for_field(index).map(|r| &r.action) {
                None => refuse(segs, "is not allowed in this flow"),
                Some(RuleAction::Deny { .. }) => refuse(segs, "is denied in this flow"),
                Some(_) if !transform::kind_ok(field.kind, leaf) => {
                    refuse(segs, "is not of the field's kind")
                }
                Some(_)
                    if field
                        .values
                        .as_ref()
                        .is_some_and(|l| !transform::in_closed_list(l, leaf)) =>
                {
                    refuse(segs, "is not one of the field's closed list")
                }
                Some(_) => Ok(()),
            }
        }
    }
}

/// `[[flow.exactly_one]]`: of each list exactly one field is present. None: `missing-required-field`; more than one:
/// in an anonymous flow `identifying-data-in-anonymous-consult` (together they narrow down who the pupil is), else
/// `invalid-data`. Names the fields, never a value.
fn check_exactly_one(flow: &Flow, req: &DecisionRequest) -> Result<(), Refusal> {
    for list in &flow.exactly_one {
        let present: Vec<&String> = list
            .iter()
            .filter(|p| value_present(path::get_dotted(req.data, p)))
            .collect();
        let names = list
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", ");
        match present.len() {
            1 => {}
            0 => {
                return Err(Refusal::new(
                    codes::MISSING_REQUIRED_FIELD,
                    format!("flow {}: exactly one of {names} must be present", flow.id),
                ))
            }
            _ if flow.anonymous => {
                return Err(identifying(
                    flow,
                    present[1],
                    &format!(
                        "is sent with `{}`: exactly one of {names} may be sent",
                        present[0]
                    ),
                ))
            }
            _ => {
                return Err(Refusal::new(
                    codes::INVALID_DATA,
                    format!(
                        "flow {}: exactly one of {names} may be present, not more",
                        flow.id
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// The refusal of a message with an implausible date: the field's path and the rule, never the value.
fn invalid_date(flow: &Flow, path: &str, rule: &str) -> Refusal {
    Refusal::new(
        codes::INVALID_DATE,
        format!("flow {}: `{path}`: {rule}", flow.id),
    )
}

/// The screened free-text fields: a hit in a `refuse` list refuses the message; the catalogue indices of the fields
/// with a hit in a `withhold` list are returned, to be withheld by the walk while the rest goes.
fn check_screening(
    flow: &Flow,
    catalogue: &MessageCatalogue,
    req: &DecisionRequest,
) -> Result<Vec<usize>, Refusal> {
    let mut hits: Vec<(&str, &str)> = Vec::new();
    let mut withheld = Vec::new();
    for list in &flow.screening {
        let Some(text) = path::get_dotted(req.data, &list.field).and_then(Node::as_str) else {
            continue;
        };
        let pattern_hit = list.patterns.iter().any(|p| match p {
            ScreenPattern::Date => screen::has_date(text),
        });
        if !pattern_hit && !screen::names_any(text, &list.terms) {
            continue;
        }
        if list.withhold {
            if let Some(i) = catalogue.fields.iter().position(|f| f.path == list.field) {
                withheld.push(i);
            }
        } else if !hits.contains(&(&list.field, &list.category)) {
            hits.push((&list.field, &list.category));
        }
    }
    if hits.is_empty() {
        return Ok(withheld);
    }
    let named: Vec<String> = hits
        .iter()
        .map(|(field, category)| format!("`{field}` names a term of category {category}"))
        .collect();
    // In an anonymous consultation a name, date or place in the text identifies the pupil: the refusal says so.
    let code = if flow.anonymous {
        codes::IDENTIFYING_DATA
    } else {
        codes::SCREENED_TERM
    };
    Err(Refusal::new(
        code,
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
    if flow.anonymous && (req.subject.is_some() || req.subject_by_message) {
        return Err(identifying(flow, "subject", "names a pupil"));
    }
    let subject = match req.subject {
        Some(s) => Some(s),
        None if from_reference || flow.anonymous => None,
        // Named by a message received: enough where the flow delivers no pupil number (P9 from a wijkteam).
        None if req.subject_by_message && flow.subject == SubjectDelivery::None => None,
        None if req.subject_by_message => {
            return Err(Refusal::new(
                codes::MISSING_SUBJECT,
                format!(
                    "flow {} delivers the pupil number: name the pupil by pgn, bsn or onderwijsnummer, not by message_id",
                    flow.id
                ),
            ))
        }
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
    if flow.anonymous {
        let mut segs = Vec::new();
        anonymous_fields(flow, catalogue, req.data, Some(PathTree::ROOT), &mut segs)?;
    }
    // The age rules of consent read the birth date: an implausible one is refused before it decides anything.
    let birth = path::get_dotted(req.data, BIRTH_DATE_PATH).and_then(transform::parse_date);
    if let Some(rule) = birth.and_then(|b| implausible_date(Some(DateRule::Birth), b, req.today)) {
        return Err(invalid_date(flow, BIRTH_DATE_PATH, rule));
    }
    let consents = Consents::judge(req, flow);
    if flow.consent && consents.find(About::Pupil, None).is_none() {
        return Err(no_consent(flow, req, consents.why_not(About::Pupil, None)));
    }
    check_required(flow, req)?;
    check_exactly_one(flow, req)?;
    let screened = check_screening(flow, catalogue, req)?;

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
        consent_slots: vec![NONE; consents.all.len()],
        consent_ids: Vec::new(),
        out: Vec::with_capacity(2048),
        today: req.today,
        implausible: None,
        screened: &screened,
        held: conditions_held(flow, req.data),
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
    if let Some((path, rule)) = walk.implausible.take() {
        return Err(invalid_date(flow, &path, rule));
    }
    // `anonymous_fields` has refused whatever would be withheld; should the walk still withhold anything (a rule's
    // condition), the anonymous message is refused all the same: never delivered in part.
    if flow.anonymous && walk.leaves.iter().any(|l| !l.action.is_delivered()) {
        return Err(identifying(
            flow,
            "data",
            "holds a field this flow would withhold",
        ));
    }
    if !walk.leaves.iter().any(|l| l.action.is_delivered())
        && walk
            .leaves
            .iter()
            .any(|l| l.action == LeafAction::Withheld(Why::ConsentAgeUnknown))
    {
        return Err(no_consent(flow, req, Why::ConsentAgeUnknown));
    }

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
        if let Some(j) = consents.find(About::Pupil, None) {
            let c = &consents.all[j].rec;
            if !used.contains(&c.consent_id) {
                used.push(c.consent_id.clone());
            }
        }
    }
    used.sort();
    d.consent_counts_until = counts_until(flow, req, &consents, &walk, &used);
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

/// Per consent the message's data about the pupil rests on, the last day it still counts by the pupil's age when
/// a birthday before the gateway purges the message ends that (a parent's consent, the day before the pupil turns
/// 16 under UAVG art. 5). The fetch is a disclosure too: what rests on a consent that no longer counts is stripped
/// then, as after a withdrawal. A message lives at most `MAX_GATEWAY_DAYS` (less than a year), so only the next
/// birthday matters.
fn counts_until(
    flow: &Flow,
    req: &DecisionRequest,
    consents: &Consents,
    walk: &Walk,
    used: &[String],
) -> Vec<(String, time::Date)> {
    let rule = AgeRule::for_discloser(req.sender_provides_jeugdhulp);
    let whole_flow = flow
        .consent
        .then(|| consents.find(About::Pupil, None))
        .flatten()
        .map(|j| consents.all[j].rec.consent_id.as_str());
    let about_pupil = |id: &str| {
        whole_flow == Some(id)
            || walk.leaves.iter().any(|l| {
                l.action.is_delivered()
                    && l.consent != NONE
                    && walk.consent_ids[l.consent as usize] == id
                    && about(&walk.catalogue.fields[l.field as usize].path) == About::Pupil
            })
    };
    let mut out = Vec::new();
    for id in used {
        let Some(j) = consents.all.iter().find(|j| &j.rec.consent_id == id) else {
            continue;
        };
        let Some(birth) = j.birth else {
            continue;
        };
        if !about_pupil(id) {
            continue;
        }
        let Some(next) = next_birthday(birth, req.today) else {
            continue;
        };
        let older = age_on(birth, next);
        let fit = consent_fits(
            rule,
            flow.consent_12_15_both,
            j.rec.given_by,
            About::Pupil,
            Some(older),
        );
        if fit != Fit::Counts {
            if let Some(last) = next.previous_day() {
                out.push((id.clone(), last));
            }
        }
    }
    out
}

/// The first day after `today` on which the pupil is a year older (`age_on`'s counting: someone born on 29
/// February is a year older on 1 March in a year without one).
pub fn next_birthday(birth: time::Date, today: time::Date) -> Option<time::Date> {
    let now = age_on(birth, today);
    [today.year(), today.year() + 1].into_iter().find_map(|y| {
        let d = time::Date::from_calendar_date(y, birth.month(), birth.day())
            .or_else(|_| time::Date::from_calendar_date(y, time::Month::March, 1))
            .ok()?;
        (d > today && age_on(birth, d) > now).then_some(d)
    })
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
    consents: &'p Consents<'c>,
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
    today: time::Date,
    /// The first date leaf (whatever the flow does with it) that is not plausible: its path and the rule it breaks.
    /// It refuses the whole message.
    implausible: Option<(String, &'static str)>,
    /// Catalogue fields whose text hit a `withhold` screening list: withheld with `screened-term`.
    screened: &'p [usize],
    /// Per rule of the flow, whether its condition on another field holds (see `conditions_held`).
    held: Vec<bool>,
}

/// Per rule of `flow`, whether its `when` on a field of the message (not its own field) holds; empty when no rule
/// of the flow has a condition.
fn conditions_held(flow: &Flow, data: &Node) -> Vec<bool> {
    if flow.rules.iter().all(|r| r.condition.is_none()) {
        return Vec::new();
    }
    flow.rules
        .iter()
        .map(|r| {
            r.condition
                .as_ref()
                .is_some_and(|c| !c.own && c.holds_for(path::get_dotted(data, &c.field)))
        })
        .collect()
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
        let field = &self.catalogue.fields[index];
        if field.kind == Some(ValueKind::Date) && self.implausible.is_none() {
            let rule = transform::parse_date(value)
                .and_then(|d| implausible_date(field.date, d, self.today));
            if let Some(rule) = rule {
                self.implausible = Some((path::render(&self.segs), rule));
            }
        }
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
        let Some(ri) = flow.rule_index_for_field(index) else {
            return withhold(Why::NotInFlow);
        };
        let rule = &flow.rules[ri];
        // A rule with a condition that does not hold acts as its stricter `otherwise`.
        let rule_action = match &rule.condition {
            None => &rule.action,
            Some(c) => {
                let holds = if c.own {
                    c.holds_for(Some(value))
                } else {
                    self.held.get(ri).copied().unwrap_or(false)
                };
                if holds {
                    &rule.action
                } else {
                    &c.otherwise
                }
            }
        };
        if let RuleAction::Deny { .. } = rule_action {
            return withhold(Why::Denied);
        }
        if self.screened.contains(&index) {
            return withhold(Why::Screened);
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
        if flow.consent || rule_action.needs_consent() {
            let about = about(&field.path);
            match self.consents.find(about, Some(&field.category)) {
                Some(j) => consent = Some(j),
                None => return withhold(self.consents.why_not(about, Some(&field.category))),
            }
        }
        let action = match rule_action {
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
            self.consent_ids
                .push(self.consents.all[j].rec.consent_id.clone());
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
        use crate::domain::GivenBy::*;
        let fits =
            |rule, strict, g, age| consent_fits(rule, strict, g, About::Pupil, age) == Fit::Counts;
        let (uavg, jw) = (AgeRule::Uavg5, AgeRule::Jeugdwet7311);
        for rule in [uavg, jw] {
            for g in [Ouder, Voogd, OuderEnJongere] {
                assert!(fits(rule, false, g, Some(11)));
            }
            assert!(!fits(rule, false, Jongere, Some(11)));
            assert!(fits(rule, true, OuderEnJongere, Some(12)));
            assert!(fits(rule, false, Jongere, Some(16)));
            assert!(!fits(rule, false, Ouder, Some(16)));
        }
        // Under UAVG art. 5 a parent still decides at 15 (the old engine asked both from 12, for every discloser);
        // under the Jeugdwet with the stricter policy choice, only both together count.
        assert!(fits(uavg, false, Ouder, Some(15)));
        assert!(!fits(jw, true, Ouder, Some(15)));
        assert!(!fits(jw, true, Jongere, Some(15)));
        assert!(!fits(uavg, false, Jongere, Some(15)));
        // Parents and young person together count at every age (the old engine refused them from 16).
        assert!(fits(uavg, false, OuderEnJongere, Some(17)));
        // An unknown age no longer lets any giver count (the old engine failed open here).
        assert_eq!(
            consent_fits(uavg, false, Jongere, About::Pupil, None),
            Fit::AgeUnknown
        );
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
            let to = env["to"].as_str().or(env["recipients"][0].as_str());
            let receiver = partner(to.unwrap(), flow.receivers[0]);
            let subject = env["subject"]["pgn"]
                .as_str()
                .map(|n| SubjectId::new(SubjectKind::Pgn, n).unwrap());
            let consents: Vec<ConsentRecord> = [
                crate::domain::GivenBy::Ouder,
                crate::domain::GivenBy::OuderEnJongere,
                crate::domain::GivenBy::Jongere,
            ]
            .into_iter()
            .enumerate()
            .map(|(i, given_by)| ConsentRecord {
                consent_id: format!("c{i}"),
                registered_by: "afzender".into(),
                purpose: flow.purpose.clone(),
                recipient: receiver.id.clone(),
                categories: vec!["*".into()],
                given_by,
                subject_birth_date: None,
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
                        sender_provides_jeugdhulp: false,
                        subject_by_message: false,
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
