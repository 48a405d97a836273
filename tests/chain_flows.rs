//! The chain's other exchanges end to end over real mutual TLS, on SQLite and PostgreSQL: P1 for every school
//! change (purpose `overstap`, one flow per legal basis), P8 warme overdracht (follows a P1 to the same school),
//! P9 melding Veilig Thuis, P10 ziekteverzuim → JGZ, P11 TLV-besluit and P12 anoniem consult. Per flow: the responsible receiver gets
//! exactly the fields the policy allows, a wrong one gets nothing (403 `receiver-not-responsible`, logged), and no
//! `CANARY-` value reaches an inbox, the log or the tracing output. The decisions field by field are unit-tested in
//! `src/policy/flow_tests.rs`.

mod common;

use common::*;
use serde_json::{json, Value};

const PUPIL: &str = "628194821";
const OTHER_PUPIL: &str = "121547280";

fn body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// P1's example as purpose `overstap` to `to`, where the pupil is aangemeld.
fn overstap(to: &str) -> Value {
    let mut v = example_json("P1");
    v["purpose"] = json!("overstap");
    v["to"] = json!(to);
    v["data"]["aanmelding"]["school"] = json!(to);
    v
}

fn without_reply(name: &str) -> Value {
    let mut v = example_json(name);
    v.as_object_mut().unwrap().shift_remove("in_reply_to");
    v
}

fn json_reply(name: &str, answered: &str) -> Value {
    serde_json::from_slice(&reply(name, answered)).unwrap()
}

async fn consent(gw: &Gateway, by: &str, pgn: &str, purpose: &str, recipient: &str) -> String {
    register_consent(gw, by, pgn, purpose, recipient, "2014-03-02").await
}

/// Sends and expects 201 for flow `flow`; the response.
async fn served(gw: &Gateway, from: &str, msg: &Value, flow: &str) -> Value {
    let r = gw.client(from).post("/v1/messages", &body(msg)).await;
    assert_eq!(r.status, 201, "{flow} from {from}: {}", r.text());
    let sent = r.json();
    assert_eq!(sent["flow"], flow, "{sent}");
    sent
}

/// Sends and expects the refusal; the receiver's inbox stays as it was and the answer quotes no canary.
async fn refused(gw: &Gateway, from: &str, msg: &Value, status: u16, code: &str, what: &str) {
    let receiver = msg["to"].as_str().unwrap().to_owned();
    let before = gw.client(&receiver).inbox().await.len();
    let r = gw.client(from).post("/v1/messages", &body(msg)).await;
    assert_eq!(
        (r.status, r.code()),
        (status, code.to_owned()),
        "{what}: {}",
        r.text()
    );
    assert_absent(&r.body, &canaries(), what);
    assert_eq!(
        gw.client(&receiver).inbox().await.len(),
        before,
        "{what}: something was delivered"
    );
}

/// The receiver's inbox item of a sent message.
async fn received(gw: &Gateway, receiver: &str, sent: &Value) -> Value {
    let inbox = gw.client(receiver).inbox().await;
    assert_absent(
        serde_json::to_string(&inbox).unwrap().as_bytes(),
        &canaries(),
        &format!("the inbox of {receiver}"),
    );
    inbox
        .into_iter()
        .find(|m| m["message_id"] == sent["message_id"])
        .unwrap_or_else(|| panic!("{receiver} did not get {sent}"))
}

/// No canary in the log entries or the tracing output; returns the number of refusals logged with `code`.
async fn nothing_leaked(gw: &Gateway, code: &str) -> usize {
    let entries = gw.log_entries().await;
    for (e, _) in &entries {
        assert_absent(&e.bytes, &canaries(), "the log");
    }
    assert_absent(gw.stderr().as_bytes(), &canaries(), "the tracing output");
    let (ok, out) = gw.audit_verify();
    assert!(ok, "{out}");
    entries
        .iter()
        .filter(|(e, _)| e.event == "message-refused" && e.outcome == code)
        .count()
}

fn subject_of(
    entries: &[(
        ketenpoort::store::StoredEntry,
        ketenpoort::audit::entry::LogEntry,
    )],
    id: &str,
) -> Option<String> {
    entries
        .iter()
        .find(|(s, e)| s.event == "message-disclosed" && e.message_id.as_deref() == Some(id))
        .and_then(|(s, _)| s.subject.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p1_overstap_reaches_the_school_where_aangemeld_for_every_school_change() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        for (from, to, flow) in [
            ("obs-de-linde", "cbs-het-anker", "P1-wpo"),
            ("obs-de-linde", "so-de-brug", "P1-wpo"),
            ("obs-de-linde", "lyceum-zuid", "P1-wpo"),
            ("so-de-brug", "obs-de-linde", "P1-wec-so"),
            ("lyceum-zuid", "mbo-college-zuid", "P1-wvo"),
        ] {
            let env = overstap(to);
            let sent = served(&gw, from, &env, flow).await;
            let m = received(&gw, to, &sent).await;
            assert_eq!(m["purpose"], "overstap");
            assert_eq!(
                m["subject"],
                json!({"pgn": PUPIL}),
                "WPO 178a / WEC 164a / WVO 2020"
            );
            let data = &m["data"];
            // The OPP from any sender; the report as the Besluit lists it.
            for key in [
                "ondersteuning",
                "leerling",
                "ouders",
                "aanmelding",
                "inzage",
                "toetsen",
                "advies",
                "verzuim",
            ] {
                assert_eq!(data[key], env["data"][key], "{flow}: {key}");
            }
            assert_eq!(
                data["ondersteuning"]["opp"],
                env["data"]["ondersteuning"]["opp"]
            );
            for never in ["jeugdhulp", "justitie", "bijlagen", "cognitief"] {
                assert!(data.get(never).is_none(), "{flow}: {never} delivered");
            }
            assert!(data["thuissituatie"].get("details").is_none());
            // Only the school where the pupil is aangemeld.
            let mut elsewhere = env.clone();
            let other = if to == "cbs-het-anker" {
                "so-de-brug"
            } else {
                "cbs-het-anker"
            };
            elsewhere["data"]["aanmelding"]["school"] = json!(other);
            refused(&gw, from, &elsewhere, 403, "receiver-not-responsible", flow).await;
        }
        // A change the law does not cover is no flow.
        refused(
            &gw,
            "obs-de-linde",
            &overstap("mbo-college-zuid"),
            403,
            "no-policy",
            "po → mbo",
        )
        .await;
        // The old purpose, exactly as before.
        served(&gw, "obs-de-linde", &example_json("P1"), "P1").await;
        assert_eq!(nothing_leaked(&gw, "receiver-not-responsible").await, 5);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p8_follows_a_p1_to_the_same_school_only() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let nr = "receiver-not-responsible";
        consent(
            &gw,
            "obs-de-linde",
            PUPIL,
            "warme-overdracht",
            "lyceum-zuid",
        )
        .await;
        consent(
            &gw,
            "obs-de-linde",
            PUPIL,
            "warme-overdracht",
            "cbs-het-anker",
        )
        .await;
        let p1 = served(&gw, "obs-de-linde", &example_json("P1"), "P1").await;
        let p1 = p1["message_id"].as_str().unwrap().to_owned();
        let to_anker = served(&gw, "obs-de-linde", &overstap("cbs-het-anker"), "P1-wpo").await;
        let to_anker = to_anker["message_id"].as_str().unwrap().to_owned();

        refused(
            &gw,
            "obs-de-linde",
            &without_reply("P8"),
            422,
            "missing-required-field",
            "P8 without in_reply_to",
        )
        .await;
        refused(
            &gw,
            "obs-de-linde",
            &json_reply("P8", &"0".repeat(32)),
            404,
            "unknown-reference",
            "P8 following nothing",
        )
        .await;
        // The P1 went to lyceum-zuid: not to cbs-het-anker.
        let mut wrong = json_reply("P8", &p1);
        wrong["to"] = json!("cbs-het-anker");
        refused(
            &gw,
            "obs-de-linde",
            &wrong,
            403,
            nr,
            "P8 to another school than the P1's",
        )
        .await;
        // A P1 to cbs-het-anker does not open the way to lyceum-zuid.
        refused(
            &gw,
            "obs-de-linde",
            &json_reply("P8", &to_anker),
            403,
            nr,
            "P8 following a P1 to another school",
        )
        .await;
        // The other direction: the school that received the P1 cannot 'follow' it back.
        let mut back = json_reply("P8", &p1);
        back["to"] = json!("obs-de-linde");
        refused(
            &gw,
            "lyceum-zuid",
            &back,
            403,
            nr,
            "P8 in the other direction",
        )
        .await;
        // Another pupil than the P1's.
        let mut other = json_reply("P8", &p1);
        other["subject"] = json!({"pgn": OTHER_PUPIL});
        refused(
            &gw,
            "obs-de-linde",
            &other,
            403,
            nr,
            "P8 about another pupil",
        )
        .await;

        let env = json_reply("P8", &p1);
        let sent = served(&gw, "obs-de-linde", &env, "P8").await;
        let m = received(&gw, "lyceum-zuid", &sent).await;
        let data = &m["data"];
        for key in [
            "leerling",
            "thuissituatie",
            "diagnoses",
            "sociaal_emotioneel",
            "bijlagen",
        ] {
            assert_eq!(data[key], env["data"][key], "{key}");
        }
        assert!(data.get("jeugdhulp").is_none() && data.get("justitie").is_none());
        let withheld: Vec<&str> = sent["withheld"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["field"].as_str().unwrap())
            .collect();
        assert_eq!(
            withheld,
            [
                "jeugdhulp.betrokken",
                "jeugdhulp.inhoud",
                "justitie.halt_verwijzing"
            ]
        );

        // Without the sending school's consent: nothing.
        let p1_brug = served(&gw, "obs-de-linde", &overstap("so-de-brug"), "P1-wpo").await;
        let mut no_consent = json_reply("P8", p1_brug["message_id"].as_str().unwrap());
        no_consent["to"] = json!("so-de-brug");
        refused(
            &gw,
            "obs-de-linde",
            &no_consent,
            403,
            "consent-required",
            "P8 without consent",
        )
        .await;

        // A P1 the sender recalled (it went to the wrong school) opens no way for a P8.
        let recalled = served(&gw, "obs-de-linde", &overstap("cbs-het-anker"), "P1-wpo").await;
        let recalled = recalled["message_id"].as_str().unwrap().to_owned();
        let r = gw
            .client("obs-de-linde")
            .post_json(
                &format!("/v1/outbox/{recalled}/recall"),
                &json!({"reason": "verkeerde-ontvanger"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let mut after_recall = json_reply("P8", &recalled);
        after_recall["to"] = json!("cbs-het-anker");
        refused(
            &gw,
            "obs-de-linde",
            &after_recall,
            403,
            nr,
            "P8 following a recalled P1",
        )
        .await;
        // The same P8 following the P1 to cbs-het-anker that was not recalled goes.
        let mut followed = json_reply("P8", &to_anker);
        followed["to"] = json!("cbs-het-anker");
        served(&gw, "obs-de-linde", &followed, "P8").await;

        assert_eq!(nothing_leaked(&gw, nr).await, 5);
        let entries = gw.log_entries().await;
        assert_eq!(
            subject_of(&entries, sent["message_id"].as_str().unwrap()),
            subject_of(&entries, &p1),
            "P8 is about the P1's pupil"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p9_melding_reaches_the_veilig_thuis_of_the_woongemeente_whatever_the_consent() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let env = example_json("P9");
        for from in ["obs-de-linde", "wijkteam-noord", "jgz-ggd-zuid"] {
            let sent = served(&gw, from, &env, "P9").await;
            let m = received(&gw, "veilig-thuis-zuid", &sent).await;
            assert!(
                m["subject"].is_null(),
                "no PGN to Veilig Thuis: {}",
                m["subject"]
            );
            let data = &m["data"];
            for key in [
                "leerling",
                "ouders",
                "zorg",
                "sociaal_emotioneel",
                "meldcode",
                "melder",
            ] {
                assert_eq!(data[key], env["data"][key], "{from}: {key}");
            }
            for never in ["toetsen", "cognitief", "advies"] {
                assert!(data.get(never).is_none(), "{never}");
            }
        }
        // A consent the parents withdrew does not block the melding.
        let c = consent(
            &gw,
            "obs-de-linde",
            PUPIL,
            "melding-huiselijk-geweld",
            "veilig-thuis-zuid",
        )
        .await;
        let r = gw
            .client("obs-de-linde")
            .delete(&format!("/v1/consents/{c}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        served(&gw, "obs-de-linde", &env, "P9").await;

        // The client not told: the coded reason is required.
        let mut untold = env.clone();
        untold["data"]["meldcode"]["client_geinformeerd"] = json!(false);
        refused(
            &gw,
            "obs-de-linde",
            &untold,
            422,
            "missing-required-field",
            "not told, no reason",
        )
        .await;
        untold["data"]["meldcode"]["reden_niet_geinformeerd"] = json!("veiligheid-kind");
        let sent = served(&gw, "obs-de-linde", &untold, "P9").await;
        let m = received(&gw, "veilig-thuis-zuid", &sent).await;
        assert_eq!(
            m["data"]["meldcode"]["reden_niet_geinformeerd"],
            "veiligheid-kind"
        );
        // Only the Veilig Thuis serving the pupil's woongemeente.
        let mut elsewhere = env.clone();
        elsewhere["data"]["leerling"]["woongemeente"] = json!("0606");
        refused(
            &gw,
            "obs-de-linde",
            &elsewhere,
            403,
            "receiver-not-responsible",
            "P9 for a pupil of 0606",
        )
        .await;
        let mut no_justification = env.clone();
        no_justification
            .as_object_mut()
            .unwrap()
            .remove("justification");
        refused(
            &gw,
            "obs-de-linde",
            &no_justification,
            422,
            "justification-required",
            "P9 unjustified",
        )
        .await;
        assert_eq!(nothing_leaked(&gw, "receiver-not-responsible").await, 1);
    }
}

/// A wijkteam never holds the pupil number: it names the pupil of its P9 by a message it received
/// (`subject.message_id`), and the gateway takes the pupil from that message. Another organisation cannot name a
/// message it did not receive (404, never saying whether it exists).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p9_from_a_wijkteam_names_the_pupil_by_a_message_it_received() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        consent(
            &gw,
            "obs-de-linde",
            "121547280",
            "vroegsignalering",
            "wijkteam-noord",
        )
        .await;
        let p4 = served(&gw, "obs-de-linde", &example_json("P4"), "P4").await;
        let p4_id = p4["message_id"].as_str().unwrap().to_owned();
        received(&gw, "wijkteam-noord", &p4).await;

        let mut env = example_json("P9");
        env["subject"] = json!({"message_id": p4_id});
        let sent = served(&gw, "wijkteam-noord", &env, "P9").await;
        let m = received(&gw, "veilig-thuis-zuid", &sent).await;
        assert!(m["subject"].is_null());
        let entries = gw.log_entries().await;
        let p9_pupil = subject_of(&entries, sent["message_id"].as_str().unwrap());
        assert!(p9_pupil.is_some());
        assert_eq!(
            p9_pupil,
            subject_of(&entries, &p4_id),
            "the P9 is logged about the pupil of the P4"
        );

        // Not a message the JGZ received; not a message at all.
        refused(
            &gw,
            "jgz-ggd-zuid",
            &env,
            404,
            "unknown-reference",
            "another's message",
        )
        .await;
        env["subject"] = json!({"message_id": "0".repeat(32)});
        refused(
            &gw,
            "wijkteam-noord",
            &env,
            404,
            "unknown-reference",
            "no such message",
        )
        .await;
        env["subject"] = json!({"message_id": "not-an-id"});
        refused(
            &gw,
            "wijkteam-noord",
            &env,
            422,
            "invalid-subject",
            "a malformed id",
        )
        .await;
        nothing_leaked(&gw, "unknown-reference").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p10_ziekteverzuim_reaches_only_the_jgz_attached_to_the_school() {
    // obs-de-linde has no JGZ attached here; cbs-het-anker keeps jgz-ggd-zuid.
    let dir = TempDir::new("kp-p10-");
    let partners = std::fs::read_to_string(certs_dir().join("partners.toml")).unwrap();
    let detached = partners.replacen("jgz = [\"jgz-ggd-zuid\"]\n", "", 1);
    assert_ne!(partners, detached);
    std::fs::write(dir.path().join("partners.toml"), detached).unwrap();
    for backend in backends() {
        let mut opts = GatewayOptions::new(backend);
        opts.partners = Some(dir.path().join("partners.toml"));
        let gw = Gateway::start_with(opts);
        let env = example_json("P10");
        refused(
            &gw,
            "cbs-het-anker",
            &env,
            403,
            "consent-required",
            "P10 without consent",
        )
        .await;
        consent(
            &gw,
            "cbs-het-anker",
            PUPIL,
            "ziekteverzuim-begeleiding",
            "jgz-ggd-zuid",
        )
        .await;
        consent(
            &gw,
            "obs-de-linde",
            PUPIL,
            "ziekteverzuim-begeleiding",
            "jgz-ggd-zuid",
        )
        .await;
        refused(
            &gw,
            "obs-de-linde",
            &env,
            403,
            "receiver-not-responsible",
            "P10 to another school's JGZ",
        )
        .await;
        let sent = served(&gw, "cbs-het-anker", &env, "P10").await;
        let m = received(&gw, "jgz-ggd-zuid", &sent).await;
        assert!(
            m["subject"].is_null(),
            "no PGN to the JGZ: {}",
            m["subject"]
        );
        assert_eq!(m["data"]["leerling"], env["data"]["leerling"]);
        assert_eq!(m["data"]["ziekteverzuim"], env["data"]["ziekteverzuim"]);
        for never in ["diagnoses", "toetsen", "cognitief", "jeugdhulp"] {
            assert!(m["data"].get(never).is_none(), "{never}");
        }
        assert_eq!(nothing_leaked(&gw, "receiver-not-responsible").await, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p11_tlv_besluit_reaches_only_the_school_of_the_p2_about_its_pupil() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let p2 = served(&gw, "lyceum-zuid", &example_json("P2"), "P2").await;
        let p2 = p2["message_id"].as_str().unwrap().to_owned();
        let p1 = served(&gw, "obs-de-linde", &example_json("P1"), "P1").await;
        let p1 = p1["message_id"].as_str().unwrap().to_owned();

        refused(
            &gw,
            "swv-vo-zuid",
            &without_reply("P11"),
            422,
            "missing-required-field",
            "P11 without in_reply_to",
        )
        .await;
        refused(
            &gw,
            "swv-vo-zuid",
            &json_reply("P11", &p1),
            404,
            "unknown-reference",
            "P11 answering another's P1",
        )
        .await;
        refused(
            &gw,
            "swv-po-noord",
            &json_reply("P11", &p2),
            404,
            "unknown-reference",
            "P11 by an SWV without the P2",
        )
        .await;
        let mut wrong = json_reply("P11", &p2);
        wrong["to"] = json!("obs-de-linde");
        refused(
            &gw,
            "swv-vo-zuid",
            &wrong,
            403,
            "receiver-not-responsible",
            "P11 to another school",
        )
        .await;

        let env = json_reply("P11", &p2);
        let sent = served(&gw, "swv-vo-zuid", &env, "P11").await;
        let m = received(&gw, "lyceum-zuid", &sent).await;
        assert!(m["subject"].is_null());
        // No pupil number, but the school learns which of its P2s this decides, and so which pupil.
        assert_eq!(m["in_reply_to"], p2.as_str());
        let mut expected = env["data"].clone();
        expected.as_object_mut().unwrap().remove("diagnoses");
        assert_eq!(m["data"], expected);

        assert_eq!(nothing_leaked(&gw, "receiver-not-responsible").await, 1);
        let entries = gw.log_entries().await;
        let p11_subject = subject_of(&entries, sent["message_id"].as_str().unwrap());
        assert!(p11_subject.is_some());
        assert_eq!(
            p11_subject,
            subject_of(&entries, &p2),
            "P11 is about the P2's pupil"
        );
    }
}

/// P12: the anonymous consultation reaches only an SWV the school belongs to, whole and without a pupil; anything
/// identifying refuses it all (422, nothing in the inbox), and no entry of the log names a pupil.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p12_anoniem_consult_reaches_only_the_schools_swv_and_never_names_a_pupil() {
    // Values that must never reach an inbox, the log, a response or the tracing output.
    let secret: Vec<String> = [
        "CANARY-P12-NAAM",
        "CANARY-P12-BRIN",
        "CANARY-P12-ONBEKEND",
        "CANARY-P12-TEKST",
        "12-03-2014",
    ]
    .map(String::from)
    .to_vec();
    for backend in backends() {
        let gw = Gateway::start(backend);
        let env = example_json("P12");
        let mut other = env.clone();
        other["to"] = json!("swv-po-noord");
        refused(
            &gw,
            "lyceum-zuid",
            &other,
            403,
            "receiver-not-responsible",
            "P12 to an SWV the school does not belong to",
        )
        .await;

        let mut with_subject = env.clone();
        with_subject["subject"] = json!({"pgn": PUPIL});
        let mut name = env.clone();
        name["data"]["leerling"] = json!({"achternaam": "CANARY-P12-NAAM"});
        let mut brin = env.clone();
        brin["data"]["school"] = json!({"brin": "CANARY-P12-BRIN"});
        let mut unknown = env.clone();
        unknown["data"]["casus"]["extra"] = json!({"x": "CANARY-P12-ONBEKEND"});
        let mut both = env.clone();
        both["data"]["casus"]["leeftijdsband"] = json!("12-15");
        let mut date = env.clone();
        date["data"]["casus"]["vraag"] = json!("CANARY-P12-TEKST sinds 12-03-2014 in de klas.");
        for (msg, path) in [
            (&with_subject, "`subject`"),
            (&name, "leerling.achternaam"),
            (&brin, "school.brin"),
            (&unknown, "casus.extra.x"),
            (&both, "casus.leerjaar"),
            (&date, "casus.vraag"),
        ] {
            let before = gw.client("swv-vo-zuid").inbox().await.len();
            let r = gw
                .client("lyceum-zuid")
                .post("/v1/messages", &body(msg))
                .await;
            assert_eq!(
                (r.status, r.code()),
                (422, "identifying-data-in-anonymous-consult".to_owned()),
                "{path}: {}",
                r.text()
            );
            assert!(r.text().contains(path), "{path}: {}", r.text());
            assert_absent(&r.body, &secret, path);
            assert_absent(r.text().as_bytes(), &[PUPIL.to_owned()], path);
            assert_eq!(
                gw.client("swv-vo-zuid").inbox().await.len(),
                before,
                "{path}: something was delivered"
            );
        }

        let sent = served(&gw, "lyceum-zuid", &env, "P12").await;
        assert!(
            sent["withheld"].as_array().is_none_or(|w| w.is_empty()),
            "{sent}"
        );
        let m = received(&gw, "swv-vo-zuid", &sent).await;
        assert!(m["subject"].is_null(), "{}", m["subject"]);
        assert_eq!(m["data"], env["data"]);
        assert_absent(
            serde_json::to_string(&gw.client("swv-vo-zuid").inbox().await)
                .unwrap()
                .as_bytes(),
            &secret,
            "the inbox",
        );

        assert_eq!(nothing_leaked(&gw, "receiver-not-responsible").await, 1);
        let entries = gw.log_entries().await;
        let p12: Vec<_> = entries
            .iter()
            .filter(|(s, _)| s.flow_id.as_deref() == Some("P12"))
            .collect();
        // The disclosure, the wrong SWV and the six identifying messages.
        assert!(p12.len() >= 8, "{} P12 entries", p12.len());
        for (s, e) in &p12 {
            assert!(s.subject.is_none(), "{} names a pupil", s.event);
            assert!(e.subject.is_none(), "{} names a pupil", s.event);
            assert_absent(&s.bytes, &secret, "the log");
        }
        assert_eq!(
            p12.iter()
                .filter(|(s, _)| s.outcome == "identifying-data-in-anonymous-consult")
                .count(),
            6
        );
        assert_eq!(
            subject_of(&entries, sent["message_id"].as_str().unwrap()),
            None
        );
        assert_absent(gw.stderr().as_bytes(), &secret, "the tracing output");
    }
}
