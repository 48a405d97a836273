//! Term screening of free text (P3: Leerplichtwet 21a allows no race/ethnicity, political opinion,
//! sex life or union membership in a verzuimmelding).
//!
//! Matching is on whole words after lowercasing and removing accents; a term is one or more words,
//! and a `*` at the end of its last word matches any word starting with it (`vakbond*`).
//! The result is the category of the matched term only; the text is never returned or quoted.

/// A parsed term: its words, and whether the last one is a prefix.
pub(super) struct Term {
    words: Vec<String>,
    prefix: bool,
}

fn fold(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
        'è' | 'é' | 'ê' | 'ë' => 'e',
        'ì' | 'í' | 'î' | 'ï' => 'i',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' => 'o',
        'ù' | 'ú' | 'û' | 'ü' => 'u',
        'ý' | 'ÿ' => 'y',
        'ç' => 'c',
        'ñ' => 'n',
        other => other,
    }
}

/// Lowercased, accent-folded words of a text.
pub(super) fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars().flat_map(char::to_lowercase).map(fold) {
        if c.is_alphanumeric() {
            cur.push(c);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

pub(super) fn parse_term(t: &str) -> Option<Term> {
    let trimmed = t.trim();
    let prefix = trimmed.ends_with('*');
    let body = trimmed.trim_end_matches('*');
    if body.contains('*') {
        return None;
    }
    let words = words(body);
    (!words.is_empty()).then_some(Term { words, prefix })
}

impl Term {
    fn found_in(&self, text: &[String]) -> bool {
        let n = self.words.len();
        if text.len() < n {
            return false;
        }
        text.windows(n).any(|w| {
            w.iter()
                .zip(&self.words)
                .enumerate()
                .all(|(i, (word, term))| {
                    if self.prefix && i + 1 == n {
                        word.starts_with(term.as_str())
                    } else {
                        word == term
                    }
                })
        })
    }
}

/// True when `text` contains any of `terms`.
pub(super) fn names_any(text: &str, terms: &[String]) -> bool {
    let ws = words(text);
    terms
        .iter()
        .filter_map(|t| parse_term(t))
        .any(|t| t.found_in(&ws))
}

/// True when `text` contains a calendar date written with digits: day-month-year (`12-03-2014`, `1/3/14`) or
/// year-month-day (`2014-03-12`), the parts separated by `-`, `/` or `.`, with a day of 1–31 and a month of 1–12.
/// Term lists cannot enumerate dates; this is the one built-in pattern (`patterns = ["date"]`).
pub(super) fn has_date(text: &str) -> bool {
    // Runs of digits and separators, split into their digit groups.
    text.split(|c: char| !(c.is_ascii_digit() || matches!(c, '-' | '/' | '.')))
        .any(|run| {
            let groups: Vec<&str> = run.split(['-', '/', '.']).collect();
            groups.windows(3).any(|g| {
                let n = |s: &str| s.parse::<u32>().ok();
                let (a, b, c) = (g[0], g[1], g[2]);
                let day_month = |d: &str, m: &str| {
                    (1..=2).contains(&d.len())
                        && (1..=2).contains(&m.len())
                        && n(d).is_some_and(|d| (1..=31).contains(&d))
                        && n(m).is_some_and(|m| (1..=12).contains(&m))
                };
                let dmy = day_month(a, b) && (c.len() == 2 || c.len() == 4);
                let ymd = a.len() == 4 && day_month(c, b);
                dmy || ymd
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_written_with_digits_are_found() {
        for t in [
            "geboren 12-03-2014 in",
            "sinds 2014-03-12",
            "op 1/3/14 gestart",
            "datum: 31.12.2013.",
        ] {
            assert!(has_date(t), "{t}");
        }
        for t in [
            "groep 7, 25 leerlingen",
            "versie 1.2.3",
            "2014",
            "13-13-2014",
            "3 van de 4 dagen",
            "",
        ] {
            assert!(!has_date(t), "{t}");
        }
    }

    fn terms(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn whole_words_prefixes_and_phrases() {
        let list = terms(&["ras", "vakbond*", "seksuele geaardheid"]);
        assert!(names_any("Vader is VAKBONDSLID.", &list));
        assert!(names_any("Ras speelt een rol", &list));
        assert!(names_any("over zijn Seksuele   geaardheid", &list));
        assert!(!names_any("speelt op het grasveld", &list));
        assert!(!names_any("seksuele voorlichting", &list));
        assert!(!names_any("", &list));
    }

    #[test]
    fn accents_are_folded() {
        assert!(names_any("ÉTNISCHE spanningen", &terms(&["etnisch*"])));
    }

    #[test]
    fn a_star_only_ends_a_term() {
        assert!(parse_term("va*kbond").is_none());
        assert!(parse_term("*").is_none());
        assert!(parse_term("  ").is_none());
    }
}
