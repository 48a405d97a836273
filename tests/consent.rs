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

/// The school registers a consent for the wijkteam's vroegsignalering (given by `given_by`) and sends its P4;
/// the P4's message id.
async fn p4_with_the_schools_consent(gw: &Gateway, given_by: &str) -> String {
    let school = gw.client("obs-de-linde");
    let r = school
        .post_json(
            "/v1/consents",
            &consent("wijkteam-noord", "vroegsignalering", given_by),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = school.post("/v1/messages", &example("P4")).await;
    assert_eq!(r.status, 201, "P4: {}", r.text());
    r.json()["message_id"].as_str().unwrap().to_owned()
}

/// `r` is refused with `status` and `code`, and its detail names `rule`.
fn assert_refused(r: &Response, status: u16, code: &str, rule: &str) {
    assert_eq!(
        (r.status, r.code().as_str()),
        (status, code),
        "{}",
        r.text()
    );
    assert!(r.text().contains(rule), "{}", r.text());
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
        let p4 = p4_with_the_schools_consent(&gw, "ouder").await;
        let p5 = reply("P5", &p4);
        assert_eq!(gw.client("wijkteam-noord").inbox().await.len(), 1);
        let wijkteam = gw.client("wijkteam-noord");
        let r = wijkteam.post("/v1/messages", &p5).await;
        assert_eq!(r.status, 403, "{}", r.text());
        assert_eq!(r.code(), "consent-required");
        // The P5 carries no birth date: a parent's consent counts only with the pupil's age known, here from the
        // consent itself (this test used to register it without one, and any giver counted: failing open).
        let mut parent = consent("obs-de-linde", "afstemming-ondersteuning", "ouder");
        let r = wijkteam.post_json("/v1/consents", &parent).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let r = wijkteam.post("/v1/messages", &p5).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (422, "consent-age-unknown"),
            "{}",
            r.text()
        );
        parent["subject_birth_date"] = json!("2016-04-22");
        let r = wijkteam.post_json("/v1/consents", &parent).await;
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

/// A birth date `years` whole years before today.
fn born_years_ago(years: i32) -> String {
    let today = time::OffsetDateTime::now_utc().date();
    format!("{:04}-01-01", today.year() - years)
}

/// The school's P4 with the pupil's birth date set (or removed with `None`).
fn p4_born(birth: Option<&str>) -> Vec<u8> {
    let mut env = example_json("P4");
    let leerling = env["data"]["leerling"].as_object_mut().unwrap();
    match birth {
        Some(b) => {
            leerling.insert("geboortedatum".into(), json!(b));
        }
        None => {
            leerling.remove("geboortedatum");
        }
    }
    serde_json::to_vec(&env).unwrap()
}

/// The wijkteam's P5 answering the P4 `p4_id` (filled in where the example names the P4 it replies to).
fn p5_replying_to(p4_id: &str) -> Vec<u8> {
    let mut env = example_json("P5");
    if let Some(r) = env.get_mut("in_reply_to") {
        *r = json!(p4_id);
    }
    serde_json::to_vec(&env).unwrap()
}

/// Issue 25, defect 1: a consent the wijkteam registered (naming itself as recipient) unlocked the school's P4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_counts_only_for_the_organisation_that_registered_it() {
    let canaries = canaries();
    for backend in backends() {
        let gw = Gateway::start(backend);
        let school = gw.client("obs-de-linde");
        let r = gw
            .client("wijkteam-noord")
            .post_json(
                "/v1/consents",
                &consent("wijkteam-noord", "vroegsignalering", "ouder"),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let r = school.post("/v1/messages", &example("P4")).await;
        assert_refused(&r, 403, "consent-required", "not by the sender");
        let refused: Vec<LogEntry> = gw
            .log_entries()
            .await
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| e.event() == EventKind::MessageRefused)
            .collect();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].outcome, "consent-required");
        assert_eq!(refused[0].flow_id.as_deref(), Some("P4"));
        let detail = refused[0].detail.as_deref().unwrap_or_default();
        assert!(
            detail.contains("registered by another organisation, not by the sender"),
            "{detail}"
        );
        assert!(
            !detail.contains("121547280") && !detail.contains("wijkteam-noord"),
            "{detail}"
        );
        assert!(gw.client("wijkteam-noord").inbox().await.is_empty());

        // The school's own consent unlocks it.
        let r = school
            .post_json(
                "/v1/consents",
                &consent("wijkteam-noord", "vroegsignalering", "ouder"),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let r = school.post("/v1/messages", &example("P4")).await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(gw.client("wijkteam-noord").inbox().await.len(), 1);
        assert_absent(gw.stderr().as_bytes(), &canaries, "the tracing output");
        assert_absent(&gw.database_bytes(), &canaries, "the database");
    }
}

/// Issue 25, defect 2: who may consent follows the pupil's age on the day of disclosure, and an unknown age never
/// lets an age-dependent consent count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_school_discloses_under_the_uavg_ages_and_an_unknown_age_is_refused() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let school = gw.client("obs-de-linde");
        let register = |given_by: &str, birth: Option<&str>| {
            let mut c = consent("wijkteam-noord", "vroegsignalering", given_by);
            if let Some(b) = birth {
                c["subject_birth_date"] = json!(b);
            }
            c
        };
        // No birth date in the message nor on the consent: 422, nothing delivered.
        let r = school
            .post_json("/v1/consents", &register("ouder", None))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["consent_id"].as_str().unwrap().to_owned();
        let r = school.post("/v1/messages", &p4_born(None)).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (422, "consent-age-unknown"),
            "{}",
            r.text()
        );
        // 10 years old: a parent's consent counts (the pupil's alone is refused in
        // p4_needs_consent_and_withdrawal_reaches_waiting_messages).
        let ten = born_years_ago(10);
        let r = school.post("/v1/messages", &p4_born(Some(&ten))).await;
        assert_eq!(r.status, 201, "{}", r.text());
        // ... also with the age from the consent when the message has none.
        assert_eq!(
            school.delete(&format!("/v1/consents/{id}")).await.status,
            200
        );
        let r = school
            .post_json("/v1/consents", &register("ouder", Some(&ten)))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let parent_id = r.json()["consent_id"].as_str().unwrap().to_owned();
        let r = school.post("/v1/messages", &p4_born(None)).await;
        assert_eq!(r.status, 201, "{}", r.text());

        // 17 years old: the parent alone is refused, the young person's consent counts.
        let seventeen = born_years_ago(17);
        let r = school
            .post("/v1/messages", &p4_born(Some(&seventeen)))
            .await;
        assert_refused(&r, 403, "consent-required", "UAVG art. 5");
        // (The parent's consent would still cover the parents' own data; withdrawn, so only the pupil's is left.)
        assert_eq!(
            school
                .delete(&format!("/v1/consents/{parent_id}"))
                .await
                .status,
            200
        );
        let r = school
            .post_json("/v1/consents", &register("jongere", Some(&seventeen)))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let r = school
            .post("/v1/messages", &p4_born(Some(&seventeen)))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        // The parents' own data needs the parents' consent at every age: withheld, with its reason.
        let body = r.json();
        let withheld = body["withheld"].as_array().unwrap();
        assert!(
            withheld.iter().any(|w| w["field"] == "ouders[0].naam"
                && w["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("consent-not-parents")),
            "{body}"
        );
        assert!(
            body["delivered"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "leerling.voornamen"),
            "{body}"
        );
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
    }
}

/// Issue 25, deliverables 1 and 2: the wijkteam, which never holds the PGN, registers its consent by the id of
/// the P4 it received (only its receiver may), and its P5 follows the Jeugdwet's ages with the policy's stricter
/// choice for 12 to 15.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wijkteam_registers_by_message_id_and_discloses_under_the_jeugdwet_ages() {
    let canaries = canaries();
    for backend in backends() {
        let gw = Gateway::start(backend);
        let school = gw.client("obs-de-linde");
        let wijkteam = gw.client("wijkteam-noord");
        let p4_id = p4_with_the_schools_consent(&gw, "ouder-en-jongere").await;
        assert_eq!(wijkteam.inbox().await.len(), 1);

        let by_message = |given_by: &str, years: i32| {
            json!({
                "subject": {"message_id": p4_id},
                "subject_birth_date": born_years_ago(years),
                "purpose": "afstemming-ondersteuning",
                "recipient": "obs-de-linde",
                "categories": ["*"],
                "given_by": given_by,
                "evidence": "toestemmingsformulier jeugdhulp, clientdossier",
                "valid_from": "2026-01-01",
                "valid_until": "2030-07-31"
            })
        };
        // Not the message's receiver, or no such message: 404, as for any message that is not one's own.
        for (partner, body) in [
            ("cbs-het-anker", by_message("ouder", 10)),
            ("obs-de-linde", by_message("ouder", 10)),
            ("wijkteam-noord", {
                let mut b = by_message("ouder", 10);
                b["subject"] = json!({"message_id": "0".repeat(32)});
                b
            }),
        ] {
            let r = gw.client(partner).post_json("/v1/consents", &body).await;
            assert_eq!(
                (r.status, r.code().as_str()),
                (404, "not-found"),
                "{partner}: {}",
                r.text()
            );
        }
        let mut bad = by_message("ouder", 10);
        bad["subject"] = json!({"message_id": "../etc"});
        let r = wijkteam.post_json("/v1/consents", &bad).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (422, "invalid-subject"),
            "{}",
            r.text()
        );

        // 13 years old, the wijkteam provides jeugdhulp: the law would let the young person decide; the default
        // policy asks both. A parent alone does not count from 12.
        for given_by in ["jongere", "ouder"] {
            let r = wijkteam
                .post_json("/v1/consents", &by_message(given_by, 13))
                .await;
            assert_eq!(r.status, 201, "{}", r.text());
            let id = r.json()["consent_id"].as_str().unwrap().to_owned();
            let r = wijkteam.post("/v1/messages", &p5_replying_to(&p4_id)).await;
            assert_refused(&r, 403, "consent-required", "Jeugdwet art. 7.3.11");
            assert_eq!(
                wijkteam.delete(&format!("/v1/consents/{id}")).await.status,
                200
            );
        }
        // After the P4 is acknowledged (its payload purged), its disclosure entry still names the pupil.
        let r = wijkteam.post(&format!("/v1/inbox/{p4_id}/ack"), b"").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let r = wijkteam
            .post_json("/v1/consents", &by_message("ouder-en-jongere", 13))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let consent_id = r.json()["consent_id"].as_str().unwrap().to_owned();
        let r = wijkteam.post("/v1/messages", &p5_replying_to(&p4_id)).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let inbox = school.inbox().await;
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0]["data"]["wijkteam"]["betrokken"], true);
        assert_absent(&serde_json::to_vec(&inbox).unwrap(), &canaries, "P5 inbox");

        // Only the pseudonym is kept, the same as the P4's; the registration names the way the pupil was found.
        let entries: Vec<LogEntry> = gw.log_entries().await.into_iter().map(|(_, e)| e).collect();
        let p4_entry = entries
            .iter()
            .find(|e| {
                e.event() == EventKind::MessageDisclosed && e.message_id.as_deref() == Some(&*p4_id)
            })
            .unwrap();
        let recorded = entries
            .iter()
            .find(|e| e.event() == EventKind::ConsentRecorded && e.consents == [consent_id.clone()])
            .unwrap();
        assert_eq!(recorded.subject, p4_entry.subject);
        assert!(
            recorded.detail.as_deref().unwrap().contains("received"),
            "{recorded:?}"
        );
        let listed = wijkteam.get("/v1/consents").await.json();
        let mine = listed["consents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["consent_id"] == consent_id.as_str())
            .unwrap()
            .clone();
        assert_eq!(mine["subject_ref"].as_str(), p4_entry.subject.as_deref());
        assert_eq!(mine["subject_birth_date"], json!(born_years_ago(13)));
        // The refused registrations were logged, naming no message of another organisation.
        let refused = entries
            .iter()
            .filter(|e| e.event() == EventKind::ConsentRefused && e.outcome == "not-found")
            .count();
        assert_eq!(refused, 3);
        assert_absent(
            &gw.database_bytes(),
            &["121547280".to_owned()],
            "the database",
        );
        assert_absent(gw.stderr().as_bytes(), &canaries, "the tracing output");
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
    }
}
