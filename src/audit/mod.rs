//! The disclosure log: entries, their Merkle tree and hash chain, signed checkpoints, the single writer and
//! the whole-log verifier.
//!
//! The log holds field paths, digests and pseudonyms — never payload values or raw pupil identifiers.

pub mod api;
pub mod checkpoint;
pub mod entry;
pub mod merkle;
pub mod verify;
pub mod writer;
