//! `kiln resolve` and `kiln resolve --check` over many recipes, against the
//! real registry behind a counting relay: one request per distinct
//! reference (grouped by platform), HEAD first for `--check`, and every
//! refused reference listed.

mod support;

use std::path::Path;
use std::time::Duration;

use support::count_relay::{CountRelay, Rule};
use support::push::Pusher;
use support::{kiln_on, services, unique};

/// 30 recipes over 3 parents: 10 on a single-platform image `a`, 10 on
/// `b`, and 10 on a two-platform index `c` (half of them for arm64).
async fn project(relay: &CountRelay) -> (tempfile::TempDir, [String; 3]) {
    let s = services();
    let pusher = Pusher::new(&s.registry);
    let repos = [
        unique("kiln-it/many-a"),
        unique("kiln-it/many-b"),
        unique("kiln-it/many-c"),
    ];
    pusher.image(&repos[0], "1", "amd64", b"parent a").await;
    pusher.image(&repos[1], "1", "amd64", b"parent b").await;
    let amd = pusher
        .image(&repos[2], "amd", "amd64", b"parent c amd64")
        .await;
    let arm = pusher
        .image(&repos[2], "arm", "arm64", b"parent c arm64")
        .await;
    pusher
        .index(&repos[2], "1", &[(&amd, "amd64"), (&arm, "arm64")])
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("recipes")).unwrap();
    for i in 0..30 {
        let repo = &repos[i / 10];
        let platform = if i >= 25 {
            "platform: linux/arm64\n"
        } else {
            ""
        };
        let text = format!(
            "name: r{i:02}\nversion: 1.0.0\nparentImage: {}/{repo}:1\n{platform}",
            relay.host()
        );
        std::fs::write(dir.path().join(format!("recipes/r{i:02}.yaml")), text).unwrap();
    }
    (dir, repos)
}

fn kiln(dir: &Path, args: &[&str]) -> (i32, String, String) {
    kiln_on(dir, args)
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_recipes_cost_one_request_per_distinct_reference() {
    let s = services();
    let relay = CountRelay::start(&s.registry, Duration::ZERO).await;
    let (dir, repos) = project(&relay).await;

    let (code, out, err) = kiln(dir.path(), &["resolve"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 30, "{out}");
    // a, b: one GET each; c: the index once per platform plus each
    // platform's manifest.
    assert_eq!(relay.manifests("GET", &repos[0]), 1, "{:#?}", relay.seen());
    assert_eq!(relay.manifests("GET", &repos[1]), 1);
    assert_eq!(relay.manifests("GET", &repos[2]), 4);

    relay.reset();
    let (code, out, err) = kiln(dir.path(), &["resolve", "--check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: every reference matches"), "{out}");
    assert_eq!(relay.manifests("HEAD", ""), 3, "{:#?}", relay.seen());
    assert_eq!(relay.manifests("GET", ""), 0, "{:#?}", relay.seen());
    assert_eq!(relay.seen().len(), 3, "{:#?}", relay.seen());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refused_reference_is_listed() {
    let s = services();
    let relay = CountRelay::start(&s.registry, Duration::ZERO).await;
    let (dir, repos) = project(&relay).await;
    let (code, out, err) = kiln(dir.path(), &["resolve"]);
    assert_eq!(code, 0, "{out}{err}");
    let lock = std::fs::read_to_string(dir.path().join("kiln.lock")).unwrap();

    relay.add_rule(Rule::refuse(&repos[0], 403, "DENIED"));
    relay.add_rule(Rule::refuse(&repos[2], 404, "MANIFEST_UNKNOWN"));
    relay.reset();
    let (code, out, err) = kiln(dir.path(), &["resolve", "--check"]);
    assert_eq!(code, 6, "{out}{err}");
    // A HEAD answer has no body, so the status is what names the refusal.
    for (repo, why) in [(&repos[0], "403"), (&repos[2], "404")] {
        let lines = err.lines().filter(|l| l.contains(repo.as_str()));
        let lines: Vec<_> = lines.collect();
        assert_eq!(lines.len(), 1, "{repo} listed once: {err}");
        assert!(lines[0].contains(why), "{repo} {why}: {err}");
    }
    assert!(!err.contains(&repos[1]), "{err}");
    assert!(
        err.contains("2 parent image reference(s) could not be checked"),
        "{err}"
    );
    assert_eq!(relay.manifests("HEAD", ""), 3, "{err}");

    // `kiln resolve --update` lists both too, and leaves the lock alone for
    // the recipes it could not pin.
    let (code, out, err) = kiln(dir.path(), &["resolve", "--update"]);
    assert_eq!(code, 6, "{out}{err}");
    assert!(err.contains("cannot pin the parents of `r00`"), "{err}");
    assert!(err.contains("cannot pin the parents of `r29`"), "{err}");
    assert_eq!(out.lines().count(), 10, "only b's recipes pinned: {out}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("kiln.lock")).unwrap(),
        lock
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_lookups_are_single_flight_and_never_older_than_the_asker() {
    use kiln::reference::ImageReference;
    use kiln::registry::{LookupScope, RegistryClient, RegistryConfig};
    let s = services();
    let relay = CountRelay::start(&s.registry, Duration::from_millis(100)).await;
    let repo = unique("kiln-it/lookup");
    Pusher::new(&s.registry)
        .image(&repo, "1", "amd64", b"x")
        .await;
    let r = ImageReference::parse(&format!("{}/{repo}:1", relay.host())).unwrap();
    let c = RegistryClient::with_defaults().unwrap();
    let first = LookupScope::now();
    let (a, b) = tokio::join!(c.lookup_head(&r, &first), c.lookup_head(&r, &first));
    assert_eq!(a.unwrap(), b.unwrap());
    assert_eq!(
        relay.manifests("HEAD", &repo),
        1,
        "concurrent lookups share one request"
    );
    c.lookup_head(&r, &first).await.unwrap();
    assert_eq!(relay.manifests("HEAD", &repo), 1, "reused within the TTL");
    let later = LookupScope::now();
    c.lookup_head(&r, &later).await.unwrap();
    assert_eq!(
        relay.manifests("HEAD", &repo),
        2,
        "an answer older than the asker is not served"
    );
    let short = RegistryClient::new(RegistryConfig {
        lookup_ttl: Duration::from_millis(50),
        ..RegistryConfig::default()
    })
    .unwrap();
    short.lookup_head(&r, &first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    short.lookup_head(&r, &first).await.unwrap();
    assert_eq!(relay.manifests("HEAD", &repo), 4, "the TTL expires");
    let stats = c.stats();
    assert_eq!(stats[0].lookups.heads, 2);
    assert_eq!(stats[0].lookups.shared, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_without_digest_falls_back_to_one_get_per_reference() {
    use kiln::pipeline::pins_many;
    use kiln::project::Project;
    use kiln::registry::RegistryClient;
    let s = services();
    let relay = CountRelay::start(&s.registry, Duration::ZERO).await;
    let (dir, _) = project(&relay).await;
    let (code, out, err) = kiln(dir.path(), &["resolve"]);
    assert_eq!(code, 0, "{out}{err}");
    relay.strip_on_head("docker-content-digest");
    relay.reset();
    let project = Project::open(dir.path()).unwrap();
    let names = kiln::load::list_recipes(&project);
    let recipes: Vec<_> = names
        .iter()
        .map(|n| kiln::load::load_recipe(&project, n).unwrap())
        .collect();
    let client = RegistryClient::with_defaults().unwrap();
    let checked = pins_many::check_all(&client, &project, &recipes)
        .await
        .unwrap();
    assert!(checked.failures.is_empty(), "{:?}", checked.failures);
    assert!(checked.report.is_clean(), "{:?}", checked.report);
    assert_eq!(relay.manifests("HEAD", ""), 3, "{:#?}", relay.seen());
    // a, b: one GET each; c: the index and its manifest, per platform.
    assert_eq!(relay.manifests("GET", ""), 6, "{:#?}", relay.seen());
    let stats = client.stats();
    assert_eq!(stats[0].lookups.head_fallbacks, 3, "{stats:?}");
}
