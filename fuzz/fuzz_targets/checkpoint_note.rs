//! Fuzzes the checkpoint note parser: `cargo +nightly fuzz run checkpoint_note`.
//! Any text must be parsed or refused without panicking; whatever parses writes back unchanged.
#![no_main]

use ketenpoort::audit::checkpoint::{verify_checkpoint, SignedCheckpoint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(sc) = SignedCheckpoint::from_note(text) {
        assert_eq!(sc.to_note(), text);
        assert_eq!(sc.signature.len(), 64);
        let _ = verify_checkpoint(&[0u8; 32], &sc);
        let _ = verify_checkpoint(&[9u8; 32], &sc);
    }
});
