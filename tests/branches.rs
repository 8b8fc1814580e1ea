//! Branch pipelines end to end on the example project, against the real
//! Docker engine, registry and moto's ECR: a branch build gets suffixed
//! tags and a branch record, is never approved, is up to date per branch,
//! is listed by `kiln branches`, and `kiln cleanup --branch` removes its
//! tags from the registry and ECR while the main tags stay.

mod support;

use std::path::Path;

use support::example::{example_project, registry_tags};
use support::{kiln_on, services};

async fn ecr_tags(repo: &str) -> Vec<String> {
    services();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let out = aws_sdk_ecr::Client::new(&conf)
        .list_images()
        .repository_name(repo)
        .send()
        .await
        .unwrap();
    let mut tags: Vec<String> = out
        .image_ids()
        .iter()
        .filter_map(|i| i.image_tag().map(str::to_string))
        .collect();
    tags.sort();
    tags
}

fn run(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["run", "hello-web"];
    all.extend_from_slice(args);
    let (code, out, err) = kiln_on(dir, &all);
    assert_eq!(code, 0, "kiln {all:?}\nstdout:\n{out}\nstderr:\n{err}");
    out
}

fn approved_build(dir: &Path) -> Option<serde_json::Value> {
    let (code, out, _) = kiln_on(dir, &["approved", "hello-web", "--json"]);
    (code == 0).then(|| {
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["record"]["record"].clone()
    })
}

#[tokio::test]
async fn a_branch_build_is_never_approved_and_its_cleanup_removes_only_its_tags() {
    services();
    let (dir, repo) = example_project(|t| t);
    let d = dir.path();
    let suffix = kiln::branch::BranchName::parse("feature/login")
        .unwrap()
        .tag_suffix();
    assert!(suffix.starts_with("-branch.feature-login."), "{suffix}");

    // A branch build first, with its own change: no approved image exists.
    let recipe = d.join("recipes/hello-web.yaml");
    let main_text = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(
        &recipe,
        main_text.replace(
            "Greeting: Hello from kiln",
            "Greeting: Hello from kiln, branch",
        ),
    )
    .unwrap();
    let out = run(d, &["--branch", "feature/login"]);
    assert!(out.contains("status    passed"), "{out}");
    assert!(
        !out.contains("approved  "),
        "a branch build is not approved:\n{out}"
    );
    let branch_tag = format!("1.0.0-1{suffix}");
    assert!(out.contains(&branch_tag), "{out}");
    assert!(
        approved_build(d).is_none(),
        "approved returned a branch build"
    );
    // The same branch again: up to date on the branch.
    let out = run(d, &["--branch", "feature/login"]);
    assert!(out.contains("status    up to date"), "{out}");

    // Main, then the branch with main's inputs (same digest as main's).
    std::fs::write(&recipe, &main_text).unwrap();
    let out = run(d, &[]);
    assert!(
        out.contains("status    passed") && out.contains("approved  "),
        "{out}"
    );
    let same_suffix = kiln::branch::BranchName::parse("same")
        .unwrap()
        .tag_suffix();
    let out = run(d, &["--branch", "same"]);
    assert!(
        out.contains("status    passed"),
        "per branch, not main's record:\n{out}"
    );
    let approved = approved_build(d).expect("main is approved");
    assert_eq!(approved["build"], 2);
    assert!(approved.get("branch").is_none(), "{approved}");

    let mut oci = registry_tags(&repo).await;
    oci.sort();
    let expected = {
        let mut v = vec![
            branch_tag.clone(),
            "1.0.0-2".to_string(),
            format!("1.0.0-3{same_suffix}"),
        ];
        v.sort();
        v
    };
    assert_eq!(oci, expected);
    assert_eq!(ecr_tags(&repo).await, expected);

    let (code, out, _) = kiln_on(d, &["branches"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("feature/login  1 build(s), 2 tag(s), not cleaned up"),
        "{out}"
    );
    assert!(
        out.contains("same  1 build(s), 2 tag(s), not cleaned up"),
        "{out}"
    );

    // Cleanup of feature/login: its tags are gone everywhere, main's stay.
    let (code, out, err) = kiln_on(d, &["cleanup", "--branch", "feature/login"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let mut left = vec!["1.0.0-2".to_string(), format!("1.0.0-3{same_suffix}")];
    left.sort();
    let mut oci = registry_tags(&repo).await;
    oci.sort();
    assert_eq!(oci, left);
    assert_eq!(ecr_tags(&repo).await, left);
    let (_, out, _) = kiln_on(d, &["branches"]);
    assert!(
        out.contains("feature/login  1 build(s), 2 tag(s), cleaned up"),
        "{out}"
    );

    // `same` shares main's digest: ECR drops the tag alone; the registry
    // cannot delete a tag alone, and deleting the digest would take main's
    // tag, so the OCI tag is left and the cleanup says so (exit 1).
    let (code, out, _) = kiln_on(d, &["cleanup", "--branch", "same"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "left    {}/{repo}:1.0.0-3{same_suffix}",
            services().registry
        )),
        "{out}"
    );
    assert!(out.contains("another tag holds the digest"), "{out}");
    assert!(registry_tags(&repo).await.contains(&"1.0.0-2".to_string()));
    assert_eq!(ecr_tags(&repo).await, ["1.0.0-2"]);
    assert_eq!(approved_build(d).unwrap()["build"], 2);

    let (code, _, err) = kiln_on(d, &["cleanup", "--branch", "never-built"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no build was recorded on branch `never-built`"),
        "{err}"
    );
    let (code, _, err) = kiln_on(d, &["run", "hello-web", "--branch", "bad..name"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid branch name `bad..name`"), "{err}");
}
