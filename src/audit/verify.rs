//! `ketenpoort audit verify`: recompute every log in the database and check it against its signed checkpoints.
//!
//! Detects deleted, altered, inserted and reordered entries, and names the first bad one. Reads only; never
//! repairs. Entries are streamed in pages so memory stays flat on large logs.

use super::checkpoint::{verify_checkpoint, SignedCheckpoint};
use super::entry::{LogEntry, ENTRY_VERSIONS};
use super::merkle::{leaf_hash, Frontier, Hash, STORED_LEVEL};
use super::writer::{chain_hash, extend_tree};
use crate::store::{DynStore, LogRowRef, RowVisitor, StoreError, StoredSubtree, SubtreeSpan};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Entries per page read; small enough that reading, hashing and walking overlap, large enough to amortise a read
/// (each opens a reader connection and its memory map: 4 pages of 16,384 verified 10–12 % more entries a second
/// than 3 of 8,192 in three alternated rounds on 1 M entries; 2,048 a page was 20 % slower; BENCHMARKS.md).
pub const PAGE: usize = 16_384;
/// Pages read and hashed at the same time (each on a blocking thread), ahead of the walk.
const IN_FLIGHT: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReport {
    pub log_id: String,
    pub entries: u64,
    pub checkpoints_checked: u64,
    /// Stored Merkle subtrees compared with the recomputed tree.
    pub subtrees_checked: u64,
    /// Perfect subtrees the writer would store that are not stored (a log written before they were kept): proofs
    /// hash their leaves instead. Not an integrity failure.
    pub subtrees_missing: u64,
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
                None => {
                    writeln!(
                        f,
                        "log {}: ok, {} entries, {} checkpoint(s) verified, {} stored subtree(s) checked",
                        l.log_id, l.entries, l.checkpoints_checked, l.subtrees_checked
                    )?;
                    if l.subtrees_missing > 0 {
                        writeln!(
                            f,
                            "log {}: {} subtree(s) of entries written before subtrees were stored are not stored; proofs hash those leaves",
                            l.log_id, l.subtrees_missing
                        )?;
                    }
                }
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
        subtrees_checked: 0,
        subtrees_missing: 0,
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
        prefix: PositionPrefix::new(log_id),
        subtrees: Vec::new(),
    };
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
            return Ok(report);
        }
    }
    check_subtrees(store, log_id, &walk.subtrees, &mut report).await?;
    Ok(report)
}

/// Compares the stored subtrees of the verified part of the log with the recomputed ones. A stored subtree that
/// differs would make proofs fail against the signed roots; one the writer would have stored but that is absent is
/// only counted (written before subtrees were kept). Stored subtrees beyond the verified size are not judged: on a
/// live log they may belong to entries appended since.
async fn check_subtrees(
    store: &DynStore,
    log_id: &str,
    computed: &[StoredSubtree],
    report: &mut LogReport,
) -> Result<(), StoreError> {
    let levels: Vec<SubtreeSpan> = (STORED_LEVEL..64)
        .take_while(|level| report.entries >> level > 0)
        .map(|level| SubtreeSpan {
            level,
            indices: 0..report.entries >> level,
        })
        .collect();
    let stored = super::subtree_hashes(store.subtrees(log_id, &levels).await?);
    for row in computed {
        let t = super::subtree_of(row);
        match stored.get(&t) {
            Some(h) if *h == row.hash => report.subtrees_checked += 1,
            Some(_) => {
                report.first_bad = Some((
                    t.leaves().end - 1,
                    format!(
                        "stored Merkle subtree (level {}, index {}) does not match the entries (altered; proofs through it fail)",
                        t.level, t.index
                    ),
                ));
                return Ok(());
            }
            None => report.subtrees_missing += 1,
        }
    }
    Ok(())
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
    prefix: PositionPrefix,
    /// The perfect subtrees at `STORED_LEVEL` and up, as recomputed (one per 128 entries, amortised).
    subtrees: Vec<StoredSubtree>,
}

/// One stored row after the parallel part of the checks: its leaf hash recomputed and its position read.
struct Checked {
    seq: u64,
    /// Recomputed from the entry bytes.
    leaf: Hash,
    stored_leaf: Hash,
    stored_chain: Hash,
    /// The entry bytes, kept only when they do not start as the canonical encoding at `seq` does (the walk then
    /// decodes them in full).
    undecided: Option<Vec<u8>>,
}

/// One range of sequence numbers, read and hashed.
struct Page {
    rows: Vec<Checked>,
    /// Fewer rows were stored from the range's start than were asked for: the end of the log when it was read.
    end: bool,
}

/// `{"v":<one of ENTRY_VERSIONS>,"log_id":<id>,"seq":<seq>,`: how every entry's canonical encoding starts.
#[derive(Clone)]
struct PositionPrefix {
    /// `,"log_id":<id>,"seq":`
    tail: Vec<u8>,
}

impl PositionPrefix {
    fn new(log_id: &str) -> PositionPrefix {
        PositionPrefix {
            tail: format!(
                ",\"log_id\":{},\"seq\":",
                serde_json::to_string(log_id).unwrap_or_default()
            )
            .into_bytes(),
        }
    }

    /// Whether the bytes start as the canonical encoding of an entry at this log and position does: the fast
    /// path; anything else is decoded in full.
    fn names(&self, bytes: &[u8], seq: u64) -> bool {
        let Some(rest) = bytes.strip_prefix(b"{\"v\":") else {
            return false;
        };
        let Some(rest) = ENTRY_VERSIONS
            .iter()
            .find_map(|v| strip_decimal(rest, u64::from(*v)))
        else {
            return false;
        };
        rest.strip_prefix(self.tail.as_slice())
            .and_then(|rest| strip_decimal(rest, seq))
            .is_some_and(|rest| rest.first() == Some(&b','))
    }
}

/// `bytes` after the decimal digits of `n`, if they start with them.
fn strip_decimal(bytes: &[u8], mut n: u64) -> Option<&[u8]> {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    bytes.strip_prefix(&buf[i..])
}

/// Reads the entries with sequence numbers `from..from + want`, recomputing their leaf hashes and reading their
/// positions on the reading thread, from the bytes where the store read them (no copy unless undecided).
async fn read_page(
    store: DynStore,
    log_id: String,
    prefix: PositionPrefix,
    from: u64,
    want: usize,
) -> Result<Page, StoreError> {
    let until = from + want as u64;
    let checked = Arc::new(Mutex::new(Vec::with_capacity(want)));
    let into = checked.clone();
    let visit: RowVisitor = Box::new(move |r: LogRowRef<'_>| {
        if r.seq >= until {
            return;
        }
        let row = Checked {
            seq: r.seq,
            leaf: leaf_hash(r.bytes),
            stored_leaf: r.leaf_hash,
            stored_chain: r.chain_hash,
            undecided: (!prefix.names(r.bytes, r.seq)).then(|| r.bytes.to_vec()),
        };
        if let Ok(mut rows) = into.lock() {
            rows.push(row);
        }
    });
    let read = store.visit_log_rows(&log_id, from, want, visit).await?;
    let rows = std::mem::take(
        &mut *checked
            .lock()
            .map_err(|_| StoreError::Unavailable("log hasher panicked".into()))?,
    );
    Ok(Page {
        rows,
        end: read < want,
    })
}

impl Walk<'_> {
    /// Checks stored entries from `self.seq` on, up to `until` (exclusive) or the last one stored.
    /// Returns the first problem found.
    ///
    /// The log is read in ranges of `PAGE` sequence numbers, `IN_FLIGHT` ranges at a time: each is read and
    /// hashed on a blocking thread of its own (reading and hashing use every core), and the ranges are walked in
    /// order. A range that comes back short is the end of the log as it was when read: anything after it (a
    /// range read later, on a live log) is left for the next pass.
    async fn read(
        &mut self,
        store: &DynStore,
        until: Option<u64>,
    ) -> Result<Option<(u64, String)>, StoreError> {
        let mut pending = std::collections::VecDeque::new();
        let mut next = self.seq;
        let result = loop {
            while pending.len() < IN_FLIGHT {
                let want = match until {
                    Some(u) if next >= u => break,
                    Some(u) => (u - next).min(PAGE as u64) as usize,
                    None => PAGE,
                };
                pending.push_back(tokio::spawn(read_page(
                    store.clone(),
                    self.log_id.to_owned(),
                    self.prefix.clone(),
                    next,
                    want,
                )));
                next += want as u64;
            }
            let Some(page) = pending.pop_front() else {
                break Ok(None);
            };
            let page = match page.await {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => break Err(e),
                Err(e) => break Err(StoreError::Unavailable(format!("log reader stopped: {e}"))),
            };
            if let Some(bad) = page.rows.iter().find_map(|row| self.check(row)) {
                break Ok(Some(bad));
            }
            if page.end {
                break Ok(None);
            }
        };
        for p in pending {
            p.abort();
        }
        result
    }

    fn check(&mut self, e: &Checked) -> Option<(u64, String)> {
        let seq = self.seq;
        let bad = |why: String| Some((seq, why));
        if e.seq != seq {
            return bad(format!("entry missing: next stored entry is {}", e.seq));
        }
        let leaf = e.leaf;
        if leaf != e.stored_leaf {
            return bad("entry content does not match its leaf hash (altered)".into());
        }
        if let Some(bytes) = &e.undecided {
            match LogEntry::decode(bytes) {
                Ok(d) if d.seq == seq && d.log_id == self.log_id => {}
                Ok(_) => return bad("entry names another position (reordered or copied)".into()),
                Err(_) => return bad("entry cannot be decoded".into()),
            }
        }
        self.chain = chain_hash(&self.chain, &leaf);
        if self.chain != e.stored_chain {
            return bad("hash chain broken (an earlier entry was removed or altered)".into());
        }
        extend_tree(&mut self.frontier, leaf, &mut self.subtrees);
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
        let prefix = PositionPrefix::new("ketenpoort-0a1b2c");
        for v in ENTRY_VERSIONS {
            e.v = v;
            let bytes = e.encode();
            assert!(prefix.names(&bytes, 42), "v{v}");
            assert!(!prefix.names(&bytes, 4));
            assert!(!prefix.names(&bytes, 420));
            let mut other = e.clone();
            other.log_id = "ketenpoort-ffffff".into();
            assert!(!prefix.names(&other.encode(), 42));
        }
        e.seq = 0;
        e.v = 2;
        assert!(prefix.names(&e.encode(), 0));
        e.seq = u64::MAX;
        assert!(prefix.names(&e.encode(), u64::MAX));
        // A version it does not read is decoded in full (and refused there).
        e.v = 3;
        assert!(!prefix.names(&e.encode(), u64::MAX));
        e.v = 12;
        assert!(!prefix.names(&e.encode(), u64::MAX));
    }
}
