//! Fuzzes the Merkle proof verifiers: `cargo +nightly fuzz run proof_verify`. Arbitrary sizes, indices and hashes never panic; honest proofs verify.
//! The checks live in `tests/fuzz_checks/`, shared with the corpus replay of `cargo test`.
#![no_main]

#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::proof_verify(data));
