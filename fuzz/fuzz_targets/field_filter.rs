//! Fuzzes the field filter with the shipped policies: `cargo +nightly fuzz run field_filter`. Arbitrary JSON as
//! `data`, for every flow, with and without a consent for everything: never a panic; what is delivered is only
//! ever what the flow allows. The checks live in `tests/fuzz_checks/`, shared with the corpus replay of `cargo test`.
#![no_main]

#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::field_filter(data));
