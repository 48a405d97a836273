//! What the fuzz targets check, shared by `fuzz/fuzz_targets/*` (cargo-fuzz, nightly) and
//! `tests/fuzz_corpus.rs` (corpus replay and a bounded random-mutation run on stable, in `cargo test`).
//! Each function takes arbitrary bytes and panics only on a bug.
#![allow(dead_code)]

use ketenpoort::audit::checkpoint::{verify_checkpoint, SignedCheckpoint};
use ketenpoort::audit::entry::LogEntry;
use ketenpoort::audit::merkle::{
    consistency_proof, consistency_proof_ranges, inclusion_proof, inclusion_proof_ranges,
    leaf_hash, root_of, subtrees_of, verify_consistency, verify_inclusion, Hash, LeafRuns,
    ProofPlan,
};
use ketenpoort::domain::{ConsentRecord, GivenBy, Partner, Role, SubjectId, SubjectKind};
use ketenpoort::policy::{
    check_sources, decide, explain, strip_paths, DecisionRequest, FieldAction, PolicySet,
};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::OnceLock;

/// The envelope stage: any panic is a bug; every refusal is a 400 or 422 with a stable code.
pub fn envelope(data: &[u8]) {
    match ketenpoort::envelope::parse(data, &Default::default()) {
        Ok(envelope) => {
            assert!(envelope.data.is_object());
            let reencoded =
                serde_json::to_vec(&envelope.data).expect("a data tree always serialises");
            let reparsed = ketenpoort::envelope::parse_strict_json(&reencoded, 32)
                .expect("accepted data parses again on its own");
            assert!(reparsed.is_object());
            assert!(
                envelope.data.equals(&reparsed),
                "the data tree written out and read again is the same tree"
            );
        }
        Err(err) => {
            assert!(err.status() == 400 || err.status() == 422);
            assert!(!err.code().as_str().is_empty());
        }
    }
    let _ = ketenpoort::envelope::parse_strict_json(data, 32);
}

/// Log entry decoding (what `audit verify` and the privacy officer's views read back): whatever decodes
/// re-encodes to a canonical form that decodes to the same entry and encodes identically again.
pub fn log_entry(data: &[u8]) {
    if let Ok(entry) = LogEntry::decode(data) {
        let bytes = entry.encode();
        let again = LogEntry::decode(&bytes).expect("an encoded entry decodes");
        assert_eq!(again, entry);
        assert_eq!(again.encode(), bytes, "the canonical encoding is stable");
        let _ = entry.event();
        let _ = leaf_hash(&bytes);
    }
}

/// Merkle proof verification: arbitrary sizes, indices and hashes are refused or accepted, never panic;
/// proofs generated for a tree built from the input always verify.
pub fn proof_verify(data: &[u8]) {
    if data.len() < 16 {
        return;
    }
    let (head, rest) = data.split_at(16);
    let a = u64::from_le_bytes(head[..8].try_into().unwrap());
    let b = u64::from_le_bytes(head[8..].try_into().unwrap());
    let hashes: Vec<Hash> = rest
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap())
        .collect();

    let _ = inclusion_proof_ranges(a, b);
    let _ = consistency_proof_ranges(a, b);
    if let Some(parts) = subtrees_of(a..b) {
        // A node's parts cover it exactly, left to right, each a perfect aligned subtree.
        let mut at = a;
        for t in &parts {
            assert_eq!(t.leaves().start, at);
            at = t.leaves().end;
        }
        assert_eq!(at, b);
    }
    if hashes.len() >= 2 {
        let (x, y, proof) = (&hashes[0], &hashes[1], &hashes[2..]);
        for (i, n) in [(a, b), (a % 97, b % 97), (a & 0xff, b & 0xfff)] {
            let _ = verify_inclusion(x, i, n, proof, y);
            let _ = verify_consistency(i, n, x, y, proof);
        }
    }
    let n = hashes.len() as u64;
    if n > 0 {
        let root = root_of(&hashes);
        let i = a % n;
        let proof = inclusion_proof(&hashes, i).expect("index below size");
        verify_inclusion(&hashes[i as usize], i, n, &proof, &root).expect("honest inclusion");
        let m = 1 + b % n;
        let proof = consistency_proof(&hashes, m).expect("0 < m <= n");
        let old_root = root_of(&hashes[..m as usize]);
        verify_consistency(m, n, &old_root, &root, &proof).expect("honest consistency");
        // The same proofs put together by a plan from the leaves (no stored subtrees) are identical.
        let mut ranges = inclusion_proof_ranges(i, n).expect("index below size");
        ranges.push(0..n);
        let plan = ProofPlan::new(&ranges).expect("proof ranges are tree nodes");
        let found = HashMap::new();
        let mut leaves = LeafRuns::new();
        for r in plan.leaf_reads(&found) {
            leaves.insert(r.start, hashes[r.start as usize..r.end as usize].to_vec());
        }
        let planned = plan.hashes(&found, &leaves).expect("every leaf read");
        assert_eq!(planned.last(), Some(&root));
        assert_eq!(&planned[..planned.len() - 1], &proof_for(&hashes, i)[..]);
        // A proof for another leaf or a changed root must not verify.
        let mut wrong = root;
        wrong[0] ^= 1;
        assert!(
            verify_inclusion(&hashes[i as usize], i, n, &proof_for(&hashes, i), &wrong).is_err()
        );
    }
}

fn proof_for(hashes: &[Hash], i: u64) -> Vec<Hash> {
    inclusion_proof(hashes, i).expect("index below size")
}

/// Checkpoint notes: any text is parsed or refused without panicking; what parses writes back unchanged.
pub fn checkpoint_note(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(sc) = SignedCheckpoint::from_note(text) {
        assert_eq!(sc.to_note(), text);
        assert_eq!(sc.signature.len(), 64);
        let _ = verify_checkpoint(&[0u8; 32], &sc);
        let _ = verify_checkpoint(&[9u8; 32], &sc);
    }
}

/// The shipped catalogue, beside which `policy_load` also loads its input.
const CATALOGUE: &str = include_str!("../../policies/catalogue.toml");

/// The policy loader: arbitrary text, alone or beside the shipped catalogue, loads or is refused with errors
/// that each name the file; never a panic. A set that loads hashes to 64 hex digits, explains every flow and its
/// check findings that are errors name a line.
pub fn policy_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for files in [
        vec![("fuzz.toml".to_owned(), text.to_owned())],
        vec![
            ("catalogue.toml".to_owned(), CATALOGUE.to_owned()),
            ("fuzz.toml".to_owned(), text.to_owned()),
        ],
    ] {
        match PolicySet::from_sources(&files) {
            Ok(set) => {
                assert_eq!(set.hash().len(), 64);
                for flow in set.flows() {
                    let (from, to) = (flow.senders[0], flow.receivers[0]);
                    assert!(explain(&set, from, to, &flow.purpose).is_ok());
                }
                let _ = explain(&set, Role::SchoolPo, Role::Wijkteam, "x");
                assert!(check_sources(&files)
                    .iter()
                    .all(|f| !f.is_error() || f.line.is_some()));
            }
            Err(e) => {
                for err in e.errors() {
                    assert!(err.location().0.is_some(), "error without a file: {err}");
                }
                assert!(!e.to_string().is_empty());
            }
        }
    }
}

/// The shipped policies (`policies/` of the repository), loaded once.
fn shipped_policies() -> &'static PolicySet {
    static SET: OnceLock<PolicySet> = OnceLock::new();
    SET.get_or_init(|| {
        // CARGO_MANIFEST_DIR is the repository for `cargo test` and `fuzz/` for cargo-fuzz.
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = [here.join("policies"), here.join("../policies")]
            .into_iter()
            .find(|d| d.join("catalogue.toml").is_file())
            .expect("policies/ next to the crate");
        PolicySet::load_dir(&dir).expect("the shipped policies load")
    })
}

fn fuzz_partner(id: &str, role: Role) -> Partner {
    Partner {
        id: id.to_owned(),
        name: id.to_owned(),
        role,
        oin: "00000001800000000001".to_owned(),
        organisation: None,
    }
}

/// The field filter with the shipped policies: arbitrary JSON (an envelope's `data`, or the value itself) for
/// every flow, with and without a consent for everything: never a panic; what is delivered is catalogued, named
/// by the flow with a delivering action, and carries the consent where the flow or rule needs one.
pub fn field_filter(bytes: &[u8]) {
    field_filter_delivered(bytes);
}

/// `field_filter`, returning how many decisions (flow × consent set) delivered at least one field.
pub fn field_filter_delivered(bytes: &[u8]) -> usize {
    let Ok(mut data) = serde_json::from_slice::<Value>(bytes) else {
        return 0;
    };
    let mut delivering = 0;
    if let Some(inner) = data.get("data").cloned() {
        data = inner;
    }
    let value = data;
    let data = ketenpoort::data::Node::from_value(&value);
    let policies = shipped_policies();
    let today = time::Date::from_calendar_date(2026, time::Month::June, 1).unwrap();
    let subject = SubjectId::new(SubjectKind::Pgn, "628194821").unwrap();
    for flow in policies.flows() {
        let sender = fuzz_partner("leerplicht-gemeente", flow.senders[0]);
        let receiver = fuzz_partner("swv-vo-zuid", flow.receivers[0]);
        let all = ConsentRecord {
            consent_id: "c1".into(),
            registered_by: sender.id.clone(),
            purpose: flow.purpose.clone(),
            recipient: receiver.id.clone(),
            categories: vec!["*".into()],
            given_by: GivenBy::OuderEnJongere,
            subject_birth_date: None,
            valid_from: today,
            valid_until: today,
            withdrawn: false,
        };
        for consents in [vec![], vec![all]] {
            let req = DecisionRequest {
                sender: &sender,
                receiver: &receiver,
                message_type: &flow.message_type,
                purpose: &flow.purpose,
                subject: flow.aggregate.is_none().then_some(&subject),
                justification: Some("Fuzzing: noodzakelijk en niets lichters volstaat."),
                data: &data,
                consents: &consents,
                today,
                pseudonym_key: b"fuzz",
                sender_provides_jeugdhulp: false,
                subject_by_message: false,
            };
            let Ok(d) = decide(policies, &req) else {
                continue;
            };
            let cat = policies.catalogue(&flow.message_type).unwrap();
            // The delivered JSON itself, not only the report: every value in it is at a path reported delivered
            // (and so, by the checks below, catalogued and allowed by the flow), and every leaf of the input has
            // exactly one outcome.
            let unaccounted = d.unaccounted(&value);
            assert!(
                unaccounted.is_empty(),
                "flow {}, {} consents: {unaccounted:#?}",
                flow.id,
                consents.len()
            );
            if d.fields.iter().any(|f| f.action.is_delivered()) {
                delivering += 1;
            }
            for f in d.fields.iter().filter(|f| f.action.is_delivered()) {
                let path = f
                    .catalogue_path
                    .as_deref()
                    .expect("delivered fields are catalogued");
                assert!(cat.field(path).is_some());
                if flow.aggregate.is_none() {
                    let rule = flow.rule_for(path).expect("delivered fields are named");
                    assert!(rule.action.delivers());
                    if flow.consent || rule.action.needs_consent() {
                        assert_eq!(f.consent_id.as_deref(), Some("c1"));
                    }
                }
                if f.action == FieldAction::Delivered {
                    assert!(d.delivered.to_value().is_object());
                }
            }
            let mut delivered = d.delivered.to_value();
            // The text the walk wrote is compact JSON, exactly as serde_json would write the tree.
            assert_eq!(
                serde_json::to_string(&delivered).unwrap(),
                d.delivered.json()
            );
            let paths: Vec<String> = d.consent_dependent().into_iter().map(|(p, _)| p).collect();
            strip_paths(&mut delivered, &paths);
        }
    }
    delivering
}

/// A fuzz target's check.
pub type Check = fn(&[u8]);

/// Every target by its fuzz/ name.
pub const TARGETS: [(&str, Check); 6] = [
    ("envelope", envelope),
    ("log_entry", log_entry),
    ("proof_verify", proof_verify),
    ("checkpoint_note", checkpoint_note),
    ("policy_load", policy_load),
    ("field_filter", field_filter),
];
