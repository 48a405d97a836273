//! The storage trait, the same suite against both backends through `ketenpoort::store::open`: a real SQLite file
//! and (when `KETENPOORT_TEST_POSTGRES` is set) a real PostgreSQL database created and dropped per test.
//! Covers batch atomicity, the claims several instances rely on, and every read the gateway and the privacy officer use.

mod common;

use common::*;
use ketenpoort::store::{
    self, Batch, DynStore, EntryFilter, FetchClaim, IdempotencyRecord, LogState, MessageEnd,
    Mutation, NewMessage, OutboxFilter, StoreError, StoredCheckpoint, StoredConsent, StoredEntry,
    StoredIncident, StoredSubtree, SubtreeSpan,
};
use std::sync::Arc;

/// An opened store and what keeps its database alive.
struct Opened {
    backend: Backend,
    url: String,
    store: DynStore,
    _dir: TempDir,
    _pg: Option<PgDatabase>,
}

async fn open(backend: Backend) -> Opened {
    let dir = TempDir::new("kp-store-");
    let (url, pg) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}", dir.path().join("store.db").display()),
            None,
        ),
        Backend::Postgres => {
            let db = PgDatabase::create();
            (db.url(), Some(db))
        }
    };
    let store = store::open(&url).await.expect("open store");
    store.check_durability().await.expect("durable settings");
    Opened {
        backend,
        url,
        store,
        _dir: dir,
        _pg: pg,
    }
}

fn hash(tag: &str, n: u64) -> [u8; 32] {
    let mut h = [0u8; 32];
    for (i, b) in format!("{tag}:{n}").bytes().enumerate().take(32) {
        h[i] = b;
    }
    h
}

/// A log as the writer would keep it: appends entries at the next sequence numbers.
struct Log {
    id: String,
    size: u64,
}

impl Log {
    fn new(id: &str) -> Log {
        Log {
            id: id.to_owned(),
            size: 0,
        }
    }

    fn entry(&self, seq: u64, time_ms: i64) -> StoredEntry {
        StoredEntry {
            log_id: self.id.clone(),
            seq,
            time_ms,
            event: "message-refused".into(),
            partner: "obs-de-linde".into(),
            organisation: "00000001001234567000".into(),
            sender: Some("obs-de-linde".into()),
            receiver: Some("lyceum-zuid".into()),
            purpose: Some("overstap".into()),
            flow_id: None,
            subject: None,
            outcome: "no-policy".into(),
            bytes: format!("{}:{seq}", self.id).into_bytes(),
            leaf_hash: hash(&self.id, seq),
            chain_hash: hash(&format!("chain-{}", self.id), seq),
            case_id: None,
        }
    }

    /// A batch appending `entries` (already numbered from `self.size`) with `mutations`.
    fn batch_of(&self, entries: Vec<StoredEntry>, mutations: Vec<Mutation>) -> Batch {
        let size = self.size + entries.len() as u64;
        Batch {
            state: LogState {
                log_id: self.id.clone(),
                size,
                frontier: format!("frontier-{size}").into_bytes(),
                chain_head: hash(&format!("chain-{}", self.id), size),
            },
            entries,
            subtrees: vec![],
            mutations,
            checkpoint: None,
        }
    }

    fn batch(&self, n: u64, time_ms: i64, mutations: Vec<Mutation>) -> Batch {
        let entries = (self.size..self.size + n)
            .map(|s| self.entry(s, time_ms))
            .collect();
        self.batch_of(entries, mutations)
    }

    async fn commit(&mut self, store: &DynStore, batch: Batch) -> Result<(), StoreError> {
        let size = batch.state.size;
        store.commit_batch(Arc::new(batch)).await?;
        self.size = size;
        Ok(())
    }
}

/// Every mailbox row read back carries the pseudonym it was written with.
async fn page_subjects_round_trip(s: &DynStore, receiver: &str) -> bool {
    s.inbox(receiver, 0, 100)
        .await
        .unwrap()
        .iter()
        .all(|m| m.msg.subject.as_deref() == Some(format!("pseudonym-{}", m.msg.id).as_str()))
}

fn message(id: &str, receiver: &str, created_ms: i64) -> NewMessage {
    NewMessage {
        id: id.into(),
        sender: "obs-de-linde".into(),
        receiver: receiver.into(),
        message_type: "onderwijskundig-rapport".into(),
        purpose: "overstap".into(),
        subject: Some(format!("pseudonym-{id}")),
        sealed: format!("sealed-{id}").into_bytes(),
        consent_paths: "[]".into(),
        created_ms,
        expires_ms: created_ms + 1000,
        log_id: "log-a".into(),
        seq: 0,
        leaf_hash: hash("msg", 0),
    }
}

fn insert(id: &str, receiver: &str, created_ms: i64) -> Mutation {
    Mutation::InsertMessage(Box::new(message(id, receiver, created_ms)))
}

fn idempotency(sender: &str, key: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        sender: sender.into(),
        key: key.into(),
        body_hash: format!("body-{key}"),
        status: 201,
        response: br#"{"message_id":"m"}"#.to_vec(),
        log_id: "log-a".into(),
        seq: 7,
        leaf_hash: hash("idem", 7),
    }
}

fn consent(id: &str, subject: &str, registered_by: &str, created_ms: i64) -> StoredConsent {
    StoredConsent {
        id: id.into(),
        registered_by: registered_by.into(),
        subject: subject.into(),
        purpose: "signaal-zorg".into(),
        recipient: "wijkteam-noord".into(),
        categories: r#"["zorgbehoefte"]"#.into(),
        given_by: "ouder".into(),
        evidence: "formulier 12".into(),
        valid_from: "2025-01-01".into(),
        valid_until: "2026-01-01".into(),
        created_ms,
        withdrawn_ms: None,
        subject_birth_date: Some("2014-03-02".into()),
    }
}

fn is_conflict(r: Result<(), StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict(_)))
}

#[tokio::test]
async fn a_failing_batch_leaves_nothing_behind() {
    for backend in backends() {
        let db = open(backend).await;
        let s = &db.store;
        let mut log = Log::new("log-a");
        let mut first = log.batch(
            2,
            1_000,
            vec![
                Mutation::InsertIdempotency(idempotency("obs-de-linde", "k1")),
                insert("m0", "lyceum-zuid", 1_000),
            ],
        );
        first.checkpoint = Some(StoredCheckpoint {
            log_id: "log-a".into(),
            tree_size: 2,
            time_ms: 1_000,
            note: "note-2".into(),
        });
        log.commit(s, first).await.unwrap();
        let state_before = s.load_log_state("log-a").await.unwrap();

        // Duplicate Idempotency-Key in the last mutation: entries, message, consent and state all roll back.
        let mut dup = log.batch(
            2,
            2_000,
            vec![
                insert("m1", "lyceum-zuid", 2_000),
                Mutation::InsertConsent(consent("c1", "p1", "obs-de-linde", 2_000)),
                Mutation::InsertIdempotency(idempotency("obs-de-linde", "k1")),
            ],
        );
        dup.checkpoint = Some(StoredCheckpoint {
            log_id: "log-a".into(),
            tree_size: 4,
            time_ms: 2_000,
            note: "note-4".into(),
        });
        dup.subtrees = vec![subtree(8, 0)];
        assert!(
            is_conflict(log.commit(s, dup).await),
            "{backend:?}: a duplicate idempotency key is a conflict"
        );
        // A purge of a message that is not there, and a fetch claim on a stale count, fail the same way.
        let gone = log.batch(
            1,
            2_000,
            vec![insert("m2", "lyceum-zuid", 2_000), delete_msg("nope")],
        );
        assert!(is_conflict(log.commit(s, gone).await), "{backend:?}");
        let stale = log.batch(
            1,
            2_000,
            vec![
                Mutation::WithdrawConsent {
                    id: "c0".into(),
                    at_ms: 5,
                },
                claim_fetch("m0", 3),
            ],
        );
        assert!(is_conflict(log.commit(s, stale).await), "{backend:?}");
        // A writer whose idea of the log is behind cannot overwrite it.
        let mut behind = Log::new("log-a");
        behind.size = 1;
        assert!(
            is_conflict(behind.commit(s, behind.batch(1, 2_000, vec![])).await),
            "{backend:?}: a stale log state is a conflict"
        );
        let mut checkpoint_only = behind.batch(0, 2_000, vec![]);
        checkpoint_only.checkpoint = Some(StoredCheckpoint {
            log_id: "log-a".into(),
            tree_size: 1,
            time_ms: 2_000,
            note: "stale".into(),
        });
        assert!(is_conflict(s.commit_batch(Arc::new(checkpoint_only)).await));

        assert_eq!(s.entries("log-a", 0, 100).await.unwrap().len(), 2);
        assert_eq!(s.load_log_state("log-a").await.unwrap(), state_before);
        assert!(s.message("m1").await.unwrap().is_none());
        assert!(s.message("m2").await.unwrap().is_none());
        assert_eq!(s.message("m0").await.unwrap().unwrap().fetch_count, 0);
        assert!(s.consent("c1").await.unwrap().is_none());
        let level_8 = [span(8, 0..u64::MAX)];
        assert!(s.subtrees("log-a", &level_8).await.unwrap().is_empty());
        let cps = s.checkpoints("log-a", 10).await.unwrap();
        assert_eq!(cps.iter().map(|c| c.tree_size).collect::<Vec<_>>(), vec![2]);

        // The same batch without the duplicate commits in full.
        let ok = log.batch(
            2,
            2_000,
            vec![
                insert("m1", "lyceum-zuid", 2_000),
                Mutation::InsertConsent(consent("c1", "p1", "obs-de-linde", 2_000)),
                Mutation::InsertIdempotency(idempotency("obs-de-linde", "k2")),
            ],
        );
        log.commit(s, ok).await.unwrap();
        assert_eq!(s.entries("log-a", 0, 100).await.unwrap().len(), 4);
        assert!(s.message("m1").await.unwrap().is_some());
        assert!(s.consent("c1").await.unwrap().is_some());
        assert_eq!(s.load_log_state("log-a").await.unwrap().unwrap().size, 4);
    }
}

#[tokio::test]
async fn log_state_round_trips_and_lists_every_log() {
    for backend in backends() {
        let db = open(backend).await;
        let s = &db.store;
        assert!(s.load_log_state("log-b").await.unwrap().is_none());
        assert!(s.log_ids().await.unwrap().is_empty());
        let mut b = Log::new("log-b");
        let mut a = Log::new("log-a");
        b.commit(s, b.batch(3, 10, vec![])).await.unwrap();
        a.commit(s, a.batch(1, 11, vec![])).await.unwrap();
        let state = s.load_log_state("log-b").await.unwrap().unwrap();
        assert_eq!(
            state,
            LogState {
                log_id: "log-b".into(),
                size: 3,
                frontier: b"frontier-3".to_vec(),
                chain_head: hash("chain-log-b", 3),
            },
            "{backend:?}"
        );
        b.commit(s, b.batch(2, 12, vec![])).await.unwrap();
        let state = s.load_log_state("log-b").await.unwrap().unwrap();
        assert_eq!(state.size, 5);
        assert_eq!(state.frontier, b"frontier-5".to_vec());
        assert_eq!(s.log_ids().await.unwrap(), vec!["log-a", "log-b"]);
        let e = &s.entries("log-b", 4, 1).await.unwrap()[0];
        assert_eq!(e.seq, 4);
        assert_eq!(e.time_ms, 12);
        assert_eq!(e.bytes, b"log-b:4".to_vec());
        assert_eq!(e.leaf_hash, hash("log-b", 4));
        assert_eq!(e.chain_hash, hash("chain-log-b", 4));
        assert_eq!(e.receiver.as_deref(), Some("lyceum-zuid"));
        assert_eq!(e.flow_id, None);
    }
}

#[tokio::test]
async fn inbox_pages_in_arrival_order_per_receiver() {
    for backend in backends() {
        let db = open(backend).await;
        let s = &db.store;
        let mut log = Log::new("log-a");
        let mut expected = Vec::new();
        for i in 0..25 {
            let receiver = if i % 3 == 0 {
                "wijkteam-noord"
            } else {
                "lyceum-zuid"
            };
            let id = format!("m{i:02}");
            if receiver == "lyceum-zuid" {
                expected.push(id.clone());
            }
            // Creation times deliberately out of order: the inbox follows arrival (pos), not created_ms.
            log.commit(s, log.batch(1, i, vec![insert(&id, receiver, 100 - i)]))
                .await
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = s.inbox("lyceum-zuid", after, 4).await.unwrap();
            assert!(page.len() <= 4);
            assert!(page.iter().all(|m| m.msg.receiver == "lyceum-zuid"));
            assert!(page.windows(2).all(|w| w[0].pos < w[1].pos));
            seen.extend(page.iter().map(|m| m.msg.id.clone()));
            match page.last() {
                Some(last) if page.len() == 4 => after = last.pos,
                _ => break,
            }
        }
        assert_eq!(seen, expected, "{backend:?}");
        let row = s.message("m01").await.unwrap().unwrap();
        assert_eq!(row.msg.sealed, b"sealed-m01".to_vec());
        assert_eq!(row.msg.subject.as_deref(), Some("pseudonym-m01"));
        assert!(
            page_subjects_round_trip(s, "lyceum-zuid").await,
            "{backend:?}"
        );
        assert_eq!(row.msg.created_ms, 99);
        assert_eq!(row.msg.leaf_hash, hash("msg", 0));
        assert_eq!(row.fetch_count, 0);
        assert!(s.inbox("nobody", 0, 10).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn claims_count_each_fetch_once_and_purge_once() {
    for backend in backends() {
        let db = open(backend).await;
        let s = &db.store;
        let mut log = Log::new("log-a");
        log.commit(
            s,
            log.batch(
                2,
                1,
                vec![
                    insert("m1", "lyceum-zuid", 1),
                    insert("m2", "lyceum-zuid", 1),
                ],
            ),
        )
        .await
        .unwrap();
        let claim = claim_fetch;
        log.commit(s, log.batch(1, 2, vec![claim("m1", 0)]))
            .await
            .unwrap();
        // A second claim of the same count loses, also inside one batch.
        assert!(is_conflict(
            log.commit(s, log.batch(1, 3, vec![claim("m1", 0)])).await
        ));
        assert!(is_conflict(
            log.commit(s, log.batch(2, 3, vec![claim("m2", 0), claim("m2", 0)]))
                .await
        ));
        log.commit(s, log.batch(1, 3, vec![claim("m1", 1)]))
            .await
            .unwrap();
        assert_eq!(s.message("m1").await.unwrap().unwrap().fetch_count, 2);
        assert_eq!(s.message("m2").await.unwrap().unwrap().fetch_count, 0);

        let delete = delete_msg;
        log.commit(s, log.batch(1, 4, vec![delete("m1")]))
            .await
            .unwrap();
        assert!(s.message("m1").await.unwrap().is_none());
        assert!(is_conflict(
            log.commit(s, log.batch(1, 5, vec![delete("m1")])).await
        ));
        assert!(is_conflict(
            log.commit(s, log.batch(1, 5, vec![claim("m1", 2)])).await
        ));
        assert_eq!(log.size, 5, "{backend:?}");
        assert_eq!(s.entries("log-a", 0, 100).await.unwrap().len(), 5);
    }
}

/// Two independent connection pools (as two gateway processes have) race for the same rows: every row is
/// claimed by exactly one of them, and only the winner's log entry exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_racing_for_the_same_rows_each_win_a_row_once() {
    for backend in backends() {
        let db = open(backend).await;
        let other = store::open(&db.url).await.unwrap();
        let mut seed = Log::new("log-seed");
        let ids: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
        let inserts = ids.iter().map(|id| insert(id, "lyceum-zuid", 1)).collect();
        seed.commit(&db.store, seed.batch(1, 1, inserts))
            .await
            .unwrap();
        let race = |store: DynStore, log_id: &'static str, ids: Vec<String>| async move {
            let mut log = Log::new(log_id);
            let mut won = Vec::new();
            for id in ids {
                let claim = claim_fetch(&id, 0);
                match log.commit(&store, log.batch(1, 2, vec![claim])).await {
                    Ok(()) => won.push(id),
                    Err(StoreError::Conflict(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            (log.size, won)
        };
        let a = tokio::spawn(race(db.store.clone(), "log-a", ids.clone()));
        let b = tokio::spawn(race(other.clone(), "log-b", ids.clone()));
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        let mut all: Vec<_> = a.1.iter().chain(b.1.iter()).cloned().collect();
        all.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(all, expected, "{backend:?}: every row claimed exactly once");
        assert_eq!(a.0 + b.0, 40, "only winners appended");
        for id in &ids {
            assert_eq!(db.store.message(id).await.unwrap().unwrap().fetch_count, 1);
        }
        let stored = db.store.entries("log-a", 0, 100).await.unwrap().len()
            + db.store.entries("log-b", 0, 100).await.unwrap().len();
        assert_eq!(stored, 40);
    }
}

#[tokio::test]
async fn idempotency_records_are_found_by_sender_and_key() {
    for backend in backends() {
        let db = open(backend).await;
        let s = &db.store;
        let mut log = Log::new("log-a");
        let rec = idempotency("obs-de-linde", "overdracht-0001");
        log.commit(
            s,
            log.batch(1, 1, vec![Mutation::InsertIdempotency(rec.clone())]),
        )
        .await
        .unwrap();
        assert_eq!(
            s.idempotency("obs-de-linde", "overdracht-0001")
                .await
                .unwrap(),
            Some(rec),
            "{backend:?}"
        );
        assert!(s
            .idempotency("lyceum-zuid", "overdracht-0001")
            .await
            .unwrap()
            .is_none());
        assert!(s
            .idempotency("obs-de-linde", "overdracht-0002")
            .await
            .unwrap()
            .is_none());
        // The same key from another sender is another record.
        log.commit(
            s,
            log.batch(
                1,
                2,
                vec![Mutation::InsertIdempotency(idempotency(
                    "lyceum-zuid",
                    "overdracht-0001",
                ))],
            ),
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn consents_are_listed_by_subject_and_registrar_and_withdrawn_once() {
    for backend in backends() {
        let db = open(backend).await;
        let s = &db.store;
        let mut log = Log::new("log-a");
        let c1 = consent("c1", "pupil-1", "obs-de-linde", 30);
        let c2 = consent("c2", "pupil-1", "swv-rivierenland", 10);
        let c3 = consent("c3", "pupil-2", "obs-de-linde", 20);
        log.commit(
            s,
            log.batch(
                3,
                1,
                vec![
                    Mutation::InsertConsent(c1.clone()),
                    Mutation::InsertConsent(c2.clone()),
                    Mutation::InsertConsent(c3.clone()),
                ],
            ),
        )
        .await
        .unwrap();
        let ids = |v: Vec<StoredConsent>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(
            ids(s.consents_for_subject("pupil-1").await.unwrap()),
            vec!["c2", "c1"],
            "{backend:?}: by creation time"
        );
        assert_eq!(
            ids(s.consents_registered_by("obs-de-linde").await.unwrap()),
            vec!["c3", "c1"]
        );
        assert_eq!(s.consent("c1").await.unwrap(), Some(c1.clone()));
        assert!(s.consent("c9").await.unwrap().is_none());
        let withdraw = |at_ms| Mutation::WithdrawConsent {
            id: "c1".into(),
            at_ms,
        };
        log.commit(s, log.batch(1, 2, vec![withdraw(500)]))
            .await
            .unwrap();
        log.commit(s, log.batch(1, 3, vec![withdraw(900)]))
            .await
            .unwrap();
        assert_eq!(
            s.consent("c1").await.unwrap().unwrap().withdrawn_ms,
            Some(500),
            "the first withdrawal stands"
        );
        assert_eq!(s.consent("c2").await.unwrap().unwrap().withdrawn_ms, None);
        // Every column as written, through the lookup the gateway makes per message.
        let mut c1_withdrawn = c1.clone();
        c1_withdrawn.withdrawn_ms = Some(500);
        assert_eq!(
            s.consents_for_subject("pupil-1").await.unwrap(),
            vec![c2.clone(), c1_withdrawn],
            "{backend:?}"
        );
        assert!(s.consents_for_subject("pupil-9").await.unwrap().is_empty());
    }
}

/// Under continuous writes (with readers in between, as the gateway's consent lookups are) the SQLite WAL is copied
/// back and started again from its beginning once it holds 64 MiB, so it stays far smaller than what was written
/// through it (without the restart it grows by every page written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_wal_restarts_under_continuous_writes() {
    const MIB: u64 = 1 << 20;
    let db = open(Backend::Sqlite).await;
    let s = &db.store;
    let mut log = Log::new("log-wal");
    let wal = db._dir.path().join("store.db-wal");
    let mut written = 0u64;
    let mut largest_wal = 0u64;
    while written < 320 * MIB {
        let mut batch = log.batch(32, 1, Vec::new());
        for (i, e) in batch.entries.iter_mut().enumerate() {
            e.bytes = vec![b'x' ^ (i as u8); 4_000];
            written += e.bytes.len() as u64;
        }
        log.commit(s, batch).await.unwrap();
        s.consents_for_subject("pupil-1").await.unwrap();
        largest_wal = largest_wal.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    let at_end = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(
        largest_wal < 192 * MIB,
        "WAL reached {largest_wal} bytes ({at_end} at the end) while {written} bytes were written: it did not restart"
    );
}

#[tokio::test]
async fn query_entries_filters_and_pages_across_logs_in_time_order() {
    for backend in backends() {
        let db = open(backend).await;
        let s = &db.store;
        // Two instances' logs, interleaved in time (log-b's entry at t=20 sorts between log-a's).
        let mut a = Log::new("log-a");
        let mut b = Log::new("log-b");
        let entry = |log: &Log, seq, t, event: &str, partner: &str, purpose: &str| {
            let mut e = log.entry(seq, t);
            e.event = event.into();
            e.partner = partner.into();
            e.organisation = format!("org-{partner}");
            e.sender = Some(partner.into());
            e.receiver = Some("lyceum-zuid".into());
            e.purpose = Some(purpose.into());
            e.flow_id = Some(format!("flow-{purpose}"));
            e.subject = Some(format!("subj-{}", t % 2));
            e.outcome = if event == "message-refused" {
                "no-policy".into()
            } else {
                "ok".into()
            };
            e
        };
        let a_entries = vec![
            entry(&a, 0, 10, "message-disclosed", "obs-de-linde", "overstap"),
            entry(&a, 1, 20, "message-refused", "obs-de-linde", "overstap"),
            entry(&a, 2, 30, "message-fetched", "lyceum-zuid", "overstap"),
        ];
        let b_entries = vec![
            entry(&b, 0, 5, "message-disclosed", "swv-rivierenland", "tlv"),
            entry(&b, 1, 20, "message-disclosed", "obs-de-linde", "tlv"),
            entry(&b, 2, 40, "message-acknowledged", "lyceum-zuid", "overstap"),
        ];
        a.commit(s, a.batch_of(a_entries, vec![])).await.unwrap();
        b.commit(s, b.batch_of(b_entries, vec![])).await.unwrap();
        let q = |f: EntryFilter| async move {
            s.query_entries(&f)
                .await
                .unwrap()
                .into_iter()
                .map(|e| format!("{}/{}", e.log_id, e.seq))
                .collect::<Vec<_>>()
        };
        let all = EntryFilter {
            limit: 100,
            ..Default::default()
        };
        assert_eq!(
            q(all.clone()).await,
            vec!["log-b/0", "log-a/0", "log-a/1", "log-b/1", "log-a/2", "log-b/2"],
            "{backend:?}: merged by time, then log, then seq"
        );
        let mut paged = Vec::new();
        let mut f = EntryFilter {
            limit: 4,
            ..Default::default()
        };
        loop {
            let page = s.query_entries(&f).await.unwrap();
            paged.extend(page.iter().map(|e| format!("{}/{}", e.log_id, e.seq)));
            match page.last() {
                Some(e) if page.len() == 4 => f.after = Some((e.time_ms, e.log_id.clone(), e.seq)),
                _ => break,
            }
        }
        assert_eq!(
            paged,
            q(all.clone()).await,
            "paging neither skips nor repeats"
        );
        let with = |f: fn(&mut EntryFilter)| {
            let mut x = all.clone();
            f(&mut x);
            x
        };
        assert_eq!(
            q(with(|f| {
                f.from_ms = Some(10);
                f.until_ms = Some(30);
            }))
            .await,
            vec!["log-a/0", "log-a/1", "log-b/1"]
        );
        assert_eq!(
            q(with(|f| f.partner = Some("obs-de-linde".into()))).await,
            vec!["log-a/0", "log-a/1", "log-b/1"]
        );
        assert_eq!(
            q(with(|f| f.organisation = Some("org-lyceum-zuid".into()))).await,
            vec!["log-a/2", "log-b/2"]
        );
        // Receiver matches count as "involving" the organisation or partner.
        assert_eq!(
            q(with(|f| f.partner = Some("lyceum-zuid".into())))
                .await
                .len(),
            6
        );
        assert_eq!(
            q(with(|f| f.purpose = Some("tlv".into()))).await,
            vec!["log-b/0", "log-b/1"]
        );
        assert_eq!(
            q(with(|f| f.flow_id = Some("flow-overstap".into())))
                .await
                .len(),
            4
        );
        assert_eq!(
            q(with(|f| f.outcome = Some("no-policy".into()))).await,
            vec!["log-a/1"]
        );
        assert_eq!(
            q(with(|f| f.event = Some("message-disclosed".into()))).await,
            vec!["log-b/0", "log-a/0", "log-b/1"]
        );
        assert_eq!(
            q(with(|f| f.subject = Some("subj-1".into()))).await,
            vec!["log-b/0"]
        );
        assert_eq!(
            q(with(|f| {
                f.event = Some("message-disclosed".into());
                f.partner = Some("obs-de-linde".into());
                f.purpose = Some("tlv".into());
            }))
            .await,
            vec!["log-b/1"]
        );
        assert!(q(with(|f| f.partner = Some("nobody".into())))
            .await
            .is_empty());
    }
}

#[tokio::test]
async fn entries_and_leaf_hashes_return_exact_ranges_of_one_log() {
    for backend in backends() {
        let db = open(backend).await;
        let s = &db.store;
        let mut a = Log::new("log-a");
        let mut b = Log::new("log-b");
        for t in 0..5 {
            a.commit(s, a.batch(2, t, vec![])).await.unwrap();
            b.commit(s, b.batch(1, t, vec![])).await.unwrap();
        }
        let seqs = |v: Vec<StoredEntry>| v.into_iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(s.entries("log-a", 3, 4).await.unwrap()),
            vec![3, 4, 5, 6]
        );
        assert_eq!(seqs(s.entries("log-a", 8, 100).await.unwrap()), vec![8, 9]);
        assert!(s.entries("log-a", 10, 5).await.unwrap().is_empty());
        assert_eq!(seqs(s.entries("log-b", 0, 100).await.unwrap()).len(), 5);
        assert!(s
            .entries("log-a", 0, 100)
            .await
            .unwrap()
            .iter()
            .all(|e| e.log_id == "log-a"));
        let leaves = s.leaf_hashes("log-a", 0..7).await.unwrap();
        assert_eq!(
            leaves,
            (0..7).map(|i| hash("log-a", i)).collect::<Vec<_>>(),
            "{backend:?}"
        );
        assert_eq!(
            s.leaf_hashes("log-a", 4..9).await.unwrap(),
            (4..9).map(|i| hash("log-a", i)).collect::<Vec<_>>(),
            "{backend:?}"
        );
        assert!(s.leaf_hashes("log-a", 0..0).await.unwrap().is_empty());
        assert!(s.leaf_hashes("log-a", 10..20).await.unwrap().is_empty());
        assert_eq!(s.leaf_hashes("log-b", 0..100).await.unwrap().len(), 5);
    }
}

fn subtree(level: u8, index: u64) -> StoredSubtree {
    StoredSubtree {
        level,
        index,
        hash: hash(&format!("subtree-{level}"), index),
    }
}

fn span(level: u8, indices: std::ops::Range<u64>) -> SubtreeSpan {
    SubtreeSpan { level, indices }
}

#[tokio::test]
async fn subtrees_are_stored_with_their_batch_and_read_back_per_log_level_and_index() {
    for backend in backends() {
        let db = open(backend).await;
        let s = &db.store;
        let mut a = Log::new("log-a");
        let mut b = Log::new("log-b");
        let mut first = a.batch(3, 1, vec![]);
        first.subtrees = vec![subtree(8, 0), subtree(8, 1), subtree(9, 0)];
        a.commit(s, first).await.unwrap();
        let mut second = a.batch(2, 2, vec![]);
        second.subtrees = vec![subtree(8, 2), subtree(8, 3), subtree(9, 1), subtree(10, 0)];
        a.commit(s, second).await.unwrap();
        let mut other = b.batch(1, 3, vec![]);
        other.subtrees = vec![subtree(8, 0)];
        other.subtrees[0].hash = [9; 32];
        b.commit(s, other).await.unwrap();

        let names =
            |v: Vec<StoredSubtree>| v.iter().map(|t| (t.level, t.index)).collect::<Vec<_>>();
        let every = [span(8, 0..u64::MAX), span(9, 0..u64::MAX), span(10, 0..1)];
        let all = s.subtrees("log-a", &every).await.unwrap();
        assert_eq!(
            names(all.clone()),
            vec![(8, 0), (8, 1), (8, 2), (8, 3), (9, 0), (9, 1), (10, 0)],
            "{backend:?}"
        );
        assert_eq!(all[2], subtree(8, 2), "{backend:?}: hash round trip");
        let some = [span(9, 1..2), span(8, 1..3), span(11, 0..9)];
        assert_eq!(
            names(s.subtrees("log-a", &some).await.unwrap()),
            vec![(8, 1), (8, 2), (9, 1)],
            "{backend:?}"
        );
        assert!(s.subtrees("log-a", &[]).await.unwrap().is_empty());
        let first_8 = [span(8, 0..1)];
        let theirs = s.subtrees("log-b", &first_8).await.unwrap();
        assert_eq!(theirs.len(), 1);
        assert_eq!(
            theirs[0].hash, [9; 32],
            "{backend:?}: one log's subtrees are its own"
        );
        // A subtree stored twice (a writer that lost track of its log) fails the whole batch.
        let mut again = a.batch(1, 4, vec![]);
        again.subtrees = vec![subtree(8, 3)];
        assert!(is_conflict(a.commit(s, again).await), "{backend:?}");
        assert_eq!(s.entries("log-a", 0, 100).await.unwrap().len(), 5);
    }
}

#[tokio::test]
async fn checkpoints_are_newest_first_per_log_and_written_once() {
    for backend in backends() {
        let db = open(backend).await;
        let s = &db.store;
        let mut a = Log::new("log-a");
        let mut b = Log::new("log-b");
        for i in 1..=4 {
            let mut batch = a.batch(1, i, vec![]);
            batch.checkpoint = Some(StoredCheckpoint {
                log_id: "log-a".into(),
                tree_size: i as u64,
                time_ms: i * 10,
                note: format!("a-{i}"),
            });
            a.commit(s, batch).await.unwrap();
        }
        let mut batch = b.batch(1, 1, vec![]);
        batch.checkpoint = Some(StoredCheckpoint {
            log_id: "log-b".into(),
            tree_size: 1,
            time_ms: 10,
            note: "b-1".into(),
        });
        b.commit(s, batch).await.unwrap();
        // A repeated checkpoint for a size already signed keeps the first note.
        let mut again = a.batch(0, 5, vec![]);
        again.checkpoint = Some(StoredCheckpoint {
            log_id: "log-a".into(),
            tree_size: 4,
            time_ms: 99,
            note: "a-4-again".into(),
        });
        a.commit(s, again).await.unwrap();
        let notes = |v: Vec<StoredCheckpoint>| v.into_iter().map(|c| c.note).collect::<Vec<_>>();
        assert_eq!(
            notes(s.checkpoints("log-a", 10).await.unwrap()),
            vec!["a-4", "a-3", "a-2", "a-1"],
            "{backend:?}"
        );
        assert_eq!(
            s.checkpoints("log-a", 1).await.unwrap(),
            vec![StoredCheckpoint {
                log_id: "log-a".into(),
                tree_size: 4,
                time_ms: 40,
                note: "a-4".into(),
            }]
        );
        assert_eq!(
            notes(s.checkpoints("log-b", 10).await.unwrap()),
            vec!["b-1"]
        );
        assert!(s.checkpoints("log-c", 10).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn expired_messages_are_found_oldest_first() {
    for backend in backends() {
        let db = open(backend).await;
        let s = &db.store;
        let mut log = Log::new("log-a");
        // expires_ms = created_ms + 1000
        let inserts = vec![
            insert("late", "lyceum-zuid", 5_000),
            insert("first", "lyceum-zuid", 1_000),
            insert("second", "wijkteam-noord", 2_000),
        ];
        log.commit(s, log.batch(1, 1, inserts)).await.unwrap();
        let ids = |v: Vec<ketenpoort::store::StoredMessage>| {
            v.into_iter().map(|m| m.msg.id).collect::<Vec<_>>()
        };
        assert_eq!(
            ids(s.expired_messages(4_000, 10).await.unwrap()),
            vec!["first", "second"],
            "{backend:?}"
        );
        assert_eq!(
            ids(s.expired_messages(4_000, 1).await.unwrap()),
            vec!["first"]
        );
        assert!(s.expired_messages(2_000, 10).await.unwrap().is_empty());
        assert_eq!(db.backend, backend);
    }
}

/// After a crash, the dead process's last commit can still land (PostgreSQL finishes a COMMIT it received) after
/// the restarted gateway's writer read the log state. Two writers on one log id play both: the one that read the
/// state first loses the race for the next sequence number (nothing of its batch is stored), then goes on after
/// the other's entry on the reloaded state, which is what the gateway's start-up entry relies on
/// (`Gateway::start` tries it again after a conflict).
#[tokio::test]
async fn a_writer_that_lost_the_race_for_its_log_goes_on_after_the_winner() {
    use ketenpoort::audit::checkpoint::SigningKey;
    use ketenpoort::audit::entry::{EventKind, LogEntry};
    use ketenpoort::audit::writer::{AuditError, LogWriter, WriterConfig};
    use std::time::Duration;
    for backend in backends() {
        let db = open(backend).await;
        let key_dir = TempDir::new("kp-race-key-");
        let signing =
            Arc::new(SigningKey::load_or_create(&key_dir.path().join("log.key")).unwrap());
        let config = || WriterConfig {
            log_id: "log-race".into(),
            batch_max: 16,
            checkpoint_interval: Duration::from_secs(3600),
        };
        let (restarted, _h1) = LogWriter::start(db.store.clone(), signing.clone(), config())
            .await
            .unwrap();
        let (late, _h2) = LogWriter::start(db.store.clone(), signing.clone(), config())
            .await
            .unwrap();
        let entry = || LogEntry::new(EventKind::PolicyLoaded);
        assert_eq!(
            late.append_one(entry()).await.unwrap().seq,
            0,
            "{backend:?}"
        );
        let lost = restarted.append_one(entry()).await;
        assert!(
            matches!(lost, Err(AuditError::Conflict(_))),
            "{backend:?}: {lost:?}"
        );
        let state = db.store.load_log_state("log-race").await.unwrap().unwrap();
        assert_eq!(state.size, 1, "{backend:?}: the lost batch left nothing");
        let again = restarted.append_one(entry()).await.unwrap();
        assert_eq!(again.seq, 1, "{backend:?}");
        let state = db.store.load_log_state("log-race").await.unwrap().unwrap();
        assert_eq!(state.size, 2, "{backend:?}");
    }
}

/// A reply's `in_reply_to` is looked up by message id: the disclosure entry is found while the mailbox row exists,
/// after it is acknowledged (deleted) too, and an id that was never sent is not found.
#[tokio::test]
async fn the_disclosure_of_a_message_is_found_by_its_id_after_the_row_is_gone() {
    for backend in backends() {
        let db = open(backend).await;
        let s = &db.store;
        let mut log = Log::new("log-a");
        log.commit(s, log.batch(3, 1, vec![])).await.unwrap();
        let mut entry = log.entry(3, 2);
        entry.event = "message-disclosed".into();
        entry.flow_id = Some("P4".into());
        entry.subject = Some("pseudonym-m9".into());
        let mut m = message("m9", "wijkteam-noord", 2);
        m.seq = 3;
        log.commit(
            s,
            log.batch_of(vec![entry], vec![Mutation::InsertMessage(Box::new(m))]),
        )
        .await
        .unwrap();
        let found = |s: &DynStore| {
            let s = s.clone();
            async move { s.disclosure_of_message("m9").await.unwrap().expect("found") }
        };
        let e = found(s).await;
        assert_eq!((e.log_id.as_str(), e.seq), ("log-a", 3), "{backend:?}");
        assert_eq!(e.event, "message-disclosed");
        assert_eq!(e.flow_id.as_deref(), Some("P4"));
        assert_eq!(e.subject.as_deref(), Some("pseudonym-m9"));
        log.commit(s, log.batch(1, 3, vec![delete_msg("m9")]))
            .await
            .unwrap();
        assert!(s.message("m9").await.unwrap().is_none());
        assert_eq!(found(s).await.seq, 3, "{backend:?}: found after the ack");
        assert!(s.disclosure_of_message("m10").await.unwrap().is_none());
    }
}

/// A fetch claim of one message whose fetch count was read as `seen`.
fn claim_fetch(id: &str, seen: i64) -> Mutation {
    Mutation::ClaimFetched {
        claims: vec![FetchClaim {
            id: id.to_owned(),
            seen,
            stripped: 0,
        }],
        at_ms: 7,
    }
}

/// The purge of an acknowledged message.
fn delete_msg(id: &str) -> Mutation {
    Mutation::DeleteMessage {
        id: id.to_owned(),
        end: MessageEnd::Acknowledged,
        at_ms: 9,
        unfetched_only: false,
    }
}

fn incident(id: &str, organisation: &str, updated_ms: i64, record: &str) -> StoredIncident {
    StoredIncident {
        id: id.into(),
        organisation: organisation.into(),
        status: "open".into(),
        discovered_ms: 1_000,
        deadline_ms: 1_000 + 72 * 3_600_000,
        decided: false,
        updated_ms,
        record: record.into(),
    }
}

/// The outbox row follows its message through fetch and its end, in the commit of the entry that records it, and
/// outlives the mailbox row; a recall (`unfetched_only`) never wins over a fetch; a report after the acknowledgement
/// ends only the outbox row, once; an incident is changed only by who read its latest version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_and_the_breach_register_change_only_with_their_entries() {
    for backend in backends() {
        let db = open(backend).await;
        let s = &db.store;
        let mut log = Log::new("log-a");
        // m0's disclosure is entry 0 of log-a (`message` points there); m1 too (a test shortcut).
        log.commit(
            s,
            log.batch(
                1,
                1_000,
                vec![
                    insert("m0", "lyceum-zuid", 1_000),
                    insert("m1", "lyceum-zuid", 1_001),
                ],
            ),
        )
        .await
        .unwrap();
        let filter = OutboxFilter {
            sender: "obs-de-linde".into(),
            limit: 10,
            ..Default::default()
        };
        let rows = s.outbox(&filter).await.unwrap();
        assert_eq!(rows.len(), 2, "{backend:?}");
        assert_eq!(rows[0].id, "m1", "newest first");
        assert!(rows
            .iter()
            .all(|r| r.status == "waiting" && r.fetched_ms.is_none()));
        assert_eq!(rows[0].disclosure.seq, 0);
        assert!(s
            .outbox(&OutboxFilter {
                sender: "lyceum-zuid".into(),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .is_empty());

        // A fetch that stripped fields: consent-withdrawn, with its time; a recall of it then loses.
        let fetch = Mutation::ClaimFetched {
            claims: vec![FetchClaim {
                id: "m0".into(),
                seen: 0,
                stripped: 2,
            }],
            at_ms: 2_000,
        };
        log.commit(s, log.batch(1, 2_000, vec![fetch]))
            .await
            .unwrap();
        let m0 = s.outbox_message("m0").await.unwrap().unwrap();
        assert_eq!(
            (m0.status.as_str(), m0.fetched_ms, m0.stripped),
            ("consent-withdrawn", Some(2_000), 2)
        );
        let recall = |id: &str| Mutation::DeleteMessage {
            id: id.into(),
            end: MessageEnd::Recalled("verkeerde-ontvanger".into()),
            at_ms: 3_000,
            unfetched_only: true,
        };
        assert!(is_conflict(
            log.commit(s, log.batch(1, 3_000, vec![recall("m0")])).await
        ));
        assert!(
            s.message("m0").await.unwrap().is_some(),
            "the losing recall purged nothing"
        );
        // m1 is not fetched: the recall wins and the row ends as recalled.
        log.commit(s, log.batch(1, 3_000, vec![recall("m1")]))
            .await
            .unwrap();
        assert!(s.message("m1").await.unwrap().is_none());
        let m1 = s.outbox_message("m1").await.unwrap().unwrap();
        assert_eq!(
            (m1.status.as_str(), m1.ended_ms, m1.end_reason.as_deref()),
            ("recalled", Some(3_000), Some("verkeerde-ontvanger"))
        );
        // Filtered by status.
        let recalled = s
            .outbox(&OutboxFilter {
                status: Some("recalled".into()),
                ..filter.clone()
            })
            .await
            .unwrap();
        assert_eq!(
            recalled.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["m1"]
        );

        // Acknowledged, then reported as not for the receiver: only the outbox row changes, once.
        log.commit(s, log.batch(1, 4_000, vec![delete_msg("m0")]))
            .await
            .unwrap();
        assert_eq!(
            s.outbox_message("m0").await.unwrap().unwrap().status,
            "acknowledged"
        );
        let report = |id: &str| Mutation::EndOutbox {
            id: id.into(),
            end: MessageEnd::Misaddressed("verkeerde-school".into()),
            at_ms: 5_000,
        };
        log.commit(s, log.batch(1, 5_000, vec![report("m0")]))
            .await
            .unwrap();
        assert_eq!(
            s.outbox_message("m0").await.unwrap().unwrap().status,
            "misaddressed"
        );
        assert!(is_conflict(
            log.commit(s, log.batch(1, 5_000, vec![report("m0")])).await
        ));
        assert!(
            is_conflict(log.commit(s, log.batch(1, 5_000, vec![report("m1")])).await),
            "recalled stays recalled"
        );
        assert!(is_conflict(
            log.commit(s, log.batch(1, 5_000, vec![report("nope")]))
                .await
        ));

        // The register: inserted, listed per organisation, updated only from the version read.
        log.commit(
            s,
            log.batch(
                1,
                6_000,
                vec![Mutation::InsertIncident(incident(
                    "inc-1",
                    "obs-de-linde",
                    6_000,
                    "{}",
                ))],
            ),
        )
        .await
        .unwrap();
        assert_eq!(s.incidents(Some("obs-de-linde")).await.unwrap().len(), 1);
        assert!(s.incidents(Some("lyceum-zuid")).await.unwrap().is_empty());
        assert_eq!(s.incidents(None).await.unwrap().len(), 1);
        let mut next = incident("inc-1", "obs-de-linde", 7_000, r#"{"risk":"laag"}"#);
        next.decided = true;
        let update = |previous| Mutation::UpdateIncident {
            incident: next.clone(),
            previous_updated_ms: previous,
        };
        assert!(is_conflict(
            log.commit(s, log.batch(1, 7_000, vec![update(5_999)]))
                .await
        ));
        log.commit(s, log.batch(1, 7_000, vec![update(6_000)]))
            .await
            .unwrap();
        assert_eq!(s.incident("inc-1").await.unwrap().unwrap(), next);
        assert!(
            is_conflict(
                log.commit(s, log.batch(1, 7_000, vec![update(6_000)]))
                    .await
            ),
            "a second writer of the same version loses"
        );
        assert_eq!(log.size, 7, "{backend:?}: a losing batch leaves no entry");
    }
}
