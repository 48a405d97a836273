//! The fuzz targets on stable: every seed in `fuzz/corpus/<target>/` is replayed through the target's checks
//! (`tests/fuzz_checks/`, the same code `cargo +nightly fuzz run <target>` runs), then a bounded random-mutation
//! run (bit flips, byte edits, splices, JSON tokens) starting from those seeds: 20 000 inputs per target, 1 000 for
//! `policy_load` (each input loads the whole policy language twice, about 4 ms in a debug build).
//!
//! `KETENPOORT_FUZZ_SECS=N` runs the mutation stage for N seconds per target instead of a fixed number of inputs
//! (a long run on a machine without nightly); `KETENPOORT_FUZZ_SEED` (hex) repeats a run.

mod fuzz_checks;

use std::path::PathBuf;
use std::time::{Duration, Instant};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_seed_of_every_target_replays_without_panic() {
    for (target, check) in fuzz_checks::TARGETS {
        let seeds = corpus(target);
        assert!(!seeds.is_empty(), "fuzz/corpus/{target} is empty");
        for (path, bytes) in &seeds {
            let r = std::panic::catch_unwind(|| check(bytes));
            assert!(r.is_ok(), "{target}: {} panics", path.display());
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b",",
    b":",
    b"\\u",
    b"\\ud800",
    b"\\udc00",
    b"\\\"",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"0",
    b"-1",
    b"1e999",
    b"18446744073709551616",
    b"null",
    b"true",
    b"\"to\"",
    b"\"data\"",
    b"\"subject\"",
    b"\"pgn\"",
    b"\"event\"",
    b"\n",
    b"\xe2\x80\x94",
    b"[flow]",
    b"[[message]]",
    b" = ",
    b"\"*\"",
    b"[].",
    b".*",
    b"\"consent\"",
    b"\"aantal\"",
    b"\"cellen\"",
];

fn mutate(rng: &mut Rng, input: &[u8], seeds: &[(PathBuf, Vec<u8>)]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                v.insert(i, rng.next() as u8);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                v.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let chunk = v[i..i + n].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, chunk);
            }
            5 => {
                let (_, other) = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let i = rng.below(other.len());
                    let cut = rng.below(v.len() + 1);
                    v.truncate(cut);
                    v.extend_from_slice(&other[i..]);
                }
            }
            _ => {
                let t = TOKENS[rng.below(TOKENS.len())];
                let at = rng.below(len + 1);
                v.splice(at..at, t.iter().copied());
            }
        }
    }
    v
}

/// Mutated inputs per target when `KETENPOORT_FUZZ_SECS` is not set.
fn default_runs(target: &str) -> u64 {
    match target {
        "policy_load" => 1_000,
        _ => 20_000,
    }
}

#[test]
fn random_mutations_of_the_seeds_never_panic() {
    let secs: Option<u64> = std::env::var("KETENPOORT_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok());
    let seed = std::env::var("KETENPOORT_FUZZ_SEED")
        .ok()
        .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0x6b65_7465_6e70_6f6f);
    for (target, check) in fuzz_checks::TARGETS {
        let seeds = corpus(target);
        let mut rng = Rng(seed ^ target.len() as u64);
        let started = Instant::now();
        let mut runs = 0u64;
        loop {
            let done = match secs {
                Some(s) => started.elapsed() >= Duration::from_secs(s),
                None => runs >= default_runs(target),
            };
            if done {
                break;
            }
            let (_, base) = &seeds[rng.below(seeds.len())];
            let input = mutate(&mut rng, base, &seeds);
            if std::panic::catch_unwind(|| check(&input)).is_err() {
                let path = std::env::temp_dir().join(format!("crash-{target}-{seed:x}-{runs}"));
                std::fs::write(&path, &input).unwrap();
                panic!(
                    "{target}: input {runs} (seed {seed:#x}) panics; saved to {} — add it to fuzz/corpus/{target}/",
                    path.display()
                );
            }
            runs += 1;
        }
        eprintln!(
            "{target}: {runs} mutated inputs in {:.1} s, no panic",
            started.elapsed().as_secs_f64()
        );
    }
}

/// The seeds reach the code they are for: every shipped policy file is in the `policy_load` corpus unchanged and
/// loads beside the catalogue, every `bad-*` seed there is refused; the `field_filter` seeds of the examples are
/// the examples unchanged and get fields delivered (a corpus of inputs that all fail to parse would fuzz nothing).
#[test]
fn seed_corpora_reach_the_code_they_target() {
    use ketenpoort::policy::PolicySet;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let seeds = corpus("policy_load");
    let seed = |name: &str| {
        seeds
            .iter()
            .find(|(p, _)| p.file_name().unwrap() == name)
            .map(|(_, b)| String::from_utf8(b.clone()).unwrap())
    };
    let catalogue = std::fs::read_to_string(root.join("policies/catalogue.toml")).unwrap();
    let mut shipped = 0;
    for entry in std::fs::read_dir(root.join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            seed(&name).as_deref(),
            Some(text.as_str()),
            "fuzz/corpus/policy_load/{name} differs from policies/{name}: copy it again"
        );
        let files = [
            ("catalogue.toml".to_owned(), catalogue.clone()),
            (format!("x-{name}"), text),
        ];
        if name != "catalogue.toml" {
            let set = PolicySet::from_sources(&files)
                .unwrap_or_else(|e| panic!("policies/{name} beside the catalogue: {e}"));
            assert_eq!(set.flows().count(), 1, "{name}");
        }
        shipped += 1;
    }
    assert!(shipped >= 8, "only {shipped} policy files");
    let mut bad = 0;
    for (path, bytes) in &seeds {
        let name = path.file_name().unwrap().to_str().unwrap();
        if !name.starts_with("bad-") {
            continue;
        }
        let files = [
            ("catalogue.toml".to_owned(), catalogue.clone()),
            (
                "fuzz.toml".to_owned(),
                String::from_utf8_lossy(bytes).into_owned(),
            ),
        ];
        assert!(
            PolicySet::from_sources(&files).is_err(),
            "{name} is meant to be refused and loads"
        );
        bad += 1;
    }
    assert!(bad >= 5, "only {bad} broken policy seeds");

    let set = PolicySet::load_dir(&root.join("policies")).unwrap();
    let mut decided = 0;
    for (path, bytes) in corpus("field_filter") {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let Some(id) = name.strip_suffix(".json").and_then(|n| n.split('-').next()) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let example = std::fs::read(root.join("examples").join(&name)).ok();
        if example.is_none() || set.flows().all(|f| f.id != id) {
            continue;
        }
        assert_eq!(
            example.as_deref(),
            Some(bytes.as_slice()),
            "fuzz/corpus/field_filter/{name} differs from examples/{name}"
        );
        assert!(v["data"].is_object(), "{name}");
        assert!(
            fuzz_checks::field_filter_delivered(&bytes) > 0,
            "{name}: no flow delivers any field of it"
        );
        decided += 1;
    }
    assert_eq!(
        decided, 11,
        "the eleven examples P1–P11 are field_filter seeds"
    );
}
