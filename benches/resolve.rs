//! Benchmark (not a timed test): resolves 50 references concurrently against
//! the local registry, then checks the unchanged lock. Prints wall time and
//! requests made. Run: `cargo bench --bench resolve`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use kiln::reference::ImageReference;
use kiln::registry::RegistryClient;
use kiln::resolve::{self, LockFile, ResolveOptions};

const REFS: usize = 50;

#[tokio::main]
async fn main() {
    let s = support::services();
    let repo = support::unique("kiln/bench");
    let pusher = support::push::Pusher::new(&s.registry);
    let mut refs = Vec::with_capacity(REFS);
    for i in 0..REFS {
        let tag = format!("t{i}");
        pusher
            .image(&repo, &tag, "amd64", format!("layer {i}").as_bytes())
            .await;
        refs.push(ImageReference::parse(&format!("{}/{repo}:{tag}", s.registry)).unwrap());
    }
    let recipes = vec![("bench".to_string(), refs)];
    let options = ResolveOptions::default();

    let client = RegistryClient::with_defaults().unwrap();
    let start = Instant::now();
    let resolved = resolve::resolve_all(&client, &recipes, &options)
        .await
        .unwrap();
    let resolve_time = start.elapsed();
    let resolve_requests = client.requests_made();
    assert_eq!(resolved[0].1.len(), REFS);

    let mut lock = LockFile::default();
    lock.apply(&resolved, chrono::Utc::now());
    let start = Instant::now();
    let report = resolve::check(&client, &lock, &recipes, &options)
        .await
        .unwrap();
    let check_time = start.elapsed();
    let check_requests = client.requests_made() - resolve_requests;
    assert!(report.is_clean(), "{report:?}");

    println!(
        "resolve: {REFS} references, concurrency {}: {resolve_time:?}, {resolve_requests} requests",
        options.concurrency
    );
    println!(
        "check (unchanged lock): {check_time:?}, {check_requests} requests ({} per reference)",
        check_requests as f64 / REFS as f64
    );
    assert_eq!(
        check_requests, REFS as u64,
        "check must cost one HEAD per reference"
    );
}
