//! Fuzzes the policy loader: `cargo +nightly fuzz run policy_load`. Arbitrary text, alone or beside the shipped
//! catalogue, loads or is refused with errors that name the file; never a panic. A set that loads is checkable and
//! explainable. The checks live in `tests/fuzz_checks/`, shared with the corpus replay of `cargo test`.
#![no_main]

#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::policy_load(data));
