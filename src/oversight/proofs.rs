//! Checkpoints and RFC 9162 proofs, for every authenticated partner: they reveal hashes only.
//!
//! A proof is put together from the stored hashes of perfect subtrees and at most a few hundred leaf hashes
//! (`audit::merkle::ProofPlan`), one proof at a time. Nothing here writes to the log.

use crate::audit::checkpoint::SignedCheckpoint;
use crate::audit::merkle::{self, Hash};
use crate::audit::writer::format_time;
use crate::gateway::Gateway;
use crate::refusal::{ProblemCode, Refusal};
use crate::store::SubtreeSpan;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

fn invalid_proof(detail: impl Into<String>) -> Refusal {
    Refusal::new(ProblemCode::InvalidProofRequest, detail)
}

fn parse_u64(v: &str, name: &str) -> Result<u64, Refusal> {
    v.parse::<u64>().map_err(|_| {
        Refusal::new(
            ProblemCode::InvalidQuery,
            format!("{name} is a non-negative whole number"),
        )
    })
}

/// The latest signed checkpoint of every log in the database, and this instance's public key.
pub async fn checkpoints(gw: &Gateway) -> Result<Value, Refusal> {
    let mut logs = Vec::new();
    for log_id in gw
        .store
        .log_ids()
        .await
        .map_err(|e| Refusal::log_unreadable().because(e))?
    {
        let latest = gw
            .store
            .checkpoints(&log_id, 1)
            .await
            .map_err(|e| Refusal::log_unreadable().because(e))?;
        if let Some(cp) = latest.into_iter().next() {
            let parsed = SignedCheckpoint::from_note(&cp.note).ok();
            logs.push(json!({
                "log_id": log_id,
                "tree_size": cp.tree_size,
                "time": format_time(cp.time_ms),
                "root": parsed.as_ref().map(|p| hex::encode(p.checkpoint.root)),
                "key_id": parsed.as_ref().map(|p| p.key_id.clone()),
                "note": cp.note,
            }));
        }
    }
    Ok(json!({
        "log_id": gw.writer.log_id(),
        "public_key": B64.encode(gw.signing_key.public_key()),
        "key_id": gw.signing_key.key_id(),
        "logs": logs,
    }))
}

/// The log a proof request names (default: this instance's), its stored size and latest checkpointed size.
async fn proof_log(gw: &Gateway, log_id: Option<&str>) -> Result<(String, u64, u64), Refusal> {
    let log_id = log_id
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| gw.writer.log_id())
        .to_owned();
    let state = gw
        .store
        .load_log_state(&log_id)
        .await
        .map_err(|e| Refusal::log_unreadable().because(e))?
        .ok_or_else(|| {
            Refusal::new(
                ProblemCode::UnknownLog,
                "no log with this id in this gateway's database",
            )
        })?;
    let checkpointed = gw
        .store
        .checkpoints(&log_id, 1)
        .await
        .map_err(|e| Refusal::log_unreadable().because(e))?
        .first()
        .map(|c| c.tree_size)
        .unwrap_or(state.size);
    Ok((log_id, state.size, checkpointed))
}

/// One proof at a time: with stored subtrees a proof reads O(log n) rows, but a log written before they were kept
/// has its older leaf hashes read in full (O(n)), and any partner may ask for one, so proofs must never take more
/// than one core from message processing.
static PROOFS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// The hashes of RFC 9162 tree nodes of one log (proof elements, roots, a leaf), in the order asked: stored
/// subtrees where the store has them, the rest hashed from the leaf hashes below them (`merkle::ProofPlan`).
async fn node_hashes(
    gw: &Gateway,
    log_id: &str,
    ranges: &[std::ops::Range<u64>],
) -> Result<Vec<Hash>, Refusal> {
    let plan = merkle::ProofPlan::new(ranges).ok_or_else(Refusal::internal)?;
    let spans: Vec<SubtreeSpan> = plan
        .stored()
        .into_iter()
        .map(|t| SubtreeSpan {
            level: t.level,
            indices: t.index..t.index + 1,
        })
        .collect();
    let found = crate::audit::subtree_hashes(
        gw.store
            .subtrees(log_id, &spans)
            .await
            .map_err(|e| Refusal::log_unreadable().because(e))?,
    );
    let mut leaves = merkle::LeafRuns::new();
    for seqs in plan.leaf_reads(&found) {
        let hashes = gw
            .store
            .leaf_hashes(log_id, seqs.clone())
            .await
            .map_err(|e| Refusal::log_unreadable().because(e))?;
        leaves.insert(seqs.start, hashes);
    }
    tokio::task::spawn_blocking(move || plan.hashes(&found, &leaves))
        .await
        .map_err(|e| Refusal::internal().because(e))?
        .ok_or_else(|| {
            Refusal::new(ProblemCode::LogInconsistent,
                "the stored log has fewer entries than its state records; run `ketenpoort audit verify`",
            )
        })
}

fn hex_all(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

/// What an inclusion proof request names: the leaf index, and optionally the tree size and the log.
pub struct InclusionRequest<'a> {
    pub index: &'a str,
    pub tree_size: Option<&'a str>,
    pub log_id: Option<&'a str>,
}

/// An RFC 9162 inclusion proof of one leaf in a tree of the log (by default the latest checkpointed size).
pub async fn inclusion(gw: &Gateway, p: InclusionRequest<'_>) -> Result<Value, Refusal> {
    let index = parse_u64(p.index, "the leaf index")?;
    let (log_id, size, checkpointed) = proof_log(gw, p.log_id).await?;
    let tree_size = match p.tree_size {
        Some(t) => parse_u64(t, "tree_size")?,
        None => checkpointed,
    };
    if tree_size == 0 || tree_size > size {
        return Err(invalid_proof(format!(
            "tree_size must be from 1 to the log's size ({size})"
        )));
    }
    if index >= tree_size {
        return Err(invalid_proof(format!(
            "index {index} is not below tree_size {tree_size}"
        )));
    }
    let mut ranges = merkle::inclusion_proof_ranges(index, tree_size)
        .ok_or_else(|| invalid_proof("no proof exists for this index and size"))?;
    ranges.extend([0..tree_size, index..index + 1]);
    let _one_at_a_time = PROOFS
        .acquire()
        .await
        .map_err(|e| Refusal::internal().because(e))?;
    let mut proof = node_hashes(gw, &log_id, &ranges).await?;
    let leaf = proof.pop().ok_or_else(Refusal::internal)?;
    let root = proof.pop().ok_or_else(Refusal::internal)?;
    Ok(json!({
        "log_id": log_id,
        "index": index,
        "tree_size": tree_size,
        "leaf_hash": hex::encode(leaf),
        "root": hex::encode(root),
        "proof": hex_all(&proof),
    }))
}

/// What a consistency proof request names: the older size, and optionally the newer size and the log.
pub struct ConsistencyRequest<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub log_id: Option<&'a str>,
}

/// An RFC 9162 consistency proof between two sizes of the log (by default up to the latest checkpointed size).
pub async fn consistency(gw: &Gateway, p: ConsistencyRequest<'_>) -> Result<Value, Refusal> {
    let from = match p.from {
        Some(f) => parse_u64(f, "from")?,
        None => return Err(invalid_proof("from (the older tree size) is required")),
    };
    let (log_id, size, checkpointed) = proof_log(gw, p.log_id).await?;
    let to = match p.to {
        Some(t) => parse_u64(t, "to")?,
        None => checkpointed,
    };
    if to > size {
        return Err(invalid_proof(format!(
            "to must not exceed the log's size ({size})"
        )));
    }
    if from == 0 || from > to {
        return Err(invalid_proof(
            "from must be at least 1 and not larger than to",
        ));
    }
    let mut ranges = merkle::consistency_proof_ranges(from, to)
        .ok_or_else(|| invalid_proof("no proof exists for these sizes"))?;
    ranges.extend([0..from, 0..to]);
    let _one_at_a_time = PROOFS
        .acquire()
        .await
        .map_err(|e| Refusal::internal().because(e))?;
    let mut proof = node_hashes(gw, &log_id, &ranges).await?;
    let to_root = proof.pop().ok_or_else(Refusal::internal)?;
    let from_root = proof.pop().ok_or_else(Refusal::internal)?;
    Ok(json!({
        "log_id": log_id,
        "from": from,
        "to": to,
        "from_root": hex::encode(from_root),
        "to_root": hex::encode(to_root),
        "proof": hex_all(&proof),
    }))
}
