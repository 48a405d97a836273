//! The envelope's `data` as the policy reads it: a JSON tree whose keys and strings are slices of the request body.
//!
//! `envelope` builds it while it checks the strict JSON rules, and `policy::decide` walks it. Keys and strings that
//! need no unescaping are borrowed from the body, and an object is a vector of its members in the sender's order,
//! so reading a message makes one allocation per object or array instead of one per key and string (about a tenth
//! of the gateway's CPU per P1 message, BENCHMARKS.md). Duplicate keys never get this far: `envelope` refuses them.
//!
//! A `Node` holds pupil data: its `Debug` shows only JSON types and sizes, it has no `Display`, and nothing here may
//! log, trace or put a value in an error.

use std::borrow::Cow;

use serde::ser::{SerializeMap, SerializeSeq};
use serde_json::{Number, Value};

/// One JSON value of the message.
#[derive(Clone, PartialEq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    Object(Object<'a>),
}

/// A JSON object: its members in the order the sender wrote them, keys unique. Two objects are equal when they
/// have the same members, in any order (as `serde_json::Map`s are).
#[derive(Clone, Default)]
pub struct Object<'a>(Vec<(Cow<'a, str>, Node<'a>)>);

impl PartialEq for Object<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl<'a> Object<'a> {
    /// Members as read; the caller has made sure that no key repeats.
    pub(crate) fn from_members(members: Vec<(Cow<'a, str>, Node<'a>)>) -> Object<'a> {
        Object(members)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node<'a>)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_ref())
    }

    /// The member named `key`. Objects of a message are small; a linear search beats hashing the key.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Takes the member named `key` out of the object.
    pub fn remove(&mut self, key: &str) -> Option<Node<'a>> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(at).1)
    }

    pub fn into_members(self) -> impl Iterator<Item = (Cow<'a, str>, Node<'a>)> {
        self.0.into_iter()
    }
}

impl<'a> Node<'a> {
    /// The same tree, borrowing the strings of `value` (tests and tools that hold a `serde_json::Value`).
    pub fn from_value(value: &'a Value) -> Node<'a> {
        match value {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => Node::Number(n.clone()),
            Value::String(s) => Node::String(Cow::Borrowed(s)),
            Value::Array(a) => Node::Array(a.iter().map(Node::from_value).collect()),
            Value::Object(m) => Node::Object(Object(
                m.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Node::from_value(v)))
                    .collect(),
            )),
        }
    }

    /// An owned `serde_json::Value` of the same tree, members in the same order.
    pub fn into_value(self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::Number(n) => Value::Number(n),
            Node::String(s) => Value::String(s.into_owned()),
            Node::Array(a) => Value::Array(a.into_iter().map(Node::into_value).collect()),
            Node::Object(o) => Value::Object(
                o.0.into_iter()
                    .map(|(k, v)| (k.into_owned(), v.into_value()))
                    .collect(),
            ),
        }
    }

    /// Whether this is the same JSON value as `other` (numbers compare as `serde_json::Number` does).
    pub fn equals(&self, other: &Value) -> bool {
        match (self, other) {
            (Node::Null, Value::Null) => true,
            (Node::Bool(a), Value::Bool(b)) => a == b,
            (Node::Number(a), Value::Number(b)) => a == b,
            (Node::String(a), Value::String(b)) => a == b,
            (Node::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.equals(y))
            }
            (Node::Object(a), Value::Object(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, v)| b.get(k).is_some_and(|other| v.equals(other)))
            }
            _ => false,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }

    pub fn is_boolean(&self) -> bool {
        matches!(self, Node::Bool(_))
    }

    pub fn is_number(&self) -> bool {
        matches!(self, Node::Number(_))
    }

    pub fn is_string(&self) -> bool {
        matches!(self, Node::String(_))
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Node::Object(_))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Node::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Node::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Node<'a>]> {
        match self {
            Node::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Node::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.as_object()?.get(key)
    }

    /// The JSON type, as error details name it (never the value).
    pub fn type_name(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Number(_) => "a number",
            Node::String(_) => "a string",
            Node::Array(_) => "an array",
            Node::Object(_) => "an object",
        }
    }
}

/// Never the values: the JSON type and, for objects and arrays, how many members or elements.
impl std::fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::Object(o) => write!(f, "<redacted object, {} members>", o.len()),
            Node::Array(a) => write!(f, "<redacted array, {} elements>", a.len()),
            other => write!(f, "<redacted {}>", other.type_name()),
        }
    }
}

/// Serialises exactly as `serde_json::Value` does for the same tree (compact JSON is byte-identical).
impl serde::Serialize for Node<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => serializer.serialize_unit(),
            Node::Bool(b) => serializer.serialize_bool(*b),
            Node::Number(n) => n.serialize(serializer),
            Node::String(s) => serializer.serialize_str(s),
            Node::Array(a) => {
                let mut seq = serializer.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Node::Object(o) => {
                let mut map = serializer.serialize_map(Some(o.len()))?;
                for (k, v) in o.iter() {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "b": [1, -2, 2.5, null, true, "x\"y\u{e9}"],
            "a": {"nested": {"k": "v"}, "empty": {}, "list": []},
            "n": 18446744073709551615u64
        })
    }

    #[test]
    fn serialises_as_serde_json_does_and_converts_both_ways() {
        let value = sample();
        let node = Node::from_value(&value);
        assert_eq!(
            serde_json::to_string(&node).unwrap(),
            serde_json::to_string(&value).unwrap()
        );
        assert_eq!(
            serde_json::to_string_pretty(&node).unwrap(),
            serde_json::to_string_pretty(&value).unwrap()
        );
        assert!(node.equals(&value));
        assert_eq!(node.clone().into_value(), value);
    }

    #[test]
    fn equality_follows_serde_json() {
        let value = sample();
        let node = Node::from_value(&value);
        assert!(!node.equals(&json!({"b": [], "a": {}, "n": 1})));
        assert!(!node.equals(&json!([])));
        // Member order does not matter; number representation does, as for `serde_json::Value`.
        let reordered = json!({"a": {"list": [], "empty": {}, "nested": {"k": "v"}},
                                "n": 18446744073709551615u64, "b": [1, -2, 2.5, null, true, "x\"y\u{e9}"]});
        assert!(node.equals(&reordered));
        assert_eq!(
            json!(1) == json!(1.0),
            Node::from_value(&json!(1)).equals(&json!(1.0))
        );
    }

    #[test]
    fn objects_find_take_and_list_their_members_in_order() {
        let value = sample();
        let Node::Object(mut o) = Node::from_value(&value) else {
            panic!("an object")
        };
        assert_eq!(o.keys().collect::<Vec<_>>(), ["b", "a", "n"]);
        assert_eq!(
            o.get("a")
                .and_then(|a| a.get("nested"))
                .and_then(|n| n.get("k"))
                .and_then(Node::as_str),
            Some("v")
        );
        assert!(o.get("z").is_none());
        assert_eq!(o.remove("a").map(|a| a.type_name()), Some("an object"));
        assert_eq!(o.keys().collect::<Vec<_>>(), ["b", "n"]);
        assert!(o.remove("a").is_none());
        assert_eq!(o.get("n").and_then(Node::as_u64), Some(u64::MAX));
        assert_eq!(
            o.get("b").and_then(Node::as_array).map(<[Node]>::len),
            Some(6)
        );
    }
}
