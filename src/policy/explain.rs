//! `ketenpoort policy explain` and the console's policy page: one flow and what happens to every field of its
//! message type, in Dutch, for privacy officers. `explanation` gives the parts, `explain` the text. Reads the loaded
//! set only.

use std::fmt::{self, Write};

use super::labels::{category_name, ACTIONS};
use super::{
    codes, Class, Flow, MessageCatalogue, PolicySet, ReceiverBinding, Refusal, RuleAction,
    SubjectDelivery,
};
use crate::domain::Role;

/// One flow explained: its properties and every field of its message type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub flow_id: String,
    pub flow_name: String,
    /// (heading, text) about the flow as a whole, in the order shown; a text may have several lines.
    pub facts: Vec<(&'static str, String)>,
    /// Every catalogue field of the message type, in catalogue order, then the default for any other field.
    pub fields: Vec<ExplainedField>,
    /// The categories of the message type's fields (code, Dutch name), in catalogue order.
    pub categories: Vec<(String, Option<&'static str>)>,
}

/// What the flow does with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainedField {
    /// The catalogue's Dutch label (`Achternaam leerling`).
    pub label: String,
    /// The catalogue path (`leerling.achternaam`); empty for the row of any other field.
    pub path: String,
    pub category: String,
    pub class: String,
    /// In the words of `ACTIONS` (`toegestaan`, `alleen met toestemming (ADM)`, `geweigerd`, …).
    pub action: String,
    /// The rule that decides, the reason of a refusal, a closed list, the rule's note.
    pub reason: String,
}

fn roles(r: &[Role]) -> String {
    r.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", ")
}

/// A field as the reader knows it: `Label (path)`, or the path alone when the catalogue has no such field.
fn named(cat: &MessageCatalogue, path: &str) -> String {
    match cat.field(path) {
        Some(f) => format!("{} ({path})", f.label),
        None => path.to_owned(),
    }
}

/// What a generalisation keeps, in Dutch.
fn generalised(method: super::GeneraliseMethod) -> String {
    match method {
        super::GeneraliseMethod::DateYear => "alleen het jaar".into(),
        super::GeneraliseMethod::DateYearMonth => "alleen jaar en maand".into(),
        super::GeneraliseMethod::PostcodePc4 => "alleen de vier cijfers van de postcode".into(),
        super::GeneraliseMethod::NumberBand(b) => format!("in klassen van {b}"),
    }
}

/// An action in the words of `ACTIONS`, with the category whose consent it needs when it needs one.
fn action_words(action: &RuleAction, flow_consent: bool, category: &str) -> String {
    let consent = flow_consent || action.needs_consent();
    let with_consent = |what: String| {
        if consent {
            format!("{what}, alleen met toestemming ({category})")
        } else {
            what
        }
    };
    match action {
        RuleAction::Allow | RuleAction::Consent if consent => {
            format!("alleen met toestemming ({category})")
        }
        RuleAction::Allow | RuleAction::Consent => "toegestaan".into(),
        RuleAction::Generalise { method, .. } => {
            with_consent(format!("gegeneraliseerd: {}", generalised(*method)))
        }
        RuleAction::Pseudonymise { .. } => with_consent("gepseudonimiseerd".into()),
        RuleAction::Deny { .. } => "geweigerd".into(),
    }
}

/// (action, reason) of one catalogue field in a person-level `flow`. A rule with a condition (`when`) reads
/// "action, anders otherwise", the condition in the reason.
fn describe(flow: &Flow, cat: &MessageCatalogue, path: &str) -> (String, String) {
    let field = cat.field(path);
    let closed = field
        .and_then(|f| f.values.as_ref())
        .map(|v| format!("; gesloten lijst: {}", v.join(", ")))
        .unwrap_or_default();
    let Some(rule) = flow.rule_for(path) else {
        return ("geweigerd".into(), "niet in deze flow (not-in-flow)".into());
    };
    let category = field.map(|f| f.category.as_str()).unwrap_or("-");
    let mut action = action_words(&rule.action, flow.consent, category);
    let mut reason = match &rule.action {
        RuleAction::Deny { reason } => format!("{reason} (regel `{}`)", rule.pattern_text),
        _ => format!("regel `{}`{closed}", rule.pattern_text),
    };
    if let Some(c) = &rule.condition {
        action = format!(
            "{action}, anders {}",
            action_words(&c.otherwise, flow.consent, category)
        );
        let read = if c.own {
            "de waarde".to_owned()
        } else {
            named(cat, &c.field)
        };
        reason = format!(
            "{} als {read} een van deze is: {}; {reason}",
            action_words(&rule.action, flow.consent, category),
            c.one_of.join(", ")
        );
        if let RuleAction::Deny { reason: why } = &c.otherwise {
            reason = format!("{reason}; anders: {why}");
        }
    }
    let reason = match &rule.note {
        Some(n) => format!("{reason} — {n}"),
        None => reason,
    };
    (action, reason)
}

/// (action, reason) of one field of an aggregate's message type.
fn describe_aggregate(a: &super::AggregateRules, path: &str) -> (String, String) {
    if path == "cellen[].aantal" {
        (
            format!("afgerond op een veelvoud van {}", a.rounding),
            format!("onderdrukt onder {}", a.min_cell),
        )
    } else if path.starts_with("cellen[].")
        && path != "cellen[].categorie"
        && !a
            .dimensions
            .iter()
            .any(|d| path == format!("cellen[].{}", d.name))
    {
        (
            "geweigerd (hele bericht)".into(),
            "geen toegestane dimensie".into(),
        )
    } else {
        ("toegestaan".into(), "vorm van de telling".into())
    }
}

fn receiver_binding(flow: &Flow, cat: &MessageCatalogue) -> String {
    let who = match &flow.receiver {
        None => "elke partner met een ontvangende rol (niet gebonden aan de zaak)".to_owned(),
        Some(ReceiverBinding::Field(path)) => {
            format!("alleen de organisatie die {} noemt", named(cat, path))
        }
        Some(ReceiverBinding::MemberOfSender) => {
            "alleen een samenwerkingsverband waarvan de verzendende school lid is".into()
        }
        Some(ReceiverBinding::ServesWoongemeente) => format!(
            "alleen een organisatie die de woongemeente van de leerling bedient ({})",
            named(cat, "leerling.woongemeente")
        ),
        Some(ReceiverBinding::JgzOfSender) => {
            "alleen de jeugdgezondheidszorg van de verzendende school".into()
        }
        Some(ReceiverBinding::InReplyTo) => format!(
            "alleen de afzender van het bericht ({}) waarop dit antwoordt (in_reply_to)",
            flow.answers.as_deref().unwrap_or("-")
        ),
        Some(ReceiverBinding::Follows) => format!(
            "alleen de school waaraan de verzender het bericht ({}) stuurde waarop dit volgt (in_reply_to)",
            flow.answers.as_deref().unwrap_or("-")
        ),
    };
    format!("{who}; anders 403 receiver-not-responsible")
}

fn facts(policy: &PolicySet, flow: &Flow, cat: &MessageCatalogue) -> Vec<(&'static str, String)> {
    let mut f: Vec<(&'static str, String)> = vec![
        (
            "bestand",
            format!("{} (beleid-hash {})", flow.file, policy.hash()),
        ),
        (
            "van → naar",
            format!("{} → {}", roles(&flow.senders), roles(&flow.receivers)),
        ),
        ("doel", flow.purpose.clone()),
        ("soort bericht", flow.message_type.clone()),
        ("grondslag", flow.legal_basis.to_string()),
        (
            "gateway bewaart",
            format!(
                "{} dagen zolang de ontvanger het bericht niet bevestigt, daarna gewist \
                 (message-expired als het nooit is opgehaald)",
                flow.retention.gateway_days
            ),
        ),
    ];
    let receiver = &flow.retention.receiver;
    f.push((
        "ontvanger bewaart",
        match receiver.days {
            Some(days) => format!(
                "{} ({days} dagen; meegedeeld aan de ontvanger, niet afgedwongen door de gateway)",
                receiver.text
            ),
            None => format!(
                "{} (meegedeeld aan de ontvanger, niet afgedwongen door de gateway)",
                receiver.text
            ),
        },
    ));
    f.push((
        "verantwoording",
        if flow.justification_required {
            "verplicht: de verstrekker legt vast waarom de verstrekking nodig is".into()
        } else {
            "niet verplicht (wel als een veld van klasse S4 of ART10 wordt verstrekt)".into()
        },
    ));
    f.push((
        "toestemming",
        if flow.consent {
            "de hele flow rust op toestemming: zonder geldige toestemming wordt het bericht geweigerd".into()
        } else {
            "niet voor de flow als geheel".into()
        },
    ));
    f.push((
        "wie toestemt",
        format!(
            "alleen een toestemming die de verstrekker zelf vastlegde telt. Wie toestemt hangt af van de wet van \
             de verstrekker en de leeftijd van de leerling: UAVG art. 5 (scholen, samenwerkingsverbanden), \
             Jeugdwet art. 7.3.11 (jeugdhulp); gegevens van de ouders zelf: de ouders{}",
            if flow.consent_12_15_both {
                "; 12 tot en met 15 jaar: ouders en jongere samen (een keuze van dit beleid, strenger dan de wet)"
            } else {
                ""
            }
        ),
    ));
    f.push((
        "leerlingnummer",
        match flow.subject {
            SubjectDelivery::AsIs => format!(
                "ongewijzigd verstrekt (grondslag: {})",
                flow.subject_basis.as_deref().unwrap_or("-")
            ),
            SubjectDelivery::Pseudonymise => {
                "vervangen door een pseudoniem, verschillend per ontvangende organisatie".into()
            }
            SubjectDelivery::None => "niet verstrekt".into(),
        },
    ));
    f.push(("ontvanger", receiver_binding(flow, cat)));
    if let Some(a) = &flow.agreement {
        f.push(("convenant", a.summary_nl("\n")));
    }
    for r in &flow.required {
        let what = match (&r.equals, r.equals_receiver) {
            (Some(v), _) => format!("moet {v} zijn"),
            (None, true) => "moet de ontvangende organisatie noemen".into(),
            (None, false) => "moet aanwezig zijn".into(),
        };
        let hint = r
            .hint
            .as_deref()
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        let when = r
            .when
            .as_ref()
            .map(|w| format!(" als {} {} is", named(cat, &w.field), w.equals))
            .unwrap_or_default();
        f.push((
            "verplicht",
            format!("{} {what}{when}{hint}", named(cat, &r.path)),
        ));
    }
    for list in &flow.exactly_one {
        let names: Vec<String> = list.iter().map(|p| named(cat, p)).collect();
        f.push((
            "precies één van",
            format!(
                "{} (geen: weigering; meer dan één: weigering)",
                names.join(" of ")
            ),
        ));
    }
    if flow.kerngroep {
        f.push((
            "kerngroep",
            "het deel van één ontvanger in een kerngroepcasus: alleen bereikbaar met `recipients` (2 tot 8 partners) \
             en een `case_id`, nooit met `to`; elke ontvanger krijgt wat zijn eigen flow voor dit doel toestaat, op \
             zijn eigen grondslag; alle ontvangers in één transactie of geen; een geweigerde ontvanger krijgt niets"
                .into(),
        ));
    }
    if flow.anonymous {
        f.push((
            "anoniem",
            "het bericht noemt geen leerling (geen subject) en wordt in zijn geheel geweigerd \
             (identifying-data-in-anonymous-consult) bij elk veld dat de flow niet ongewijzigd verstrekt, en bij \
             elke treffer van de screening; niets wordt verstrekt of bewaard, het logboek noemt geen leerling"
                .into(),
        ));
    }
    for l in &flow.screening {
        let terms = if l.patterns.is_empty() {
            format!("{} termen", l.terms.len())
        } else {
            format!("{} termen en een datumpatroon", l.terms.len())
        };
        f.push((
            "screening",
            if l.withhold {
                format!(
                    "{} wordt ingehouden (de rest gaat door) als het een term uit de lijst {} noemt ({terms})",
                    named(cat, &l.field),
                    l.category,
                )
            } else {
                format!(
                    "het hele bericht wordt geweigerd als {} een term uit de lijst {} noemt ({terms})",
                    named(cat, &l.field),
                    l.category,
                )
            },
        ));
    }
    if let Some(a) = &flow.aggregate {
        f.push((
            "telling",
            format!(
                "alleen aantallen, met ten hoogste {} van de dimensies {}\n\
                 categorieën {}\n\
                 cellen van 1 tot en met {} onderdrukt, de rest afgerond op een veelvoud van {}, \
                 secundaire onderdrukking {}\n\
                 al het andere, of een leerlingnummer, wordt geweigerd (person-level-in-aggregate)",
                a.max_dimensions,
                a.dimension_labels().join(", "),
                a.categories.join(", "),
                a.min_cell - 1,
                a.rounding,
                if a.secondary_suppression {
                    "aan"
                } else {
                    "UIT"
                },
            ),
        ));
    }
    f
}

/// The parts of the explanation of the flow for (from, to, purpose), or `no-policy` when none is written.
pub fn explanation(
    policy: &PolicySet,
    from: Role,
    to: Role,
    purpose: &str,
) -> Result<Explanation, Refusal> {
    let flow = policy.find_flow(from, to, purpose).ok_or_else(|| {
        Refusal::new(
            codes::NO_POLICY,
            format!("geen flow staat {from} → {to} toe voor doel {purpose}"),
        )
    })?;
    let cat = policy.catalogue(&flow.message_type).ok_or_else(|| {
        Refusal::new(
            codes::NO_POLICY,
            format!("flow {} heeft geen catalogus", flow.id),
        )
    })?;
    let mut fields: Vec<ExplainedField> = cat
        .fields
        .iter()
        .map(|f| {
            let (action, reason) = match &flow.aggregate {
                Some(a) => describe_aggregate(a, &f.path),
                None => describe(flow, cat, &f.path),
            };
            ExplainedField {
                label: f.label.clone(),
                path: f.path.clone(),
                category: f.category.clone(),
                class: f.class.as_str().to_owned(),
                action,
                reason,
            }
        })
        .collect();
    let (action, reason) = if flow.aggregate.is_some() {
        (
            "geweigerd (hele bericht)",
            "geen telling (person-level-in-aggregate)",
        )
    } else if flow.anonymous {
        (
            "geweigerd (hele bericht)",
            "anoniem consult: elk ander veld weigert het hele bericht (identifying-data-in-anonymous-consult)",
        )
    } else {
        ("geweigerd", "niet in de catalogus (not-in-catalogue)")
    };
    fields.push(ExplainedField {
        label: "(elk ander veld)".into(),
        path: String::new(),
        category: "-".into(),
        class: "-".into(),
        action: action.into(),
        reason: reason.into(),
    });
    let mut categories: Vec<(String, Option<&'static str>)> = Vec::new();
    for f in &cat.fields {
        if !categories.iter().any(|(c, _)| *c == f.category) {
            categories.push((f.category.clone(), category_name(&f.category)));
        }
    }
    Ok(Explanation {
        flow_id: flow.id.clone(),
        flow_name: flow.name.clone(),
        facts: facts(policy, flow, cat),
        fields,
        categories,
    })
}

/// Explains the flow for (from, to, purpose) as text, or refuses with `no-policy` when none is written.
pub fn explain(policy: &PolicySet, from: Role, to: Role, purpose: &str) -> Result<String, Refusal> {
    explanation(policy, from, to, purpose).map(|e| e.to_string())
}

/// Rows of cells as columns padded with spaces.
fn table(rows: &[[&str; 6]]) -> String {
    let mut widths = [0usize; 6];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        let _ = writeln!(s, "Flow {} — {}", self.flow_id, self.flow_name);
        let width = self
            .facts
            .iter()
            .map(|(h, _)| h.chars().count())
            .max()
            .unwrap_or(0)
            + 2;
        for (heading, text) in &self.facts {
            for (i, line) in text.lines().enumerate() {
                let head = if i == 0 {
                    format!("{heading}:")
                } else {
                    String::new()
                };
                let _ = writeln!(s, "  {head:<width$}{line}");
            }
        }
        s.push('\n');
        let mut rows = vec![[
            "Veld",
            "Pad",
            "Categorie",
            "Klasse",
            "Wat er gebeurt",
            "Reden / regel",
        ]];
        rows.extend(self.fields.iter().map(|r| {
            [
                r.label.as_str(),
                if r.path.is_empty() { "-" } else { &r.path },
                r.category.as_str(),
                r.class.as_str(),
                r.action.as_str(),
                r.reason.as_str(),
            ]
        }));
        s.push_str(&table(&rows));
        s.push_str("\nLegenda\n  Wat er gebeurt met een veld:\n");
        for (action, meaning) in ACTIONS {
            let _ = writeln!(s, "    {action:<24}{meaning}");
        }
        s.push_str("  Klassen:\n");
        for class in Class::ALL {
            let _ = writeln!(s, "    {:<8}{}", class.as_str(), class.meaning_nl());
        }
        s.push_str("  Categorieën in dit bericht:\n");
        for (code, name) in &self.categories {
            let _ = writeln!(s, "    {code:<8}{}", name.unwrap_or("(geen naam)"));
        }
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn set() -> PolicySet {
        PolicySet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
    }

    /// The table line of the field with catalogue path `p`.
    fn line(text: &str, p: &str) -> String {
        text.lines()
            .find(|l| l.contains(&format!("  {p}  ")))
            .unwrap_or_else(|| panic!("no line for {p} in\n{text}"))
            .to_owned()
    }

    #[test]
    fn explains_p1_field_by_field_in_dutch() {
        let text = explain(&set(), Role::SchoolPo, Role::SchoolVo, "overstap-po-vo").unwrap();
        let achternaam = line(&text, "leerling.achternaam");
        assert!(
            achternaam.starts_with("Achternaam leerling ")
                && achternaam.contains(" ADM ")
                && achternaam.contains(" S1 ")
                && achternaam.contains("toegestaan"),
            "{achternaam}"
        );
        assert!(line(&text, "bijlagen[].inhoud").contains("alleen met toestemming (ATT)"));
        let jeugdhulp = line(&text, "jeugdhulp.inhoud");
        assert!(jeugdhulp.starts_with("Inhoud van de jeugdhulp "));
        assert!(jeugdhulp.contains("geweigerd"));
        assert!(jeugdhulp.contains("Jeugdwet 7.3.11"), "{jeugdhulp}");
        assert!(line(&text, "thuissituatie.details").contains("geweigerd"));
        assert!(text.starts_with("Flow P1 — "));
        for heading in [
            "grondslag:",
            "gateway bewaart:",
            "ontvanger bewaart:",
            "leerlingnummer:",
            "ontvanger:",
        ] {
            assert!(
                text.contains(&format!("\n  {heading} ")),
                "{heading}\n{text}"
            );
        }
        assert!(
            text.contains(
                "Ouders hebben het rapport ingezien (inzage.ouders_geinformeerd) moet true zijn"
            ),
            "{text}"
        );
        // The legend: the actions, every class, the categories of this message in Dutch.
        let legend = &text[text.find("\nLegenda\n").expect("a legend")..];
        for action in [
            "toegestaan",
            "alleen met toestemming",
            "gegeneraliseerd",
            "gepseudonimiseerd",
            "geweigerd",
        ] {
            assert!(
                legend.contains(&format!("\n    {action} ")),
                "{action}\n{legend}"
            );
        }
        for class in ["S0", "S1", "S1X", "S2", "S3", "S4", "ART10"] {
            assert!(
                legend.contains(&format!("\n    {class} ")),
                "{class}\n{legend}"
            );
        }
        assert!(
            legend.contains("ADM     Administratieve gegevens"),
            "{legend}"
        );
        assert!(legend.contains("AVG art. 9"), "{legend}");
        // No English action or heading is left.
        for english in [
            "deliver",
            "withhold",
            "legal basis",
            "receiver keeps",
            "with consent",
        ] {
            assert!(!text.contains(english), "{english} in\n{text}");
        }
        assert!(line(&text, "-").starts_with("(elk ander veld)"));
    }

    #[test]
    fn a_rule_with_a_condition_names_both_actions_and_the_field_it_reads() {
        let text = explain(&set(), Role::SchoolPo, Role::SchoolVo, "overstap-po-vo").unwrap();
        let iq = line(&text, "cognitief.iq_totaal");
        assert!(
            iq.contains("toegestaan, anders alleen met toestemming (COG)")
                && iq.contains(
                    "toegestaan als Schooladvies (advies.schooladvies) een van deze is: pro,"
                ),
            "{iq}"
        );
        let categorie = line(&text, "diagnoses[].categorie");
        assert!(
            categorie.contains("toegestaan als de waarde een van deze is: dyslexie,"),
            "{categorie}"
        );
    }

    #[test]
    fn explains_p4_and_p7() {
        let p4 = explain(&set(), Role::SchoolPo, Role::Wijkteam, "vroegsignalering").unwrap();
        let birth = line(&p4, "leerling.geboortedatum");
        assert!(
            birth.contains("gegeneraliseerd: alleen het jaar, alleen met toestemming (ADM)"),
            "{birth}"
        );
        let subject = p4
            .lines()
            .find(|l| l.starts_with("  leerlingnummer: "))
            .unwrap_or_else(|| panic!("{p4}"));
        assert!(subject.ends_with(" niet verstrekt"), "{subject}");
        assert!(
            p4.contains("bedient (Woongemeente leerling (leerling.woongemeente))"),
            "{p4}"
        );
        let p7 = explain(
            &set(),
            Role::Leerplicht,
            Role::SwvVo,
            "monitoring-thuiszitters",
        )
        .unwrap();
        assert!(p7.contains("convenant:"), "{p7}");
        assert!(p7.contains("person-level-in-aggregate"), "{p7}");
        assert!(line(&p7, "cellen[].aantal").contains("afgerond op een veelvoud van"));
    }

    #[test]
    fn the_parts_name_label_path_and_category() {
        let e = explanation(&set(), Role::SchoolVo, Role::Leerplicht, "verzuimmelding").unwrap();
        assert_eq!(e.flow_id, "P3");
        let soort = e.fields.iter().find(|f| f.path == "verzuim.soort").unwrap();
        assert_eq!(soort.label, "Soort verzuim");
        assert_eq!(soort.category, "VZM");
        assert!(e
            .categories
            .iter()
            .any(|(c, n)| c == "VZM" && *n == Some("Verzuimmelding")));
        assert!(e.fields.iter().all(|f| !f.label.is_empty()));
    }

    #[test]
    fn an_unwritten_flow_is_refused() {
        let r = explain(&set(), Role::Wijkteam, Role::SwvVo, "overstap-po-vo").unwrap_err();
        assert_eq!(r.code, "no-policy");
        assert!(r.detail.starts_with("geen flow staat"), "{}", r.detail);
    }
}
