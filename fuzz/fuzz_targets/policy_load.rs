//! Fuzzes the policy loader: `cargo +nightly fuzz run policy_load`.
//! Arbitrary text, alone or beside the shipped catalogue, must load or be refused with an error
//! that names the file; never a panic. A set that loads must be checkable and explainable.
#![no_main]

use ketenpoort::domain::Role;
use ketenpoort::policy::{check_sources, explain, PolicySet};
use libfuzzer_sys::fuzz_target;

const CATALOGUE: &str = include_str!("../../policies/catalogue.toml");

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for files in [
        vec![("fuzz.toml".to_owned(), text.to_owned())],
        vec![
            ("catalogue.toml".to_owned(), CATALOGUE.to_owned()),
            ("fuzz.toml".to_owned(), text.to_owned()),
        ],
    ] {
        match PolicySet::from_sources(&files) {
            Ok(set) => {
                assert_eq!(set.hash().len(), 64);
                for flow in set.flows() {
                    let (from, to) = (flow.senders[0], flow.receivers[0]);
                    assert!(explain(&set, from, to, &flow.purpose).is_ok());
                }
                let _ = explain(&set, Role::SchoolPo, Role::Wijkteam, "x");
                assert!(check_sources(&files)
                    .iter()
                    .all(|f| !f.is_error() || f.line.is_some()));
            }
            Err(e) => {
                for err in e.errors() {
                    assert!(err.location().0.is_some(), "error without a file: {err}");
                }
                assert!(!e.to_string().is_empty());
            }
        }
    }
});
