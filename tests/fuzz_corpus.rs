//! The fuzz targets on stable: every seed in `fuzz/corpus/<target>/` is replayed through the target's checks
//! (`tests/fuzz_checks/`, the same code `cargo +nightly fuzz run <target>` runs), then a bounded random-mutation
//! run (bit flips, byte edits, splices, JSON tokens) starting from those seeds.
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
                None => runs >= 20_000,
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
