//! Fuzzes the envelope stage: `cargo +nightly fuzz run envelope corpus/envelope`.
//! Any panic is a bug; every refusal must be a 400 or 422 with a stable code.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ketenpoort::envelope::parse(data, &Default::default()) {
        Ok(envelope) => {
            assert!(envelope.data.is_object());
            let reencoded = serde_json::to_vec(&envelope.data).expect("a Value always serialises");
            let reparsed = ketenpoort::envelope::parse_strict_json(&reencoded, 32)
                .expect("accepted data parses again on its own");
            assert!(reparsed.is_object());
        }
        Err(err) => {
            assert!(err.status() == 400 || err.status() == 422);
            assert!(!err.code().is_empty());
        }
    }
    let _ = ketenpoort::envelope::parse_strict_json(data, 32);
});
