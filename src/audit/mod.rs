//! The disclosure log: entries, their Merkle tree and hash chain, signed checkpoints, the single writer and
//! the whole-log verifier.
//!
//! The log holds field paths, digests and pseudonyms — never payload values or raw pupil identifiers.

pub mod checkpoint;
pub mod entry;
pub mod merkle;
pub mod verify;
pub mod writer;

use crate::store::StoredSubtree;
use merkle::{Hash, Subtree};
use std::collections::HashMap;

/// The subtree a stored row hashes.
pub(crate) fn subtree_of(row: &StoredSubtree) -> Subtree {
    Subtree {
        level: row.level,
        index: row.index,
    }
}

/// Stored subtree rows keyed by the subtree they hash, as proofs and `audit verify` look them up.
pub(crate) fn subtree_hashes(rows: Vec<StoredSubtree>) -> HashMap<Subtree, Hash> {
    rows.iter().map(|row| (subtree_of(row), row.hash)).collect()
}
