//! RFC 9162 (Certificate Transparency 2.0, section 2.1) Merkle tree hashing for the disclosure log:
//! leaf and node hashes, tree roots, the persisted compact range (`Frontier`), and inclusion and
//! consistency proofs with their verifiers.
//!
//! Everything here works on leaf hashes the store keeps itself; nothing holds the whole tree.
//! Verifiers take untrusted sizes and proofs and must refuse, never panic, on any input.
//! This module never sees entry contents beyond hashing the bytes it is given.
//!
//! Written here rather than on a crate: `ct-merkle` (0.3, the maintained RFC 6962 crate) is generic
//! over RustCrypto `digest` 0.11 (so it would add `sha2`, `digest`, `hybrid-array`, `subtle` beside
//! `ring`), hashes leaf *values* itself in its verifier instead of taking a stored leaf hash, plans
//! out-of-memory proofs as indices into a stored array of all `2n-1` tree nodes, and has no
//! streaming compact range for start-up or for `audit verify`. The RFC algorithms are short.

use ring::digest::{digest, Context, SHA256};
use std::collections::HashMap;
use std::ops::Range;

pub type Hash = [u8; 32];

/// `MTH({})`: SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// A frontier holds one node per set bit of a `u64` size.
const MAX_FRONTIER: usize = 64;
const FRONTIER_FORMAT: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below tree size {tree_size}")]
    IndexOutOfRange { index: u64, tree_size: u64 },
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    OldLargerThanNew { old_size: u64, new_size: u64 },
    #[error("RFC 9162 defines consistency proofs only from a non-empty tree (old size 0)")]
    EmptyOldTree,
    #[error("proof holds {got} hashes where {expected} are needed")]
    WrongLength { expected: usize, got: usize },
    #[error("proof does not lead to the given root")]
    RootMismatch,
    #[error("consistency proof does not lead to the given old root")]
    OldRootMismatch,
    #[error("consistency proof does not lead to the given new root")]
    NewRootMismatch,
}

fn to_hash(d: ring::digest::Digest) -> Hash {
    let mut h = [0u8; 32];
    h.copy_from_slice(d.as_ref());
    h
}

/// `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0x00]);
    ctx.update(entry);
    to_hash(ctx.finish())
}

/// `SHA-256(0x01 || left || right)`.
#[inline]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    to_hash(digest(&SHA256, &buf))
}

/// The RFC's `k`: the largest power of two strictly below `n` (`n >= 2`).
#[inline]
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// `MTH` over leaf hashes; `root_of(&leaves[a..b])` is the hash of the subtree over `[a, b)`.
pub fn root_of(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        EMPTY_ROOT
    } else {
        subtree_root(leaves)
    }
}

fn subtree_root(leaves: &[Hash]) -> Hash {
    if leaves.len() == 1 {
        return leaves[0];
    }
    let k = split(leaves.len() as u64) as usize;
    node_hash(&subtree_root(&leaves[..k]), &subtree_root(&leaves[k..]))
}

/// The compact range `[0, size)`: roots of the perfect subtrees of the binary decomposition of
/// `size`, largest (leftmost) first. Persisted by the store so start-up never recomputes the tree;
/// also the streaming tree builder for whole-log verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

/// Streaming builder for `audit verify`: push every leaf, read the root at any size.
pub type TreeBuilder = Frontier;

impl Default for Frontier {
    fn default() -> Self {
        Frontier::new()
    }
}

impl Frontier {
    pub fn new() -> Self {
        Frontier {
            size: 0,
            nodes: Vec::with_capacity(MAX_FRONTIER),
        }
    }

    pub fn from_leaves(leaves: &[Hash]) -> Self {
        let mut f = Frontier::new();
        for leaf in leaves {
            f.push(*leaf);
        }
        f
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash: amortised one node hash, no allocation.
    pub fn push(&mut self, leaf: Hash) {
        self.push_reporting(leaf, |_, _| {});
    }

    /// `push`, handing every perfect subtree this leaf completes (level 1 and up, smallest first) to
    /// `completed`: what the writer persists at `STORED_LEVEL` and above, and what `audit verify` checks.
    #[inline]
    pub fn push_reporting(&mut self, leaf: Hash, mut completed: impl FnMut(Subtree, &Hash)) {
        let mut carry = leaf;
        let mut s = self.size;
        let mut level = 0u8;
        while s & 1 == 1 {
            let left = self
                .nodes
                .pop()
                .expect("frontier holds one node per set bit of its size");
            carry = node_hash(&left, &carry);
            s >>= 1;
            level += 1;
            completed(Subtree { level, index: s }, &carry);
        }
        self.nodes.push(carry);
        self.size += 1;
    }

    /// `MTH` of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        match nodes.next() {
            None => EMPTY_ROOT,
            Some(last) => nodes.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }

    /// `[format 1][size: u64 big-endian][node hashes, largest subtree first]`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + 32 * self.nodes.len());
        out.push(FRONTIER_FORMAT);
        out.extend_from_slice(&self.size.to_be_bytes());
        for n in &self.nodes {
            out.extend_from_slice(n);
        }
        out
    }

    pub fn from_bytes(b: &[u8]) -> Option<Frontier> {
        let (&format, rest) = b.split_first()?;
        if format != FRONTIER_FORMAT || rest.len() < 8 {
            return None;
        }
        let (size, rest) = rest.split_at(8);
        let size = u64::from_be_bytes(size.try_into().ok()?);
        if rest.len() != 32 * size.count_ones() as usize {
            return None;
        }
        let mut nodes = Vec::with_capacity(MAX_FRONTIER);
        for chunk in rest.chunks_exact(32) {
            nodes.push(chunk.try_into().ok()?);
        }
        Some(Frontier { size, nodes })
    }
}

/// The lowest level of perfect subtrees the store keeps (256 leaves): the writer persists every one it
/// completes at this level and above (one row per 128 entries, amortised), so a proof or a root reads
/// O(log n) stored nodes and at most a few hundred leaf hashes instead of every leaf.
pub const STORED_LEVEL: u8 = 8;

/// The perfect subtree over leaves `[index << level, (index + 1) << level)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subtree {
    pub level: u8,
    pub index: u64,
}

impl Subtree {
    pub fn leaves(&self) -> Range<u64> {
        let start = self.index << self.level;
        start..start + (1u64 << self.level)
    }

    pub fn is_stored(&self) -> bool {
        self.level >= STORED_LEVEL
    }
}

/// The perfect subtrees whose hashes make up the RFC 9162 node over `range`, left to right: one per set bit
/// of its width, largest first (the RFC splits a node at the largest power of two below its width, so the
/// left part is always perfect). `None` for a range that is no node of any RFC tree (empty, or its start not
/// aligned to its largest part).
pub fn subtrees_of(range: Range<u64>) -> Option<Vec<Subtree>> {
    let width = range.end.checked_sub(range.start).filter(|w| *w > 0)?;
    let top = 63 - width.leading_zeros();
    if range.start & ((1u64 << top) - 1) != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(width.count_ones() as usize);
    let mut start = range.start;
    for level in (0..=top).rev() {
        if width & (1 << level) != 0 {
            out.push(Subtree {
                level: level as u8,
                index: start >> level,
            });
            start += 1 << level;
        }
    }
    Some(out)
}

/// What the hashes of some RFC tree nodes (proof elements, roots, a leaf) need from the store, and how they
/// are put together: stored subtrees (`STORED_LEVEL` and up) where the store has them, leaf hashes for the
/// smaller ones and for any stored subtree it lacks (a log written before subtrees were kept). Pure: the
/// caller reads, the plan hashes.
#[derive(Debug, Clone)]
pub struct ProofPlan {
    nodes: Vec<Vec<Subtree>>,
}

/// Leaf hashes read for a plan: contiguous runs, each `(first index, hashes)`.
#[derive(Debug, Clone, Default)]
pub struct LeafRuns {
    runs: Vec<(u64, Vec<Hash>)>,
}

impl LeafRuns {
    pub fn new() -> LeafRuns {
        LeafRuns::default()
    }

    pub fn insert(&mut self, start: u64, hashes: Vec<Hash>) {
        let at = self.runs.partition_point(|(s, _)| *s < start);
        self.runs.insert(at, (start, hashes));
    }

    pub fn total(&self) -> usize {
        self.runs.iter().map(|(_, h)| h.len()).sum()
    }

    fn get(&self, range: Range<u64>) -> Option<&[Hash]> {
        let at = self.runs.partition_point(|(s, _)| *s <= range.start);
        let (start, hashes) = self.runs.get(at.checked_sub(1)?)?;
        let from = usize::try_from(range.start - start).ok()?;
        let to = usize::try_from(range.end - start).ok()?;
        hashes.get(from..to)
    }
}

impl ProofPlan {
    /// `None` if a range is no RFC tree node.
    pub fn new(ranges: &[Range<u64>]) -> Option<ProofPlan> {
        let nodes = ranges
            .iter()
            .map(|r| subtrees_of(r.clone()))
            .collect::<Option<Vec<_>>>()?;
        Some(ProofPlan { nodes })
    }

    /// The stored subtrees to look up, each once, in order.
    pub fn stored(&self) -> Vec<Subtree> {
        let mut out: Vec<Subtree> = self
            .nodes
            .iter()
            .flatten()
            .filter(|t| t.is_stored())
            .copied()
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The leaf ranges to read, merged where they touch, given the stored subtrees that were `found`.
    pub fn leaf_reads(&self, found: &HashMap<Subtree, Hash>) -> Vec<Range<u64>> {
        let mut wanted: Vec<Range<u64>> = self
            .nodes
            .iter()
            .flatten()
            .filter(|t| !found.contains_key(t))
            .map(Subtree::leaves)
            .collect();
        wanted.sort_unstable_by_key(|r| (r.start, r.end));
        let mut merged: Vec<Range<u64>> = Vec::with_capacity(wanted.len());
        for r in wanted {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        merged
    }

    /// The hash of every planned range, in the order given to `new`; `None` if `leaves` lacks a leaf that
    /// `leaf_reads` asked for (the store returned fewer rows than its state records).
    pub fn hashes(&self, found: &HashMap<Subtree, Hash>, leaves: &LeafRuns) -> Option<Vec<Hash>> {
        self.nodes
            .iter()
            .map(|parts| {
                let mut hashes = parts.iter().rev().map(|t| match found.get(t) {
                    Some(h) => Some(*h),
                    None => leaves.get(t.leaves()).map(subtree_root),
                });
                let last = hashes.next()??;
                hashes.try_fold(last, |acc, left| Some(node_hash(&left?, &acc)))
            })
            .collect()
    }
}

/// The subtrees whose hashes form `PATH(index, D[tree_size])` (RFC 9162 2.1.3.1), in proof order
/// (leaf side first). `None` when `index >= tree_size`. Each range's hash is `root_of` over those
/// leaves, so a store can fetch (or cache) exactly what a proof needs.
pub fn inclusion_proof_ranges(index: u64, tree_size: u64) -> Option<Vec<Range<u64>>> {
    if index >= tree_size {
        return None;
    }
    let mut out = Vec::with_capacity(MAX_FRONTIER);
    let (mut lo, mut hi) = (0u64, tree_size);
    while hi - lo > 1 {
        let mid = lo + split(hi - lo);
        if index < mid {
            out.push(mid..hi);
            hi = mid;
        } else {
            out.push(lo..mid);
            lo = mid;
        }
    }
    out.reverse();
    Some(out)
}

/// The subtrees whose hashes form `PROOF(old_size, D[new_size])` (RFC 9162 2.1.4.1), in proof
/// order. Empty for `old_size == new_size`; `None` when `old_size == 0` (the RFC defines proofs
/// only for `0 < old_size`) or `old_size > new_size`.
pub fn consistency_proof_ranges(old_size: u64, new_size: u64) -> Option<Vec<Range<u64>>> {
    if old_size == 0 || old_size > new_size {
        return None;
    }
    let mut out = Vec::with_capacity(MAX_FRONTIER);
    let (mut lo, mut hi, mut m) = (0u64, new_size, old_size);
    let mut whole_old_tree = true;
    while m != hi - lo {
        let k = split(hi - lo);
        if m <= k {
            out.push(lo + k..hi);
            hi = lo + k;
        } else {
            out.push(lo..lo + k);
            lo += k;
            m -= k;
            whole_old_tree = false;
        }
    }
    if !whole_old_tree {
        out.push(lo..hi);
    }
    out.reverse();
    Some(out)
}

fn hashes_of(leaves: &[Hash], ranges: Vec<Range<u64>>) -> Vec<Hash> {
    ranges
        .into_iter()
        .map(|r| subtree_root(&leaves[r.start as usize..r.end as usize]))
        .collect()
}

/// RFC 9162 2.1.3.1 over `leaves` = all leaf hashes `[0, tree_size)`.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Option<Vec<Hash>> {
    let ranges = inclusion_proof_ranges(index, leaves.len() as u64)?;
    Some(hashes_of(leaves, ranges))
}

/// RFC 9162 2.1.4.1 over `leaves` = all leaf hashes `[0, new_size)`.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Option<Vec<Hash>> {
    let ranges = consistency_proof_ranges(old_size, leaves.len() as u64)?;
    Some(hashes_of(leaves, ranges))
}

fn inclusion_proof_len(index: u64, tree_size: u64) -> usize {
    let (mut lo, mut hi, mut len) = (0u64, tree_size, 0);
    while hi - lo > 1 {
        let mid = lo + split(hi - lo);
        if index < mid {
            hi = mid;
        } else {
            lo = mid;
        }
        len += 1;
    }
    len
}

fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    let (mut lo, mut hi, mut m, mut len) = (0u64, new_size, old_size, 0);
    let mut whole_old_tree = true;
    while m != hi - lo {
        let k = split(hi - lo);
        if m <= k {
            hi = lo + k;
        } else {
            lo += k;
            m -= k;
            whole_old_tree = false;
        }
        len += 1;
    }
    len + usize::from(!whole_old_tree)
}

/// RFC 9162 2.1.3.2. The root must be the one signed for `tree_size`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange { index, tree_size });
    }
    let expected = inclusion_proof_len(index, tree_size);
    let wrong_length = ProofError::WrongLength {
        expected,
        got: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    let (mut fn_, mut sn) = (index, tree_size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(wrong_length);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(wrong_length);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 2.1.4.2, for `0 < old_size < new_size`. Equal sizes need an empty proof and equal
/// roots (the RFC's `SUBPROOF(m, D[m], true) = {}`). `old_size == 0` is refused: the RFC defines
/// no proof from the empty tree, so a client without a previous checkpoint has nothing to check.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OldLargerThanNew { old_size, new_size });
    }
    if old_size == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    let expected = consistency_proof_len(old_size, new_size);
    let wrong_length = ProofError::WrongLength {
        expected,
        got: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    if old_size == new_size {
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    // Step 1: a perfect old tree is itself the first node of the path.
    let (first, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        proof.split_first().ok_or(wrong_length)?
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return Err(wrong_length);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(wrong_length);
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::NewRootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256(parts: &[&[u8]]) -> Hash {
        let joined: Vec<u8> = parts.concat();
        to_hash(digest(&SHA256, &joined))
    }

    /// The RFC text, transcribed as literally as possible, as the oracle.
    mod naive {
        use super::sha256;
        use crate::audit::merkle::Hash;

        fn k_of(n: usize) -> usize {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            k
        }

        pub fn mth(d: &[Hash]) -> Hash {
            match d.len() {
                0 => sha256(&[]),
                1 => d[0],
                n => {
                    let k = k_of(n);
                    sha256(&[&[1u8], &mth(&d[..k]), &mth(&d[k..])])
                }
            }
        }

        pub fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
            let n = d.len();
            if n == 1 {
                return vec![];
            }
            let k = k_of(n);
            let mut p;
            if m < k {
                p = path(m, &d[..k]);
                p.push(mth(&d[k..]));
            } else {
                p = path(m - k, &d[k..]);
                p.push(mth(&d[..k]));
            }
            p
        }

        pub fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
            let n = d.len();
            if m == n {
                return if b { vec![] } else { vec![mth(d)] };
            }
            let k = k_of(n);
            let mut p;
            if m <= k {
                p = subproof(m, &d[..k], b);
                p.push(mth(&d[k..]));
            } else {
                p = subproof(m - k, &d[k..], false);
                p.push(mth(&d[..k]));
            }
            p
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
            .collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn unhex32(s: &str) -> Hash {
        unhex(s).try_into().unwrap()
    }

    fn flip(h: &Hash, byte: usize) -> Hash {
        let mut h = *h;
        h[byte % 32] ^= 0x01;
        h
    }

    // Certificate Transparency reference data (transparency-dev/merkle test vectors).
    const CT_ENTRIES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const CT_ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn ct_leaves() -> Vec<Hash> {
        CT_ENTRIES.iter().map(|e| leaf_hash(&unhex(e))).collect()
    }

    #[test]
    fn empty_tree_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, sha256(&[]));
        assert_eq!(hex::encode(root_of(&[])), CT_ROOTS[0]);
        assert_eq!(Frontier::new().root(), EMPTY_ROOT);
    }

    #[test]
    fn leaf_and_node_hashes_use_the_rfc_prefixes() {
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        assert_eq!(a, sha256(&[&[0], b"a"]));
        assert_eq!(node_hash(&a, &b), sha256(&[&[1], &a, &b]));
        assert_ne!(node_hash(&a, &b), node_hash(&b, &a));
    }

    #[test]
    fn ct_reference_roots() {
        let l = ct_leaves();
        for (n, want) in CT_ROOTS.iter().enumerate() {
            assert_eq!(hex::encode(root_of(&l[..n])), *want, "size {n}");
            assert_eq!(hex::encode(Frontier::from_leaves(&l[..n]).root()), *want);
        }
    }

    #[test]
    fn ct_reference_proofs() {
        let l = ct_leaves();
        let h = |v: &[&str]| v.iter().map(|s| unhex32(s)).collect::<Vec<_>>();
        let incl = [
            (
                0u64,
                8usize,
                h(&[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ]),
            ),
            (
                5,
                8,
                h(&[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ]),
            ),
        ];
        for (i, n, want) in incl {
            assert_eq!(inclusion_proof(&l[..n], i).unwrap(), want);
            let root = unhex32(CT_ROOTS[n]);
            verify_inclusion(&l[i as usize], i, n as u64, &want, &root).unwrap();
        }
        let cons = [
            (
                2u64,
                8usize,
                h(&[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ]),
            ),
            (
                6,
                8,
                h(&[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ]),
            ),
            (
                2,
                5,
                h(&[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ]),
            ),
        ];
        for (m, n, want) in cons {
            assert_eq!(consistency_proof(&l[..n], m).unwrap(), want);
            let (r1, r2) = (unhex32(CT_ROOTS[m as usize]), unhex32(CT_ROOTS[n]));
            verify_consistency(m, n as u64, &r1, &r2, &want).unwrap();
        }
    }

    #[test]
    fn roots_and_proofs_match_the_rfc_recursion_up_to_70() {
        let l = leaves(70);
        for n in 1..=70usize {
            let d = &l[..n];
            assert_eq!(root_of(d), naive::mth(d), "root {n}");
            for m in 0..n {
                assert_eq!(
                    inclusion_proof(d, m as u64).unwrap(),
                    naive::path(m, d),
                    "inclusion {m}/{n}"
                );
            }
            for m in 1..=n {
                assert_eq!(
                    consistency_proof(d, m as u64).unwrap(),
                    naive::subproof(m, d, true),
                    "consistency {m}->{n}"
                );
            }
        }
    }

    #[test]
    fn every_inclusion_proof_verifies_and_every_mangled_one_is_refused() {
        let l = leaves(70);
        let roots: Vec<Hash> = (0..=70).map(|n| root_of(&l[..n])).collect();
        for n in 1..=70u64 {
            let root = &roots[n as usize];
            for i in 0..n {
                let leaf = &l[i as usize];
                let proof = inclusion_proof(&l[..n as usize], i).unwrap();
                assert_eq!(verify_inclusion(leaf, i, n, &proof, root), Ok(()));
                let refused = |leaf: &Hash, i: u64, size: u64, proof: &[Hash], root: &Hash| {
                    verify_inclusion(leaf, i, size, proof, root).is_err()
                };
                for other in (1..=70u64).filter(|&s| s != n && i < s) {
                    assert!(
                        refused(leaf, i, other, &proof, &roots[other as usize]),
                        "size {other} accepted for {i}/{n}"
                    );
                }
                for j in (0..n).filter(|&j| j != i) {
                    assert!(refused(leaf, j, n, &proof, root), "index {j} for {i}/{n}");
                }
                assert!(refused(leaf, n, n, &proof, root));
                assert!(refused(leaf, u64::MAX, n, &proof, root));
                for b in 0..32 {
                    assert!(refused(&flip(leaf, b), i, n, &proof, root), "leaf byte {b}");
                }
                assert!(refused(leaf, i, n, &proof, &flip(root, 5)));
                for k in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[k] = flip(&bad[k], k * 7 + i as usize);
                    assert!(refused(leaf, i, n, &bad, root), "node {k} of {i}/{n}");
                }
                if !proof.is_empty() {
                    assert!(refused(leaf, i, n, &proof[..proof.len() - 1], root));
                    assert!(refused(leaf, i, n, &proof[1..], root));
                    assert!(refused(leaf, i, n, &[], root), "empty proof {i}/{n}");
                    if proof.len() > 1 {
                        let mut swapped = proof.clone();
                        swapped.swap(0, 1);
                        assert!(refused(leaf, i, n, &swapped, root));
                    }
                }
                let mut longer = proof.clone();
                longer.push(*leaf);
                assert!(refused(leaf, i, n, &longer, root), "extended {i}/{n}");
                let mut longer = vec![l[0]];
                longer.extend_from_slice(&proof);
                assert!(refused(leaf, i, n, &longer, root));
            }
        }
    }

    #[test]
    fn inclusion_errors_name_the_failure() {
        let l = leaves(5);
        let root = root_of(&l);
        let proof = inclusion_proof(&l, 2).unwrap();
        assert_eq!(
            verify_inclusion(&l[2], 5, 5, &proof, &root),
            Err(ProofError::IndexOutOfRange {
                index: 5,
                tree_size: 5
            })
        );
        assert_eq!(
            verify_inclusion(&l[2], 2, 5, &proof[..1], &root),
            Err(ProofError::WrongLength {
                expected: proof.len(),
                got: 1
            })
        );
        assert_eq!(
            verify_inclusion(&l[3], 2, 5, &proof, &root),
            Err(ProofError::RootMismatch)
        );
        assert_eq!(
            verify_inclusion(&l[0], 0, 0, &[], &EMPTY_ROOT),
            Err(ProofError::IndexOutOfRange {
                index: 0,
                tree_size: 0
            })
        );
        assert_eq!(inclusion_proof(&l, 5), None);
        assert_eq!(inclusion_proof(&[], 0), None);
        // A one-leaf tree's root is its leaf, with an empty proof.
        assert_eq!(verify_inclusion(&l[0], 0, 1, &[], &l[0]), Ok(()));
        assert!(verify_inclusion(&l[0], 0, 1, &[l[1]], &l[0]).is_err());
    }

    #[test]
    fn every_consistency_proof_verifies_and_every_mangled_one_is_refused() {
        let l = leaves(70);
        let roots: Vec<Hash> = (0..=70).map(|n| root_of(&l[..n])).collect();
        let refused = |m: u64, n: u64, r1: &Hash, r2: &Hash, p: &[Hash]| {
            verify_consistency(m, n, r1, r2, p).is_err()
        };
        for n in 1..=70u64 {
            let r2 = &roots[n as usize];
            for m in 1..=n {
                let r1 = &roots[m as usize];
                let proof = consistency_proof(&l[..n as usize], m).unwrap();
                assert_eq!(verify_consistency(m, n, r1, r2, &proof), Ok(()), "{m}->{n}");
                assert!(refused(m, n, &flip(r1, 3), r2, &proof), "old root {m}->{n}");
                assert!(refused(m, n, r1, &flip(r2, 3), &proof), "new root {m}->{n}");
                assert!(refused(n, m, r2, r1, &proof) || m == n);
                for other in (1..=70u64).filter(|&s| s != n && s >= m) {
                    assert!(
                        refused(m, other, r1, &roots[other as usize], &proof),
                        "new size {other} for {m}->{n}"
                    );
                }
                for other in (1..=n).filter(|&s| s != m) {
                    assert!(
                        refused(other, n, &roots[other as usize], r2, &proof),
                        "old size {other} for {m}->{n}"
                    );
                }
                for k in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[k] = flip(&bad[k], k * 11 + m as usize);
                    assert!(refused(m, n, r1, r2, &bad), "node {k} of {m}->{n}");
                }
                if !proof.is_empty() {
                    assert!(refused(m, n, r1, r2, &proof[..proof.len() - 1]));
                    assert!(refused(m, n, r1, r2, &proof[1..]));
                    assert!(refused(m, n, r1, r2, &[]), "empty proof {m}->{n}");
                }
                let mut longer = proof.clone();
                longer.push(l[0]);
                assert!(refused(m, n, r1, r2, &longer), "extended {m}->{n}");
            }
        }
    }

    #[test]
    fn consistency_edge_cases() {
        let l = leaves(9);
        let r = |n: usize| root_of(&l[..n]);
        let p = consistency_proof(&l, 3).unwrap();
        assert_eq!(
            verify_consistency(9, 3, &r(9), &r(3), &p),
            Err(ProofError::OldLargerThanNew {
                old_size: 9,
                new_size: 3
            })
        );
        assert_eq!(consistency_proof(&l[..3], 9), None);
        // Old size 0: outside the RFC's 0 < first; no proof is produced or accepted.
        assert_eq!(consistency_proof(&l, 0), None);
        assert_eq!(
            verify_consistency(0, 9, &EMPTY_ROOT, &r(9), &[]),
            Err(ProofError::EmptyOldTree)
        );
        assert_eq!(
            verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[]),
            Err(ProofError::EmptyOldTree)
        );
        // Same size: empty proof, same root.
        assert_eq!(consistency_proof(&l, 9), Some(vec![]));
        assert_eq!(verify_consistency(9, 9, &r(9), &r(9), &[]), Ok(()));
        assert_eq!(
            verify_consistency(9, 9, &r(9), &r(8), &[]),
            Err(ProofError::RootMismatch)
        );
        assert!(verify_consistency(9, 9, &r(9), &r(9), &[r(9)]).is_err());
        // A tree rewritten below the old size is refused even with a proof built from it.
        let mut forged = l.clone();
        forged[1] = leaf_hash(b"rewritten");
        let p = consistency_proof(&forged, 4).unwrap();
        assert!(verify_consistency(4, 9, &r(4), &root_of(&forged), &p).is_err());
        let p = consistency_proof(&forged, 5).unwrap();
        assert_eq!(
            verify_consistency(5, 9, &r(5), &root_of(&forged), &p),
            Err(ProofError::OldRootMismatch)
        );
    }

    #[test]
    fn proof_ranges_cover_the_tree_once() {
        for n in 1..=300u64 {
            for i in [0, n / 3, n / 2, n - 1] {
                let mut covered = vec![false; n as usize];
                covered[i as usize] = true;
                for r in inclusion_proof_ranges(i, n).unwrap() {
                    for x in r {
                        assert!(!covered[x as usize], "overlap at {x} for {i}/{n}");
                        covered[x as usize] = true;
                    }
                }
                assert!(covered.iter().all(|c| *c), "gap for {i}/{n}");
                assert_eq!(
                    inclusion_proof_ranges(i, n).unwrap().len(),
                    inclusion_proof_len(i, n)
                );
            }
            for m in [1, n / 2 + 1, n] {
                let ranges = consistency_proof_ranges(m, n).unwrap();
                assert_eq!(ranges.len(), consistency_proof_len(m, n), "{m}->{n}");
                assert!(ranges.iter().all(|r| r.start < r.end && r.end <= n));
            }
        }
        assert_eq!(inclusion_proof_ranges(3, 3), None);
        assert_eq!(consistency_proof_ranges(0, 3), None);
        assert_eq!(consistency_proof_ranges(4, 3), None);
        let big = u64::MAX;
        assert_eq!(inclusion_proof_ranges(0, big).unwrap().len(), 64);
        assert_eq!(inclusion_proof_ranges(big - 1, big).unwrap().len(), 63);
        assert!(consistency_proof_ranges(big - 2, big).unwrap().len() <= 128);
    }

    #[test]
    fn frontier_matches_root_of_at_every_size_and_round_trips() {
        let l = leaves(300);
        let mut f = TreeBuilder::new();
        assert_eq!(Frontier::from_bytes(&f.to_bytes()), Some(f.clone()));
        for n in 1..=300usize {
            f.push(l[n - 1]);
            assert_eq!(f.size(), n as u64);
            assert_eq!(f.root(), root_of(&l[..n]), "size {n}");
            let bytes = f.to_bytes();
            let back = Frontier::from_bytes(&bytes).unwrap();
            assert_eq!(back, f);
            assert_eq!(back.root(), f.root());
            assert_eq!(bytes.len(), 9 + 32 * (n as u64).count_ones() as usize);
        }
        // A frontier restored from bytes keeps growing into the same tree.
        let mut restored =
            Frontier::from_bytes(&Frontier::from_leaves(&l[..137]).to_bytes()).unwrap();
        for leaf in &l[137..] {
            restored.push(*leaf);
        }
        assert_eq!(restored, f);
    }

    #[test]
    fn frontier_from_bad_bytes_is_refused() {
        let f = Frontier::from_leaves(&leaves(13));
        let good = f.to_bytes();
        assert!(Frontier::from_bytes(&[]).is_none());
        assert!(Frontier::from_bytes(&good[..good.len() - 1]).is_none());
        assert!(Frontier::from_bytes(&good[..9]).is_none());
        let mut longer = good.clone();
        longer.extend_from_slice(&[0; 32]);
        assert!(Frontier::from_bytes(&longer).is_none());
        let mut other_format = good.clone();
        other_format[0] = 2;
        assert!(Frontier::from_bytes(&other_format).is_none());
        let mut other_size = good.clone();
        other_size[8] ^= 0x02; // 13 -> 15: four nodes expected, three present
        assert!(Frontier::from_bytes(&other_size).is_none());
        let mut max = vec![FRONTIER_FORMAT];
        max.extend_from_slice(&u64::MAX.to_be_bytes());
        max.extend_from_slice(&[7; 32 * 64]);
        assert_eq!(Frontier::from_bytes(&max).map(|f| f.size()), Some(u64::MAX));
    }

    /// Every perfect subtree the leaves complete, as the writer persists them: level and hash.
    fn stored_subtrees(l: &[Hash]) -> HashMap<Subtree, Hash> {
        let mut f = Frontier::new();
        let mut out = HashMap::new();
        for leaf in l {
            f.push_reporting(*leaf, |t, h| {
                if t.is_stored() {
                    out.insert(t, *h);
                }
            });
        }
        out
    }

    /// Runs a plan the way the API does: look up stored subtrees in `store`, read the leaves it then asks for.
    fn run_plan(
        ranges: &[Range<u64>],
        l: &[Hash],
        store: &HashMap<Subtree, Hash>,
    ) -> (Vec<Hash>, usize) {
        let plan = ProofPlan::new(ranges).expect("RFC tree nodes");
        let found: HashMap<Subtree, Hash> = plan
            .stored()
            .into_iter()
            .filter_map(|t| store.get(&t).map(|h| (t, *h)))
            .collect();
        let mut leaves = LeafRuns::new();
        for r in plan.leaf_reads(&found) {
            leaves.insert(r.start, l[r.start as usize..r.end as usize].to_vec());
        }
        let read = leaves.total();
        (plan.hashes(&found, &leaves).expect("leaves read"), read)
    }

    #[test]
    fn push_reporting_names_every_perfect_subtree_once_with_its_hash() {
        let l = leaves(1_100);
        let mut f = Frontier::new();
        let mut seen = Vec::new();
        for leaf in &l {
            f.push_reporting(*leaf, |t, h| seen.push((t, *h)));
        }
        let mut expected = Vec::new();
        for level in 1..=10u8 {
            for index in 0..(1_100u64 >> level) {
                expected.push(Subtree { level, index });
            }
        }
        assert_eq!(seen.len(), expected.len());
        for (t, h) in &seen {
            let r = t.leaves();
            assert_eq!(*h, root_of(&l[r.start as usize..r.end as usize]), "{t:?}");
        }
        let mut names: Vec<Subtree> = seen.iter().map(|(t, _)| *t).collect();
        names.sort_unstable();
        expected.sort_unstable();
        assert_eq!(names, expected);
        assert_eq!(f.root(), root_of(&l));
    }

    #[test]
    fn subtrees_of_takes_only_rfc_tree_nodes() {
        assert_eq!(subtrees_of(0..0), None);
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 5..4;
        assert_eq!(subtrees_of(backwards), None);
        assert_eq!(
            subtrees_of(2..6),
            None,
            "4 wide must start at a multiple of 4"
        );
        assert_eq!(
            subtrees_of(8..15),
            Some(vec![
                Subtree { level: 2, index: 2 },
                Subtree { level: 1, index: 6 },
                Subtree {
                    level: 0,
                    index: 14
                },
            ])
        );
        assert_eq!(
            subtrees_of(3..4),
            Some(vec![Subtree { level: 0, index: 3 }])
        );
        let t = Subtree { level: 8, index: 3 };
        assert_eq!(t.leaves(), 768..1024);
        assert!(t.is_stored() && !Subtree { level: 7, index: 0 }.is_stored());
    }

    #[test]
    fn planned_proofs_equal_proofs_over_all_leaves_with_and_without_stored_subtrees() {
        let l = leaves(1_300);
        let store = stored_subtrees(&l);
        let none = HashMap::new();
        for n in (1..=1_300u64)
            .step_by(7)
            .chain([255, 256, 257, 511, 512, 1_024, 1_025])
        {
            let all = &l[..n as usize];
            for i in [0, n / 3, n / 2, n - 1] {
                let mut ranges = inclusion_proof_ranges(i, n).unwrap();
                ranges.extend([0..n, i..i + 1]);
                let mut expected = inclusion_proof(all, i).unwrap();
                expected.extend([root_of(all), l[i as usize]]);
                assert_eq!(run_plan(&ranges, all, &store).0, expected, "n {n} i {i}");
                assert_eq!(
                    run_plan(&ranges, all, &none).0,
                    expected,
                    "n {n} i {i}, no subtrees"
                );
            }
            for m in [1, n / 2, n - 1, n].into_iter().filter(|m| *m >= 1) {
                let mut ranges = consistency_proof_ranges(m, n).unwrap();
                ranges.extend([0..m, 0..n]);
                let mut expected = consistency_proof(all, m).unwrap();
                expected.extend([root_of(&all[..m as usize]), root_of(all)]);
                assert_eq!(run_plan(&ranges, all, &store).0, expected, "n {n} m {m}");
                assert_eq!(
                    run_plan(&ranges, all, &none).0,
                    expected,
                    "n {n} m {m}, no subtrees"
                );
            }
        }
    }

    #[test]
    fn with_stored_subtrees_a_proof_reads_a_few_hundred_leaves_whatever_the_size() {
        let n = 100_003u64;
        let l: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let store = stored_subtrees(&l);
        assert_eq!(store.len() as u64, (8..=16).map(|lv| n >> lv).sum::<u64>());
        let root = root_of(&l);
        for i in [0, 1, 255, 256, 77_777, 99_999, 99_840, n - 1] {
            let mut ranges = inclusion_proof_ranges(i, n).unwrap();
            ranges.push(0..n);
            let (hashes, read) = run_plan(&ranges, &l, &store);
            assert!(read <= 2 * 256, "index {i}: {read} leaf hashes read");
            let (proof, got_root) = hashes.split_at(hashes.len() - 1);
            assert_eq!(got_root[0], root);
            verify_inclusion(&l[i as usize], i, n, proof, &root).unwrap();
        }
        for m in [1, 2, 300, 65_536, 65_537, 99_999, n] {
            let mut ranges = consistency_proof_ranges(m, n).unwrap();
            ranges.extend([0..m, 0..n]);
            let (hashes, read) = run_plan(&ranges, &l, &store);
            assert!(read <= 3 * 256, "old size {m}: {read} leaf hashes read");
            let (proof, roots) = hashes.split_at(hashes.len() - 2);
            verify_consistency(m, n, &roots[0], &roots[1], proof).unwrap();
            assert_eq!(roots[1], root);
        }
        // Without stored subtrees the same proof needs (nearly) every leaf.
        let ranges = inclusion_proof_ranges(5, n).unwrap();
        assert!(run_plan(&ranges, &l, &HashMap::new()).1 as u64 >= n - 1);
    }

    #[test]
    fn an_altered_stored_subtree_gives_a_proof_that_fails_against_the_true_root() {
        let l = leaves(1_000);
        let mut store = stored_subtrees(&l);
        let root = root_of(&l);
        let victim = Subtree { level: 8, index: 2 };
        let h = store.get_mut(&victim).unwrap();
        *h = flip(h, 0);
        let ranges = inclusion_proof_ranges(3, 1_000).unwrap();
        let (proof, _) = run_plan(&ranges, &l, &store);
        assert_eq!(
            verify_inclusion(&l[3], 3, 1_000, &proof, &root),
            Err(ProofError::RootMismatch)
        );
    }

    #[test]
    fn a_plan_refuses_missing_leaves_and_non_nodes() {
        assert!(ProofPlan::new(std::slice::from_ref(&(1..3))).is_none());
        let plan = ProofPlan::new(std::slice::from_ref(&(0..300))).unwrap();
        let found = HashMap::new();
        let reads = plan.leaf_reads(&found);
        assert_eq!(reads, vec![0..300]);
        let mut short = LeafRuns::new();
        short.insert(0, leaves(299));
        assert_eq!(plan.hashes(&found, &short), None);
        let mut full = LeafRuns::new();
        full.insert(0, leaves(300));
        assert_eq!(
            plan.hashes(&found, &full),
            Some(vec![root_of(&leaves(300))])
        );
    }

    /// Exercises the hot loops on a larger tree; timing is measured elsewhere, never asserted.
    #[test]
    fn large_tree_smoke() {
        let l: Vec<Hash> = (0u32..20_000)
            .map(|i| leaf_hash(&i.to_be_bytes()))
            .collect();
        let mut f = Frontier::new();
        for leaf in &l {
            f.push(*leaf);
        }
        assert_eq!(f.root(), root_of(&l));
        let root = f.root();
        for i in [0u64, 9_999, 19_999] {
            let p = inclusion_proof(&l, i).unwrap();
            verify_inclusion(&l[i as usize], i, 20_000, &p, &root).unwrap();
        }
        let p = consistency_proof(&l, 12_345).unwrap();
        verify_consistency(12_345, 20_000, &root_of(&l[..12_345]), &root, &p).unwrap();
    }
}
