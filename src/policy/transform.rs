//! Value checks and transformations of single fields: kind checks, generalisation (date → year,
//! postcode → pc4, number → band) and keyed pseudonyms.
//!
//! Pseudonyms use a key per receiving organisation, HMAC-SHA256(gateway secret, organisation id),
//! so two receivers never get the same pseudonym for the same pupil or value and cannot link.
//! Functions here return `None` for a value they cannot handle; they never report the value.

use std::borrow::Cow;

use ring::hmac;
use serde_json::Value;

use crate::data::Node;

use super::{GeneraliseMethod, ValueKind};

/// `YYYY-MM-DD`, a date of the calendar; exactly what `time::Date::parse` with `[year]-[month]-[day]` accepts for a string of ten
/// bytes (a sign before the year would make it longer), without its format machinery.
pub(super) fn parse_date(v: &Node) -> Option<time::Date> {
    let b = v.as_str()?.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |digits: &[u8]| {
        digits.iter().try_fold(0u16, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u16::from(d - b'0'))
        })
    };
    let year = num(&b[..4])?;
    let month = time::Month::try_from(u8::try_from(num(&b[5..7])?).ok()?).ok()?;
    let day = u8::try_from(num(&b[8..])?).ok()?;
    time::Date::from_calendar_date(i32::from(year), month, day).ok()
}

/// The four digits of a Dutch postcode (`1234AB`, `1234 ab`; spaces anywhere are ignored); `None` if not one.
fn pc4(v: &Node) -> Option<[u8; 4]> {
    let mut b = [0u8; 6];
    let mut n = 0;
    for &c in v.as_str()?.as_bytes() {
        if c == b' ' {
            continue;
        }
        if n == b.len() {
            return None;
        }
        b[n] = c;
        n += 1;
    }
    let ok = n == 6
        && b[0] != b'0'
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4..].iter().all(u8::is_ascii_alphabetic);
    ok.then(|| [b[0], b[1], b[2], b[3]])
}

pub(super) fn kind_ok(kind: Option<ValueKind>, v: &Node) -> bool {
    if v.is_null() {
        return false;
    }
    match kind {
        None => true,
        Some(ValueKind::String) => v.is_string() || v.is_number(),
        Some(ValueKind::Text) => v.is_string(),
        Some(ValueKind::Date) => parse_date(v).is_some(),
        Some(ValueKind::Bool) => v.is_boolean(),
        Some(ValueKind::Number) => v.is_number(),
        Some(ValueKind::Postcode) => pc4(v).is_some(),
    }
}

pub(super) fn in_closed_list(values: &[String], v: &Node) -> bool {
    v.as_str().is_some_and(|s| values.iter().any(|x| x == s))
}

pub(super) fn generalise(method: GeneraliseMethod, v: &Node) -> Option<Value> {
    match method {
        GeneraliseMethod::DateYear => {
            parse_date(v).map(|d| Value::String(format!("{:04}", d.year())))
        }
        GeneraliseMethod::DateYearMonth => parse_date(v)
            .map(|d| Value::String(format!("{:04}-{:02}", d.year(), u8::from(d.month())))),
        GeneraliseMethod::PostcodePc4 => {
            pc4(v).map(|d| Value::String(d.iter().map(|&c| char::from(c)).collect()))
        }
        GeneraliseMethod::NumberBand(band) => {
            let n = v.as_f64()?;
            if !n.is_finite() || !(0.0..1e15).contains(&n) {
                return None;
            }
            let band = u64::from(band);
            let low = (n.floor() as u64) / band * band;
            Some(Value::String(format!("{}-{}", low, low + band - 1)))
        }
    }
}

/// The pseudonym key of one receiving organisation.
pub(super) fn receiver_key(secret: &[u8], organisation_id: &str) -> hmac::Key {
    let outer = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&outer, organisation_id.as_bytes());
    hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref())
}

/// Hex HMAC of `value` under the receiver's key, separated by `domain` (`subject`, `field`).
pub(super) fn pseudonym(key: &hmac::Key, domain: &str, value: &str) -> String {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(domain.as_bytes());
    ctx.update(&[0]);
    ctx.update(value.as_bytes());
    hex::encode(ctx.sign().as_ref())
}

/// The text a field value is pseudonymised from: the string itself, or the JSON of other scalars.
pub(super) fn pseudonym_input<'v>(v: &'v Node) -> Cow<'v, str> {
    match v {
        Node::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(serde_json::to_string(other).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The checks as the tests call them, on `serde_json::Value`s.
    fn parse_date(v: &Value) -> Option<time::Date> {
        super::parse_date(&Node::from_value(v))
    }

    fn kind_ok(kind: Option<ValueKind>, v: &Value) -> bool {
        super::kind_ok(kind, &Node::from_value(v))
    }

    fn generalise(method: GeneraliseMethod, v: &Value) -> Option<Value> {
        super::generalise(method, &Node::from_value(v))
    }

    const DATE: &[time::format_description::FormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day]");

    #[test]
    fn dates_generalise_to_year_and_month() {
        let d = json!("2014-03-02");
        assert_eq!(
            generalise(GeneraliseMethod::DateYear, &d),
            Some(json!("2014"))
        );
        assert_eq!(
            generalise(GeneraliseMethod::DateYearMonth, &d),
            Some(json!("2014-03"))
        );
        assert_eq!(
            generalise(GeneraliseMethod::DateYear, &json!("2014-13-02")),
            None
        );
        assert_eq!(generalise(GeneraliseMethod::DateYear, &json!(2014)), None);
    }

    #[test]
    fn dates_parse_as_the_time_format_does() {
        let mut samples: Vec<String> = [
            "2014-03-02",
            "2024-02-29",
            "2023-02-29",
            "2026-02-30",
            "2026-13-01",
            "2026-00-10",
            "2026-01-00",
            "2026-12-31",
            "2026-04-31",
            "0000-01-01",
            "9999-12-31",
            "2014-3-02",
            "2014-03-2",
            "+2014-03-02",
            "+201-03-02",
            "-201-03-02",
            "2014/03/02",
            "2014-03-02 ",
            " 2014-03-02",
            "2014-03-0a",
            "20140-3-02",
            "2014--3-02",
            "2014-03-+2",
            "1900-02-29",
            "2000-02-29",
            "２０１４-03-02",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for y in ["1999", "2000", "2001", "2100"] {
            for m in 0..=13 {
                for d in 0..=32 {
                    samples.push(format!("{y}-{m:02}-{d:02}"));
                }
            }
        }
        // The former definition: ten bytes, then the `time` format.
        let reference = |s: &str| {
            if s.len() != 10 {
                return None;
            }
            time::Date::parse(s, DATE).ok()
        };
        for s in &samples {
            assert_eq!(parse_date(&json!(s)), reference(s), "{s:?}");
        }
        assert_eq!(parse_date(&json!(20140302)), None);
    }

    #[test]
    fn postcodes_keep_four_digits() {
        assert_eq!(
            generalise(GeneraliseMethod::PostcodePc4, &json!("3011 ab")),
            Some(json!("3011"))
        );
        assert_eq!(
            generalise(GeneraliseMethod::PostcodePc4, &json!("0123AB")),
            None
        );
        assert_eq!(
            generalise(GeneraliseMethod::PostcodePc4, &json!("30112")),
            None
        );
        assert_eq!(
            generalise(GeneraliseMethod::PostcodePc4, &json!(" 30 11 A B ")),
            Some(json!("3011"))
        );
        for bad in [
            "3011ABC", "3011A", "301AB", "3011 1B", "3011ÄB", "30１1AB", "",
        ] {
            assert!(!kind_ok(Some(ValueKind::Postcode), &json!(bad)), "{bad}");
        }
    }

    #[test]
    fn numbers_fall_into_bands() {
        let g = |n: Value| generalise(GeneraliseMethod::NumberBand(10), &n);
        assert_eq!(g(json!(22)), Some(json!("20-29")));
        assert_eq!(g(json!(0)), Some(json!("0-9")));
        assert_eq!(g(json!(29.9)), Some(json!("20-29")));
        assert_eq!(g(json!(-1)), None);
        assert_eq!(g(json!("22")), None);
    }

    #[test]
    fn kinds_are_checked() {
        assert!(kind_ok(Some(ValueKind::String), &json!(12)));
        assert!(!kind_ok(Some(ValueKind::Text), &json!(12)));
        assert!(kind_ok(Some(ValueKind::Date), &json!("2026-02-28")));
        assert!(!kind_ok(Some(ValueKind::Date), &json!("2026-02-30")));
        assert!(!kind_ok(None, &Value::Null));
        assert!(kind_ok(Some(ValueKind::Postcode), &json!("3011AB")));
    }

    #[test]
    fn pseudonyms_differ_per_receiver_and_domain() {
        let a = receiver_key(b"secret", "lyceum-zuid");
        let b = receiver_key(b"secret", "swv-vo-zuid");
        let pa = pseudonym(&a, "subject", "252760189");
        assert_eq!(pa, pseudonym(&a, "subject", "252760189"));
        assert_ne!(pa, pseudonym(&b, "subject", "252760189"));
        assert_ne!(pa, pseudonym(&a, "field", "252760189"));
        assert_ne!(
            pa,
            pseudonym(
                &receiver_key(b"other", "lyceum-zuid"),
                "subject",
                "252760189"
            )
        );
        assert_eq!(pa.len(), 64);
    }
}
