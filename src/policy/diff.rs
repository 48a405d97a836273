//! `ketenpoort policy diff`: what changes between two loaded policy sets, for the privacy officer who approves a
//! change before it is reloaded, and for the console, which shows the diff of the last reload. Pure: two
//! `PolicySet`s in, a `PolicyDiff` out; its `Display` is the Dutch text the command prints.
//!
//! What is compared is what the sets *do*, not their text: per flow (matched by `id`) the action every catalogue
//! field gets (the most specific rule, so a wildcard that now covers a new catalogue field shows up), the legal
//! basis, and every other property of the flow; per message type the catalogue's fields. Comments, layout, rule notes,
//! field labels and file names change the policy hash but not what the set does, so they are no difference here.
//!
//! A property of `Flow` or `CatalogueField` this file has no Dutch label for yet (a key added to the policy
//! language) is still compared and shown, under its field name and in its `Debug` form (`debug_fields`).

use std::fmt::{self, Debug};

use super::{
    CatalogueField, Flow, MessageCatalogue, PolicySet, ReceiverBinding, RuleAction, SubjectDelivery,
};
use crate::domain::Role;

/// One thing that differs: what, its old value and its new value (`None`: absent on that side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub what: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// Whether a flow or message type is new, gone, or in both sets with differences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Added,
    Removed,
    Changed,
}

impl Status {
    pub fn nl(self) -> &'static str {
        match self {
            Status::Added => "nieuw",
            Status::Removed => "vervalt",
            Status::Changed => "gewijzigd",
        }
    }
}

/// The differences of one flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowDiff {
    pub id: String,
    /// The flow's name in the new set (in the old one when it vanishes).
    pub name: String,
    /// The file it is written in (new set; old set when it vanishes).
    pub file: String,
    pub status: Status,
    /// Per catalogue field (`what` is its path): the action its rule gives. `None`: the field is not in the
    /// catalogue of the flow's message type on that side. Empty for a vanishing flow and for count flows (their
    /// fields follow `[flow.aggregate]`, under `properties`).
    pub fields: Vec<Change>,
    /// The citations: AVG art. 6 ground, the Dutch article(s), the art. 9/10 exception, the basis for delivering
    /// the pupil number. Empty for a vanishing flow.
    pub citations: Vec<Change>,
    /// Everything else: roles, purpose, justification, consent, pupil number, retention, agreement, required
    /// fields, screening, counts, and any property without a label yet. For a vanishing flow only its roles,
    /// purpose and message type.
    pub properties: Vec<Change>,
}

/// The differences of one message type's catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueDiff {
    pub message_type: String,
    pub file: String,
    pub status: Status,
    /// Per field (`what` is its path): category, class, kind, date rule, closed list. First the message type's
    /// own properties (`what` starts with `(`).
    pub changes: Vec<Change>,
}

/// What differs between two policy sets, flow by flow and message type by message type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDiff {
    pub old_hash: String,
    pub new_hash: String,
    pub files_added: Vec<String>,
    pub files_removed: Vec<String>,
    pub flows: Vec<FlowDiff>,
    pub catalogues: Vec<CatalogueDiff>,
}

impl PolicyDiff {
    /// No difference in what the sets do (their texts, and so their hashes, may still differ).
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty() && self.catalogues.is_empty()
    }

    /// The same text, byte for byte (same hash).
    pub fn same_text(&self) -> bool {
        self.old_hash == self.new_hash
    }

    /// One line: how many flows and message types changed, or that nothing did.
    pub fn summary(&self) -> String {
        if self.is_empty() {
            return if self.same_text() {
                "Geen verschil: beide sets zijn gelijk (dezelfde beleid-hash).".into()
            } else {
                "Geen verschil in wat het beleid doet; alleen de tekst verschilt (commentaar, opmaak, \
                 toelichtingen of bestandsnamen)."
                    .into()
            };
        }
        let count = |s: Status| self.flows.iter().filter(|f| f.status == s).count();
        let mut parts = Vec::new();
        for (s, one, many) in [
            (Status::Changed, "flow gewijzigd", "flows gewijzigd"),
            (Status::Added, "flow nieuw", "flows nieuw"),
            (Status::Removed, "flow vervalt", "flows vervallen"),
        ] {
            match count(s) {
                0 => {}
                1 => parts.push(format!("1 {one}")),
                n => parts.push(format!("{n} {many}")),
            }
        }
        match self.catalogues.len() {
            0 => {}
            1 => parts.push("1 berichttype in de veldcatalogus gewijzigd".into()),
            n => parts.push(format!("{n} berichttypen in de veldcatalogus gewijzigd")),
        }
        format!("Verschillen: {}.", parts.join(", "))
    }
}

/// Compares two loaded sets: what changes when `new` replaces `old`.
pub fn diff(old: &PolicySet, new: &PolicySet) -> PolicyDiff {
    let mut flows = Vec::new();
    for o in old.flows() {
        match new.flows().find(|n| n.id == o.id) {
            Some(n) => {
                let d = FlowDiff {
                    id: n.id.clone(),
                    name: n.name.clone(),
                    file: n.file.clone(),
                    status: Status::Changed,
                    fields: changes(&field_actions(old, o), &field_actions(new, n)),
                    citations: changes(&citations(o), &citations(n)),
                    properties: changes(&properties(o), &properties(n)),
                };
                if !(d.fields.is_empty() && d.citations.is_empty() && d.properties.is_empty()) {
                    flows.push(d);
                }
            }
            None => flows.push(FlowDiff {
                id: o.id.clone(),
                name: o.name.clone(),
                file: o.file.clone(),
                status: Status::Removed,
                fields: Vec::new(),
                citations: Vec::new(),
                // What is no longer allowed: the roles and purpose (and message type) the flow named.
                properties: changes(&properties(o)[1..5], &[]),
            }),
        }
    }
    for n in new.flows().filter(|n| !old.flows().any(|o| o.id == n.id)) {
        flows.push(FlowDiff {
            id: n.id.clone(),
            name: n.name.clone(),
            file: n.file.clone(),
            status: Status::Added,
            fields: changes(&[], &field_actions(new, n)),
            citations: changes(&[], &citations(n)),
            properties: changes(&[], &properties(n)),
        });
    }

    let mut catalogues = Vec::new();
    for o in old.catalogues() {
        let (status, file, ch) = match new.catalogue(&o.message_type) {
            Some(n) => (
                Status::Changed,
                &n.file,
                changes(&catalogue_entries(o), &catalogue_entries(n)),
            ),
            None => (
                Status::Removed,
                &o.file,
                changes(&catalogue_entries(o), &[]),
            ),
        };
        if status == Status::Removed || !ch.is_empty() {
            catalogues.push(CatalogueDiff {
                message_type: o.message_type.clone(),
                file: file.clone(),
                status,
                changes: ch,
            });
        }
    }
    for n in new
        .catalogues()
        .filter(|n| old.catalogue(&n.message_type).is_none())
    {
        catalogues.push(CatalogueDiff {
            message_type: n.message_type.clone(),
            file: n.file.clone(),
            status: Status::Added,
            changes: changes(&[], &catalogue_entries(n)),
        });
    }

    let not_in = |a: &PolicySet, b: &PolicySet| -> Vec<String> {
        a.files()
            .iter()
            .filter(|f| !b.files().contains(f))
            .cloned()
            .collect()
    };
    PolicyDiff {
        old_hash: old.hash().to_owned(),
        new_hash: new.hash().to_owned(),
        files_added: not_in(new, old),
        files_removed: not_in(old, new),
        flows,
        catalogues,
    }
}

/// The differences between two keyed lists, in the old list's order with the new keys after it.
fn changes(old: &[(String, String)], new: &[(String, String)]) -> Vec<Change> {
    let find = |list: &[(String, String)], k: &str| {
        list.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let mut out = Vec::new();
    for (k, v) in old {
        let n = find(new, k);
        if n.as_ref() != Some(v) {
            out.push(Change {
                what: k.clone(),
                old: Some(v.clone()),
                new: n,
            });
        }
    }
    for (k, v) in new {
        if find(old, k).is_none() {
            out.push(Change {
                what: k.clone(),
                old: None,
                new: Some(v.clone()),
            });
        }
    }
    out
}

/// The action the flow's most specific rule gives a catalogue field, in words.
pub(super) fn action_nl(flow: &Flow, path: &str) -> String {
    let Some(rule) = flow.rule_for(path) else {
        return "achterhouden (de flow noemt het veld niet)".into();
    };
    let with_consent = |s: String, consent: bool| {
        if consent {
            format!("{s}, alleen met toestemming")
        } else {
            s
        }
    };
    let action = |a: &RuleAction| match a {
        RuleAction::Allow => "verstrekken".into(),
        RuleAction::Consent => "verstrekken, alleen met toestemming".into(),
        RuleAction::Generalise { method, consent } => {
            with_consent(format!("grover maken ({})", method.name()), *consent)
        }
        RuleAction::Pseudonymise { consent } => with_consent("pseudonimiseren".into(), *consent),
        RuleAction::Deny { reason } => format!("weigeren (reden: {reason})"),
    };
    match &rule.condition {
        None => action(&rule.action),
        Some(c) => format!(
            "{} als {} een van {} is; anders {}",
            action(&rule.action),
            if c.own {
                "de waarde".to_owned()
            } else {
                format!("`{}`", c.field)
            },
            c.one_of.join(", "),
            action(&c.otherwise)
        ),
    }
}

/// (path, action) for every field of the flow's catalogue in `set`; none for a count flow.
fn field_actions(set: &PolicySet, flow: &Flow) -> Vec<(String, String)> {
    if flow.aggregate.is_some() {
        return Vec::new();
    }
    set.catalogue(&flow.message_type)
        .map(|cat| {
            cat.fields
                .iter()
                .map(|f| (f.path.clone(), action_nl(flow, &f.path)))
                .collect()
        })
        .unwrap_or_default()
}

fn ground_nl(ground: &str) -> String {
    let name = match ground {
        "6.1.a" => "toestemming",
        "6.1.b" => "overeenkomst",
        "6.1.c" => "wettelijke verplichting",
        "6.1.d" => "vitaal belang",
        "6.1.e" => "taak van algemeen belang of openbaar gezag",
        "6.1.f" => "gerechtvaardigd belang",
        _ => return ground.to_owned(),
    };
    format!("{ground} ({name})")
}

const NONE: &str = "(geen)";

fn citations(f: &Flow) -> Vec<(String, String)> {
    let lb = &f.legal_basis;
    vec![
        ("grondslag AVG art. 6".into(), ground_nl(&lb.ground)),
        ("wetsartikel".into(), lb.article.clone()),
        (
            "uitzondering AVG art. 9/10".into(),
            lb.special.clone().unwrap_or_else(|| NONE.into()),
        ),
        (
            "grondslag leerlingnummer".into(),
            f.subject_basis.clone().unwrap_or_else(|| NONE.into()),
        ),
    ]
}

fn roles(r: &[Role]) -> String {
    r.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", ")
}

/// The `Flow` fields `properties` and `citations` show under a Dutch label, or that are no property of what the
/// flow does (location, rules, what the loader derives from them). Any other field is shown by `debug_fields`.
const FLOW_FIELDS_SHOWN: [&str; 26] = [
    "receiver",
    "answers",
    "id",
    "name",
    "file",
    "line",
    "senders",
    "receivers",
    "purpose",
    "message_type",
    "description",
    "legal_basis",
    "retention",
    "justification_required",
    "consent",
    "consent_12_15_both",
    "subject",
    "subject_basis",
    "agreement",
    "required",
    "rules",
    "screening",
    "aggregate",
    "field_rules",
    "table",
    "legal_basis_text",
];

/// The flow's properties under their Dutch labels; positions 1 to 4 are the roles, purpose and message type.
fn properties(f: &Flow) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = vec![
        ("naam".into(), f.name.clone()),
        ("van (rol verstrekker)".into(), roles(&f.senders)),
        ("naar (rol ontvanger)".into(), roles(&f.receivers)),
        ("doel".into(), f.purpose.clone()),
        ("berichttype".into(), f.message_type.clone()),
        (
            "omschrijving".into(),
            f.description.clone().unwrap_or_else(|| NONE.into()),
        ),
        (
            "verantwoording".into(),
            if f.justification_required {
                "verplicht".into()
            } else {
                "optioneel (verplicht zodra een S4/art. 10-veld wordt verstrekt)".into()
            },
        ),
        (
            "toestemming".into(),
            if f.consent {
                "de hele flow berust op toestemming; zonder geldige toestemming wordt het bericht geweigerd"
                    .into()
            } else {
                "niet voor de flow als geheel".into()
            },
        ),
        (
            "toestemming 12 tot 16 jaar".into(),
            if f.consent_12_15_both {
                "ouder en jongere samen (beleidskeuze, strenger dan de wet)".into()
            } else {
                "volgens de wet".into()
            },
        ),
        (
            "leerlingnummer".into(),
            match f.subject {
                SubjectDelivery::AsIs => "doorgegeven zoals verstuurd".into(),
                SubjectDelivery::Pseudonymise => {
                    "een pseudoniem, per ontvangende organisatie anders".into()
                }
                SubjectDelivery::None => "niet doorgegeven".into(),
            },
        ),
        (
            "bewaartermijn gateway (niet opgehaald)".into(),
            format!("{} dagen", f.retention.gateway_days),
        ),
        (
            "bewaartermijn ontvanger".into(),
            match f.retention.receiver.days {
                Some(days) => format!("{} ({days} dagen)", f.retention.receiver.text),
                None => f.retention.receiver.text.clone(),
            },
        ),
        (
            "ontvanger gebonden aan".into(),
            match &f.receiver {
                None => "geen binding".into(),
                Some(ReceiverBinding::Field(path)) => format!("de organisatie in `{path}`"),
                Some(ReceiverBinding::MemberOfSender) => {
                    "een samenwerkingsverband waar de school lid van is".into()
                }
                Some(ReceiverBinding::ServesWoongemeente) => {
                    "een organisatie die de woongemeente van de leerling bedient".into()
                }
                Some(ReceiverBinding::JgzOfSender) => "de JGZ van de school".into(),
                Some(ReceiverBinding::InReplyTo) => {
                    "de afzender van het bericht waarop dit antwoordt".into()
                }
                Some(ReceiverBinding::Follows) => {
                    "de ontvanger van het bericht waarop dit volgt".into()
                }
            },
        ),
        (
            "antwoord op flow".into(),
            f.answers.clone().unwrap_or_else(|| "—".into()),
        ),
        (
            "convenant".into(),
            match &f.agreement {
                Some(a) => a.summary_nl(" — "),
                None => NONE.into(),
            },
        ),
    ];
    for r in &f.required {
        let rule = match (&r.equals, r.equals_receiver) {
            (Some(v), _) => format!("moet {v} zijn"),
            (None, true) => "moet de ontvangende organisatie noemen".into(),
            (None, false) => "moet aanwezig zijn".into(),
        };
        let when = r
            .when
            .as_ref()
            .map(|w| format!(" als {} {} is", w.field, w.equals))
            .unwrap_or_default();
        p.push((
            format!("verplicht veld {}", r.path),
            format!("{rule}{when}"),
        ));
    }
    for l in &f.screening {
        p.push((
            format!("screening {} op {}", l.field, l.category),
            if l.patterns.is_empty() {
                format!("termen: {}", l.terms.join(", "))
            } else {
                format!("termen: {}; patronen: {:?}", l.terms.join(", "), l.patterns)
            },
        ));
    }
    if let Some(a) = &f.aggregate {
        let dims = a.dimension_labels();
        p.extend([
            ("telling: dimensies".into(), dims.join(", ")),
            (
                "telling: hoogstens dimensies per tabel".into(),
                a.max_dimensions.to_string(),
            ),
            ("telling: categorieën".into(), a.categories.join(", ")),
            (
                "telling: kleinste getoonde cel".into(),
                a.min_cell.to_string(),
            ),
            ("telling: afronden op".into(), a.rounding.to_string()),
            (
                "telling: secundaire onderdrukking".into(),
                if a.secondary_suppression {
                    "aan".into()
                } else {
                    "UIT".into()
                },
            ),
        ]);
    }
    p.extend(
        debug_fields(f)
            .into_iter()
            .filter(|(k, _)| !FLOW_FIELDS_SHOWN.contains(&k.as_str())),
    );
    p
}

/// The `CatalogueField` fields `field_summary` shows under a Dutch label (the label and the note are words for
/// readers only: changing them changes nothing the gateway does).
const CATALOGUE_FIELDS_SHOWN: [&str; 8] = [
    "path", "label", "category", "class", "kind", "date", "values", "note",
];

/// A catalogue field in one line: category, class, kind, date rule, closed list (and unlabelled properties).
fn field_summary(f: &CatalogueField) -> String {
    let mut s = format!("categorie {}, klasse {}", f.category, f.class.as_str());
    if let Some(k) = f.kind {
        s.push_str(&format!(", soort {}", k.as_str()));
    }
    if let Some(d) = f.date {
        s.push_str(&format!(", datumregel {}", d.as_str()));
    }
    if let Some(v) = &f.values {
        s.push_str(&format!(", gesloten lijst: {}", v.join(", ")));
    }
    for (k, v) in debug_fields(f)
        .into_iter()
        .filter(|(k, _)| !CATALOGUE_FIELDS_SHOWN.contains(&k.as_str()))
    {
        s.push_str(&format!(", {k}: {v}"));
    }
    s
}

fn catalogue_entries(c: &MessageCatalogue) -> Vec<(String, String)> {
    let mut e: Vec<(String, String)> = vec![
        (
            "(soort bericht)".into(),
            if c.aggregate {
                "telling, zonder leerling".into()
            } else {
                "over één leerling".into()
            },
        ),
        (
            "(omschrijving)".into(),
            c.description.clone().unwrap_or_else(|| NONE.into()),
        ),
    ];
    e.extend(c.fields.iter().map(|f| (f.path.clone(), field_summary(f))));
    e
}

/// The top-level fields of `value`'s derived `Debug` (`{:#?}`), each as (name, value on one line). How the diff
/// shows a property it has no Dutch label for: a key added to the policy language shows up without a change here.
fn debug_fields(value: &impl Debug) -> Vec<(String, String)> {
    let text = format!("{value:#?}");
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<(String, String)> = Vec::new();
    // The first line opens the struct (`Name {`) and the last closes it.
    for line in lines.iter().skip(1).take(lines.len().saturating_sub(2)) {
        let top = line
            .strip_prefix("    ")
            .filter(|rest| !rest.starts_with(' '))
            .and_then(|rest| rest.split_once(": "))
            .filter(|(name, _)| {
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
        match (top, out.last_mut()) {
            (Some((name, v)), _) => out.push((name.to_owned(), v.to_owned())),
            (None, Some(last)) => {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
            (None, None) => {}
        }
    }
    for (_, v) in &mut out {
        let mut s = v.trim_end_matches(',').to_owned();
        for (from, to) in [
            ("[ ", "["),
            (", ]", "]"),
            ("( ", "("),
            (", )", ")"),
            (", }", " }"),
        ] {
            s = s.replace(from, to);
        }
        *v = s;
    }
    out
}

fn absent(section: Section) -> &'static str {
    match section {
        Section::Fields => "(niet in de catalogus)",
        _ => "(niet aanwezig)",
    }
}

/// The parts of a flow's or message type's differences, with their Dutch headings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Fields,
    Citations,
    Properties,
    Catalogue,
}

impl Section {
    pub fn nl(self) -> &'static str {
        match self {
            Section::Fields => "Velden",
            Section::Citations => "Grondslag",
            Section::Properties => "Overige eigenschappen",
            Section::Catalogue => "Velden in de catalogus",
        }
    }

    /// What an absent side of a change says.
    pub fn absent(self) -> &'static str {
        absent(self)
    }
}

impl FlowDiff {
    /// The non-empty sections, in order.
    pub fn sections(&self) -> Vec<(Section, &[Change])> {
        [
            (Section::Fields, self.fields.as_slice()),
            (Section::Citations, self.citations.as_slice()),
            (Section::Properties, self.properties.as_slice()),
        ]
        .into_iter()
        .filter(|(_, c)| !c.is_empty())
        .collect()
    }

    /// The heading line: `Flow P1 — name (file): status`.
    pub fn heading(&self) -> String {
        format!(
            "Flow {} — {} ({}): {}",
            self.id,
            self.name,
            self.file,
            self.status.nl()
        )
    }
}

impl CatalogueDiff {
    pub fn heading(&self) -> String {
        format!(
            "Berichttype {} ({}): {}",
            self.message_type,
            self.file,
            self.status.nl()
        )
    }
}

impl Change {
    /// `what: old → new`, or `what: value` when `status` says the whole flow or message type is new or gone.
    pub fn line(&self, section: Section, status: Status) -> String {
        let absent = section.absent();
        match (status, &self.old, &self.new) {
            (Status::Added, None, Some(n)) => format!("{}: {n}", self.what),
            (Status::Removed, Some(o), None) => format!("{}: {o}", self.what),
            (_, o, n) => format!(
                "{}: {} → {}",
                self.what,
                o.as_deref().unwrap_or(absent),
                n.as_deref().unwrap_or(absent)
            ),
        }
    }
}

impl fmt::Display for PolicyDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Beleid vergeleken")?;
        writeln!(f, "  oud:   beleid-hash {}", self.old_hash)?;
        writeln!(f, "  nieuw: beleid-hash {}", self.new_hash)?;
        if !self.files_added.is_empty() {
            writeln!(f, "  bestanden erbij: {}", self.files_added.join(", "))?;
        }
        if !self.files_removed.is_empty() {
            writeln!(f, "  bestanden weg:   {}", self.files_removed.join(", "))?;
        }
        writeln!(f, "{}", self.summary())?;
        for d in &self.flows {
            writeln!(f)?;
            writeln!(f, "{}", d.heading())?;
            if d.status == Status::Removed {
                writeln!(
                    f,
                    "  Berichten die alleen deze flow toeliet, worden voortaan geweigerd (403 no-policy)."
                )?;
            }
            for (section, list) in d.sections() {
                writeln!(f, "  {}:", section.nl())?;
                for c in list {
                    writeln!(f, "    {}", c.line(section, d.status))?;
                }
            }
        }
        for d in &self.catalogues {
            writeln!(f)?;
            writeln!(f, "{}", d.heading())?;
            if !d.changes.is_empty() {
                writeln!(f, "  {}:", Section::Catalogue.nl())?;
                for c in &d.changes {
                    writeln!(f, "    {}", c.line(Section::Catalogue, d.status))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped policy files as (name, text) pairs.
    fn sources() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        super::super::load::read_dir(&dir).unwrap()
    }

    fn load(files: &[(String, String)]) -> PolicySet {
        PolicySet::from_sources(files).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The sources with `from` replaced by `to` in file `name` (which must contain it once).
    fn edit(files: &[(String, String)], name: &str, from: &str, to: &str) -> Vec<(String, String)> {
        let mut files = files.to_vec();
        let (_, text) = files
            .iter_mut()
            .find(|(n, _)| n.starts_with(name))
            .unwrap_or_else(|| panic!("no file {name}"));
        assert_eq!(text.matches(from).count(), 1, "{from} in {name}");
        *text = text.replacen(from, to, 1);
        files
    }

    fn flow<'a>(d: &'a PolicyDiff, id: &str) -> &'a FlowDiff {
        d.flows
            .iter()
            .find(|f| f.id == id)
            .unwrap_or_else(|| panic!("no diff for {id}:\n{d}"))
    }

    #[test]
    fn identical_sets_have_no_difference() {
        let s = sources();
        let d = diff(&load(&s), &load(&s));
        assert!(d.is_empty(), "{d}");
        assert!(d.same_text());
        assert!(d.to_string().contains("Geen verschil"), "{d}");
        // A comment changes the hash, not what the set does.
        let commented = edit(&s, "p1-", "[flow]", "# een opmerking\n[flow]");
        let d = diff(&load(&s), &load(&commented));
        assert!(d.is_empty(), "{d}");
        assert!(!d.same_text());
        assert!(d.to_string().contains("alleen de tekst verschilt"), "{d}");
    }

    #[test]
    fn a_field_that_changes_action_is_named_with_old_and_new_action() {
        let s = sources();
        let changed = edit(
            &s,
            "p4-",
            r#"{ path = "leerling.geboortedatum",     action = "generalise", method = "date-year" },"#,
            r#"{ path = "leerling.geboortedatum",     action = "deny", reason = "niet nodig" },"#,
        );
        let d = diff(&load(&s), &load(&changed));
        assert_eq!(d.flows.len(), 1, "{d}");
        let p4 = flow(&d, "P4");
        assert_eq!(p4.status, Status::Changed);
        assert_eq!(
            p4.fields,
            [Change {
                what: "leerling.geboortedatum".into(),
                old: Some("grover maken (date-year)".into()),
                new: Some("weigeren (reden: niet nodig)".into()),
            }]
        );
        assert!(p4.citations.is_empty() && p4.properties.is_empty(), "{d}");
        assert!(d.catalogues.is_empty(), "{d}");
        let text = d.to_string();
        assert!(
            text.contains(
                "    leerling.geboortedatum: grover maken (date-year) → weigeren (reden: niet nodig)\n"
            ),
            "{text}"
        );
        assert!(text.contains("Verschillen: 1 flow gewijzigd."), "{text}");
    }

    #[test]
    fn a_flow_that_vanishes_or_appears_is_named() {
        let s = sources();
        let without_p6: Vec<_> = s
            .iter()
            .filter(|(n, _)| !n.starts_with("p6-"))
            .cloned()
            .collect();
        let d = diff(&load(&s), &load(&without_p6));
        assert_eq!(d.flows.len(), 1, "{d}");
        let p6 = flow(&d, "P6");
        assert_eq!(p6.status, Status::Removed);
        assert!(p6.fields.is_empty());
        assert!(p6
            .properties
            .iter()
            .any(|c| c.what == "doel" && c.new.is_none()));
        assert_eq!(d.files_removed.len(), 1);
        let text = d.to_string();
        assert!(text.contains("Flow P6 — "), "{text}");
        assert!(text.contains(": vervalt\n"), "{text}");
        assert!(text.contains("403 no-policy"), "{text}");

        let d = diff(&load(&without_p6), &load(&s));
        let p6 = flow(&d, "P6");
        assert_eq!(p6.status, Status::Added);
        // A new flow lists every field of its message type with its action.
        let cat = load(&s)
            .catalogue("status-verzuimmelding")
            .unwrap()
            .fields
            .len();
        assert_eq!(p6.fields.len(), cat, "{d}");
        assert!(p6.fields.iter().all(|c| c.old.is_none()));
        let text = d.to_string();
        assert!(text.contains(": nieuw\n"), "{text}");
        assert!(text.contains("    doel: status-verzuimmelding\n"), "{text}");
    }

    #[test]
    fn a_changed_citation_is_named() {
        let s = sources();
        let changed = edit(&s, "p4-", "ground = \"6.1.a\"", "ground = \"6.1.e\"");
        let changed = edit(
            &changed,
            "p4-",
            "special = \"AVG art. 9 lid 2 sub a (uitdrukkelijke toestemming)\"",
            "special = \"UAVG art. 30\"",
        );
        let d = diff(&load(&s), &load(&changed));
        let p4 = flow(&d, "P4");
        assert!(p4.fields.is_empty() && p4.properties.is_empty(), "{d}");
        assert_eq!(
            p4.citations,
            [
                Change {
                    what: "grondslag AVG art. 6".into(),
                    old: Some("6.1.a (toestemming)".into()),
                    new: Some("6.1.e (taak van algemeen belang of openbaar gezag)".into()),
                },
                Change {
                    what: "uitzondering AVG art. 9/10".into(),
                    old: Some("AVG art. 9 lid 2 sub a (uitdrukkelijke toestemming)".into()),
                    new: Some("UAVG art. 30".into()),
                },
            ]
        );
        assert!(d.to_string().contains("  Grondslag:\n"), "{d}");
    }

    #[test]
    fn other_properties_and_the_catalogue_are_compared() {
        let s = sources();
        let changed = edit(&s, "p4-", "gateway_days = 14", "gateway_days = 21");
        let changed = edit(&changed, "p4-", "consent = true", "consent = false");
        let d = diff(&load(&s), &load(&changed));
        let p4 = flow(&d, "P4");
        let what: Vec<&str> = p4.properties.iter().map(|c| c.what.as_str()).collect();
        assert_eq!(
            what,
            ["toestemming", "bewaartermijn gateway (niet opgehaald)"],
            "{d}"
        );
        assert!(d
            .to_string()
            .contains("    bewaartermijn gateway (niet opgehaald): 14 dagen → 21 dagen\n"));

        // A catalogue change shows under the message type, and a field a wildcard now covers under each flow.
        let mut changed = s.clone();
        let (_, text) = changed
            .iter_mut()
            .find(|(_, t)| t.contains("type = \"onderwijskundig-rapport\""))
            .unwrap();
        let at = text.find("type = \"onderwijskundig-rapport\"").unwrap();
        let at = at + text[at..].find("fields = [").unwrap() + "fields = [".len();
        text.insert_str(
            at,
            "\n  { path = \"leerling.tweede_roepnaam\", label = \"leerling.tweede_roepnaam\", category = \"ADM\", class = \"S1\", kind = \"string\" },",
        );
        let d = diff(&load(&s), &load(&changed));
        assert_eq!(d.catalogues.len(), 1, "{d}");
        assert_eq!(
            d.catalogues[0].changes,
            [Change {
                what: "leerling.tweede_roepnaam".into(),
                old: None,
                new: Some("categorie ADM, klasse S1, soort string".into()),
            }]
        );
        let p1 = flow(&d, "P1");
        assert_eq!(p1.fields.len(), 1, "{d}");
        assert_eq!(p1.fields[0].what, "leerling.tweede_roepnaam");
        assert_eq!(p1.fields[0].old, None);
        assert!(d
            .to_string()
            .contains("    leerling.tweede_roepnaam: (niet in de catalogus) → "));
    }

    #[test]
    fn a_property_without_a_label_is_shown_by_its_debug_form() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Example {
            id: String,
            receiver_binding: Option<Vec<&'static str>>,
            nested: (u32, bool),
        }
        let e = Example {
            id: "P9".into(),
            receiver_binding: Some(vec!["aanmelding.school", "b"]),
            nested: (3, true),
        };
        assert_eq!(
            debug_fields(&e),
            [
                ("id".to_owned(), "\"P9\"".to_owned()),
                (
                    "receiver_binding".to_owned(),
                    "Some([\"aanmelding.school\", \"b\"])".to_owned()
                ),
                ("nested".to_owned(), "(3, true)".to_owned()),
            ]
        );
        // The list of labelled `Flow` fields names real fields (a typo would show a field twice).
        let set = load(&sources());
        let f = set.flows().next().unwrap();
        let names: Vec<String> = debug_fields(f).into_iter().map(|(k, _)| k).collect();
        for shown in FLOW_FIELDS_SHOWN {
            assert!(
                names.iter().any(|n| n == shown),
                "{shown} is no field of Flow: {names:?}"
            );
        }
        let cat = set.catalogues().next().unwrap();
        let names: Vec<String> = debug_fields(&cat.fields[0])
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for shown in CATALOGUE_FIELDS_SHOWN {
            assert!(
                names.iter().any(|n| n == shown),
                "{shown} is no field of CatalogueField: {names:?}"
            );
        }
    }
}
