//! `ketenpoort audit verify`: recompute every log in the database and check it against its signed checkpoints.
//!
//! Detects deleted, altered, inserted and reordered entries, and names the first bad one. Reads only; never
//! repairs. Entries are streamed in pages so memory stays flat on large logs.

use super::checkpoint::{verify_checkpoint, SignedCheckpoint};
use super::entry::LogEntry;
use super::merkle::{leaf_hash, Frontier, Hash};
use super::writer::chain_hash;
use crate::store::{DynStore, StoreError};
use std::fmt;
use std::time::Instant;

const PAGE: usize = 20_000;

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
    let state = store.load_log_state(log_id).await?;
    let mut next_cp = 0;
    let mut frontier = Frontier::new();
    let mut chain: Hash = [0; 32];
    let mut seq: u64 = 0;
    loop {
        let page = store.entries(log_id, seq, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for e in &page {
            let bad = |why: String| Some((seq, why));
            if e.seq != seq {
                report.first_bad = bad(format!("entry missing: next stored entry is {}", e.seq));
                return Ok(report);
            }
            let leaf = leaf_hash(&e.bytes);
            if leaf != e.leaf_hash {
                report.first_bad =
                    bad("entry content does not match its leaf hash (altered)".into());
                return Ok(report);
            }
            match LogEntry::decode(&e.bytes) {
                Ok(d) if d.seq == seq && d.log_id == log_id => {}
                Ok(_) => {
                    report.first_bad =
                        bad("entry names another position (reordered or copied)".into());
                    return Ok(report);
                }
                Err(_) => {
                    report.first_bad = bad("entry cannot be decoded".into());
                    return Ok(report);
                }
            }
            chain = chain_hash(&chain, &leaf);
            if chain != e.chain_hash {
                report.first_bad =
                    bad("hash chain broken (an earlier entry was removed or altered)".into());
                return Ok(report);
            }
            frontier.push(leaf);
            seq += 1;
            report.entries = seq;
            while next_cp < checkpoints.len() && checkpoints[next_cp].checkpoint.tree_size == seq {
                if let Some(why) =
                    check_checkpoint(&checkpoints[next_cp], &frontier.root(), trusted_keys)
                {
                    report.first_bad = Some((seq - 1, why));
                    return Ok(report);
                }
                report.checkpoints_checked += 1;
                next_cp += 1;
            }
        }
    }
    if let Some(cp) = checkpoints.get(next_cp) {
        report.first_bad = Some((
            seq,
            format!(
                "entries missing: a signed checkpoint covers {} entries, only {} are stored",
                cp.checkpoint.tree_size, seq
            ),
        ));
        return Ok(report);
    }
    if let Some(state) = state {
        if state.size != seq || state.chain_head != chain {
            report.first_bad = Some((seq, "stored log state does not match the entries".into()));
        }
    }
    Ok(report)
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
