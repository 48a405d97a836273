//! Loading policy files: TOML → checked `PolicySet`, with errors that name the file and line.
//!
//! A set is accepted whole or not at all: any error in any file rejects the set, so a bad edit can
//! never replace a good set at reload. The only I/O of the policy stage is `load_dir` reading files.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use ring::digest;

use super::model::{
    self, ActionName, JustificationDef, MethodName, OnHitDef, OtherwiseName, PolicyFile,
};
use super::path::{valid_catalogue_path, valid_key, Pattern};
use super::{
    screen, AggregateRules, Agreement, CatalogueField, Condition, Dimension, FieldRule, FieldTable,
    Flow, GeneraliseMethod, LegalBasis, MessageCatalogue, PathTree, PolicySet, ReceiverBinding,
    ReceiverRetention, RequiredField, RequiredWhen, Retention, RuleAction, ScreenList,
    SubjectDelivery, TableField, ValueKind, MAX_GATEWAY_DAYS,
};

/// A catalogue field an anonymous flow may never deliver: a name, address or contact (`ADM`), a pupil number (`PGN`),
/// an attachment (`ATT`), any field of class S1 or S1X, and school data (`SCH`) without a closed list (a BRIN or
/// vestiging identifies the school; a leerjaar from a closed list does not).
pub(super) fn identifying(f: &CatalogueField) -> bool {
    matches!(f.category.as_str(), "ADM" | "PGN" | "ATT")
        || matches!(f.class, super::Class::S1 | super::Class::S1X)
        || (f.category == "SCH" && f.values.is_none())
}

/// AVG art. 6 lid 1 grounds a flow may cite.
pub(super) const GROUNDS: [&str; 6] = ["6.1.a", "6.1.b", "6.1.c", "6.1.d", "6.1.e", "6.1.f"];

/// Why a policy set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}:{line}: {message}")]
    At {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no policy files (*.toml) in {dir}")]
    Empty { dir: String },
    #[error("{}", Several(.0))]
    Several(Vec<PolicyError>),
}

struct Several<'a>(&'a [PolicyError]);

impl fmt::Display for Several<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl PolicyError {
    /// The single errors, with `Several` flattened.
    pub fn errors(&self) -> Vec<&PolicyError> {
        match self {
            PolicyError::Several(v) => v.iter().flat_map(|e| e.errors()).collect(),
            e => vec![e],
        }
    }

    /// The file (and line) an error is about, when it is about one.
    pub fn location(&self) -> (Option<&str>, Option<usize>) {
        match self {
            PolicyError::At { file, line, .. } => (Some(file), Some(*line)),
            PolicyError::File { file, .. } => (Some(file), None),
            PolicyError::Io { path, .. } => (Some(path), None),
            PolicyError::Empty { .. } | PolicyError::Several(_) => (None, None),
        }
    }

    /// The error text without its location.
    pub fn message(&self) -> String {
        match self {
            PolicyError::At { message, .. } | PolicyError::File { message, .. } => message.clone(),
            e => e.to_string(),
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Reads the `*.toml` files of `dir` (not recursive), sorted by name.
pub(super) fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, PolicyError> {
    let io = |source| PolicyError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") || !path.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        files.push((name, text));
    }
    if files.is_empty() {
        return Err(PolicyError::Empty {
            dir: dir.display().to_string(),
        });
    }
    files.sort();
    Ok(files)
}

/// Hex SHA-256 over the (name, text) pairs sorted by name, each part length-prefixed
/// (8-byte big-endian byte length) so no two different sets hash alike.
pub(super) fn hash_sources(files: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = files.iter().collect();
    sorted.sort();
    let mut ctx = digest::Context::new(&digest::SHA256);
    for (name, text) in sorted {
        for part in [name.as_bytes(), text.as_bytes()] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
    }
    hex::encode(ctx.finish())
}

pub(super) fn parse_file(name: &str, text: &str) -> Result<PolicyFile, PolicyError> {
    toml::from_str::<PolicyFile>(text).map_err(|e| match e.span() {
        Some(span) => PolicyError::At {
            file: name.to_owned(),
            line: line_of(text, span.start),
            message: e.message().trim().to_owned(),
        },
        None => PolicyError::File {
            file: name.to_owned(),
            message: e.message().trim().to_owned(),
        },
    })
}

impl PolicySet {
    /// Loads every `*.toml` file of `dir`.
    pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
        PolicySet::from_sources(&read_dir(dir)?)
    }

    /// Loads a set from (file name, text) pairs.
    pub fn from_sources(files: &[(String, String)]) -> Result<PolicySet, PolicyError> {
        let mut sorted: Vec<(String, String)> = files.to_vec();
        sorted.sort();
        let mut errors = Vec::new();
        let mut parsed = Vec::new();
        for (name, text) in &sorted {
            match parse_file(name, text) {
                Ok(p) => parsed.push((name.as_str(), text.as_str(), p)),
                Err(e) => errors.push(e),
            }
        }
        let mut b = Builder {
            errors,
            catalogues: BTreeMap::new(),
            flows: Vec::new(),
        };
        for (name, text, file) in &parsed {
            for m in &file.message {
                b.catalogue(name, text, m);
            }
        }
        for (name, text, file) in &parsed {
            if let Some(f) = &file.flow {
                b.flow(name, text, f);
            }
        }
        b.cross_checks();
        match b.errors.len() {
            0 => Ok(PolicySet {
                flows: b.flows,
                catalogues: b.catalogues,
                files: sorted.iter().map(|(n, _)| n.clone()).collect(),
                hash: hash_sources(&sorted),
            }),
            1 => Err(b.errors.remove(0)),
            _ => Err(PolicyError::Several(b.errors)),
        }
    }
}

struct Builder {
    errors: Vec<PolicyError>,
    catalogues: BTreeMap<String, MessageCatalogue>,
    flows: Vec<Flow>,
}

/// Where in which file, for errors.
#[derive(Clone, Copy)]
struct Here<'a> {
    file: &'a str,
    text: &'a str,
}

impl Here<'_> {
    fn at(&self, offset: usize, message: impl Into<String>) -> PolicyError {
        PolicyError::At {
            file: self.file.to_owned(),
            line: line_of(self.text, offset),
            message: message.into(),
        }
    }
}

fn names_of(path: &str) -> Vec<&str> {
    path.split('.')
        .map(|s| s.strip_suffix("[]").unwrap_or(s))
        .collect()
}

fn date_of(d: &toml::Spanned<toml::value::Datetime>) -> Option<time::Date> {
    let dt = d.get_ref();
    if dt.time.is_some() || dt.offset.is_some() {
        return None;
    }
    let date = dt.date?;
    let month = time::Month::try_from(date.month).ok()?;
    time::Date::from_calendar_date(i32::from(date.year), month, date.day).ok()
}

fn json_of(v: &toml::Value) -> Option<serde_json::Value> {
    match v {
        toml::Value::String(s) => Some(serde_json::Value::String(s.clone())),
        toml::Value::Integer(i) => Some(serde_json::Value::from(*i)),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map(serde_json::Value::Number),
        toml::Value::Boolean(b) => Some(serde_json::Value::Bool(*b)),
        _ => None,
    }
}

impl Builder {
    fn catalogue(&mut self, file: &str, text: &str, m: &toml::Spanned<model::MessageDef>) {
        let here = Here { file, text };
        let start = m.span().start;
        let def = m.get_ref();
        let before = self.errors.len();
        if !valid_name(&def.message_type) {
            self.errors.push(here.at(
                start,
                "a message type is a lowercase name like `onderwijskundig-rapport`",
            ));
        }
        if let Some(prev) = self.catalogues.get(&def.message_type) {
            self.errors.push(here.at(
                start,
                format!(
                    "message type `{}` already has a catalogue in {}",
                    def.message_type, prev.file
                ),
            ));
        }
        let mut fields: Vec<CatalogueField> = Vec::new();
        for f in &def.fields {
            let at = f.span().start;
            let fd = f.get_ref();
            if !valid_catalogue_path(&fd.path) {
                self.errors.push(here.at(
                    at,
                    format!(
                        "`{}` is not a catalogue path (lowercase names joined by `.`, `[]` after an array)",
                        fd.path
                    ),
                ));
                continue;
            }
            if fd.label.trim().is_empty() {
                self.errors.push(here.at(
                    at,
                    format!(
                        "field `{}`: `label` says in Dutch words what the field is (`Achternaam leerling`)",
                        fd.path
                    ),
                ));
            }
            if fd.category.is_empty() || !fd.category.bytes().all(|b| b.is_ascii_uppercase()) {
                self.errors.push(here.at(
                    at,
                    format!(
                        "field `{}`: a category is a code in capitals like `ADM`",
                        fd.path
                    ),
                ));
            }
            if fd.date.is_some() && fd.kind != Some(ValueKind::Date) {
                self.errors.push(here.at(
                    at,
                    format!(
                        "field `{}`: `date` (which dates are plausible) needs `kind = \"date\"`",
                        fd.path
                    ),
                ));
            }
            if fd.values.as_ref().is_some_and(|v| v.is_empty()) {
                self.errors.push(here.at(
                    at,
                    format!(
                        "field `{}`: a closed list needs at least one value",
                        fd.path
                    ),
                ));
            }
            let names = names_of(&fd.path);
            if let Some(other) = fields.iter().find(|o| {
                let on = names_of(&o.path);
                let n = on.len().min(names.len());
                on[..n] == names[..n]
            }) {
                let message = if other.path == fd.path {
                    format!("field `{}` is listed twice", fd.path)
                } else {
                    format!(
                        "fields `{}` and `{}` conflict: one cannot be both a value and a group",
                        other.path, fd.path
                    )
                };
                self.errors.push(here.at(at, message));
                continue;
            }
            fields.push(CatalogueField {
                path: fd.path.clone(),
                label: fd.label.trim().to_owned(),
                category: fd.category.clone(),
                class: fd.class,
                kind: fd.kind,
                date: fd.date,
                values: fd.values.clone(),
                note: fd.note.clone(),
            });
        }
        if fields.is_empty() && self.errors.len() == before {
            self.errors.push(here.at(
                start,
                format!("message type `{}` has no fields", def.message_type),
            ));
        }
        if def.aggregate {
            for p in [
                "periode",
                "dimensies[]",
                "cellen[].categorie",
                "cellen[].aantal",
            ] {
                if !fields.iter().any(|f| f.path == p) {
                    self.errors.push(here.at(
                        start,
                        format!(
                            "aggregate message type `{}` lacks field `{p}`",
                            def.message_type
                        ),
                    ));
                }
            }
        }
        if self.errors.len() > before {
            return;
        }
        self.catalogues.insert(
            def.message_type.clone(),
            MessageCatalogue {
                message_type: def.message_type.clone(),
                aggregate: def.aggregate,
                description: def.description.clone(),
                file: file.to_owned(),
                line: line_of(text, start),
                tree: PathTree::build(&fields),
                by_path: fields
                    .iter()
                    .enumerate()
                    .map(|(i, f)| (f.path.clone(), i))
                    .collect(),
                fields,
            },
        );
    }

    fn flow(&mut self, file: &str, text: &str, f: &toml::Spanned<model::FlowDef>) {
        let here = Here { file, text };
        let start = f.span().start;
        let d = f.get_ref();
        let before = self.errors.len();
        let mut err = |at: usize, m: String| self.errors.push(here.at(at, m));

        if d.id.trim().is_empty() || d.name.trim().is_empty() {
            err(start, "a flow needs an `id` and a `name`".into());
        }
        if d.from.is_empty() || d.to.is_empty() {
            err(
                start,
                format!("flow {}: `from` and `to` each need at least one role", d.id),
            );
        }
        if !valid_name(&d.purpose) {
            err(
                start,
                format!(
                    "flow {}: `purpose` is a lowercase name like `overstap-po-vo`",
                    d.id
                ),
            );
        }
        if !GROUNDS.contains(&d.legal_basis.ground.as_str()) {
            err(
                start,
                format!(
                    "flow {}: legal_basis.ground must be one of {} (AVG art. 6 lid 1)",
                    d.id,
                    GROUNDS.join(", ")
                ),
            );
        }
        if d.legal_basis.article.trim().is_empty() {
            err(
                start,
                format!(
                    "flow {}: legal_basis.article must cite the Dutch article",
                    d.id
                ),
            );
        }
        let retention_at = d.retention.span().start;
        let r = d.retention.get_ref();
        if !(1..=MAX_GATEWAY_DAYS).contains(&r.gateway_days) {
            err(
                retention_at,
                format!(
                    "flow {}: retention.gateway_days is how long the gateway keeps a payload nobody fetched: \
                     1 to {MAX_GATEWAY_DAYS} days (the gateway is a transport, not an archive)",
                    d.id
                ),
            );
        }
        if r.receiver_text.trim().is_empty() {
            err(
                retention_at,
                format!(
                    "flow {}: retention.receiver_text must say how long the receiver keeps what it received",
                    d.id
                ),
            );
        }
        match r.receiver_days {
            Some(0) => err(
                retention_at,
                format!(
                    "flow {}: retention.receiver_days is at least 1 (leave it out when the period is no number of days)",
                    d.id
                ),
            ),
            Some(days) if days < r.gateway_days => err(
                retention_at,
                format!(
                    "flow {}: retention.gateway_days ({}) is longer than receiver_days ({days}): the gateway would keep \
                     a payload longer than the receiver may",
                    d.id, r.gateway_days
                ),
            ),
            _ => {}
        }
        if d.processing_activity_id
            .as_deref()
            .is_some_and(|id| !versioned_uri(id))
        {
            err(
                start,
                format!(
                    "flow {}: processing_activity_id must be a versioned URI into the register of processing activities, ending in a version such as `v1` (e.g. `urn:nl:ketenpoort:verwerkingsactiviteit:p1:v1`)",
                    d.id
                ),
            );
        }
        if d.subject == SubjectDelivery::AsIs
            && d.subject_basis
                .as_deref()
                .is_none_or(|s| s.trim().is_empty())
        {
            err(
                start,
                format!(
                    "flow {}: subject = \"as-is\" needs `subject_basis`, the article that allows the PGN/BSN here (UAVG art. 46)",
                    d.id
                ),
            );
        }
        let catalogue = self.catalogues.get(&d.message);
        let catalogue = match catalogue {
            Some(c) => Some(c.clone()),
            None => {
                self.errors.push(here.at(
                    start,
                    format!(
                        "flow {}: message type `{}` has no catalogue",
                        d.id, d.message
                    ),
                ));
                None
            }
        };
        let mut err = |at: usize, m: String| self.errors.push(here.at(at, m));

        let agreement = d.agreement.as_ref().and_then(|a| {
            let from = date_of(&a.valid_from);
            let until = date_of(&a.valid_until);
            if from.is_none() {
                err(
                    a.valid_from.span().start,
                    "valid_from must be a plain date like 2026-01-01".into(),
                );
            }
            if until.is_none() {
                err(
                    a.valid_until.span().start,
                    "valid_until must be a plain date like 2027-12-31".into(),
                );
            }
            if a.id.trim().is_empty() || a.signatories.is_empty() {
                err(
                    start,
                    format!(
                        "flow {}: an agreement needs an `id` and `signatories`",
                        d.id
                    ),
                );
            }
            let (from, until) = (from?, until?);
            if from > until {
                err(
                    a.valid_from.span().start,
                    "valid_from is after valid_until".into(),
                );
            }
            Some(Agreement {
                id: a.id.clone(),
                signatories: a.signatories.clone(),
                valid_from: from,
                valid_until: until,
                description: a.description.clone(),
            })
        });

        let mut rules: Vec<FieldRule> = Vec::new();
        for r in &d.fields {
            let at = r.span().start;
            let rd = r.get_ref();
            let Some(pattern) = Pattern::parse(&rd.path) else {
                err(
                    at,
                    format!(
                        "`{}` is not a field path or pattern (write `a.b`, `a[].b`, `a.*`, `a[].*` or `*`)",
                        rd.path
                    ),
                );
                continue;
            };
            if rules.iter().any(|o| o.pattern == pattern) {
                err(at, format!("`{}` has two rules in this flow", rd.path));
                continue;
            }
            let otherwise_deny = rd.otherwise == Some(OtherwiseName::Deny);
            if rd.reason.is_some() && rd.action != ActionName::Deny && !otherwise_deny {
                err(
                    at,
                    format!(
                        "`{}`: `reason` belongs to `deny` (or `otherwise = \"deny\"`) only",
                        rd.path
                    ),
                );
            }
            if rd.method.is_some() && rd.action != ActionName::Generalise {
                err(
                    at,
                    format!("`{}`: `method` belongs to `generalise` only", rd.path),
                );
            }
            if rd.band.is_some() && rd.method != Some(MethodName::NumberBand) {
                err(
                    at,
                    format!("`{}`: `band` belongs to method `number-band` only", rd.path),
                );
            }
            if rd.consent.is_some()
                && !matches!(rd.action, ActionName::Generalise | ActionName::Pseudonymise)
            {
                err(
                    at,
                    format!(
                        "`{}`: `consent = true` is for generalise/pseudonymise; use action \"consent\" instead",
                        rd.path
                    ),
                );
            }
            let consent = rd.consent.unwrap_or(false);
            let action = match rd.action {
                ActionName::Allow => RuleAction::Allow,
                ActionName::Consent => RuleAction::Consent,
                ActionName::Pseudonymise => RuleAction::Pseudonymise { consent },
                ActionName::Deny => match rd.reason.as_deref().map(str::trim) {
                    Some(reason) if !reason.is_empty() => RuleAction::Deny {
                        reason: reason.to_owned(),
                    },
                    _ => {
                        err(
                            at,
                            format!(
                                "`{}`: `deny` needs a `reason` (shown to the sender)",
                                rd.path
                            ),
                        );
                        continue;
                    }
                },
                ActionName::Generalise => {
                    let method = match (rd.method, rd.band) {
                        (Some(MethodName::DateYear), _) => GeneraliseMethod::DateYear,
                        (Some(MethodName::DateYearMonth), _) => GeneraliseMethod::DateYearMonth,
                        (Some(MethodName::PostcodePc4), _) => GeneraliseMethod::PostcodePc4,
                        (Some(MethodName::NumberBand), Some(b)) if b > 0 => {
                            GeneraliseMethod::NumberBand(b)
                        }
                        (Some(MethodName::NumberBand), _) => {
                            err(
                                at,
                                format!(
                                    "`{}`: method `number-band` needs `band` (at least 1)",
                                    rd.path
                                ),
                            );
                            continue;
                        }
                        (None, _) => {
                            err(
                                at,
                                format!(
                                    "`{}`: `generalise` needs a `method` (date-year, date-year-month, postcode-pc4, number-band)",
                                    rd.path
                                ),
                            );
                            continue;
                        }
                    };
                    RuleAction::Generalise { method, consent }
                }
            };
            let condition = match (&rd.when, rd.otherwise) {
                (None, None) => None,
                (Some(_), None) | (None, Some(_)) => {
                    err(
                        at,
                        format!(
                            "`{}`: `when` and `otherwise` go together: what the rule does when the condition does not hold",
                            rd.path
                        ),
                    );
                    continue;
                }
                (Some(w), Some(otherwise)) => {
                    match condition(rd, w, otherwise, &action, catalogue.as_ref()) {
                        Ok(c) => Some(c),
                        Err(m) => {
                            err(at, m);
                            continue;
                        }
                    }
                }
            };
            rules.push(FieldRule {
                pattern_text: rd.path.clone(),
                pattern,
                action,
                condition,
                note: rd.note.clone(),
                line: line_of(text, at),
            });
        }

        let mut required = Vec::new();
        for r in &d.required {
            let at = r.span().start;
            let rd = r.get_ref();
            let in_catalogue = catalogue
                .as_ref()
                .is_some_and(|c| c.field(&rd.path).is_some());
            if rd.path.contains('[') || !in_catalogue {
                err(
                    at,
                    format!(
                        "required field `{}` must be a catalogue field of `{}` outside any array",
                        rd.path, d.message
                    ),
                );
                continue;
            }
            let equals = match &rd.equals {
                None => None,
                Some(v) => match json_of(v) {
                    Some(j) => Some(j),
                    None => {
                        err(at, format!("required field `{}`: `equals` must be a text, number or true/false", rd.path));
                        continue;
                    }
                },
            };
            if equals.is_some() && rd.equals_receiver {
                err(
                    at,
                    format!(
                        "required field `{}`: use `equals` or `equals_receiver`, not both",
                        rd.path
                    ),
                );
                continue;
            }
            let when = match &rd.when {
                None => None,
                Some(w) => {
                    let known = catalogue
                        .as_ref()
                        .is_some_and(|c| c.field(&w.field).is_some());
                    let value = json_of(&w.equals).filter(|v| !v.is_null());
                    match value {
                        Some(equals) if known && !w.field.contains('[') && w.field != rd.path => {
                            Some(RequiredWhen {
                                field: w.field.clone(),
                                equals,
                            })
                        }
                        _ => {
                            err(at, format!(
                                "required field `{}`: `when` names another catalogue field of `{}` outside any array and \
                                 a text, number or true/false it must equal",
                                rd.path, d.message
                            ));
                            continue;
                        }
                    }
                }
            };
            required.push(RequiredField {
                path: rd.path.clone(),
                equals,
                equals_receiver: rd.equals_receiver,
                hint: rd.hint.clone(),
                when,
            });
        }

        let mut exactly_one = Vec::new();
        for e in &d.exactly_one {
            let at = e.span().start;
            let paths = &e.get_ref().paths;
            let known = |p: &String| {
                !p.contains('[') && catalogue.as_ref().is_some_and(|c| c.field(p).is_some())
            };
            let distinct = paths.iter().collect::<BTreeSet<_>>().len() == paths.len();
            if paths.len() < 2 || !distinct || !paths.iter().all(known) {
                err(
                    at,
                    format!(
                        "flow {}: `exactly_one` lists at least two different catalogue fields of `{}` outside any array",
                        d.id, d.message
                    ),
                );
                continue;
            }
            exactly_one.push(paths.clone());
        }

        let receiver = d.receiver.as_ref().map(|r| {
            let binding = ReceiverBinding::parse(r.get_ref());
            if let ReceiverBinding::Field(field) = &binding {
                let in_catalogue = catalogue
                    .as_ref()
                    .is_some_and(|c| c.field(field).is_some());
                if field.contains('[') || !in_catalogue {
                    err(
                        r.span().start,
                        format!(
                            "flow {}: `receiver` is one of {} or a catalogue field of `{}` outside any array that names the receiver",
                            d.id,
                            ReceiverBinding::KEYWORDS.join(", "),
                            d.message
                        ),
                    );
                }
            }
            binding
        });
        let answers = d.answers.as_ref().map(|a| a.get_ref().clone());
        match (&receiver, &d.answers) {
            (Some(b), None) if b.refers() => err(
                start,
                format!(
                    "flow {}: receiver = \"{}\" needs `answers`, the id of the flow it answers or follows",
                    d.id,
                    b.as_str()
                ),
            ),
            (Some(b), Some(_)) if b.refers() => {}
            (_, None) => {}
            (_, Some(a)) => err(
                a.span().start,
                format!(
                    "flow {}: `answers` goes with receiver = \"in-reply-to\" or \"follows\" only",
                    d.id
                ),
            ),
        }

        let mut screening = Vec::new();
        for s in &d.screening {
            let at = s.span().start;
            let sd = s.get_ref();
            let field = catalogue.as_ref().and_then(|c| c.field(&sd.field));
            match field {
                None => err(
                    at,
                    format!(
                        "screening field `{}` is not in the catalogue of `{}`",
                        sd.field, d.message
                    ),
                ),
                Some(f) if sd.field.contains('[') => err(
                    at,
                    format!("screening field `{}` must be outside any array", f.path),
                ),
                Some(_) => {}
            }
            if !valid_name(&sd.category) {
                err(
                    at,
                    "a screening `category` is a lowercase name like `politieke-opvatting`".into(),
                );
            }
            if sd.terms.is_empty() && sd.patterns.is_empty() {
                err(
                    at,
                    format!("screening list `{}` has no terms or patterns", sd.category),
                );
            }
            if d.anonymous && sd.on_hit == OnHitDef::Withhold {
                err(
                    at,
                    format!(
                        "flow {}: an anonymous flow refuses on every screening hit: no `on_hit = \"withhold\"`",
                        d.id
                    ),
                );
            }
            for t in &sd.terms {
                if screen::parse_term(t).is_none() {
                    err(
                        at,
                        format!("screening term `{t}` has no words (a `*` may only end a word)"),
                    );
                }
            }
            screening.push(ScreenList {
                field: sd.field.clone(),
                category: sd.category.clone(),
                terms: sd.terms.clone(),
                patterns: sd.patterns.clone(),
                withhold: sd.on_hit == OnHitDef::Withhold,
            });
        }

        let is_aggregate = catalogue.as_ref().is_some_and(|c| c.aggregate);
        let aggregate = match (&d.aggregate, is_aggregate) {
            (Some(a), true) => {
                let at = a.span().start;
                let ad = a.get_ref();
                let mut names = BTreeSet::new();
                for dim in &ad.dimensions {
                    if !valid_key(&dim.name) || !names.insert(dim.name.as_str()) {
                        err(
                            at,
                            format!(
                                "aggregate dimension `{}` is not a name or is listed twice",
                                dim.name
                            ),
                        );
                    }
                    let cell_path = format!("cellen[].{}", dim.name);
                    if catalogue
                        .as_ref()
                        .and_then(|c| c.field(&cell_path))
                        .is_none()
                    {
                        err(
                            at,
                            format!(
                                "aggregate dimension `{}` needs catalogue field `{cell_path}`",
                                dim.name
                            ),
                        );
                    }
                    if dim.values.as_ref().is_some_and(|v| v.is_empty()) {
                        err(
                            at,
                            format!("aggregate dimension `{}`: empty list of values", dim.name),
                        );
                    }
                }
                if ad.categories.is_empty() {
                    err(
                        at,
                        "aggregate: `categories` lists the allowed categories".into(),
                    );
                }
                if ad.max_dimensions == 0 || ad.max_dimensions > 2 {
                    err(
                        at,
                        "aggregate: max_dimensions must be 1 or 2 (at most 2 dimensions per table)"
                            .into(),
                    );
                }
                if ad.min_cell < 5 {
                    err(at, "aggregate: min_cell must be at least 5 (cells of 1–4 are always suppressed)".into());
                }
                if ad.rounding == 0 {
                    err(
                        at,
                        "aggregate: rounding must be at least 1 (use 5 for base 5)".into(),
                    );
                }
                Some(AggregateRules {
                    dimensions: ad
                        .dimensions
                        .iter()
                        .map(|x| Dimension {
                            name: x.name.clone(),
                            values: x.values.clone(),
                        })
                        .collect(),
                    categories: ad.categories.clone(),
                    max_dimensions: ad.max_dimensions,
                    min_cell: ad.min_cell,
                    rounding: ad.rounding,
                    secondary_suppression: ad.secondary_suppression,
                })
            }
            (Some(a), false) => {
                if catalogue.is_some() {
                    err(
                        a.span().start,
                        format!(
                            "flow {}: [flow.aggregate] needs an aggregate message type",
                            d.id
                        ),
                    );
                }
                None
            }
            (None, true) => {
                err(
                    start,
                    format!(
                        "flow {}: an aggregate message type needs [flow.aggregate]",
                        d.id
                    ),
                );
                None
            }
            (None, false) => None,
        };
        if is_aggregate {
            if !rules.is_empty() || !required.is_empty() || !screening.is_empty() {
                err(
                    start,
                    format!("flow {}: an aggregate flow has no `fields`, `required` or `screening`; [flow.aggregate] decides", d.id),
                );
            }
            if receiver.is_some() {
                err(
                    start,
                    format!(
                        "flow {}: an aggregate flow concerns no pupil and binds no receiver to one",
                        d.id
                    ),
                );
            }
            if d.subject != SubjectDelivery::None || d.consent {
                err(
                    start,
                    format!(
                        "flow {}: an aggregate flow has subject = \"none\" and no consent",
                        d.id
                    ),
                );
            }
        }

        if d.kerngroep && (d.anonymous || d.answers.is_some() || is_aggregate) {
            err(
                start,
                format!(
                    "flow {}: a kerngroep flow is one recipient's part of a case about one pupil: not anonymous, no \
                     reply, no aggregate",
                    d.id
                ),
            );
        }

        if d.anonymous {
            if d.subject != SubjectDelivery::None || d.answers.is_some() || is_aggregate {
                err(
                    start,
                    format!(
                        "flow {}: an anonymous flow has subject = \"none\", answers no message and is no aggregate: \
                         nothing may link it to a pupil",
                        d.id
                    ),
                );
            }
            if let Some(c) = catalogue.as_ref() {
                for f in &c.fields {
                    let rule = rules
                        .iter()
                        .filter(|r| r.pattern.matches(&f.path))
                        .max_by_key(|r| r.pattern.specificity());
                    if rule.is_some_and(|r| r.action.delivers()) && identifying(f) {
                        err(
                            start,
                            format!(
                                "flow {}: an anonymous flow may not deliver identifying field `{}` ({} {:?}): no name, \
                                 address, pupil number, school identifier or attachment",
                                d.id, f.path, f.category, f.class
                            ),
                        );
                    }
                }
            }
        }

        if self.errors.len() > before {
            return;
        }
        let legal_basis = LegalBasis {
            ground: d.legal_basis.ground.clone(),
            article: d.legal_basis.article.clone(),
            special: d.legal_basis.special.clone(),
        };
        self.flows.push(Flow {
            id: d.id.clone(),
            name: d.name.clone(),
            file: file.to_owned(),
            line: line_of(text, start),
            senders: d.from.clone(),
            receivers: d.to.clone(),
            purpose: d.purpose.clone(),
            message_type: d.message.clone(),
            processing_activity_id: d
                .processing_activity_id
                .as_deref()
                .map(|s| s.trim().to_owned()),
            description: d.description.clone(),
            legal_basis_text: legal_basis.to_string(),
            legal_basis,
            retention: Retention {
                gateway_days: d.retention.get_ref().gateway_days,
                receiver: ReceiverRetention {
                    text: d.retention.get_ref().receiver_text.trim().to_owned(),
                    days: d.retention.get_ref().receiver_days,
                },
            },
            justification_required: d.justification == JustificationDef::Required,
            consent: d.consent,
            consent_12_15_both: d.consent_12_15.is_some(),
            subject: d.subject,
            subject_basis: d.subject_basis.clone(),
            receiver,
            answers,
            agreement,
            required,
            anonymous: d.anonymous,
            kerngroep: d.kerngroep,
            exactly_one,
            field_rules: Vec::new(),
            table: Default::default(),
            rules,
            screening,
            aggregate,
        });
        let flow = self.flows.last_mut().expect("just pushed");
        if let Some(catalogue) = self.catalogues.get(&flow.message_type) {
            flow.field_rules = catalogue
                .fields
                .iter()
                .map(|f| {
                    flow.rules
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.pattern.matches(&f.path))
                        .max_by_key(|(_, r)| r.pattern.specificity())
                        .map(|(i, _)| i)
                })
                .collect();
            let fields = catalogue
                .fields
                .iter()
                .zip(&flow.field_rules)
                .map(|(f, rule)| TableField {
                    path: f.path.clone(),
                    category: f.category.clone(),
                    class: f.class,
                    denied: rule.and_then(|i| {
                        let r = &flow.rules[i];
                        match (&r.action, r.condition.as_ref().map(|c| &c.otherwise)) {
                            (RuleAction::Deny { reason }, _)
                            | (_, Some(RuleAction::Deny { reason })) => Some(reason.clone()),
                            _ => None,
                        }
                    }),
                })
                .collect();
            flow.table = std::sync::Arc::new(FieldTable { fields });
        }
    }

    fn cross_checks(&mut self) {
        for (j, b) in self.flows.iter().enumerate() {
            for a in &self.flows[..j] {
                if a.id == b.id {
                    self.errors.push(PolicyError::At {
                        file: b.file.clone(),
                        line: b.line,
                        message: format!("flow id {} is also used in {}", b.id, a.file),
                    });
                }
                let s = b.senders.iter().find(|r| a.senders.contains(r));
                let r = b.receivers.iter().find(|r| a.receivers.contains(r));
                if let (true, Some(s), Some(r)) = (a.purpose == b.purpose, s, r) {
                    self.errors.push(PolicyError::At {
                        file: b.file.clone(),
                        line: b.line,
                        message: format!(
                            "flow {} overlaps flow {} ({}): both cover {s} → {r} for purpose {}",
                            b.id, a.id, a.file, b.purpose
                        ),
                    });
                }
            }
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Checks a rule's `when` and `otherwise` and compiles them. The condition reads a text field of the catalogue:
/// the rule's own field (exactly its path, per array element) or one field outside any array; `otherwise` must be
/// stricter than the action, and a value of a closed list must be one of the catalogue's.
fn condition(
    rd: &model::RuleDef,
    w: &model::WhenDef,
    otherwise: OtherwiseName,
    action: &RuleAction,
    catalogue: Option<&MessageCatalogue>,
) -> Result<Condition, String> {
    let path = &rd.path;
    let own = w.field == rd.path;
    let Some(field) = catalogue.and_then(|c| c.field(&w.field)) else {
        return Err(format!(
            "`{path}`: `when` reads `{}`, which is not a field of the flow's catalogue",
            w.field
        ));
    };
    if w.field.contains("[]") && !own {
        return Err(format!(
            "`{path}`: `when` may read a field inside an array only in the rule for that field itself; `{}` is not `{path}`",
            w.field
        ));
    }
    if !matches!(field.kind, None | Some(ValueKind::String)) {
        return Err(format!(
            "`{path}`: `when` compares text values and `{}` is not of kind string",
            w.field
        ));
    }
    let one_of: Vec<String> = w.one_of.iter().map(|v| v.trim().to_owned()).collect();
    if one_of.is_empty() || one_of.iter().any(String::is_empty) {
        return Err(format!(
            "`{path}`: `when.one_of` needs at least one value, none empty"
        ));
    }
    if let Some(list) = &field.values {
        if let Some(v) = one_of
            .iter()
            .find(|v| !list.iter().any(|l| l.eq_ignore_ascii_case(v)))
        {
            return Err(format!(
                "`{path}`: `when.one_of` names `{v}`, which is not in the closed list of `{}`",
                w.field
            ));
        }
    }
    let otherwise = match otherwise {
        OtherwiseName::Deny => match rd.reason.as_deref().map(str::trim) {
            Some(reason) if !reason.is_empty() => RuleAction::Deny {
                reason: reason.to_owned(),
            },
            _ => {
                return Err(format!(
                    "`{path}`: `otherwise = \"deny\"` needs a `reason` (shown to the sender)"
                ))
            }
        },
        OtherwiseName::Consent => RuleAction::Consent,
    };
    let stricter = match (action, &otherwise) {
        (RuleAction::Deny { .. }, _) => false,
        (_, RuleAction::Deny { .. }) => true,
        (a, _) => !a.needs_consent(),
    };
    if !stricter {
        return Err(format!(
            "`{path}`: `otherwise` must be stricter than the action: a deny rule takes no `when`, and a rule that already \
             needs consent can only fall back to `deny`"
        ));
    }
    Ok(Condition {
        field: w.field.clone(),
        own,
        one_of,
        otherwise,
    })
}

/// An absolute URI (`scheme:rest`, no spaces) whose last `/` or `:` segment is a version: `v` and digits
/// (`v1`, `v12`, `v1.2`).
fn versioned_uri(s: &str) -> bool {
    let s = s.trim();
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let last = rest.rsplit(['/', ':']).next().unwrap_or("");
    scheme_ok
        && !rest.is_empty()
        && !s.chars().any(char::is_whitespace)
        && last.strip_prefix('v').is_some_and(|v| {
            !v.is_empty()
                && v.split('.')
                    .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
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
  { path = "toetsen[].score", label = "toetsen[].score", category = "TOETS", class = "S2" },
]
"#;

    fn flow(body: &str) -> String {
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
{body}
[flow.legal_basis]
ground = "6.1.c"
article = "WPO art. 42"

[flow.retention]
gateway_days = 30
receiver_text = "30 dagen"
"#
        )
    }

    fn load(files: &[(&str, &str)]) -> Result<PolicySet, PolicyError> {
        let v: Vec<(String, String)> = files
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        PolicySet::from_sources(&v)
    }

    #[test]
    fn a_valid_set_loads_and_hashes_independently_of_file_order() {
        let f = flow(r#"fields = [ { path = "leerling.*", action = "allow" } ]"#);
        let a = load(&[("a.toml", CATALOGUE), ("b.toml", &f)]).unwrap();
        let b = load(&[("b.toml", &f), ("a.toml", CATALOGUE)]).unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 64);
        let c = load(&[("a.toml", CATALOGUE), ("c.toml", &f)]).unwrap();
        assert_ne!(a.hash(), c.hash(), "the file name is part of the hash");
        assert_eq!(a.flows().count(), 1);
    }

    #[test]
    fn a_condition_reads_a_text_field_and_falls_back_to_something_stricter() {
        const CAT: &str = r#"
[[message]]
type = "rapport"
fields = [
  { path = "leerling.naam", label = "leerling.naam", category = "ADM", class = "S1" },
  { path = "advies.niveau", label = "advies.niveau", category = "ADV", class = "S2", kind = "string" },
  { path = "advies.soort", label = "advies.soort", category = "ADV", class = "S2", values = ["pro", "havo"] },
  { path = "toetsen[].score", label = "toetsen[].score", category = "TOETS", class = "S2", kind = "number" },
  { path = "toetsen[].naam", label = "toetsen[].naam", category = "TOETS", class = "S2", kind = "string" },
]
"#;
        let rule = |r: &str| {
            flow(&format!(
                "fields = [\n  {{ path = \"advies.*\", action = \"allow\" }},\n  {r},\n]\n"
            ))
        };
        let ok = |r: &str| load(&[("a.toml", CAT), ("p.toml", &rule(r))]);
        let fails = |r: &str, needle: &str| {
            let e = ok(r).expect_err(r).to_string();
            assert!(e.contains("p.toml:"), "{e}");
            assert!(e.contains(needle), "{r}: {e}");
        };
        let set = ok(r#"{ path = "leerling.naam", action = "allow", when = { field = "advies.niveau", one_of = [" PrO "] }, otherwise = "consent" }"#).unwrap();
        let c = set
            .flows()
            .next()
            .unwrap()
            .rule_for("leerling.naam")
            .unwrap()
            .condition
            .clone()
            .unwrap();
        assert_eq!(
            (c.field.as_str(), c.own, c.one_of.clone(), c.otherwise),
            (
                "advies.niveau",
                false,
                vec!["PrO".to_owned()],
                RuleAction::Consent
            )
        );
        let set = ok(r#"{ path = "toetsen[].naam", action = "allow", when = { field = "toetsen[].naam", one_of = ["cito"] }, otherwise = "deny", reason = "alleen de centrale toets" }"#).unwrap();
        let r = set
            .flows()
            .next()
            .unwrap()
            .rule_for("toetsen[].naam")
            .unwrap()
            .clone();
        assert!(r.condition.as_ref().unwrap().own);
        assert_eq!(
            r.condition.unwrap().otherwise,
            RuleAction::Deny {
                reason: "alleen de centrale toets".into()
            }
        );
        ok(r#"{ path = "leerling.naam", action = "consent", when = { field = "advies.soort", one_of = ["pro"] }, otherwise = "deny", reason = "x" }"#).unwrap();

        fails(
            r#"{ path = "leerling.naam", action = "allow", when = { field = "advies.niveau", one_of = ["pro"] } }"#,
            "`when` and `otherwise` go together",
        );
        fails(
            r#"{ path = "leerling.naam", action = "allow", otherwise = "consent" }"#,
            "`when` and `otherwise` go together",
        );
        fails(
            r#"{ path = "leerling.naam", action = "allow", when = { field = "advies.advies", one_of = ["pro"] }, otherwise = "consent" }"#,
            "not a field of the flow's catalogue",
        );
        fails(
            r#"{ path = "leerling.naam", action = "allow", when = { field = "toetsen[].naam", one_of = ["cito"] }, otherwise = "consent" }"#,
            "inside an array only in the rule for that field itself",
        );
        fails(
            r#"{ path = "toetsen[].naam", action = "allow", when = { field = "toetsen[].score", one_of = ["1"] }, otherwise = "consent" }"#,
            "inside an array only",
        );
        fails(
            r#"{ path = "leerling.naam", action = "allow", when = { field = "toetsen[].score", one_of = ["1"] }, otherwise = "consent" }"#,
            "inside an array only",
        );
        fails(
            r#"{ path = "leerling.naam", action = "allow", when = { field = "advies.niveau", one_of = [] }, otherwise = "consent" }"#,
            "at least one value",
        );
        fails(
            r#"{ path = "leerling.naam", action = "allow", when = { field = "advies.niveau", one_of = [" "] }, otherwise = "consent" }"#,
            "at least one value",
        );
        fails(
            r#"{ path = "leerling.naam", action = "allow", when = { field = "advies.soort", one_of = ["vwo"] }, otherwise = "consent" }"#,
            "not in the closed list",
        );
        fails(
            r#"{ path = "leerling.naam", action = "consent", when = { field = "advies.niveau", one_of = ["pro"] }, otherwise = "consent" }"#,
            "stricter",
        );
        fails(
            r#"{ path = "leerling.naam", action = "deny", reason = "x", when = { field = "advies.niveau", one_of = ["pro"] }, otherwise = "deny" }"#,
            "stricter",
        );
        fails(
            r#"{ path = "leerling.naam", action = "allow", when = { field = "advies.niveau", one_of = ["pro"] }, otherwise = "deny" }"#,
            "needs a `reason`",
        );
        fails(
            r#"{ path = "leerling.naam", action = "allow", reason = "x", when = { field = "advies.niveau", one_of = ["pro"] }, otherwise = "consent" }"#,
            "`reason` belongs to",
        );
        fails(
            r#"{ path = "leerling.naam", action = "allow", when = { field = "advies.niveau", one_of = ["pro"], values = ["x"] }, otherwise = "consent" }"#,
            "unknown field",
        );
        fails(
            r#"{ path = "leerling.naam", action = "allow", when = { field = "advies.niveau", one_of = ["pro"] }, otherwise = "allow" }"#,
            "unknown variant",
        );
    }

    #[test]
    fn a_processing_activity_id_is_a_versioned_uri() {
        for ok in [
            "urn:nl:ketenpoort:verwerkingsactiviteit:p1:v1",
            "https://register.example.nl/verwerkingen/p3/v2",
            "https://register.example.nl/verwerkingen/p3/v1.2",
        ] {
            assert!(versioned_uri(ok), "{ok}");
        }
        for bad in [
            "",
            "p1",
            "urn:nl:ketenpoort:p1",
            "https://register.example.nl/verwerkingen/p3",
            "https://register.example.nl/x y/v1",
            "1urn:x:v1",
            "urn:x:v",
            "urn:x:v1.",
        ] {
            assert!(!versioned_uri(bad), "{bad}");
        }
    }

    #[test]
    fn bad_toml_names_file_and_line() {
        let bad = "[[message]]\ntype = \"x\"\nfields = [\n  { path = \"a\", label = \"a\", category = \"ADM\" class = \"S1\" },\n]\n";
        let e = load(&[("broken.toml", bad)]).unwrap_err();
        match &e {
            PolicyError::At { file, line, .. } => {
                assert_eq!(file, "broken.toml");
                assert_eq!(*line, 4);
            }
            other => panic!("expected a located error, got {other}"),
        }
        assert!(e.to_string().starts_with("broken.toml:4:"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_line() {
        let f = flow("justificaton = \"required\"\n");
        let e = load(&[("a.toml", CATALOGUE), ("p.toml", &f)]).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("p.toml:10:"), "{s}");
        assert!(s.contains("justificaton"), "{s}");
    }

    #[test]
    fn unknown_actions_are_rejected_with_their_line() {
        let f = flow("fields = [\n  { path = \"leerling.*\", action = \"allow\" },\n  { path = \"toetsen[].*\", action = \"alow\" },\n]\n");
        let e = load(&[("a.toml", CATALOGUE), ("p.toml", &f)]).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("p.toml:12:"), "{s}");
        assert!(s.contains("alow"), "{s}");
    }

    #[test]
    fn a_date_rule_needs_a_date_field_and_a_known_rule() {
        let catalogue = |field: &str| {
            format!("[[message]]\ntype = \"rapport\"\nfields = [\n  {{ path = \"leerling.naam\", label = \"leerling.naam\", category = \"ADM\", class = \"S1\" }},\n  {field}\n]\n")
        };
        let ok = catalogue(
            r#"{ path = "leerling.geboortedatum", label = "leerling.geboortedatum", category = "ADM", class = "S1", kind = "date", date = "birth" }"#,
        );
        let set = load(&[("a.toml", &ok)]).unwrap();
        let field = set
            .catalogue("rapport")
            .unwrap()
            .field("leerling.geboortedatum")
            .unwrap();
        assert_eq!(field.date, Some(super::super::DateRule::Birth));
        let not_a_date = catalogue(
            r#"{ path = "leerling.geboortedatum", label = "leerling.geboortedatum", category = "ADM", class = "S1", kind = "string", date = "birth" }"#,
        );
        let e = load(&[("a.toml", &not_a_date)]).unwrap_err().to_string();
        assert!(
            e.starts_with("a.toml:5:") && e.contains("kind = \"date\""),
            "{e}"
        );
        let unknown = catalogue(
            r#"{ path = "leerling.geboortedatum", label = "leerling.geboortedatum", category = "ADM", class = "S1", kind = "date", date = "soon" }"#,
        );
        let e = load(&[("a.toml", &unknown)]).unwrap_err().to_string();
        assert!(e.contains("soon"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_rule_line() {
        let f = flow("fields = [\n  { path = \"leerling.*\", action = \"deny\" },\n]\n");
        let e = load(&[("a.toml", CATALOGUE), ("p.toml", &f)]).unwrap_err();
        assert!(e.to_string().starts_with("p.toml:11:"), "{e}");
        assert!(e.to_string().contains("reason"), "{e}");

        let f = flow("fields = [ { path = \"leerling.naam\", action = \"generalise\" } ]\n");
        let e = load(&[("a.toml", CATALOGUE), ("p.toml", &f)]).unwrap_err();
        assert!(e.to_string().contains("method"), "{e}");

        let f = flow("fields = [ { path = \"leerling[0].naam\", action = \"allow\" } ]\n");
        assert!(load(&[("a.toml", CATALOGUE), ("p.toml", &f)]).is_err());
    }

    #[test]
    fn as_is_subject_needs_a_cited_basis() {
        let f = flow("").replace("subject = \"none\"", "subject = \"as-is\"");
        let e = load(&[("a.toml", CATALOGUE), ("p.toml", &f)]).unwrap_err();
        assert!(e.to_string().contains("subject_basis"), "{e}");
        let f = flow("subject_basis = \"WPO art. 178a\"\n")
            .replace("subject = \"none\"", "subject = \"as-is\"");
        assert!(load(&[("a.toml", CATALOGUE), ("p.toml", &f)]).is_ok());
    }

    #[test]
    fn overlapping_flows_and_duplicate_catalogues_are_refused() {
        let f = flow("");
        let g = f.replace("id = \"T1\"", "id = \"T2\"");
        let e = load(&[("a.toml", CATALOGUE), ("p.toml", &f), ("q.toml", &g)]).unwrap_err();
        assert!(e.to_string().contains("overlaps flow T1"), "{e}");
        let e = load(&[("a.toml", CATALOGUE), ("b.toml", CATALOGUE)]).unwrap_err();
        assert!(e.to_string().contains("already has a catalogue"), "{e}");
    }

    #[test]
    fn flows_need_a_known_message_type_and_catalogues_valid_paths() {
        let f = flow("").replace("message = \"rapport\"", "message = \"onbekend\"");
        assert!(load(&[("a.toml", CATALOGUE), ("p.toml", &f)]).is_err());
        let c = CATALOGUE.replace("toetsen[].score", "leerling.naam.x");
        let e = load(&[("a.toml", &c)]).unwrap_err();
        assert!(e.to_string().contains("conflict"), "{e}");
    }

    #[test]
    fn a_required_field_may_depend_on_another_field_s_value() {
        const MELDING: &str = r#"
[[message]]
type = "rapport"
fields = [
  { path = "leerling.naam", label = "Naam", category = "ADM", class = "S1" },
  { path = "m.verteld", label = "Verteld", category = "THUIS", class = "S3", kind = "bool" },
  { path = "m.reden", label = "Reden", category = "THUIS", class = "S3" },
  { path = "l[].x", label = "X", category = "THUIS", class = "S3" },
]
"#;
        let with = |when: &str| {
            flow(&format!(
                "fields = [ {{ path = \"m.*\", action = \"allow\" }} ]\n[[flow.required]]\npath = \"m.reden\"\n{when}\n"
            ))
        };
        let ok = with(r#"when = { field = "m.verteld", equals = false }"#);
        let set = load(&[("a.toml", MELDING), ("p.toml", &ok)]).unwrap();
        let r = &set.flows().next().unwrap().required[0];
        assert_eq!(
            r.when,
            Some(RequiredWhen {
                field: "m.verteld".into(),
                equals: serde_json::json!(false)
            })
        );
        for bad in [
            r#"when = { field = "m.onbekend", equals = false }"#,
            r#"when = { field = "l[].x", equals = "a" }"#,
            r#"when = { field = "m.reden", equals = "a" }"#,
            r#"when = { field = "m.verteld", equals = [1] }"#,
        ] {
            let e = load(&[("a.toml", MELDING), ("p.toml", &with(bad))]).unwrap_err();
            assert!(
                e.to_string()
                    .contains("`when` names another catalogue field"),
                "{bad}: {e}"
            );
        }
        for bad in [
            r#"when = { field = "m.verteld" }"#,
            r#"when = { field = "m.verteld", equals = false, ook = 1 }"#,
        ] {
            assert!(
                load(&[("a.toml", MELDING), ("p.toml", &with(bad))]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn follows_like_in_reply_to_needs_the_flow_it_follows() {
        let f = flow("receiver = \"follows\"\n");
        let e = load(&[("a.toml", CATALOGUE), ("p.toml", &f)]).unwrap_err();
        assert!(e.to_string().contains("needs `answers`"), "{e}");
        let f = flow("receiver = \"follows\"\nanswers = \"T0\"\n");
        let set = load(&[("a.toml", CATALOGUE), ("p.toml", &f)]).unwrap();
        assert_eq!(
            set.flows().next().unwrap().receiver,
            Some(ReceiverBinding::Follows)
        );
        let f = flow("receiver = \"member-of-sender\"\nanswers = \"T0\"\n");
        let e = load(&[("a.toml", CATALOGUE), ("p.toml", &f)]).unwrap_err();
        assert!(e.to_string().contains("`answers` goes with"), "{e}");
    }

    #[test]
    fn retention_has_the_gateway_s_days_and_the_receiver_s_period() {
        let with = |table: &str| {
            flow("").replace(
                "[flow.retention]\ngateway_days = 30\nreceiver_text = \"30 dagen\"\n",
                &format!("[flow.retention]\n{table}"),
            )
        };
        let ok = with("gateway_days = 14\nreceiver_text = \" 2 jaar \"\nreceiver_days = 730\n");
        let set = load(&[("a.toml", CATALOGUE), ("p.toml", &ok)]).unwrap();
        let f = set.flows().next().unwrap();
        assert_eq!(
            f.retention,
            Retention {
                gateway_days: 14,
                receiver: ReceiverRetention {
                    text: "2 jaar".into(),
                    days: Some(730)
                }
            }
        );
        let words = with("gateway_days = 90\nreceiver_text = \"in het leerlingdossier\"\n");
        let set = load(&[("a.toml", CATALOGUE), ("p.toml", &words)]).unwrap();
        assert_eq!(set.flows().next().unwrap().retention.receiver.days, None);

        for (table, needle) in [
            ("gateway_days = 0\nreceiver_text = \"x\"\n", "1 to 90 days"),
            ("gateway_days = 91\nreceiver_text = \"x\"\n", "1 to 90 days"),
            (
                "gateway_days = 1825\nreceiver_text = \"x\"\n",
                "not an archive",
            ),
            ("gateway_days = -1\nreceiver_text = \"x\"\n", "expected u32"),
            (
                "gateway_days = 30\nreceiver_text = \"  \"\n",
                "receiver_text",
            ),
            ("receiver_text = \"x\"\n", "gateway_days"),
            ("gateway_days = 30\n", "receiver_text"),
            (
                "gateway_days = 30\nreceiver_text = \"x\"\nreceiver_days = 0\n",
                "at least 1",
            ),
            (
                "gateway_days = 30\nreceiver_text = \"x\"\nreceiver_days = 7\n",
                "longer than receiver_days (7)",
            ),
            ("days = 30\ntext = \"30 dagen\"\n", "unknown field `days`"),
            (
                "gateway_days = 30\nreceiver_text = \"x\"\ntext = \"y\"\n",
                "unknown field `text`",
            ),
        ] {
            let e = load(&[("a.toml", CATALOGUE), ("p.toml", &with(table))])
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{table}: {e}");
            assert!(e.starts_with("p.toml:"), "{table}: {e}");
        }
        // A validation error names the line of the retention table.
        let e = load(&[
            ("a.toml", CATALOGUE),
            (
                "p.toml",
                &with("gateway_days = 365\nreceiver_text = \"x\"\n"),
            ),
        ])
        .unwrap_err()
        .to_string();
        let line: usize = e.split(':').nth(1).unwrap().parse().unwrap();
        assert!(line >= 14, "{e}");
    }

    #[test]
    fn several_errors_are_all_reported() {
        let e = load(&[("a.toml", "x = 1\n"), ("b.toml", "[flow\n")]).unwrap_err();
        let all = e.errors();
        assert_eq!(all.len(), 2, "{e}");
        assert_eq!(all[0].location().0, Some("a.toml"));
        assert_eq!(all[1].location().0, Some("b.toml"));
    }
}
