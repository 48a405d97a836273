//! Envelope stage: strict parsing and validation of the JSON body of `POST /v1/messages`.
//!
//! The JSON rules (UTF-8, syntax, nesting depth, duplicate keys, string size) are enforced while the
//! document is read, so hostile input is refused before it is fully built. The envelope rules
//! (known top-level keys, field types, subject identifier, actor, justification length) follow.
//!
//! An `EnvelopeError` names the rule and the field path only. It must never carry a value from the
//! body: no payload value, no pupil identifier, no actor name or justification. The one exception
//! is an unknown top-level key, which is named (truncated) because keys are not pupil data.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use crate::data::{Node, Object};
use crate::domain::{SubjectId, SubjectKind};
use crate::refusal::ProblemCode;

/// The stable problem codes this stage produces.
pub mod codes {
    use crate::refusal::ProblemCode;
    pub const INVALID_UTF8: ProblemCode = ProblemCode::InvalidUtf8;
    pub const MALFORMED_JSON: ProblemCode = ProblemCode::MalformedJson;
    pub const TOO_DEEP: ProblemCode = ProblemCode::TooDeep;
    pub const DUPLICATE_KEY: ProblemCode = ProblemCode::DuplicateKey;
    pub const STRING_TOO_LONG: ProblemCode = ProblemCode::StringTooLong;
    pub const UNKNOWN_ENVELOPE_KEY: ProblemCode = ProblemCode::UnknownEnvelopeKey;
    pub const INVALID_ENVELOPE: ProblemCode = ProblemCode::InvalidEnvelope;
    pub const INVALID_SUBJECT: ProblemCode = ProblemCode::InvalidSubject;
    pub const INVALID_SUBJECT_ID: ProblemCode = ProblemCode::InvalidSubjectId;
    pub const JUSTIFICATION_TOO_LONG: ProblemCode = ProblemCode::JustificationTooLong;
}

/// The top-level keys an envelope may have.
pub const ENVELOPE_KEYS: [&str; 10] = [
    "to",
    "recipients",
    "case_id",
    "type",
    "purpose",
    "subject",
    "actor",
    "justification",
    "data",
    "in_reply_to",
];

const SUBJECT_KINDS: [SubjectKind; 3] = [
    SubjectKind::Pgn,
    SubjectKind::Bsn,
    SubjectKind::Onderwijsnummer,
];
const ACTOR_KEYS: [&str; 3] = ["id", "name", "function"];
/// Upper bound, in characters, for `to`, `type`, `purpose` and each actor member.
pub const MAX_NAME_CHARS: usize = 200;
const MAX_KEY_CHARS_IN_DETAIL: usize = 64;
/// How many partners a kerngroep case (`recipients`) may name, at least and at most.
pub const KERNGROEP_RECIPIENTS: std::ops::RangeInclusive<usize> = 2..=8;

/// Resource limits applied while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum number of nested arrays/objects; the envelope object itself is level 1.
    pub max_depth: usize,
    /// Maximum length of `justification`, in characters.
    pub max_justification_chars: usize,
    /// Maximum length of any single string (key or value), in UTF-8 bytes.
    pub max_string_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_depth: 32,
            max_justification_chars: 4000,
            max_string_bytes: 1024 * 1024,
        }
    }
}

/// The professional on whose behalf the sending system acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub name: String,
    pub function: String,
}

/// A parsed and validated message envelope; `data` borrows from the body it was read from. `Debug` shows neither
/// the justification nor `data`.
#[derive(Clone, PartialEq)]
pub struct Envelope<'a> {
    /// `to`, or for a kerngroep case (P13) `recipients` with its `case_id`.
    pub to: Addressing,
    /// JSON key `type`.
    pub message_type: String,
    pub purpose: String,
    /// Absent for aggregate messages, and when the pupil is named by a message instead (`subject_message`).
    pub subject: Option<SubjectId>,
    /// `subject.message_id`: the pupil of a message the sender received, for a sender that never holds the pupil
    /// number (a wijkteam or JGZ); the gateway resolves it. 32 lowercase hexadecimal digits.
    pub subject_message: Option<String>,
    pub actor: Actor,
    pub justification: Option<String>,
    /// Always a JSON object.
    pub data: Node<'a>,
    /// The message id a reply answers (P5 → its P4, P6 → its P3): 32 lowercase hexadecimal digits.
    pub in_reply_to: Option<String>,
}

impl fmt::Debug for Envelope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data_members = self.data.as_object().map_or(0, Object::len);
        f.debug_struct("Envelope")
            .field("to", &self.to)
            .field("message_type", &self.message_type)
            .field("purpose", &self.purpose)
            .field("subject", &self.subject)
            .field("subject_message", &self.subject_message)
            .field("actor", &self.actor)
            .field("in_reply_to", &self.in_reply_to)
            .field(
                "justification",
                &self
                    .justification
                    .as_ref()
                    .map(|j| format!("<redacted, {} chars>", j.chars().count())),
            )
            .field(
                "data",
                &format_args!("<redacted, {data_members} top-level members>"),
            )
            .finish()
    }
}

/// Whom a message is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addressing {
    /// `to`: one receiver.
    One(String),
    /// `recipients` (2 to 8 different partner ids) and `case_id` (a UUID the sender chose): a kerngroep case (P13),
    /// each recipient decided under its own flow. The case id is a random id, never a name or a dossier number.
    Kerngroep {
        recipients: Vec<String>,
        case_id: String,
    },
}

impl Addressing {
    /// The receivers named, in the sender's order.
    pub fn receivers(&self) -> &[String] {
        match self {
            Addressing::One(to) => std::slice::from_ref(to),
            Addressing::Kerngroep { recipients, .. } => recipients,
        }
    }

    pub fn case_id(&self) -> Option<&str> {
        match self {
            Addressing::One(_) => None,
            Addressing::Kerngroep { case_id, .. } => Some(case_id),
        }
    }
}

/// Why a body was refused: a stable `code`, the HTTP status and a detail naming rule and field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {detail}")]
pub struct EnvelopeError {
    code: ProblemCode,
    status: u16,
    detail: String,
}

impl EnvelopeError {
    /// A body that is not well-formed (400): `code` must be one of the 400 codes of `codes`.
    fn bad_request(code: ProblemCode, detail: impl Into<String>) -> EnvelopeError {
        debug_assert_eq!(code.status(), 400, "{code}");
        EnvelopeError {
            code,
            status: code.status(),
            detail: detail.into(),
        }
    }

    /// A well-formed body that breaks a rule (422): `code` must be one of the 422 codes of `codes`.
    fn invalid(code: ProblemCode, detail: impl Into<String>) -> EnvelopeError {
        debug_assert_eq!(code.status(), 422, "{code}");
        EnvelopeError {
            code,
            status: code.status(),
            detail: detail.into(),
        }
    }

    pub fn code(&self) -> ProblemCode {
        self.code
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }
}

/// Parses and validates a message envelope.
pub fn parse<'a>(body: &'a [u8], limits: &Limits) -> Result<Envelope<'a>, EnvelopeError> {
    let value = parse_with(
        body,
        limits.max_depth,
        limits.max_string_bytes,
        &ENVELOPE_KEYS,
    )?;
    let Node::Object(map) = value else {
        return Err(EnvelopeError::bad_request(
            codes::MALFORMED_JSON,
            "the body must be a JSON object",
        ));
    };
    envelope_from_map(map, limits)
}

/// Strict JSON parse used also for other request bodies (consents): same rules, any JSON value.
/// Strings are limited to the default `Limits::max_string_bytes`.
pub fn parse_strict_json(body: &[u8], max_depth: usize) -> Result<Value, EnvelopeError> {
    parse_with(body, max_depth, Limits::default().max_string_bytes, &[]).map(Node::into_value)
}

fn parse_with<'a>(
    body: &'a [u8],
    max_depth: usize,
    max_string_bytes: usize,
    named_sections: &'static [&'static str],
) -> Result<Node<'a>, EnvelopeError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        EnvelopeError::bad_request(
            codes::INVALID_UTF8,
            format!(
                "the body is not valid UTF-8 (first bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    let strict = Strict {
        max_depth,
        max_string_bytes,
        named_sections,
        violation: Cell::new(None),
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = NodeSeed {
        strict: &strict,
        depth: 0,
        section: None,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    parsed.map_err(|err| match strict.violation.get() {
        Some(violation) => violation.into_error(&strict),
        None => syntax_error(&err),
    })
}

/// Turns a serde_json error into a detail built only from serde_json's fixed messages and the
/// position, so no input text can slip through.
fn syntax_error(err: &serde_json::Error) -> EnvelopeError {
    const KNOWN: [&str; 20] = [
        "EOF while parsing a list",
        "EOF while parsing an object",
        "EOF while parsing a string",
        "EOF while parsing a value",
        "expected `:`",
        "expected `,` or `]`",
        "expected `,` or `}`",
        "expected ident",
        "expected value",
        "expected `\"`",
        "invalid escape",
        "invalid number",
        "number out of range",
        "invalid unicode code point",
        "control character (\\u0000-\\u001F) found while parsing a string",
        "key must be a string",
        "lone leading surrogate in hex escape",
        "trailing comma",
        "trailing characters",
        "unexpected end of hex escape",
    ];
    let message = err.to_string();
    if message.starts_with("recursion limit exceeded") {
        return EnvelopeError::bad_request(codes::TOO_DEEP, "JSON nesting is too deep");
    }
    let what = KNOWN
        .iter()
        .find(|known| message.starts_with(*known))
        .copied()
        .unwrap_or("syntax error");
    EnvelopeError::bad_request(
        codes::MALFORMED_JSON,
        format!(
            "the body is not valid JSON: {what} at line {} column {}",
            err.line(),
            err.column()
        ),
    )
}

#[derive(Clone, Copy)]
enum ViolationKind {
    TooDeep,
    DuplicateKey { top_level: bool },
    StringTooLong,
}

/// A strict-JSON rule broken while reading; `section` is the envelope key it happened under
/// (only ever one of the known keys, never text from the body).
#[derive(Clone, Copy)]
struct Violation {
    kind: ViolationKind,
    section: Option<&'static str>,
}

impl Violation {
    fn into_error(self, strict: &Strict) -> EnvelopeError {
        let place = match self.section {
            Some(section) => format!(" (inside `{section}`)"),
            None => String::new(),
        };
        match self.kind {
            ViolationKind::TooDeep => EnvelopeError::bad_request(
                codes::TOO_DEEP,
                format!(
                    "JSON nesting is deeper than {} levels{place}",
                    strict.max_depth
                ),
            ),
            ViolationKind::DuplicateKey { top_level: true } => match self.section {
                Some(key) => EnvelopeError::bad_request(
                    codes::DUPLICATE_KEY,
                    format!("the top-level key `{key}` appears more than once"),
                ),
                None => EnvelopeError::bad_request(
                    codes::DUPLICATE_KEY,
                    "a top-level key appears more than once",
                ),
            },
            ViolationKind::DuplicateKey { top_level: false } => EnvelopeError::bad_request(
                codes::DUPLICATE_KEY,
                format!("an object has the same key more than once{place}"),
            ),
            ViolationKind::StringTooLong => EnvelopeError::bad_request(
                codes::STRING_TOO_LONG,
                format!(
                    "a string is longer than {} bytes{place}",
                    strict.max_string_bytes
                ),
            ),
        }
    }
}

struct Strict {
    max_depth: usize,
    max_string_bytes: usize,
    /// Top-level keys that may be named in error details.
    named_sections: &'static [&'static str],
    violation: Cell<Option<Violation>>,
}

impl Strict {
    fn refuse<E: de::Error>(&self, kind: ViolationKind, section: Option<&'static str>) -> E {
        self.violation.set(Some(Violation { kind, section }));
        E::custom("strict JSON rule violated")
    }

    fn section_for(&self, top_level_key: &str) -> Option<&'static str> {
        self.named_sections
            .iter()
            .find(|name| **name == top_level_key)
            .copied()
    }
}

/// Builds a `Node` while enforcing depth, duplicate-key and string-size rules; keys and strings without escapes
/// are borrowed from the body.
#[derive(Clone, Copy)]
struct NodeSeed<'a> {
    strict: &'a Strict,
    /// Number of arrays/objects enclosing the value about to be read.
    depth: usize,
    section: Option<&'static str>,
}

/// Members compared one by one for a repeated key while an object is read; past this many, the whole object's keys
/// are sorted and compared once it is complete.
const LINEAR_DUPLICATE_CHECK: usize = 16;

impl NodeSeed<'_> {
    fn enter<E: de::Error>(self) -> Result<usize, E> {
        let depth = self.depth + 1;
        if depth > self.strict.max_depth {
            Err(self.strict.refuse(ViolationKind::TooDeep, self.section))
        } else {
            Ok(depth)
        }
    }

    fn check_len<E: de::Error>(self, s: &str) -> Result<(), E> {
        if s.len() > self.strict.max_string_bytes {
            Err(self
                .strict
                .refuse(ViolationKind::StringTooLong, self.section))
        } else {
            Ok(())
        }
    }
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = Node<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Node<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node<'de>, E> {
        Number::from_f64(v)
            .map(Node::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Node<'de>, E> {
        self.check_len(v)?;
        Ok(Node::String(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node<'de>, E> {
        self.check_len(v)?;
        Ok(Node::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node<'de>, E> {
        self.check_len(&v)?;
        Ok(Node::String(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let depth = self.enter()?;
        let child = NodeSeed { depth, ..self };
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(child)? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let depth = self.enter()?;
        let top_level = self.depth == 0;
        let mut members: Vec<(Cow<'de, str>, Node<'de>)> = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let section = if top_level {
                self.strict.section_for(&key)
            } else {
                self.section
            };
            let key_seed = NodeSeed { section, ..self };
            key_seed.check_len::<A::Error>(&key)?;
            if members.len() < LINEAR_DUPLICATE_CHECK && members.iter().any(|(k, _)| *k == key) {
                return Err(self
                    .strict
                    .refuse(ViolationKind::DuplicateKey { top_level }, section));
            }
            let value = map.next_value_seed(NodeSeed {
                strict: self.strict,
                depth,
                section,
            })?;
            members.push((key, value));
        }
        if members.len() > LINEAR_DUPLICATE_CHECK {
            let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
            keys.sort_unstable();
            if let Some(pair) = keys.windows(2).find(|w| w[0] == w[1]) {
                let section = if top_level {
                    self.strict.section_for(pair[0])
                } else {
                    self.section
                };
                return Err(self
                    .strict
                    .refuse(ViolationKind::DuplicateKey { top_level }, section));
            }
        }
        Ok(Node::Object(Object::from_members(members)))
    }
}

/// An object key, borrowed from the body unless it holds an escape.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

fn envelope_from_map<'a>(
    mut map: Object<'a>,
    limits: &Limits,
) -> Result<Envelope<'a>, EnvelopeError> {
    if let Some(unknown) = map.keys().find(|k| !ENVELOPE_KEYS.contains(k)) {
        let shown: String = unknown.chars().take(MAX_KEY_CHARS_IN_DETAIL).collect();
        let ellipsis = if unknown.chars().count() > MAX_KEY_CHARS_IN_DETAIL {
            "…"
        } else {
            ""
        };
        return Err(EnvelopeError::bad_request(
            codes::UNKNOWN_ENVELOPE_KEY,
            format!(
                "unknown envelope key '{}{ellipsis}' (allowed: {})",
                shown.escape_debug(),
                ENVELOPE_KEYS.join(", ")
            ),
        ));
    }
    let to = addressing(
        map.remove("to"),
        map.remove("recipients"),
        map.remove("case_id"),
    )?;
    let message_type = required_name(map.remove("type"), "type")?;
    let purpose = required_name(map.remove("purpose"), "purpose")?;
    let actor = actor(map.remove("actor"))?;
    let (subject, subject_message) = match map.remove("subject").map(subject).transpose()? {
        None => (None, None),
        Some(NamedSubject::Number(s)) => (Some(s), None),
        Some(NamedSubject::Message(id)) => (None, Some(id)),
    };
    let justification = map
        .remove("justification")
        .map(|j| justification(j, limits))
        .transpose()?;
    let in_reply_to = map.remove("in_reply_to").map(message_id).transpose()?;
    let data = match map.remove("data") {
        None => return Err(missing("data")),
        Some(data @ Node::Object(_)) => data,
        Some(other) => {
            return Err(EnvelopeError::invalid(
                codes::INVALID_ENVELOPE,
                format!("`data` must be a JSON object, not {}", other.type_name()),
            ))
        }
    };
    Ok(Envelope {
        to,
        message_type,
        purpose,
        subject,
        subject_message,
        actor,
        justification,
        data,
        in_reply_to,
    })
}

/// `in_reply_to`: a message id as the gateway hands them out (`exchange::new_id`). The detail never repeats it.
fn message_id(value: Node) -> Result<String, EnvelopeError> {
    match value {
        Node::String(s)
            if s.len() == 32
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(s.into_owned())
        }
        _ => Err(EnvelopeError::invalid(
            codes::INVALID_ENVELOPE,
            "`in_reply_to` must be a message id: 32 lowercase hexadecimal digits",
        )),
    }
}

fn missing(path: &str) -> EnvelopeError {
    EnvelopeError::invalid(codes::INVALID_ENVELOPE, format!("`{path}` is missing"))
}

/// A required, non-blank string of at most `MAX_NAME_CHARS` characters.
fn required_name(value: Option<Node>, path: &str) -> Result<String, EnvelopeError> {
    match value {
        None => Err(missing(path)),
        Some(Node::String(s)) => {
            if s.trim().is_empty() {
                Err(EnvelopeError::invalid(
                    codes::INVALID_ENVELOPE,
                    format!("`{path}` must not be empty"),
                ))
            } else if s.chars().count() > MAX_NAME_CHARS {
                Err(EnvelopeError::invalid(
                    codes::INVALID_ENVELOPE,
                    format!("`{path}` is longer than {MAX_NAME_CHARS} characters"),
                ))
            } else {
                Ok(s.into_owned())
            }
        }
        Some(other) => Err(EnvelopeError::invalid(
            codes::INVALID_ENVELOPE,
            format!("`{path}` must be a string, not {}", other.type_name()),
        )),
    }
}

/// `to` (one receiver), or `recipients` and `case_id` together (a kerngroep case): never both, never neither.
fn addressing(
    to: Option<Node>,
    recipients: Option<Node>,
    case_id: Option<Node>,
) -> Result<Addressing, EnvelopeError> {
    let invalid = |detail: String| EnvelopeError::invalid(codes::INVALID_ENVELOPE, detail);
    let (recipients, case_id) = match (to, recipients, case_id) {
        (Some(_), Some(_), _) => {
            return Err(invalid(
                "name the receiver in `to` or, for a kerngroep case, the recipients in `recipients`: not both".into(),
            ))
        }
        (Some(_), None, Some(_)) => {
            return Err(invalid(
                "`case_id` belongs to a kerngroep case: name its recipients in `recipients` instead of `to`".into(),
            ))
        }
        (to, None, None) => return required_name(to, "to").map(Addressing::One),
        (None, Some(_), None) => {
            return Err(invalid(
                "a kerngroep case (`recipients`) needs a `case_id`: a UUID that groups its disclosures".into(),
            ))
        }
        (None, None, Some(_)) => return Err(missing("to")),
        (None, Some(r), Some(c)) => (r, c),
    };
    let Node::Array(items) = recipients else {
        return Err(invalid(format!(
            "`recipients` must be an array of partner ids, not {}",
            recipients.type_name()
        )));
    };
    if !KERNGROEP_RECIPIENTS.contains(&items.len()) {
        return Err(invalid(format!(
            "`recipients` names {} partners; a kerngroep case has {} to {}",
            items.len(),
            KERNGROEP_RECIPIENTS.start(),
            KERNGROEP_RECIPIENTS.end()
        )));
    }
    let mut ids: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let id = required_name(Some(item), &format!("recipients[{i}]"))?;
        if ids.contains(&id) {
            return Err(invalid(format!(
                "`recipients[{i}]` names a partner named before: each recipient once"
            )));
        }
        ids.push(id);
    }
    let case_id = match case_id {
        Node::String(s) if crate::domain::is_case_id(&s) => s.to_ascii_lowercase(),
        _ => {
            return Err(invalid(
                "`case_id` must be a UUID (8-4-4-4-12 hexadecimal digits) the sender generates for the case, \
                 never a name or a dossier number"
                    .into(),
            ))
        }
    };
    Ok(Addressing::Kerngroep {
        recipients: ids,
        case_id,
    })
}

fn actor(value: Option<Node>) -> Result<Actor, EnvelopeError> {
    let mut map = match value {
        None => return Err(missing("actor")),
        Some(Node::Object(map)) => map,
        Some(other) => {
            return Err(EnvelopeError::invalid(
                codes::INVALID_ENVELOPE,
                format!("`actor` must be an object, not {}", other.type_name()),
            ))
        }
    };
    if map.keys().any(|k| !ACTOR_KEYS.contains(&k)) {
        return Err(EnvelopeError::invalid(
            codes::INVALID_ENVELOPE,
            format!(
                "`actor` has an unknown member (allowed: {})",
                ACTOR_KEYS.join(", ")
            ),
        ));
    }
    Ok(Actor {
        id: required_name(map.remove("id"), "actor.id")?,
        name: required_name(map.remove("name"), "actor.name")?,
        function: required_name(map.remove("function"), "actor.function")?,
    })
}

/// How an envelope names its pupil.
enum NamedSubject {
    Number(SubjectId),
    /// The id of a message the sender received (`subject.message_id`).
    Message(String),
}

fn subject(value: Node) -> Result<NamedSubject, EnvelopeError> {
    let shape_error = || {
        EnvelopeError::invalid(
            codes::INVALID_SUBJECT,
            "`subject` must be an object with exactly one of `pgn`, `bsn`, `onderwijsnummer`, `message_id` \
             (omit `subject` for aggregate messages)",
        )
    };
    let Node::Object(map) = value else {
        return Err(shape_error());
    };
    let mut entries = map.into_members();
    let (Some((key, number)), None) = (entries.next(), entries.next()) else {
        return Err(shape_error());
    };
    if key == "message_id" {
        return match number {
            Node::String(id)
                if id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Ok(NamedSubject::Message(id.into_owned()))
            }
            _ => Err(EnvelopeError::invalid(
                codes::INVALID_SUBJECT,
                "`subject.message_id` must be a message id as the gateway hands them out (32 lowercase hex digits)",
            )),
        };
    }
    let kind = SUBJECT_KINDS
        .into_iter()
        .find(|kind| kind.as_str() == key)
        .ok_or_else(shape_error)?;
    let Node::String(number) = number else {
        return Err(EnvelopeError::invalid(
            codes::INVALID_SUBJECT,
            format!(
                "`subject.{}` must be a string, not {}",
                kind.as_str(),
                number.type_name()
            ),
        ));
    };
    SubjectId::new(kind, &number)
        .map(NamedSubject::Number)
        .map_err(|rule| {
            EnvelopeError::invalid(
                codes::INVALID_SUBJECT_ID,
                format!("`subject.{}`: {rule}", kind.as_str()),
            )
        })
}

fn justification(value: Node, limits: &Limits) -> Result<String, EnvelopeError> {
    match value {
        Node::String(s) if s.chars().count() > limits.max_justification_chars => {
            Err(EnvelopeError::invalid(
                codes::JUSTIFICATION_TOO_LONG,
                format!(
                    "`justification` is longer than {} characters",
                    limits.max_justification_chars
                ),
            ))
        }
        Node::String(s) => Ok(s.into_owned()),
        other => Err(EnvelopeError::invalid(
            codes::INVALID_ENVELOPE,
            format!(
                "`justification` must be a string, not {} (omit it when there is none)",
                other.type_name()
            ),
        )),
    }
}

#[cfg(test)]
mod tests;
