//! Value checks and transformations of single fields: kind checks, generalisation (date → year,
//! postcode → pc4, number → band) and keyed pseudonyms.
//!
//! Pseudonyms use a key per receiving organisation, HMAC-SHA256(gateway secret, organisation id),
//! so two receivers never get the same pseudonym for the same pupil or value and cannot link.
//! Functions here return `None` for a value they cannot handle; they never report the value.

use ring::hmac;
use serde_json::Value;

use super::{GeneraliseMethod, ValueKind};

const DATE: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

pub(super) fn parse_date(v: &Value) -> Option<time::Date> {
    let s = v.as_str()?;
    if s.len() != 10 {
        return None;
    }
    time::Date::parse(s, DATE).ok()
}

/// `1234AB` / `1234 ab` → `1234`; `None` if not a Dutch postcode.
fn pc4(v: &Value) -> Option<String> {
    let s: String = v.as_str()?.chars().filter(|c| *c != ' ').collect();
    let b = s.as_bytes();
    let ok = b.len() == 6
        && b[0] != b'0'
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4..].iter().all(u8::is_ascii_alphabetic);
    ok.then(|| s[..4].to_owned())
}

pub(super) fn kind_ok(kind: Option<ValueKind>, v: &Value) -> bool {
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

pub(super) fn in_closed_list(values: &[String], v: &Value) -> bool {
    v.as_str().is_some_and(|s| values.iter().any(|x| x == s))
}

pub(super) fn generalise(method: GeneraliseMethod, v: &Value) -> Option<Value> {
    match method {
        GeneraliseMethod::DateYear => {
            parse_date(v).map(|d| Value::String(format!("{:04}", d.year())))
        }
        GeneraliseMethod::DateYearMonth => parse_date(v)
            .map(|d| Value::String(format!("{:04}-{:02}", d.year(), u8::from(d.month())))),
        GeneraliseMethod::PostcodePc4 => pc4(v).map(Value::String),
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
pub(super) fn pseudonym_input(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
