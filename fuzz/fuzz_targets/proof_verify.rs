//! Fuzzes the Merkle proof verifiers: `cargo +nightly fuzz run proof_verify`.
//! Arbitrary sizes, indices and hashes must be refused or accepted, never panic; proofs the
//! library generates for a tree built from the input must always verify.
#![no_main]

use ketenpoort::audit::merkle::{
    consistency_proof, consistency_proof_ranges, inclusion_proof, inclusion_proof_ranges, root_of,
    verify_consistency, verify_inclusion, Hash,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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

    // Treat the hashes as leaves: honest proofs must verify.
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
    }
});
