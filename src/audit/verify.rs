//! `ketenpoort audit verify`: recompute every log in the database and check it against its signed checkpoints.
//!
//! Detects deleted, altered, inserted and reordered entries, and names the first bad one. Reads only; never
//! repairs. Entries are streamed in pages so memory stays flat on large logs.

use super::checkpoint::{verify_checkpoint, SignedCheckpoint};
use super::entry::{LogEntry, ENTRY_VERSION};
use super::merkle::{leaf_hash, Frontier, Hash};
use super::writer::chain_hash;
use crate::store::{DynStore, LogRow, StoreError};
use std::fmt;
use std::time::Instant;

/// Entries per page read; small enough that reading, hashing and walking overlap, large enough to amortise a read.
const PAGE: usize = 4_096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReport {
    pub log_id: String,
    pub entries: u64,
    pub checkpoints_checked: u64,
    /// The first problem found: (sequence number, what is wrong).
    pub first_bad: Option<(u64, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub logs: Vec<LogReport>,
    pub seconds: f64,
    pub signatures_checked: bool,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.logs.iter().all(|l| l.first_bad.is_none())
    }

    pub fn entries(&self) -> u64 {
        self.logs.iter().map(|l| l.entries).sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.logs {
            match &l.first_bad {
                None => writeln!(
                    f,
                    "log {}: ok, {} entries, {} checkpoint(s) verified",
                    l.log_id, l.entries, l.checkpoints_checked
                )?,
                Some((seq, why)) => writeln!(
                    f,
                    "log {}: FAILED at entry {}: {} ({} entries read)",
                    l.log_id, seq, why, l.entries
                )?,
            }
        }
        if !self.signatures_checked {
            writeln!(
                f,
                "warning: no trusted public key given; checkpoint signatures were not checked"
            )?;
        }
        let rate = if self.seconds > 0.0 {
            self.entries() as f64 / self.seconds
        } else {
            0.0
        };
        writeln!(
            f,
            "{}: {} entries in {:.3} s ({:.0} entries/s)",
            if self.ok() {
                "verified"
            } else {
                "NOT verified"
            },
            self.entries(),
            self.seconds,
            rate
        )
    }
}

/// Verifies every log in the store. Checkpoint signatures must verify with one of `trusted_keys`
/// (when none are given, roots are still compared but signatures are not checked).
pub async fn verify_all(store: &DynStore, trusted_keys: &[[u8; 32]]) -> Result<Report, StoreError> {
    let started = Instant::now();
    let mut logs = Vec::new();
    for log_id in store.log_ids().await? {
        logs.push(verify_log(store, &log_id, trusted_keys).await?);
    }
    Ok(Report {
        logs,
        seconds: started.elapsed().as_secs_f64(),
        signatures_checked: !trusted_keys.is_empty(),
    })
}

/// Verifies one log. Safe to run while the gateway appends: entries written during the run are checked up to
/// the log state read at its end; anything the stored state or a checkpoint covers must be present.
pub async fn verify_log(
    store: &DynStore,
    log_id: &str,
    trusted_keys: &[[u8; 32]],
) -> Result<LogReport, StoreError> {
    let mut report = LogReport {
        log_id: log_id.to_owned(),
        entries: 0,
        checkpoints_checked: 0,
        first_bad: None,
    };
    // Checkpoints, oldest first: each must match the root recomputed at its size.
    let mut checkpoints = Vec::new();
    for cp in store
        .checkpoints(log_id, usize::MAX >> 1)
        .await?
        .into_iter()
        .rev()
    {
        match SignedCheckpoint::from_note(&cp.note) {
            Ok(sc) if sc.checkpoint.tree_size == cp.tree_size && sc.checkpoint.log_id == log_id => {
                checkpoints.push(sc)
            }
            _ => {
                report.first_bad = Some((
                    cp.tree_size,
                    "checkpoint note is malformed or does not match its row".into(),
                ));
                return Ok(report);
            }
        }
    }
    let mut walk = Walk {
        log_id,
        checkpoints: &checkpoints,
        trusted_keys,
        frontier: Frontier::new(),
        chain: [0; 32],
        seq: 0,
        next_cp: 0,
        checkpoints_checked: 0,
        prefix: Vec::new(),
        prefix_len: 0,
    };
    walk.prefix = format!(
        "{{\"v\":{ENTRY_VERSION},\"log_id\":{},\"seq\":",
        serde_json::to_string(log_id).unwrap_or_default()
    )
    .into_bytes();
    walk.prefix_len = walk.prefix.len();
    let mut bad = walk.read(store, None).await?;
    // Read after the entries: on a live log it may already cover entries appended since.
    let state = if bad.is_none() {
        store.load_log_state(log_id).await?
    } else {
        None
    };
    if let Some(st) = state.as_ref().filter(|st| st.size > walk.seq) {
        bad = walk.read(store, Some(st.size)).await?;
    }
    report.entries = walk.seq;
    report.checkpoints_checked = walk.checkpoints_checked;
    if bad.is_some() {
        report.first_bad = bad;
        return Ok(report);
    }
    if let Some(cp) = checkpoints.get(walk.next_cp) {
        report.first_bad = Some((
            walk.seq,
            format!(
                "entries missing: a signed checkpoint covers {} entries, only {} are stored",
                cp.checkpoint.tree_size, walk.seq
            ),
        ));
        return Ok(report);
    }
    if let Some(state) = state {
        if state.size != walk.seq || state.chain_head != walk.chain {
            report.first_bad = Some((
                walk.seq,
                "stored log state does not match the entries".into(),
            ));
        }
    }
    Ok(report)
}

/// The running recomputation of one log: tree, hash chain and the next checkpoint to meet.
struct Walk<'a> {
    log_id: &'a str,
    checkpoints: &'a [SignedCheckpoint],
    trusted_keys: &'a [[u8; 32]],
    frontier: Frontier,
    chain: Hash,
    seq: u64,
    next_cp: usize,
    checkpoints_checked: u64,
    /// `{"v":1,"log_id":"<id>","seq":` followed by the sequence number being checked.
    prefix: Vec<u8>,
    prefix_len: usize,
}

impl Walk<'_> {
    /// Checks stored entries from `self.seq` on, up to `until` (exclusive) or the last one stored.
    /// Returns the first problem found. The next page is read while the current one is hashed.
    async fn read(
        &mut self,
        store: &DynStore,
        until: Option<u64>,
    ) -> Result<Option<(u64, String)>, StoreError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<LogRow>, StoreError>>(2);
        let reader = {
            let store = store.clone();
            let log_id = self.log_id.to_owned();
            let mut next = self.seq;
            tokio::spawn(async move {
                loop {
                    let want = match until {
                        Some(u) if next >= u => return,
                        Some(u) => (u - next).min(PAGE as u64) as usize,
                        None => PAGE,
                    };
                    let page = store.log_rows(&log_id, next, want).await;
                    let done = match &page {
                        Ok(p) if p.is_empty() => true,
                        Ok(p) => {
                            next = p.last().map(|r| r.seq + 1).unwrap_or(next);
                            false
                        }
                        Err(_) => true,
                    };
                    if tx.send(page).await.is_err() || done {
                        return;
                    }
                }
            })
        };
        // Leaf hashes of a page are computed on a blocking thread while the next page is read and the previous
        // one is walked: reading, hashing and walking use both cores.
        let (htx, mut hrx) =
            tokio::sync::mpsc::channel::<Result<(Vec<LogRow>, Vec<Hash>), StoreError>>(2);
        let hasher = tokio::spawn(async move {
            while let Some(page) = rx.recv().await {
                let hashed = match page {
                    Ok(page) => tokio::task::spawn_blocking(move || {
                        let leaves: Vec<Hash> = page.iter().map(|r| leaf_hash(&r.bytes)).collect();
                        (page, leaves)
                    })
                    .await
                    .map_err(|e| StoreError::Unavailable(format!("log hasher stopped: {e}"))),
                    Err(e) => Err(e),
                };
                if htx.send(hashed).await.is_err() {
                    return;
                }
            }
        });
        let mut result = Ok(None);
        while let Some(page) = hrx.recv().await {
            let (page, leaves) = match page {
                Ok(p) => p,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            if page.is_empty() {
                break;
            }
            if let Some(bad) = page
                .iter()
                .zip(&leaves)
                .find_map(|(row, leaf)| self.check(row, leaf))
            {
                result = Ok(Some(bad));
                break;
            }
        }
        drop(hrx);
        let _ = hasher.await;
        let _ = reader.await;
        result
    }

    /// `leaf` is the leaf hash recomputed from `e.bytes`.
    fn check(&mut self, e: &LogRow, leaf: &Hash) -> Option<(u64, String)> {
        let seq = self.seq;
        let bad = |why: String| Some((seq, why));
        if e.seq != seq {
            return bad(format!("entry missing: next stored entry is {}", e.seq));
        }
        let leaf = *leaf;
        if leaf != e.leaf_hash {
            return bad("entry content does not match its leaf hash (altered)".into());
        }
        if !self.names_its_position(&e.bytes, seq) {
            match LogEntry::decode(&e.bytes) {
                Ok(d) if d.seq == seq && d.log_id == self.log_id => {}
                Ok(_) => return bad("entry names another position (reordered or copied)".into()),
                Err(_) => return bad("entry cannot be decoded".into()),
            }
        }
        self.chain = chain_hash(&self.chain, &leaf);
        if self.chain != e.chain_hash {
            return bad("hash chain broken (an earlier entry was removed or altered)".into());
        }
        self.frontier.push(leaf);
        self.seq += 1;
        while self.next_cp < self.checkpoints.len()
            && self.checkpoints[self.next_cp].checkpoint.tree_size == self.seq
        {
            if let Some(why) = check_checkpoint(
                &self.checkpoints[self.next_cp],
                &self.frontier.root(),
                self.trusted_keys,
            ) {
                return Some((self.seq - 1, why));
            }
            self.checkpoints_checked += 1;
            self.next_cp += 1;
        }
        None
    }

    /// Whether the bytes start as the canonical encoding of an entry at this log and position does
    /// (`{"v":1,"log_id":...,"seq":N,`): the fast path; anything else is decoded in full.
    fn names_its_position(&mut self, bytes: &[u8], seq: u64) -> bool {
        use std::io::Write;
        self.prefix.truncate(self.prefix_len);
        let _ = write!(self.prefix, "{seq},");
        bytes.starts_with(&self.prefix)
    }
}

fn check_checkpoint(
    sc: &SignedCheckpoint,
    root: &Hash,
    trusted_keys: &[[u8; 32]],
) -> Option<String> {
    if &sc.checkpoint.root != root {
        return Some(format!(
            "recomputed root differs from the signed checkpoint at size {}",
            sc.checkpoint.tree_size
        ));
    }
    if !trusted_keys.is_empty()
        && !trusted_keys
            .iter()
            .any(|k| verify_checkpoint(k, sc).is_ok())
    {
        return Some(format!(
            "checkpoint at size {} is not signed by a trusted key",
            sc.checkpoint.tree_size
        ));
    }
    None
}

/// Reads a trusted public key file: the raw 32-byte Ed25519 key in base64 (as `SigningKey` writes it).
pub fn read_public_key(path: &std::path::Path) -> Result<[u8; 32], std::io::Error> {
    use base64::Engine;
    let text = std::fs::read_to_string(path)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "public key file is not base64",
            )
        })?;
    bytes.try_into().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "public key is not 32 bytes",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::entry::EventKind;

    #[test]
    fn the_fast_position_check_matches_the_canonical_encoding_only_at_its_own_position() {
        let mut e = LogEntry::new(EventKind::MessageDisclosed);
        e.log_id = "ketenpoort-0a1b2c".into();
        e.seq = 42;
        let bytes = e.encode();
        let checkpoints = Vec::new();
        let prefix = format!(
            "{{\"v\":{ENTRY_VERSION},\"log_id\":{},\"seq\":",
            serde_json::to_string(&e.log_id).unwrap()
        )
        .into_bytes();
        let mut walk = Walk {
            log_id: "ketenpoort-0a1b2c",
            checkpoints: &checkpoints,
            trusted_keys: &[],
            frontier: Frontier::new(),
            chain: [0; 32],
            seq: 0,
            next_cp: 0,
            checkpoints_checked: 0,
            prefix_len: prefix.len(),
            prefix,
        };
        assert!(walk.names_its_position(&bytes, 42));
        assert!(!walk.names_its_position(&bytes, 4));
        assert!(!walk.names_its_position(&bytes, 420));
        let mut other = e.clone();
        other.log_id = "ketenpoort-ffffff".into();
        assert!(!walk.names_its_position(&other.encode(), 42));
    }
}
