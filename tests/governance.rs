//! Issue 16, governance: the operator's policy refuses recipes at load with
//! `file:line:column` and the rule, building nothing (through `kiln run
//! --config` and `kiln validate --policy`); the findings gate finds a canary
//! AWS key a component puts in a layer and blocks the push (nothing tagged
//! in the registry nor in moto's ECR), an unexpired `.kiln-ignore.yaml`
//! entry lets it pass and is recorded, an expired one blocks again; a
//! scanner hook's SARIF gates by severity. Real Docker, registry and moto.

mod support;

use std::path::{Path, PathBuf};

use kiln::findings::{self, Severity, ignore::IgnoreFile};
use kiln::operator::Governance;
use kiln::operator::findings::{FindingsConfig, HookFormat, ScannerHook};
use kiln::pipeline::{Pipeline, PipelineError, RunOptions, Stage, StageError, chain};
use kiln::record::{Status, Store};
use support::example::{example_project, registry_tags};
use support::{kiln_on, services};

/// An operator config with `text`, outside the project.
fn operator_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kiln.yaml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// `kiln --config CONFIG run hello-web` must be refused at load naming
/// `expect`, with nothing built, recorded or locked (no `.kiln/` at all).
fn refused_at_load(dir: &Path, policy: &str, expect: &str) {
    let (_ops, config) = operator_config(policy);
    let args = ["--config", config.to_str().unwrap(), "run", "hello-web"];
    let (code, out, err) = kiln_on(dir, &args);
    assert_eq!(code, 3, "exit 3: validation failed\n{out}{err}");
    assert!(err.contains(expect), "expected `{expect}` in:\n{err}");
    assert!(err.contains("nothing was built"), "{err}");
    assert!(!out.contains("build"), "no stage ran: {out}");
    assert!(
        !dir.join(".kiln").exists(),
        "nothing built, recorded or locked"
    );
}

#[test]
fn a_parent_from_a_disallowed_registry_is_refused_at_load() {
    services();
    let (dir, _) = example_project(|t| t);
    refused_at_load(
        dir.path(),
        "policy:\n  allowedParents: [\"docker.io/library/*\"]\n",
        "recipes/hello-web.yaml:7:14: policy `allowedParents`: parent `127.0.0.1:",
    );
}

#[test]
fn a_forbidden_action_is_refused_at_load() {
    services();
    let (dir, _) = example_project(|t| t);
    refused_at_load(
        dir.path(),
        "policy:\n  forbiddenActions: [ExecuteBash]\n",
        "components/hello-site.yaml:31:17: policy `forbiddenActions`: action `ExecuteBash` is forbidden",
    );
}

#[test]
fn a_root_final_user_is_refused_at_load() {
    services();
    let (dir, _) = example_project(|t| t);
    let template = dir.path().join("dockerfiles/hello-web.Dockerfile");
    let text = std::fs::read_to_string(&template).unwrap();
    std::fs::write(&template, text.replace("USER nobody", "USER 0:0")).unwrap();
    refused_at_load(
        dir.path(),
        "policy:\n  forbidRootUser: true\n",
        "dockerfiles/hello-web.Dockerfile:10:6: policy `forbidRootUser`: the final stage runs as `0:0` (root)",
    );
    std::fs::write(&template, text.replace("USER nobody\n", "")).unwrap();
    refused_at_load(
        dir.path(),
        "policy:\n  forbidRootUser: true\n",
        "dockerfiles/hello-web.Dockerfile:7:1: policy `forbidRootUser`: the final stage sets no `USER`",
    );
}

#[test]
fn validate_with_a_policy_file_lists_every_violation_without_running() {
    services();
    let (dir, _) = example_project(|t| t);
    let (_ops, config) = operator_config(
        "policy:\n  allowedParents: [\"docker.io/**\"]\n  allowedActions: [CreateFile, CreateFolder]\n  requireTests: true\n",
    );
    let args = ["validate", "--policy", config.to_str().unwrap()];
    let (code, _, err) = kiln_on(dir.path(), &args);
    assert_eq!(code, 3, "exit 3: validation failed\n{err}");
    for rule in ["allowedParents", "allowedActions"] {
        assert!(err.contains(&format!("policy `{rule}`")), "{rule}: {err}");
    }
    assert!(!err.contains("requireTests"), "hello-web has tests: {err}");
    assert!(!dir.path().join(".kiln").exists());
    let (_ops, bad) = operator_config("policy:\n  forbiddenActions: [ExecuteBsh]\n");
    let (code, _, err) = kiln_on(dir.path(), &["validate", "--policy", bad.to_str().unwrap()]);
    assert_eq!(code, 3, "an invalid policy file is invalid input: {err}");
    assert!(err.contains("did you mean `ExecuteBash`"), "{err}");
}

fn canary() -> String {
    format!("AKIA{}", "KILNCANARY7TESTQ")
}

/// The example project with a component that writes a canary AWS key into
/// the site (copied into the final image as `/www/credentials`).
fn canary_project() -> (tempfile::TempDir, String) {
    let (dir, repo) = example_project(|t| {
        t.replace(
            "  - name: hello-site\n",
            "  - name: canary\n  - name: hello-site\n",
        )
    });
    let component = format!(
        "name: canary\ndescription: puts a canary AWS key where the final stage copies from\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Canary\n        action: CreateFile\n        inputs:\n          - path: /site/credentials\n            content: |\n              [default]\n              aws_access_key_id = {}\n",
        canary()
    );
    std::fs::write(dir.path().join("components/canary.yaml"), component).unwrap();
    (dir, repo)
}

async fn pipeline(dir: &Path, findings: FindingsConfig) -> Pipeline {
    let governance = Governance {
        findings,
        ..Default::default()
    };
    support::example::pipeline_under(dir, governance).await
}

/// Images of `repo` in moto's ECR (0 when the repository does not exist).
async fn ecr_images(repo: &str) -> usize {
    services();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    match aws_sdk_ecr::Client::new(&conf)
        .list_images()
        .repository_name(repo)
        .send()
        .await
    {
        Ok(out) => out.image_ids().len(),
        Err(e) => {
            let e = e.into_service_error();
            assert!(e.is_repository_not_found_exception(), "{e:?}");
            0
        }
    }
}

/// A blocked run: the gate's error, recorded failed with the findings.
async fn blocked(
    p: &Pipeline,
    repo: &str,
) -> (Vec<String>, Vec<String>, kiln::record::ChainedRecord) {
    let err = p
        .run("hello-web", &RunOptions::default())
        .await
        .unwrap_err();
    let text = chain(&err);
    assert!(!text.contains(&canary()), "the key never shows: {text}");
    let PipelineError::Stage {
        stage: Stage::Gate,
        source: StageError::FindingsBlocked {
            findings, expired, ..
        },
        record: Some(record),
    } = err
    else {
        panic!("{text}")
    };
    assert!(
        registry_tags(repo).await.is_empty(),
        "nothing tagged in the registry"
    );
    assert_eq!(ecr_images(repo).await, 0, "nothing in moto's ECR");
    (findings, expired, *record)
}

fn ignore_file(dir: &Path, expires: &str) {
    let text = format!(
        "ignores:\n  - rule: aws-access-key-id\n    paths: [\"/www/*\"]\n    reason: a canary key planted by the test\n    expires: {expires}\n"
    );
    std::fs::write(dir.join(".kiln-ignore.yaml"), text).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_key_blocks_the_push_until_an_unexpired_ignore_entry_accepts_it() {
    let (dir, repo) = canary_project();
    let p = pipeline(dir.path(), FindingsConfig::default()).await;

    let (found, expired, record) = blocked(&p, &repo).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert!(
        f.starts_with("aws-access-key-id-") && f.contains("(critical, kiln-secrets)"),
        "{f}"
    );
    assert!(
        f.contains("in layer sha256:") && f.ends_with("at /www/credentials:2"),
        "{f}"
    );
    assert!(expired.is_empty());
    let report = record.record.findings.as_ref().expect("findings recorded");
    assert_eq!(report.blocking.len(), 1);
    assert_eq!(record.record.failure.as_ref().unwrap().stage, "gate");
    let json = serde_json::to_string(&record.record).unwrap();
    assert!(!json.contains(&canary()), "the record never holds the key");

    ignore_file(dir.path(), "2020-01-31");
    let (_, expired, record) = blocked(&p, &repo).await;
    assert_eq!(
        expired,
        [
            ".kiln-ignore.yaml:2: ignore entry `rule: aws-access-key-id` expired on 2020-01-31 and no longer applies"
        ]
    );
    assert!(record.record.findings.as_ref().unwrap().ignores[0].expired);

    // Before distribute, the policy checks the built image itself.
    let labelled = kiln::operator::policy::Policy {
        required_labels: vec!["org.example.team".into()],
        ..Default::default()
    };
    let strict = support::example::pipeline_under(
        dir.path(),
        Governance {
            policy: labelled,
            ..Default::default()
        },
    )
    .await;
    let err = strict
        .run("hello-web", &RunOptions::default())
        .await
        .unwrap_err();
    let PipelineError::Stage {
        stage: Stage::Gate,
        source: StageError::Policy(v),
        ..
    } = &err
    else {
        panic!("{}", chain(&err))
    };
    assert_eq!(v.rules(), ["requiredLabels"]);
    assert!(chain(&err).contains(
        "policy `requiredLabels`: the image lacks the required label `org.example.team`"
    ));
    assert!(registry_tags(&repo).await.is_empty());

    ignore_file(dir.path(), "2999-12-31");
    let s = p
        .run("hello-web", &RunOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(s.status, Status::Passed);
    let record = s.record.expect("recorded");
    let report = record.record.findings.as_ref().unwrap();
    assert!(report.blocking.is_empty());
    assert_eq!(report.findings[0].ignored_by, Some(2));
    let used = &report.ignores[0];
    assert_eq!(
        (
            used.line,
            used.selects.as_str(),
            used.expired,
            used.reason.as_str()
        ),
        (
            2,
            "rule: aws-access-key-id",
            false,
            "a canary key planted by the test"
        )
    );
    assert_eq!(registry_tags(&repo).await, ["1.0.0-4"]);
    assert_eq!(ecr_images(&repo).await, 1);
    let store = Store::open(kiln::record::db_path(dir.path())).unwrap();
    let statuses: Vec<Status> = store
        .list(Some("hello-web"), None)
        .unwrap()
        .iter()
        .map(|r| r.record.status)
        .collect();
    assert_eq!(
        statuses,
        [
            Status::Passed,
            Status::Failed,
            Status::Failed,
            Status::Failed
        ]
    );
}

fn hook(level: &str, score: &str) -> FindingsConfig {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scanners/sarif-scan.sh");
    FindingsConfig {
        secrets: true,
        fail_on: Severity::High,
        scanners: vec![ScannerHook {
            name: "test-scanner".into(),
            command: vec![script.display().to_string(), level.into(), score.into()],
            format: HookFormat::Sarif,
            timeout_seconds: 60,
        }],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scanner_hooks_sarif_gates_by_severity() {
    let s = services();
    let docker = s.docker().await;
    let today = chrono::Utc::now().date_naive();
    let none = IgnoreFile::default();
    // A note with a low CVSS score stays below `high`.
    let low = findings::scan::collect(&docker, &s.base_image, &hook("note", "3.1"))
        .await
        .unwrap();
    assert_eq!(
        low.findings.len(),
        1,
        "the base image has no secrets: {:?}",
        low.findings
    );
    let f = &low.findings[0];
    assert_eq!(
        (
            f.source.as_str(),
            f.rule.as_str(),
            f.severity,
            f.path.as_deref(),
            f.line
        ),
        (
            "test-scanner",
            "KT-1",
            Severity::Low,
            Some("www/index.html"),
            Some(1)
        )
    );
    assert!(
        findings::decide(low.findings, &none, Severity::High, today)
            .blocking
            .is_empty()
    );
    // The same rule scored 8.1 is high: it blocks.
    let high = findings::scan::collect(&docker, &s.base_image, &hook("error", "8.1"))
        .await
        .unwrap();
    assert_eq!(high.findings[0].severity, Severity::High);
    let r = findings::decide(high.findings, &none, Severity::High, today);
    assert_eq!(r.blocking.len(), 1);
    // A hook that prints no report fails the gate, naming the hook.
    let mut broken = hook("error", "8.1");
    broken.scanners[0].command = vec!["sh".into(), "-c".into(), "echo nope; exit 4".into()];
    let e = findings::scan::collect(&docker, &s.base_image, &broken)
        .await
        .unwrap_err();
    let text = chain(&e);
    assert!(
        text.contains("scanner hook `test-scanner`") && text.contains("exit status: 4"),
        "{text}"
    );
}

/// Without any operator config, the project's own `config/kiln.yaml` is
/// used, with a loud warning; its policy applies like any other.
#[test]
fn the_project_fallback_is_used_with_a_loud_warning() {
    services();
    let (dir, _) = example_project(|t| t);
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    let policy = "policy:\n  forbiddenActions: [ExecuteBash]\n";
    std::fs::write(dir.path().join("config/kiln.yaml"), policy).unwrap();
    let cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--project")
        .arg(dir.path())
        .args(["run", "hello-web"])
        .env_remove("KILN_CONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&cmd.stderr);
    assert_eq!(cmd.status.code(), Some(3), "{err}");
    assert!(err.contains("USING THE PROJECT'S"), "{err}");
    assert!(err.contains("policy `forbiddenActions`"), "{err}");
    assert!(!dir.path().join(".kiln").exists());
}
