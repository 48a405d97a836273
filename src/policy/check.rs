//! `ketenpoort policy check`: validates a policy directory and lints what loads.
//!
//! Errors: anything that stops the set loading (syntax, unknown keys, overlapping flows, …), rules
//! whose path matches no catalogue field, S4/art. 10 fields delivered without consent or a cited
//! exception, generalisation methods that do not fit the field. Warnings: rules shadowed by more
//! specific ones, and other things a privacy officer should look at. Reads files, nothing else.

use std::fmt;
use std::path::Path;

use super::load::{read_dir, PolicyError};
use super::{Flow, PolicySet, RuleAction, SubjectDelivery};
use crate::domain::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding of `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    pub line: Option<usize>,
    pub severity: Severity,
    pub message: String,
}

impl Finding {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    fn at(flow: &Flow, line: usize, severity: Severity, message: String) -> Finding {
        Finding {
            file: flow.file.clone(),
            line: Some(line),
            severity,
            message,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(
                f,
                "{}: {}:{}: {}",
                self.severity, self.file, l, self.message
            ),
            None => write!(f, "{}: {}: {}", self.severity, self.file, self.message),
        }
    }
}

fn from_error(e: &PolicyError, fallback: &str) -> Finding {
    let (file, line) = e.location();
    Finding {
        file: file.unwrap_or(fallback).to_owned(),
        line,
        severity: Severity::Error,
        message: e.message(),
    }
}

/// Checks the `*.toml` files of `policy_dir`.
pub fn check(policy_dir: &Path) -> Vec<Finding> {
    match read_dir(policy_dir) {
        Ok(files) => check_sources(&files),
        Err(e) => vec![from_error(&e, &policy_dir.display().to_string())],
    }
}

/// Loads `policy_dir` as `check` judges it: the set and `check`'s warnings, or every finding when any is an error
/// (the set does not load, or the lint finds an error). `policy diff` compares only sets that pass this.
pub fn load_checked(policy_dir: &Path) -> Result<(PolicySet, Vec<Finding>), Vec<Finding>> {
    let files = read_dir(policy_dir)
        .map_err(|e| vec![from_error(&e, &policy_dir.display().to_string())])?;
    let set = PolicySet::from_sources(&files).map_err(|e| {
        e.errors()
            .into_iter()
            .map(|e| from_error(e, "-"))
            .collect::<Vec<_>>()
    })?;
    let findings = lint(&set);
    if findings.iter().any(Finding::is_error) {
        return Err(findings);
    }
    Ok((set, findings))
}

/// Loads `policy_dir` for serving: a set whose lint finds an error (an S4 field without consent or exception, the
/// PGN to a wijkteam, a flow without a cited article, …) is refused like one that does not parse, so the gateway
/// never serves, at start or reload, a set that `policy check` fails.
pub fn load_for_serving(policy_dir: &Path) -> Result<PolicySet, PolicyError> {
    let set = PolicySet::load_dir(policy_dir)?;
    let errors: Vec<PolicyError> = lint(&set)
        .into_iter()
        .filter(Finding::is_error)
        .map(|f| match f.line {
            Some(line) => PolicyError::At {
                file: f.file,
                line,
                message: f.message,
            },
            None => PolicyError::File {
                file: f.file,
                message: f.message,
            },
        })
        .collect();
    match errors.len() {
        0 => Ok(set),
        1 => Err(errors.into_iter().next().expect("one error")),
        _ => Err(PolicyError::Several(errors)),
    }
}

/// Checks a set given as (file name, text) pairs.
pub fn check_sources(files: &[(String, String)]) -> Vec<Finding> {
    match PolicySet::from_sources(files) {
        Ok(set) => lint(&set),
        Err(e) => e.errors().into_iter().map(|e| from_error(e, "-")).collect(),
    }
}

/// Lints a loaded set.
pub fn lint(set: &PolicySet) -> Vec<Finding> {
    let mut out = Vec::new();
    for flow in set.flows() {
        lint_flow(set, flow, &mut out);
    }
    for cat in set.catalogues() {
        let mut unnamed: Vec<&str> = Vec::new();
        for f in &cat.fields {
            if super::category_name(&f.category).is_none()
                && !unnamed.contains(&f.category.as_str())
            {
                unnamed.push(&f.category);
            }
        }
        for code in unnamed {
            out.push(Finding {
                file: cat.file.clone(),
                line: Some(cat.line),
                severity: Severity::Warning,
                message: format!(
                    "message type `{}`: category `{code}` is not one of DOMAIN.md; explain, the console and the \
                     art. 15 report show it without a Dutch name",
                    cat.message_type
                ),
            });
        }
        if !set.flows().any(|f| f.message_type == cat.message_type) {
            out.push(Finding {
                file: cat.file.clone(),
                line: Some(cat.line),
                severity: Severity::Warning,
                message: format!("message type `{}` is used by no flow", cat.message_type),
            });
        }
    }
    out.sort_by(|a, b| (&a.file, a.line, a.severity).cmp(&(&b.file, b.line, b.severity)));
    out
}

fn lint_flow(set: &PolicySet, flow: &Flow, out: &mut Vec<Finding>) {
    let Some(cat) = set.catalogue(&flow.message_type) else {
        return;
    };
    for rule in &flow.rules {
        let matched: Vec<_> = cat
            .fields
            .iter()
            .filter(|f| rule.pattern.matches(&f.path))
            .collect();
        if matched.is_empty() {
            out.push(Finding::at(
                flow,
                rule.line,
                Severity::Error,
                format!(
                    "flow {}: rule `{}` matches no field of `{}` (unknown path or dead rule)",
                    flow.id, rule.pattern_text, flow.message_type
                ),
            ));
            continue;
        }
        let deciding: Vec<_> = matched
            .iter()
            .filter(|f| {
                flow.rule_for(&f.path)
                    .is_some_and(|r| std::ptr::eq(r, rule))
            })
            .collect();
        if deciding.is_empty() {
            out.push(Finding::at(
                flow,
                rule.line,
                Severity::Warning,
                format!(
                    "flow {}: rule `{}` is shadowed by more specific rules for every field it matches (dead rule)",
                    flow.id, rule.pattern_text
                ),
            ));
        }
        if let RuleAction::Generalise { method, .. } = &rule.action {
            for f in &deciding {
                if f.kind != Some(method.kind()) {
                    out.push(Finding::at(
                        flow,
                        rule.line,
                        Severity::Error,
                        format!(
                            "flow {}: `{}` cannot be generalised with {}: that needs a field of kind {}",
                            flow.id,
                            f.path,
                            method.name(),
                            method.kind().as_str()
                        ),
                    ));
                }
            }
        }
    }
    for field in &cat.fields {
        let Some(rule) = flow.rule_for(&field.path) else {
            continue;
        };
        let without_consent = !flow.consent && !rule.action.needs_consent();
        if field.class.is_special()
            && rule.action.delivers()
            && without_consent
            && flow.legal_basis.special.is_none()
        {
            out.push(Finding::at(
                flow,
                rule.line,
                Severity::Error,
                format!(
                    "flow {}: `{}` ({}) is delivered without consent and the flow cites no art. 9/10 exception (legal_basis.special)",
                    flow.id,
                    field.path,
                    field.class.as_str()
                ),
            ));
        }
    }
    if flow.aggregate.is_none()
        && !cat
            .fields
            .iter()
            .any(|f| flow.rule_for(&f.path).is_some_and(|r| r.action.delivers()))
    {
        out.push(Finding::at(
            flow,
            flow.line,
            Severity::Warning,
            format!("flow {} delivers no field at all", flow.id),
        ));
    }
    if flow.consent && flow.legal_basis.ground != "6.1.a" {
        out.push(Finding::at(
            flow,
            flow.line,
            Severity::Warning,
            format!(
                "flow {} rests on consent but cites AVG {} instead of 6.1.a",
                flow.id, flow.legal_basis.ground
            ),
        ));
    }
    // DOMAIN.md: consent given to a party that can enforce leerplicht is hardly free; it is never the basis of a
    // disclosure to leerplicht (P13's leerplicht part rests on the Leerplichtwet).
    let leans_on_consent = flow.consent
        || flow.rules.iter().any(|r| {
            r.action.needs_consent()
                || r.condition
                    .as_ref()
                    .is_some_and(|c| c.otherwise.needs_consent())
        });
    if flow.receivers.contains(&Role::Leerplicht) && leans_on_consent {
        out.push(Finding::at(
            flow,
            flow.line,
            Severity::Error,
            format!(
                "flow {} to leerplicht rests on consent for some field: consent given to a party that can enforce \
                 leerplicht is not free (DOMAIN.md); deliver under the Leerplichtwet or not at all",
                flow.id
            ),
        ));
    }
    if flow.subject == SubjectDelivery::AsIs {
        // UAVG art. 46 (DOMAIN.md "Identifiers"): no law lets the PGN go between a school and a wijkteam or jgz, in
        // either direction, nor from a school to Veilig Thuis; a cited `subject_basis` does not change that.
        let youth_care = [Role::Wijkteam, Role::Jgz];
        let to = flow.receivers.iter().find(|r| youth_care.contains(r));
        let from = flow.senders.iter().find(|r| youth_care.contains(r));
        let school_to_vt = flow.senders.iter().any(|r| r.is_school())
            && flow.receivers.contains(&Role::VeiligThuis);
        let what = match (to, from) {
            (Some(r), _) => Some(format!("to a {r}")),
            (None, Some(r)) => Some(format!("from a {r}")),
            (None, None) if school_to_vt => Some("from a school to Veilig Thuis".to_owned()),
            (None, None) => None,
        };
        if let Some(what) = what {
            out.push(Finding::at(
                flow,
                flow.line,
                Severity::Error,
                format!(
                    "flow {} delivers the PGN as is {what}; no law allows that (UAVG art. 46, WPO 178a): use subject = \"none\" or \"pseudonymise\"",
                    flow.id
                ),
            ));
        }
    }
    if let Some(answers) = &flow.answers {
        if !set.flows().any(|f| super::is_flow_of(&f.id, answers)) {
            // It loads (a reply to a flow that is not there is refused: its reference never matches), but it is
            // a mistake.
            out.push(Finding::at(
                flow,
                flow.line,
                Severity::Error,
                format!(
                    "flow {}: `answers` names flow {answers}, which does not exist",
                    flow.id
                ),
            ));
        }
    }
    if flow.processing_activity_id.is_none() {
        out.push(Finding::at(
            flow,
            flow.line,
            Severity::Error,
            format!(
                "flow {}: no processing_activity_id: name the flow's entry in the register of processing activities as a versioned URI (the Logboek Dataverwerkingen records it)",
                flow.id
            ),
        ));
    }
    // A privacy officer checks a flow against the law it cites: each citation must name an article.
    let citations = [
        (
            "legal_basis.article",
            Some(flow.legal_basis.article.as_str()),
        ),
        ("legal_basis.special", flow.legal_basis.special.as_deref()),
        ("subject_basis", flow.subject_basis.as_deref()),
    ];
    for (key, text) in citations {
        if text.is_some_and(|t| !cites_article(t)) {
            out.push(Finding::at(
                flow,
                flow.line,
                Severity::Error,
                format!(
                    "flow {}: `{key}` cites no article: name the article and the law as they read today (`WPO art. 42`, \
                     `Leerplichtwet 1969 art. 21a`)",
                    flow.id
                ),
            ));
        }
    }
    if let Some(a) = &flow.aggregate {
        if !a.secondary_suppression {
            out.push(Finding::at(
                flow,
                flow.line,
                Severity::Warning,
                format!(
                    "flow {}: without secondary suppression a small cell can be recomputed from totals",
                    flow.id
                ),
            ));
        }
    }
}

/// Whether `text` names an article: `art.` or `artikel` followed by its number (`art. 42`, `artikel 7.3.11`).
pub(super) fn cites_article(text: &str) -> bool {
    let lower = text.to_lowercase();
    ["art.", "artikel"].iter().any(|word| {
        lower.match_indices(word).any(|(at, w)| {
            let before_ok = lower[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_alphanumeric());
            before_ok
                && lower[at + w.len()..]
                    .trim_start()
                    .starts_with(|c: char| c.is_ascii_digit())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOGUE: &str = r#"
[[message]]
type = "rapport"
fields = [
  { path = "leerling.naam", label = "leerling.naam", category = "ADM", class = "S1" },
  { path = "leerling.geboortedatum", label = "leerling.geboortedatum", category = "ADM", class = "S1", kind = "date" },
  { path = "diagnoses[].categorie", label = "diagnoses[].categorie", category = "DIAG", class = "S4" },
]

[[message]]
type = "ongebruikt"
fields = [ { path = "x", label = "x", category = "ADM", class = "S1" } ]
"#;

    fn flow(fields: &str, special: &str) -> String {
        format!(
            r#"[flow]
id = "T1"
name = "test"
from = ["school-po"]
to = ["school-vo"]
purpose = "test"
message = "rapport"
justification = "optional"
subject = "none"
fields = [
{fields}
]
processing_activity_id = "urn:nl:ketenpoort:verwerkingsactiviteit:test:v1"

[flow.legal_basis]
ground = "6.1.c"
article = "WPO art. 42"
{special}

[flow.retention]
gateway_days = 30
receiver_text = "30 dagen"
"#
        )
    }

    fn run(flow: &str) -> Vec<Finding> {
        check_sources(&[
            ("catalogue.toml".into(), CATALOGUE.into()),
            ("t1.toml".into(), flow.into()),
        ])
    }

    #[test]
    fn a_clean_flow_has_only_the_unused_catalogue_warning() {
        let f = run(&flow(r#"{ path = "leerling.*", action = "allow" },"#, ""));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].severity, Severity::Warning);
        assert!(f[0].message.contains("ongebruikt"));
    }

    #[test]
    fn unknown_paths_and_shadowed_rules_are_found() {
        let f = run(&flow(
            r#"{ path = "leerling.achternaam", action = "allow" },
{ path = "leerling.*", action = "allow" },
{ path = "leerling.naam", action = "allow" },
{ path = "leerling.geboortedatum", action = "allow" },"#,
            "",
        ));
        let unknown = f
            .iter()
            .find(|x| x.message.contains("leerling.achternaam"))
            .unwrap();
        assert!(unknown.is_error());
        assert_eq!(unknown.line, Some(11));
        let shadowed = f.iter().find(|x| x.message.contains("shadowed")).unwrap();
        assert_eq!(shadowed.severity, Severity::Warning);
        assert_eq!(shadowed.line, Some(12));
        assert!(shadowed.to_string().starts_with("warning: t1.toml:12:"));
    }

    #[test]
    fn special_fields_need_consent_or_a_cited_exception() {
        let rules = r#"{ path = "diagnoses[].*", action = "allow" },"#;
        let f = run(&flow(rules, ""));
        assert!(
            f.iter().any(|x| x.is_error() && x.message.contains("S4")),
            "{f:?}"
        );
        let f = run(&flow(rules, r#"special = "UAVG art. 30 lid 3""#));
        assert!(!f.iter().any(|x| x.is_error()), "{f:?}");
        let f = run(&flow(
            r#"{ path = "diagnoses[].*", action = "consent" },"#,
            "",
        ));
        assert!(!f.iter().any(|x| x.is_error()), "{f:?}");
    }

    #[test]
    fn generalise_methods_must_fit_the_field() {
        let f = run(&flow(
            r#"{ path = "leerling.*", action = "generalise", method = "date-year" },"#,
            "",
        ));
        let bad: Vec<_> = f.iter().filter(|x| x.is_error()).collect();
        assert_eq!(bad.len(), 1, "{f:?}");
        assert!(bad[0].message.contains("leerling.naam"));
    }

    #[test]
    fn a_flow_without_a_processing_activity_id_does_not_pass() {
        let without = flow(r#"{ path = "leerling.*", action = "allow" },"#, "").replace(
            "processing_activity_id = \"urn:nl:ketenpoort:verwerkingsactiviteit:test:v1\"\n",
            "",
        );
        let f = run(&without);
        assert!(
            f.iter()
                .any(|x| x.is_error() && x.message.contains("no processing_activity_id")),
            "{f:?}"
        );
        let unversioned = flow(r#"{ path = "leerling.*", action = "allow" },"#, "").replace(
            "verwerkingsactiviteit:test:v1",
            "verwerkingsactiviteit:test",
        );
        let f = run(&unversioned);
        assert!(
            f.iter()
                .any(|x| x.is_error() && x.message.contains("versioned URI")),
            "{f:?}"
        );
    }

    #[test]
    fn a_flow_without_a_cited_article_does_not_pass() {
        let uncited = flow(r#"{ path = "leerling.*", action = "allow" },"#, "").replace(
            r#"article = "WPO art. 42""#,
            r#"article = "Convenant thuiszitters""#,
        );
        let f = run(&uncited);
        let e = f.iter().find(|x| x.is_error()).expect("an error");
        assert!(
            e.message.contains("`legal_basis.article` cites no article"),
            "{e}"
        );
        let f = run(&flow(
            r#"{ path = "diagnoses[].*", action = "allow" },"#,
            r#"special = "de uitzondering voor scholen""#,
        ));
        assert!(
            f.iter()
                .any(|x| x.is_error()
                    && x.message.contains("`legal_basis.special` cites no article")),
            "{f:?}"
        );
    }

    #[test]
    fn consent_is_never_the_basis_of_a_disclosure_to_leerplicht() {
        let to_leerplicht = |fields: &str| {
            flow(fields, "").replace(r#"to = ["school-vo"]"#, r#"to = ["leerplicht"]"#)
        };
        let says = "to leerplicht rests on consent";
        let clean = run(&to_leerplicht(
            r#"{ path = "leerling.*", action = "allow" },"#,
        ));
        assert!(!clean.iter().any(|x| x.message.contains(says)), "{clean:?}");
        for fields in [
            r#"{ path = "leerling.*", action = "consent" },"#,
            r#"{ path = "leerling.naam", action = "allow", when = { field = "leerling.naam", one_of = ["x"] }, otherwise = "consent" },"#,
        ] {
            let f = run(&to_leerplicht(fields));
            assert!(
                f.iter().any(|x| x.is_error() && x.message.contains(says)),
                "{fields}: {f:?}"
            );
            // The same rule towards another receiver is no such error.
            let f = run(&flow(fields, ""));
            assert!(!f.iter().any(|x| x.message.contains(says)), "{f:?}");
        }
        let whole = to_leerplicht(r#"{ path = "leerling.*", action = "allow" },"#)
            .replace(r#"subject = "none""#, "subject = \"none\"\nconsent = true");
        assert!(run(&whole)
            .iter()
            .any(|x| x.is_error() && x.message.contains(says)));
    }

    #[test]
    fn a_citation_names_an_article() {
        for yes in [
            "WPO art. 42",
            "Jeugdwet art. 7.3.11",
            "Leerplichtwet 1969 artikel 21a",
            "UAVG Art.30 lid 2",
        ] {
            assert!(cites_article(yes), "{yes}");
        }
        for no in [
            "",
            "Convenant thuiszitters",
            "de wet",
            "WPO art. ",
            "Stb. 2012, 234",
            "part. 5",
            "artikelen",
        ] {
            assert!(!cites_article(no), "{no}");
        }
    }

    #[test]
    fn load_errors_become_findings_with_file_and_line() {
        let f = check_sources(&[("catalogue.toml".into(), "[[message]]\ntype = 1\n".into())]);
        assert_eq!(f.len(), 1);
        assert!(f[0].is_error());
        assert_eq!(f[0].file, "catalogue.toml");
        assert_eq!(f[0].line, Some(2));
    }

    #[test]
    fn a_field_without_a_label_is_an_error_and_an_unknown_category_a_warning() {
        let f = run(&flow(r#"{ path = "leerling.*", action = "allow" },"#, ""));
        assert!(!f.iter().any(|x| x.is_error()), "{f:?}");
        for (without, says) in [
            (
                r#"{ path = "x", category = "ADM", class = "S1" }"#,
                "missing field `label`",
            ),
            (
                r#"{ path = "x", label = "  ", category = "ADM", class = "S1" }"#,
                "`label` says in Dutch words",
            ),
        ] {
            let catalogue = CATALOGUE.replace(
                r#"{ path = "x", label = "x", category = "ADM", class = "S1" }"#,
                without,
            );
            assert_ne!(catalogue, CATALOGUE);
            let f = check_sources(&[("catalogue.toml".into(), catalogue)]);
            let e = f
                .iter()
                .find(|x| x.is_error())
                .unwrap_or_else(|| panic!("{without}: {f:?}"));
            assert_eq!(e.file, "catalogue.toml", "{e}");
            assert_eq!(e.line, Some(12), "{e}");
            assert!(e.message.contains(says), "{e}");
        }
        let catalogue = CATALOGUE.replace(
            r#"category = "ADM", class = "S1" } ]"#,
            r#"category = "XYZ", class = "S1" } ]"#,
        );
        assert_ne!(catalogue, CATALOGUE);
        let f = check_sources(&[("catalogue.toml".into(), catalogue)]);
        assert!(!f.iter().any(|x| x.is_error()), "{f:?}");
        assert!(
            f.iter().any(|x| x.severity == Severity::Warning
                && x.message.contains("category `XYZ` is not one of DOMAIN.md")),
            "{f:?}"
        );
    }

    #[test]
    fn a_flow_delivering_the_pgn_to_or_from_a_wijkteam_or_jgz_is_an_error() {
        let as_is = |from: &str, to: &str| {
            flow(r#"{ path = "leerling.*", action = "allow" },"#, "")
                .replace(
                    "subject = \"none\"",
                    "subject = \"as-is\"\nsubject_basis = \"Wabb art. 10\"",
                )
                .replace(r#"from = ["school-po"]"#, &format!("from = [\"{from}\"]"))
                .replace(r#"to = ["school-vo"]"#, &format!("to = [\"{to}\"]"))
        };
        let errors = |from, to| -> Vec<Finding> {
            run(&as_is(from, to))
                .into_iter()
                .filter(|f| f.is_error())
                .collect()
        };
        for (from, to) in [
            ("school-po", "wijkteam"),
            ("wijkteam", "school-po"),
            ("school-vo", "jgz"),
            ("jgz", "school-vo"),
            ("school-po", "veilig-thuis"),
        ] {
            let e = errors(from, to);
            assert_eq!(e.len(), 1, "{from} → {to}: {e:?}");
            assert!(e[0].message.contains("UAVG art. 46"), "{e:?}");
        }
        assert!(errors("school-po", "school-vo").is_empty());
    }

    #[test]
    fn the_shipped_policies_have_no_findings() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let f: Vec<String> = check(&dir).iter().map(|x| x.to_string()).collect();
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let f = check(Path::new("/nonexistent/policies"));
        assert_eq!(f.len(), 1);
        assert!(f[0].is_error());
    }
}
