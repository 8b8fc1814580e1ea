//! Prometheus metrics, kept in memory and rendered by hand in the text
//! exposition format: runs by outcome (counter, this process's), stage
//! durations (histogram), queue depth and running runs (gauges, read from
//! the run queue at scrape time: cluster-wide on PostgreSQL), runs per node
//! and state and each node's heartbeat age ([`render_nodes`]), and per
//! registry: lookups, `HEAD` fallbacks, rate-limit pauses and the allowance
//! the registry last reported (from the client).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use super::run::RunState;
use crate::registry::RegistryStats;

/// Upper bounds (seconds) of the stage-duration histogram buckets.
pub const STAGE_BUCKETS: [f64; 10] = [0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; STAGE_BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// The daemon's counters and histograms.
#[derive(Debug, Default)]
pub struct Metrics {
    runs: Mutex<BTreeMap<&'static str, u64>>,
    stages: Mutex<BTreeMap<String, Histogram>>,
}

impl Metrics {
    /// Counts a finished run.
    pub fn run_finished(&self, state: RunState) {
        if let Ok(mut runs) = self.runs.lock() {
            *runs.entry(state.as_str()).or_default() += 1;
        }
    }

    /// Records how long a stage took.
    pub fn stage_observed(&self, stage: &str, seconds: f64) {
        if let Ok(mut stages) = self.stages.lock() {
            let h = stages.entry(stage.to_string()).or_default();
            for (bucket, bound) in h.buckets.iter_mut().zip(STAGE_BUCKETS) {
                if seconds <= bound {
                    *bucket += 1;
                }
            }
            h.sum += seconds;
            h.count += 1;
        }
    }

    /// The text exposition format, with the queue gauges and registry
    /// figures given.
    pub fn render(&self, queued: i64, running: i64, registries: &[RegistryStats]) -> String {
        let mut out = String::new();
        out.push_str("# HELP kiln_runs_total Pipeline runs finished, by outcome.\n");
        out.push_str("# TYPE kiln_runs_total counter\n");
        let runs = self.runs.lock().map(|r| r.clone()).unwrap_or_default();
        for state in RunState::ALL.iter().filter(|s| s.is_finished()) {
            let n = runs.get(state.as_str()).copied().unwrap_or(0);
            let _ = writeln!(out, "kiln_runs_total{{outcome=\"{}\"}} {n}", state.as_str());
        }
        out.push_str("# HELP kiln_stage_duration_seconds Time spent in each pipeline stage.\n");
        out.push_str("# TYPE kiln_stage_duration_seconds histogram\n");
        let stages = self.stages.lock().map(|s| s.clone()).unwrap_or_default();
        for (stage, h) in &stages {
            let stage = escape(stage);
            for (n, bound) in h.buckets.iter().zip(STAGE_BUCKETS) {
                let _ = writeln!(
                    out,
                    "kiln_stage_duration_seconds_bucket{{stage=\"{stage}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "kiln_stage_duration_seconds_bucket{{stage=\"{stage}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "kiln_stage_duration_seconds_sum{{stage=\"{stage}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "kiln_stage_duration_seconds_count{{stage=\"{stage}\"}} {}",
                h.count
            );
        }
        out.push_str("# HELP kiln_queue_depth Runs waiting for a worker.\n");
        out.push_str("# TYPE kiln_queue_depth gauge\n");
        let _ = writeln!(out, "kiln_queue_depth {queued}");
        out.push_str("# HELP kiln_runs_running Runs executing now.\n");
        out.push_str("# TYPE kiln_runs_running gauge\n");
        let _ = writeln!(out, "kiln_runs_running {running}");
        render_registries(&mut out, registries);
        out
    }
}

/// The nodes sharing the run queue (a cluster's, or this host): runs per
/// node and state, and seconds since each node's last heartbeat — any
/// node's `/metrics` shows the whole cluster.
pub fn render_nodes(nodes: &[super::queue::NodeView]) -> String {
    let mut out = String::new();
    out.push_str("# HELP kiln_node_runs Runs each node claimed, by state.\n");
    out.push_str("# TYPE kiln_node_runs gauge\n");
    for n in nodes {
        for (state, count) in &n.runs {
            let (node, state) = (escape(&n.id), escape(state));
            let _ = writeln!(
                out,
                "kiln_node_runs{{node=\"{node}\",state=\"{state}\"}} {count}"
            );
        }
    }
    let age = "kiln_node_heartbeat_age_seconds";
    let _ = writeln!(out, "# HELP {age} Seconds since the node's last heartbeat.");
    let _ = writeln!(out, "# TYPE {age} gauge");
    for n in nodes {
        let (node, secs) = (escape(&n.id), n.heartbeat_age_seconds);
        let _ = writeln!(out, "{age}{{node=\"{node}\"}} {secs}");
    }
    out
}

/// One metric family: help, type, one sample per registry that has a value.
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    rows: &[RegistryStats],
    value: impl Fn(&RegistryStats) -> Option<String>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for r in rows {
        if let Some(v) = value(r) {
            let _ = writeln!(out, "{name}{{registry=\"{}\"}} {v}", escape(&r.registry));
        }
    }
}

fn render_registries(out: &mut String, rows: &[RegistryStats]) {
    let lookups = "kiln_registry_lookups_total";
    let _ = writeln!(
        out,
        "# HELP {lookups} Registry lookups by kind: head and pin requests sent, shared answers.\n# TYPE {lookups} counter"
    );
    for r in rows {
        let reg = escape(&r.registry);
        let l = &r.lookups;
        for (kind, n) in [("head", l.heads), ("pin", l.pins), ("shared", l.shared)] {
            let _ = writeln!(out, "{lookups}{{registry=\"{reg}\",kind=\"{kind}\"}} {n}");
        }
    }
    family(
        out,
        "kiln_registry_head_fallbacks_total",
        "counter",
        "HEADs answered without Docker-Content-Digest, decided by a GET instead.",
        rows,
        |r| Some(r.lookups.head_fallbacks.to_string()),
    );
    family(
        out,
        "kiln_registry_throttled_total",
        "counter",
        "Rate-limit pauses (429, or ratelimit-remaining: 0) begun per registry.",
        rows,
        |r| Some(r.throttle.pauses.to_string()),
    );
    family(
        out,
        "kiln_registry_throttle_wait_seconds_total",
        "counter",
        "Time requests waited for rate-limit pauses, summed over requests.",
        rows,
        |r| Some(r.throttle.waited.as_secs_f64().to_string()),
    );
    family(
        out,
        "kiln_registry_paused_seconds",
        "gauge",
        "Seconds left of the registry's current rate-limit pause (0 when not paused).",
        rows,
        |r| Some(r.throttle.paused_for.as_secs_f64().to_string()),
    );
    family(
        out,
        "kiln_registry_ratelimit_remaining",
        "gauge",
        "The allowance left, as the registry last reported it (ratelimit-remaining).",
        rows,
        |r| r.throttle.remaining.map(|n| n.to_string()),
    );
    family(
        out,
        "kiln_registry_ratelimit_limit",
        "gauge",
        "The allowance per window, as the registry last reported it (ratelimit-limit).",
        rows,
        |r| r.throttle.limit.map(|n| n.to_string()),
    );
}

/// Escapes a label value (`\`, `"`, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.run_finished(RunState::Passed);
        m.run_finished(RunState::Passed);
        m.stage_observed("build", 12.0);
        let reg = RegistryStats {
            registry: "r.io".into(),
            lookups: crate::registry::LookupCounts {
                heads: 3,
                ..Default::default()
            },
            throttle: crate::registry::ThrottleStats {
                pauses: 1,
                remaining: Some(7),
                ..Default::default()
            },
        };
        let text = m.render(3, 1, &[reg]);
        assert!(text.contains("kiln_registry_lookups_total{registry=\"r.io\",kind=\"head\"} 3\n"));
        assert!(text.contains("kiln_registry_throttled_total{registry=\"r.io\"} 1\n"));
        assert!(text.contains("kiln_registry_ratelimit_remaining{registry=\"r.io\"} 7\n"));
        assert!(!text.contains("kiln_registry_ratelimit_limit{"), "{text}");
        assert!(
            text.contains("kiln_runs_total{outcome=\"passed\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("kiln_runs_total{outcome=\"failed\"} 0\n"));
        assert!(text.contains("kiln_stage_duration_seconds_bucket{stage=\"build\",le=\"5\"} 0\n"));
        assert!(text.contains("kiln_stage_duration_seconds_bucket{stage=\"build\",le=\"15\"} 1\n"));
        assert!(text.contains("kiln_stage_duration_seconds_count{stage=\"build\"} 1\n"));
        assert!(text.contains("kiln_queue_depth 3\n"));
        assert!(text.contains("kiln_runs_running 1\n"));
    }
}
