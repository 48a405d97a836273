//! Prometheus text metrics for operators.
//!
//! Labels are routes, status codes, refusal codes and flow ids — fixed vocabularies. Never a partner-supplied
//! string, a field value or a pupil identifier.

use std::collections::BTreeMap;
use std::fmt::{self, Display, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    refusals: Mutex<BTreeMap<&'static str, u64>>,
    disclosures: Mutex<BTreeMap<String, u64>>,
    /// Recalls and "niet voor ons" reports by flow; incidents opened by source.
    recalls: Mutex<BTreeMap<String, u64>>,
    misaddressed: Mutex<BTreeMap<String, u64>>,
    incidents_opened: Mutex<BTreeMap<&'static str, u64>>,
    /// Push attempts by outcome (`PUSH_OUTCOMES`).
    pushes: Mutex<BTreeMap<&'static str, u64>>,
    pub policy_reload_failures: AtomicU64,
    pub policy_reloads: AtomicU64,
}

/// Upper bounds (seconds) of the log commit latency histogram's buckets; a last bucket takes the rest.
pub const COMMIT_BUCKETS_SECONDS: [f64; 11] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// A fixed-bucket latency histogram that many threads record into without a lock.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last is above the last bound.
    counts: [AtomicU64; COMMIT_BUCKETS_SECONDS.len() + 1],
    micros: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, took: std::time::Duration) {
        let seconds = took.as_secs_f64();
        let bucket = COMMIT_BUCKETS_SECONDS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(COMMIT_BUCKETS_SECONDS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Observations per bucket (not cumulative) and their sum in microseconds.
    pub fn snapshot(&self) -> (Vec<u64>, u64) {
        (
            self.counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            self.micros.load(Ordering::Relaxed),
        )
    }
}

/// How a push attempt ended: accepted (counted as fetched), to be tried again, attempts used up, or stopped because
/// the message needs no push any more (recalled, reported, purged, fetched by pull).
pub const PUSH_OUTCOMES: [&str; 4] = ["delivered", "retry", "gave-up", "stopped"];

/// The push queue at render time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PushGauges {
    pub waiting: u64,
    pub gave_up: u64,
    /// Seconds since the oldest waiting push was queued (0 when none waits).
    pub oldest_waiting_seconds: f64,
}

/// Values the metrics page reads from elsewhere at render time.
pub struct Gauges {
    pub log_size: u64,
    pub log_batches: u64,
    pub log_entries: u64,
    pub log_commit_micros: u64,
    /// `LatencyHistogram::snapshot` of the log's commits: counts per bucket of `COMMIT_BUCKETS_SECONDS`.
    pub log_commit_buckets: Vec<u64>,
    pub log_failures: u64,
    pub log_healthy: bool,
    pub policy_hash: String,
    /// Open incidents in every register, and those past their 72 hours without an AP decision; `None` when the
    /// register could not be read (the lines are left out rather than reported as zero).
    pub incidents: Option<(u64, u64)>,
    /// `None` when the queue could not be read (the lines are left out rather than reported as zero).
    pub push: Option<PushGauges>,
}

/// A label value as the Prometheus text exposition format writes it: backslash, double quote and line feed
/// escaped as `\\`, `\"` and `\n`. Every label value on the page is written through this, so even a value
/// outside the fixed vocabularies could not end its quotes or its line.
struct LabelValue<T>(T);

impl<T: Display> Display for LabelValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Escaping<'a, 'b>(&'a mut fmt::Formatter<'b>);
        impl Write for Escaping<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                let mut rest = s;
                while let Some(i) = rest.find(['\\', '"', '\n']) {
                    self.0.write_str(&rest[..i])?;
                    self.0.write_str(match rest.as_bytes()[i] {
                        b'\\' => r"\\",
                        b'"' => r#"\""#,
                        _ => r"\n",
                    })?;
                    rest = &rest[i + 1..];
                }
                self.0.write_str(rest)
            }
        }
        write!(Escaping(f), "{}", self.0)
    }
}

impl Metrics {
    pub fn request(&self, route: &'static str, status: u16) {
        *self
            .requests
            .lock()
            .expect("metrics")
            .entry((route, status))
            .or_insert(0) += 1;
    }

    pub fn refusal(&self, code: &'static str) {
        *self
            .refusals
            .lock()
            .expect("metrics")
            .entry(code)
            .or_insert(0) += 1;
    }

    /// `flow_id` comes from the policy set, never from the request.
    pub fn disclosure(&self, flow_id: &str) {
        *self
            .disclosures
            .lock()
            .expect("metrics")
            .entry(flow_id.to_owned())
            .or_insert(0) += 1;
    }

    /// `flow_id` comes from the policy set (or the log), never from the request.
    pub fn recall(&self, flow_id: &str) {
        bump(&self.recalls, flow_id.to_owned());
    }

    pub fn misaddressed(&self, flow_id: &str) {
        bump(&self.misaddressed, flow_id.to_owned());
    }

    /// `source`: `misaddressed`, `recall` or `manual`.
    pub fn incident_opened(&self, source: &'static str) {
        bump(&self.incidents_opened, source);
    }

    /// `outcome`: one of `PUSH_OUTCOMES`.
    pub fn push(&self, outcome: &'static str) {
        bump(&self.pushes, outcome);
    }

    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        out.push_str("# HELP ketenpoort_pushes_total Push delivery attempts by outcome.\n# TYPE ketenpoort_pushes_total counter\n");
        {
            let pushes = self.pushes.lock().expect("metrics");
            for outcome in PUSH_OUTCOMES {
                let n = pushes.get(outcome).copied().unwrap_or(0);
                let outcome = LabelValue(outcome);
                let _ = writeln!(out, "ketenpoort_pushes_total{{outcome=\"{outcome}\"}} {n}");
            }
        }
        if let Some(p) = g.push {
            let _ = writeln!(out, "# HELP ketenpoort_push_queue_depth Pushes waiting for an attempt.\n# TYPE ketenpoort_push_queue_depth gauge\nketenpoort_push_queue_depth {}", p.waiting);
            let _ = writeln!(out, "# HELP ketenpoort_push_gave_up Pushes that used up their attempts (the messages wait in the pull inbox).\n# TYPE ketenpoort_push_gave_up gauge\nketenpoort_push_gave_up {}", p.gave_up);
            let _ = writeln!(out, "# HELP ketenpoort_push_oldest_waiting_seconds Age of the oldest waiting push.\n# TYPE ketenpoort_push_oldest_waiting_seconds gauge\nketenpoort_push_oldest_waiting_seconds {:.3}", p.oldest_waiting_seconds);
        }
        out.push_str("# HELP ketenpoort_requests_total Partner API requests by route and status.\n# TYPE ketenpoort_requests_total counter\n");
        for ((route, status), n) in self.requests.lock().expect("metrics").iter() {
            let (route, status) = (LabelValue(route), LabelValue(status));
            let _ = writeln!(
                out,
                "ketenpoort_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP ketenpoort_refusals_total Refused requests by problem code.\n# TYPE ketenpoort_refusals_total counter\n");
        for (code, n) in self.refusals.lock().expect("metrics").iter() {
            let code = LabelValue(code);
            let _ = writeln!(out, "ketenpoort_refusals_total{{code=\"{code}\"}} {n}");
        }
        out.push_str("# HELP ketenpoort_disclosures_total Messages disclosed by flow.\n# TYPE ketenpoort_disclosures_total counter\n");
        for (flow, n) in self.disclosures.lock().expect("metrics").iter() {
            let flow = LabelValue(flow);
            let _ = writeln!(out, "ketenpoort_disclosures_total{{flow=\"{flow}\"}} {n}");
        }
        for (name, help, map) in [
            (
                "ketenpoort_recalls_total",
                "Messages recalled by their sender before fetch, by flow.",
                &self.recalls,
            ),
            (
                "ketenpoort_misaddressed_total",
                "Messages reported by their receiver as not for it, by flow.",
                &self.misaddressed,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (flow, n) in map.lock().expect("metrics").iter() {
                let flow = LabelValue(flow);
                let _ = writeln!(out, "{name}{{flow=\"{flow}\"}} {n}");
            }
        }
        out.push_str("# HELP ketenpoort_incidents_opened_total Incidents opened in the breach registers, by how they came to light.\n# TYPE ketenpoort_incidents_opened_total counter\n");
        for (source, n) in self.incidents_opened.lock().expect("metrics").iter() {
            let source = LabelValue(source);
            let _ = writeln!(
                out,
                "ketenpoort_incidents_opened_total{{source=\"{source}\"}} {n}"
            );
        }
        if let Some((open, late)) = g.incidents {
            let _ = writeln!(out, "# HELP ketenpoort_incidents_open Open incidents in the breach registers.\n# TYPE ketenpoort_incidents_open gauge\nketenpoort_incidents_open {open}");
            let _ = writeln!(out, "# HELP ketenpoort_incidents_past_deadline Open incidents past 72 hours from discovery without a decision on notifying the AP.\n# TYPE ketenpoort_incidents_past_deadline gauge\nketenpoort_incidents_past_deadline {late}");
        }
        let _ = writeln!(out, "# HELP ketenpoort_log_size Entries in this instance's disclosure log.\n# TYPE ketenpoort_log_size gauge\nketenpoort_log_size {}", g.log_size);
        let _ = writeln!(
            out,
            "# TYPE ketenpoort_log_batches_total counter\nketenpoort_log_batches_total {}",
            g.log_batches
        );
        let _ = writeln!(
            out,
            "# TYPE ketenpoort_log_entries_total counter\nketenpoort_log_entries_total {}",
            g.log_entries
        );
        let _ = writeln!(out, "# HELP ketenpoort_log_append_seconds_total Time spent committing log batches.\n# TYPE ketenpoort_log_append_seconds_total counter\nketenpoort_log_append_seconds_total {:.6}", g.log_commit_micros as f64 / 1e6);
        out.push_str("# HELP ketenpoort_log_commit_seconds Latency of each committed log batch (entries and the changes they record, durable).\n# TYPE ketenpoort_log_commit_seconds histogram\n");
        let mut cumulative = 0;
        for (i, n) in g.log_commit_buckets.iter().enumerate() {
            cumulative += n;
            let le: &dyn Display = match COMMIT_BUCKETS_SECONDS.get(i) {
                Some(le) => le,
                None => &"+Inf",
            };
            let le = LabelValue(le);
            let _ = writeln!(
                out,
                "ketenpoort_log_commit_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "ketenpoort_log_commit_seconds_sum {:.6}\nketenpoort_log_commit_seconds_count {cumulative}",
            g.log_commit_micros as f64 / 1e6
        );
        let _ = writeln!(out, "# TYPE ketenpoort_log_append_failures_total counter\nketenpoort_log_append_failures_total {}", g.log_failures);
        let _ = writeln!(
            out,
            "# TYPE ketenpoort_log_healthy gauge\nketenpoort_log_healthy {}",
            u8::from(g.log_healthy)
        );
        let _ = writeln!(
            out,
            "# TYPE ketenpoort_policy_reloads_total counter\nketenpoort_policy_reloads_total {}",
            self.policy_reloads.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# TYPE ketenpoort_policy_reload_failures_total counter\nketenpoort_policy_reload_failures_total {}", self.policy_reload_failures.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# TYPE ketenpoort_policy_info gauge\nketenpoort_policy_info{{hash=\"{}\"}} 1",
            LabelValue(&g.policy_hash)
        );
        out
    }
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    *map.lock().expect("metrics").entry(key).or_insert(0) += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let m = Metrics::default();
        m.request("POST /v1/messages", 201);
        m.request("POST /v1/messages", 201);
        m.refusal("no-policy");
        m.disclosure("P1");
        let text = m.render(&Gauges {
            log_size: 7,
            log_batches: 1,
            log_entries: 7,
            log_commit_micros: 1500,
            log_commit_buckets: vec![0; COMMIT_BUCKETS_SECONDS.len() + 1],
            log_failures: 0,
            log_healthy: true,
            policy_hash: "abc".into(),
            incidents: None,
            push: None,
        });
        assert!(text
            .contains("ketenpoort_requests_total{route=\"POST /v1/messages\",status=\"201\"} 2"));
        assert!(text.contains("ketenpoort_refusals_total{code=\"no-policy\"} 1"));
        assert!(text.contains("ketenpoort_disclosures_total{flow=\"P1\"} 1"));
        assert!(text.contains("ketenpoort_log_size 7"));
        assert!(text.contains("ketenpoort_log_append_seconds_total 0.001500"));
    }

    #[test]
    fn commit_latencies_render_as_a_cumulative_histogram() {
        let h = LatencyHistogram::default();
        for us in [300, 400, 1_500, 7_000, 30_000, 9_000_000] {
            h.observe(std::time::Duration::from_micros(us));
        }
        let (buckets, micros) = h.snapshot();
        assert_eq!(buckets.len(), COMMIT_BUCKETS_SECONDS.len() + 1);
        assert_eq!(buckets.iter().sum::<u64>(), 6);
        let text = Metrics::default().render(&Gauges {
            log_size: 0,
            log_batches: 6,
            log_entries: 6,
            log_commit_micros: micros,
            log_commit_buckets: buckets,
            log_failures: 0,
            log_healthy: true,
            policy_hash: "abc".into(),
            incidents: None,
            push: None,
        });
        for line in [
            "ketenpoort_log_commit_seconds_bucket{le=\"0.0005\"} 2",
            "ketenpoort_log_commit_seconds_bucket{le=\"0.001\"} 2",
            "ketenpoort_log_commit_seconds_bucket{le=\"0.002\"} 3",
            "ketenpoort_log_commit_seconds_bucket{le=\"0.01\"} 4",
            "ketenpoort_log_commit_seconds_bucket{le=\"0.02\"} 4",
            "ketenpoort_log_commit_seconds_bucket{le=\"0.05\"} 5",
            "ketenpoort_log_commit_seconds_bucket{le=\"5\"} 5",
            "ketenpoort_log_commit_seconds_bucket{le=\"+Inf\"} 6",
            "ketenpoort_log_commit_seconds_count 6",
            "ketenpoort_log_commit_seconds_sum 9.039200",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let tricky = "a\"b\\c\nd";
        assert_eq!(LabelValue(tricky).to_string(), r#"a\"b\\c\nd"#);
        assert_eq!(
            LabelValue("POST /v1/messages").to_string(),
            "POST /v1/messages"
        );
        assert_eq!(LabelValue("\\\\\"\n\n").to_string(), r#"\\\\\"\n\n"#);
        assert_eq!(LabelValue(0.0005).to_string(), "0.0005");
        let m = Metrics::default();
        m.disclosure(tricky);
        let text = m.render(&Gauges {
            log_size: 0,
            log_batches: 0,
            log_entries: 0,
            log_commit_micros: 0,
            log_commit_buckets: vec![0; COMMIT_BUCKETS_SECONDS.len() + 1],
            log_failures: 0,
            log_healthy: true,
            policy_hash: tricky.into(),
            incidents: None,
            push: None,
        });
        let escaped = r#"a\"b\\c\nd"#;
        assert!(
            text.contains(&format!(
                "ketenpoort_disclosures_total{{flow=\"{escaped}\"}} 1\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("ketenpoort_policy_info{{hash=\"{escaped}\"}} 1\n")),
            "{text}"
        );
        // Every line is a comment or a sample: no label value broke out of its quotes or its line.
        assert!(
            text.lines()
                .all(|l| l.starts_with("# ") || l.starts_with("ketenpoort_")),
            "{text}"
        );
    }
}
