//! The two kinds of test container against the real Docker engine: an
//! **image** (no readiness set: the keep-alive replaces the entrypoint, as
//! Image Builder and container-structure-test do) and a **service**. A
//! container that will not start or dies mid-test is a failed check with its
//! exit code and last log lines, never an engine error. Every test checks
//! that no kiln-labelled container is left.

#[path = "support/images.rs"]
mod images;
mod support;

use std::path::Path;

use bollard::Docker;
use kiln::project::Project;
use kiln::record::{Status, Store};
use kiln::test_phase::{self, CheckKind, ContainerKind, ReadinessOutcome, TestInput, TestReport};
use kiln::{load, render};

static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn setup() -> (tokio::sync::MutexGuard<'static, ()>, Docker) {
    let guard = LOCK.lock().await;
    support::services();
    (guard, images::docker().await)
}

async fn assert_clean(docker: &Docker, recipe: Option<&str>) {
    let left = images::own_test_containers(docker, recipe).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A project with `recipe` (YAML text) and the named fixture components.
fn project(dir: &Path, name: &str, recipe: &str, components: &[&str]) -> Project {
    for d in ["recipes", "components"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test_kinds");
    for c in components {
        let f = format!("{c}.yaml");
        std::fs::copy(fixtures.join(&f), dir.join("components").join(&f)).unwrap();
    }
    std::fs::write(dir.join("recipes").join(format!("{name}.yaml")), recipe).unwrap();
    Project::open(dir).unwrap()
}

fn recipe(name: &str, test: &str, components: &[&str]) -> String {
    let mut y = format!(
        "name: {name}\nversion: 1.0.0\nparentImage: {}\n{test}",
        images::base()
    );
    if !components.is_empty() {
        y.push_str("components:\n");
        for c in components {
            y.push_str(&format!("  - name: {c}\n"));
        }
    }
    y
}

async fn test_image(
    docker: &Docker,
    image: &str,
    recipe_text: &str,
    components: &[&str],
) -> TestReport {
    let dir = tempfile::tempdir().unwrap();
    let project = project(dir.path(), "it", recipe_text, components);
    let loaded = load::load_recipe(&project, "it").unwrap_or_else(|d| panic!("{d}"));
    let rendered = render::render(&loaded, &render::Pins::default());
    let input = TestInput::from_recipe(&loaded, &rendered, image).unwrap_or_else(|d| panic!("{d}"));
    test_phase::test_image(docker, &input)
        .await
        .unwrap_or_else(|e| panic!("the phase must not fail with an engine error: {e}"))
}

fn check<'a>(r: &'a TestReport, name: &str) -> &'a kiln::test_phase::CheckResult {
    r.checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check `{name}` in\n{}", r.summary()))
}

/// The AWS documentation's hello-world shape (build, validate, test phases)
/// on the base image, no port: `kiln run` passes all three phases, and the
/// record carries the test phase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_world_component_passes_build_validate_and_test_with_kiln_run() {
    let (_l, docker) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("kiln-it/hello-world-{}", support::nonce());
    let mut text = recipe("hello-world", "", &["hello-world"]);
    text.push_str(&format!(
        "distribute:\n  targets:\n    - oci:\n        registry: {}\n        repository: {repo}\n",
        support::services().registry
    ));
    project(dir.path(), "hello-world", &text, &["hello-world"]);
    let (code, out, err) = support::kiln_on(dir.path(), &["run", "hello-world", "--no-cache"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let all = format!("{out}{err}");
    for phase in [
        "ok build/HelloWorldStep",
        "ok validate/HelloWorldStep",
        "ok   hello-world/HelloWorldStep",
    ] {
        assert!(all.contains(phase), "{phase}:\n{all}");
    }
    let store = Store::open(kiln::record::db_path(dir.path())).unwrap();
    let records = store.list(Some("hello-world"), None).unwrap();
    let rec = &records[0].record;
    assert_eq!(rec.status, Status::Passed);
    let tests = rec.tests.as_ref().expect("the record has the test phase");
    assert!(tests.passed && tests.failed == 0, "{tests:?}");
    // keep-alive + the test step + still running.
    assert_eq!(tests.checks, 3, "{tests:?}");
    assert!(rec.timings_ms.contains_key("test"), "{:?}", rec.timings_ms);
    assert_clean(&docker, Some("hello-world")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_container_runs_component_tests_and_reports_its_kind() {
    let (_l, docker) = setup().await;
    // The image's own command exits at once; as an image it is kept alive.
    images::build(&docker, "kiln-it/oneshot:1", "CMD [\"true\"]").await;
    let text = recipe("it", "", &["hello-world", "fails-in-test"]);
    let r = test_image(
        &docker,
        "kiln-it/oneshot:1",
        &text,
        &["hello-world", "fails-in-test"],
    )
    .await;
    assert_eq!(r.kind, ContainerKind::Image);
    assert!(r.summary().contains("image container"), "{}", r.summary());
    assert!(
        check(&r, "keep-alive running (kiln's static keep-alive)").passed,
        "{}",
        r.summary()
    );
    // hello-world's test step greps a file its build phase wrote: not built here.
    assert!(
        !check(&r, "hello-world/HelloWorldStep").passed,
        "{}",
        r.summary()
    );
    assert!(check(&r, "fails-in-test/Passes").passed, "{}", r.summary());
    let failed = check(&r, "fails-in-test/Fails");
    assert!(
        !failed.passed && failed.detail.contains("no such thing"),
        "{}",
        r.summary()
    );
    assert!(
        check(&r, "still running after the tests").passed,
        "{}",
        r.summary()
    );
    assert!(!r.passed);
    assert!(r.to_json().contains("\"kind\": \"image\""));
    assert_clean(&docker, None).await;
}

/// An image with neither `sleep` nor a shell (like distroless) is kept
/// alive by kiln's own static helper, copied in before the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_without_sleep_or_shell_is_kept_alive_by_kiln() {
    let (_l, docker) = setup().await;
    images::build(
        &docker,
        "kiln-it/nosleep:1",
        "RUN rm /bin/sleep /bin/sh /bin/bash\nCMD [\"/bin/true\"]",
    )
    .await;
    let r = test_image(&docker, "kiln-it/nosleep:1", &recipe("it", "", &[]), &[]).await;
    assert!(r.passed, "{}", r.summary());
    assert_eq!(
        r.checks[0].name,
        "keep-alive running (kiln's static keep-alive)"
    );
    assert!(check(&r, "still running after the tests").passed);
    assert_clean(&docker, None).await;
}

/// A service that dies while component tests run: the next exec would get
/// the engine's `409 … is not running`; kiln reports exit code and logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_dying_during_the_tests_reports_exit_code_and_logs() {
    let (_l, docker) = setup().await;
    images::build(
        &docker,
        "kiln-it/dies:1",
        "CMD [\"sh\", \"-c\", \"echo ready; sleep 1; echo dying-now >&2; exit 7\"]",
    )
    .await;
    let text = recipe(
        "it",
        "test:\n  logLine: ^ready$\n  timeoutSeconds: 10\n",
        &["slow-test", "after-slow"],
    );
    let r = test_image(
        &docker,
        "kiln-it/dies:1",
        &text,
        &["slow-test", "after-slow"],
    )
    .await;
    assert_eq!(r.kind, ContainerKind::Service);
    let c = r
        .checks
        .iter()
        .find(|c| c.kind == CheckKind::Container)
        .unwrap_or_else(|| panic!("{}", r.summary()));
    assert!(!c.passed, "{}", r.summary());
    assert!(
        c.detail.contains("exited with code 7") && c.detail.contains("dying-now"),
        "{}",
        r.summary()
    );
    assert!(!r.summary().contains("409"), "{}", r.summary());
    assert!(!r.passed);
    assert_clean(&docker, None).await;
}

/// An exited container at readiness, as a service: exit code and logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_with_missing_entrypoint_is_a_failed_check() {
    let (_l, docker) = setup().await;
    images::build(
        &docker,
        "kiln-it/noentry:1",
        "ENTRYPOINT [\"/no/such/server\"]",
    )
    .await;
    let text = recipe("it", "test:\n  port: 8080\n  timeoutSeconds: 5\n", &[]);
    let r = test_image(&docker, "kiln-it/noentry:1", &text, &[]).await;
    assert!(!r.passed);
    let c = &r.checks[0];
    assert_eq!(c.kind, CheckKind::Readiness);
    assert!(c.detail.contains("/no/such/server"), "{}", r.summary());
    assert!(c.detail.contains("exit code"), "{}", r.summary());
    assert!(
        matches!(r.readiness, ReadinessOutcome::NotStarted { .. }),
        "{:?}",
        r.readiness
    );
    assert_clean(&docker, None).await;
}

/// Waits (up to 10 s) until this process's containers are gone: guards of a
/// dropped future remove theirs from a spawned task.
async fn wait_clean(docker: &Docker) {
    let t = std::time::Instant::now();
    while !images::own_test_containers(docker, None).await.is_empty() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "left behind: {:?}",
            images::own_test_containers(docker, None).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Shutdown and a dropped future in the middle of a command test: the image
/// container and the command test's own container are both removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_containers_are_removed_on_shutdown_and_drop() {
    let (_l, docker) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = recipe("it", "", &[]);
    text.push_str("test:\n  structureTests:\n    - tests/slow.yaml\n");
    let project = project(dir.path(), "it", &text, &[]);
    std::fs::create_dir_all(dir.path().join("tests")).unwrap();
    std::fs::write(
        dir.path().join("tests/slow.yaml"),
        "schemaVersion: 2.0.0\ncommandTests:\n  - name: slow\n    command: sleep\n    args: [\"30\"]\n",
    )
    .unwrap();
    let loaded = load::load_recipe(&project, "it").unwrap_or_else(|d| panic!("{d}"));
    let rendered = render::render(&loaded, &render::Pins::default());
    let input = TestInput::from_recipe(&loaded, &rendered, images::base()).unwrap();
    let err = test_phase::test_image_until(
        &docker,
        &input,
        tokio::time::sleep(std::time::Duration::from_millis(2000)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, test_phase::TestPhaseError::Interrupted),
        "{err}"
    );
    wait_clean(&docker).await;
    let dropped = tokio::time::timeout(
        std::time::Duration::from_millis(2000),
        test_phase::test_image(&docker, &input),
    )
    .await;
    assert!(dropped.is_err());
    wait_clean(&docker).await;
}
