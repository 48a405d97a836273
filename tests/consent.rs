//! The consent registry end to end: P4 and P5 need consent; registration, listing and withdrawal are scoped to
//! the registering organisation; withdrawal takes effect at once, also for a message still waiting in a mailbox.

mod common;

use common::*;
use ketenpoort::audit::entry::{EventKind, LogEntry};
use serde_json::{json, Value};

fn consent(recipient: &str, purpose: &str, given_by: &str) -> Value {
    json!({
        "subject": {"pgn": "121547280"},
        "purpose": purpose,
        "recipient": recipient,
        "categories": ["*"],
        "given_by": given_by,
        "evidence": "toestemmingsformulier 2026-11-01, leerlingdossier",
        "valid_from": "2026-01-01",
        "valid_until": "2030-07-31"
    })
}

fn has_path(v: &Value, path: &[&str]) -> bool {
    let mut cur = v;
    for p in path {
        match cur.get(*p) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p4_needs_consent_and_withdrawal_reaches_waiting_messages() {
    let canaries = canaries();
    for backend in backends() {
        let gw = Gateway::start(backend);
        let school = gw.client("obs-de-linde");
        let wijkteam = gw.client("wijkteam-noord");

        let r = school.post("/v1/messages", &example("P4")).await;
        assert_eq!(r.status, 403, "{}", r.text());
        assert_eq!(r.code(), "consent-required");
        // The refusal is logged with the flow and the policy set that decided it.
        let log = gw
            .client("fg-obs-de-linde")
            .get("/v1/audit/disclosures?outcome=consent-required")
            .await;
        assert_eq!(log.status, 200, "{}", log.text());
        let entries = log.json()["entries"].as_array().unwrap().clone();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0]["flow_id"], "P4");
        assert_eq!(entries[0]["policy_hash"].as_str().map(str::len), Some(64));
        assert_eq!(entries[0]["event"], "message-refused");

        // A consent the law does not accept for a 10-year-old (the pupil alone) does not count.
        let r = school
            .post_json(
                "/v1/consents",
                &consent("wijkteam-noord", "vroegsignalering", "jongere"),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let r = school.post("/v1/messages", &example("P4")).await;
        assert_eq!(
            r.status,
            403,
            "a consent by a 10-year-old alone was accepted: {}",
            r.text()
        );

        let r = school
            .post_json(
                "/v1/consents",
                &consent("wijkteam-noord", "vroegsignalering", "ouder"),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let consent_id = r.json()["consent_id"].as_str().unwrap().to_owned();

        // Only the registering organisation sees and withdraws it; the raw PGN is never returned.
        let listed = school.get("/v1/consents").await;
        assert_eq!(listed.status, 200);
        assert!(listed.text().contains(&consent_id));
        assert!(!listed.text().contains("121547280"), "the PGN was returned");
        assert!(!gw
            .client("cbs-het-anker")
            .get("/v1/consents")
            .await
            .text()
            .contains(&consent_id));
        let r = gw
            .client("cbs-het-anker")
            .delete(&format!("/v1/consents/{consent_id}"))
            .await;
        assert_eq!(r.status, 404);

        // With consent: consent-only fields arrive, birth date as year, blocked fields stay out.
        let r = school.post("/v1/messages", &example("P4")).await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert!(r.json()["flow"].as_str().unwrap().starts_with("P4"));
        let inbox = wijkteam.inbox().await;
        assert_eq!(inbox.len(), 1);
        let data = &inbox[0]["data"];
        assert_eq!(data["leerling"]["voornamen"], "Noah");
        assert_eq!(
            data["leerling"]["geboortedatum"].as_str().map(|s| s.len()),
            Some(4),
            "{data}"
        );
        assert!(!has_path(data, &["toetsen"]));
        assert!(!has_path(data, &["cognitief"]));
        assert!(!has_path(data, &["ondersteuning", "opp"]));
        assert!(
            inbox[0]["subject"].get("pgn").is_none(),
            "the PGN went to a wijkteam"
        );
        assert_absent(&serde_json::to_vec(&inbox).unwrap(), &canaries, "P4 inbox");
        let first = inbox[0]["message_id"].as_str().unwrap().to_owned();
        assert_eq!(
            wijkteam
                .post(&format!("/v1/inbox/{first}/ack"), b"")
                .await
                .status,
            200
        );

        // A second message waits in the mailbox while the consent is withdrawn.
        let r = school.post("/v1/messages", &example("P4")).await;
        assert_eq!(r.status, 201);
        let waiting = r.json();
        let waiting_id = waiting["message_id"].as_str().unwrap().to_owned();
        let r = school.delete(&format!("/v1/consents/{consent_id}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        // The withdrawal is a log entry naming the consent, the pupil only as pseudonym.
        let withdrawn: Vec<LogEntry> = gw
            .log_entries()
            .await
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| e.event() == EventKind::ConsentWithdrawn)
            .collect();
        assert_eq!(withdrawn.len(), 1, "{withdrawn:?}");
        assert_eq!(withdrawn[0].consents, std::slice::from_ref(&consent_id));
        assert_eq!(withdrawn[0].partner, "obs-de-linde");
        assert_eq!(withdrawn[0].purpose.as_deref(), Some("vroegsignalering"));
        assert_eq!(withdrawn[0].receiver.as_deref(), Some("wijkteam-noord"));
        assert_eq!(withdrawn[0].outcome, "ok");
        let recorded = gw
            .log_entries()
            .await
            .into_iter()
            .map(|(_, e)| e)
            .find(|e| e.event() == EventKind::ConsentRecorded && e.consents == [consent_id.clone()])
            .expect("a consent-recorded entry");
        assert!(recorded.subject.is_some());
        assert_eq!(withdrawn[0].subject, recorded.subject);
        assert_ne!(withdrawn[0].subject.as_deref(), Some("121547280"));
        let inbox = wijkteam.inbox().await;
        assert_eq!(inbox.len(), 1);
        // Its fetch entry lists every consent-only field that was not delivered, with the withdrawal as reason.
        let fetched: Vec<LogEntry> = gw
            .log_entries()
            .await
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| {
                e.event() == EventKind::MessageFetched
                    && e.message_id.as_deref() == Some(&*waiting_id)
            })
            .collect();
        assert_eq!(fetched.len(), 1, "{fetched:?}");
        let mut withheld: Vec<&str> = fetched[0]
            .withheld
            .iter()
            .map(|w| w.field.as_str())
            .collect();
        withheld.sort();
        let mut consent_only: Vec<&str> = waiting["delivered"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        consent_only.sort();
        assert!(
            consent_only.contains(&"leerling.voornamen"),
            "{consent_only:?}"
        );
        assert_eq!(withheld, consent_only, "{:?}", fetched[0]);
        assert!(
            fetched[0]
                .withheld
                .iter()
                .all(|w| w.reason == "consent-withdrawn"),
            "{:?}",
            fetched[0].withheld
        );
        assert_eq!(fetched[0].flow_id.as_deref(), Some("P4"));
        let data = &inbox[0]["data"];
        assert!(
            !has_path(data, &["leerling", "voornamen"]),
            "withdrawn consent still delivered: {data}"
        );
        assert!(
            !has_path(data, &["zorg", "omschrijving"]),
            "withdrawn consent still delivered: {data}"
        );

        // New messages are refused again.
        let r = school.post("/v1/messages", &example("P4")).await;
        assert_eq!(r.status, 403);
        assert_eq!(r.code(), "consent-required");
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
        assert_absent(&gw.database_bytes(), &canaries, "the database");
        assert_absent(
            &gw.database_bytes(),
            &["121547280".to_owned()],
            "the database",
        );
        assert_absent(gw.stderr().as_bytes(), &canaries, "the tracing output");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p5_feedback_from_wijkteam_needs_its_own_consent() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        // P5 answers a P4 (and names no pupil: it is the P4's).
        let school = gw.client("obs-de-linde");
        let r = school
            .post_json(
                "/v1/consents",
                &consent("wijkteam-noord", "vroegsignalering", "ouder"),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let r = school.post("/v1/messages", &example("P4")).await;
        assert_eq!(r.status, 201, "P4: {}", r.text());
        let p4 = r.json()["message_id"].as_str().unwrap().to_owned();
        let p5 = reply("P5", &p4);
        assert_eq!(gw.client("wijkteam-noord").inbox().await.len(), 1);
        let wijkteam = gw.client("wijkteam-noord");
        let r = wijkteam.post("/v1/messages", &p5).await;
        assert_eq!(r.status, 403, "{}", r.text());
        assert_eq!(r.code(), "consent-required");
        let r = wijkteam
            .post_json(
                "/v1/consents",
                &consent("obs-de-linde", "afstemming-ondersteuning", "ouder"),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let r = wijkteam.post("/v1/messages", &p5).await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert!(r.json()["withheld"].as_array().is_some());
        let inbox = gw.client("obs-de-linde").inbox().await;
        assert_eq!(inbox.len(), 1);
        let data = &inbox[0]["data"];
        assert_eq!(data["wijkteam"]["betrokken"], true);
        assert!(!has_path(data, &["jeugdhulp"]));
        assert!(!has_path(data, &["diagnoses"]));
        assert!(!has_path(data, &["thuissituatie"]));
        assert_absent(
            &serde_json::to_vec(&inbox).unwrap(),
            &canaries(),
            "P5 inbox",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_consents_are_refused_with_codes() {
    let gw = Gateway::start(Backend::Sqlite);
    let school = gw.client("obs-de-linde");
    let base = consent("wijkteam-noord", "vroegsignalering", "ouder");
    let mut cases: Vec<(Value, u16, &str)> = Vec::new();
    let mut v = base.clone();
    v["subject"] = json!({"pgn": "123456789"});
    cases.push((v, 422, "invalid-subject-id"));
    let mut v = base.clone();
    v["categories"] = json!(["NONSENSE"]);
    cases.push((v, 422, "invalid-consent"));
    let mut v = base.clone();
    v["valid_until"] = json!("2020-01-01");
    cases.push((v, 422, "invalid-consent"));
    let mut v = base.clone();
    v["recipient"] = json!("iemand");
    cases.push((v, 422, "invalid-consent"));
    let mut v = base.clone();
    v["given_by"] = json!("buurman");
    cases.push((v, 422, "invalid-consent"));
    let mut v = base.clone();
    v["extra"] = json!(1);
    cases.push((v, 400, "unknown-consent-key"));
    for (body, status, code) in cases {
        let r = school.post_json("/v1/consents", &body).await;
        assert_eq!(r.status, status, "{code}: {}", r.text());
        assert_eq!(r.code(), code);
        assert!(!r.text().contains("123456789"));
    }
    let r = school
        .post("/v1/consents", b"{\"purpose\": 1, \"purpose\": 2}")
        .await;
    assert_eq!(r.code(), "duplicate-key");
}
