//! Count messages (P7): schema check and disclosure control.
//!
//! A count message is `{"periode", "dimensies": [..], "cellen": [{<dimension>: code, "categorie",
//! "aantal"}]}`. Anything outside that schema, and any `subject`, is refused as person-level data.
//! Cells of 1 to `min_cell - 1` are suppressed, the others rounded to the rounding base, and
//! secondary suppression makes sure no suppressed cell can be recomputed from a line total: a
//! "line" is every group of cells that differ in one coordinate only (a row, a column, or the
//! categories of one row/column). A suppressed cell is delivered with `"aantal": null`.
//! Refusal details name paths and rules, never counts or codes.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::data::Node;

use super::path::{self, Seg};
use super::{
    codes, AggregateRules, Decision, DecisionRequest, Delivered, FieldAction, FieldOutcome,
    MessageCatalogue, Refusal, WithheldReason,
};

const TOP_KEYS: [&str; 3] = ["periode", "dimensies", "cellen"];
const MAX_CODE_LEN: usize = 32;

fn person_level(path: &str) -> Refusal {
    Refusal::new(codes::PERSON_LEVEL_IN_AGGREGATE, format!("`{path}` is not part of the aggregate schema; a count message carries no person-level data"),
    )
}

fn invalid(detail: impl Into<String>) -> Refusal {
    Refusal::new(codes::INVALID_AGGREGATE, detail)
}

fn short_code<'v>(v: &'v Node) -> Option<&'v str> {
    let s = v.as_str()?;
    let ok = !s.is_empty()
        && s.len() <= MAX_CODE_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ok.then_some(s)
}

fn key_path(prefix: &str, key: &str) -> String {
    let mut segs = vec![];
    if !prefix.is_empty() {
        segs.push(Seg::key(prefix));
    }
    segs.push(Seg::key(key));
    path::render(&segs)
}

/// Which cells to suppress: primary (1 ≤ n < `min_cell`) and, when `secondary`, for every line
/// with exactly one suppressed cell the smallest other non-zero cell of it (a zero cell if there is
/// no other), repeated until nothing changes. `coords[i]` are the coordinates of cell `i`.
pub fn suppress(
    coords: &[Vec<String>],
    counts: &[u64],
    min_cell: u64,
    secondary: bool,
) -> Vec<bool> {
    let mut s: Vec<bool> = counts.iter().map(|&n| n >= 1 && n < min_cell).collect();
    if !secondary {
        return s;
    }
    let axes = coords.first().map_or(0, Vec::len);
    let mut lines: Vec<Vec<usize>> = Vec::new();
    for axis in 0..axes {
        let mut groups: BTreeMap<Vec<&str>, Vec<usize>> = BTreeMap::new();
        for (i, c) in coords.iter().enumerate() {
            let rest: Vec<&str> = c
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != axis)
                .map(|(_, v)| v.as_str())
                .collect();
            groups.entry(rest).or_default().push(i);
        }
        lines.extend(groups.into_values().filter(|l| l.len() >= 2));
    }
    loop {
        let mut changed = false;
        for line in &lines {
            if line.iter().filter(|&&i| s[i]).count() != 1 {
                continue;
            }
            let pick = line
                .iter()
                .copied()
                .filter(|&i| !s[i])
                .min_by_key(|&i| (counts[i] == 0, counts[i], i));
            if let Some(i) = pick {
                s[i] = true;
                changed = true;
            }
        }
        if !changed {
            return s;
        }
    }
}

/// Rounds to the nearest multiple of `base` (halves up).
pub fn round_to(n: u64, base: u64) -> u64 {
    (n + base / 2) / base * base
}

fn outcome(catalogue: &MessageCatalogue, segs: &[Seg], action: FieldAction) -> FieldOutcome {
    let cat_path = path::catalogue_path(segs);
    let field = cat_path.as_deref().and_then(|p| catalogue.field(p));
    FieldOutcome {
        path: path::render(segs),
        catalogue_path: cat_path,
        action,
        category: field.map(|f| f.category.clone()),
        class: field.map(|f| f.class),
        consent_id: None,
    }
}

pub(super) fn decide(
    mut d: Decision,
    rules: &AggregateRules,
    catalogue: &MessageCatalogue,
    req: &DecisionRequest,
) -> Result<Decision, Refusal> {
    if req.subject.is_some() {
        return Err(person_level("subject"));
    }
    let data = req
        .data
        .as_object()
        .ok_or_else(|| invalid("`data` must be an object"))?;
    if let Some(k) = data.keys().find(|k| !TOP_KEYS.contains(k)) {
        return Err(person_level(&key_path("", k)));
    }
    let periode = data
        .get("periode")
        .and_then(short_code)
        .ok_or_else(|| invalid("`periode` must be a short code like 2026-Q3"))?;
    let dims: Vec<&str> = match data.get("dimensies") {
        Some(Node::Array(a)) => a
            .iter()
            .map(|v| v.as_str())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("`dimensies` must list dimension names"))?,
        _ => return Err(invalid("`dimensies` must list dimension names")),
    };
    if dims.len() > rules.max_dimensions {
        return Err(invalid(format!(
            "at most {} dimensions per table, {} given",
            rules.max_dimensions,
            dims.len()
        )));
    }
    for (i, name) in dims.iter().enumerate() {
        if !rules.dimensions.iter().any(|x| x.name == *name) {
            return Err(invalid(format!(
                "`dimensies[{i}]` is not an allowed dimension (allowed: {})",
                rules
                    .dimensions
                    .iter()
                    .map(|x| x.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if dims[..i].contains(name) {
            return Err(invalid(format!("`dimensies[{i}]` repeats a dimension")));
        }
    }
    let cells = match data.get("cellen") {
        Some(Node::Array(a)) => a,
        _ => return Err(invalid("`cellen` must be a list of cells")),
    };

    let mut coords: Vec<Vec<String>> = Vec::with_capacity(cells.len());
    let mut counts: Vec<u64> = Vec::with_capacity(cells.len());
    for (i, cell) in cells.iter().enumerate() {
        let cell = cell
            .as_object()
            .ok_or_else(|| invalid(format!("`cellen[{i}]` must be an object")))?;
        for k in cell.keys() {
            let known = k == "categorie" || k == "aantal" || dims.contains(&k);
            if known {
                continue;
            }
            let path = format!("cellen[{i}].{}", key_path("", k));
            if rules.dimensions.iter().any(|x| x.name == *k) {
                return Err(invalid(format!(
                    "`{path}` is a dimension this table does not declare in `dimensies`"
                )));
            }
            return Err(person_level(&path));
        }
        let mut c = Vec::with_capacity(dims.len() + 1);
        for name in &dims {
            let dim = rules.dimensions.iter().find(|x| x.name == *name);
            let v = cell
                .get(name)
                .and_then(short_code)
                .ok_or_else(|| invalid(format!("`cellen[{i}].{name}` must be a short code")))?;
            if let Some(values) = dim.and_then(|x| x.values.as_ref()) {
                if !values.iter().any(|x| x == v) {
                    return Err(invalid(format!(
                        "`cellen[{i}].{name}` is not one of the allowed values ({})",
                        values.join(", ")
                    )));
                }
            }
            c.push(v.to_owned());
        }
        let cat = cell
            .get("categorie")
            .and_then(Node::as_str)
            .filter(|s| rules.categories.iter().any(|x| x == s))
            .ok_or_else(|| {
                invalid(format!(
                    "`cellen[{i}].categorie` must be one of {}",
                    rules.categories.join(", ")
                ))
            })?;
        c.push(cat.to_owned());
        let n = cell.get("aantal").and_then(Node::as_u64).ok_or_else(|| {
            invalid(format!(
                "`cellen[{i}].aantal` must be a whole number of at least 0"
            ))
        })?;
        if coords.contains(&c) {
            return Err(invalid(format!(
                "`cellen[{i}]` repeats the coordinates of an earlier cell"
            )));
        }
        coords.push(c);
        counts.push(n);
    }

    let suppressed = suppress(
        &coords,
        &counts,
        rules.min_cell,
        rules.secondary_suppression,
    );
    let method = format!("round-base-{}", rules.rounding);

    let key = Seg::key;
    let mut fields = Vec::new();
    fields.push(outcome(
        catalogue,
        &[key("periode")],
        FieldAction::Delivered,
    ));
    for i in 0..dims.len() {
        fields.push(outcome(
            catalogue,
            &[key("dimensies"), Seg::Index(i)],
            FieldAction::Delivered,
        ));
    }
    let mut out_cells = Vec::with_capacity(cells.len());
    for (i, c) in coords.iter().enumerate() {
        let mut m = Map::new();
        for (name, v) in dims.iter().zip(c) {
            m.insert((*name).to_owned(), Value::String(v.clone()));
            fields.push(outcome(
                catalogue,
                &[key("cellen"), Seg::Index(i), key(name)],
                FieldAction::Delivered,
            ));
        }
        m.insert("categorie".into(), Value::String(c[dims.len()].clone()));
        fields.push(outcome(
            catalogue,
            &[key("cellen"), Seg::Index(i), key("categorie")],
            FieldAction::Delivered,
        ));
        let count_segs = [key("cellen"), Seg::Index(i), key("aantal")];
        if suppressed[i] {
            m.insert("aantal".into(), Value::Null);
            fields.push(outcome(
                catalogue,
                &count_segs,
                FieldAction::Withheld {
                    reason: WithheldReason::Suppressed,
                },
            ));
            d.suppressed_cells.push(i);
        } else {
            m.insert(
                "aantal".into(),
                Value::from(round_to(counts[i], rules.rounding)),
            );
            fields.push(outcome(
                catalogue,
                &count_segs,
                FieldAction::Generalised {
                    method: method.clone(),
                },
            ));
        }
        out_cells.push(Value::Object(m));
    }
    let mut delivered = Map::new();
    delivered.insert("periode".into(), Value::String(periode.to_owned()));
    delivered.insert(
        "dimensies".into(),
        Value::Array(
            dims.iter()
                .map(|s| Value::String((*s).to_owned()))
                .collect(),
        ),
    );
    delivered.insert("cellen".into(), Value::Array(out_cells));
    d.delivered = Delivered::from_value(&Value::Object(delivered)).ok_or_else(|| {
        Refusal::new(
            codes::INVALID_AGGREGATE,
            "the aggregate could not be written out for the receiver",
        )
    })?;
    d.fields = fields.into();
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rounding_is_to_the_nearest_multiple() {
        assert_eq!(round_to(12, 5), 10);
        assert_eq!(round_to(13, 5), 15);
        assert_eq!(round_to(7, 5), 5);
        assert_eq!(round_to(26, 5), 25);
        assert_eq!(round_to(0, 5), 0);
        assert_eq!(round_to(5, 5), 5);
    }

    #[test]
    fn small_cells_are_suppressed_and_zero_is_not() {
        let coords = vec![
            c(&["a", "x"]),
            c(&["b", "y"]),
            c(&["c", "z"]),
            c(&["d", "w"]),
        ];
        let s = suppress(&coords, &[1, 4, 5, 0], 5, false);
        assert_eq!(s, vec![true, true, false, false]);
    }

    #[test]
    fn a_lone_suppressed_cell_in_a_row_takes_the_smallest_other_non_zero_cell() {
        // one row: 12, 3, 7, 0 → 3 primary, then 7 (smallest non-zero), never 0 or 12.
        let coords = vec![
            c(&["r", "a"]),
            c(&["r", "b"]),
            c(&["r", "c"]),
            c(&["r", "d"]),
        ];
        let s = suppress(&coords, &[12, 3, 7, 0], 5, true);
        assert_eq!(s, vec![false, true, true, false]);
    }

    #[test]
    fn secondary_suppression_iterates_across_rows_and_columns() {
        // 2x2 with one small cell: whatever is suppressed second and third, every row and
        // column must end with two suppressed cells, so all four go.
        let coords = vec![
            c(&["r1", "c1"]),
            c(&["r1", "c2"]),
            c(&["r2", "c1"]),
            c(&["r2", "c2"]),
        ];
        let s = suppress(&coords, &[2, 9, 30, 20], 5, true);
        assert_eq!(s, vec![true, true, true, true]);
    }

    fn line_totals_cannot_reveal(coords: &[Vec<String>], counts: &[u64], s: &[bool]) {
        let axes = coords[0].len();
        for axis in 0..axes {
            let mut groups: BTreeMap<Vec<String>, Vec<usize>> = BTreeMap::new();
            for (i, c) in coords.iter().enumerate() {
                let mut rest = c.clone();
                rest.remove(axis);
                groups.entry(rest).or_default().push(i);
            }
            for line in groups.values().filter(|l| l.len() >= 2) {
                let hidden: Vec<usize> = line.iter().copied().filter(|&i| s[i]).collect();
                if hidden.len() == 1 {
                    let total: u64 = line.iter().map(|&i| counts[i]).sum();
                    let shown: u64 = line.iter().filter(|&&i| !s[i]).map(|&i| counts[i]).sum();
                    panic!(
                        "cell {} = {} recoverable from its line total",
                        hidden[0],
                        total - shown
                    );
                }
            }
        }
    }

    proptest! {
        #[test]
        fn no_suppressed_cell_can_be_recovered_from_a_line_total(
            table in proptest::collection::btree_map((0u8..4, 0u8..3, 0u8..3), 0u64..30, 1..30)
        ) {
            let coords: Vec<Vec<String>> = table
                .keys()
                .map(|(a, b, k)| vec![format!("g{a}"), format!("s{b}"), format!("k{k}")])
                .collect();
            let counts: Vec<u64> = table.values().copied().collect();
            let s = suppress(&coords, &counts, 5, true);
            for (i, &n) in counts.iter().enumerate() {
                if (1..5).contains(&n) {
                    prop_assert!(s[i], "primary cell {} not suppressed", i);
                }
            }
            line_totals_cannot_reveal(&coords, &counts, &s);
        }
    }
}
