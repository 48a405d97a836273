//! The disclosure log from the outside, through the real binary: signed checkpoints and Merkle proofs over HTTP
//! checked with the library's verifier, `ketenpoort audit verify` catching rows edited, deleted, reordered or
//! re-hashed directly in SQLite and PostgreSQL, the privacy officer's API (scoping per organisation, filters,
//! paging, CSV, the art. 15 report) and audit queries being logged themselves; and retention purging payloads
//! without breaking verification. Every test runs on SQLite and, when configured, on PostgreSQL.

mod common;

use base64::Engine;
use common::*;
use ketenpoort::audit::checkpoint::{verify_checkpoint, SignedCheckpoint};
use ketenpoort::audit::merkle::{self, Hash};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const PUPIL_P4: &str = "121547280";

fn hash(hex_text: &str) -> Hash {
    hex::decode(hex_text).unwrap().try_into().unwrap()
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| hash(h.as_str().unwrap()))
        .collect()
}

fn trusted_key(gw: &Gateway) -> [u8; 32] {
    ketenpoort::audit::verify::read_public_key(&gw.dir.path().join("keys/log-signing.key.pub"))
        .unwrap()
}

/// A message no flow allows (its purpose is a marker), so it is refused and logged with that purpose.
async fn refused(gw: &Gateway, sender: &str, example_name: &str, purpose: &str) {
    let mut body = example_json(example_name);
    body["purpose"] = json!(purpose);
    let r = gw.client(sender).post_json("/v1/messages", &body).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.code(), "no-policy");
}

fn consent_body(pgn: &str, purpose: &str, recipient: &str) -> Value {
    json!({
        "subject": {"pgn": pgn}, "purpose": purpose, "recipient": recipient, "categories": ["*"],
        "given_by": "ouder", "evidence": "toestemmingsformulier, leerlingdossier",
        "valid_from": "2026-01-01", "valid_until": "2030-07-31"
    })
}

/// Registers a consent; returns its id and its log receipt.
async fn consent(
    gw: &Gateway,
    partner: &str,
    pgn: &str,
    purpose: &str,
    recipient: &str,
) -> (String, Value) {
    let r = gw
        .client(partner)
        .post_json("/v1/consents", &consent_body(pgn, purpose, recipient))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    (
        v["consent_id"].as_str().unwrap().to_owned(),
        v["disclosure"].clone(),
    )
}

/// The latest checkpoint of this gateway's own log, once it covers at least `min_size` entries.
async fn checkpoint_covering(client: &Client, min_size: u64) -> (Value, SignedCheckpoint) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = client.get("/v1/audit/checkpoint").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let own = v["log_id"].as_str().unwrap().to_owned();
        if let Some(log) = v["logs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["log_id"] == own.as_str())
        {
            if log["tree_size"].as_u64().unwrap() >= min_size {
                let sc = SignedCheckpoint::from_note(log["note"].as_str().unwrap()).unwrap();
                return (v, sc);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint covering {min_size} entries: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inclusion_and_consistency_proofs_from_the_api_verify_against_signed_checkpoints() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let key = trusted_key(&gw);
        // Any partner may read checkpoints and proofs: they are hashes only.
        let reader = gw.client("lyceum-zuid");
        let mut receipts = Vec::new();
        for purpose in ["vroegsignalering", "afstemming-ondersteuning", "x-proef"] {
            receipts.push(
                consent(&gw, "obs-de-linde", PUPIL_P4, purpose, "wijkteam-noord")
                    .await
                    .1,
            );
        }
        let last = receipts.last().unwrap()["seq"].as_u64().unwrap();
        let (cp_json, cp1) = checkpoint_covering(&reader, last + 1).await;
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(cp_json["public_key"].as_str().unwrap())
                .unwrap(),
            key.to_vec(),
            "the API names another public key than the one on disk"
        );
        verify_checkpoint(&key, &cp1).expect("checkpoint signed by the gateway's key");
        let size1 = cp1.checkpoint.tree_size;

        for receipt in &receipts {
            let seq = receipt["seq"].as_u64().unwrap();
            let leaf = hash(receipt["hash"].as_str().unwrap());
            let r = reader
                .get(&format!(
                    "/v1/audit/proof/inclusion/{seq}?tree_size={size1}"
                ))
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
            let p = r.json();
            assert_eq!(p["leaf_hash"], receipt["hash"]);
            assert_eq!(p["root"], hex::encode(cp1.checkpoint.root));
            let proof = hashes(&p["proof"]);
            merkle::verify_inclusion(&leaf, seq, size1, &proof, &cp1.checkpoint.root)
                .expect("inclusion proof verifies against the signed root");
            // The same proof does not prove another position.
            let other = if seq > 0 { seq - 1 } else { seq + 1 };
            assert!(
                merkle::verify_inclusion(&leaf, other, size1, &proof, &cp1.checkpoint.root)
                    .is_err()
            );
        }
        // Without tree_size the proof is for the latest checkpoint.
        let r = reader.get("/v1/audit/proof/inclusion/0").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.json()["tree_size"].as_u64().unwrap() >= size1);

        // More entries, a newer checkpoint, and a consistency proof between the two.
        for purpose in ["y-proef", "z-proef"] {
            consent(&gw, "obs-de-linde", PUPIL_P4, purpose, "wijkteam-noord").await;
        }
        let (_, cp2) = checkpoint_covering(&reader, size1 + 2).await;
        verify_checkpoint(&key, &cp2).unwrap();
        let size2 = cp2.checkpoint.tree_size;
        let r = reader
            .get(&format!(
                "/v1/audit/proof/consistency?from={size1}&to={size2}"
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let c = r.json();
        assert_eq!(c["from_root"], hex::encode(cp1.checkpoint.root));
        assert_eq!(c["to_root"], hex::encode(cp2.checkpoint.root));
        let proof = hashes(&c["proof"]);
        merkle::verify_consistency(
            size1,
            size2,
            &cp1.checkpoint.root,
            &cp2.checkpoint.root,
            &proof,
        )
        .expect("consistency proof verifies between the two signed checkpoints");
        assert!(merkle::verify_consistency(
            size1,
            size2,
            &cp2.checkpoint.root,
            &cp1.checkpoint.root,
            &proof
        )
        .is_err());

        // Bad parameters are problems with stable codes.
        for (path, status, code) in [
            (
                format!("/v1/audit/proof/inclusion/{size2}?tree_size={size2}"),
                422,
                "invalid-proof-request",
            ),
            (
                "/v1/audit/proof/inclusion/0?tree_size=0".to_owned(),
                422,
                "invalid-proof-request",
            ),
            (
                "/v1/audit/proof/inclusion/0?tree_size=999999999".to_owned(),
                422,
                "invalid-proof-request",
            ),
            (
                "/v1/audit/proof/inclusion/abc".to_owned(),
                400,
                "invalid-query",
            ),
            (
                "/v1/audit/proof/inclusion/0?size=3".to_owned(),
                400,
                "invalid-query",
            ),
            (
                "/v1/audit/proof/consistency?from=0&to=2".to_owned(),
                422,
                "invalid-proof-request",
            ),
            (
                format!("/v1/audit/proof/consistency?from={size2}&to={size1}"),
                422,
                "invalid-proof-request",
            ),
            (
                "/v1/audit/proof/consistency?to=2".to_owned(),
                422,
                "invalid-proof-request",
            ),
            (
                "/v1/audit/proof/inclusion/0?tree_size=1&log_id=no-such-log".to_owned(),
                404,
                "unknown-log",
            ),
        ] {
            let r = reader.get(&path).await;
            assert_eq!(r.status, status, "{path}: {}", r.text());
            assert_eq!(r.code(), code, "{path}");
        }
    }
}

/// Sends `n` refused messages (one log entry each) from several partners at once.
async fn fill_log(gw: &Gateway, n: usize) {
    let senders = [
        "lyceum-zuid",
        "obs-de-linde",
        "cbs-het-anker",
        "swv-vo-zuid",
    ];
    let clients: Vec<std::sync::Arc<Client>> = senders
        .iter()
        .map(|p| std::sync::Arc::new(gw.client(p)))
        .collect();
    let mut set = tokio::task::JoinSet::new();
    for (i, client) in clients.iter().enumerate() {
        let client = client.clone();
        let count = n / clients.len() + usize::from(i < n % clients.len());
        set.spawn(async move {
            let mut body = example_json("P3");
            for k in 0..count {
                body["purpose"] = json!(format!("test-vulling-{i}-{k}"));
                let r = client.post_json("/v1/messages", &body).await;
                assert_eq!(r.status, 403, "{}", r.text());
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

/// An inclusion proof from the API for `index` at `tree_size`, checked against `root`.
async fn inclusion_verifies(client: &Client, index: u64, tree_size: u64, root: &Hash) -> bool {
    let r = client
        .get(&format!(
            "/v1/audit/proof/inclusion/{index}?tree_size={tree_size}"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let p = r.json();
    let leaf = hash(p["leaf_hash"].as_str().unwrap());
    merkle::verify_inclusion(&leaf, index, tree_size, &hashes(&p["proof"]), root).is_ok()
}

/// A log long enough for stored subtrees (256 leaves and up): the writer stores each one it completes, proofs built
/// on them verify against the signed roots; a stored subtree altered in the database makes proofs through it fail
/// and `audit verify` name it; with the subtrees gone (a log written before they were kept) proofs are hashed from
/// the leaves and still verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_use_stored_subtrees_and_an_altered_subtree_is_caught() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        fill_log(&gw, 700).await;
        let reader = gw.client("lyceum-zuid");
        let (_, cp) = checkpoint_covering(&reader, 700).await;
        let (size, root) = (cp.checkpoint.tree_size, cp.checkpoint.root);
        let stored: u64 = rows(&gw, "SELECT CAST(COUNT(*) AS TEXT) FROM log_subtrees").await[0]
            .parse()
            .unwrap();
        let log_size: u64 = rows(&gw, "SELECT CAST(MAX(seq) + 1 AS TEXT) FROM log_entries").await
            [0]
        .parse()
        .unwrap();
        assert_eq!(
            stored,
            (merkle::STORED_LEVEL..64)
                .map(|l| log_size >> l)
                .sum::<u64>(),
            "{backend:?}: one stored subtree per perfect subtree of 256 leaves and up"
        );
        for index in [0, 1, 255, 256, 300, 511, 512, size - 1] {
            assert!(
                inclusion_verifies(&reader, index, size, &root).await,
                "{backend:?}: index {index}"
            );
        }
        let r = reader
            .get(&format!("/v1/audit/proof/consistency?from=300&to={size}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let c = r.json();
        assert_eq!(c["to_root"], hex::encode(root));
        let old_root = hash(c["from_root"].as_str().unwrap());
        merkle::verify_consistency(300, size, &old_root, &root, &hashes(&c["proof"]))
            .expect("consistency proof over stored subtrees");
        let at_300 = reader
            .get("/v1/audit/proof/inclusion/7?tree_size=300")
            .await;
        assert_eq!(at_300.json()["root"], c["from_root"]);

        // Altered: the subtree over leaves [0, 256) no longer matches them.
        let mut gw = gw;
        gw.stop();
        let hex_hash = rows(
            &gw,
            &format!(
                "SELECT {} FROM log_subtrees WHERE level = 8 AND idx = 0",
                hex_sql(&gw, "hash")
            ),
        )
        .await;
        let mut altered = hex::decode(&hex_hash[0]).unwrap();
        altered[5] ^= 0x10;
        exec(
            &gw,
            &format!(
                "UPDATE log_subtrees SET hash = {} WHERE level = 8 AND idx = 0",
                blob_sql(&gw, &altered)
            ),
        )
        .await;
        assert_fails_at(
            &gw,
            255,
            "stored Merkle subtree (level 8, index 0) does not match the entries",
            "altered subtree",
        );
        let gw = gw.restart();
        let reader = gw.client("lyceum-zuid");
        assert!(
            !inclusion_verifies(&reader, 300, size, &root).await,
            "{backend:?}: a proof through the altered subtree must not verify"
        );
        assert!(
            inclusion_verifies(&reader, 600, size, &root).await,
            "{backend:?}: a proof that does not pass the altered subtree still verifies"
        );

        // Gone, as for a log written before subtrees were stored: proofs are hashed from the leaves.
        let mut gw = gw;
        gw.stop();
        exec(&gw, "DELETE FROM log_subtrees").await;
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
        assert!(
            out.contains("are not stored; proofs hash those leaves"),
            "{out}"
        );
        let gw = gw.restart();
        let reader = gw.client("lyceum-zuid");
        for index in [0, 300, size - 1] {
            assert!(
                inclusion_verifies(&reader, index, size, &root).await,
                "{backend:?}: index {index} without stored subtrees"
            );
        }
    }
}

// ---------------------------------------------------------------- tampering with the database directly

/// Runs SQL statements directly against a stopped gateway's database: sqlx on the SQLite file, psql on PostgreSQL.
async fn exec(gw: &Gateway, sql: &str) {
    exec_sql(gw.backend, &gw.database_url, sql).await
}

fn psql(gw: &Gateway, sql: &str) -> String {
    psql_at(&gw.database_url, sql)
}

/// One text column per row.
async fn rows(gw: &Gateway, sql: &str) -> Vec<String> {
    match gw.backend {
        Backend::Sqlite => {
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect(&gw.database_url)
                .await
                .unwrap();
            let v: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_all(&pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            pool.close().await;
            v
        }
        Backend::Postgres => psql(gw, sql).lines().map(str::to_owned).collect(),
    }
}

fn hex_sql(gw: &Gateway, column: &str) -> String {
    match gw.backend {
        Backend::Sqlite => format!("lower(hex({column}))"),
        Backend::Postgres => format!("encode({column}, 'hex')"),
    }
}

fn blob_sql(gw: &Gateway, bytes: &[u8]) -> String {
    match gw.backend {
        Backend::Sqlite => format!("X'{}'", hex::encode(bytes)),
        Backend::Postgres => format!("decode('{}', 'hex')", hex::encode(bytes)),
    }
}

fn replace_in_entry_sql(gw: &Gateway, seq: u64, from: &str, to: &str) -> String {
    match gw.backend {
        Backend::Sqlite => format!(
            "UPDATE log_entries SET entry = CAST(replace(CAST(entry AS TEXT), '{from}', '{to}') AS BLOB) WHERE seq = {seq}"
        ),
        Backend::Postgres => format!(
            "UPDATE log_entries SET entry = convert_to(replace(convert_from(entry, 'UTF8'), '{from}', '{to}'), 'UTF8') WHERE seq = {seq}"
        ),
    }
}

fn assert_verifies(gw: &Gateway, when: &str) {
    let (ok, out) = gw.audit_verify();
    assert!(ok, "{when}: {out}");
    assert!(out.contains("verified"), "{when}: {out}");
}

fn assert_fails_at(gw: &Gateway, seq: u64, why: &str, when: &str) {
    let (ok, out) = gw.audit_verify();
    assert!(!ok, "{when}: the verifier accepted it:\n{out}");
    assert!(
        out.contains(&format!("FAILED at entry {seq}:")),
        "{when}: expected entry {seq} to be named:\n{out}"
    );
    assert!(out.contains(why), "{when}: expected '{why}':\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_the_first_entry_edited_deleted_reordered_or_rehashed_in_the_database() {
    for backend in backends() {
        let mut gw = Gateway::start(backend);
        for i in 0..3 {
            refused(&gw, "lyceum-zuid", "P3", &format!("test-voor-{i}")).await;
        }
        refused(&gw, "obs-de-linde", "P4", "test-tamper-doel").await;
        for i in 0..3 {
            consent(
                &gw,
                "obs-de-linde",
                PUPIL_P4,
                &format!("test-na-{i}"),
                "wijkteam-noord",
            )
            .await;
        }
        gw.stop();
        assert_verifies(&gw, "untouched");
        let target: u64 = rows(
            &gw,
            "SELECT CAST(seq AS TEXT) FROM log_entries WHERE purpose = 'test-tamper-doel'",
        )
        .await[0]
            .parse()
            .unwrap();
        let last: u64 = rows(&gw, "SELECT CAST(MAX(seq) AS TEXT) FROM log_entries").await[0]
            .parse()
            .unwrap();
        assert!(target > 0 && target < last);

        // Edit: one entry's content changes.
        exec(
            &gw,
            &replace_in_entry_sql(&gw, target, "test-tamper-doel", "test-tamper-DOEL"),
        )
        .await;
        assert_fails_at(&gw, target, "altered", "edited entry");
        exec(
            &gw,
            &replace_in_entry_sql(&gw, target, "test-tamper-DOEL", "test-tamper-doel"),
        )
        .await;
        assert_verifies(&gw, "edit undone");

        // Delete: one entry disappears.
        exec(
            &gw,
            &format!(
                "CREATE TABLE kept AS SELECT * FROM log_entries WHERE seq = {target}; DELETE FROM log_entries WHERE seq = {target}"
            ),
        )
        .await;
        assert_fails_at(&gw, target, "entry missing", "deleted entry");
        exec(
            &gw,
            "INSERT INTO log_entries SELECT * FROM kept; DROP TABLE kept",
        )
        .await;
        assert_verifies(&gw, "delete undone");

        // Reorder: two neighbouring entries swap places.
        let swap = |a: u64, b: u64| {
            format!(
                "UPDATE log_entries SET seq = -1 WHERE seq = {a}; UPDATE log_entries SET seq = {a} WHERE seq = {b}; UPDATE log_entries SET seq = {b} WHERE seq = -1"
            )
        };
        exec(&gw, &swap(target, target + 1)).await;
        assert_fails_at(&gw, target, "reordered", "swapped entries");
        exec(&gw, &swap(target, target + 1)).await;
        assert_verifies(&gw, "swap undone");

        // A careful forger edits an entry and recomputes every leaf hash, the hash chain and the log state;
        // only the signed checkpoints can catch this, at the first one covering the edit.
        let prev_chain = hash(
            &rows(
                &gw,
                &format!(
                    "SELECT {} FROM log_entries WHERE seq = {}",
                    hex_sql(&gw, "chain_hash"),
                    target - 1
                ),
            )
            .await[0],
        );
        let stored = rows(
            &gw,
            &format!(
                "SELECT {} FROM log_entries WHERE seq >= {target} ORDER BY seq",
                hex_sql(&gw, "entry")
            ),
        )
        .await;
        let mut chain = prev_chain;
        let mut sql = String::new();
        for (i, entry_hex) in stored.iter().enumerate() {
            let seq = target + i as u64;
            let mut bytes = hex::decode(entry_hex).unwrap();
            if seq == target {
                let text = String::from_utf8(bytes)
                    .unwrap()
                    .replace("test-tamper-doel", "test-tamper-DOEL");
                bytes = text.into_bytes();
            }
            let leaf = merkle::leaf_hash(&bytes);
            chain = ketenpoort::audit::writer::chain_hash(&chain, &leaf);
            sql.push_str(&format!(
                "UPDATE log_entries SET entry = {}, leaf_hash = {}, chain_hash = {} WHERE seq = {seq};\n",
                blob_sql(&gw, &bytes),
                blob_sql(&gw, &leaf),
                blob_sql(&gw, &chain)
            ));
        }
        sql.push_str(&format!(
            "UPDATE log_state SET chain_head = {};",
            blob_sql(&gw, &chain)
        ));
        exec(&gw, &sql).await;
        let (ok, out) = gw.audit_verify();
        assert!(!ok, "re-hashed forgery accepted:\n{out}");
        assert!(
            out.contains("recomputed root differs from the signed checkpoint"),
            "{out}"
        );
        let named: u64 = out
            .split("FAILED at entry ")
            .nth(1)
            .and_then(|r| r.split(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no entry named:\n{out}"));
        assert!(
            named >= target,
            "named {named}, before the edit at {target}"
        );
    }
}

// ---------------------------------------------------------------- the privacy officer's API

fn purposes(v: &Value) -> BTreeSet<String> {
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["purpose"].as_str().map(str::to_owned))
        .collect()
}

async fn disclosures(gw: &Gateway, partner: &str, query: &str) -> Value {
    let r = gw
        .client(partner)
        .get(&format!("/v1/audit/disclosures?limit=1000&{query}"))
        .await;
    assert_eq!(r.status, 200, "{partner} {query}: {}", r.text());
    r.json()
}

/// Entries for each FG scoping case: lyceum-zuid only, obs-de-linde only, between both, cbs-het-anker only.
async fn scoping_entries(gw: &Gateway) {
    refused(gw, "lyceum-zuid", "P3", "test-alleen-lyceum-zuid").await;
    refused(gw, "obs-de-linde", "P4", "test-alleen-de-linde").await;
    refused(gw, "obs-de-linde", "P1", "test-linde-naar-lyceum").await;
    consent(
        gw,
        "cbs-het-anker",
        "628194821",
        "test-alleen-het-anker",
        "wijkteam-noord",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_privacy_officer_sees_only_entries_of_its_own_organisation_and_the_operator_sees_all() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        scoping_entries(&gw).await;

        let linde = disclosures(&gw, "fg-obs-de-linde", "").await;
        assert_eq!(linde["scope"], "obs-de-linde");
        let p = purposes(&linde);
        assert!(p.contains("test-alleen-de-linde"), "{p:?}");
        assert!(p.contains("test-linde-naar-lyceum"), "{p:?}");
        assert!(!p.contains("test-alleen-lyceum-zuid"), "{p:?}");
        assert!(!p.contains("test-alleen-het-anker"), "{p:?}");

        let lyceum = disclosures(&gw, "fg-lyceum-zuid", "").await;
        let p = purposes(&lyceum);
        assert!(p.contains("test-alleen-lyceum-zuid"), "{p:?}");
        assert!(p.contains("test-linde-naar-lyceum"), "{p:?}");
        assert!(!p.contains("test-alleen-de-linde"), "{p:?}");
        assert!(!p.contains("test-alleen-het-anker"), "{p:?}");
        // Every entry an FG sees involves its organisation.
        for e in lyceum["entries"].as_array().unwrap() {
            assert!(
                ["organisation", "sender", "receiver"]
                    .iter()
                    .any(|k| e[k] == "lyceum-zuid"),
                "fg-lyceum-zuid sees an entry without lyceum-zuid: {e}"
            );
        }

        let all = disclosures(&gw, "fg-operator", "").await;
        assert_eq!(all["scope"], "all");
        let p = purposes(&all);
        for marker in [
            "test-alleen-lyceum-zuid",
            "test-alleen-de-linde",
            "test-linde-naar-lyceum",
            "test-alleen-het-anker",
        ] {
            assert!(p.contains(marker), "operator misses {marker}: {p:?}");
        }

        // Partners that are not privacy officers get nothing, whatever they ask.
        for partner in ["lyceum-zuid", "obs-de-linde", "wijkteam-noord"] {
            for path in [
                "/v1/audit/disclosures".to_owned(),
                format!("/v1/audit/subjects/{PUPIL_P4}"),
                "/console/".to_owned(),
                "/console/verstrekkingen".to_owned(),
            ] {
                let r = gw.client(partner).get(&path).await;
                assert_eq!(r.status, 403, "{partner} {path}: {}", r.text());
                assert_eq!(r.code(), "not-a-privacy-officer");
            }
        }
    }
}

const PUPIL_P3: &str = "507529170";

/// Sends `example_name` from `sender`, lets the receiver fetch and acknowledge it; returns the message id.
async fn deliver_fetch_ack(
    gw: &Gateway,
    sender: &str,
    example_name: &str,
    receiver: &str,
) -> String {
    let r = gw
        .client(sender)
        .post("/v1/messages", &example(example_name))
        .await;
    assert_eq!(r.status, 201, "{example_name}: {}", r.text());
    let id = r.json()["message_id"].as_str().unwrap().to_owned();
    let rc = gw.client(receiver);
    let inbox = rc.inbox().await;
    assert!(
        inbox.iter().any(|m| m["message_id"] == id.as_str()),
        "{example_name} not in the inbox of {receiver}"
    );
    let r = rc.post(&format!("/v1/inbox/{id}/ack"), b"").await;
    assert_eq!(r.status, 200, "{example_name} ack: {}", r.text());
    id
}

/// The events an FG's disclosure query shows about one message, in log order.
fn events_of(v: &Value, message_id: &str) -> Vec<String> {
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["message_id"] == message_id)
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

const DELIVERED: [&str; 3] = [
    "message-disclosed",
    "message-fetched",
    "message-acknowledged",
];

/// Scoping with real deliveries (not only refusals and consents): P1 De Linde → Lyceum Zuid, P3 Lyceum Zuid →
/// Leerplicht and P4 De Linde → Wijkteam Noord, each fetched and acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_officers_see_the_deliveries_fetches_and_acks_of_their_own_organisation_only() {
    let canaries = canaries();
    for backend in backends() {
        let gw = Gateway::start(backend);
        let p1 = deliver_fetch_ack(&gw, "obs-de-linde", "P1", "lyceum-zuid").await;
        let p3 = deliver_fetch_ack(&gw, "lyceum-zuid", "P3", "leerplicht-gemeente").await;
        consent(
            &gw,
            "obs-de-linde",
            PUPIL_P4,
            "vroegsignalering",
            "wijkteam-noord",
        )
        .await;
        let p4 = deliver_fetch_ack(&gw, "obs-de-linde", "P4", "wijkteam-noord").await;

        let lyceum = disclosures(&gw, "fg-lyceum-zuid", "").await;
        assert_eq!(lyceum["scope"], "lyceum-zuid");
        assert_eq!(events_of(&lyceum, &p1), DELIVERED, "P1 for fg-lyceum-zuid");
        assert_eq!(events_of(&lyceum, &p3), DELIVERED, "P3 for fg-lyceum-zuid");
        assert_eq!(
            events_of(&lyceum, &p4),
            Vec::<String>::new(),
            "P4 shown to fg-lyceum-zuid"
        );
        for e in lyceum["entries"].as_array().unwrap() {
            assert!(
                ["organisation", "sender", "receiver"]
                    .iter()
                    .any(|k| e[k] == "lyceum-zuid"),
                "fg-lyceum-zuid sees an entry without lyceum-zuid: {e}"
            );
            assert!(
                e["receiver"] != "wijkteam-noord" && e["organisation"] != "wijkteam-noord",
                "{e}"
            );
        }
        // What the disclosure entry tells the FG: flow, receiver, legal basis and the delivered field paths.
        let p3_disclosed = lyceum["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["message_id"] == p3.as_str() && e["event"] == "message-disclosed")
            .unwrap();
        assert_eq!(p3_disclosed["flow_id"], "P3");
        assert_eq!(p3_disclosed["receiver"], "leerplicht-gemeente");
        assert!(!p3_disclosed["legal_basis"].as_str().unwrap().is_empty());
        let delivered: Vec<&str> = p3_disclosed["delivered"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect();
        assert!(delivered.contains(&"verzuim.soort"), "{delivered:?}");
        assert!(
            !delivered.iter().any(|d| d.starts_with("toetsen")),
            "{delivered:?}"
        );
        assert_absent(
            serde_json::to_string(&lyceum).unwrap().as_bytes(),
            &canaries,
            "an FG's disclosure list",
        );

        // By pupil: the P3 pupil's disclosure, fetch and acknowledgement for the lyceum's FG (mailbox rows keep the
        // pupil's pseudonym, so every entry of the message names it), nothing for De Linde's.
        let by_pupil = disclosures(&gw, "fg-lyceum-zuid", &format!("pgn={PUPIL_P3}")).await;
        assert_eq!(events_of(&by_pupil, &p3), DELIVERED, "{by_pupil}");
        let linde_p3 = disclosures(&gw, "fg-obs-de-linde", &format!("pgn={PUPIL_P3}")).await;
        assert_eq!(events_of(&linde_p3, &p3), Vec::<String>::new());

        let linde = disclosures(&gw, "fg-obs-de-linde", "").await;
        assert_eq!(events_of(&linde, &p1), DELIVERED, "P1 for fg-obs-de-linde");
        assert_eq!(events_of(&linde, &p4), DELIVERED, "P4 for fg-obs-de-linde");
        assert_eq!(
            events_of(&linde, &p3),
            Vec::<String>::new(),
            "P3 shown to fg-obs-de-linde"
        );

        let all = disclosures(&gw, "fg-operator", "").await;
        assert_eq!(all["scope"], "all");
        for (name, id) in [("P1", &p1), ("P3", &p3), ("P4", &p4)] {
            assert_eq!(events_of(&all, id), DELIVERED, "{name} for fg-operator");
        }

        // The art. 15 report of the P3 pupil: the lyceum's FG sees the disclosure to leerplicht with its fields,
        // De Linde's FG sees none.
        let r = gw
            .client("fg-lyceum-zuid")
            .get(&format!("/v1/audit/subjects/{PUPIL_P3}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_absent(&r.body, &canaries, "the art. 15 report");
        let report = r.json();
        let ds = report["disclosures"].as_array().unwrap();
        assert_eq!(ds.len(), 1, "{report}");
        assert_eq!(ds[0]["recipient"], "leerplicht-gemeente");
        assert_eq!(ds[0]["purpose"], "verzuimmelding");
        assert!(ds[0]["fields_delivered"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "verzuim.soort"));
        let r = gw
            .client("fg-obs-de-linde")
            .get(&format!("/v1/audit/subjects/{PUPIL_P3}"))
            .await;
        assert_eq!(r.json()["disclosures"], json!([]));
        let r = gw
            .client("fg-lyceum-zuid")
            .get(&format!("/v1/audit/subjects/{PUPIL_P4}"))
            .await;
        assert_eq!(
            r.json()["disclosures"],
            json!([]),
            "P4 in the lyceum's report"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disclosure_filters_paging_csv_and_the_logging_of_every_audit_query() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        scoping_entries(&gw).await;

        // By pupil: the gateway turns the PGN (or BSN) into the log's pseudonym.
        let by_pgn = disclosures(&gw, "fg-obs-de-linde", &format!("pgn={PUPIL_P4}")).await;
        assert_eq!(
            purposes(&by_pgn),
            BTreeSet::from(["test-alleen-de-linde".to_owned()])
        );
        let pseudonym = by_pgn["entries"][0]["subject"].as_str().unwrap().to_owned();
        assert_ne!(pseudonym, PUPIL_P4);
        // The same number as BSN finds the same entries (and now also the audit query just made about it).
        let by_bsn = disclosures(&gw, "fg-obs-de-linde", &format!("bsn={PUPIL_P4}")).await;
        assert_eq!(purposes(&by_bsn), purposes(&by_pgn));
        assert!(by_bsn["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "audit-query" && e["partner"] == "fg-obs-de-linde"));
        // The lyceum's FG asks about the same pupil and finds nothing of De Linde's.
        let other = disclosures(&gw, "fg-lyceum-zuid", &format!("pgn={PUPIL_P4}")).await;
        assert_eq!(other["entries"], json!([]));

        let refused_only = disclosures(
            &gw,
            "fg-operator",
            "event=message-refused&outcome=no-policy",
        )
        .await;
        assert_eq!(refused_only["entries"].as_array().unwrap().len(), 3);
        for e in refused_only["entries"].as_array().unwrap() {
            assert_eq!(e["event"], "message-refused");
            assert_eq!(e["outcome"], "no-policy");
        }
        let by_partner = disclosures(&gw, "fg-operator", "partner=cbs-het-anker").await;
        assert_eq!(
            purposes(&by_partner),
            BTreeSet::from(["test-alleen-het-anker".to_owned()])
        );
        let by_purpose = disclosures(&gw, "fg-operator", "purpose=test-linde-naar-lyceum").await;
        assert_eq!(by_purpose["entries"].as_array().unwrap().len(), 1);
        assert_eq!(
            by_purpose["entries"][0]["receiver"], "lyceum-zuid",
            "{by_purpose}"
        );
        let old = disclosures(&gw, "fg-operator", "until=2000-01-01").await;
        assert_eq!(old["entries"], json!([]));
        let recent = disclosures(&gw, "fg-operator", "from=2000-01-01T00:00:00Z").await;
        assert!(recent["entries"].as_array().unwrap().len() >= 4);

        // Bad filters are problems; a typo in a parameter name never silently widens the search.
        for (query, status, code) in [
            ("pgn=123456789", 422, "invalid-subject-id"),
            (
                &format!("pgn={PUPIL_P4}&bsn={PUPIL_P4}") as &str,
                422,
                "invalid-filter",
            ),
            ("from=gisteren", 422, "invalid-filter"),
            ("event=message-stolen", 422, "invalid-filter"),
            ("limit=0", 422, "invalid-filter"),
            ("cursor=%%%", 400, "invalid-cursor"),
            ("purpse=test-alleen-de-linde", 400, "invalid-query"),
        ] {
            let r = gw
                .client("fg-operator")
                .get(&format!("/v1/audit/disclosures?{query}"))
                .await;
            assert_eq!(r.status, status, "{query}: {}", r.text());
            assert_eq!(r.code(), code, "{query}");
            assert!(!r.text().contains("123456789"), "{}", r.text());
        }

        // Paging: pages of two add up to the whole, in order, without repeats.
        let whole = disclosures(&gw, "fg-operator", "").await;
        let key = |e: &Value| (e["log_id"].to_string(), e["seq"].as_u64().unwrap());
        let whole_keys: Vec<_> = whole["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(key)
            .collect();
        let mut paged = Vec::new();
        let mut cursor = String::new();
        loop {
            let r = gw
                .client("fg-operator")
                .get(&format!("/v1/audit/disclosures?limit=2&cursor={cursor}"))
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
            let v = r.json();
            assert!(v["entries"].as_array().unwrap().len() <= 2);
            paged.extend(v["entries"].as_array().unwrap().iter().map(key));
            match v["next_cursor"].as_str() {
                Some(c) => cursor = c.to_owned(),
                None => break,
            }
        }
        // Each page asked is itself logged, so the log grew while paging: compare the common prefix.
        assert!(paged.len() >= whole_keys.len());
        assert_eq!(&paged[..whole_keys.len()], &whole_keys[..]);
        let unique: BTreeSet<_> = paged.iter().collect();
        assert_eq!(unique.len(), paged.len(), "a page repeated an entry");

        // CSV for spreadsheets.
        let r = gw
            .client("fg-obs-de-linde")
            .request(
                "GET",
                "/v1/audit/disclosures?limit=1000",
                &[("accept", "text/csv")],
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        let csv = r.text();
        let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert!(
            lines[0].starts_with("log_id,seq,time,event,"),
            "{}",
            lines[0]
        );
        assert!(csv.contains("test-alleen-de-linde"));
        assert!(!csv.contains("test-alleen-lyceum-zuid"));
        let json_count = disclosures(&gw, "fg-obs-de-linde", "").await["entries"]
            .as_array()
            .unwrap()
            .len();
        // The JSON query came after the CSV one and also sees the CSV query's own log entry.
        assert_eq!(lines.len() - 1 + 1, json_count, "{csv}");

        // The watchers are watched: every query above is in the log, the pupil only as pseudonym.
        let queries = disclosures(&gw, "fg-operator", "event=audit-query").await;
        let qs = queries["entries"].as_array().unwrap();
        let by = |partner: &str| qs.iter().filter(|e| e["partner"] == partner).count();
        assert!(by("fg-obs-de-linde") >= 4, "{queries}");
        assert!(by("fg-lyceum-zuid") >= 1, "{queries}");
        let pupil_query = qs
            .iter()
            .find(|e| e["partner"] == "fg-lyceum-zuid" && e["subject"] == pseudonym.as_str())
            .unwrap_or_else(|| panic!("the lyceum's pupil query is not logged: {queries}"));
        assert!(pupil_query["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("subject={pseudonym}")));
        let r = gw.client("lyceum-zuid").get("/v1/audit/disclosures").await;
        assert_eq!(r.status, 403);
        let refusals = disclosures(
            &gw,
            "fg-operator",
            "event=audit-query&outcome=not-a-privacy-officer",
        )
        .await;
        assert!(
            refusals["entries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["partner"] == "lyceum-zuid"),
            "{refusals}"
        );
        // The raw number is nowhere: not in the log, the database or the traces.
        let (ok, out) = {
            let mut gw = gw;
            gw.stop();
            let everything = gw.database_bytes();
            assert_absent(&everything, &[PUPIL_P4.to_owned()], "the database");
            assert_absent(
                gw.stderr().as_bytes(),
                &[PUPIL_P4.to_owned()],
                "the tracing output",
            );
            gw.audit_verify()
        };
        assert!(ok, "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_report_lists_consents_and_refusals_in_scope_as_json_and_printable_html() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let (consent_id, _) = consent(
            &gw,
            "obs-de-linde",
            PUPIL_P4,
            "vroegsignalering",
            "wijkteam-noord",
        )
        .await;
        refused(&gw, "obs-de-linde", "P4", "test-rapport-doel").await;

        let fg = gw.client("fg-obs-de-linde");
        let r = fg.get(&format!("/v1/audit/subjects/{PUPIL_P4}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let report = r.json();
        assert_eq!(report["scope"], "obs-de-linde");
        assert!(
            !r.text().contains(PUPIL_P4),
            "the report names the pupil by pseudonym only: {report}"
        );
        assert!(report["subject_ref"]
            .as_str()
            .is_some_and(|s| !s.is_empty()));
        let consents = report["consents"].as_array().unwrap();
        assert_eq!(consents.len(), 1, "{report}");
        assert_eq!(consents[0]["consent_id"], consent_id.as_str());
        assert_eq!(consents[0]["recipient"], "wijkteam-noord");
        assert!(report["refused"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["purpose"] == "test-rapport-doel" && r["outcome"] == "no-policy"));

        let r = fg
            .request(
                "GET",
                &format!("/v1/audit/subjects/{PUPIL_P4}"),
                &[("accept", "text/html,application/xhtml+xml")],
                None,
            )
            .await;
        assert_eq!(r.status, 200);
        assert!(r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let page = r.text();
        assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
        assert!(page.contains("Inzageverzoek"), "{page}");
        assert!(page.contains(&consent_id), "{page}");
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("@media print"));

        // Another school's FG gets an empty report for the same pupil.
        let r = gw
            .client("fg-lyceum-zuid")
            .get(&format!("/v1/audit/subjects/{PUPIL_P4}"))
            .await;
        assert_eq!(r.status, 200);
        let other = r.json();
        assert_eq!(other["consents"], json!([]));
        assert_eq!(other["refused"], json!([]));
        assert_eq!(other["disclosures"], json!([]));

        let r = fg.get("/v1/audit/subjects/123456789").await;
        assert_eq!(r.status, 422);
        assert_eq!(r.code(), "invalid-subject-id");
    }
}

/// Needs the policy module (P4 and P5 delivered): the art. 15 report lists both exchanges about the pupil.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn art15_report_for_the_pupil_of_p4_and_p5_lists_both_exchanges() {
    let canaries = canaries();
    for backend in backends() {
        let gw = Gateway::start(backend);
        let (p4_consent, _) = consent(
            &gw,
            "obs-de-linde",
            PUPIL_P4,
            "vroegsignalering",
            "wijkteam-noord",
        )
        .await;
        // The P5 carries no birth date: the wijkteam registers the pupil's with its consent (without one a parent's
        // consent no longer counts: the age rules fail closed).
        let mut body = consent_body(PUPIL_P4, "afstemming-ondersteuning", "obs-de-linde");
        body["subject_birth_date"] = json!("2016-04-22");
        let r = gw
            .client("wijkteam-noord")
            .post_json("/v1/consents", &body)
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let p5_consent = r.json()["consent_id"].as_str().unwrap().to_owned();
        let r = gw
            .client("obs-de-linde")
            .post("/v1/messages", &example("P4"))
            .await;
        assert_eq!(r.status, 201, "P4: {}", r.text());
        let p4_id = r.json()["message_id"].as_str().unwrap().to_owned();
        let r = gw
            .client("wijkteam-noord")
            .post("/v1/messages", &reply("P5", &p4_id))
            .await;
        assert_eq!(r.status, 201, "P5: {}", r.text());

        for fg in ["fg-obs-de-linde", "fg-operator"] {
            let r = gw
                .client(fg)
                .get(&format!("/v1/audit/subjects/{PUPIL_P4}"))
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
            assert_absent(&r.body, &canaries, "the art. 15 report");
            let report = r.json();
            let ds = report["disclosures"].as_array().unwrap();
            assert_eq!(ds.len(), 2, "{fg}: {report}");
            let p4 = ds
                .iter()
                .find(|d| d["purpose"] == "vroegsignalering")
                .unwrap_or_else(|| panic!("no P4 disclosure: {report}"));
            assert_eq!(p4["recipient"], "wijkteam-noord");
            assert_eq!(p4["recipient_role"], "wijkteam");
            assert_eq!(p4["sender"], "obs-de-linde");
            let p5 = ds
                .iter()
                .find(|d| d["purpose"] == "afstemming-ondersteuning")
                .unwrap_or_else(|| panic!("no P5 disclosure: {report}"));
            assert_eq!(p5["recipient"], "obs-de-linde");
            assert_eq!(p5["recipient_role"], "school-po");
            assert_eq!(p5["sender"], "wijkteam-noord");
            for (d, consent_id) in [(p4, &p4_consent), (p5, &p5_consent)] {
                assert!(!d["legal_basis"].as_str().unwrap().is_empty(), "{d}");
                assert!(!d["time"].as_str().unwrap().is_empty(), "{d}");
                assert!(!d["fields_delivered"].as_array().unwrap().is_empty(), "{d}");
                assert!(
                    d["consents_used"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|c| c == consent_id.as_str()),
                    "{d}"
                );
            }
            let recipients: BTreeSet<_> = report["recipients"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["organisation"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(
                recipients,
                BTreeSet::from(["wijkteam-noord".to_owned(), "obs-de-linde".to_owned()])
            );
        }
        let r = gw
            .client("fg-obs-de-linde")
            .request(
                "GET",
                &format!("/v1/audit/subjects/{PUPIL_P4}"),
                &[("accept", "text/html")],
                None,
            )
            .await;
        let page = r.text();
        assert!(
            page.contains("Wijkteam Noord") && page.contains("OBS De Linde"),
            "{page}"
        );
        assert_absent(page.as_bytes(), &canaries, "the printable report");
        let r = gw
            .client("fg-lyceum-zuid")
            .get(&format!("/v1/audit/subjects/{PUPIL_P4}"))
            .await;
        assert_eq!(r.json()["disclosures"], json!([]));
    }
}

// ---------------------------------------------------------------- retention

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_expired_payloads_with_a_log_entry_and_the_log_still_verifies() {
    use ketenpoort::audit::entry::{EventKind, LogEntry};
    use ketenpoort::store::{EntryFilter, Mutation, NewMessage};
    for backend in backends() {
        let (_dir, _pg, config) = in_process_config(backend, "retention_sweep_secs = 1");
        let running = ketenpoort::http::start(config).await.unwrap();
        let gw = running.gateway.clone();
        let now = ketenpoort::audit::writer::now_ms();
        let mut ids = Vec::new();
        for (name, expires_ms) in [("expired", now - 1000), ("kept", now + 86_400_000)] {
            let id = format!("{name}-{}", unique(""));
            let mut entry = LogEntry::new(EventKind::MessageDisclosed);
            entry.partner = "obs-de-linde".into();
            entry.organisation = "obs-de-linde".into();
            entry.message_id = Some(id.clone());
            let sealed = gw.keys.seal(b"{}", id.as_bytes()).unwrap();
            gw.writer
                .append(
                    vec![entry],
                    vec![Mutation::InsertMessage(Box::new(NewMessage {
                        id: id.clone(),
                        sender: "obs-de-linde".into(),
                        receiver: "lyceum-zuid".into(),
                        message_type: "onderwijskundig-rapport".into(),
                        purpose: "overstap-po-vo".into(),
                        subject: None,
                        sealed,
                        consent_paths: "[]".into(),
                        created_ms: now - 2000,
                        expires_ms,
                        log_id: String::new(),
                        seq: 0,
                        leaf_hash: [0; 32],
                    }))],
                )
                .await
                .unwrap();
            ids.push(id);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while gw.store.message(&ids[0]).await.unwrap().is_some() {
            assert!(
                Instant::now() < deadline,
                "the expired payload was never purged"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            gw.store.message(&ids[1]).await.unwrap().is_some(),
            "a payload within its retention was purged"
        );
        let purges = gw
            .store
            .query_entries(&EntryFilter {
                event: Some("message-expired".into()),
                limit: 100,
                ..EntryFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(purges.len(), 1, "one expiry (never fetched), logged once");
        let purge = LogEntry::decode(&purges[0].bytes).unwrap();
        assert_eq!(purge.message_id.as_deref(), Some(ids[0].as_str()));
        assert_eq!(purge.receiver.as_deref(), Some("lyceum-zuid"));

        let store = gw.store.clone();
        let key = gw.signing_key.public_key();
        drop(gw);
        running.shutdown().await;
        let report = ketenpoort::audit::verify::verify_all(&store, &[key])
            .await
            .unwrap();
        assert!(report.ok(), "{report}");
        assert!(report.entries() >= 4, "{report}");
        drop(store);
    }
}

/// Configuration for a gateway run inside the test process (to reach the store and writer directly).
fn in_process_config(
    backend: Backend,
    log_settings: &str,
) -> (TempDir, Option<PgDatabase>, ketenpoort::config::Config) {
    let dir = TempDir::new("kp-inproc-");
    let mut pg = None;
    let database_url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("k.db").display()),
        Backend::Postgres => {
            let db = PgDatabase::create();
            let u = db.url();
            pg = Some(db);
            u
        }
    };
    let certs = certs_dir();
    let config = ketenpoort::config::Config::from_toml(
        &format!(
            r#"
[server]
listen = "127.0.0.1:0"
ops_listen = "127.0.0.1:0"
[tls]
ca = "{certs}/ca.crt"
cert = "{certs}/gateway.crt"
key = "{certs}/gateway.key"
partners = "{certs}/partners.toml"
[storage]
database_url = "{database_url}"
key_dir = "{keys}"
[policies]
dir = "{policies}"
[log]
{log_settings}
"#,
            certs = certs.display(),
            keys = dir.path().join("keys").display(),
            policies = root().join("policies").display(),
        ),
        dir.path(),
    )
    .unwrap();
    (dir, pg, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_verifies_while_it_is_being_written() {
    use ketenpoort::audit::entry::{EventKind, LogEntry};
    for backend in backends() {
        let (_dir, _pg, config) = in_process_config(backend, "");
        let running = ketenpoort::http::start(config).await.unwrap();
        let gw = running.gateway.clone();
        let key = gw.signing_key.public_key();
        let writer = gw.writer.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let appender = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut e = LogEntry::new(EventKind::AuditQuery);
                    e.partner = "fg-operator".into();
                    e.organisation = "operator".into();
                    e.detail = Some(format!("busy {n}"));
                    writer.append(vec![e.clone(), e], Vec::new()).await.unwrap();
                    n += 2;
                }
                n
            })
        };
        let mut checked = 0;
        while checked < 20 {
            let report = ketenpoort::audit::verify::verify_all(&gw.store, &[key])
                .await
                .unwrap();
            assert!(report.ok(), "a live log failed verification:\n{report}");
            checked += 1;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let appended = appender.await.unwrap();
        assert!(appended > 0);
        let store = gw.store.clone();
        drop(gw);
        running.shutdown().await;
        let report = ketenpoort::audit::verify::verify_all(&store, &[key])
            .await
            .unwrap();
        assert!(report.ok(), "{report}");
        assert!(report.entries() > appended, "{report}");
    }
}

// ---------------------------------------------------------------- entry encodings

/// The sender's 201 keeps `withheld: [{field, reason}]`, the stored entry is version 2 with the reasons grouped,
/// and both (and the privacy officer's view of the entry) name the same fields with the same reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disclosure_is_stored_as_a_version_2_entry_and_the_201_keeps_field_and_reason_per_withheld_field(
) {
    use ketenpoort::audit::entry::LogEntry;
    for backend in backends() {
        let mut gw = Gateway::start(backend);
        let r = gw
            .client("obs-de-linde")
            .post("/v1/messages", &example("P1"))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let sent = r.json();
        let withheld: Vec<(String, String)> = sent["withheld"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                let m = w.as_object().unwrap();
                assert_eq!(m.len(), 2, "{w}");
                (
                    m["field"].as_str().unwrap().to_owned(),
                    m["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert!(withheld.len() >= 2, "{sent}");
        let seq = sent["disclosure"]["seq"].as_u64().unwrap();
        let shown = disclosures(&gw, "fg-operator", "").await;
        let entry = shown["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["seq"].as_u64() == Some(seq))
            .unwrap_or_else(|| panic!("disclosure {seq} not shown: {shown}"))
            .clone();
        assert_eq!(
            entry["withheld"], sent["withheld"],
            "the privacy officer's view"
        );
        assert_eq!(entry["delivered"], sent["delivered"]);
        gw.stop();

        let stored = gw
            .log_entries()
            .await
            .into_iter()
            .find(|(e, _)| e.seq == seq)
            .unwrap();
        let text = String::from_utf8(stored.0.bytes.clone()).unwrap();
        assert!(text.starts_with(r#"{"v":2,"#), "{text}");
        assert!(text.contains(r#""withheld":[{"reason":"#), "{text}");
        // The fields of a run of the same reason share one group: the two youth-care fields, one reason, once.
        let jh_reason = &withheld
            .iter()
            .find(|(f, _)| f == "jeugdhulp.inhoud")
            .expect("jeugdhulp withheld")
            .1;
        assert_eq!(
            text.matches(&serde_json::to_string(jh_reason).unwrap())
                .count(),
            1,
            "a reason is stored once per group: {text}"
        );
        let decoded: LogEntry = stored.1;
        let decoded_withheld: Vec<(String, String)> = decoded
            .withheld
            .iter()
            .map(|w| (w.field.clone(), w.reason.clone()))
            .collect();
        assert_eq!(decoded_withheld, withheld);
        assert_eq!(
            serde_json::to_value(&decoded.delivered).unwrap(),
            sent["delivered"]
        );
        assert_eq!(LogEntry::decode(&decoded.encode()).unwrap(), decoded);
        assert_eq!(decoded.encode(), stored.0.bytes, "canonical");
        assert_verifies(&gw, "version 2 entries");
    }
}

/// A log written as version 1 before an upgrade and as version 2 after it verifies as stored, across several
/// read pages; a gap at or next to a page boundary is named at its entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_of_version_1_then_version_2_entries_verifies_and_a_gap_at_a_page_boundary_is_named()
{
    use ketenpoort::audit::entry::{EventKind, LogEntry, WithheldField};
    /// Entries per version: more than two of the verifier's read pages (8,192 entries) each.
    const PER_VERSION: u64 = 17_000;
    for backend in backends() {
        let (_dir, _pg, config) = in_process_config(backend, "batch_max = 1000");
        let url = config.storage.database_url.clone();
        let running = ketenpoort::http::start(config).await.unwrap();
        let gw = running.gateway.clone();
        let key = gw.signing_key.public_key();
        let entry = |v: u32, i: u64| {
            let mut e = LogEntry::new(EventKind::MessageDisclosed);
            e.v = v;
            e.partner = "obs-de-linde".into();
            e.organisation = "obs-de-linde".into();
            e.message_id = Some(format!("m-{v}-{i}"));
            e.delivered = ["leerling.achternaam", "leerling.voornamen", "school.brin"]
                .map(String::from)
                .to_vec();
            let w = |field: &str, reason: &str| WithheldField {
                field: field.into(),
                reason: reason.into(),
            };
            e.withheld = vec![
                w("diagnoses[0].omschrijving", "deny: alleen de categorie"),
                w("diagnoses[0].datum", "deny: alleen de categorie"),
                w("bijlagen[0].inhoud", "consent-missing"),
            ];
            e
        };
        for v in [1u32, 2] {
            let mut i = 0;
            while i < PER_VERSION {
                let jobs: Vec<_> = (i..(i + 500).min(PER_VERSION))
                    .map(|i| entry(v, i))
                    .collect();
                i += jobs.len() as u64;
                gw.writer.append(jobs, Vec::new()).await.unwrap();
            }
        }
        drop(gw);
        running.shutdown().await;

        let store = ketenpoort::store::open(&url).await.unwrap();
        let log_id = store.log_ids().await.unwrap().remove(0);
        let report = ketenpoort::audit::verify::verify_all(&store, &[key])
            .await
            .unwrap();
        assert!(report.ok(), "{report}");
        let size = report.entries();
        assert!(size >= 2 * PER_VERSION, "{report}");
        // The bytes are as each version wrote them.
        let rows = store.entries(&log_id, 0, size as usize).await.unwrap();
        // (The gateway's own entries at start-up are version 2.)
        let first_v1 = rows
            .iter()
            .position(|r| r.bytes.starts_with(br#"{"v":1,"#))
            .unwrap();
        let first_v2 = (first_v1
            + rows[first_v1..]
                .iter()
                .position(|r| r.bytes.starts_with(br#"{"v":2,"#))
                .unwrap()) as u64;
        assert!(first_v2 >= PER_VERSION, "{first_v2}");
        let old = &rows[(first_v2 - 1) as usize];
        assert!(old.bytes.starts_with(br#"{"v":1,"#));
        let text = std::str::from_utf8(&old.bytes).unwrap();
        assert!(
            text.contains(r#""withheld":[{"field":"diagnoses[0].omschrijving","reason":"deny: alleen de categorie"},"#),
            "{text}"
        );
        let (old_decoded, new_decoded) = (
            LogEntry::decode(&old.bytes).unwrap(),
            LogEntry::decode(&rows[first_v2 as usize].bytes).unwrap(),
        );
        assert_eq!(old_decoded.withheld, new_decoded.withheld);
        assert_eq!(old_decoded.delivered, new_decoded.delivered);
        assert_eq!(
            old_decoded.encode(),
            old.bytes,
            "an old entry re-encodes to its stored bytes"
        );
        drop(rows);
        drop(store);

        // Gaps: the last entry of a page, the first of the next, the last version-1 entry, the first version-2 one.
        let page = ketenpoort::audit::verify::PAGE as u64;
        assert!(2 * page < size, "{size} entries do not span three pages");
        for seq in [page - 1, page, 2 * page, first_v2 - 1, first_v2] {
            exec_sql(
                backend,
                &url,
                &format!(
                    "CREATE TABLE kept AS SELECT * FROM log_entries WHERE seq = {seq}; DELETE FROM log_entries WHERE seq = {seq}"
                ),
            )
            .await;
            let store = ketenpoort::store::open(&url).await.unwrap();
            let report = ketenpoort::audit::verify::verify_all(&store, &[key])
                .await
                .unwrap();
            drop(store);
            assert_eq!(
                report.logs[0].first_bad,
                Some((
                    seq,
                    format!("entry missing: next stored entry is {}", seq + 1)
                )),
                "{report}"
            );
            exec_sql(
                backend,
                &url,
                "INSERT INTO log_entries SELECT * FROM kept; DROP TABLE kept",
            )
            .await;
        }
        // An edited version-1 entry is caught like any other.
        let edit = first_v2 - 2;
        let sql = match backend {
            Backend::Sqlite => format!(
                "UPDATE log_entries SET entry = CAST(replace(CAST(entry AS TEXT), 'consent-missing', 'consent-given') AS BLOB) WHERE seq = {edit}"
            ),
            Backend::Postgres => format!(
                "UPDATE log_entries SET entry = convert_to(replace(convert_from(entry, 'UTF8'), 'consent-missing', 'consent-given'), 'UTF8') WHERE seq = {edit}"
            ),
        };
        exec_sql(backend, &url, &sql).await;
        let store = ketenpoort::store::open(&url).await.unwrap();
        let report = ketenpoort::audit::verify::verify_all(&store, &[key])
            .await
            .unwrap();
        let (seq, why) = report.logs[0].first_bad.clone().expect("an edit is caught");
        assert_eq!(seq, edit, "{report}");
        assert!(why.contains("altered"), "{report}");
    }
}

/// The art. 15 report (AVG art. 15(1), DOMAIN.md *What a privacy officer needs*) of a real P1 disclosure, as JSON
/// and as the printable page: the recipient with its retention period, the source, the purpose in words, the data
/// by category and Dutch label, the rights to rectification, erasure, restriction and objection and the right to
/// complain to the Autoriteit Persoonsgegevens; never the pupil number or a value of the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_art_15_report_names_recipients_sources_data_retention_rights_and_the_ap_without_values(
) {
    let values = [
        "CANARY15-ACHTERNAAM",
        "CANARY15-TOETSSCORE",
        "CANARY15-SCHOOLADVIES",
    ];
    let mut needles = canaries();
    needles.extend(values.map(String::from));
    for backend in backends() {
        let gw = Gateway::start(backend);
        let mut p1 = example_json("P1");
        p1["data"]["leerling"]["achternaam"] = json!(values[0]);
        p1["data"]["toetsen"][0]["score"] = json!(values[1]);
        p1["data"]["advies"]["schooladvies"] = json!(values[2]);
        let pgn = p1["subject"]["pgn"].as_str().unwrap().to_owned();
        let r = gw
            .client("obs-de-linde")
            .post_json("/v1/messages", &p1)
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let delivered = r.json()["delivered"].clone();
        for path in [
            "leerling.achternaam",
            "toetsen[0].score",
            "advies.schooladvies",
        ] {
            assert!(
                delivered.as_array().unwrap().iter().any(|d| d == path),
                "{path} is delivered, so the report must name it: {delivered}"
            );
        }

        let fg = gw.client("fg-obs-de-linde");
        let r = fg.get(&format!("/v1/audit/subjects/{pgn}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_absent(r.text().as_bytes(), &needles, "the art. 15 report (JSON)");
        assert!(
            !r.text().contains(&pgn),
            "the pupil number in the JSON report"
        );
        let report = r.json();
        let recipient = &report["recipients"][0];
        assert_eq!(recipient["organisation"], "lyceum-zuid", "{report}");
        assert!(
            recipient["retention"][0]["text"]
                .as_str()
                .unwrap()
                .starts_with("De vo-school bewaart het rapport"),
            "{report}"
        );
        let categories: Vec<&str> = recipient["categories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        for c in ["ADM", "SCH", "TOETS", "ADV"] {
            assert!(categories.contains(&c), "{c}: {categories:?}");
        }
        assert!(
            !categories.contains(&"JH"),
            "P1 withholds JH: {categories:?}"
        );
        assert_eq!(
            report["sources"],
            json!([{"organisation": "obs-de-linde", "name": "OBS De Linde", "role": "school-po", "disclosures": 1}])
        );
        let d = &report["disclosures"][0];
        assert_eq!(
            d["flow_name"], "Onderwijskundig rapport bij overstap po → vo",
            "{d}"
        );
        let adm = &d["delivered_by_category"][0];
        assert_eq!(adm["category"], "ADM", "{d}");
        assert_eq!(adm["name"], "Administratieve gegevens");
        assert_eq!(
            adm["fields"][0],
            json!({"path": "leerling.achternaam", "label": "Achternaam leerling", "count": 1})
        );
        let articles: Vec<&str> = report["rights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["article"].as_str().unwrap())
            .collect();
        for a in ["AVG art. 16", "AVG art. 17", "AVG art. 18", "AVG art. 21"] {
            assert!(articles.contains(&a), "{a}: {articles:?}");
        }
        assert_eq!(report["complaint"]["name"], "Autoriteit Persoonsgegevens");
        assert_eq!(
            report["complaint"]["url"],
            "https://autoriteitpersoonsgegevens.nl"
        );

        let r = fg
            .request(
                "GET",
                &format!("/v1/audit/subjects/{pgn}"),
                &[("accept", "text/html")],
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.text();
        assert_absent(page.as_bytes(), &needles, "the printable art. 15 report");
        assert!(
            !page.contains(&pgn),
            "the pupil number on the printable report"
        );
        for shown in [
            // Recipient, retention, source, purpose in words.
            "Lyceum Zuid",
            "De vo-school bewaart het rapport in het leerlingdossier",
            "Herkomst van de gegevens",
            "<td>OBS De Linde</td>",
            "Onderwijskundig rapport bij overstap po → vo",
            // The data by category and label, every list open for printing.
            "<span>Administratieve gegevens: 14</span>",
            "<span>Toetsresultaten: 3</span>",
            "<details open>",
            "Achternaam leerling",
            "Uitslag van een toets",
            "Schooladvies",
            // The rights and the AP.
            "Uw rechten",
            "(rectificatie)",
            "(wissing)",
            "Beperking van het gebruik",
            "Bezwaar",
            "Autoriteit Persoonsgegevens",
            "href=\"https://autoriteitpersoonsgegevens.nl\"",
            "@media print",
        ] {
            assert!(page.contains(shown), "'{shown}' missing:\n{page}");
        }
        // Labels for parents, not field paths.
        for path in ["leerling.", "toetsen[", "<code>advies"] {
            assert!(!page.contains(path), "'{path}' on the report:\n{page}");
        }
    }
}
