//! W3C trace context and the FSC transaction id over real mTLS: a partner's `traceparent` and `Fsc-Transaction-Id`
//! are validated (400 when malformed, nothing delivered or logged), continued with the gateway's span, returned on the
//! response, kept with the log entry and passed on to the receiver's fetch; absent ones are created (the transaction
//! id as a UUIDv7).

mod common;

use common::*;
use ketenpoort::audit::entry::EventKind;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const TRANSACTION: &str = "01890a5d-ac96-774b-bcce-b302099a8057";

fn header(r: &Response, name: &str) -> String {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_exchange_is_followed_by_its_trace_and_transaction_id() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let school = gw.client("obs-de-linde");
        let vo = gw.client("lyceum-zuid");
        let traceparent = format!("00-{TRACE}-{PARENT}-01");
        let r = school
            .request(
                "POST",
                "/v1/messages",
                &[
                    ("traceparent", &traceparent),
                    ("fsc-transaction-id", TRANSACTION),
                ],
                Some(example("P1")),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let answered = header(&r, "traceparent");
        let parts: Vec<&str> = answered.split('-').collect();
        assert_eq!(
            (parts[0], parts[1], parts[3]),
            ("00", TRACE, "01"),
            "{answered}"
        );
        assert_ne!(parts[2], PARENT, "the gateway's own span");
        assert_eq!(header(&r, "fsc-transaction-id"), TRANSACTION);
        let id = r.json()["message_id"].as_str().unwrap().to_owned();

        // The log entry keeps them.
        let entries = gw.log_entries().await;
        let disclosed = entries
            .iter()
            .map(|(_, e)| e)
            .find(|e| e.event() == EventKind::MessageDisclosed)
            .unwrap();
        let t = disclosed.trace.as_ref().expect("a trace in the entry");
        assert_eq!(
            (
                t.trace_id.as_str(),
                t.parent_span_id.as_deref(),
                t.span_id.as_str(),
                t.transaction_id.as_str()
            ),
            (TRACE, Some(PARENT), parts[2], TRANSACTION)
        );

        // The receiver's fetch carries the sender's trace, so it can continue it; its own request gets its own.
        let r = vo.get("/v1/inbox").await;
        assert_eq!(r.status, 200);
        let item = &r.json()["messages"][0];
        assert_eq!(item["message_id"], id.as_str());
        assert_eq!(item["trace"]["traceparent"], answered.as_str());
        assert_eq!(item["trace"]["fsc_transaction_id"], TRANSACTION);
        let own = header(&r, "traceparent");
        assert!(
            !own.contains(TRACE),
            "the fetch without headers starts its own trace: {own}"
        );
        let own_tx = header(&r, "fsc-transaction-id");
        assert_eq!(own_tx.len(), 36);
        assert_eq!(&own_tx[14..15], "7", "a UUIDv7: {own_tx}");
        let entries = gw.log_entries().await;
        let fetched = entries
            .iter()
            .map(|(_, e)| e)
            .find(|e| e.event() == EventKind::MessageFetched)
            .unwrap();
        let ft = fetched.trace.as_ref().unwrap();
        assert_eq!(ft.transaction_id, own_tx);
        assert!(own.contains(&ft.trace_id) && own.contains(&ft.span_id));

        // The privacy officer's NEN 7513 view finds the disclosure under the same trace and transaction id, with the
        // pupil as a pseudonym only.
        let fg = gw.client("fg-obs-de-linde");
        let r = fg
            .get("/v1/audit/disclosures?event=message-disclosed&format=nen7513")
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let records = r.json()["records"].as_array().unwrap().clone();
        let rec = records
            .iter()
            .find(|x| x["trace_id"] == TRACE)
            .unwrap_or_else(|| panic!("{records:?}"));
        assert_eq!(rec["transactie_id"], TRANSACTION);
        assert_eq!(rec["actiecode"], "E");
        assert_eq!(rec["resultaat"], "geslaagd");
        assert_eq!(rec["gebruiker_id"], "mvisser");
        assert_eq!(rec["organisatie"], "obs-de-linde");
        assert_eq!(rec["doel"], "overstap-po-vo");
        assert_eq!(rec["client"].as_str().unwrap().len(), 32);
        assert_absent(&r.body, &canaries(), "the NEN 7513 view");
        assert_absent(&r.body, &["628194821".to_owned()], "the NEN 7513 view");
        let csv = fg
            .request(
                "GET",
                "/v1/audit/disclosures?format=nen7513",
                &[("accept", "text/csv")],
                None,
            )
            .await
            .text();
        assert!(
            csv.starts_with("gebeurtenis,omschrijving,datum_tijd,actiecode"),
            "{csv}"
        );
        assert!(csv.contains(TRACE) && csv.contains(TRANSACTION), "{csv}");
        assert_eq!(
            fg.get("/v1/audit/disclosures?format=ldv").await.code(),
            "invalid-query"
        );

        // The Logboek Dataverwerkingen export: one record per processing per pupil, in the standard's field names,
        // checked against a table written from its text (component Logboek, interface); the sender's and the
        // receiver's records of one exchange share the trace of the request that made them.
        let r = fg.get("/v1/audit/export?format=ldv").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_absent(&r.body, &canaries(), "the LDV export");
        assert_absent(&r.body, &["628194821".to_owned()], "the LDV export");
        let records: Vec<serde_json::Value> = r
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON record a line"))
            .collect();
        let hex = |v: &serde_json::Value, n: usize| {
            v.as_str()
                .is_some_and(|s| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit()))
        };
        let allowed = [
            "trace_id",
            "span_id",
            "parent_span_id",
            "name",
            "status",
            "start_time",
            "end_time",
            "resource",
            "attributes",
        ];
        for rec in &records {
            let obj = rec.as_object().unwrap();
            assert!(
                obj.keys().all(|k| allowed.contains(&k.as_str())),
                "a field the standard has not: {rec}"
            );
            assert!(
                hex(&rec["trace_id"], 32) && hex(&rec["span_id"], 16),
                "{rec}"
            );
            assert!(
                rec.get("parent_span_id").is_none_or(|p| hex(p, 16)),
                "{rec}"
            );
            assert!(
                ["Unset", "Ok", "Error"].contains(&rec["status"].as_str().unwrap()),
                "{rec}"
            );
            assert!(!rec["name"].as_str().unwrap().is_empty());
            for t in ["start_time", "end_time"] {
                time::OffsetDateTime::parse(
                    rec[t].as_str().unwrap(),
                    &time::format_description::well_known::Rfc3339,
                )
                .unwrap();
            }
            let a = rec["attributes"].as_object().unwrap();
            assert!(
                a["dpl.core.processing_activity_id"]
                    .as_str()
                    .unwrap()
                    .starts_with("urn:"),
                "{rec}"
            );
            assert_eq!(
                a["dpl.core.data_subject_id"].as_str().unwrap().len(),
                32,
                "{rec}"
            );
            assert!(a["dpl.core.data_subject_id_type"]
                .as_str()
                .unwrap()
                .contains(':'));
            assert!(a.keys().all(|k| k.starts_with("dpl.")), "{rec}");
            let text = rec.to_string();
            for forbidden in ["mvisser", "M. Visser", "\"overstap-po-vo\"", "WPO art."] {
                assert!(
                    !text.contains(forbidden),
                    "no employee, purpose or legal basis: {rec}"
                );
            }
        }
        let sent = records
            .iter()
            .find(|r| r["trace_id"] == TRACE && r["name"] == "message-disclosed")
            .unwrap_or_else(|| panic!("{records:?}"));
        assert_eq!(sent["parent_span_id"], PARENT);
        assert_eq!(
            sent["attributes"]["dpl.core.foreign_operation.span_id"],
            PARENT
        );
        assert_eq!(
            sent["attributes"]["dpl.core.processing_activity_id"],
            "urn:nl:ketenpoort:verwerkingsactiviteit:p1-overstap-po-vo:v1"
        );
        assert_eq!(
            sent["attributes"]["dpl.core.data_subject_id"],
            disclosed.subject.clone().unwrap().as_str()
        );
        assert_eq!(fg.get("/v1/audit/export").await.code(), "invalid-query");

        // Malformed: 400 with a code, nothing delivered, nothing logged.
        let before = gw.log_entries().await.len();
        for (name, value, code) in [
            (
                "traceparent",
                "00-zz-00f067aa0ba902b7-01",
                "invalid-trace-context",
            ),
            (
                "traceparent",
                &format!("00-{}-{PARENT}-01", "0".repeat(32)),
                "invalid-trace-context",
            ),
            (
                "fsc-transaction-id",
                "01890a5d-ac96-474b-bcce-b302099a8057",
                "invalid-transaction-id",
            ),
            (
                "fsc-transaction-id",
                "bestelling-17",
                "invalid-transaction-id",
            ),
        ] {
            let r = school
                .request(
                    "POST",
                    "/v1/messages",
                    &[(name, value)],
                    Some(example("P1")),
                )
                .await;
            assert_eq!(
                (r.status, r.code()),
                (400, code.to_owned()),
                "{name}: {value}"
            );
        }
        assert_eq!(gw.log_entries().await.len(), before);
        assert_eq!(vo.inbox().await.len(), 1, "nothing more delivered");
        let (ok, out) = gw.audit_verify();
        assert!(ok, "{out}");
    }
}
