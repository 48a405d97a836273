//! What e-mail cannot do, end to end over mutual TLS on SQLite and PostgreSQL: the sender's outbox, a recall before
//! the receiver fetched (the receiver never sees it, its value is gone from the database), a recall after the fetch
//! refused, "niet voor ons" opening an incident in the sender's breach register for the sender's FG only, and the FG
//! taking it to a close. Every step is in the log and `audit verify` passes. A recall racing a fetch on two
//! instances has exactly one winner.

mod common;

use common::*;
use ketenpoort::audit::entry::{EventKind, LogEntry};
use serde_json::{json, Value};

const CANARY: &str = "CANARY-OUTBOX-ROEPNAAM";

fn p1_with_canary() -> Value {
    let mut env = example_json("P1");
    env["data"]["leerling"]["roepnaam"] = json!(CANARY);
    env
}

async fn entries_of(gw: &Gateway, event: EventKind) -> Vec<LogEntry> {
    gw.log_entries()
        .await
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.event() == event)
        .collect()
}

async fn patch(c: &Client, path: &str, body: Value) -> Response {
    c.request(
        "PATCH",
        path,
        &[("content-type", "application/json")],
        Some(serde_json::to_vec(&body).unwrap()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_recalls_before_fetch_and_is_refused_after() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let school = gw.client("obs-de-linde");
        let vo = gw.client("lyceum-zuid");

        let r = school.post_json("/v1/messages", &p1_with_canary()).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let sent = r.json();
        let id = sent["message_id"].as_str().unwrap().to_owned();

        // The outbox: the sender's own messages, paths and times, no value.
        let r = school.get("/v1/outbox").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let list = r.json();
        let items = list["messages"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{list}");
        let m = &items[0];
        assert_eq!(m["message_id"], id.as_str());
        assert_eq!(m["to"], "lyceum-zuid");
        assert_eq!(m["flow"], "P1");
        assert_eq!(m["status"], "waiting");
        assert_eq!(m["delivered"], sent["delivered"]);
        assert_eq!(m["withheld"], sent["withheld"]);
        assert_eq!(m["disclosure"], sent["disclosure"]);
        assert!(m["times"]["sent"].is_string());
        assert_absent(&r.body, &[CANARY.to_owned()], "the outbox");
        assert_eq!(
            school.get("/v1/outbox?status=fetched").await.json()["messages"],
            json!([])
        );
        assert_eq!(
            school.get("/v1/outbox?status=bogus").await.code(),
            "invalid-query"
        );
        // Nobody else sees it or can recall it: 404, as for a message that does not exist.
        assert_eq!(vo.get(&format!("/v1/outbox/{id}")).await.status, 404);
        assert!(vo.get("/v1/outbox").await.json()["messages"]
            .as_array()
            .unwrap()
            .is_empty());
        let r = vo
            .post_json(
                &format!("/v1/outbox/{id}/recall"),
                &json!({"reason": "anders", "text": "x"}),
            )
            .await;
        assert_eq!(r.status, 404, "{}", r.text());

        // A recall without a valid reason is refused, nothing changes.
        let r = school
            .post_json(
                &format!("/v1/outbox/{id}/recall"),
                &json!({"reason": "oeps"}),
            )
            .await;
        assert_eq!((r.status, r.code()), (422, "invalid-report".to_owned()));
        let r = school
            .post_json(
                &format!("/v1/outbox/{id}/recall"),
                &json!({"reason": "anders"}),
            )
            .await;
        assert_eq!((r.status, r.code()), (422, "invalid-report".to_owned()));

        let r = school
            .post_json(
                &format!("/v1/outbox/{id}/recall"),
                &json!({"reason": "verkeerde-ontvanger"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let recalled = r.json();
        assert_eq!(recalled["status"], "recalled");
        assert!(recalled["incident"].is_string(), "{recalled}");
        // The receiver never sees it.
        assert!(vo.inbox().await.is_empty());
        assert_eq!(
            vo.post(&format!("/v1/inbox/{id}/ack"), b"").await.status,
            404
        );
        let m = school.get(&format!("/v1/outbox/{id}")).await.json();
        assert_eq!(m["status"], "recalled");
        assert_eq!(m["reason"], "verkeerde-ontvanger");
        assert!(m["times"]["recalled"].is_string(), "{m}");
        // Recalled again: nothing left.
        let r = school
            .post_json(
                &format!("/v1/outbox/{id}/recall"),
                &json!({"reason": "verkeerde-ontvanger"}),
            )
            .await;
        assert_eq!((r.status, r.code()), (409, "not-recallable".to_owned()));
        // The value is gone from the database; the log has the recall and the incident it opened.
        assert_absent(&gw.database_bytes(), &[CANARY.to_owned()], "the database");
        let recalls = entries_of(&gw, EventKind::MessageRecalled).await;
        let ok: Vec<_> = recalls.iter().filter(|e| e.outcome == "ok").collect();
        assert_eq!(ok.len(), 1, "{recalls:?}");
        assert_eq!(ok[0].message_id.as_deref(), Some(id.as_str()));
        assert_eq!(ok[0].flow_id.as_deref(), Some("P1"));
        assert!(recalls.iter().any(|e| e.outcome == "invalid-report"));
        assert!(recalls.iter().any(|e| e.outcome == "not-recallable"));
        let opened = entries_of(&gw, EventKind::IncidentOpened).await;
        assert_eq!(opened.len(), 1);
        assert!(opened[0]
            .detail
            .as_deref()
            .unwrap()
            .contains(recalled["incident"].as_str().unwrap()));

        // Once fetched, a recall is refused with the way forward.
        let r = school.post_json("/v1/messages", &p1_with_canary()).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let id2 = r.json()["message_id"].as_str().unwrap().to_owned();
        assert_eq!(vo.inbox().await.len(), 1);
        let r = school
            .post_json(
                &format!("/v1/outbox/{id2}/recall"),
                &json!({"reason": "verkeerde-leerling"}),
            )
            .await;
        assert_eq!((r.status, r.code()), (409, "already-fetched".to_owned()));
        assert!(r.text().contains("misaddressed"), "{}", r.text());
        let m = school.get(&format!("/v1/outbox/{id2}")).await.json();
        assert_eq!(m["status"], "fetched");
        assert!(m["times"]["fetched"].is_string());
        // Acknowledged: the outbox says so.
        assert_eq!(
            vo.post(&format!("/v1/inbox/{id2}/ack"), b"").await.status,
            200
        );
        let m = school.get(&format!("/v1/outbox/{id2}")).await.json();
        assert_eq!(m["status"], "acknowledged");
        assert!(m["times"]["acknowledged"].is_string());
        assert_absent(
            gw.stderr().as_bytes(),
            &[CANARY.to_owned()],
            "the tracing output",
        );
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn niet_voor_ons_opens_an_incident_that_the_senders_fg_takes_to_a_close() {
    const TEXT: &str = "CANARY-REPORT-TEXT";
    for backend in backends() {
        let gw = Gateway::start(backend);
        let school = gw.client("obs-de-linde");
        let vo = gw.client("lyceum-zuid");
        let fg = gw.client("fg-obs-de-linde");
        let other_fg = gw.client("fg-lyceum-zuid");

        let r = school.post_json("/v1/messages", &p1_with_canary()).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let sent = r.json();
        let id = sent["message_id"].as_str().unwrap().to_owned();
        assert_eq!(vo.inbox().await.len(), 1);

        // Only the receiver may report it.
        let report = json!({"reason": "anders", "copies_deleted": true, "text": TEXT});
        let path = format!("/v1/inbox/{id}/misaddressed");
        assert_eq!(
            gw.client("cbs-het-anker")
                .post_json(&path, &report)
                .await
                .status,
            404
        );
        assert_eq!(school.post_json(&path, &report).await.status, 404);
        let r = vo
            .post_json(&path, &json!({"reason": "anders", "copies_deleted": true}))
            .await;
        assert_eq!((r.status, r.code()), (422, "invalid-report".to_owned()));
        let r = vo.post_json(&path, &report).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["purged"], true);
        assert!(
            r.json().get("incident").is_none(),
            "the sender's register is not the receiver's business"
        );
        assert!(vo.inbox().await.is_empty());
        let r = vo.post_json(&path, &report).await;
        assert_eq!((r.status, r.code()), (409, "already-reported".to_owned()));
        let m = school.get(&format!("/v1/outbox/{id}")).await.json();
        assert_eq!(m["status"], "misaddressed");
        assert_eq!(m["reason"], "anders");

        // The incident is in the sender's register, for the sender's FG (and the operator's) only.
        assert_eq!(school.get("/v1/audit/incidents").await.status, 403);
        assert!(
            other_fg.get("/v1/audit/incidents").await.json()["incidents"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        let r = fg.get("/v1/audit/incidents").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let list = r.json();
        let incidents = list["incidents"].as_array().unwrap();
        assert_eq!(incidents.len(), 1, "{list}");
        let inc = &incidents[0];
        let inc_id = inc["id"].as_str().unwrap().to_owned();
        assert_eq!(inc["organisation"], "obs-de-linde");
        assert_eq!(inc["source"], "misaddressed");
        assert_eq!(inc["status"], "open");
        assert_eq!(inc["report"]["reason"], "anders");
        assert_eq!(inc["report"]["copies_deleted"], true);
        assert_eq!(inc["report"]["fetched"], true);
        let affected = inc["affected"].as_array().unwrap();
        assert_eq!(affected.len(), 1);
        assert_eq!(affected[0]["log_id"], sent["disclosure"]["log_id"]);
        assert_eq!(affected[0]["seq"], sent["disclosure"]["seq"]);
        assert_eq!(affected[0]["receiver"], "lyceum-zuid");
        assert_eq!(affected[0]["flow_id"], "P1");
        assert_eq!(inc["pupils"].as_array().unwrap().len(), 1);
        assert_ne!(inc["pupils"][0], "628194821", "a pseudonym, never the PGN");
        for class in ["S0", "S1", "S2", "S4"] {
            assert!(
                inc["classes"].as_array().unwrap().contains(&json!(class)),
                "{class}: {inc}"
            );
        }
        assert!(inc["categories"]
            .as_array()
            .unwrap()
            .contains(&json!("ADM")));
        let discovered = time::OffsetDateTime::parse(
            inc["discovered_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let deadline = time::OffsetDateTime::parse(
            inc["deadline"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(deadline - discovered, time::Duration::hours(72));
        assert!(matches!(inc["hours_left"].as_i64(), Some(71 | 72)), "{inc}");
        assert_eq!(inc["past_deadline_undecided"], false);
        assert_eq!(
            other_fg
                .get(&format!("/v1/audit/incidents/{inc_id}"))
                .await
                .status,
            404
        );
        assert_eq!(
            gw.client("fg-operator")
                .get("/v1/audit/incidents")
                .await
                .json()["incidents"]
                .as_array()
                .unwrap()
                .len(),
            1
        );

        // The FG's steps: closing first needs the risk and the AP decision.
        let ipath = format!("/v1/audit/incidents/{inc_id}");
        let r = patch(&fg, &ipath, json!({"close": "klaar"})).await;
        assert_eq!(
            (r.status, r.code()),
            (422, "incident-incomplete".to_owned())
        );
        let r = patch(&fg, &ipath, json!({"risico": "laag"})).await;
        assert_eq!((r.status, r.code()), (422, "invalid-incident".to_owned()));
        let r = patch(&other_fg, &ipath, json!({"risk": "laag"})).await;
        assert_eq!(r.status, 404);
        let r = patch(
            &fg,
            &ipath,
            json!({"risk": "laag", "notify_ap": false, "subjects_informed": false, "measures": "Ontvanger heeft kopie verwijderd; bevestiging ontvangen."}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["risk"], "laag");
        let r = patch(&fg, &ipath, json!({"ap_reference": "AP-123"})).await;
        assert_eq!((r.status, r.code()), (422, "invalid-incident".to_owned()));
        let r = patch(
            &fg,
            &ipath,
            json!({"close": "Geen melding: laag risico, kopie verwijderd."}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["status"], "closed");
        let r = patch(&fg, &ipath, json!({"measures": "later"})).await;
        assert_eq!((r.status, r.code()), (409, "incident-closed".to_owned()));
        let history = fg.get(&ipath).await.json()["history"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(history, 3, "opened, assessed, closed");

        // The register as CSV for the AP.
        let r = fg
            .request(
                "GET",
                "/v1/audit/incidents",
                &[("accept", "text/csv")],
                None,
            )
            .await;
        assert_eq!(r.status, 200);
        let csv = r.text();
        assert!(csv.starts_with("id,organisatie,bron,status"), "{csv}");
        assert!(
            csv.contains(&inc_id) && csv.contains("closed") && csv.contains("laag"),
            "{csv}"
        );

        // Every change is a log entry with the record's digest; the report's text never is.
        let opened = entries_of(&gw, EventKind::IncidentOpened).await;
        let updated = entries_of(&gw, EventKind::IncidentUpdated).await;
        let closed = entries_of(&gw, EventKind::IncidentClosed).await;
        assert_eq!((opened.len(), updated.len(), closed.len()), (1, 1, 1));
        let digests: Vec<String> = [&opened[0], &updated[0], &closed[0]]
            .iter()
            .map(|e| {
                let d = e.detail.as_deref().unwrap();
                assert!(d.contains(&inc_id), "{d}");
                d.rsplit("sha256 ").next().unwrap().to_owned()
            })
            .collect();
        assert!(digests[0] != digests[1] && digests[1] != digests[2]);
        assert_eq!(closed[0].partner, "fg-obs-de-linde");
        let reported = entries_of(&gw, EventKind::MessageMisaddressed).await;
        assert_eq!(reported.iter().filter(|e| e.outcome == "ok").count(), 1);
        assert!(reported.iter().any(|e| e.outcome == "already-reported"));
        let log: Vec<u8> = gw
            .log_entries()
            .await
            .iter()
            .flat_map(|(_, e)| e.encode())
            .collect();
        assert_absent(&log, &[TEXT.to_owned(), CANARY.to_owned()], "the log");
        assert_absent(
            gw.stderr().as_bytes(),
            &[TEXT.to_owned(), CANARY.to_owned()],
            "the tracing output",
        );

        // By hand: an incident about a disclosure of the officer's own organisation, found by the search helper.
        let r = school.post_json("/v1/messages", &p1_with_canary()).await;
        let pos = r.json()["disclosure"].clone();
        let found = fg
            .get("/v1/audit/incidents/sent-to?receiver=lyceum-zuid")
            .await
            .json();
        let found = found["disclosures"].as_array().unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().any(|d| d["seq"] == pos["seq"]));
        let r = fg
            .post_json(
                "/v1/audit/incidents",
                &json!({"description": "Twee rapporten naar de verkeerde vo-school.", "disclosures": [{"log_id": pos["log_id"], "seq": pos["seq"]}]}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["source"], "manual");
        // Not another organisation's disclosure.
        let p2 = vo.post("/v1/messages", &example("P2")).await;
        assert_eq!(p2.status, 201, "{}", p2.text());
        let theirs = p2.json()["disclosure"].clone();
        let r = fg
            .post_json(
                "/v1/audit/incidents",
                &json!({"description": "x", "disclosures": [{"log_id": theirs["log_id"], "seq": theirs["seq"]}]}),
            )
            .await;
        assert_eq!((r.status, r.code()), (422, "unknown-disclosure".to_owned()));

        let (_, metrics) = gw.ops_get("/metrics");
        assert!(
            metrics.contains("ketenpoort_misaddressed_total{flow=\"P1\"} 1"),
            "{metrics}"
        );
        assert!(metrics.contains("ketenpoort_incidents_open 1"), "{metrics}");
        assert!(
            metrics.contains("ketenpoort_incidents_past_deadline 0"),
            "{metrics}"
        );
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
    }
}

/// Two instances on one PostgreSQL database: instance A's sender recalls while instance B's receiver fetches, for
/// many messages at once. Each message is either recalled (and never handed to the receiver) or fetched (and the
/// recall refused with `already-fetched`), never both, and the outbox says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recall_racing_a_fetch_on_two_instances_has_one_winner() {
    if !backends().contains(&Backend::Postgres) {
        return;
    }
    let a = Gateway::start(Backend::Postgres);
    let mut opts = GatewayOptions::new(Backend::Postgres);
    opts.database_url = Some(a.database_url.clone());
    let keys = a.dir.path().join("keys");
    opts.key_dir = Some(keys.clone());
    opts.storage_extra = format!(
        "signing_key = \"{}\"",
        keys.join("instance-b.key").display()
    );
    let b = Gateway::start_with(opts);
    let school = a.client("obs-de-linde");
    let vo = b.client("lyceum-zuid");
    const N: usize = 12;
    let mut ids = Vec::new();
    for _ in 0..N {
        let r = school.post_json("/v1/messages", &example_json("P1")).await;
        assert_eq!(r.status, 201, "{}", r.text());
        ids.push(r.json()["message_id"].as_str().unwrap().to_owned());
    }
    let recalls = {
        let ids = ids.clone();
        let school = a.client("obs-de-linde");
        tokio::spawn(async move {
            let mut out = Vec::new();
            for id in ids {
                let r = school
                    .post_json(
                        &format!("/v1/outbox/{id}/recall"),
                        &json!({"reason": "onjuiste-inhoud"}),
                    )
                    .await;
                let code = if r.status == 200 {
                    String::new()
                } else {
                    r.code()
                };
                out.push((id, r.status, code));
            }
            out
        })
    };
    let mut fetched: Vec<String> = Vec::new();
    for _ in 0..6 {
        let r = vo.get("/v1/inbox?limit=3").await;
        assert!(matches!(r.status, 200 | 409), "{}", r.text());
        if r.status == 200 {
            for m in r.json()["messages"].as_array().unwrap() {
                fetched.push(m["message_id"].as_str().unwrap().to_owned());
            }
        }
    }
    let recalls = recalls.await.unwrap();
    let won = recalls.iter().filter(|(_, s, _)| *s == 200).count();
    eprintln!(
        "recall vs fetch: {won} recalled, {} fetched, {} refused as already fetched",
        fetched.len(),
        recalls
            .iter()
            .filter(|(_, _, c)| c == "already-fetched")
            .count()
    );
    for (id, status, code) in &recalls {
        let seen = fetched.contains(id);
        let outbox = school.get(&format!("/v1/outbox/{id}")).await.json();
        match status {
            200 => {
                assert!(
                    !seen,
                    "{id} was recalled (200) and still handed to the receiver"
                );
                assert_eq!(outbox["status"], "recalled");
            }
            409 => {
                assert!(
                    code == "already-fetched" || code == "mailbox-busy",
                    "{code}"
                );
                if code == "already-fetched" {
                    assert_ne!(outbox["status"], "recalled");
                    assert!(outbox["times"]["fetched"].is_string(), "{outbox}");
                }
            }
            other => panic!("{id}: recall answered {other} {code}"),
        }
    }
    // Everything the receiver still has was not recalled.
    for m in vo.inbox().await {
        let id = m["message_id"].as_str().unwrap();
        assert!(
            !recalls.iter().any(|(r, s, _)| r == id && *s == 200),
            "{id} recalled but in the inbox"
        );
    }
    let (ok, out) = a.audit_verify();
    assert!(ok, "{out}");
}
