//! What the fuzz targets check, shared by `fuzz/fuzz_targets/*` (cargo-fuzz, nightly) and
//! `tests/fuzz_corpus.rs` (corpus replay and a bounded random-mutation run on stable, in `cargo test`).
//! Each function takes arbitrary bytes and panics only on a bug.
#![allow(dead_code)]

use ketenpoort::audit::checkpoint::{verify_checkpoint, SignedCheckpoint};
use ketenpoort::audit::entry::LogEntry;
use ketenpoort::audit::merkle::{
    consistency_proof, consistency_proof_ranges, inclusion_proof, inclusion_proof_ranges,
    leaf_hash, root_of, verify_consistency, verify_inclusion, Hash,
};

/// The envelope stage: any panic is a bug; every refusal is a 400 or 422 with a stable code.
pub fn envelope(data: &[u8]) {
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
}

/// Log entry decoding (what `audit verify` and the privacy officer's views read back): whatever decodes
/// re-encodes to a canonical form that decodes to the same entry and encodes identically again.
pub fn log_entry(data: &[u8]) {
    if let Ok(entry) = LogEntry::decode(data) {
        let bytes = entry.encode();
        let again = LogEntry::decode(&bytes).expect("an encoded entry decodes");
        assert_eq!(again, entry);
        assert_eq!(again.encode(), bytes, "the canonical encoding is stable");
        let _ = entry.event();
        let _ = leaf_hash(&bytes);
    }
}

/// Merkle proof verification: arbitrary sizes, indices and hashes are refused or accepted, never panic;
/// proofs generated for a tree built from the input always verify.
pub fn proof_verify(data: &[u8]) {
    if data.len() < 16 {
        return;
    }
    let (head, rest) = data.split_at(16);
    let a = u64::from_le_bytes(head[..8].try_into().unwrap());
    let b = u64::from_le_bytes(head[8..].try_into().unwrap());
    let hashes: Vec<Hash> = rest
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap())
        .collect();

    let _ = inclusion_proof_ranges(a, b);
    let _ = consistency_proof_ranges(a, b);
    if hashes.len() >= 2 {
        let (x, y, proof) = (&hashes[0], &hashes[1], &hashes[2..]);
        for (i, n) in [(a, b), (a % 97, b % 97), (a & 0xff, b & 0xfff)] {
            let _ = verify_inclusion(x, i, n, proof, y);
            let _ = verify_consistency(i, n, x, y, proof);
        }
    }
    let n = hashes.len() as u64;
    if n > 0 {
        let root = root_of(&hashes);
        let i = a % n;
        let proof = inclusion_proof(&hashes, i).expect("index below size");
        verify_inclusion(&hashes[i as usize], i, n, &proof, &root).expect("honest inclusion");
        let m = 1 + b % n;
        let proof = consistency_proof(&hashes, m).expect("0 < m <= n");
        let old_root = root_of(&hashes[..m as usize]);
        verify_consistency(m, n, &old_root, &root, &proof).expect("honest consistency");
        // A proof for another leaf or a changed root must not verify.
        let mut wrong = root;
        wrong[0] ^= 1;
        assert!(
            verify_inclusion(&hashes[i as usize], i, n, &proof_for(&hashes, i), &wrong).is_err()
        );
    }
}

fn proof_for(hashes: &[Hash], i: u64) -> Vec<Hash> {
    inclusion_proof(hashes, i).expect("index below size")
}

/// Checkpoint notes: any text is parsed or refused without panicking; what parses writes back unchanged.
pub fn checkpoint_note(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(sc) = SignedCheckpoint::from_note(text) {
        assert_eq!(sc.to_note(), text);
        assert_eq!(sc.signature.len(), 64);
        let _ = verify_checkpoint(&[0u8; 32], &sc);
        let _ = verify_checkpoint(&[9u8; 32], &sc);
    }
}

/// A fuzz target's check.
pub type Check = fn(&[u8]);

/// Every target by its fuzz/ name.
pub const TARGETS: [(&str, Check); 4] = [
    ("envelope", envelope),
    ("log_entry", log_entry),
    ("proof_verify", proof_verify),
    ("checkpoint_note", checkpoint_note),
];
