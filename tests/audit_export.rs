//! `ketenpoort audit export`, the real binary reading the database itself: its Logboek Dataverwerkingen lines are the
//! ones the privacy officer's `GET /v1/audit/export?format=ldv` gives for the same log, its NEN 7513 CSV the one of
//! `GET /v1/audit/disclosures?format=nen7513` (plus that request's own `audit-query` entry), and neither carries a
//! payload value (CANARY) or a pupil number.

mod common;

use common::*;
use std::process::Command;

/// Every pupil number of the shared examples.
fn pupil_numbers() -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(examples_dir()).unwrap() {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        for kind in ["pgn", "bsn", "onderwijsnummer"] {
            if let Some(n) = v["subject"][kind].as_str() {
                out.push(n.to_owned());
            }
        }
    }
    out.sort();
    out.dedup();
    assert!(!out.is_empty(), "the examples name pupils");
    out
}

/// Runs `ketenpoort audit export --config <gateway's> ARGS`; returns stdout, failing on a non-zero exit.
fn export(gw: &Gateway, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(["audit", "export", "--config"])
        .arg(&gw.config_path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "audit export {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_export_writes_the_http_export_s_lines_without_values_or_pupil_numbers() {
    for backend in backends() {
        let gw = Gateway::start(backend);
        let po = gw.client("obs-de-linde");
        let vo = gw.client("lyceum-zuid");
        // A disclosure, its fetch and acknowledgement, and whatever the other examples give (refusals are logged
        // about their pupil too).
        let r = po.post("/v1/messages", &example("P1")).await;
        assert_eq!(r.status, 201, "{}", r.text());
        for name in ["P2", "P3"] {
            let r = vo.post("/v1/messages", &example(name)).await;
            assert!(r.status < 500, "{name}: {}", r.text());
        }
        let inbox = vo.inbox().await;
        assert!(!inbox.is_empty());
        for m in &inbox {
            let id = m["message_id"].as_str().unwrap();
            let r = vo.post(&format!("/v1/inbox/{id}/ack"), b"").await;
            assert_eq!(r.status, 200, "{}", r.text());
        }

        let fg = gw.client("fg-operator");
        let r = fg.get("/v1/audit/export?format=ldv&limit=1000").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.headers.get("next-cursor").is_none(), "one page holds all");
        let http = r.text();
        assert!(
            http.lines().count() >= 4,
            "disclosure, fetch, acknowledgement and more: {http}"
        );

        // The same lines, to stdout and to a file.
        let cli = export(&gw, &["--format", "ldv"]);
        assert_eq!(cli, http, "{backend:?}");
        let file = gw.dir.path().join("ldv.jsonl");
        let out = export(&gw, &["--format", "ldv", "--out", file.to_str().unwrap()]);
        assert!(out.is_empty(), "{out}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), http);
        for text in [&cli, &http] {
            assert_absent(text.as_bytes(), &canaries(), "the LDV export");
            assert_absent(text.as_bytes(), &pupil_numbers(), "the LDV export");
        }

        // --from/--to select by day: today's entries are all of them, tomorrow's none, and a bad date is refused.
        let today = time::OffsetDateTime::now_utc().date();
        let day = |d: time::Date| {
            d.format(time::macros::format_description!("[year]-[month]-[day]"))
                .unwrap()
        };
        let (t, tomorrow, yesterday) = (
            day(today),
            day(today.next_day().unwrap()),
            day(today.previous_day().unwrap()),
        );
        assert_eq!(
            export(&gw, &["--format", "ldv", "--from", &yesterday, "--to", &t]),
            http
        );
        assert_eq!(
            export(&gw, &["--format", "ldv", "--from", &tomorrow]),
            "",
            "nothing from tomorrow on"
        );
        assert_eq!(export(&gw, &["--format", "ldv", "--to", &yesterday]), "");
        let bad = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
            .args(["audit", "export", "--format", "ldv", "--from", "gisteren"])
            .arg("--config")
            .arg(&gw.config_path)
            .output()
            .unwrap();
        assert!(!bad.status.success());
        assert!(
            String::from_utf8_lossy(&bad.stderr).contains("--from"),
            "{}",
            String::from_utf8_lossy(&bad.stderr)
        );

        // NEN 7513: the officer's CSV, then the CLI's: the same rows, and after them only the audit-query entries
        // of the requests made since (this one's own, and none about a pupil).
        let r = fg
            .request(
                "GET",
                "/v1/audit/disclosures?format=nen7513&limit=1000",
                &[("accept", "text/csv")],
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let http_csv = r.text();
        let cli_csv = export(&gw, &["--format", "nen7513"]);
        let rest = cli_csv
            .strip_prefix(http_csv.as_str())
            .unwrap_or_else(|| panic!("CLI:\n{cli_csv}\nHTTP:\n{http_csv}"));
        assert!(!rest.is_empty(), "the CSV request's own audit-query entry");
        for row in rest.lines() {
            assert!(row.starts_with("audit-query,"), "{row}");
        }
        for text in [&cli_csv, &http_csv] {
            assert_absent(text.as_bytes(), &canaries(), "the NEN 7513 export");
            assert_absent(text.as_bytes(), &pupil_numbers(), "the NEN 7513 export");
        }
    }
}
