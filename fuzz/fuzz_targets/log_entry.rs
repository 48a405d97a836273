//! Fuzzes log entry decoding: `cargo +nightly fuzz run log_entry`. Whatever decodes re-encodes canonically and stably.
//! The checks live in `tests/fuzz_checks/`, shared with the corpus replay of `cargo test`.
#![no_main]

#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::log_entry(data));
