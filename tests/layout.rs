//! The module layout ARCHITECTURE.md describes, checked on the source: only `http` speaks HTTP (axum), and each
//! module imports only the modules listed for it below, which form no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which modules each module of `src/` may import (`crate::<module>`). `cli` and `http` are the top; `refusal`,
/// `domain`, `data`, `keys`, `metrics`, `config` and `store` the bottom.
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "cli",
        &[
            "audit",
            "certs",
            "config",
            "domain",
            "gateway",
            "http",
            "identity",
            "keys",
            "oversight",
            "policy",
            "store",
            "tls",
        ],
    ),
    (
        "http",
        &[
            "audit",
            "config",
            "domain",
            "exchange",
            "gateway",
            "identity",
            "oversight",
            "policy",
            "push",
            "refusal",
            "retention",
            "tls",
            "trace",
        ],
    ),
    (
        "push",
        &[
            "audit", "exchange", "gateway", "identity", "store", "tls", "trace",
        ],
    ),
    (
        "exchange",
        &[
            "audit",
            "domain",
            "envelope",
            "gateway",
            "identity",
            "keys",
            "oversight",
            "policy",
            "refusal",
            "store",
        ],
    ),
    (
        "oversight",
        &[
            "audit", "domain", "gateway", "identity", "policy", "refusal", "store",
        ],
    ),
    ("retention", &["audit", "gateway", "store"]),
    (
        "gateway",
        &[
            "audit",
            "config",
            "identity",
            "keys",
            "metrics",
            "policy",
            "ratelimit",
            "refusal",
            "store",
            "tls",
        ],
    ),
    ("audit", &["metrics", "store"]),
    ("ratelimit", &["domain", "identity", "refusal"]),
    ("identity", &["certs", "domain", "refusal", "tls", "trace"]),
    ("trace", &["refusal"]),
    ("policy", &["data", "domain", "refusal"]),
    ("envelope", &["data", "domain", "refusal"]),
    ("tls", &["certs"]),
    ("certs", &["domain"]),
    ("config", &[]),
    ("data", &[]),
    ("domain", &[]),
    ("keys", &[]),
    ("metrics", &[]),
    ("refusal", &[]),
    ("store", &[]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for `lib.rs`, `main.rs` and the bench binary).
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    if first == "bin" || first == "lib.rs" || first == "main.rs" {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_owned())
}

/// Code lines of a file: comments left out, so a doc comment may name any module.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| {
        let t = l.trim_start();
        !(t.starts_with("//") || t.starts_with("*"))
    })
}

fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in code_lines(text) {
        for (i, _) in line.match_indices("crate::") {
            let name: String = line[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn only_the_http_layer_speaks_http() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut offenders = Vec::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        if module != "http" && code_lines(&text).any(|l| l.contains("axum")) {
            offenders.push(file.display().to_string());
        }
    }
    assert!(offenders.is_empty(), "axum outside src/http: {offenders:?}");
}

#[test]
fn each_module_imports_only_what_architecture_allows() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(m, deps)| (*m, deps.iter().copied().collect()))
        .collect();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut seen_modules = BTreeSet::new();
    let mut breaches = Vec::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        seen_modules.insert(module.clone());
        let Some(may) = allowed.get(module.as_str()) else {
            breaches.push(format!(
                "{module}: not in the table of this test and ARCHITECTURE.md"
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for dep in imports(&text) {
            if dep != module && !may.contains(dep.as_str()) {
                breaches.push(format!("{} imports crate::{dep}", file.display()));
            }
        }
    }
    assert!(breaches.is_empty(), "{breaches:#?}");
    // The check itself reads the tree: the layers it names are there.
    for m in ["http", "exchange", "oversight", "audit", "policy", "store"] {
        assert!(seen_modules.contains(m), "no module {m} found");
    }
}

#[test]
fn the_allowed_imports_form_no_cycle() {
    let deps: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    // Kahn's algorithm: a module is placed once everything it imports is placed.
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    while placed.len() < deps.len() {
        let ready: Vec<&str> = deps
            .iter()
            .filter(|(m, ds)| !placed.contains(*m) && ds.iter().all(|d| placed.contains(d)))
            .map(|(m, _)| *m)
            .collect();
        assert!(
            !ready.is_empty(),
            "a cycle among {:?}",
            deps.keys()
                .filter(|m| !placed.contains(*m))
                .collect::<Vec<_>>()
        );
        placed.extend(ready);
    }
}

#[test]
fn the_import_scan_finds_imports() {
    let text = "use crate::audit::entry::EventKind;\n// crate::http in a comment\nlet x = crate::refusal::Refusal::internal();";
    assert_eq!(
        imports(text),
        ["audit", "refusal"].into_iter().map(String::from).collect()
    );
}
