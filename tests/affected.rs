//! `kiln affected` and `kiln run --affected-since` on a scratch git
//! repository: three recipes, two sharing a component; committed,
//! uncommitted and untracked changes; a nested ExecuteDocument document; a
//! template; a bad revision and a folder outside git.

mod support;

use std::path::Path;
use std::process::Command;

use support::{kiln_on, services};

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=kiln-test",
            "-c",
            "user.email=kiln@test",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn component(name: &str, steps: &str) -> String {
    format!("name: {name}\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n{steps}")
}

fn bash_step(text: &str) -> String {
    format!(
        "      - name: Write\n        action: ExecuteBash\n        inputs:\n          commands:\n            - echo {text} > /{text}.txt\n"
    )
}

fn recipe(name: &str, component: &str, extra: &str) -> String {
    format!(
        "name: {name}\nversion: 1.0.0\nparentImage: ${{KILN_REGISTRY:-127.0.0.1:5000}}/kiln/base:1\ncomponents:\n  - name: {component}\n{extra}"
    )
}

/// Recipes `alpha` and `beta` share `shared`; `gamma` runs `solo`, which
/// runs `nested.yaml` through ExecuteDocument and has a template.
fn project() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "components/shared.yaml",
        &component("shared", &bash_step("shared")),
    );
    let run_nested = "      - name: Nested\n        action: ExecuteDocument\n        inputs:\n          document: nested.yaml\n";
    write(d, "components/solo.yaml", &component("solo", run_nested));
    write(
        d,
        "components/nested.yaml",
        &component("nested", &bash_step("nested")),
    );
    write(
        d,
        "dockerfiles/gamma.Dockerfile",
        "FROM {{{ imagebuilder:parentImage }}}\n{{{ imagebuilder:components }}}\n",
    );
    write(d, "contexts/alpha/README", "alpha's context\n");
    write(
        d,
        "recipes/alpha.yaml",
        &recipe("alpha", "shared", "context: contexts/alpha\n"),
    );
    write(d, "recipes/beta.yaml", &recipe("beta", "shared", ""));
    write(
        d,
        "recipes/gamma.yaml",
        &recipe("gamma", "solo", "dockerfile: gamma.Dockerfile\n"),
    );
    write(d, ".gitignore", ".kiln/\n");
    git(d, &["init", "-q", "-b", "main"]);
    git(d, &["add", "-A"]);
    git(d, &["commit", "-q", "-m", "three recipes"]);
    let first = git(d, &["rev-parse", "HEAD"]);
    (dir, first)
}

fn affected(dir: &Path, since: &str) -> Vec<String> {
    let (code, out, err) = kiln_on(dir, &["affected", "--since", since]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    out.lines().map(str::to_string).collect()
}

#[test]
fn a_commit_touching_a_shared_component_affects_exactly_its_two_recipes() {
    let (dir, first) = project();
    let d = dir.path();
    assert!(affected(d, "HEAD").is_empty(), "nothing changed yet");
    write(
        d,
        "components/shared.yaml",
        &component("shared", &bash_step("changed")),
    );
    git(d, &["commit", "-q", "-am", "change the shared component"]);
    assert_eq!(affected(d, &first), ["alpha", "beta"]);
    assert!(affected(d, "HEAD").is_empty());
    let (code, out, _) = kiln_on(d, &["affected", "--since", &first, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["since"], first);
    assert_eq!(
        v["changedFiles"],
        serde_json::json!(["components/shared.yaml"])
    );
    assert_eq!(
        v["recipes"],
        serde_json::json!([
            {"recipe": "alpha", "changed": ["components/shared.yaml"]},
            {"recipe": "beta", "changed": ["components/shared.yaml"]},
        ])
    );
}

#[test]
fn uncommitted_untracked_nested_and_template_changes_count() {
    let (dir, _) = project();
    let d = dir.path();
    // Uncommitted change of a document another component runs.
    write(
        d,
        "components/nested.yaml",
        &component("nested", &bash_step("edited")),
    );
    assert_eq!(affected(d, "HEAD"), ["gamma"]);
    git(d, &["checkout", "-q", "--", "components/nested.yaml"]);
    // Staged template change.
    write(
        d,
        "dockerfiles/gamma.Dockerfile",
        "FROM {{{ imagebuilder:parentImage }}}\n{{{ imagebuilder:components }}}\nLABEL x=y\n",
    );
    git(d, &["add", "dockerfiles/gamma.Dockerfile"]);
    assert_eq!(affected(d, "HEAD"), ["gamma"]);
    git(d, &["reset", "-q", "--hard"]);
    // An untracked file in alpha's context folder; an unrelated one.
    write(d, "contexts/alpha/new.txt", "new\n");
    write(d, "notes.txt", "not an input\n");
    assert_eq!(affected(d, "HEAD"), ["alpha"]);
    // A recipe that no longer loads is listed (running it shows why).
    write(d, "recipes/beta.yaml", "name: beta\nversion: nope\n");
    assert_eq!(affected(d, "HEAD"), ["alpha", "beta"]);
}

#[test]
fn a_bad_revision_or_a_folder_outside_git_is_a_clear_error() {
    let (dir, _) = project();
    let (code, _, err) = kiln_on(dir.path(), &["affected", "--since", "no-such-branch"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("error: `no-such-branch` is not a revision to compare with: no such commit in this repository"),
        "{err}"
    );
    let (code, _, err) = kiln_on(dir.path(), &["affected", "--since=--output=/tmp/x"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a revision name"), "{err}");
    let plain = tempfile::tempdir().unwrap();
    std::fs::create_dir(plain.path().join("recipes")).unwrap();
    let (code, _, err) = kiln_on(plain.path(), &["affected", "--since", "HEAD"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not inside a git work tree"), "{err}");
}

#[test]
fn run_affected_since_runs_only_the_affected_recipes() {
    services();
    let (dir, first) = project();
    let d = dir.path();
    write(
        d,
        "components/shared.yaml",
        &component("shared", &bash_step("changed")),
    );
    git(d, &["commit", "-q", "-am", "change the shared component"]);
    let (code, out, err) = kiln_on(d, &["run", "--affected-since", &first, "--quiet"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("affected: alpha, beta"), "{err}");
    let ran: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("pipeline  "))
        .collect();
    assert_eq!(ran, ["alpha", "beta"], "{out}");
    assert!(
        out.lines()
            .filter(|l| l.starts_with("status    passed"))
            .count()
            == 2,
        "{out}"
    );
    // The runs pinned the parent in kiln.lock: a lock input of both.
    assert_eq!(affected(d, "HEAD"), ["alpha", "beta"]);
    git(d, &["add", "kiln.lock"]);
    git(d, &["commit", "-q", "-m", "lock"]);
    let (code, _, err) = kiln_on(d, &["run", "--affected-since", "HEAD", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("affected: none"), "{err}");
}
