//! Prometheus metrics, kept in memory and rendered by hand in the text
//! exposition format: runs by outcome (counter), stage durations
//! (histogram), queue depth and running runs (gauges, read from SQLite at
//! scrape time).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use super::run::RunState;

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

    /// The text exposition format, with the queue gauges given.
    pub fn render(&self, queued: i64, running: i64) -> String {
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
        out
    }
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
        let text = m.render(3, 1);
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
