//! The report: machine, versions, every measured row, the ratios and the targets, as Markdown.

use crate::load::Outcome;
use std::fmt::Write;
use std::path::Path;

pub const BEGIN: &str =
    "<!-- ketenpoort-bench: begin (generated; edits between these markers are overwritten) -->";
pub const END: &str = "<!-- ketenpoort-bench: end -->";

pub struct Row {
    pub scenario: String,
    pub server: String,
    pub errors: u64,
    pub rate: f64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub server_cpu_us: Option<f64>,
    pub client_cpu_us: Option<f64>,
    pub peak_rss_kib: u64,
    pub note: Option<String>,
}

impl Row {
    pub fn from_outcome(
        scenario: &str,
        server: &str,
        o: &Outcome,
        server_cpu_us: Option<f64>,
        client_cpu_us: Option<f64>,
        peak_rss_kib: u64,
    ) -> Row {
        Row {
            scenario: scenario.to_owned(),
            server: server.to_owned(),
            errors: o.errors,
            rate: o.rate(),
            p50: o.quantile_ms(0.5),
            p99: o.quantile_ms(0.99),
            p999: o.quantile_ms(0.999),
            server_cpu_us,
            client_cpu_us,
            peak_rss_kib,
            note: o.first_error.as_ref().map(|e| format!("first error: {e}")),
        }
    }

    pub fn one_line(&self) -> String {
        format!(
            "{} | {}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, server CPU {} µs/req, errors {}",
            self.scenario,
            self.server,
            self.rate,
            self.p50,
            self.p99,
            self.p999,
            opt(self.server_cpu_us, 0),
            self.errors
        )
    }
}

pub struct Floor {
    pub backend: String,
    pub batch: usize,
    pub rate: f64,
    pub messages: u64,
    /// ketenpoort-bench's CPU a message while the floor ran (on SQLite all of the floor's work; on PostgreSQL the
    /// client side only: the server's processes are not counted).
    pub cpu_us: f64,
    /// The part of `cpu_us` on the log writer's and the WAL checkpointer's threads (SQLite only: on PostgreSQL the
    /// loop is a tokio task that may move between threads, and there is no checkpointer thread).
    pub writer_us: f64,
    pub checkpointer_us: f64,
}

pub struct Idle {
    pub server: String,
    pub when: String,
    pub connections: usize,
    pub rss_before_kib: u64,
    pub rss_with_kib: u64,
}

pub struct Verify {
    pub entries: u64,
    pub seconds: f64,
    pub runs: usize,
}

pub struct Startup {
    pub entries: u64,
    pub median_ms: f64,
    pub max_ms: f64,
    pub runs: usize,
}

/// Proofs from the API on the large log (wall time per request on a keep-alive connection, client side).
pub struct Proofs {
    pub entries: u64,
    pub runs: usize,
    pub inclusion_median_ms: f64,
    pub inclusion_max_ms: f64,
    pub consistency_median_ms: f64,
    pub consistency_max_ms: f64,
}

pub struct Report {
    pub smoke: bool,
    pub rows: Vec<Row>,
    /// (what, ratio, target minimum)
    pub ratios: Vec<(String, f64, Option<f64>)>,
    pub floors: Vec<Floor>,
    pub idle: Vec<Idle>,
    pub verify: Option<Verify>,
    pub startup: Option<Startup>,
    pub proofs: Option<Proofs>,
    pub notes: Vec<String>,
    pub p1_bytes: usize,
    pub p7_bytes: usize,
    pub entry_bytes: usize,
    pub message_bytes: usize,
    pub sqlite_mean_batch: Option<f64>,
    pub postgres_mean_batch: Option<f64>,
    pub durable_check: Option<String>,
    /// What was done to the machine's memory before the run (`servers::prefault_memory`).
    pub memory: Option<String>,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "–".into())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**not met**"
    }
}

impl Report {
    pub fn new(smoke: bool) -> Report {
        Report {
            smoke,
            rows: Vec::new(),
            ratios: Vec::new(),
            floors: Vec::new(),
            idle: Vec::new(),
            verify: None,
            startup: None,
            proofs: None,
            notes: Vec::new(),
            p1_bytes: 0,
            p7_bytes: 0,
            entry_bytes: 0,
            message_bytes: 0,
            memory: None,
            sqlite_mean_batch: None,
            postgres_mean_batch: None,
            durable_check: None,
        }
    }

    fn ratio(&self, prefix: &str) -> Option<f64> {
        self.ratios
            .iter()
            .find(|(w, _, _)| w.starts_with(prefix))
            .map(|r| r.1)
    }

    fn row(&self, scenario: &str, server: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.scenario == scenario && r.server == server)
    }

    /// The budgets of the keep-alive and the new-connection targets in this run (those whose rows were measured).
    pub fn budgets(&self, cores: f64) -> Vec<Budget> {
        let mut out = Vec::new();
        let ka = "P1 keep-alive, max rate";
        let floor = self
            .floors
            .iter()
            .find(|f| f.backend == "SQLite" && f.batch == 512);
        if let (Some(b), Some(g), Some(f)) = (
            self.row(ka, "baseline A"),
            self.row(ka, "ketenpoort (SQLite)"),
            floor,
        ) {
            let rate = (0.8 * f.rate).max(0.35 * b.rate);
            out.extend(Budget::new(
                "keep-alive P1 ≥ 0.8 × floor and ≥ 0.35 × baseline A",
                rate,
                cores,
                b,
                g,
                // The floor's log writer thread only: its checkpointer's share moved most between runs (it
                // copies a fresh, fast-growing file), so it is left on the gateway's side of the table.
                Some(f.writer_us),
            ));
        }
        let nc = "P1, new mTLS connection per request";
        if let (Some(b), Some(g)) = (
            self.row(nc, "baseline A"),
            self.row(nc, "ketenpoort (SQLite)"),
        ) {
            out.extend(Budget::new(
                "new connections ≥ 0.8 × baseline A",
                0.8 * b.rate,
                cores,
                b,
                g,
                None,
            ));
        }
        out
    }

    fn budget_text(&self) -> String {
        let cores = cores();
        let budgets = self.budgets(cores as f64);
        if budgets.is_empty() {
            return String::new();
        }
        let mut s = String::from(
            "\n### What the throughput targets leave the gateway\n\nAt a target's rate this machine's cores give \
             share × cores × 10⁶ ÷ rate µs of CPU a request, where share is the part of the machine baseline A kept \
             busy (its server and the load generator) in the same scenario of this run. Take away what the gateway \
             cannot do without, measured in this run: the load generator's CPU (the gateway's row), TLS + HTTP \
             (baseline A's server CPU) and, for keep-alive, the storage floor's log writer thread at batch 512 (the \
             floor's WAL checkpointer is counted on the gateway's side, so the table errs in the gateway's favour). \
             What is left is what the gateway's own work may cost; its own work now is its server CPU a request \
             minus those two (its request phases, its checkpointer, and its storage above the floor's).\n\n\
             | target | rate needed | CPU a request at that rate | load generator | TLS + HTTP | storage floor (its writer thread) | left for the gateway's own work | the gateway's own work now |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for b in &budgets {
            let left = if b.left_us > 0.0 {
                format!("{:.0} µs", b.left_us)
            } else {
                format!("none ({:.0} µs)", b.left_us)
            };
            let now = if b.left_us > 0.0 {
                format!(
                    "{:.0} µs ({:.1} × what is left)",
                    b.own_us,
                    b.own_us / b.left_us
                )
            } else {
                format!("{:.0} µs", b.own_us)
            };
            let _ = writeln!(
                s,
                "| {} | {:.0}/s | {:.0} µs ({:.0} % of {cores} cores) | {:.0} µs | {:.0} µs | {} | {left} | {now} |",
                b.target,
                b.rate,
                b.per_request_us,
                b.share * 100.0,
                b.load_generator_us,
                b.tls_http_us,
                b.storage_us
                    .map(|u| format!("{u:.0} µs"))
                    .unwrap_or_else(|| "–".into()),
            );
        }
        s
    }

    /// The "Large log" section: `audit verify` and start-up on the large log.
    pub fn large_log_text(&self) -> String {
        let mut s = String::new();
        if let Some(v) = &self.verify {
            let _ = writeln!(
                s,
                "\n### Large log\n\n- `ketenpoort audit verify` over {} entries: median of {} runs {:.2} s = {:.0} entries/s (process start, reading, recomputing every leaf hash, the Merkle tree, the hash chain and every signed checkpoint).",
                v.entries,
                v.runs,
                v.seconds,
                v.entries as f64 / v.seconds
            );
        }
        if let Some(st) = &self.startup {
            let _ = writeln!(
                s,
                "- `ketenpoort serve` on that log, process spawn → first `/readyz` 200: median {:.0} ms, max {:.0} ms over {} starts.",
                st.median_ms, st.max_ms, st.runs
            );
        }
        if let Some(p) = &self.proofs {
            let _ = writeln!(
                s,
                "- Proofs from the API at tree size {}, each verified against the signed checkpoint: inclusion median {:.1} ms (max {:.1}), consistency median {:.1} ms (max {:.1}) over {} each, spread over the log (request to response on one keep-alive connection).",
                p.entries, p.inclusion_median_ms, p.inclusion_max_ms, p.consistency_median_ms, p.consistency_max_ms, p.runs
            );
        }
        s
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{BEGIN}\n");
        let _ = writeln!(
            s,
            "## Run of {}{}\n",
            now(),
            if self.smoke {
                " (smoke run: too short to quote)"
            } else {
                ""
            }
        );
        let _ = writeln!(s, "{}\n", machine());
        if let Some(m) = &self.memory {
            let _ = writeln!(s, "{m}\n");
        }

        let _ = writeln!(
            s,
            "### Targets\n\n| target | measured | verdict |\n|---|---|---|"
        );
        let ka_base = self.ratio("P1 keep-alive: ketenpoort (SQLite) ÷ baseline");
        let ka_floor = self.ratio("P1 keep-alive: ketenpoort (SQLite) ÷ storage floor");
        if let (Some(b), Some(f)) = (ka_base, ka_floor) {
            let _ = writeln!(
                s,
                "| keep-alive P1 on SQLite ≥ 0.8 × storage floor and ≥ 0.35 × baseline A | {f:.2} × floor, {b:.2} × baseline A | {} |",
                verdict(f >= 0.8 && b >= 0.35)
            );
        }
        if let Some(r) = self.rows.iter().find(|r| {
            r.server == "ketenpoort (SQLite)" && r.scenario.starts_with("P1 fixed rate 50%")
        }) {
            // Baseline A at the same scheduled rate: what this load generator and machine show with a server that
            // does nothing, the floor any p99 here is read against.
            let floor = self
                .row(&r.scenario, "baseline A")
                .map(|b| format!(" (baseline A at that rate: p99 {:.2} ms)", b.p99))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "| p99 ≤ 10 ms at 50% of the gateway's max rate (SQLite) | p99 {:.2} ms at {:.0}/s{floor} | {} |",
                r.p99,
                r.rate,
                verdict(r.p99 <= 10.0)
            );
        }
        if let Some(r) = self.ratio("new mTLS connection") {
            let _ = writeln!(
                s,
                "| new-connection rate ≥ 0.8 × baseline A | {r:.2} × baseline A | {} |",
                verdict(r >= 0.8)
            );
        }
        if let Some(v) = &self.verify {
            let rate = v.entries as f64 / v.seconds;
            let _ = writeln!(
                s,
                "| `audit verify` ≥ 500,000 entries/s | {rate:.0} entries/s ({} entries in {:.2} s) | {} |",
                v.entries,
                v.seconds,
                verdict(rate >= 500_000.0)
            );
        }
        if let Some(st) = &self.startup {
            let _ = writeln!(
                s,
                "| start-up to ready ≤ 300 ms with a 1-million-entry log | median {:.0} ms, max {:.0} ms ({} entries, {} starts) | {} |",
                st.median_ms,
                st.max_ms,
                st.entries,
                st.runs,
                verdict(st.max_ms <= 300.0 && st.entries >= 1_000_000)
            );
        }
        if let Some(i) = self
            .idle
            .iter()
            .find(|i| i.server.starts_with("ketenpoort"))
        {
            let _ = writeln!(
                s,
                "| ≤ 64 MiB RSS with 1,000 idle mTLS connections | {:.1} MiB with {} connections (freshly started gateway) | {} |",
                i.rss_with_kib as f64 / 1024.0,
                i.connections,
                verdict(i.rss_with_kib <= 64 * 1024 && i.connections >= 1000)
            );
        }

        let _ = writeln!(
            s,
            "\n### Ratios measured in this run\n\n| ratio | value | target |\n|---|---|---|"
        );
        for (what, v, target) in &self.ratios {
            let _ = writeln!(
                s,
                "| {what} | {v:.2} | {} |",
                target
                    .map(|t| format!("≥ {t}"))
                    .unwrap_or_else(|| "–".into())
            );
        }

        s.push_str(&self.budget_text());

        let _ = writeln!(
            s,
            "\n### Requests\n\nRates are answers with the expected status per second inside the measured window; latencies \
             from the client's send (fixed-rate rows: from the scheduled send time); CPU is the server process's \
             (and the load generator's) user + system time in the window ÷ requests; RSS is the server's peak.\n"
        );
        let _ = writeln!(
            s,
            "| scenario | server | requests/s | p50 ms | p99 ms | p99.9 ms | server CPU µs/req | load-gen CPU µs/req | peak RSS MiB | errors |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {:.1} | {} |",
                r.scenario,
                r.server,
                r.rate,
                r.p50,
                r.p99,
                r.p999,
                opt(r.server_cpu_us, 0),
                opt(r.client_cpu_us, 0),
                r.peak_rss_kib as f64 / 1024.0,
                r.errors
            );
        }
        for r in self.rows.iter().filter(|r| r.note.is_some()) {
            let _ = writeln!(
                s,
                "\n- {} / {}: {}",
                r.scenario,
                r.server,
                r.note.as_deref().unwrap_or_default()
            );
        }

        let _ = writeln!(
            s,
            "\n### Storage floor\n\nThe gateway's own rows (mean log entry {} bytes, mean sealed mailbox payload {} bytes, \
             copied from the SQLite run), one log entry + one mailbox row per message, log state and a signed \
             checkpoint per second, committed through `Store::commit_batch` with the gateway's durability settings.\n",
            self.entry_bytes, self.message_bytes
        );
        let _ = writeln!(
            s,
            "| backend | batch | messages/s | messages | CPU µs a message (writer, checkpointer) |\n|---|---|---|---|---|"
        );
        for f in &self.floors {
            let cpu = if f.backend == "SQLite" {
                format!(
                    "{:.1} ({:.1}, {:.1})",
                    f.cpu_us, f.writer_us, f.checkpointer_us
                )
            } else {
                format!(
                    "{:.1} client side; the server's processes not counted",
                    f.cpu_us
                )
            };
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {} | {cpu} |",
                f.backend, f.batch, f.rate, f.messages
            );
        }
        if let Some(b) = self.sqlite_mean_batch {
            let _ = writeln!(
                s,
                "\nMean batch the gateway's log writer committed during P1 keep-alive: {b:.1} entries (SQLite){}.",
                self.postgres_mean_batch
                    .map(|p| format!(", {p:.1} entries (PostgreSQL)"))
                    .unwrap_or_default()
            );
        }
        if let Some(d) = &self.durable_check {
            let _ = writeln!(s, "Durability check of the SQLite P1 keep-alive row: {d}.");
        }

        let _ = writeln!(s, "\n### Idle connections\n\n| server | when | connections | RSS before | RSS with connections | per connection |\n|---|---|---|---|---|---|");
        for i in &self.idle {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} MiB | {:.1} MiB | {:.1} KiB |",
                i.server,
                i.when,
                i.connections,
                i.rss_before_kib as f64 / 1024.0,
                i.rss_with_kib as f64 / 1024.0,
                (i.rss_with_kib.saturating_sub(i.rss_before_kib)) as f64
                    / i.connections.max(1) as f64
            );
        }
        s.push_str(&self.large_log_text());
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        let _ = writeln!(
            s,
            "\nBodies: P1 envelope {} bytes (`examples/P1-overstap-po-vo.json`), P7 {} bytes.\n\n{END}",
            self.p1_bytes, self.p7_bytes
        );
        s
    }
}

/// What a throughput target leaves for the gateway's own work, in CPU a request, from one run's rows.
#[derive(Debug)]
pub struct Budget {
    pub target: &'static str,
    /// The rate the target asks for.
    pub rate: f64,
    /// The part of the machine's cores baseline A kept busy (its server + the load generator) in the same scenario.
    pub share: f64,
    /// CPU a request the machine gives at `rate` when it is as busy as that: `share × cores × 10⁶ ÷ rate`.
    pub per_request_us: f64,
    /// Load generator, TLS + HTTP (baseline A's server), storage floor: work the gateway cannot do without.
    pub load_generator_us: f64,
    pub tls_http_us: f64,
    pub storage_us: Option<f64>,
    /// `per_request_us` minus the three above.
    pub left_us: f64,
    /// The gateway's server CPU a request minus baseline A's and the floor's.
    pub own_us: f64,
}

impl Budget {
    fn new(
        target: &'static str,
        rate: f64,
        cores: f64,
        baseline: &Row,
        gateway: &Row,
        storage_us: Option<f64>,
    ) -> Option<Budget> {
        let (b_server, b_client) = (baseline.server_cpu_us?, baseline.client_cpu_us?);
        let (g_server, g_client) = (gateway.server_cpu_us?, gateway.client_cpu_us?);
        if rate <= 0.0 || cores <= 0.0 {
            return None;
        }
        let share = ((b_server + b_client) * baseline.rate / (cores * 1e6)).min(1.0);
        let per_request_us = share * cores * 1e6 / rate;
        let storage = storage_us.unwrap_or(0.0);
        Some(Budget {
            target,
            rate,
            share,
            per_request_us,
            load_generator_us: g_client,
            tls_http_us: b_server,
            storage_us,
            left_us: per_request_us - g_client - b_server - storage,
            own_us: g_server - b_server - storage,
        })
    }
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0)
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = cores();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = std::process::Command::new("rustc")
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let lock = include_str!("../../Cargo.lock");
    let version = |name: &str| {
        let needle = format!("name = \"{name}\"\nversion = \"");
        lock.find(&needle)
            .map(|i| {
                let rest = &lock[i + needle.len()..];
                rest[..rest.find('"').unwrap_or(0)].to_owned()
            })
            .unwrap_or_else(|| "?".into())
    };
    let crates = [
        "hyper",
        "rustls",
        "tokio",
        "sqlx",
        "libsqlite3-sys",
        "ring",
        "axum",
    ]
    .iter()
    .map(|c| format!("{c} {}", version(c)))
    .collect::<Vec<_>>()
    .join(", ");
    format!(
        "Machine: {cpu}, {cores} cores, {mem}, Linux {}; {rustc}; ketenpoort {} ({}); {crates}.",
        kernel.trim(),
        version("ketenpoort"),
        if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release build"
        }
    )
}

/// Replaces the text between the markers in `path` (or appends it, creating the file if needed).
pub fn write_between_markers(path: &Path, block: &str) -> std::io::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{}{}", &old[..a], block.trim_end(), &old[b + END.len()..])
        }
        _ => format!("{old}{}{block}", if old.is_empty() { "" } else { "\n" }),
    };
    std::fs::write(path, new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scenario: &str, server: &str, rate: f64, server_cpu: f64, client_cpu: f64) -> Row {
        Row {
            scenario: scenario.into(),
            server: server.into(),
            errors: 0,
            rate,
            p50: 1.0,
            p99: 2.0,
            p999: 3.0,
            server_cpu_us: Some(server_cpu),
            client_cpu_us: Some(client_cpu),
            peak_rss_kib: 1,
            note: None,
        }
    }

    /// The figures of the run of 2026-12-07 02:00 (AMD EPYC, 2 cores), worked out by hand.
    #[test]
    fn budgets_take_what_the_gateway_cannot_do_without_from_the_cpu_a_target_rate_leaves() {
        let mut r = Report::new(false);
        let (ka, nc) = (
            "P1 keep-alive, max rate",
            "P1, new mTLS connection per request",
        );
        r.rows.push(row(ka, "baseline A", 50_097.0, 17.0, 19.0));
        r.rows
            .push(row(ka, "ketenpoort (SQLite)", 7_728.0, 182.0, 25.0));
        r.rows.push(row(nc, "baseline A", 1_790.0, 551.0, 518.0));
        r.rows
            .push(row(nc, "ketenpoort (SQLite)", 1_337.0, 903.0, 527.0));
        assert!(
            r.budgets(2.0).len() == 1,
            "no floor measured: only the new-connection budget"
        );
        r.floors.push(Floor {
            backend: "SQLite".into(),
            batch: 512,
            rate: 23_447.0,
            messages: 117_235,
            cpu_us: 40.0,
            writer_us: 33.0,
            checkpointer_us: 6.0,
        });
        let b = r.budgets(2.0);
        assert_eq!(b.len(), 2);
        let close = |a: f64, b: f64| (a - b).abs() < 0.05;
        // Keep-alive: 0.8 × floor (18,757.6/s) is more than 0.35 × baseline A (17,534/s).
        assert!(close(b[0].rate, 18_757.6), "{b:?}");
        assert!(close(b[0].share, 36.0 * 50_097.0 / 2e6), "{b:?}");
        assert!(close(b[0].per_request_us, 96.15), "{b:?}");
        // The floor's writer thread (33 µs), not its whole CPU (40 µs).
        assert!(close(b[0].left_us, 96.15 - 25.0 - 17.0 - 33.0), "{b:?}");
        assert!(close(b[0].own_us, 182.0 - 17.0 - 33.0), "{b:?}");
        // New connections: 0.8 × 1,790/s; no storage term.
        assert!(close(b[1].rate, 1_432.0), "{b:?}");
        assert!(close(b[1].per_request_us, 1_336.25), "{b:?}");
        assert!(close(b[1].left_us, 1_336.25 - 527.0 - 551.0), "{b:?}");
        assert!(close(b[1].own_us, 352.0), "{b:?}");
        assert!(b[1].storage_us.is_none());
        let text = r.budget_text();
        assert!(text.contains("| keep-alive P1"), "{text}");
        assert!(text.contains("| new connections"), "{text}");
    }

    #[test]
    fn a_busier_baseline_than_the_machine_counts_as_the_whole_machine() {
        let mut r = Report::new(false);
        let nc = "P1, new mTLS connection per request";
        // 1,000/s × 2,500 µs = 2.5 cores on 2: CPU counted by two clocks can overshoot.
        r.rows
            .push(row(nc, "baseline A", 1_000.0, 1_500.0, 1_000.0));
        r.rows
            .push(row(nc, "ketenpoort (SQLite)", 700.0, 2_000.0, 1_100.0));
        let b = r.budgets(2.0);
        assert_eq!(b[0].share, 1.0);
        assert!((b[0].per_request_us - 2.0 * 1e6 / 800.0).abs() < 1e-6);
        assert!(b[0].left_us < 0.0, "nothing is left: {b:?}");
        assert!(r.budget_text().contains("none ("));
    }
}
