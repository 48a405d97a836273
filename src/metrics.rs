//! Prometheus text metrics for operators.
//!
//! Labels are routes, status codes, refusal codes and flow ids — fixed vocabularies. Never a partner-supplied
//! string, a field value or a pupil identifier.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    refusals: Mutex<BTreeMap<&'static str, u64>>,
    disclosures: Mutex<BTreeMap<String, u64>>,
    pub policy_reload_failures: AtomicU64,
    pub policy_reloads: AtomicU64,
}

/// Values the metrics page reads from elsewhere at render time.
pub struct Gauges {
    pub log_size: u64,
    pub log_batches: u64,
    pub log_entries: u64,
    pub log_commit_micros: u64,
    pub log_failures: u64,
    pub log_healthy: bool,
    pub policy_hash: String,
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

    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        out.push_str("# HELP ketenpoort_requests_total Partner API requests by route and status.\n# TYPE ketenpoort_requests_total counter\n");
        for ((route, status), n) in self.requests.lock().expect("metrics").iter() {
            let _ = writeln!(
                out,
                "ketenpoort_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP ketenpoort_refusals_total Refused requests by problem code.\n# TYPE ketenpoort_refusals_total counter\n");
        for (code, n) in self.refusals.lock().expect("metrics").iter() {
            let _ = writeln!(out, "ketenpoort_refusals_total{{code=\"{code}\"}} {n}");
        }
        out.push_str("# HELP ketenpoort_disclosures_total Messages disclosed by flow.\n# TYPE ketenpoort_disclosures_total counter\n");
        for (flow, n) in self.disclosures.lock().expect("metrics").iter() {
            let _ = writeln!(out, "ketenpoort_disclosures_total{{flow=\"{flow}\"}} {n}");
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
            g.policy_hash
        );
        out
    }
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
            log_failures: 0,
            log_healthy: true,
            policy_hash: "abc".into(),
        });
        assert!(text
            .contains("ketenpoort_requests_total{route=\"POST /v1/messages\",status=\"201\"} 2"));
        assert!(text.contains("ketenpoort_refusals_total{code=\"no-policy\"} 1"));
        assert!(text.contains("ketenpoort_disclosures_total{flow=\"P1\"} 1"));
        assert!(text.contains("ketenpoort_log_size 7"));
        assert!(text.contains("ketenpoort_log_append_seconds_total 0.001500"));
    }
}
