//! Micro-benchmarks for the hot paths: the P1 policy decision (and the envelope parse before it),
//! the store's group commit per batch size, and Merkle proofs on a 1,000,000-leaf tree.
//!
//! `cargo bench --bench micro` (add `-- --warm-up-time 1 --measurement-time 2` for a quick run).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use time::macros::date;

use ketenpoort::audit::merkle::{self, Frontier, Hash};
use ketenpoort::audit::writer::{chain_hash, extend_tree};
use ketenpoort::domain::{Partner, Role};
use ketenpoort::envelope::{self, Limits};
use ketenpoort::policy::{decide, DecisionRequest, PolicySet};
use ketenpoort::store::{self, Batch, DynStore, LogState, Mutation, NewMessage, StoredEntry};

// The gateway's allocator (src/main.rs), so allocation costs here are the ones the gateway pays.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ------------------------------------------------------------------------------------- policy

fn partner(id: &str, role: Role) -> Partner {
    Partner {
        id: id.into(),
        name: id.into(),
        role,
        oin: "00000001800000000001".into(),
        organisation: None,
    }
}

fn bench_policy(c: &mut Criterion) {
    let policies = PolicySet::load_dir(&manifest_dir().join("policies"))
        .unwrap_or_else(|e| panic!("policies do not load:\n{e}"));
    let body = std::fs::read(manifest_dir().join("examples/P1-overstap-po-vo.json"))
        .expect("P1 example envelope");
    let limits = Limits::default();
    let env = envelope::parse(&body, &limits).expect("P1 envelope parses");
    let sender = partner("obs-de-linde", Role::SchoolPo);
    let receiver = partner(&env.to.receivers()[0], Role::SchoolVo);
    let req = DecisionRequest {
        sender: &sender,
        receiver: &receiver,
        message_type: &env.message_type,
        purpose: &env.purpose,
        subject: env.subject.as_ref(),
        justification: env.justification.as_deref(),
        data: &env.data,
        consents: &[],
        today: date!(2026 - 03 - 15),
        pseudonym_key: b"bench-pseudonym-secret",
        sender_provides_jeugdhulp: false,
        subject_by_message: false,
    };
    let d = decide(&policies, &req).expect("P1 decides");
    assert_eq!(d.flow_id, "P1");

    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("envelope_parse/P1", |b| {
        b.iter(|| envelope::parse(black_box(&body), &limits).unwrap())
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("decide/P1", |b| {
        b.iter(|| decide(black_box(&policies), black_box(&req)).unwrap())
    });
    g.finish();
}

// -------------------------------------------------------------------------------------- store

const LOG_ID: &str = "bench-log";
const ENTRY_BYTES: usize = 600;
const SEALED_BYTES: usize = 3 * 1024;

/// Deterministic filler so payloads are not all-zero pages.
fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The writer's in-memory view of the log (see `audit::writer`), advanced only after a commit.
struct Chain {
    size: u64,
    frontier: Frontier,
    chain_head: Hash,
}

/// A batch of `n` disclosure entries, each with the `InsertMessage` it records, continuing `chain`.
/// Returns the batch and the chain state after it.
fn next_batch(chain: &Chain, n: usize, sealed: &[u8]) -> (Batch, Chain) {
    let mut frontier = chain.frontier.clone();
    let mut head = chain.chain_head;
    let mut entries = Vec::with_capacity(n);
    let mut mutations = Vec::with_capacity(n);
    let mut subtrees = Vec::new();
    let time_ms = 1_773_532_800_000 + chain.size as i64;
    for seq in chain.size..chain.size + n as u64 {
        let mut bytes = filler(seq, ENTRY_BYTES);
        bytes[..8].copy_from_slice(&seq.to_be_bytes());
        let leaf = merkle::leaf_hash(&bytes);
        head = chain_hash(&head, &leaf);
        extend_tree(&mut frontier, leaf, &mut subtrees);
        entries.push(StoredEntry {
            log_id: LOG_ID.into(),
            seq,
            time_ms,
            event: "message-delivered".into(),
            partner: "obs-de-linde".into(),
            organisation: "obs-de-linde".into(),
            sender: Some("obs-de-linde".into()),
            receiver: Some("lyceum-zuid".into()),
            purpose: Some("overstap-po-vo".into()),
            flow_id: Some("P1".into()),
            subject: Some(hex::encode(leaf)),
            outcome: "delivered".into(),
            bytes,
            leaf_hash: leaf,
            chain_hash: head,
            case_id: None,
        });
        mutations.push(Mutation::InsertMessage(Box::new(NewMessage {
            id: format!("msg-{seq:012}"),
            sender: "obs-de-linde".into(),
            receiver: "lyceum-zuid".into(),
            message_type: "onderwijskundig-rapport".into(),
            purpose: "overstap-po-vo".into(),
            subject: None,
            sealed: sealed.to_vec(),
            consent_paths: "[]".into(),
            created_ms: time_ms,
            expires_ms: time_ms + 30 * 86_400_000,
            log_id: LOG_ID.into(),
            seq,
            leaf_hash: leaf,
        })));
    }
    let size = chain.size + n as u64;
    let batch = Batch {
        entries,
        subtrees,
        mutations,
        state: LogState {
            log_id: LOG_ID.into(),
            size,
            frontier: frontier.to_bytes(),
            chain_head: head,
        },
        checkpoint: None,
    };
    let after = Chain {
        size,
        frontier,
        chain_head: head,
    };
    (batch, after)
}

/// A commit the store's writer loop runs, and where it sends how long the commit took.
type Commit = (Batch, tokio::sync::oneshot::Sender<Duration>);

/// Starts the store's writer loop (`Store::spawn_writer`, as `LogWriter` does) committing each batch it receives and
/// timing it there: on a SQLite file that is the log writer's own thread, where the gateway's commits run in place.
/// The hand-off to the loop and back is not in the time.
fn spawn_committer(
    store: &DynStore,
) -> (
    tokio::sync::mpsc::UnboundedSender<Commit>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Commit>();
    let looped = store.clone();
    let handle = store
        .spawn_writer(Box::pin(async move {
            while let Some((batch, timed)) = rx.recv().await {
                let started = Instant::now();
                looped
                    .commit_batch(std::sync::Arc::new(batch))
                    .await
                    .expect("commit_batch");
                let _ = timed.send(started.elapsed());
            }
        }))
        .expect("start the writer loop");
    (tx, handle)
}

fn bench_commit_batch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ketenpoort-bench");
    let sealed = filler(0xC0FFEE, SEALED_BYTES);

    let mut g = c.benchmark_group("store");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    for n in [1usize, 16, 128, 512] {
        // A fresh database per batch size, so earlier sizes do not grow the tables of later ones.
        let dir = root.join(format!("commit_batch-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("bench dir");
        let url = format!("sqlite://{}", dir.join("bench.db").display());
        let store: DynStore = rt.block_on(store::open(&url)).expect("open sqlite store");
        let (commits, writer) = rt.block_on(async { spawn_committer(&store) });
        let mut chain = Chain {
            size: 0,
            frontier: Frontier::new(),
            chain_head: [0u8; 32],
        };
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("commit_batch/sqlite/{n}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (batch, after) = next_batch(&chain, n, &sealed);
                    let (timed, took) = tokio::sync::oneshot::channel();
                    commits.send((batch, timed)).expect("the writer loop runs");
                    total += rt.block_on(took).expect("the writer loop committed");
                    chain = after;
                }
                total
            })
        });
        drop(commits);
        rt.block_on(writer).expect("the writer loop ended");
        // Nothing to check for a size a benchmark filter left out.
        if chain.size > 0 {
            let stored = rt
                .block_on(store.load_log_state(LOG_ID))
                .expect("load log state")
                .expect("log state");
            assert_eq!(stored.size, chain.size);
            assert_eq!(stored.frontier, chain.frontier.to_bytes());
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
    g.finish();
}

// ------------------------------------------------------------------------------------- merkle

const TREE_SIZE: u64 = 1_000_000;
const INDEX: u64 = 765_432;
const OLD_SIZE: u64 = 987_654;

fn bench_merkle(c: &mut Criterion) {
    let leaves: Vec<Hash> = (0..TREE_SIZE)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect();
    let root = merkle::root_of(&leaves);
    let old_root = merkle::root_of(&leaves[..OLD_SIZE as usize]);
    let leaf = leaves[INDEX as usize];
    let inclusion = merkle::inclusion_proof(&leaves, INDEX).expect("inclusion proof");
    let consistency = merkle::consistency_proof(&leaves, OLD_SIZE).expect("consistency proof");
    merkle::verify_inclusion(&leaf, INDEX, TREE_SIZE, &inclusion, &root).expect("inclusion");
    merkle::verify_consistency(OLD_SIZE, TREE_SIZE, &old_root, &root, &consistency)
        .expect("consistency");

    let mut g = c.benchmark_group("merkle_1m");
    // Proof generation hashes every subtree on the path from the leaves: slow, so fewer samples.
    g.sample_size(10);
    g.bench_function("inclusion_proof", |b| {
        b.iter(|| merkle::inclusion_proof(black_box(&leaves), black_box(INDEX)).unwrap())
    });
    g.sample_size(100);
    g.bench_function("verify_inclusion", |b| {
        b.iter(|| {
            merkle::verify_inclusion(
                black_box(&leaf),
                black_box(INDEX),
                black_box(TREE_SIZE),
                black_box(&inclusion),
                black_box(&root),
            )
            .unwrap()
        })
    });
    g.sample_size(10);
    g.bench_function("consistency_proof", |b| {
        b.iter(|| merkle::consistency_proof(black_box(&leaves), black_box(OLD_SIZE)).unwrap())
    });
    // What the API does since subtrees are stored: plan, look up (here a map, as the store's rows), hash the
    // few hundred leaves the plan still needs.
    let mut stored = std::collections::HashMap::new();
    let mut f = merkle::Frontier::new();
    for l in &leaves {
        f.push_reporting(*l, |t, h| {
            if t.is_stored() {
                stored.insert(t, *h);
            }
        });
    }
    let planned = |ranges: Vec<std::ops::Range<u64>>| {
        let plan = merkle::ProofPlan::new(&ranges).expect("tree nodes");
        let found: std::collections::HashMap<merkle::Subtree, Hash> = plan
            .stored()
            .into_iter()
            .filter_map(|t| stored.get(&t).map(|h| (t, *h)))
            .collect();
        let mut runs = merkle::LeafRuns::new();
        for r in plan.leaf_reads(&found) {
            runs.insert(r.start, leaves[r.start as usize..r.end as usize].to_vec());
        }
        plan.hashes(&found, &runs).expect("leaves")
    };
    assert_eq!(
        planned(merkle::inclusion_proof_ranges(INDEX, TREE_SIZE).unwrap()),
        inclusion
    );
    g.bench_function("inclusion_proof_stored_subtrees", |b| {
        b.iter(|| planned(merkle::inclusion_proof_ranges(black_box(INDEX), TREE_SIZE).unwrap()))
    });
    g.bench_function("consistency_proof_stored_subtrees", |b| {
        b.iter(|| {
            planned(merkle::consistency_proof_ranges(black_box(OLD_SIZE), TREE_SIZE).unwrap())
        })
    });
    g.sample_size(100);
    g.bench_function("verify_consistency", |b| {
        b.iter(|| {
            merkle::verify_consistency(
                black_box(OLD_SIZE),
                black_box(TREE_SIZE),
                black_box(&old_root),
                black_box(&root),
                black_box(&consistency),
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_policy, bench_commit_batch, bench_merkle);
criterion_main!(benches);
