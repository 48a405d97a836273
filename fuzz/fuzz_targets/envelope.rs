//! Fuzzes the envelope stage: `cargo +nightly fuzz run envelope`. Any panic is a bug; every refusal is a 400/422 with a stable code.
//! The checks live in `tests/fuzz_checks/`, shared with the corpus replay of `cargo test`.
#![no_main]

#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::envelope(data));
