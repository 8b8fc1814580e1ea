//! A bounded load generator for the kiln daemon's read-only API (used by
//! `scripts/bench-daemon`): a fixed request budget sent open-loop at a fixed
//! rate over loopback, then requests/s, p50/p99 latency and, given the
//! daemon's PID, its peak RSS during the load (from /proc/PID/status).
//!
//! `cargo run --example load -- URL TOKEN [RATE] [SECONDS] [PID]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Read-only calls, in rotation.
const PATHS: [&str; 6] = [
    "/v1/pipelines",
    "/v1/runs?limit=20",
    "/v1/records?limit=20",
    "/v1/pipelines/hello-web/approved",
    "/metrics",
    "/healthz",
];
/// However the daemon behaves, the run stops after this long.
const HARD_LIMIT: Duration = Duration::from_secs(120);

/// VmRSS of a process in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: load URL TOKEN [RATE=500] [SECONDS=10] [PID]");
        std::process::exit(2);
    }
    let url = args[0].trim_end_matches('/').to_string();
    let token = args[1].clone();
    let rate: u64 = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500)
        .clamp(1, 5000);
    let seconds: u64 = args
        .get(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10)
        .clamp(1, 60);
    let pid: Option<u32> = args.get(4).and_then(|a| a.parse().ok());
    let budget = rate * seconds;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(256)
        .build()
        .expect("http client");
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = pid.map(|pid| {
        let peak = peak_rss.clone();
        tokio::spawn(async move {
            loop {
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    });

    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for i in 0..budget {
        ticker.tick().await;
        if started.elapsed() > HARD_LIMIT {
            break;
        }
        let req = http
            .get(format!("{url}{}", PATHS[i as usize % PATHS.len()]))
            .bearer_auth(&token);
        tasks.spawn(async move {
            let t0 = Instant::now();
            let ok = match req.send().await {
                Ok(r) => {
                    let status = r.status();
                    r.bytes().await.is_ok() && (status.is_success() || status.as_u16() == 404)
                }
                Err(_) => false,
            };
            (t0.elapsed(), ok)
        });
    }
    let mut latencies = Vec::with_capacity(budget as usize);
    let mut errors = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while let Ok(Some(done)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        if let Ok((latency, ok)) = done {
            latencies.push(latency);
            errors += u64::from(!ok);
        }
    }
    let elapsed = started.elapsed();
    if let Some(s) = sampler {
        s.abort();
    }
    latencies.sort();
    println!(
        "requests:   {} sent, {} answered, {errors} errors",
        budget,
        latencies.len()
    );
    println!("target:     {rate} req/s for {seconds} s");
    println!(
        "achieved:   {:.0} req/s",
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency:    p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    if pid.is_some() {
        println!(
            "rss (load): {:.1} MB peak",
            peak_rss.load(Ordering::Relaxed) as f64 / 1024.0
        );
    }
}
