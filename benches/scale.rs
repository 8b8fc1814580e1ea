//! Benchmark (prints, asserts nothing): a project of N pipelines (default
//! 1000) over 20 parents, every registry request through a relay that adds
//! 50 ms. Prints `kiln validate` time, `kiln resolve --check` time and
//! request count, an unchanged scheduled slot of N pipelines in `kiln serve`
//! (wall time, manifest HEAD/GET counts, daemon RSS) and `kiln serve`
//! start-up time, each beside its target. Run: `scripts/bench-scale [N]`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use support::count_relay::CountRelay;

const PARENTS: usize = 20;
const TOKEN: &str = "bench-reader";

fn kiln(dir: &Path, args: &[&str]) -> (Duration, i32, String) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--project")
        .arg(dir)
        .args(args)
        .output()
        .expect("running kiln");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    (t.elapsed(), out.status.code().unwrap_or(-1), text)
}

/// N recipes over the relay's parents, each scheduled every minute at second 0.
fn project(dir: &Path, relay: &CountRelay, repos: &[String], n: usize) {
    std::fs::create_dir_all(dir.join("recipes")).unwrap();
    std::fs::create_dir_all(dir.join("config")).unwrap();
    for i in 0..n {
        let parent = format!("{}/{}:1", relay.host(), repos[i % repos.len()]);
        let text = format!(
            "name: p{i:04}\nversion: 1.0.0\nparentImage: {parent}\n\
             schedule:\n  cron: \"0 * * * * *\"\n  timezone: UTC\n  onlyWhenDependenciesChange: true\n"
        );
        std::fs::write(dir.join(format!("recipes/p{i:04}.yaml")), text).unwrap();
    }
    let config = format!(
        "listen: 127.0.0.1:0\ntokens:\n  - name: bench\n    role: reader\n    sha256: {}\n",
        kiln::daemon::auth::hash_token(TOKEN)
    );
    std::fs::write(dir.join("config/kiln.yaml"), config).unwrap();
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Starts `kiln serve`; returns the child, its address and the start-up time
/// (spawn → `/healthz` answers).
async fn serve(dir: &Path) -> (Child, String, Duration) {
    let log = dir.join("daemon.log");
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--project")
        .arg(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(std::fs::File::create(&log).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..600 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let clean = text.replace("\u{1b}[", "\u{1b}");
        if let Some(addr) = clean.split("listening on ").nth(1) {
            let addr: String = addr
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            if reqwest::get(format!("http://{addr}/healthz")).await.is_ok() {
                return (child, addr, t.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "kiln serve did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

async fn up_to_date(addr: &str) -> u64 {
    let text = reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("kiln_runs_total{outcome=\"up_to_date\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("KILN_BENCH_PIPELINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let s = support::services();
    let pusher = support::push::Pusher::new(&s.registry);
    let mut repos = Vec::new();
    for i in 0..PARENTS {
        let repo = support::unique(&format!("kiln-bench/scale-{i}"));
        pusher
            .image(&repo, "1", "amd64", format!("parent {i}").as_bytes())
            .await;
        repos.push(repo);
    }
    let relay = CountRelay::start(&s.registry, Duration::from_millis(50)).await;
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &relay, &repos, n);
    println!(
        "{n} pipelines over {PARENTS} parents, every registry request +50 ms (relay {})",
        relay.host()
    );

    let (t, code, err) = kiln(dir.path(), &["validate"]);
    assert_eq!(code, 0, "{err}");
    println!("kiln validate          {:>8.2} s", t.as_secs_f64());
    let (_, code, err) = kiln(dir.path(), &["resolve"]);
    assert_eq!(code, 0, "{err}");
    relay.reset();
    let (t, code, err) = kiln(dir.path(), &["resolve", "--check"]);
    assert_eq!(code, 0, "{err}");
    println!(
        "kiln resolve --check   {:>8.2} s   {} requests ({} manifest HEADs, {} GETs)   target <= 0.5 s",
        t.as_secs_f64(),
        relay.seen().len(),
        relay.manifests("HEAD", ""),
        relay.manifests("GET", "")
    );

    let t = Instant::now();
    support::seed::up_to_date(dir.path()).await;
    println!(
        "(seeded {n} passing records in {:.1} s)",
        t.elapsed().as_secs_f64()
    );

    let (mut child, addr, startup) = serve(dir.path()).await;
    println!(
        "kiln serve start-up    {:>8.2} s   target <= 1 s",
        startup.as_secs_f64()
    );
    let idle = rss_kib(child.id(), "VmRSS:");
    // The slot: the next whole minute.
    let now = Utc::now();
    let wait = Duration::from_millis(u64::from(
        60_000 - (now.second() * 1000 + now.timestamp_subsec_millis()).min(60_000),
    ));
    tokio::time::sleep(wait.saturating_sub(Duration::from_millis(200))).await;
    relay.reset();
    let slot = Instant::now() + Duration::from_millis(200);
    let mut done = 0;
    while done < n as u64 && slot.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        done = up_to_date(&addr).await;
    }
    let wall = slot.elapsed();
    let peak = rss_kib(child.id(), "VmHWM:");
    println!(
        "unchanged slot         {:>8.2} s   {done}/{n} up_to_date, {} manifest HEADs, {} GETs   target <= 10 s, <= 20 manifest requests",
        wall.as_secs_f64(),
        relay.manifests("HEAD", ""),
        relay.manifests("GET", "")
    );
    println!(
        "daemon RSS             idle {:.1} MB, peak {:.1} MB   target: flat in N",
        idle as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
}
