//! Fuzzes the checkpoint note parser: `cargo +nightly fuzz run checkpoint_note`. Whatever parses writes back unchanged.
//! The checks live in `tests/fuzz_checks/`, shared with the corpus replay of `cargo test`.
#![no_main]

#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::checkpoint_note(data));
