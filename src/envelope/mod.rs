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

/// The stable problem codes this stage produces.
pub mod codes {
    pub const INVALID_UTF8: &str = "invalid-utf8";
    pub const MALFORMED_JSON: &str = "malformed-json";
    pub const TOO_DEEP: &str = "too-deep";
    pub const DUPLICATE_KEY: &str = "duplicate-key";
    pub const STRING_TOO_LONG: &str = "string-too-long";
    pub const UNKNOWN_ENVELOPE_KEY: &str = "unknown-envelope-key";
    pub const INVALID_ENVELOPE: &str = "invalid-envelope";
    pub const INVALID_SUBJECT: &str = "invalid-subject";
    pub const INVALID_SUBJECT_ID: &str = "invalid-subject-id";
    pub const JUSTIFICATION_TOO_LONG: &str = "justification-too-long";
}

/// The top-level keys an envelope may have.
pub const ENVELOPE_KEYS: [&str; 7] = [
    "to",
    "type",
    "purpose",
    "subject",
    "actor",
    "justification",
    "data",
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
    pub to: String,
    /// JSON key `type`.
    pub message_type: String,
    pub purpose: String,
    /// Absent for aggregate messages.
    pub subject: Option<SubjectId>,
    pub actor: Actor,
    pub justification: Option<String>,
    /// Always a JSON object.
    pub data: Node<'a>,
}

impl fmt::Debug for Envelope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data_members = self.data.as_object().map_or(0, Object::len);
        f.debug_struct("Envelope")
            .field("to", &self.to)
            .field("message_type", &self.message_type)
            .field("purpose", &self.purpose)
            .field("subject", &self.subject)
            .field("actor", &self.actor)
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

/// Why a body was refused: a stable `code`, the HTTP status and a detail naming rule and field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {detail}")]
pub struct EnvelopeError {
    code: &'static str,
    status: u16,
    detail: String,
}

impl EnvelopeError {
    fn bad_request(code: &'static str, detail: impl Into<String>) -> EnvelopeError {
        EnvelopeError {
            code,
            status: 400,
            detail: detail.into(),
        }
    }

    fn invalid(code: &'static str, detail: impl Into<String>) -> EnvelopeError {
        EnvelopeError {
            code,
            status: 422,
            detail: detail.into(),
        }
    }

    pub fn code(&self) -> &'static str {
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
    let to = required_name(map.remove("to"), "to")?;
    let message_type = required_name(map.remove("type"), "type")?;
    let purpose = required_name(map.remove("purpose"), "purpose")?;
    let actor = actor(map.remove("actor"))?;
    let subject = map.remove("subject").map(subject).transpose()?;
    let justification = map
        .remove("justification")
        .map(|j| justification(j, limits))
        .transpose()?;
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
        actor,
        justification,
        data,
    })
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

fn subject(value: Node) -> Result<SubjectId, EnvelopeError> {
    let shape_error = || {
        EnvelopeError::invalid(
            codes::INVALID_SUBJECT,
            "`subject` must be an object with exactly one of `pgn`, `bsn`, `onderwijsnummer` \
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
    SubjectId::new(kind, &number).map_err(|rule| {
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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;

    const EXAMPLES: [&str; 7] = [
        "P1-overstap-po-vo.json",
        "P2-tlv-aanvraag.json",
        "P3-verzuimmelding.json",
        "P4-signaal-wijkteam.json",
        "P5-terugkoppeling-school.json",
        "P6-status-verzuim.json",
        "P7-telling-thuiszitters.json",
    ];

    /// `shared/examples` beside the crate, else the copies in the fuzz seed corpus.
    fn examples_dir() -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        [
            root.join("../shared/examples"),
            root.join("fuzz/corpus/envelope"),
        ]
        .into_iter()
        .find(|dir| EXAMPLES.iter().all(|name| dir.join(name).is_file()))
        .expect("the example envelopes are found in ../shared/examples or fuzz/corpus/envelope")
    }

    fn examples() -> &'static [(&'static str, Vec<u8>)] {
        static LOADED: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
        LOADED.get_or_init(|| {
            let dir = examples_dir();
            EXAMPLES
                .iter()
                .map(|name| {
                    (
                        *name,
                        std::fs::read(dir.join(name)).expect("example readable"),
                    )
                })
                .collect()
        })
    }

    fn example(name: &str) -> Value {
        let (_, bytes) = examples().iter().find(|(n, _)| *n == name).unwrap();
        serde_json::from_slice(bytes).unwrap()
    }

    fn base() -> Value {
        json!({
            "to": "lyceum-zuid",
            "type": "onderwijskundig-rapport",
            "purpose": "overstap-po-vo",
            "subject": {"pgn": "628194821"},
            "actor": {"id": "mvisser", "name": "M. Visser", "function": "intern begeleider"},
            "justification": "Wettelijke plicht.",
            "data": {"leerling": {"voornamen": "CANARY-BASE"}}
        })
    }

    fn with(field: &str, value: Value) -> Vec<u8> {
        let mut v = base();
        v[field] = value;
        serde_json::to_vec(&v).unwrap()
    }

    fn without(field: &str) -> Vec<u8> {
        let mut v = base();
        v.as_object_mut().unwrap().shift_remove(field);
        serde_json::to_vec(&v).unwrap()
    }

    fn refused(body: &[u8]) -> EnvelopeError {
        parse(body, &Limits::default()).expect_err("body must be refused")
    }

    fn assert_refused(body: &[u8], code: &str, status: u16) -> EnvelopeError {
        let err = refused(body);
        assert_eq!((err.code(), err.status()), (code, status), "{err}");
        err
    }

    fn assert_clean(err: &EnvelopeError, secrets: &[&str]) {
        let shown = [err.detail().to_owned(), format!("{err:?}"), err.to_string()];
        for secret in secrets {
            for text in &shown {
                assert!(!text.contains(secret), "{secret:?} leaked into {text:?}");
            }
        }
    }

    fn nested(depth: usize) -> String {
        "[".repeat(depth) + &"]".repeat(depth)
    }

    #[test]
    fn all_seven_examples_parse() {
        assert_eq!(examples().len(), 7);
        for (name, bytes) in examples() {
            let env = parse(bytes, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
            let raw = example(name);
            assert_eq!(env.to, raw["to"], "{name}");
            assert_eq!(env.message_type, raw["type"], "{name}");
            assert_eq!(env.purpose, raw["purpose"], "{name}");
            assert_eq!(env.actor.id, raw["actor"]["id"], "{name}");
            assert_eq!(env.actor.name, raw["actor"]["name"], "{name}");
            assert_eq!(env.actor.function, raw["actor"]["function"], "{name}");
            assert_eq!(env.justification.as_deref(), raw["justification"].as_str());
            assert!(env.data.equals(&raw["data"]), "{name}");
            match raw["subject"]["pgn"].as_str() {
                Some(pgn) => {
                    let subject = env.subject.as_ref().expect("subject");
                    assert_eq!((subject.kind(), subject.number()), (SubjectKind::Pgn, pgn));
                }
                None => assert!(env.subject.is_none(), "{name}"),
            }
        }
    }

    #[test]
    fn numbers_reach_the_receiver_as_the_sender_wrote_their_value() {
        // Each float must be read as the f64 nearest to the sender's text (std's parser is correctly rounded), and
        // survive being written out and read again, as the inbox does with a stored payload. Without serde_json's
        // `float_roundtrip` the first came back one unit in the last place off (fuzz seed
        // `float-beyond-u64-round-trips.json`).
        let floats = [
            "4184467440737095516160",
            "18446744073709551616",
            "0.30000000000000004",
            "2.2250738585072014e-308",
            "5e-324",
            "1.7976931348623157e308",
            "9007199254740993.0",
            "0.1",
            "-123.456e-7",
        ];
        for text in floats {
            let body = format!(
                r#"{{"to":"x","type":"t","purpose":"p","actor":{{"id":"a","name":"b","function":"c"}},"data":{{"n":{text}}}}}"#
            );
            let env = parse(body.as_bytes(), &Limits::default()).unwrap();
            let got = env.data.get("n").and_then(Node::as_f64).unwrap();
            let want: f64 = text.parse().unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{text} was read as {got:e}");
            let delivered: Value =
                serde_json::from_slice(&serde_json::to_vec(&env.data).unwrap()).unwrap();
            assert_eq!(
                delivered["n"].as_f64().unwrap().to_bits(),
                want.to_bits(),
                "{text} delivered"
            );
        }
        // Integers stay integers, exactly.
        let body = br#"{"to":"x","type":"t","purpose":"p","actor":{"id":"a","name":"b","function":"c"},"data":{"n":18446744073709551615,"m":-9223372036854775808}}"#;
        let env = parse(body, &Limits::default()).unwrap();
        assert_eq!(
            serde_json::to_string(&env.data).unwrap(),
            r#"{"n":18446744073709551615,"m":-9223372036854775808}"#
        );
    }

    #[test]
    fn data_keeps_its_key_order() {
        let env = parse(&examples()[0].1, &Limits::default()).unwrap();
        let keys: Vec<&str> = env.data.as_object().unwrap().keys().collect();
        assert_eq!(&keys[..3], ["leerling", "ouders", "school"]);
    }

    #[test]
    fn key_order_does_not_matter() {
        for (name, bytes) in examples() {
            let original = parse(bytes, &Limits::default()).unwrap();
            let Value::Object(map) = example(name) else {
                unreachable!()
            };
            let reversed: serde_json::Map<String, Value> = map.into_iter().rev().collect();
            let body = serde_json::to_vec(&Value::Object(reversed)).unwrap();
            assert_eq!(
                parse(&body, &Limits::default()).unwrap(),
                original,
                "{name}"
            );
        }
        let body = br#"{"data":{},"actor":{"function":"f","name":"n","id":"i"},"purpose":"p","type":"t","to":"x"}"#;
        let env = parse(body, &Limits::default()).unwrap();
        assert_eq!((env.to.as_str(), env.actor.id.as_str()), ("x", "i"));
        assert!(env.subject.is_none() && env.justification.is_none());
    }

    #[test]
    fn surrounding_whitespace_is_fine() {
        let mut body = b" \n\t".to_vec();
        body.extend(with("to", json!("lyceum-zuid")));
        body.extend(b"\r\n ");
        assert!(parse(&body, &Limits::default()).is_ok());
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let mut body = with("data", json!({"naam": "CANARY-UTF8-"}));
        let at = body.windows(4).position(|w| w == b"UTF8").unwrap();
        body[at] = 0xff;
        let err = assert_refused(&body, codes::INVALID_UTF8, 400);
        assert_clean(&err, &["CANARY"]);
        assert_refused(b"\xc3\x28", codes::INVALID_UTF8, 400);
        assert_refused(b"{\"to\": \"\xed\xa0\x80\"}", codes::INVALID_UTF8, 400);
        assert_eq!(
            parse_strict_json(b"\"\xf0\x28\x8c\x28\"", 32)
                .unwrap_err()
                .code(),
            codes::INVALID_UTF8
        );
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        let good = String::from_utf8(with("to", json!("x"))).unwrap();
        let bodies = [
            String::new(),
            " ".into(),
            "{".into(),
            r#"{"to": "CANARY-SYNTAX""#.into(),
            r#"{"to": 'CANARY-SYNTAX'}"#.into(),
            r#"{"to": "CANARY-SYNTAX",}"#.into(),
            r#"{to: "CANARY-SYNTAX"}"#.into(),
            r#"{"to": "CANARY-SYNTAX" "type": "x"}"#.into(),
            "{\"to\": \"CANARY-\u{1}SYNTAX\"}".into(),
            r#"{"to": "CANARY\x-SYNTAX"}"#.into(),
            r#"{"n": 01}"#.into(),
            r#"{"n": 1e999999}"#.into(),
            r#"{"n": NaN}"#.into(),
            format!("{good} CANARY-TRAILING"),
            format!("{good}{good}"),
            format!("{good}]"),
            format!("\u{feff}{good}"),
        ];
        for body in &bodies {
            let err = assert_refused(body.as_bytes(), codes::MALFORMED_JSON, 400);
            assert_clean(&err, &["CANARY"]);
            assert!(err.detail().contains("line"), "{err}");
        }
    }

    #[test]
    fn lone_surrogate_escapes_are_malformed_json() {
        for escape in [
            r"\ud800",
            r"\udc00",
            r"\udbff\u0041",
            r"\ud800\ud800",
            r"\ud800x",
        ] {
            let body = format!(r#"{{"to": "x", "data": {{"naam": "CANARY{escape}CANARY"}}}}"#);
            let err = assert_refused(body.as_bytes(), codes::MALFORMED_JSON, 400);
            assert_clean(&err, &["CANARY"]);
            assert_eq!(
                parse_strict_json(format!("\"{escape}\"").as_bytes(), 32)
                    .unwrap_err()
                    .code(),
                codes::MALFORMED_JSON
            );
        }
        assert_eq!(
            parse_strict_json(br#""\ud83d\ude00""#, 32).unwrap(),
            json!("\u{1F600}")
        );
    }

    #[test]
    fn top_level_must_be_an_object() {
        for body in [
            "[]",
            "\"CANARY-TOP\"",
            "42",
            "null",
            "true",
            r#"[{"to": "x"}]"#,
        ] {
            let err = assert_refused(body.as_bytes(), codes::MALFORMED_JSON, 400);
            assert_clean(&err, &["CANARY"]);
        }
    }

    #[test]
    fn depth_32_is_accepted_and_33_refused() {
        assert!(parse_strict_json(nested(32).as_bytes(), 32).is_ok());
        let err = parse_strict_json(nested(33).as_bytes(), 32).unwrap_err();
        assert_eq!((err.code(), err.status()), (codes::TOO_DEEP, 400));
        assert!(parse_strict_json(nested(5).as_bytes(), 5).is_ok());
        assert_eq!(
            parse_strict_json(nested(6).as_bytes(), 5)
                .unwrap_err()
                .code(),
            codes::TOO_DEEP
        );
        assert!(parse_strict_json(b"1", 0).is_ok());
        assert_eq!(
            parse_strict_json(b"{}", 0).unwrap_err().code(),
            codes::TOO_DEEP
        );

        let objects = |depth: usize| "{\"k\":".repeat(depth - 1) + "{}" + &"}".repeat(depth - 1);
        assert!(parse_strict_json(objects(32).as_bytes(), 32).is_ok());
        assert_eq!(
            parse_strict_json(objects(33).as_bytes(), 32)
                .unwrap_err()
                .code(),
            codes::TOO_DEEP
        );

        // The envelope is level 1 and `data` level 2, so `data` may hold 30 more levels.
        let envelope = |inner: usize| {
            let mut body = String::from_utf8(with("data", json!({"x": "PLACEHOLDER"}))).unwrap();
            body = body.replace("\"PLACEHOLDER\"", &nested(inner));
            body
        };
        assert!(parse(envelope(30).as_bytes(), &Limits::default()).is_ok());
        let err = assert_refused(envelope(31).as_bytes(), codes::TOO_DEEP, 400);
        assert!(err.detail().contains("`data`"), "{err}");
        let limits = Limits {
            max_depth: 40,
            ..Limits::default()
        };
        assert!(parse(envelope(31).as_bytes(), &limits).is_ok());
    }

    #[test]
    fn limits_above_serde_json_recursion_limit_still_report_too_deep() {
        let err = parse_strict_json(nested(200).as_bytes(), 1000).unwrap_err();
        assert_eq!(err.code(), codes::TOO_DEEP);
        assert!(parse_strict_json(nested(100).as_bytes(), 1000).is_ok());
    }

    #[test]
    fn ten_megabytes_of_nesting_is_refused_without_overflowing_the_stack() {
        const SIZE: usize = 10 * 1024 * 1024;
        let arrays = "[".repeat(SIZE);
        assert_refused(arrays.as_bytes(), codes::TOO_DEEP, 400);
        let closed = nested(SIZE / 2);
        assert_refused(closed.as_bytes(), codes::TOO_DEEP, 400);
        let objects = "{\"a\":".repeat(SIZE / 5);
        assert_refused(objects.as_bytes(), codes::TOO_DEEP, 400);
        let in_data = format!(
            r#"{{"to":"x","type":"t","purpose":"p","actor":{{"id":"i","name":"n","function":"f"}},"data":{{"x":{}}}}}"#,
            nested(SIZE / 2)
        );
        assert_refused(in_data.as_bytes(), codes::TOO_DEEP, 400);
        assert_eq!(
            parse_strict_json(arrays.as_bytes(), usize::MAX)
                .unwrap_err()
                .code(),
            codes::TOO_DEEP
        );
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let good = String::from_utf8(with("to", json!("x"))).unwrap();
        let top = good.replacen("{", r#"{"to": "CANARY-DUP","#, 1);
        let err = assert_refused(top.as_bytes(), codes::DUPLICATE_KEY, 400);
        assert!(err.detail().contains("`to`"), "{err}");
        assert_clean(&err, &["CANARY"]);

        let unknown_top = good.replacen("{", r#"{"CANARY-K": 1, "CANARY-K": 2,"#, 1);
        let err = assert_refused(unknown_top.as_bytes(), codes::DUPLICATE_KEY, 400);
        assert_clean(&err, &["CANARY"]);

        for data in [
            r#"{"CANARY-KEY": 1, "CANARY-KEY": 2}"#,
            r#"{"a": {"b": [{"CANARY-KEY": "v", "CANARY-KEY": "CANARY-V"}]}}"#,
            r#"{"CANARY-KEY": 1, "\u0043ANARY-KEY": 2}"#,
            r#"{"CANARY-KEY": {}, "x": 1, "CANARY-KEY": {}}"#,
        ] {
            let body = good.replace(r#"{"leerling":{"voornamen":"CANARY-BASE"}}"#, data);
            assert_ne!(body, good);
            let err = assert_refused(body.as_bytes(), codes::DUPLICATE_KEY, 400);
            assert!(err.detail().contains("`data`"), "{err}");
            assert_clean(&err, &["CANARY"]);
        }
        let subject = good.replace(
            r#"{"pgn":"628194821"}"#,
            r#"{"pgn":"628194821","pgn":"628194821"}"#,
        );
        let err = assert_refused(subject.as_bytes(), codes::DUPLICATE_KEY, 400);
        assert_clean(&err, &["628194821"]);

        assert_eq!(
            parse_strict_json(br#"[{"a":1},{"a":2}]"#, 32).unwrap(),
            json!([{"a":1},{"a":2}])
        );
        assert_eq!(
            parse_strict_json(br#"{"a":{"a":{"a":1}}}"#, 32).unwrap()["a"]["a"]["a"],
            1
        );
        assert_eq!(
            parse_strict_json(br#"{"a":1,"a":1}"#, 32)
                .unwrap_err()
                .code(),
            codes::DUPLICATE_KEY
        );
    }

    #[test]
    fn duplicate_keys_are_refused_in_large_objects_wherever_they_stand() {
        let good = String::from_utf8(with("to", json!("x"))).unwrap();
        let members =
            |n: usize| -> Vec<String> { (0..n).map(|i| format!(r#""k{i}": {i}"#)).collect() };
        let n = LINEAR_DUPLICATE_CHECK * 3;
        // Both in the part compared one by one, one on each side of it, both after it, an escaped twin.
        for (first, second) in [(1, 5), (2, n - 1), (LINEAR_DUPLICATE_CHECK + 3, n - 2)] {
            let mut m = members(n);
            m[second] = format!(r#""k{first}": "CANARY-V""#);
            let data = format!("{{{}}}", m.join(","));
            let body = good.replace(r#"{"leerling":{"voornamen":"CANARY-BASE"}}"#, &data);
            let err = assert_refused(body.as_bytes(), codes::DUPLICATE_KEY, 400);
            assert!(err.detail().contains("`data`"), "{err}");
            assert_clean(&err, &["CANARY"]);
        }
        let mut m = members(n);
        m[n - 1] = r#""\u006b3": 0"#.to_owned();
        let data = format!("{{{}}}", m.join(","));
        assert_eq!(
            parse_strict_json(data.as_bytes(), 32).unwrap_err().code(),
            codes::DUPLICATE_KEY
        );
        // Without a repeated key, a large object is read whole and in order.
        let data = format!("{{{}}}", members(n).join(","));
        let body = good.replace(r#"{"leerling":{"voornamen":"CANARY-BASE"}}"#, &data);
        let env = parse(body.as_bytes(), &Limits::default()).unwrap();
        let keys: Vec<&str> = env.data.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), n);
        assert_eq!(
            (keys[0], keys[n - 1]),
            ("k0", format!("k{}", n - 1).as_str())
        );
        // A top-level key repeated after many others is still named.
        let extra: String = (0..n).map(|i| format!(r#""x{i}": 1,"#)).collect();
        let top = good.replacen("{", &format!(r#"{{"to": "CANARY-DUP",{extra}"#), 1);
        let err = assert_refused(top.as_bytes(), codes::DUPLICATE_KEY, 400);
        assert!(err.detail().contains("`to`"), "{err}");
        assert_clean(&err, &["CANARY"]);
    }

    #[test]
    fn keys_and_strings_without_escapes_borrow_from_the_body() {
        let body =
            br#"{"to":"x","type":"t","purpose":"p","actor":{"id":"i","name":"n","function":"f"},
            "data":{"plain":"tekst","escaped":"a\"b","nested":{"k\u0065y":["w"]}}}"#;
        let env = parse(body, &Limits::default()).unwrap();
        let Node::Object(data) = &env.data else {
            panic!("data is an object")
        };
        let borrowed = |s: &Cow<str>| matches!(s, Cow::Borrowed(_));
        let members: Vec<_> = data.clone().into_members().collect();
        assert!(members.iter().all(|(k, _)| borrowed(k)));
        assert!(matches!(&members[0].1, Node::String(s) if borrowed(s) && s == "tekst"));
        assert!(matches!(&members[1].1, Node::String(s) if !borrowed(s) && s == "a\"b"));
        let Node::Object(nested) = &members[2].1 else {
            panic!("an object")
        };
        let (key, list) = nested.clone().into_members().next().unwrap();
        assert!(!borrowed(&key) && key == "key");
        assert!(matches!(&list, Node::Array(a) if matches!(&a[0], Node::String(s) if borrowed(s))));
    }

    #[test]
    fn unknown_envelope_keys_are_named_and_truncated() {
        let err = assert_refused(
            &with("sender", json!("CANARY-VALUE")),
            codes::UNKNOWN_ENVELOPE_KEY,
            400,
        );
        assert!(err.detail().contains("'sender'"), "{err}");
        assert_clean(&err, &["CANARY"]);

        let long_key = format!("{}{}", "k".repeat(64), "CANARY-TAIL");
        let err = assert_refused(&with(&long_key, json!(1)), codes::UNKNOWN_ENVELOPE_KEY, 400);
        assert!(err.detail().contains(&"k".repeat(64)), "{err}");
        assert_clean(&err, &["CANARY", "k".repeat(65).as_str()]);

        let multibyte = "é".repeat(100);
        let err = assert_refused(
            &with(&multibyte, json!(1)),
            codes::UNKNOWN_ENVELOPE_KEY,
            400,
        );
        assert!(err.detail().contains(&"é".repeat(64)));
        assert!(!err.detail().contains(&"é".repeat(65)));

        let err = assert_refused(
            &with("bad\nkey", json!(1)),
            codes::UNKNOWN_ENVELOPE_KEY,
            400,
        );
        assert!(!err.detail().contains('\n'), "{err}");

        // Envelope keys are case-sensitive.
        assert_refused(&with("Data", json!({})), codes::UNKNOWN_ENVELOPE_KEY, 400);
    }

    #[test]
    fn missing_or_mistyped_fields_are_invalid_envelope() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (with("to", json!(5)), "`to`"),
            (with("to", json!(null)), "`to`"),
            (with("to", json!("")), "`to`"),
            (with("to", json!("  ")), "`to`"),
            (with("to", json!("x".repeat(MAX_NAME_CHARS + 1))), "`to`"),
            (without("to"), "`to`"),
            (with("type", json!(["CANARY-T"])), "`type`"),
            (without("type"), "`type`"),
            (with("purpose", json!({"p": "CANARY-P"})), "`purpose`"),
            (without("purpose"), "`purpose`"),
            (without("actor"), "`actor`"),
            (with("actor", json!("CANARY-ACTOR")), "`actor`"),
            (
                with("actor", json!({"id": "i", "name": "CANARY-N"})),
                "`actor.function`",
            ),
            (
                with(
                    "actor",
                    json!({"id": 7, "name": "CANARY-N", "function": "f"}),
                ),
                "`actor.id`",
            ),
            (
                with(
                    "actor",
                    json!({"id": "i", "name": "", "function": "CANARY-F"}),
                ),
                "`actor.name`",
            ),
            (
                with(
                    "actor",
                    json!({"id": "i", "name": "CANARY-N", "function": "f".repeat(201)}),
                ),
                "`actor.function`",
            ),
            (
                with(
                    "actor",
                    json!({"id": "i", "name": "n", "function": "f", "CANARY-EXTRA": "CANARY-V"}),
                ),
                "`actor`",
            ),
            (with("justification", json!(null)), "`justification`"),
            (
                with("justification", json!(["CANARY-J"])),
                "`justification`",
            ),
            (without("data"), "`data`"),
            (with("data", json!(["CANARY-DATA"])), "`data`"),
            (with("data", json!("CANARY-DATA")), "`data`"),
            (with("data", json!(null)), "`data`"),
        ];
        for (body, path) in &cases {
            let err = assert_refused(body, codes::INVALID_ENVELOPE, 422);
            assert!(err.detail().contains(path), "{path}: {err}");
            assert_clean(
                &err,
                &["CANARY", "628194821", "M. Visser", "mvisser", "Wettelijke"],
            );
        }
        let ok = with(
            "actor",
            json!({"id": "i", "name": "é".repeat(200), "function": "f"}),
        );
        assert!(parse(&ok, &Limits::default()).is_ok());
    }

    #[test]
    fn subject_shape_is_checked() {
        for subject in [
            json!("628194821"),
            json!(null),
            json!(["628194821"]),
            json!({}),
            json!({"pgn": "628194821", "bsn": "628194821"}),
            json!({"pgn": "628194821", "extra": "CANARY-S"}),
            json!({"PGN": "628194821"}),
            json!({"id": "628194821"}),
            json!({"pgn": 628194821u64}),
            json!({"bsn": null}),
        ] {
            let err = assert_refused(
                &with("subject", subject.clone()),
                codes::INVALID_SUBJECT,
                422,
            );
            assert!(err.detail().contains("subject"), "{subject}: {err}");
            assert_clean(&err, &["628194821", "CANARY"]);
        }
        let body = with("subject", json!({"bsn": "628194821"}));
        let env = parse(&body, &Limits::default()).unwrap();
        assert_eq!(env.subject.unwrap().kind(), SubjectKind::Bsn);
        assert!(parse(&without("subject"), &Limits::default())
            .unwrap()
            .subject
            .is_none());
    }

    #[test]
    fn subject_numbers_are_validated_without_showing_them() {
        let onderwijsnummer = {
            let base = [1u32, 0, 1, 2, 3, 4, 5, 6];
            let head: u32 = base.iter().zip((2..=9).rev()).map(|(d, w)| d * w).sum();
            let last = (0..10).find(|l| (head + l).rem_euclid(11) == 0).unwrap();
            format!("10123456{last}")
        };
        let ok = with("subject", json!({"onderwijsnummer": onderwijsnummer}));
        assert_eq!(
            parse(&ok, &Limits::default())
                .unwrap()
                .subject
                .unwrap()
                .kind(),
            SubjectKind::Onderwijsnummer
        );
        let cases = [
            ("pgn", "12345678", "9 digits"),
            ("pgn", "1234567890", "9 digits"),
            ("bsn", "12345678x", "9 digits"),
            ("bsn", "１２３４５６７８２", "9 digits"),
            ("pgn", "123456789", "11-proef"),
            ("bsn", "000000000", "11-proef"),
            ("onderwijsnummer", "628194821", "starts with 10"),
        ];
        for (kind, number, rule) in cases {
            let err = assert_refused(
                &with("subject", json!({kind: number})),
                codes::INVALID_SUBJECT_ID,
                422,
            );
            assert!(err.detail().contains(rule), "{kind}/{rule}: {err}");
            assert!(err.detail().contains(&format!("`subject.{kind}`")), "{err}");
            assert_clean(&err, &[number]);
        }
    }

    #[test]
    fn justification_length_is_limited_in_characters() {
        let ok = with("justification", json!("é".repeat(4000)));
        assert_eq!(
            parse(&ok, &Limits::default())
                .unwrap()
                .justification
                .unwrap()
                .chars()
                .count(),
            4000
        );
        let long = format!("CANARY-JUST{}", "x".repeat(4000));
        let err = assert_refused(
            &with("justification", json!(long)),
            codes::JUSTIFICATION_TOO_LONG,
            422,
        );
        assert!(err.detail().contains("4000"));
        assert_clean(&err, &["CANARY", "xxxx"]);
        let limits = Limits {
            max_justification_chars: 10,
            ..Limits::default()
        };
        assert!(parse(&with("justification", json!("0123456789")), &limits).is_ok());
        let err = parse(&with("justification", json!("01234567890")), &limits).unwrap_err();
        assert_eq!(err.code(), codes::JUSTIFICATION_TOO_LONG);
    }

    #[test]
    fn long_strings_and_keys_are_refused() {
        let limits = Limits {
            max_string_bytes: 16,
            ..Limits::default()
        };
        let base_ok = serde_json::to_vec(&json!({
            "to": "x", "type": "t", "purpose": "p",
            "actor": {"id": "i", "name": "n", "function": "f"},
            "data": {"k": "0123456789abcdef"}
        }))
        .unwrap();
        assert!(parse(&base_ok, &limits).is_ok());
        let body = String::from_utf8(base_ok).unwrap();
        for (from, to) in [
            ("0123456789abcdef", "CANARY-0123456789"),
            ("\"k\"", "\"CANARY-0123456789\""),
        ] {
            let err = parse(body.replace(from, to).as_bytes(), &limits).unwrap_err();
            assert_eq!(
                (err.code(), err.status()),
                (codes::STRING_TOO_LONG, 400),
                "{err}"
            );
            assert!(err.detail().contains("`data`"), "{err}");
            assert_clean(&err, &["CANARY"]);
        }
        let escaped = body.replace(
            "0123456789abcdef",
            r"\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9",
        );
        assert_eq!(
            parse(escaped.as_bytes(), &limits).unwrap_err().code(),
            codes::STRING_TOO_LONG
        );
    }

    #[test]
    fn numbers_are_kept_as_serde_json_numbers() {
        let v = parse_strict_json(
            br#"[0, -1, 18446744073709551615, -9223372036854775808, 1.5, 1e3, -0.0]"#,
            32,
        )
        .unwrap();
        assert_eq!(v[2].as_u64(), Some(u64::MAX));
        assert_eq!(v[3].as_i64(), Some(i64::MIN));
        assert_eq!(v[4].as_f64(), Some(1.5));
        assert_eq!(v[5].as_f64(), Some(1000.0));
        assert_eq!(v, serde_json::from_str::<Value>(&v.to_string()).unwrap());
    }

    #[test]
    fn canary_values_never_reach_errors_or_debug() {
        let mut bodies: Vec<Vec<u8>> = vec![
            with("to", json!(["CANARY-1"])),
            with("subject", json!({"pgn": "CANARY-2"})),
            with("subject", json!({"pgn": "CANARY-3", "bsn": "CANARY-3"})),
            with("actor", json!({"id": "CANARY-4", "name": "CANARY-4"})),
            with("justification", json!("CANARY-5".repeat(600))),
            with("data", json!("CANARY-6")),
            br#"{"to": "CANARY-7", "to": "CANARY-7"}"#.to_vec(),
            br#"{"data": {"CANARY-8": 1, "CANARY-8": 2}}"#.to_vec(),
            br#"{"data": "CANARY-9"#.to_vec(),
            br#"{"data": "CANARY-10\ud800"}"#.to_vec(),
            b"{\"data\": \"CANARY-11\xff\"}".to_vec(),
            format!(
                r#"{{"data": {}"CANARY-12"{}}}"#,
                "[".repeat(40),
                "]".repeat(40)
            )
            .into_bytes(),
            br#"["CANARY-13"]"#.to_vec(),
            br#"{"data": {}} "CANARY-14""#.to_vec(),
        ];
        bodies.push(
            with("data", json!({"leerling": "CANARY-15"}))
                .into_iter()
                .filter(|b| *b != b'}')
                .collect(),
        );
        for body in &bodies {
            let err = refused(body);
            assert_clean(&err, &["CANARY"]);
        }
    }

    #[test]
    fn envelope_debug_redacts_subject_justification_and_data() {
        for (name, bytes) in examples() {
            let env = parse(bytes, &Limits::default()).unwrap();
            let debug = format!("{env:?}");
            assert!(!debug.contains("CANARY"), "{name}: {debug}");
            if let Some(subject) = &env.subject {
                assert!(!debug.contains(subject.number()), "{name}");
            }
            if let Some(justification) = &env.justification {
                assert!(!debug.contains(justification.as_str()), "{name}");
            }
            assert!(debug.contains(&env.message_type), "{name}");
        }
    }

    #[test]
    fn error_accessors_and_display() {
        let err = refused(&with("to", json!(5)));
        assert_eq!(err.code(), "invalid-envelope");
        assert_eq!(err.status(), 422);
        assert_eq!(
            err.to_string(),
            format!("422 invalid-envelope: {}", err.detail())
        );
        let boxed: Box<dyn std::error::Error> = Box::new(err);
        assert!(boxed.to_string().contains("`to`"));
    }

    /// Seeds named `bad-*` must be refused with the code their name promises; examples must parse.
    fn expected_seed_code(name: &str) -> Option<Option<&'static str>> {
        const TABLE: [(&str, &str); 11] = [
            ("bad-deep-nesting", codes::TOO_DEEP),
            ("bad-duplicate-key", codes::DUPLICATE_KEY),
            ("bad-invalid-utf8", codes::INVALID_UTF8),
            ("bad-lone", codes::MALFORMED_JSON),
            ("bad-trailing-garbage", codes::MALFORMED_JSON),
            ("bad-not-an-object", codes::MALFORMED_JSON),
            ("bad-empty", codes::MALFORMED_JSON),
            ("bad-unknown-key", codes::UNKNOWN_ENVELOPE_KEY),
            ("bad-pgn-checksum", codes::INVALID_SUBJECT_ID),
            ("bad-subject-two-ids", codes::INVALID_SUBJECT),
            ("bad-to-not-string", codes::INVALID_ENVELOPE),
        ];
        if EXAMPLES.contains(&name) {
            return Some(None);
        }
        TABLE
            .iter()
            .find(|(prefix, _)| name.starts_with(prefix))
            .map(|(_, code)| Some(*code))
    }

    #[test]
    fn fuzz_corpus_replays_without_panic() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/envelope");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/envelope exists") {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap();
            let result = parse(&bytes, &Limits::default());
            let _ = parse_strict_json(&bytes, 32);
            match (&result, expected_seed_code(&name)) {
                (Ok(env), Some(None) | None) => {
                    let again = serde_json::to_vec(&env.data).unwrap();
                    assert!(parse_strict_json(&again, 32).unwrap().is_object(), "{name}");
                }
                (Err(err), Some(Some(code))) => assert_eq!(err.code(), code, "{name}: {err}"),
                (Err(err), None) => assert!(matches!(err.status(), 400 | 422), "{name}"),
                (other, expected) => panic!("{name}: got {other:?}, expected {expected:?}"),
            }
            if let Err(err) = &result {
                if err.code() != codes::UNKNOWN_ENVELOPE_KEY {
                    assert_clean(err, &["CANARY"]);
                }
            }
            seen += 1;
        }
        assert!(seen >= 7 + 10, "only {seen} seeds in {}", dir.display());
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((".*", inner), 0..8)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Flip(usize, u8),
        Insert(usize, u8),
        Delete(usize),
        Truncate(usize),
        Duplicate(usize, usize),
    }

    fn arb_mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
            (
                any::<usize>(),
                prop::sample::select(b"{}[]\",:\\u0d8 \xff".to_vec())
            )
                .prop_map(|(i, b)| Mutation::Insert(i, b)),
            any::<usize>().prop_map(Mutation::Delete),
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        ]
    }

    fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
        let len = bytes.len().max(1);
        match *mutation {
            Mutation::Flip(i, b) if !bytes.is_empty() => bytes[i % len] ^= b,
            Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
            Mutation::Delete(i) if !bytes.is_empty() => {
                bytes.remove(i % len);
            }
            Mutation::Truncate(i) => bytes.truncate(i % (bytes.len() + 1)),
            Mutation::Duplicate(i, n) if !bytes.is_empty() => {
                let start = i % len;
                let end = (start + n).min(bytes.len());
                let copy = bytes[start..end].to_vec();
                bytes.splice(end..end, copy);
            }
            _ => {}
        }
    }

    proptest! {
        // Failures are not persisted beside the sources; add a reproducer to fuzz/corpus instead.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn parse_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, &Limits::default());
            let _ = parse_strict_json(&bytes, 32);
        }

        #[test]
        fn parse_never_panics_on_json_like_text(text in r#"[\[\]{}",:0-9a-z\\ ]{0,256}"#) {
            let _ = parse(text.as_bytes(), &Limits::default());
            let _ = parse_strict_json(text.as_bytes(), 4);
        }

        #[test]
        fn mutated_examples_never_panic_nor_leak(
            which in 0usize..7,
            mutations in prop::collection::vec(arb_mutation(), 1..8),
        ) {
            let mut bytes = examples()[which].1.clone();
            for mutation in &mutations {
                mutate(&mut bytes, mutation);
            }
            if let Err(err) = parse(&bytes, &Limits::default()) {
                prop_assert!(matches!(err.status(), 400 | 422));
                if err.code() != codes::UNKNOWN_ENVELOPE_KEY {
                    prop_assert!(!err.detail().contains("CANARY"), "{}", err);
                    let debug = format!("{err:?}");
                    prop_assert!(!debug.contains("CANARY"), "{}", debug);
                }
            }
        }

        #[test]
        fn strict_parse_round_trips_valid_json(value in arb_json()) {
            // serde_json's own parser is the reference (its float parsing is not exactly round-trip).
            for text in [serde_json::to_vec(&value).unwrap(), serde_json::to_vec_pretty(&value).unwrap()] {
                let reference: Value = serde_json::from_slice(&text).unwrap();
                prop_assert_eq!(parse_strict_json(&text, 32).unwrap(), reference);
            }
        }

        #[test]
        fn valid_envelopes_round_trip(data in prop::collection::vec((".*", arb_json()), 0..6), justification in ".{0,50}") {
            let data = Value::Object(data.into_iter().collect());
            let mut body = base();
            body["data"] = data.clone();
            body["justification"] = json!(justification);
            let text = serde_json::to_vec(&body).unwrap();
            let reference: Value = serde_json::from_slice(&text).unwrap();
            let env = parse(&text, &Limits::default()).unwrap();
            prop_assert!(env.data.equals(&reference["data"]));
            prop_assert_eq!(env.data.as_object().map(Object::len), data.as_object().map(serde_json::Map::len));
            prop_assert_eq!(env.justification, Some(justification));
        }
    }
}
