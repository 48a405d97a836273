//! The receiver bound to the pupil's case (DOMAIN.md "Who is responsible for a pupil"), through the real API over
//! mTLS on both backends: per flow P1–P6 the right receiver is served and a wrong one gets nothing (403
//! `receiver-not-responsible`, logged as a refusal); a reply's `in_reply_to` to another organisation's message is
//! 404 `unknown-reference`.

mod common;

use common::*;
use serde_json::{json, Value};

const PUPIL_P4: &str = "121547280";

fn body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn with(name: &str, pointer: &str, value: Value) -> Vec<u8> {
    let mut v = example_json(name);
    match v.pointer_mut(pointer) {
        Some(slot) => *slot = value,
        None => panic!("{name} has no {pointer}"),
    }
    body(&v)
}

fn to(name: &str, receiver: &str) -> Vec<u8> {
    with(name, "/to", json!(receiver))
}

async fn consent(gw: &Gateway, by: &str, pgn: &str, purpose: &str, recipient: &str) {
    let r = gw
        .client(by)
        .post_json(
            "/v1/consents",
            // The birth date of the example pupil: P5 carries none, and the age rules need it (DOMAIN.md).
            &json!({"subject": {"pgn": pgn}, "purpose": purpose, "recipient": recipient,
                "subject_birth_date": example_json("P4")["data"]["leerling"]["geboortedatum"],
                "categories": ["*"], "given_by": "ouder", "evidence": "formulier in dossier",
                "valid_from": "2026-01-01", "valid_until": "2030-07-31"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

/// Sends and expects 201; the message id.
async fn served(gw: &Gateway, from: &str, msg: &[u8], what: &str) -> String {
    let r = gw.client(from).post("/v1/messages", msg).await;
    assert_eq!(r.status, 201, "{what}: {}", r.text());
    r.json()["message_id"].as_str().unwrap().to_owned()
}

/// Sends and expects the refusal; the receiver's inbox stays as it was.
async fn refused(
    gw: &Gateway,
    from: &str,
    msg: &[u8],
    status: u16,
    code: &str,
    what: &str,
    canaries: &[String],
) {
    let receiver = serde_json::from_slice::<Value>(msg).unwrap()["to"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = gw.client(&receiver).inbox().await.len();
    let r = gw.client(from).post("/v1/messages", msg).await;
    assert_eq!(
        (r.status, r.code()),
        (status, code.to_owned()),
        "{what}: {}",
        r.text()
    );
    assert_absent(&r.body, canaries, what);
    assert_eq!(
        gw.client(&receiver).inbox().await.len(),
        before,
        "{what}: something was delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_person_level_flow_reaches_only_the_responsible_receiver() {
    let canaries = canaries();
    for backend in backends() {
        let gw = Gateway::start(backend);
        let nr = "receiver-not-responsible";

        // P1: only the school named in aanmelding.school.
        refused(
            &gw,
            "obs-de-linde",
            &with("P1", "/data/aanmelding/school", json!("mbo-college-zuid")),
            403,
            nr,
            "P1 to a school where the pupil is not aangemeld",
            &canaries,
        )
        .await;
        served(&gw, "obs-de-linde", &example("P1"), "P1").await;

        // P2: only an SWV the sending school belongs to.
        refused(
            &gw,
            "obs-de-linde",
            &to("P2", "swv-po-noord"),
            403,
            nr,
            "P2 from obs-de-linde to swv-po-noord",
            &canaries,
        )
        .await;
        refused(
            &gw,
            "lyceum-zuid",
            &to("P2", "swv-po-noord"),
            403,
            nr,
            "P2 from lyceum-zuid to swv-po-noord",
            &canaries,
        )
        .await;
        served(
            &gw,
            "lyceum-zuid",
            &example("P2"),
            "P2 to lyceum-zuid's own SWV",
        )
        .await;

        // P3: only the leerplicht office of the woongemeente.
        refused(
            &gw,
            "lyceum-zuid",
            &to("P3", "leerplicht-buurgemeente"),
            403,
            nr,
            "P3 to the office of another gemeente",
            &canaries,
        )
        .await;
        refused(
            &gw,
            "lyceum-zuid",
            &with("P3", "/data/leerling/woongemeente", json!("0606")),
            403,
            nr,
            "P3 for a pupil of 0606",
            &canaries,
        )
        .await;
        let p3 = served(&gw, "lyceum-zuid", &example("P3"), "P3").await;

        // P4: only a wijkteam serving the woongemeente.
        consent(
            &gw,
            "obs-de-linde",
            PUPIL_P4,
            "vroegsignalering",
            "wijkteam-noord",
        )
        .await;
        refused(
            &gw,
            "obs-de-linde",
            &with("P4", "/data/leerling/woongemeente", json!("0606")),
            403,
            nr,
            "P4 to a wijkteam not serving 0606",
            &canaries,
        )
        .await;
        let p4 = served(&gw, "obs-de-linde", &example("P4"), "P4").await;

        // P5: only the school of the P4 it answers.
        consent(
            &gw,
            "wijkteam-noord",
            PUPIL_P4,
            "afstemming-ondersteuning",
            "cbs-het-anker",
        )
        .await;
        consent(
            &gw,
            "wijkteam-noord",
            PUPIL_P4,
            "afstemming-ondersteuning",
            "obs-de-linde",
        )
        .await;
        let mut p5 = serde_json::from_slice::<Value>(&reply("P5", &p4)).unwrap();
        p5["to"] = json!("cbs-het-anker");
        refused(
            &gw,
            "wijkteam-noord",
            &body(&p5),
            403,
            nr,
            "P5 to another school than the P4's",
            &canaries,
        )
        .await;
        refused(
            &gw,
            "wijkteam-noord",
            &reply("P5", &p3),
            404,
            "unknown-reference",
            "P5 answering another organisation's P3",
            &canaries,
        )
        .await;
        refused(
            &gw,
            "wijkteam-noord",
            &reply("P5", &"0".repeat(32)),
            404,
            "unknown-reference",
            "P5 answering nothing",
            &canaries,
        )
        .await;
        refused(
            &gw,
            "wijkteam-noord",
            &example_without_reply("P5"),
            422,
            "missing-required-field",
            "P5 without in_reply_to",
            &canaries,
        )
        .await;
        served(&gw, "wijkteam-noord", &reply("P5", &p4), "P5").await;

        // P6: only the school of the P3 it answers.
        let mut p6 = serde_json::from_slice::<Value>(&reply("P6", &p3)).unwrap();
        p6["to"] = json!("obs-de-linde");
        refused(
            &gw,
            "leerplicht-gemeente",
            &body(&p6),
            403,
            nr,
            "P6 to another school than the P3's",
            &canaries,
        )
        .await;
        refused(
            &gw,
            "leerplicht-buurgemeente",
            &reply("P6", &p3),
            404,
            "unknown-reference",
            "P6 by an office that did not get the P3",
            &canaries,
        )
        .await;
        refused(
            &gw,
            "leerplicht-gemeente",
            &reply("P6", &p4),
            404,
            "unknown-reference",
            "P6 answering a P4 it was not party to",
            &canaries,
        )
        .await;
        let mut other_pupil = serde_json::from_slice::<Value>(&reply("P6", &p3)).unwrap();
        other_pupil["subject"] = json!({"pgn": PUPIL_P4});
        refused(
            &gw,
            "leerplicht-gemeente",
            &body(&other_pupil),
            403,
            nr,
            "P6 about another pupil than the P3's",
            &canaries,
        )
        .await;
        served(&gw, "leerplicht-gemeente", &reply("P6", &p3), "P6").await;
        // A flow that answers nothing takes no in_reply_to.
        let mut p3_reply = example_json("P3");
        p3_reply["in_reply_to"] = json!(p4);
        refused(
            &gw,
            "lyceum-zuid",
            &body(&p3_reply),
            422,
            "invalid-envelope",
            "P3 with in_reply_to",
            &canaries,
        )
        .await;

        // Every refusal above is logged once, as a refusal with its code; the P5's log entry names the P4's pupil.
        let entries = gw.log_entries().await;
        let logged = |code: &str| {
            entries
                .iter()
                .filter(|(e, _)| e.event == "message-refused" && e.outcome == code)
                .count()
        };
        assert_eq!(logged(nr), 9, "receiver-not-responsible refusals logged");
        assert_eq!(logged("unknown-reference"), 4);
        let disclosed = |flow: &str| {
            entries
                .iter()
                .find(|(e, _)| e.event == "message-disclosed" && e.flow_id.as_deref() == Some(flow))
                .map(|(e, _)| e.subject.clone())
                .unwrap_or_else(|| panic!("no {flow} disclosure"))
        };
        assert!(disclosed("P4").is_some());
        assert_eq!(
            disclosed("P5"),
            disclosed("P4"),
            "P5 is about the P4's pupil"
        );
        for (e, _) in &entries {
            assert_absent(&e.bytes, &canaries, "the log");
        }
        assert_absent(gw.stderr().as_bytes(), &canaries, "the tracing output");
        // The fetch of a reply after its P4 was acknowledged: the reference survives the ack.
        let school = gw.client("wijkteam-noord");
        for m in school.inbox().await {
            let id = m["message_id"].as_str().unwrap();
            assert_eq!(
                school
                    .post(&format!("/v1/inbox/{id}/ack"), b"")
                    .await
                    .status,
                200
            );
        }
        served(
            &gw,
            "wijkteam-noord",
            &reply("P5", &p4),
            "P5 after the P4 was acknowledged",
        )
        .await;
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
    }
}

fn example_without_reply(name: &str) -> Vec<u8> {
    let mut v = example_json(name);
    v.as_object_mut().unwrap().shift_remove("in_reply_to");
    body(&v)
}
