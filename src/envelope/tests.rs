use super::*;
use proptest::prelude::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const EXAMPLES: [&str; 12] = [
    "P1-overstap-po-vo.json",
    "P2-tlv-aanvraag.json",
    "P3-verzuimmelding.json",
    "P4-signaal-wijkteam.json",
    "P5-terugkoppeling-school.json",
    "P6-status-verzuim.json",
    "P7-telling-thuiszitters.json",
    "P8-warme-overdracht.json",
    "P9-melding-veilig-thuis.json",
    "P10-ziekteverzuim-jgz.json",
    "P11-tlv-besluit.json",
    "P13-kerngroep-casus.json",
];

/// The committed `examples/`, else the copies in the fuzz seed corpus.
fn examples_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    [root.join("examples"), root.join("fuzz/corpus/envelope")]
        .into_iter()
        .find(|dir| EXAMPLES.iter().all(|name| dir.join(name).is_file()))
        .expect("the example envelopes are found in examples or fuzz/corpus/envelope")
}

/// An example as sent: a reply's `in_reply_to` placeholder (`REPLACE-WITH-THE-P4-MESSAGE-ID`) becomes a message id.
fn as_sent(bytes: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8(bytes).expect("examples are UTF-8");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("\"REPLACE-WITH-") {
        out.push_str(&rest[..i]);
        let end = rest[i + 1..].find('"').expect("closing quote") + i + 2;
        out.push_str("\"0190f3a1b2c3d4e5f60718293a4b5c6d\"");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out.into_bytes()
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
                    as_sent(std::fs::read(dir.join(name)).expect("example readable")),
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

fn assert_refused(body: &[u8], code: crate::refusal::ProblemCode, status: u16) -> EnvelopeError {
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
fn all_reference_examples_parse() {
    assert_eq!(examples().len(), 12);
    for (name, bytes) in examples() {
        let env = parse(bytes, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let raw = example(name);
        match &env.to {
            Addressing::One(to) => assert_eq!(*to, raw["to"], "{name}"),
            Addressing::Kerngroep {
                recipients,
                case_id,
            } => {
                assert_eq!(json!(recipients), raw["recipients"], "{name}");
                assert_eq!(*case_id, raw["case_id"], "{name}");
            }
        }
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
    assert_eq!(
        (env.to.receivers(), env.actor.id.as_str()),
        (&["x".to_owned()][..], "i")
    );
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
    let members = |n: usize| -> Vec<String> { (0..n).map(|i| format!(r#""k{i}": {i}"#)).collect() };
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
    let body = br#"{"to":"x","type":"t","purpose":"p","actor":{"id":"i","name":"n","function":"f"},
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
    // DOMAIN.md's example (python-stdnum's doctest): the weighted sum leaves remainder 5.
    let ok = with("subject", json!({"onderwijsnummer": "101222331"}));
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
        ("onderwijsnummer", "101234562", "11-proef"),
        ("onderwijsnummer", "100252333", "11-proef"),
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
fn expected_seed_code(name: &str) -> Option<Option<crate::refusal::ProblemCode>> {
    const TABLE: [(&str, crate::refusal::ProblemCode); 11] = [
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
        which in 0usize..EXAMPLES.len(),
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

#[test]
fn in_reply_to_is_a_message_id_and_is_never_echoed() {
    let id = "0190f3a1b2c3d4e5f60718293a4b5c6d";
    let body = with("in_reply_to", json!(id));
    let env = parse(&body, &Limits::default()).unwrap();
    assert_eq!(env.in_reply_to.as_deref(), Some(id));
    assert_eq!(
        parse(&serde_json::to_vec(&base()).unwrap(), &Limits::default())
            .unwrap()
            .in_reply_to,
        None
    );
    for bad in [
        json!("CANARY-REPLY"),
        json!(id.to_uppercase()),
        json!(&id[1..]),
        json!(format!("{id}0")),
        json!(42),
        json!(null),
    ] {
        let err = assert_refused(&with("in_reply_to", bad), codes::INVALID_ENVELOPE, 422);
        assert_clean(&err, &["CANARY-REPLY", &id.to_uppercase()]);
        assert!(err.detail().contains("in_reply_to"));
    }
}
