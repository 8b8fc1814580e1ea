//! The findings gate's built-in secret scan (`findings::scan::collect`,
//! streamed from `docker save`) on a small image and on one with a ~200 MB
//! text layer: time, throughput and the process's peak RSS (VmHWM) after
//! each. Prints figures; asserts nothing. Needs the services
//! (`scripts/services up`): `cargo bench --profile dev --bench findings`.

#[path = "../tests/support/images.rs"]
mod images;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use kiln::operator::findings::FindingsConfig;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[tokio::main]
async fn main() {
    support::services();
    let docker = images::docker().await;
    let big = "kiln-bench/findings-big:1";
    images::build(
        &docker,
        big,
        "RUN dd if=/dev/urandom bs=1M count=150 2>/dev/null | base64 > /big.txt",
    )
    .await;
    let config = FindingsConfig::default();
    for (name, image) in [
        ("base", images::base()),
        ("base + 200 MB text", big.to_string()),
    ] {
        let size = docker
            .inspect_image(&image)
            .await
            .unwrap()
            .size
            .unwrap_or(0) as f64
            / 1e6;
        let t = Instant::now();
        let scanned = kiln::findings::scan::collect(&docker, &image, &config)
            .await
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{name:<20} {size:>7.1} MB  {secs:>6.2} s  {:>6.1} MB/s  {} layers, {} text files, {} findings  peak RSS {:.1} MB",
            size / secs,
            scanned.layers,
            scanned.files,
            scanned.findings.len(),
            peak_rss_mb()
        );
    }
    let _ = docker
        .remove_image(
            big,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
}
