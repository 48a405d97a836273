//! Field paths: the catalogue form (`ouders[].telefoon`), concrete paths of one document
//! (`ouders[0].telefoon`), rule patterns (`ouders[].*`) and edits of a JSON tree by path.
//!
//! A key that does not fit the catalogue grammar is never echoed: keys are how a sender names a
//! field, but a careless sender could put a name in one, so such keys render as `<invalid-key>`.

use std::borrow::Cow;

#[cfg(test)]
use serde_json::Map;
use serde_json::Value;

use crate::data::Node;

/// Longest key the catalogue grammar accepts.
const MAX_KEY_LEN: usize = 64;
pub(super) const INVALID_KEY: &str = "<invalid-key>";

/// One step of a concrete path; keys borrow from the document (or the path text) they were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg<'a> {
    Key(Cow<'a, str>),
    Index(usize),
}

impl<'a> Seg<'a> {
    pub(super) fn key(k: &'a str) -> Seg<'a> {
        Seg::Key(Cow::Borrowed(k))
    }
}

pub(super) fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= MAX_KEY_LEN
        && k.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// True for a catalogue path: `name(.name)*`, each name optionally followed by one `[]`.
pub(super) fn valid_catalogue_path(p: &str) -> bool {
    !p.is_empty()
        && p.split('.').all(|seg| {
            let name = seg.strip_suffix("[]").unwrap_or(seg);
            valid_key(name)
        })
}

/// A rule's path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `leerling.geboortedatum`: exactly this catalogue path.
    Exact(String),
    /// `leerling.*` or `toetsen[].*`: every catalogue path below the prefix.
    Subtree(String),
    /// `*`: every field of the message type.
    All,
}

impl Pattern {
    pub(super) fn parse(p: &str) -> Option<Pattern> {
        if p == "*" {
            return Some(Pattern::All);
        }
        if let Some(prefix) = p.strip_suffix(".*") {
            return valid_catalogue_path(prefix).then(|| Pattern::Subtree(prefix.to_owned()));
        }
        valid_catalogue_path(p).then(|| Pattern::Exact(p.to_owned()))
    }

    pub fn matches(&self, catalogue_path: &str) -> bool {
        match self {
            Pattern::Exact(p) => p == catalogue_path,
            Pattern::Subtree(prefix) => catalogue_path
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.starts_with('.')),
            Pattern::All => true,
        }
    }

    /// Higher wins: an exact path beats any wildcard, a longer prefix beats a shorter one.
    pub fn specificity(&self) -> (u8, usize) {
        match self {
            Pattern::Exact(p) => (2, p.split('.').count()),
            Pattern::Subtree(prefix) => (1, prefix.split('.').count()),
            Pattern::All => (0, 0),
        }
    }
}

/// The catalogue form of a concrete path; `None` when a key does not fit the grammar.
pub(super) fn catalogue_path(segs: &[Seg]) -> Option<String> {
    let mut out = String::new();
    for s in segs {
        match s {
            Seg::Key(k) => {
                if !valid_key(k) {
                    return None;
                }
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(_) => out.push_str("[]"),
        }
    }
    Some(out)
}

/// The concrete path as reported to sender and log (`toetsen[0].score`).
pub(super) fn render(segs: &[Seg]) -> String {
    let mut out = String::new();
    for s in segs {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(if valid_key(k) { k } else { INVALID_KEY });
            }
            Seg::Index(i) => {
                out.push('[');
                push_index(&mut out, *i);
                out.push(']');
            }
        }
    }
    out
}

/// Appends `i` in decimal (as `to_string` would), without a temporary string.
pub(super) fn push_index(out: &mut String, i: usize) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut n = i;
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(buf[at..].iter().map(|&b| char::from(b)));
}

/// Parses a concrete path as rendered by `render`; `None` for anything else.
pub(super) fn parse_concrete(p: &str) -> Option<Vec<Seg<'_>>> {
    let mut segs = Vec::new();
    for part in p.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => part.split_at(i),
            None => (part, ""),
        };
        if !valid_key(name) {
            return None;
        }
        segs.push(Seg::key(name));
        while !rest.is_empty() {
            let inner = rest.strip_prefix('[')?;
            let close = inner.find(']')?;
            let idx: usize = inner[..close].parse().ok()?;
            segs.push(Seg::Index(idx));
            rest = &inner[close + 1..];
        }
    }
    Some(segs)
}

/// Calls `f` for every leaf (scalar) of `v` with its path. Empty objects and arrays have no leaves.
pub(super) fn for_each_leaf<'v>(v: &'v Value, f: &mut dyn FnMut(&[Seg<'v>], &'v Value)) {
    fn walk<'v>(v: &'v Value, segs: &mut Vec<Seg<'v>>, f: &mut dyn FnMut(&[Seg<'v>], &'v Value)) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    segs.push(Seg::key(k));
                    walk(child, segs, f);
                    segs.pop();
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    segs.push(Seg::Index(i));
                    walk(child, segs, f);
                    segs.pop();
                }
            }
            _ => f(segs, v),
        }
    }
    walk(v, &mut Vec::new(), f);
}

/// The value at a dotted path without array steps (`inzage.ouders_geinformeerd`).
pub(super) fn get_dotted<'v, 'b>(v: &'v Node<'b>, path: &str) -> Option<&'v Node<'b>> {
    path.split('.').try_fold(v, |cur, k| cur.get(k))
}

/// Inserts `leaf` at `segs` inside `root` (an object), creating objects and arrays on the way.
/// Array positions are kept: elements not (yet) filled are `null`.
#[cfg(test)]
pub(super) fn insert(root: &mut Value, segs: &[Seg], leaf: Value) {
    let Some((first, rest)) = segs.split_first() else {
        *root = leaf;
        return;
    };
    let next_is_index = matches!(rest.first(), Some(Seg::Index(_)));
    let empty = || {
        if next_is_index {
            Value::Array(Vec::new())
        } else {
            Value::Object(Map::new())
        }
    };
    let slot: &mut Value = match first {
        Seg::Key(k) => {
            if !root.is_object() {
                *root = Value::Object(Map::new());
            }
            let Value::Object(m) = root else { return };
            if !m.contains_key(k.as_ref()) {
                m.insert(k.as_ref().to_owned(), empty());
            }
            m.get_mut(k.as_ref()).expect("inserted above")
        }
        Seg::Index(i) => {
            if !root.is_array() {
                *root = Value::Array(Vec::new());
            }
            let Value::Array(a) = root else { return };
            if a.len() <= *i {
                a.resize(*i + 1, Value::Null);
            }
            if a[*i].is_null() && !rest.is_empty() {
                a[*i] = empty();
            }
            &mut a[*i]
        }
    };
    insert(slot, rest, leaf);
}

/// True for a container left with nothing in it: `{}`, `[]` or an array of only `null`s.
fn is_hollow(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.iter().all(Value::is_null),
        _ => false,
    }
}

/// Removes the value at `segs`; containers left hollow on the way up are removed too (an array
/// element becomes `null` so the positions of its siblings stay valid).
pub(super) fn remove(root: &mut Value, segs: &[Seg]) {
    fn go(cur: &mut Value, segs: &[Seg]) {
        let Some((first, rest)) = segs.split_first() else {
            return;
        };
        match (first, cur) {
            (Seg::Key(k), Value::Object(m)) => {
                if rest.is_empty() {
                    m.shift_remove(k.as_ref());
                } else if let Some(child) = m.get_mut(k.as_ref()) {
                    go(child, rest);
                    if is_hollow(child) {
                        m.shift_remove(k.as_ref());
                    }
                }
            }
            (Seg::Index(i), Value::Array(a)) => {
                if let Some(child) = a.get_mut(*i) {
                    if rest.is_empty() {
                        *child = Value::Null;
                    } else {
                        go(child, rest);
                        if is_hollow(child) {
                            *child = Value::Null;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    go(root, segs);
}

/// Removes the given concrete paths (as in `Decision::consent_dependent`) from delivered data,
/// used when a consent lapsed between sending and fetching. Unknown or absent paths are ignored.
pub fn strip_paths(data: &mut Value, paths: &[String]) {
    for p in paths {
        if let Some(segs) = parse_concrete(p) {
            remove(data, &segs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn catalogue_paths_follow_the_grammar() {
        assert!(valid_catalogue_path("ouders[].telefoon"));
        assert!(valid_catalogue_path("dimensies[]"));
        assert!(valid_catalogue_path("leerling.adres.postcode"));
        assert!(!valid_catalogue_path("ouders[0].telefoon"));
        assert!(!valid_catalogue_path("Leerling.naam"));
        assert!(!valid_catalogue_path("leerling..naam"));
        assert!(!valid_catalogue_path(""));
    }

    #[test]
    fn patterns_match_and_rank() {
        let exact = Pattern::parse("toetsen[].score").unwrap();
        let sub = Pattern::parse("toetsen[].*").unwrap();
        let all = Pattern::parse("*").unwrap();
        assert!(exact.matches("toetsen[].score"));
        assert!(sub.matches("toetsen[].score"));
        assert!(!sub.matches("toetsen[]"));
        assert!(!Pattern::parse("leerling.*")
            .unwrap()
            .matches("leerlingen.x"));
        assert!(all.matches("x"));
        assert!(exact.specificity() > sub.specificity());
        assert!(sub.specificity() > all.specificity());
        assert!(
            Pattern::parse("leerling.adres.*").unwrap().specificity()
                > Pattern::parse("leerling.*").unwrap().specificity()
        );
        assert_eq!(Pattern::parse("toetsen.*.x"), None);
    }

    #[test]
    fn concrete_paths_round_trip_and_hide_odd_keys() {
        let segs = vec![
            Seg::Key("toetsen".into()),
            Seg::Index(3),
            Seg::Key("score".into()),
        ];
        assert_eq!(render(&segs), "toetsen[3].score");
        assert_eq!(parse_concrete("toetsen[3].score"), Some(segs.clone()));
        assert_eq!(catalogue_path(&segs).as_deref(), Some("toetsen[].score"));
        let odd = vec![Seg::Key("Sanne Jansen".into())];
        assert_eq!(render(&odd), INVALID_KEY);
        assert_eq!(catalogue_path(&odd), None);
        assert_eq!(parse_concrete("a[x]"), None);
    }

    #[test]
    fn dotted_paths_find_values_in_small_and_large_objects() {
        let mut big = serde_json::Map::new();
        for i in 0..20 {
            big.insert(format!("k{i}"), json!({ "x": i }));
        }
        let v = json!({"a": {"b": 1, "c": {"d": "e"}}, "big": big});
        let v = Node::from_value(&v);
        let at = |path| get_dotted(&v, path).map(|n| n.clone().into_value());
        assert_eq!(at("a.b"), Some(json!(1)));
        assert_eq!(at("a.c.d"), Some(json!("e")));
        assert_eq!(at("a.x"), None);
        assert_eq!(at("a.b.c"), None);
        assert_eq!(at("big.k17.x"), Some(json!(17)));
        assert_eq!(at("big.k20"), None);
    }

    #[test]
    fn indices_render_in_decimal() {
        for i in [0, 7, 10, 99, 100, 12345, usize::MAX] {
            let mut s = String::from("x");
            push_index(&mut s, i);
            assert_eq!(s, format!("x{i}"));
        }
    }

    #[test]
    fn insert_keeps_positions_and_remove_prunes() {
        let mut v = json!({});
        insert(
            &mut v,
            &parse_concrete("bijlagen[1].titel").unwrap(),
            json!("t"),
        );
        insert(&mut v, &parse_concrete("a.b").unwrap(), json!(1));
        assert_eq!(
            v,
            json!({"bijlagen": [null, {"titel": "t"}], "a": {"b": 1}})
        );
        strip_paths(&mut v, &["bijlagen[1].titel".into(), "nope[2]".into()]);
        assert_eq!(v, json!({"a": {"b": 1}}));
        strip_paths(&mut v, &["a.b".into()]);
        assert_eq!(v, json!({}));
    }
}
