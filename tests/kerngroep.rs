//! P13, a kerngroep case, end to end over real mutual TLS on SQLite and PostgreSQL: one message with `recipients` and
//! a `case_id`; leerplicht, the SWV and the wijkteam each get what their own flow allows on their own basis (the
//! wijkteam only with the school's consent, leerplicht never on consent); one 201 with each recipient's part, or one
//! refusal when nobody may receive anything; all recipients' entries and mailbox rows in one transaction or none
//! (a fault injected in the database between them); the privacy officer finds the case by its id, and the art. 15
//! report names every recipient. No `CANARY-` value reaches an inbox, the log or the tracing output.

mod common;

use common::*;
use serde_json::{json, Value};

const PUPIL: &str = "252760189";
const LEERPLICHT: &str = "leerplicht-gemeente";
const SWV: &str = "swv-vo-zuid";
const WIJKTEAM: &str = "wijkteam-noord";
const SCHOOL: &str = "lyceum-zuid";

fn case(case_id: &str) -> Value {
    let mut v = example_json("P13");
    v["case_id"] = json!(case_id);
    v
}

fn body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

async fn consent(gw: &Gateway, recipient: &str) {
    consent_by(gw, SCHOOL, recipient, "kerngroep-thuiszitter").await
}

async fn consent_by(gw: &Gateway, by: &str, recipient: &str, purpose: &str) {
    register_consent(gw, by, PUPIL, purpose, recipient, "2012-07-19").await;
}

/// The part of the 201 for `to`.
fn part<'a>(sent: &'a Value, to: &str) -> &'a Value {
    sent["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["to"] == to)
        .unwrap_or_else(|| panic!("no part for {to}: {sent}"))
}

/// The message of the case in `receiver`'s inbox (none when it was refused its part).
async fn inbox_item(gw: &Gateway, receiver: &str, case_id: &str) -> Option<Value> {
    let inbox = gw.client(receiver).inbox().await;
    assert_absent(
        serde_json::to_string(&inbox).unwrap().as_bytes(),
        &canaries(),
        &format!("the inbox of {receiver}"),
    );
    let mut of_case: Vec<Value> = inbox
        .into_iter()
        .filter(|m| m["case_id"] == case_id)
        .collect();
    assert!(of_case.len() <= 1, "{of_case:?}");
    of_case.pop()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

/// The case's entries as the operator's privacy officer finds them with the `case_id` filter.
async fn case_entries(gw: &Gateway, case_id: &str) -> Vec<Value> {
    let r = gw
        .client("fg-operator")
        .get(&format!("/v1/audit/disclosures?case_id={case_id}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_absent(&r.body, &canaries(), "the officer's search");
    r.json()["entries"].as_array().unwrap().clone()
}

fn nothing_leaked(
    gw: &Gateway,
    entries: &[(
        ketenpoort::store::StoredEntry,
        ketenpoort::audit::entry::LogEntry,
    )],
) {
    for (e, _) in entries {
        assert_absent(&e.bytes, &canaries(), "the log");
    }
    assert_absent(gw.stderr().as_bytes(), &canaries(), "the tracing output");
    let (ok, out) = gw.audit_verify();
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p13_each_recipient_gets_what_its_own_flow_allows_in_one_case() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        // A consent registered for leerplicht changes nothing: consent is never the basis of leerplicht's part.
        consent(&gw, LEERPLICHT).await;
        // The wrong consents for the wijkteam: one the wijkteam registered itself, and one of the school for
        // another purpose. Neither unlocks the school's disclosure.
        consent_by(&gw, WIJKTEAM, WIJKTEAM, "kerngroep-thuiszitter").await;
        consent_by(&gw, SCHOOL, WIJKTEAM, "vroegsignalering").await;

        // Without the school's consent for the wijkteam: leerplicht and the SWV get their parts, the wijkteam nothing.
        let first = "0190f3a1-b2c3-7d4e-8f60-000000000001";
        let r = gw
            .client(SCHOOL)
            .post("/v1/messages", &body(&case(first)))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert_absent(&r.body, &canaries(), "the 201");
        let sent = r.json();
        assert_eq!(sent["case_id"], first);
        let order: Vec<&str> = sent["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["to"].as_str().unwrap())
            .collect();
        assert_eq!(order, [LEERPLICHT, SWV, WIJKTEAM], "the sender's order");
        assert_eq!(part(&sent, LEERPLICHT)["flow"], "P13-leerplicht");
        assert_eq!(part(&sent, SWV)["flow"], "P13-swv");
        let refused = part(&sent, WIJKTEAM);
        assert_eq!(refused["refused"]["code"], "consent-required", "{sent}");
        assert_eq!(refused["refused"]["status"], 403);
        assert!(refused.get("message_id").is_none());
        let mut seqs: Vec<u64> = sent["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                p["disclosure"]["seq"]
                    .as_u64()
                    .expect("each part has its entry")
            })
            .collect();
        seqs.dedup();
        assert_eq!(seqs.len(), 3, "three entries: {sent}");

        // Leerplicht: under the Leerplichtwet; no PGN, no OPP, no home, youth care or diagnoses.
        let l = inbox_item(&gw, LEERPLICHT, first)
            .await
            .expect("leerplicht's part");
        assert_eq!(l["message_id"], part(&sent, LEERPLICHT)["message_id"]);
        assert!(
            l["subject"].is_null(),
            "no PGN to leerplicht: {}",
            l["subject"]
        );
        assert_eq!(
            keys(&l["data"]),
            [
                "casus",
                "leerling",
                "ondersteuning",
                "ouders",
                "school",
                "verzuim"
            ]
        );
        assert_eq!(keys(&l["data"]["ondersteuning"]), ["geprobeerd"]);
        assert_eq!(l["data"]["verzuim"], case(first)["data"]["verzuim"]);

        // The SWV: its task; the PGN pseudonymised; the OPP and arrangements; diagnoses and home only with consent.
        let s = inbox_item(&gw, SWV, first).await.expect("the SWV's part");
        assert!(s["subject"].is_object() && !s["subject"].to_string().contains(PUPIL));
        assert_eq!(
            s["data"]["ondersteuning"],
            case(first)["data"]["ondersteuning"]
        );
        for never in ["diagnoses", "jeugdhulp", "thuissituatie"] {
            assert!(
                s["data"].get(never).is_none(),
                "{never} to the SWV without consent"
            );
        }
        let withheld: Vec<String> = part(&sent, SWV)["withheld"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                format!(
                    "{}={}",
                    w["field"].as_str().unwrap(),
                    w["reason"].as_str().unwrap()
                )
            })
            .collect();
        for field in ["diagnoses[0].categorie", "thuissituatie.zorgpunt"] {
            let why = format!("{field}=consent-missing");
            assert!(withheld.iter().any(|w| w.starts_with(&why)), "{withheld:?}");
        }

        assert!(
            inbox_item(&gw, WIJKTEAM, first).await.is_none(),
            "the wijkteam got something without consent"
        );

        // With the school's consents the wijkteam gets its part, and the SWV the diagnosis and the point of concern.
        consent(&gw, WIJKTEAM).await;
        consent(&gw, SWV).await;
        let second = "0190f3a1-b2c3-7d4e-8f60-000000000002";
        let r = gw
            .client(SCHOOL)
            .post("/v1/messages", &body(&case(second)))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let sent2 = r.json();
        assert_eq!(part(&sent2, WIJKTEAM)["flow"], "P13-wijkteam", "{sent2}");
        let w = inbox_item(&gw, WIJKTEAM, second)
            .await
            .expect("the wijkteam's part");
        assert!(w["subject"].is_null());
        assert_eq!(
            w["data"]["leerling"]["geboortedatum"], "2012",
            "the birth year only"
        );
        assert_eq!(w["data"]["verzuim"]["uren_12mnd"], "210-219", "a band");
        assert_eq!(w["data"]["casus"], case(second)["data"]["casus"]);
        assert_eq!(
            w["data"]["thuissituatie"],
            json!({"zorgpunt": "Moeder is langdurig ziek."})
        );
        for never in ["school", "diagnoses", "jeugdhulp"] {
            assert!(w["data"].get(never).is_none(), "{never} to the wijkteam");
        }
        assert_eq!(keys(&w["data"]["ondersteuning"]), ["geprobeerd"]);
        let s2 = inbox_item(&gw, SWV, second).await.expect("the SWV's part");
        assert_eq!(s2["data"]["diagnoses"], json!([{"categorie": "ass"}]));
        assert_eq!(
            s2["data"]["thuissituatie"],
            json!({"zorgpunt": "Moeder is langdurig ziek."})
        );
        // Leerplicht's part is the same as without consents: none is used for it.
        let l2 = inbox_item(&gw, LEERPLICHT, second)
            .await
            .expect("leerplicht's part");
        assert_eq!(l2["data"], l["data"]);

        // The officer finds each case as one group; the log records which consents each part rests on.
        let entries = case_entries(&gw, first).await;
        let mut events: Vec<(String, String, String)> = entries
            .iter()
            .map(|e| {
                assert_eq!(e["case_id"], first, "{e}");
                (
                    e["receiver"].as_str().unwrap().to_owned(),
                    e["event"].as_str().unwrap().to_owned(),
                    e["outcome"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        events.sort();
        assert_eq!(
            events,
            [
                (LEERPLICHT.into(), "message-disclosed".into(), "ok".into()),
                (SWV.into(), "message-disclosed".into(), "ok".into()),
                (
                    WIJKTEAM.into(),
                    "message-refused".into(),
                    "consent-required".into()
                ),
            ]
        );
        let entries2 = case_entries(&gw, second).await;
        assert_eq!(entries2.len(), 3);
        for e in &entries2 {
            let consents = e["consents"].as_array().map_or(0, Vec::len);
            match e["receiver"].as_str().unwrap() {
                LEERPLICHT => assert_eq!(consents, 0, "leerplicht's part rests on no consent: {e}"),
                _ => assert!(consents > 0, "{e}"),
            }
        }

        // Art. 15: the school's FG sees every recipient of the pupil's data.
        let r = gw
            .client("fg-lyceum-zuid")
            .get(&format!("/v1/audit/subjects/{PUPIL}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_absent(&r.body, &canaries(), "the art. 15 report");
        let report = r.json();
        let mut recipients: Vec<&str> = report["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["organisation"].as_str().unwrap())
            .collect();
        recipients.sort();
        assert_eq!(recipients, [LEERPLICHT, SWV, WIJKTEAM], "{report}");

        nothing_leaked(&gw, &gw.log_entries().await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p13_refused_for_every_recipient_is_one_refusal_and_nothing_is_delivered() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let inboxes = [
            LEERPLICHT,
            SWV,
            WIJKTEAM,
            "leerplicht-buurgemeente",
            "swv-po-noord",
        ];
        let before = {
            let mut n = 0;
            for r in inboxes {
                n += gw.client(r).inbox().await.len();
            }
            n
        };
        let refuse = |v: Value, status: u16, code: &'static str, what: &'static str| {
            let gw = &gw;
            async move {
                let r = gw.client(SCHOOL).post("/v1/messages", &body(&v)).await;
                assert_eq!(
                    (r.status, r.code()),
                    (status, code.to_owned()),
                    "{what}: {}",
                    r.text()
                );
                assert_absent(&r.body, &canaries(), what);
                r.json()
            }
        };

        // The wrong office and the wrong SWV: the same code for both, so that code.
        let mut wrong = case("0190f3a1-b2c3-7d4e-8f60-000000000003");
        wrong["recipients"] = json!(["leerplicht-buurgemeente", "swv-po-noord"]);
        let p = refuse(
            wrong,
            403,
            "receiver-not-responsible",
            "the wrong receivers",
        )
        .await;
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("leerplicht-buurgemeente"),
            "{p}"
        );
        // Different reasons: the wrong office and a wijkteam without consent.
        let mut mixed = case("0190f3a1-b2c3-7d4e-8f60-000000000004");
        mixed["recipients"] = json!(["leerplicht-buurgemeente", WIJKTEAM]);
        let p = refuse(
            mixed,
            403,
            "no-recipient-may-receive",
            "wrong receiver and no consent",
        )
        .await;
        let detail = p["detail"].as_str().unwrap();
        assert!(
            detail.contains("receiver-not-responsible") && detail.contains("consent-required"),
            "{detail}"
        );
        // A missing required field (the question to the kerngroep) refuses every part that requires it.
        let mut no_question = case("0190f3a1-b2c3-7d4e-8f60-000000000005");
        no_question["recipients"] = json!([LEERPLICHT, SWV]);
        no_question["data"]["casus"]
            .as_object_mut()
            .unwrap()
            .remove("vraag");
        refuse(no_question, 422, "missing-required-field", "no question").await;
        // A purpose that is no kerngroep case: no flow for any recipient.
        let mut other = case("0190f3a1-b2c3-7d4e-8f60-000000000006");
        other["purpose"] = json!("tlv-aanvraag");
        refuse(other, 403, "no-policy", "recipients for another purpose").await;
        // A kerngroep purpose sent with `to` is refused: it is a case, or nothing.
        let mut single = case("0190f3a1-b2c3-7d4e-8f60-000000000007");
        let o = single.as_object_mut().unwrap();
        o.remove("recipients");
        o.remove("case_id");
        o.insert("to".into(), json!(LEERPLICHT));
        refuse(
            single,
            422,
            "invalid-envelope",
            "a kerngroep purpose with `to`",
        )
        .await;

        // The envelope's rules, before any recipient is looked at.
        let good = case("0190f3a1-b2c3-7d4e-8f60-000000000008");
        let with = |key: &str, value: Value| {
            let mut v = good.clone();
            v[key] = value;
            v
        };
        for (v, code, what) in [
            (
                with("recipients", json!([LEERPLICHT])),
                "invalid-envelope",
                "one recipient",
            ),
            (
                with(
                    "recipients",
                    json!([LEERPLICHT, SWV, WIJKTEAM, "a", "b", "c", "d", "e", "f"]),
                ),
                "invalid-envelope",
                "nine recipients",
            ),
            (
                with("recipients", json!([LEERPLICHT, LEERPLICHT])),
                "invalid-envelope",
                "a recipient twice",
            ),
            (
                with("recipients", json!(LEERPLICHT)),
                "invalid-envelope",
                "not a list",
            ),
            (
                with("case_id", json!("dossier-CANARY-KERNGROEP-NAAM")),
                "invalid-envelope",
                "a case id that is no UUID",
            ),
            (
                with("to", json!(LEERPLICHT)),
                "invalid-envelope",
                "to and recipients",
            ),
            (
                with("recipients", json!([LEERPLICHT, "onbekende-partner"])),
                "unknown-receiver",
                "an unknown recipient",
            ),
        ] {
            refuse(v, 422, code, what).await;
        }
        let mut no_case = good.clone();
        no_case.as_object_mut().unwrap().remove("case_id");
        refuse(
            no_case,
            422,
            "invalid-envelope",
            "recipients without a case id",
        )
        .await;

        let mut after = 0;
        for r in inboxes {
            after += gw.client(r).inbox().await.len();
        }
        assert_eq!(after, before, "a refused case delivered something");

        // Each recipient's refusal is logged with the case id: the officer sees the refused case too.
        let entries = case_entries(&gw, "0190f3a1-b2c3-7d4e-8f60-000000000004").await;
        let mut outcomes: Vec<&str> = entries
            .iter()
            .map(|e| e["outcome"].as_str().unwrap())
            .collect();
        outcomes.sort();
        assert_eq!(outcomes, ["consent-required", "receiver-not-responsible"]);
        assert!(entries.iter().all(|e| e["event"] == "message-refused"));
        let r = gw
            .client("fg-operator")
            .get("/v1/audit/disclosures?case_id=CANARY-not-a-uuid")
            .await;
        assert_eq!(
            (r.status, r.code()),
            (422, "invalid-filter".to_owned()),
            "{}",
            r.text()
        );
        assert_absent(&r.body, &canaries(), "the filter's refusal");
        nothing_leaked(&gw, &gw.log_entries().await);
    }
}

/// A trigger that makes the insert of one recipient's mailbox row fail: the transaction holding every recipient's
/// entry and row fails between them.
async fn inject_fault(gw: &Gateway, receiver: &str) {
    let sql = match gw.backend {
        Backend::Sqlite => format!(
            "CREATE TRIGGER kerngroep_fault BEFORE INSERT ON messages WHEN NEW.receiver = '{receiver}' \
             BEGIN SELECT RAISE(ABORT, 'injected fault'); END;"
        ),
        Backend::Postgres => format!(
            "CREATE FUNCTION kerngroep_fault() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.receiver = '{receiver}' THEN RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER kerngroep_fault BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION kerngroep_fault();"
        ),
    };
    exec_sql(gw.backend, &gw.database_url, &sql).await;
}

async fn remove_fault(gw: &Gateway) {
    let sql = match gw.backend {
        Backend::Sqlite => "DROP TRIGGER kerngroep_fault;",
        Backend::Postgres => {
            "DROP TRIGGER kerngroep_fault ON messages; DROP FUNCTION kerngroep_fault();"
        }
    };
    exec_sql(gw.backend, &gw.database_url, sql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p13_all_recipients_commit_together_or_none() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let case_id = "0190f3a1-b2c3-7d4e-8f60-000000000009";
        let msg = body(&case(case_id));
        let key = [
            ("idempotency-key", "kerngroep-fault-1"),
            ("content-type", "application/json"),
        ];
        let size_before = gw.log_entries().await.len();

        // The SWV's mailbox row fails after leerplicht's was inserted in the same transaction.
        inject_fault(&gw, SWV).await;
        let r = gw
            .client(SCHOOL)
            .request("POST", "/v1/messages", &key, Some(msg.clone()))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (503, "audit-unavailable".to_owned()),
            "{}",
            r.text()
        );
        assert_absent(&r.body, &canaries(), "the 503");
        assert!(
            inbox_item(&gw, LEERPLICHT, case_id).await.is_none(),
            "leerplicht got its part of a failed case"
        );
        assert!(inbox_item(&gw, SWV, case_id).await.is_none());
        let entries = gw.log_entries().await;
        assert!(
            entries
                .iter()
                .all(|(s, _)| s.case_id.as_deref() != Some(case_id)),
            "an entry of the failed case was committed"
        );
        assert!(
            entries[size_before..]
                .iter()
                .all(|(s, _)| s.event != "message-disclosed" && s.event != "message-refused"),
            "the failed case left entries"
        );

        // The fault gone, the same request with the same key commits every part (the gateway may first need to
        // prove it can write again).
        remove_fault(&gw).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let sent = loop {
            let r = gw
                .client(SCHOOL)
                .request("POST", "/v1/messages", &key, Some(msg.clone()))
                .await;
            if r.status == 201 {
                break r.json();
            }
            assert_eq!(r.status, 503, "{}", r.text());
            assert!(
                std::time::Instant::now() < deadline,
                "never recovered: {}",
                r.text()
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        for to in [LEERPLICHT, SWV] {
            let item = inbox_item(&gw, to, case_id)
                .await
                .unwrap_or_else(|| panic!("{to}"));
            assert_eq!(item["message_id"], part(&sent, to)["message_id"]);
            assert_eq!(
                item["disclosure"],
                part(&sent, to)["disclosure"],
                "{to}'s row points at its own entry"
            );
        }
        assert_eq!(case_entries(&gw, case_id).await.len(), 3);

        // A replay answers the first result again, each recipient with its own log position.
        let r = gw
            .client(SCHOOL)
            .request("POST", "/v1/messages", &key, Some(msg.clone()))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json(), sent);
        assert_eq!(
            case_entries(&gw, case_id).await.len(),
            3,
            "a replay wrote entries"
        );
        nothing_leaked(&gw, &gw.log_entries().await);
    }
}
