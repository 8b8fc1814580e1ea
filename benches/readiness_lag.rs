//! Readiness lag: time from the server's own "listening" log line (printed
//! with `$EPOCHREALTIME` right after busybox httpd has bound its port) to
//! kiln's ready event (`TestReport::ready_at`), over 20 runs per probe kind.
//! Prints median and p95; no assertions. Needs the services
//! (`scripts/services up`). Run it with the dev profile (a plain
//! `cargo bench` would build every dependency in release mode):
//! `cargo bench --profile dev --bench readiness_lag`.

#[path = "../tests/support/images.rs"]
mod images;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, UNIX_EPOCH};

use kiln::load::{HttpCheck, ResourceLimits, TestConfig};
use kiln::test_phase::{self, TestInput};

const RUNS: usize = 20;
const SERVER: &str = "RUN mkdir -p /www && echo 'hello kiln' > /www/index.html\n\
    CMD [\"sh\", \"-c\", \"sleep 0.3; httpd -p 8080 -h /www; echo listening $EPOCHREALTIME; exec sleep 3600\"]";

fn input(http: bool) -> TestInput {
    TestInput {
        image: "kiln-bench/lag:1".into(),
        recipe: "bench".into(),
        config: TestConfig {
            port: Some(8080),
            http: http.then(|| HttpCheck {
                path: "/".into(),
                expect_status: 200,
                body_contains: Some("hello".into()),
                body_regex: None,
                headers: Default::default(),
            }),
            log_line: None,
            timeout: Duration::from_secs(20),
            limits: ResourceLimits::default(),
            structure_tests: Vec::new(),
        },
        test_scripts: Vec::new(),
        exec_timeout: Duration::from_secs(60),
        policy: Default::default(),
        daemon_run: None,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    support::services();
    let docker = images::docker().await;
    images::build(&docker, "kiln-bench/lag:1", SERVER).await;
    for (label, http) in [
        ("tcp (direct container address)", false),
        ("http (published port)", true),
    ] {
        let mut lags = Vec::new();
        for _ in 0..RUNS {
            let r = test_phase::test_image(&docker, &input(http))
                .await
                .expect("test phase runs");
            assert!(r.passed, "{}", r.summary());
            let listening: f64 = r
                .logs
                .lines()
                .find_map(|l| l.strip_prefix("listening ")?.trim().parse().ok())
                .expect("the server logs its listening time");
            let ready = r
                .ready_at
                .expect("ready")
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            lags.push((ready - listening) * 1000.0);
        }
        let mut sorted = lags.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "readiness lag, {label}, {RUNS} runs: median {:.1} ms, p95 {:.1} ms, min {:.1} ms, max {:.1} ms",
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.95),
            sorted[0],
            sorted[sorted.len() - 1]
        );
    }
}
