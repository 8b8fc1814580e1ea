//! The approval gate and promotion end to end (issue 14), against the real
//! Docker engine, the local registry, a second registry process and moto's
//! ECR: a run with `approval: required` pushes to staging only and is not
//! approved; `kiln approve` promotes the exact digest (same-host mount,
//! cross-registry copy, OCI→ECR) with its signature; a re-promotion uploads
//! nothing; a rejection promotes nothing; bad promotions push nothing.

mod support;

use std::path::Path;

use kiln::digest::Digest;
use kiln::record::{ChainKeys, Status, Store};
use kiln::sign::SigningKey;
use support::example::{example_project, registry_tags};
use support::registry_process::RegistryProcess;
use support::{kiln_on, services};

/// `Docker-Content-Digest` of `repo:tag` at `host` (`None`: 404).
async fn head(host: &str, repo: &str, tag: &str) -> Option<Digest> {
    let res = reqwest::Client::new()
        .head(format!("http://{host}/v2/{repo}/manifests/{tag}"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    if res.status() == 404 {
        return None;
    }
    assert!(
        res.status().is_success(),
        "HEAD {host}/{repo}:{tag}: {}",
        res.status()
    );
    Some(
        res.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap(),
    )
}

/// moto's `BatchGetImage` digest of `repo:tag`, checked against the bytes.
async fn ecr_digest(repo: &str, tag: &str) -> Option<Digest> {
    services();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let out = aws_sdk_ecr::Client::new(&conf)
        .batch_get_image()
        .repository_name(repo)
        .image_ids(
            aws_sdk_ecr::types::ImageIdentifier::builder()
                .image_tag(tag)
                .build(),
        )
        .send()
        .await
        .ok()?;
    let img = out.images().first()?;
    let reported: Digest = img.image_id()?.image_digest()?.parse().unwrap();
    assert_eq!(reported, Digest::of(img.image_manifest()?.as_bytes()));
    Some(reported)
}

/// `kiln --config CONFIG ARGS…` in `dir`; asserts the exit code.
fn kiln(dir: &Path, config: &Path, args: &[&str], code: i32) -> (String, String) {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    let (got, out, err) = kiln_on(dir, &all);
    assert_eq!(
        got,
        code,
        "kiln {}\n--- stdout\n{out}--- stderr\n{err}",
        args.join(" ")
    );
    (out, err)
}

/// A key pair and an operator config naming it, outside any project.
fn operator() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let ops = tempfile::tempdir().unwrap();
    let (key, _) = SigningKey::generate(ops.path()).unwrap();
    let config = ops.path().join("kiln.yaml");
    std::fs::write(&config, format!("signing:\n  key: {}\n", key.display())).unwrap();
    (ops, config, key)
}

/// The example project with `approval: required` and the `promote` entries
/// given (`PROD` stands for the staging repository + `-prod`); returns the
/// folder, the staging and production repositories and the recipe text.
fn approval_project(promote: &str) -> (tempfile::TempDir, String, String, String) {
    let (dir, repo) = example_project(|t| {
        let head = format!("distribute:\n  approval: required\n  promote:\n{promote}");
        t.replacen("distribute:\n", &head, 1)
    });
    let prod = format!("{repo}-prod");
    let recipe = dir.path().join("recipes/hello-web.yaml");
    let text = std::fs::read_to_string(&recipe)
        .unwrap()
        .replace("PROD", &prod);
    std::fs::write(&recipe, &text).unwrap();
    (dir, repo, prod, text)
}

#[tokio::test(flavor = "multi_thread")]
async fn approval_gates_staging_promotes_the_same_digest_and_rejection_promotes_nothing() {
    let s = services();
    let other = RegistryProcess::start_plain();
    let (_ops, config, key) = operator();
    let promote = format!(
        "    - oci:\n        registry: {0}\n        repository: PROD\n    - oci:\n        registry: {1}\n        repository: PROD\n    - ecr:\n        region: us-east-1\n        repository: PROD\n",
        s.registry, other.host
    );
    let (dir, repo, prod, text) = approval_project(&promote);
    let recipe = dir.path().join("recipes/hello-web.yaml");
    let (d, c) = (dir.path(), config.as_path());

    // The run pushes to staging only and waits.
    let (out, _) = kiln(d, c, &["run", "hello-web", "--quiet"], 0);
    assert!(out.contains("awaiting approval"), "{out}");
    let digest = head(&s.registry, &repo, "1.0.0-1").await.expect("staged");
    let sig = format!("sha256-{}.sig", digest.hex());
    assert!(
        head(&s.registry, &repo, &sig).await.is_some(),
        "staging is signed"
    );
    assert!(registry_tags(&prod).await.is_empty());
    assert_eq!(ecr_digest(&prod, "1.0.0-1").await, None);
    kiln(d, c, &["approved", "hello-web"], 1);
    // While it waits, a run with the same inputs has nothing to do.
    let (out, _) = kiln(d, c, &["run", "hello-web", "--quiet"], 0);
    assert!(
        out.contains("up to date") && !out.contains("approved "),
        "{out}"
    );
    assert_eq!(head(&s.registry, &repo, "1.0.0-2").await, None);
    let same_host = format!("{}/{prod}", s.registry);
    let (_, err) = kiln(
        d,
        c,
        &["promote", "hello-web:1.0.0-1", "--to", &same_host],
        1,
    );
    assert!(
        err.contains("awaits approval") && err.contains("nothing was pushed"),
        "{err}"
    );
    assert!(registry_tags(&prod).await.is_empty());

    // Approval promotes the exact digest and its signature everywhere.
    let (out, _) = kiln(
        d,
        c,
        &["approve", "hello-web:1.0.0-1", "--note", "checked"],
        0,
    );
    eprintln!("{out}");
    assert!(
        out.contains("hello-web:1.0.0-1 approved by local:"),
        "{out}"
    );
    assert_eq!(out.matches("promoted ").count(), 3, "{out}");
    for host in [&s.registry, &other.host] {
        assert_eq!(
            head(host, &prod, "1.0.0-1").await.as_ref(),
            Some(&digest),
            "{host}"
        );
        // Signed anew for the destination (a copied signature would name
        // the staging repository): downstream verification passes there.
        assert!(head(host, &prod, &sig).await.is_some(), "signed at {host}");
        let pinned = format!("{host}/{prod}@{digest}");
        let (out, _) = kiln(d, c, &["verify", &pinned], 0);
        assert!(out.contains("verified: "), "{out}");
    }
    assert_eq!(
        ecr_digest(&prod, "1.0.0-1").await.as_ref(),
        Some(&digest),
        "moto ECR"
    );
    // Signed anew at ECR too; its attestations were copied along.
    let pinned = format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{prod}@{digest}");
    let (verified, _) = kiln(d, c, &["verify", &pinned], 0);
    assert!(verified.contains("verified: "), "{verified}");
    let line = |needle: &str| {
        out.lines()
            .find(|l| l.contains(needle))
            .unwrap()
            .to_string()
    };
    assert!(
        line(&same_host).contains("0 bytes uploaded"),
        "mounted: {out}"
    );
    assert!(
        !line(&other.host).contains(" 0 bytes uploaded"),
        "copied: {out}"
    );

    let (out, _) = kiln(d, c, &["approved", "hello-web"], 0);
    for r in [
        format!("{same_host}@{digest}"),
        format!("{}/{prod}@{digest}", other.host),
    ] {
        assert!(out.contains(&r), "{r} in {out}");
    }

    // Re-promotion is a no-op; a second decision is refused; nothing appended.
    for to in [
        same_host.as_str(),
        &format!("{}/{prod}", other.host),
        &format!("ecr:us-east-1/{prod}"),
    ] {
        let (out, _) = kiln(d, c, &["promote", "hello-web:1.0.0-1", "--to", to], 0);
        assert!(
            out.contains("already promoted") && out.contains("(0 bytes uploaded"),
            "{out}"
        );
    }
    let args = ["promote", "hello-web:1.0.0-1", "--to", &same_host, "--json"];
    let (out, _) = kiln(d, c, &args, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["noOp"], true, "{json}");
    assert_eq!(
        json["copied"]["manifestDigest"],
        digest.to_string(),
        "{json}"
    );
    let (_, err) = kiln(d, c, &["approve", "hello-web:1.0.0-1"], 1);
    assert!(err.contains("already approved by `local:"), "{err}");
    // Under --json the refusal is the JSON error document on stdout.
    let (out, _) = kiln(d, c, &["approve", "hello-web:1.0.0-1", "--json"], 1);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        json["error"].to_string().contains("already approved"),
        "{json}"
    );
    let (out, _) = kiln(d, c, &["records", "--verify"], 0);
    assert!(
        out.contains("1 records, chain intact (4 events)") && out.contains("every entry signed"),
        "{out}"
    );

    // Unknown build or target, a build that never passed: errors, nothing pushed.
    let (_, err) = kiln(
        d,
        c,
        &["promote", "hello-web:1.0.0-9", "--to", &same_host],
        1,
    );
    assert!(err.contains("no record `hello-web:1.0.0-9`"), "{err}");
    let nowhere = format!("{}/{repo}-nowhere", s.registry);
    let (_, err) = kiln(d, c, &["promote", "hello-web:1.0.0-1", "--to", &nowhere], 1);
    assert!(
        err.contains("no promote target") && err.contains(&same_host),
        "{err}"
    );
    assert!(registry_tags(&format!("{repo}-nowhere")).await.is_empty());
    let keys = ChainKeys::signing(std::sync::Arc::new(SigningKey::load(&key).unwrap()));
    let mut store = Store::open(kiln::record::db_path(d))
        .unwrap()
        .with_keys(keys);
    let mut failed = store
        .get(&"hello-web:1.0.0-1".parse().unwrap())
        .unwrap()
        .record;
    let a = store.allocate("hello-web", &failed.version).unwrap();
    (failed.id, failed.build, failed.status) = (a.id, a.build.build, Status::Failed);
    store.append(&failed).unwrap();
    let (_, err) = kiln(
        d,
        c,
        &["promote", "hello-web:1.0.0-2", "--to", &same_host],
        1,
    );
    assert!(err.contains("never passed"), "{err}");
    let (_, err) = kiln(d, c, &["approve", "hello-web:1.0.0-2"], 1);
    assert!(err.contains("not awaiting approval"), "{err}");

    // A rejected build is never served or promoted.
    std::fs::write(
        &recipe,
        text.replace(
            "Greeting: Hello from kiln",
            "Greeting: Hello from kiln, again",
        ),
    )
    .unwrap();
    let (out, _) = kiln(d, c, &["run", "hello-web", "--quiet"], 0);
    assert!(out.contains("awaiting approval"), "{out}");
    let rejected = head(&s.registry, &repo, "1.0.0-3").await.expect("staged");
    assert_ne!(rejected, digest);
    kiln(
        d,
        c,
        &["reject", "hello-web:1.0.0-3", "--note", "not today"],
        0,
    );
    let (_, err) = kiln(
        d,
        c,
        &["promote", "hello-web:1.0.0-3", "--to", &same_host],
        1,
    );
    assert!(err.contains("was rejected"), "{err}");
    assert_eq!(head(&s.registry, &prod, "1.0.0-3").await, None);
    assert_eq!(head(&other.host, &prod, "1.0.0-3").await, None);
    assert_eq!(ecr_digest(&prod, "1.0.0-3").await, None);
    let (out, _) = kiln(d, c, &["approved", "hello-web"], 0);
    assert!(
        out.contains(&digest.to_string()) && !out.contains(&rejected.to_string()),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_approves_with_an_approver_token_signs_and_promotes() {
    let s = services();
    let (_ops, config, _) = operator();
    let promote = format!(
        "    - oci:\n        registry: {}\n        repository: PROD\n",
        s.registry
    );
    let (dir, repo, prod, _) = approval_project(&promote);
    // The operator config: the shipped dev tokens and the signing key.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kiln.yaml");
    let dev = std::fs::read_to_string(shipped).unwrap();
    let signing = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{dev}\n{signing}")).unwrap();
    let (d, c) = (dir.path(), config.as_path());
    let (out, _) = kiln(d, c, &["run", "hello-web", "--quiet"], 0);
    assert!(out.contains("awaiting approval"), "{out}");
    let digest = head(&s.registry, &repo, "1.0.0-1").await.unwrap();

    let args = [
        "--project".as_ref(),
        d.as_os_str(),
        "--config".as_ref(),
        c.as_os_str(),
    ];
    let (_daemon, url) = support::serve_process::serve(&args);
    let http = reqwest::Client::new();
    let post = |token: &'static str| {
        http.post(format!("{url}/v1/builds/hello-web:1.0.0-1/approval"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "decision": "approve", "note": "release 7" }))
            .send()
    };
    for token in ["kiln-dev-reader", "kiln-dev-trigger", "kiln-dev-admin"] {
        assert_eq!(post(token).await.unwrap().status(), 403, "{token}");
    }
    assert!(registry_tags(&prod).await.is_empty(), "nothing promoted");
    let ok = post("kiln-dev-approver").await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(
        body["decision"]["event"]["by"], "token:dev-approver",
        "{body}"
    );
    assert_eq!(
        body["promotions"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    assert_eq!(
        head(&s.registry, &prod, "1.0.0-1").await,
        Some(digest.clone())
    );

    let approved: serde_json::Value = http
        .get(format!("{url}/v1/pipelines/hello-web/approved"))
        .bearer_auth("kiln-dev-reader")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refs = approved["references"].to_string();
    assert!(
        refs.contains(&format!("{}/{prod}@{digest}", s.registry)),
        "{approved}"
    );
    let (out, _) = kiln(d, c, &["records", "--verify"], 0);
    assert!(
        out.contains("(2 events)") && out.contains("every entry signed"),
        "{out}"
    );
}

/// `policy.requireApproval` in the operator config: a recipe without an
/// `approval` key waits at the gate all the same, and one that says
/// `approval: none` is refused at load, naming the line and the rule.
#[tokio::test(flavor = "multi_thread")]
async fn the_policy_requires_approval_of_every_build() {
    services();
    let (_ops, config, _) = operator();
    let signing = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{signing}policy:\n  requireApproval: true\n"),
    )
    .unwrap();
    let (dir, _) = example_project(|t| t);
    let (d, c) = (dir.path(), config.as_path());
    let (out, _) = kiln(d, c, &["run", "hello-web", "--quiet"], 0);
    assert!(out.contains("awaiting approval"), "{out}");
    let (approved, err) = kiln(d, c, &["approved", "hello-web"], 1);
    assert!(approved.trim().is_empty(), "{approved}{err}");

    let (none, _) =
        example_project(|t| t.replacen("distribute:\n", "distribute:\n  approval: none\n", 1));
    let recipe = std::fs::read_to_string(none.path().join("recipes/hello-web.yaml")).unwrap();
    let line = recipe
        .lines()
        .position(|l| l.contains("approval: none"))
        .unwrap()
        + 1;
    let (_, err) = kiln(none.path(), c, &["run", "hello-web"], 3);
    let expect = format!("recipes/hello-web.yaml:{line}:13: policy `requireApproval`");
    assert!(err.contains(&expect), "expected `{expect}` in:\n{err}");
    assert!(
        !none.path().join(".kiln").exists(),
        "nothing built or recorded"
    );
}
