//! The policy flows end to end over real mutual TLS: what a receiver actually finds in its inbox (P2), aggregates
//! under an agreement (P7), justification (P4, and S4 fields in P2), P3 screening, and the flow id and policy hash
//! on fetch and acknowledgement entries. The pure decisions are unit-tested in `src/policy/flow_tests.rs`; these
//! tests check that the gateway delivers and logs what those decisions say, and no payload value leaks.

mod common;

use common::*;
use ketenpoort::audit::entry::{EventKind, LogEntry};
use serde_json::{json, Value};

/// A value at a dotted path with `[i]` indices (`loopbaan[0].schooljaar`).
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path.split('.') {
        let (key, index) = match seg.split_once('[') {
            Some((k, rest)) => (
                k,
                Some(rest.trim_end_matches(']').parse::<usize>().unwrap()),
            ),
            None => (seg, None),
        };
        cur = cur.get(key)?;
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// `withheld` of a 201 response as (field, reason) pairs.
fn withheld(sent: &Value) -> Vec<(String, String)> {
    sent["withheld"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["field"].as_str().unwrap().to_owned(),
                w["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn entries(gw: &Gateway) -> Vec<LogEntry> {
    gw.log_entries().await.into_iter().map(|(_, e)| e).collect()
}

async fn entries_of(gw: &Gateway, event: EventKind) -> Vec<LogEntry> {
    entries(gw)
        .await
        .into_iter()
        .filter(|e| e.event() == event)
        .collect()
}

/// Every stored entry's canonical bytes, concatenated.
async fn entry_bytes(gw: &Gateway) -> Vec<u8> {
    gw.log_entries()
        .await
        .into_iter()
        .flat_map(|(s, _)| s.bytes)
        .collect()
}

/// The entry of `event` about `message_id` (exactly one).
async fn entry_about(gw: &Gateway, event: EventKind, message_id: &str) -> LogEntry {
    let mut found: Vec<LogEntry> = entries_of(gw, event)
        .await
        .into_iter()
        .filter(|e| e.message_id.as_deref() == Some(message_id))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{} entries about {message_id}: {found:?}",
        event.as_str()
    );
    found.remove(0)
}

fn running_policy_hash(gw: &Gateway) -> String {
    let (status, body) = gw.ops_get("/readyz");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["policy_hash"].as_str().unwrap().to_owned()
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Replaces `from` by `to` in a policy file, asserting `from` is there.
fn edit(file: &std::path::Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} holds no `{from}`", file.display());
    std::fs::write(file, text.replace(from, to)).unwrap();
}

fn consent(recipient: &str, purpose: &str, pgn: &str) -> Value {
    json!({
        "subject": {"pgn": pgn},
        "purpose": purpose,
        "recipient": recipient,
        "categories": ["*"],
        "given_by": "ouder",
        "evidence": "toestemmingsformulier 2026-11-01, leerlingdossier",
        "valid_from": "2026-01-01",
        "valid_until": "2030-07-31"
    })
}

/// The fields of the P2 example the SWV gets (policies/p2-tlv-aanvraag.toml), in catalogue order.
const P2_DELIVERED: &[&str] = &[
    "leerling.achternaam",
    "leerling.voornamen",
    "leerling.geslacht",
    "leerling.geboortedatum",
    "school.brin",
    "school.vestiging",
    "school.leerjaar",
    "loopbaan[0].schooljaar",
    "loopbaan[0].groep",
    "loopbaan[0].gebeurtenis",
    "toetsen[0].naam",
    "toetsen[0].datum",
    "toetsen[0].score",
    "sociaal_emotioneel.beschrijving",
    "sociaal_emotioneel.werkhouding",
    "ondersteuning.belemmeringen",
    "ondersteuning.arrangementen",
    "ondersteuning.opp",
    "verzuim.relatief_uren_12mnd",
];

const P2_PGN: &str = "252760189";
/// The P2 attachment's content (base64), withheld without consent.
const P2_ATTACHMENT: &str = "Q0FOQVJZLVBTWUNI";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2_tlv_request_reaches_the_swv_field_by_field_with_a_receiver_pseudonym() {
    let env = example_json("P2");
    let mut secrets = canaries();
    secrets.push(P2_ATTACHMENT.to_owned());
    for backend in backends() {
        let gw = Gateway::start(backend);
        let school = gw.client("lyceum-zuid");
        let swv = gw.client("swv-vo-zuid");

        let r = school.post("/v1/messages", &example("P2")).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let sent = r.json();
        assert_eq!(sent["flow"], "P2");
        assert_eq!(strings(&sent["delivered"]), P2_DELIVERED);
        let w = withheld(&sent);
        let fields: Vec<&str> = w.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "diagnoses[0].categorie",
                "diagnoses[0].omschrijving",
                "diagnoses[0].datum",
                "bijlagen[0].titel",
                "bijlagen[0].mediatype",
                "bijlagen[0].inhoud",
                "jeugdhulp.betrokken",
                "jeugdhulp.inhoud"
            ],
            "{w:?}"
        );
        for (field, reason) in &w {
            // No art. 9 exception for an SWV: diagnoses and attachments only with consent.
            let code = if field.starts_with("bijlagen") || field.starts_with("diagnoses") {
                "consent-missing: "
            } else {
                "deny: jeugdhulp valt onder het beroepsgeheim"
            };
            assert!(reason.starts_with(code), "{field}: {reason}");
        }
        assert_absent(&r.body, &secrets, "the 201 response");
        assert_absent(&r.body, &[P2_PGN.to_owned()], "the 201 response");

        let inbox = swv.inbox().await;
        assert_eq!(inbox.len(), 1, "{inbox:?}");
        let m = &inbox[0];
        assert_eq!(m["message_id"], sent["message_id"]);
        assert_eq!(m["from"], "lyceum-zuid");
        assert_eq!(m["type"], "onderwijskundig-rapport");
        assert_eq!(m["purpose"], "tlv-aanvraag");
        assert_eq!(m["actor"], env["actor"]);
        assert_eq!(m["justification"], env["justification"]);
        assert_eq!(m["redelivery"], false);
        assert_eq!(m["disclosure"], sent["disclosure"]);
        // The subject as the SWV's own pseudonym (`subject = "pseudonymise"`), never the PGN.
        let subject = m["subject"].as_object().expect("a subject object");
        assert_eq!(
            subject.keys().collect::<Vec<_>>(),
            ["pseudonym"],
            "{subject:?}"
        );
        let pseudonym = subject["pseudonym"].as_str().unwrap().to_owned();
        assert_eq!(pseudonym.len(), 64);
        assert!(pseudonym.bytes().all(|b| b.is_ascii_hexdigit()));
        // Field by field: each delivered path holds the value sent, unchanged.
        let data = &m["data"];
        for path in P2_DELIVERED {
            assert_eq!(
                at(data, path),
                at(&env["data"], path),
                "{path} as delivered"
            );
            assert!(at(data, path).is_some(), "{path} missing");
        }
        // And nothing else: no diagnosis, no attachment, no youth-care data.
        let mut expected = env["data"].clone();
        let obj = expected.as_object_mut().unwrap();
        obj.remove("diagnoses");
        obj.remove("bijlagen");
        obj.remove("jeugdhulp");
        assert_eq!(data, &expected);
        assert!(data.get("bijlagen").is_none() && data.get("jeugdhulp").is_none());

        // The disclosure entry: P2, the subject as the log's pseudonym (not the SWV's), fields by path.
        let id = sent["message_id"].as_str().unwrap();
        let disclosed = entry_about(&gw, EventKind::MessageDisclosed, id).await;
        assert_eq!(disclosed.flow_id.as_deref(), Some("P2"));
        assert_eq!(disclosed.receiver.as_deref(), Some("swv-vo-zuid"));
        assert_eq!(disclosed.delivered, P2_DELIVERED);
        assert_eq!(disclosed.withheld.len(), 8);
        let log_subject = disclosed.subject.clone().expect("a subject pseudonym");
        assert_ne!(log_subject, pseudonym);
        assert_ne!(log_subject, P2_PGN);

        // A school that does not belong to this SWV gets nothing through (DOMAIN.md: P2 only to its own SWV).
        let r = gw
            .client("obs-de-linde")
            .post("/v1/messages", &example("P2"))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (403, "receiver-not-responsible".to_owned()),
            "{}",
            r.text()
        );
        // A second request about the same pupil to the same SWV: the same pseudonym, so the SWV can join them.
        let r = school.post("/v1/messages", &example("P2")).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let inbox2 = swv.inbox().await;
        assert_eq!(inbox2.len(), 2);
        let second = inbox2
            .iter()
            .find(|m| m["message_id"] == r.json()["message_id"])
            .unwrap();
        assert_eq!(second["subject"]["pseudonym"].as_str(), Some(&*pseudonym));

        let all = serde_json::to_vec(&inbox2).unwrap();
        assert_absent(&all, &secrets, "the SWV inbox");
        assert_absent(&all, &[P2_PGN.to_owned()], "the SWV inbox");
        for m in &inbox2 {
            let id = m["message_id"].as_str().unwrap();
            let r = swv.post(&format!("/v1/inbox/{id}/ack"), b"").await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
        assert!(swv.inbox().await.is_empty());

        let db = gw.database_bytes();
        assert_absent(&db, &secrets, "the database");
        assert_absent(&db, &[P2_PGN.to_owned()], "the database");
        let log = entry_bytes(&gw).await;
        assert_absent(&log, &secrets, "the log entries");
        assert_absent(&log, &[P2_PGN.to_owned()], "the log entries");
        assert_absent(gw.stderr().as_bytes(), &secrets, "the tracing output");
        assert_absent(
            gw.stderr().as_bytes(),
            &[P2_PGN.to_owned()],
            "the tracing output",
        );
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
    }
}

/// S4 fields (the P2 diagnoses) go to an SWV only with the school's consent (no art. 9 exception for SWVs), and
/// then need a justification even where the flow makes it optional.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2_diagnoses_go_only_with_consent_and_then_need_a_justification() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let school = gw.client("lyceum-zuid");
        let mut env = example_json("P2");
        env.as_object_mut().unwrap().remove("justification");
        // No consent: the diagnoses are withheld, nothing of S4 goes, no justification needed.
        let r = school.post_json("/v1/messages", &env).await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert!(!strings(&r.json()["delivered"])
            .iter()
            .any(|f| f.starts_with("diagnoses")));
        // The school's own consent for DIAG (the pupil is 14: a parent decides, UAVG art. 5).
        let mut c = consent("swv-vo-zuid", "tlv-aanvraag", P2_PGN);
        c["categories"] = json!(["DIAG"]);
        let r = school.post_json("/v1/consents", &c).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let r = school.post_json("/v1/messages", &env).await;
        assert_eq!(r.status, 422, "{}", r.text());
        assert_eq!(r.code(), "justification-required");
        assert!(r.text().contains("S4"), "{}", r.text());
        let refused = entries_of(&gw, EventKind::MessageRefused).await;
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].outcome, "justification-required");
        assert_eq!(refused[0].flow_id.as_deref(), Some("P2"));

        let r = school.post("/v1/messages", &example("P2")).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let delivered = strings(&r.json()["delivered"]);
        for f in [
            "diagnoses[0].categorie",
            "diagnoses[0].omschrijving",
            "diagnoses[0].datum",
        ] {
            assert!(delivered.iter().any(|d| d == f), "{f}: {delivered:?}");
        }
        let id = r.json()["message_id"].as_str().unwrap().to_owned();
        let disclosed = entry_about(&gw, EventKind::MessageDisclosed, &id).await;
        assert_eq!(disclosed.consents.len(), 1, "{disclosed:?}");
        let inbox = gw.client("swv-vo-zuid").inbox().await;
        let m = inbox
            .iter()
            .find(|m| m["message_id"] == id.as_str())
            .unwrap();
        assert_eq!(
            m["data"]["diagnoses"],
            example_json("P2")["data"]["diagnoses"]
        );
    }
}

/// P1's rules that depend on a value (policies/README.md, `when`): the IQ goes with a PrO/LWOO advice and otherwise
/// only with consent; a diagnosis category of the closed list goes, another one only with consent. Through the
/// API, on both backends, with canaries for what must not go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p1_iq_and_diagnosis_categories_follow_the_advice_and_the_closed_list() {
    const PGN: &str = "628194821";
    for backend in backends() {
        let gw = Gateway::start(backend);
        let school = gw.client("obs-de-linde");
        let vo = gw.client("lyceum-zuid");
        let mut env = example_json("P1");
        env["data"]["diagnoses"] = json!([
            {"categorie": "dyslexie"},
            {"categorie": "CANARY-P1-CATEGORIE-BUITEN-LIJST"}
        ]);
        env["data"]["cognitief"]["iq_totaal"] = json!(7_331_977);
        env["data"]["thuissituatie"]["zorgpunt"] = json!("CANARY-P1-ZORGPUNT");
        // Advice havo: the IQ is not needed for admission.
        let r = school.post_json("/v1/messages", &env).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let sent = r.json();
        let w = withheld(&sent);
        for (field, code) in [
            ("cognitief.iq_totaal", "consent-missing"),
            ("cognitief.onderzoeksdatum", "consent-missing"),
            ("diagnoses[1].categorie", "consent-missing"),
            ("thuissituatie.zorgpunt", "consent-missing"),
        ] {
            let reason = w.iter().find(|(f, _)| f == field).map(|(_, r)| r.clone());
            assert!(
                reason.as_deref().is_some_and(|r| r.starts_with(code)),
                "{field}: {reason:?}"
            );
        }
        assert!(strings(&sent["delivered"]).contains(&"diagnoses[0].categorie".to_owned()));
        let canaries = [
            "CANARY-P1-CATEGORIE-BUITEN-LIJST".to_owned(),
            "CANARY-P1-ZORGPUNT".to_owned(),
            "7331977".to_owned(),
        ];
        let inbox = vo.inbox().await;
        assert_eq!(inbox.len(), 1);
        assert_eq!(
            inbox[0]["data"]["diagnoses"],
            json!([{"categorie": "dyslexie"}])
        );
        let all = serde_json::to_vec(&inbox).unwrap();
        assert_absent(&all, &canaries, "the vo-school's inbox");
        assert_absent(&r.body, &canaries, "the 201 response");

        // Advice PrO: the IQ goes without consent.
        env["data"]["advies"]["schooladvies"] = json!("pro");
        let r = school.post_json("/v1/messages", &env).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["message_id"].as_str().unwrap().to_owned();
        let inbox = vo.inbox().await;
        let m = inbox
            .iter()
            .find(|m| m["message_id"] == id.as_str())
            .unwrap();
        assert_eq!(m["data"]["cognitief"]["iq_totaal"], json!(7_331_977));

        // With the school's consent for DIAG and THUIS, the other category and the point of concern go too.
        let mut c = consent("lyceum-zuid", "overstap-po-vo", PGN);
        c["categories"] = json!(["DIAG", "THUIS"]);
        let r = school.post_json("/v1/consents", &c).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let r = school.post_json("/v1/messages", &env).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["message_id"].as_str().unwrap().to_owned();
        let inbox = vo.inbox().await;
        let m = inbox
            .iter()
            .find(|m| m["message_id"] == id.as_str())
            .unwrap();
        assert_eq!(m["data"]["diagnoses"], env["data"]["diagnoses"]);
        assert_eq!(
            m["data"]["thuissituatie"]["zorgpunt"],
            json!("CANARY-P1-ZORGPUNT")
        );

        // No value in the log or the tracing output.
        let log = entry_bytes(&gw).await;
        assert_absent(&log, &canaries, "the log entries");
        assert_absent(gw.stderr().as_bytes(), &canaries, "the tracing output");
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_counts_arrive_suppressed_rounded_and_under_the_agreement() {
    const AGREEMENT: &str = "convenant-thuiszitters-2026";
    let leak = "CANARY-NAAM-P7-E2E".to_owned();
    let pgn = "507529170".to_owned();
    for backend in backends() {
        let gw = Gateway::start(backend);
        let leerplicht = gw.client("leerplicht-gemeente");
        let swv = gw.client("swv-vo-zuid");

        let r = leerplicht.post("/v1/messages", &example("P7")).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let sent = r.json();
        assert_eq!(sent["flow"], "P7");
        // 12, 3, 7, 0, 26: 3 is suppressed (1-4); in its row (0599, vo) 7 then also, or 3 = row total - 12.
        assert_eq!(sent["suppressed_cells"], json!([1, 2]));
        let w = withheld(&sent);
        assert_eq!(
            w.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(),
            ["cellen[1].aantal", "cellen[2].aantal"]
        );
        assert!(
            w.iter().all(|(_, r)| r.starts_with("suppressed: ")),
            "{w:?}"
        );

        let inbox = swv.inbox().await;
        assert_eq!(inbox.len(), 1);
        let m = &inbox[0];
        assert_eq!(m["from"], "leerplicht-gemeente");
        assert_eq!(m["type"], "telling-thuiszitters");
        assert!(m["subject"].is_null(), "{}", m["subject"]);
        let data = &m["data"];
        assert_eq!(data["periode"], "2026-Q3");
        assert_eq!(data["dimensies"], json!(["gemeente", "onderwijssoort"]));
        let cells = data["cellen"].as_array().unwrap();
        let counts: Vec<Option<u64>> = cells.iter().map(|c| c["aantal"].as_u64()).collect();
        assert_eq!(counts, [Some(10), None, None, Some(0), Some(25)]);
        for (i, c) in cells.iter().enumerate() {
            match c["aantal"].as_u64() {
                Some(n) => assert!(n % 5 == 0 && !(1..=4).contains(&n), "cell {i}: {n}"),
                None => assert!(c["aantal"].is_null()),
            }
        }
        assert_eq!(
            cells[1],
            json!({"gemeente": "0599", "onderwijssoort": "vo", "categorie": "lrv-3m-plus", "aantal": null})
        );
        assert_eq!(
            cells[4],
            json!({"gemeente": "0489", "onderwijssoort": "vo", "categorie": "lrv-4w-3m", "aantal": 25})
        );
        // Not one suppressed cell can be recomputed: no line (same gemeente and onderwijssoort) has exactly one.
        let row_0599_vo = cells
            .iter()
            .filter(|c| c["gemeente"] == "0599" && c["onderwijssoort"] == "vo")
            .filter(|c| c["aantal"].is_null())
            .count();
        assert_eq!(row_0599_vo, 2);

        // The agreement is in the disclosure entry and in the fetch and acknowledgement entries of the message.
        let id = sent["message_id"].as_str().unwrap().to_owned();
        let disclosed = entry_about(&gw, EventKind::MessageDisclosed, &id).await;
        assert_eq!(disclosed.agreement_id.as_deref(), Some(AGREEMENT));
        assert_eq!(disclosed.flow_id.as_deref(), Some("P7"));
        assert_eq!(disclosed.subject, None);
        let r = swv.post(&format!("/v1/inbox/{id}/ack"), b"").await;
        assert_eq!(r.status, 200, "{}", r.text());
        for event in [EventKind::MessageFetched, EventKind::MessageAcknowledged] {
            let e = entry_about(&gw, event, &id).await;
            assert_eq!(e.agreement_id.as_deref(), Some(AGREEMENT), "{e:?}");
            assert_eq!(e.flow_id.as_deref(), Some("P7"), "{e:?}");
        }

        // Person-level data in a count message: refused whole, with its code, and logged without the value.
        let base = example_json("P7");
        let mut extra = base.clone();
        extra["data"]["leerlingen"] = json!([{"naam": leak}]);
        let mut in_cell = base.clone();
        in_cell["data"]["cellen"][2]["naam"] = json!(leak);
        let mut with_subject = base.clone();
        with_subject["subject"] = json!({"pgn": pgn});
        for (body, path) in [
            (&extra, "leerlingen"),
            (&in_cell, "cellen[2].naam"),
            (&with_subject, "subject"),
        ] {
            let r = leerplicht.post_json("/v1/messages", body).await;
            assert_eq!(r.status, 422, "{path}: {}", r.text());
            assert_eq!(r.code(), "person-level-in-aggregate");
            assert!(
                r.json()["detail"].as_str().unwrap().contains(path),
                "{}",
                r.text()
            );
            assert_absent(&r.body, &[leak.clone(), pgn.clone()], "the refusal");
        }
        let refused = entries_of(&gw, EventKind::MessageRefused).await;
        assert_eq!(refused.len(), 3, "{refused:?}");
        for e in &refused {
            assert_eq!(e.outcome, "person-level-in-aggregate");
            assert_eq!(e.flow_id.as_deref(), Some("P7"));
            assert_eq!(e.receiver.as_deref(), Some("swv-vo-zuid"));
            assert!(e.delivered.is_empty());
        }
        assert!(
            swv.inbox().await.is_empty(),
            "a refused count was delivered"
        );

        let secrets = [leak.clone(), pgn.clone()];
        assert_absent(&entry_bytes(&gw).await, &secrets, "the log entries");
        assert_absent(&gw.database_bytes(), &secrets, "the database");
        assert_absent(gw.stderr().as_bytes(), &secrets, "the tracing output");
    }
}

/// A flow bound to an agreement does not apply once the agreement has ended, nor between organisations that did
/// not sign it; the same policies with the agreement in force allow it again (so the edits are what refuse).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_outside_its_agreement_is_no_agreement() {
    for backend in backends() {
        let dir = TempDir::new("kp-policies-");
        copy_dir(&root().join("policies"), dir.path());
        let p7 = dir.path().join("p7-monitoring-thuiszitters.toml");
        let original = std::fs::read_to_string(&p7).unwrap();
        edit(&p7, "valid_until = 2030-12-31", "valid_until = 2026-06-30");
        let mut opts = GatewayOptions::new(backend);
        opts.policies = dir.path().to_owned();
        let gw = Gateway::start_with(opts);
        let leerplicht = gw.client("leerplicht-gemeente");

        let r = leerplicht.post("/v1/messages", &example("P7")).await;
        assert_eq!(
            r.status,
            403,
            "an ended agreement still applied: {}",
            r.text()
        );
        assert_eq!(r.code(), "no-agreement");
        assert!(r.text().contains("2026-06-30"), "{}", r.text());

        std::fs::write(&p7, &original).unwrap();
        edit(
            &p7,
            r#"signatories = ["leerplicht-gemeente", "swv-vo-zuid"]"#,
            r#"signatories = ["leerplicht-gemeente", "swv-po-noord"]"#,
        );
        let (status, body) = gw.ops_post("/policies/reload");
        assert_eq!(status, 200, "{body}");
        let r = leerplicht.post("/v1/messages", &example("P7")).await;
        assert_eq!(
            r.status,
            403,
            "an unsigned receiver got counts: {}",
            r.text()
        );
        assert_eq!(r.code(), "no-agreement");

        let refused = entries_of(&gw, EventKind::MessageRefused).await;
        assert_eq!(refused.len(), 2, "{refused:?}");
        for e in &refused {
            assert_eq!(e.outcome, "no-agreement");
            assert_eq!(e.flow_id.as_deref(), Some("P7"));
        }
        assert!(gw.client("swv-vo-zuid").inbox().await.is_empty());

        std::fs::write(&p7, &original).unwrap();
        let (status, body) = gw.ops_post("/policies/reload");
        assert_eq!(status, 200, "{body}");
        let r = leerplicht.post("/v1/messages", &example("P7")).await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p4_needs_a_real_justification_and_keeps_it_in_the_log() {
    let pgn = "121547280";
    for backend in backends() {
        let gw = Gateway::start(backend);
        let school = gw.client("obs-de-linde");
        let r = school
            .post_json(
                "/v1/consents",
                &consent("wijkteam-noord", "vroegsignalering", pgn),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());

        let env = example_json("P4");
        let mut without = env.clone();
        without.as_object_mut().unwrap().remove("justification");
        let mut short = env.clone();
        short["justification"] = json!("zie dossier");
        // 19 characters spread out with spaces: still too short.
        let mut spaced = env.clone();
        spaced["justification"] = json!("a b c d e f g h i j k l m n o p q r s");
        for (name, body) in [
            ("without", &without),
            ("short", &short),
            ("spaced", &spaced),
        ] {
            let r = school.post_json("/v1/messages", body).await;
            assert_eq!(r.status, 422, "{name}: {}", r.text());
            assert_eq!(r.code(), "justification-required", "{name}");
            assert_absent(&r.body, &canaries(), "the refusal");
        }
        let refused = entries_of(&gw, EventKind::MessageRefused).await;
        assert_eq!(refused.len(), 3, "{refused:?}");
        for e in &refused {
            assert_eq!(e.outcome, "justification-required");
            assert_eq!(e.flow_id.as_deref(), Some("P4"));
            assert!(e.delivered.is_empty());
        }
        assert!(gw.client("wijkteam-noord").inbox().await.is_empty());

        let r = school.post("/v1/messages", &example("P4")).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["message_id"].as_str().unwrap().to_owned();
        let disclosed = entry_about(&gw, EventKind::MessageDisclosed, &id).await;
        assert_eq!(
            disclosed.justification.as_deref(),
            env["justification"].as_str()
        );
        assert_eq!(disclosed.flow_id.as_deref(), Some("P4"));
        assert_absent(&entry_bytes(&gw).await, &canaries(), "the log entries");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p3_reason_naming_a_forbidden_category_is_withheld_without_quoting_it_and_the_melding_goes()
{
    // (category, a reason naming one of its terms next to a canary, the term)
    let cases = [
        (
            "ras-of-etniciteit",
            "CANARY-REDEN-RAS verzuimt vanwege zijn afkomst",
            "afkomst",
        ),
        (
            "politieke-opvatting",
            "CANARY-REDEN-POL ging mee naar een klimaatmars",
            "klimaatmars",
        ),
        (
            "seksueel-leven",
            "CANARY-REDEN-SEKS wordt gepest om zijn geaardheid",
            "geaardheid",
        ),
        (
            "vakbondslidmaatschap",
            "CANARY-REDEN-VAK helpt ouders bij een vakbondsactie",
            "vakbondsactie",
        ),
    ];
    let secrets: Vec<String> = cases
        .iter()
        .flat_map(|(_, text, term)| [text.to_string(), text[..16].to_owned(), term.to_string()])
        .collect();
    for backend in backends() {
        let gw = Gateway::start(backend);
        let school = gw.client("lyceum-zuid");
        let leerplicht = gw.client("leerplicht-gemeente");
        for (category, text, _) in &cases {
            let mut env = example_json("P3");
            env["data"]["verzuim"]["vermoedelijke_reden"] = json!(text);
            let r = school.post_json("/v1/messages", &env).await;
            // The melding goes "onverwijld": the screened reason is withheld with its reason, the rest delivered.
            assert_eq!(r.status, 201, "{category}: {}", r.text());
            let withheld = &r.json()["withheld"];
            assert!(
                withheld.to_string().contains("verzuim.vermoedelijke_reden")
                    && withheld.to_string().contains("screened-term"),
                "{category}: {withheld}"
            );
            assert_absent(&r.body, &secrets, "the 201");
        }
        let disclosed = entries_of(&gw, EventKind::MessageDisclosed).await;
        assert_eq!(disclosed.len(), cases.len(), "{disclosed:?}");
        for e in &disclosed {
            assert_eq!(e.flow_id.as_deref(), Some("P3"));
            assert!(
                e.withheld
                    .iter()
                    .any(|w| w.field == "verzuim.vermoedelijke_reden"
                        && w.reason.starts_with("screened-term")),
                "{e:?}"
            );
        }
        let delivered = leerplicht.inbox().await;
        assert_eq!(delivered.len(), cases.len());
        for m in &delivered {
            assert!(
                m["data"]["verzuim"].get("vermoedelijke_reden").is_none(),
                "{m}"
            );
            assert!(
                m["data"]["verzuim"].get("duo_meldingsnummer").is_some(),
                "{m}"
            );
            assert_absent(m.to_string().as_bytes(), &secrets, "the inbox");
            let id = m["message_id"].as_str().unwrap();
            let r = leerplicht.post(&format!("/v1/inbox/{id}/ack"), b"").await;
            assert_eq!(r.status, 200, "{}", r.text());
        }

        // Without the DUO meldingsnummer there is no P3: the school reports at DUO (or on the gemeente's form) first.
        let mut env = example_json("P3");
        env["data"]["verzuim"]
            .as_object_mut()
            .unwrap()
            .remove("duo_meldingsnummer");
        let r = school.post_json("/v1/messages", &env).await;
        assert_eq!(r.status, 422, "{}", r.text());
        assert_eq!(r.code(), "missing-required-field");
        let detail = r.json()["detail"].as_str().unwrap().to_owned();
        assert!(
            detail.contains("verzuim.duo_meldingsnummer") && detail.contains("DUO"),
            "{detail}"
        );
        assert!(leerplicht.inbox().await.is_empty());

        // The example's own reason names none of the categories: delivered as written.
        let r = school.post("/v1/messages", &example("P3")).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let inbox = leerplicht.inbox().await;
        assert_eq!(inbox.len(), 1);
        assert_eq!(
            inbox[0]["data"]["verzuim"]["vermoedelijke_reden"],
            example_json("P3")["data"]["verzuim"]["vermoedelijke_reden"]
        );

        assert_absent(&entry_bytes(&gw).await, &secrets, "the log entries");
        assert_absent(&gw.database_bytes(), &secrets, "the database");
        assert_absent(gw.stderr().as_bytes(), &secrets, "the tracing output");
    }
}

/// Every log entry records the hash of the policy set in force; fetches and acknowledgements also the flow of
/// the message they are about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entry_records_the_policy_hash_and_fetch_and_ack_the_flow() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let hash = running_policy_hash(&gw);
        let school = gw.client("lyceum-zuid");
        let leerplicht = gw.client("leerplicht-gemeente");
        let r = school.post("/v1/messages", &example("P3")).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["message_id"].as_str().unwrap().to_owned();
        assert_eq!(leerplicht.inbox().await.len(), 1);
        let r = leerplicht.post(&format!("/v1/inbox/{id}/ack"), b"").await;
        assert_eq!(r.status, 200, "{}", r.text());
        // Other kinds of entry: a consent, a refusal, an audit query.
        let r = school
            .post_json(
                "/v1/consents",
                &consent("leerplicht-gemeente", "verzuimmelding", "507529170"),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let r = school.post("/v1/messages", &example("P4")).await;
        assert_eq!(r.status, 403, "{}", r.text());
        let r = gw
            .client("fg-lyceum-zuid")
            .get("/v1/audit/disclosures")
            .await;
        assert_eq!(r.status, 200, "{}", r.text());

        for event in [EventKind::MessageFetched, EventKind::MessageAcknowledged] {
            let e = entry_about(&gw, event, &id).await;
            assert_eq!(e.flow_id.as_deref(), Some("P3"), "{e:?}");
            assert_eq!(e.policy_hash.as_deref(), Some(&*hash), "{e:?}");
            assert_eq!(e.receiver_role.as_deref(), Some("leerplicht"), "{e:?}");
            assert_eq!(e.agreement_id, None);
        }
        let all = entries(&gw).await;
        let kinds: std::collections::BTreeSet<&str> =
            all.iter().map(|e| e.event().as_str()).collect();
        for k in [
            "policy-loaded",
            "message-disclosed",
            "message-fetched",
            "message-acknowledged",
            "consent-recorded",
            "message-refused",
            "audit-query",
        ] {
            assert!(kinds.contains(k), "no {k} entry: {kinds:?}");
        }
        for e in &all {
            assert_eq!(
                e.policy_hash.as_deref(),
                Some(&*hash),
                "{} entry without the policy hash: {e:?}",
                e.event().as_str()
            );
        }
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
    }
}

/// Two retentions end to end, on both backends. P1 runs under a test copy of the policies with `gateway_days = 1`,
/// P3 under its shipped 30 days (its receiver keeps 5 years). The P3 receiver fetches without acknowledging; nobody
/// fetches the P1. Messages go through the binary over mTLS; the sweep runs in-process on the same database and
/// keys (the binary stopped) with a clock 2 and then 31 days ahead, and the binary is started again to look:
/// - the inbox item carries the receiver's period; the disclosure entries record it;
/// - after 2 days the P1 is gone (`message-expired`: flow, sender, receiver, pseudonym, no values) and the P3,
///   whose receiver may keep it 5 years, is still there: the gateway's period decides, not the receiver's;
/// - after 31 days the fetched, unacknowledged P3 goes too, as `payload-purged`;
/// - the sender's FG finds the expiry in /v1/audit/disclosures and the console ("verlopen, niet opgehaald"); the
///   art. 15 report shows the receiver's period per recipient and marks the expired disclosure; `audit verify`
///   passes; no canary value appears in any of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfetched_message_expires_after_the_gateway_s_days_and_the_receiver_s_period_travels_with_it(
) {
    const DAY: i64 = 86_400_000;
    let canaries = canaries();
    for backend in backends() {
        let dir = TempDir::new("kp-two-retentions-");
        let policies = dir.path().join("policies");
        copy_dir(&root().join("policies"), &policies);
        let p1 = policies.join("p1-overstap-po-vo.toml");
        edit(&p1, "gateway_days = 30\n", "gateway_days = 1\n");
        let mut opts = GatewayOptions::new(backend);
        opts.policies = policies.clone();
        // No background sweep: the test runs it with a clock ahead.
        opts.extra_config = "[log]\nretention_sweep_secs = 0\n".into();
        let mut gw = Gateway::start_with(opts);

        let r = gw
            .client("obs-de-linde")
            .post("/v1/messages", &example("P1"))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let p1_id = r.json()["message_id"].as_str().unwrap().to_owned();
        let r = gw
            .client("lyceum-zuid")
            .post("/v1/messages", &example("P3"))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let p3_id = r.json()["message_id"].as_str().unwrap().to_owned();

        // The receiver is told its period with the message (P3: fetched, never acknowledged).
        let inbox = gw.client("leerplicht-gemeente").inbox().await;
        let item = inbox
            .iter()
            .find(|m| m["message_id"] == p3_id.as_str())
            .unwrap();
        let retention = &item["retention"];
        assert_eq!(
            retention["receiver"], "Leerplicht bewaart het verzuimdossier 5 jaar.",
            "{item}"
        );
        assert_eq!(retention["receiver_days"], 1825, "{item}");
        let sent_ms = ketenpoort::audit::writer::now_ms();
        let until = time::OffsetDateTime::parse(
            retention["gateway_until"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let until_ms = (until.unix_timestamp_nanos() / 1_000_000) as i64;
        assert!(
            (until_ms - (sent_ms + 30 * DAY)).abs() < 60_000,
            "the gateway keeps it 30 days, not 5 years: {retention}"
        );
        // The disclosure entries record the receiver's period.
        let d1 = entry_about(&gw, EventKind::MessageDisclosed, &p1_id).await;
        let r1 = d1.receiver_retention.clone().expect("P1 records it");
        assert!(r1.text.contains("leerlingdossier"), "{r1:?}");
        assert_eq!(r1.days, None);
        let d3 = entry_about(&gw, EventKind::MessageDisclosed, &p3_id).await;
        assert_eq!(d3.receiver_retention.as_ref().unwrap().days, Some(1825));
        let hash = running_policy_hash(&gw);
        gw.stop();

        let config = ketenpoort::config::Config::load(&gw.config_path).unwrap();
        let (inner, _writer) = ketenpoort::gateway::Gateway::start(config).await.unwrap();
        let now = ketenpoort::audit::writer::now_ms();
        assert_eq!(
            ketenpoort::retention::sweep(&inner, now + 2 * DAY).await.unwrap(),
            1,
            "only the P1 (gateway_days = 1); the P3's receiver period is no reason to keep it, nor to drop it"
        );
        assert!(inner.store.message(&p1_id).await.unwrap().is_none());
        assert!(inner.store.message(&p3_id).await.unwrap().is_some());
        assert_eq!(
            ketenpoort::retention::sweep(&inner, now + 31 * DAY)
                .await
                .unwrap(),
            1
        );
        drop(inner);
        drop(_writer);
        let gw = gw.restart();
        gw.wait_ready();

        // The inboxes no longer hold them.
        for (receiver, id) in [("lyceum-zuid", &p1_id), ("leerplicht-gemeente", &p3_id)] {
            let inbox = gw.client(receiver).inbox().await;
            assert!(
                inbox.iter().all(|m| m["message_id"] != id.as_str()),
                "{receiver} still has {id}"
            );
        }
        // One message-expired entry for the unfetched P1: flow, sender, receiver, pseudonym, no values.
        let expired = entry_about(&gw, EventKind::MessageExpired, &p1_id).await;
        assert_eq!(expired.flow_id.as_deref(), Some("P1"), "{expired:?}");
        assert_eq!(expired.sender.as_deref(), Some("obs-de-linde"));
        assert_eq!(expired.receiver.as_deref(), Some("lyceum-zuid"));
        assert_eq!(expired.purpose.as_deref(), Some("overstap-po-vo"));
        assert_eq!(expired.subject, d1.subject, "the pupil's pseudonym");
        assert!(expired.subject.is_some());
        assert_eq!(expired.policy_hash.as_deref(), Some(&*hash));
        assert!(expired.delivered.is_empty() && expired.withheld.is_empty());
        assert!(expired.payload_digest.is_none() && expired.justification.is_none());
        assert!(
            entries_of(&gw, EventKind::MessageExpired)
                .await
                .iter()
                .all(|e| e.message_id.as_deref() == Some(p1_id.as_str())),
            "the fetched P3 did not expire unfetched"
        );
        let purged = entry_about(&gw, EventKind::PayloadPurged, &p3_id).await;
        assert_eq!(purged.flow_id.as_deref(), Some("P3"), "{purged:?}");
        assert_eq!(purged.receiver.as_deref(), Some("leerplicht-gemeente"));
        for (stored, e) in gw.log_entries().await {
            if matches!(
                e.event(),
                EventKind::MessageExpired | EventKind::PayloadPurged
            ) {
                assert_absent(&stored.bytes, &canaries, "an expiry or purge entry");
            }
        }

        // The sender's FG finds the expiry; the console shows it with its Dutch label.
        let fg = gw.client("fg-obs-de-linde");
        let r = fg.get("/v1/audit/disclosures?event=message-expired").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let found = r.json();
        let found = found["entries"].as_array().unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0]["message_id"], p1_id.as_str());
        assert_eq!(found[0]["flow_id"], "P1");
        assert_absent(r.text().as_bytes(), &canaries, "the FG's search");
        let r = fg
            .get("/v1/audit/disclosures?event=message-disclosed")
            .await;
        let shown = r.json();
        let shown = &shown["entries"].as_array().unwrap()[0];
        assert!(
            shown["receiver_retention"]["text"]
                .as_str()
                .unwrap()
                .contains("leerlingdossier"),
            "{shown}"
        );
        let r = fg
            .get("/console/verstrekkingen?event=message-expired")
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.text();
        assert!(page.contains("verlopen, niet opgehaald"), "{page}");
        assert!(page.contains("tag expired"), "{page}");
        assert_absent(page.as_bytes(), &canaries, "the console");
        let page = fg
            .get("/console/verstrekkingen?event=message-disclosed")
            .await
            .text();
        assert!(
            page.contains("Bewaren door ontvanger: De vo-school bewaart"),
            "{page}"
        );

        // The art. 15 report: the receiver's period per recipient; the expired disclosure marked.
        let fg = gw.client("fg-operator");
        let pgn = example_json("P1")["subject"]["pgn"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = fg.get(&format!("/v1/audit/subjects/{pgn}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let report = r.json();
        let recipients = report["recipients"].as_array().unwrap();
        let lyceum = recipients
            .iter()
            .find(|r| r["organisation"] == "lyceum-zuid")
            .unwrap_or_else(|| panic!("{report}"));
        assert_eq!(lyceum["retention"], json!([{"text": r1.text}]), "{report}");
        let disclosure = report["disclosures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["flow_id"] == "P1")
            .unwrap();
        assert_eq!(disclosure["expired_unfetched"], true, "{report}");
        assert_eq!(disclosure["receiver_retention"]["text"], r1.text.as_str());
        assert_absent(r.text().as_bytes(), &canaries, "the art. 15 report");
        let r = fg
            .request(
                "GET",
                &format!("/v1/audit/subjects/{pgn}"),
                &[("accept", "text/html")],
                None,
            )
            .await;
        let page = r.text();
        assert!(page.contains("Bewaartermijn bij de ontvanger"), "{page}");
        assert!(
            page.contains("De vo-school bewaart het rapport in het leerlingdossier"),
            "{page}"
        );
        assert!(page.contains("verlopen, niet opgehaald"), "{page}");
        assert_absent(page.as_bytes(), &canaries, "the printable report");
        let pgn3 = example_json("P3")["subject"]["pgn"]
            .as_str()
            .unwrap()
            .to_owned();
        let report = fg.get(&format!("/v1/audit/subjects/{pgn3}")).await.json();
        let leerplicht = report["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["organisation"] == "leerplicht-gemeente")
            .unwrap_or_else(|| panic!("{report}"));
        assert_eq!(
            leerplicht["retention"],
            json!([{"text": "Leerplicht bewaart het verzuimdossier 5 jaar.", "days": 1825}])
        );

        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
    }
}
