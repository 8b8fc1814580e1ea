//! container-structure-test compatibility against the real Docker engine: one
//! fixture per CST key (`tests/fixtures/cst/`, written from CST's README and
//! `pkg/types/v1`/`v2`), each with tests CST passes (`pass-…`) and fails
//! (`fail-…`, or a `*-fail.yaml` file); kiln must agree on every one.

#[path = "support/images.rs"]
mod images;
mod support;

use std::path::Path;

use bollard::Docker;
use kiln::project::Project;
use kiln::test_phase::{self, CheckKind, TestInput, TestPolicy, TestReport};
use kiln::{load, render};

static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const IMAGE: &str = "kiln-it/cst:1";
const BAD_DOCS: &str = "kiln-it/cst-bad-docs:1";

const BODY: &str = "RUN mkdir -p /srv /data /usr/share/doc/pkg-ok /licenses \
    && echo 'MIT License' > /usr/share/doc/pkg-ok/copyright \
    && echo 'GNU Affero General Public License (AGPL)' > /licenses/agpl.txt \
    && echo 'hello cst' > /srv/real.txt && chmod 0640 /srv/real.txt && chown 1000:1000 /srv/real.txt \
    && ln -s /srv/real.txt /srv/link.txt && ln -s real.txt /srv/rel-link.txt\n\
    ENV APP_MODE=prod\n\
    LABEL org.example.team=platform build-date=2026-01-02\n\
    EXPOSE 8080 53/udp\nVOLUME /data\nWORKDIR /srv\nCMD [\"sh\", \"-c\", \"exit 0\"]";

async fn setup() -> (tokio::sync::MutexGuard<'static, ()>, Docker) {
    let guard = LOCK.lock().await;
    support::services();
    let docker = images::docker().await;
    images::build(&docker, IMAGE, BODY).await;
    images::build(
        &docker,
        BAD_DOCS,
        &format!(
            "{BODY}\nRUN mkdir -p /usr/share/doc/pkg-wtf /usr/share/doc/pkg-nocopy \
             && echo 'WTFPL' > /usr/share/doc/pkg-wtf/copyright"
        ),
    )
    .await;
    (guard, docker)
}

/// A project whose recipe names `files` from the fixtures (copied to `tests/`).
fn project(dir: &Path, files: &[&str]) -> Project {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cst");
    for d in ["recipes", "tests", "data"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(fixtures.join("cst.env"), dir.join("tests/cst.env")).unwrap();
    std::fs::write(dir.join("data/hello.txt"), "from the project\n").unwrap();
    let mut y = format!(
        "name: cst\nversion: 1.0.0\nparentImage: {}\ntest:\n  structureTests:\n",
        images::base()
    );
    for f in files {
        std::fs::copy(fixtures.join(f), dir.join("tests").join(f)).unwrap();
        y.push_str(&format!("    - tests/{f}\n"));
    }
    std::fs::write(dir.join("recipes/cst.yaml"), y).unwrap();
    Project::open(dir).unwrap()
}

fn input(project: &Project, image: &str) -> Result<TestInput, kiln::diagnostic::Diagnostic> {
    let loaded = load::load_recipe(project, "cst").unwrap_or_else(|d| panic!("{d}"));
    let rendered = render::render(&loaded, &render::Pins::default());
    TestInput::from_recipe(&loaded, &rendered, image)
}

async fn run(docker: &Docker, image: &str, files: &[&str]) -> TestReport {
    let dir = tempfile::tempdir().unwrap();
    let input = input(&project(dir.path(), files), image).unwrap_or_else(|d| panic!("{d}"));
    let r = test_phase::test_image(docker, &input).await.unwrap();
    assert_clean(docker).await;
    r
}

async fn assert_clean(docker: &Docker) {
    let left = images::own_test_containers(docker, None).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Every structure check passes exactly when CST passes it.
fn assert_as_cst(r: &TestReport) {
    let structure = r
        .checks
        .iter()
        .filter(|c| !matches!(c.kind, CheckKind::Readiness | CheckKind::Container));
    let mut n = 0;
    for c in structure {
        n += 1;
        let cst_fails = c.name.starts_with("fail") || c.name.contains("-fail.yaml");
        assert_eq!(c.passed, !cst_fails, "`{}`:\n{}", c.name, r.summary());
    }
    assert!(n > 0, "{}", r.summary());
}

fn detail<'a>(r: &'a TestReport, name: &str) -> &'a str {
    &r.checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check `{name}`:\n{}", r.summary()))
        .detail
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_1_command_lists_and_file_tests() {
    let (_l, docker) = setup().await;
    let r = run(&docker, IMAGE, &["v1.yaml"]).await;
    assert_as_cst(&r);
    assert_eq!(
        r.checks
            .iter()
            .filter(|c| c.kind == CheckKind::License)
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_tests_env_setup_teardown_in_fresh_containers() {
    let (_l, docker) = setup().await;
    let r = run(&docker, IMAGE, &["commands.yaml"]).await;
    assert_as_cst(&r);
    let d = detail(&r, "pass-failing-setup-and-teardown-do-not-fail-the-test");
    assert!(
        d.contains("setup `sh -c exit 3` exited 3") && d.contains("teardown"),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_existence_and_content_tests() {
    let (_l, docker) = setup().await;
    let r = run(&docker, IMAGE, &["files.yaml"]).await;
    assert_as_cst(&r);
    assert!(detail(&r, "fail-uid").contains("owned by uid 1000, expected 0"));
    assert!(detail(&r, "fail-directory").contains("is a directory"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_test_every_key() {
    let (_l, docker) = setup().await;
    let r = run(
        &docker,
        IMAGE,
        &["metadata-pass.yaml", "metadata-fail.yaml"],
    )
    .await;
    assert_as_cst(&r);
    let d = detail(&r, "metadata (tests/metadata-fail.yaml)");
    for part in [
        "env var APP_MODE=prod does not match `^dev$`",
        "env var APP_MODE is set (prod) but must not be",
        "label org.example.team=platform, expected plat",
        "port 8080/tcp is not exposed",
        "compares port numbers",
        "port 9090 is not exposed",
        "port 8080 is exposed",
        "volume /other is not declared",
        "volume /data is declared",
        "cmd is",
        "workdir is `/srv`, expected `/`",
    ] {
        assert!(d.contains(part), "{part}:\n{d}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn license_tests_debian_copyright_files() {
    let (_l, docker) = setup().await;
    let r = run(&docker, IMAGE, &["license-pass.yaml", "license-fail.yaml"]).await;
    assert_as_cst(&r);
    let d = detail(&r, "license (tests/license-fail.yaml) #1");
    assert!(
        d.contains("/licenses/agpl.txt: licence contains AGPL"),
        "{d}"
    );
    assert!(d.contains("/licenses/missing.txt"), "{d}");
    // The same passing file on an image with a WTFPL package and one without
    // a copyright file fails, as in CST; so does an image with no doc tree.
    let bad = run(&docker, BAD_DOCS, &["license-pass.yaml"]).await;
    let d = detail(&bad, "license (tests/license-pass.yaml) #1");
    assert!(
        d.contains("pkg-wtf/copyright: licence contains WTFPL"),
        "{d}"
    );
    assert!(d.contains("pkg-nocopy/copyright"), "{d}");
    assert!(!d.contains("pkg-ok"), "{d}");
    let none = run(&docker, &images::base(), &["license-pass.yaml"]).await;
    assert!(detail(&none, "license (tests/license-pass.yaml) #1").contains("/usr/share/doc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_run_options_user_tty_env_and_capabilities() {
    let (_l, docker) = setup().await;
    let r = run(
        &docker,
        IMAGE,
        &["run-options-pass.yaml", "caps-pass.yaml", "caps-fail.yaml"],
    )
    .await;
    assert_as_cst(&r);
}

/// `file`'s input with an operator policy that allows everything.
fn allowed_input(project: &Project) -> TestInput {
    let loaded = load::load_recipe(project, "cst").unwrap_or_else(|d| panic!("{d}"));
    let rendered = render::render(&loaded, &render::Pins::default());
    let policy = TestPolicy {
        allow_privileged: true,
        allow_bind_mounts: true,
    };
    policy.check(&loaded.test.structure_tests).unwrap();
    TestInput {
        image: IMAGE.into(),
        recipe: loaded.name.clone(),
        config: loaded.test.clone(),
        test_scripts: rendered.test_scripts.clone(),
        exec_timeout: test_phase::DEFAULT_EXEC_TIMEOUT,
        policy,
        daemon_run: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_mounts_need_the_operator_and_stay_in_the_project() {
    let (_l, docker) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let project = project(dir.path(), &["bind-mounts.yaml"]);
    // Not allowed (the operator config does not allow it): a positioned error
    // before any container exists.
    let d = input(&project, IMAGE).unwrap_err().to_string();
    assert!(
        d.contains("tests/bind-mounts.yaml:3:1: containerRunOptions.bindMounts is not allowed"),
        "{d}"
    );
    assert!(d.contains("testContainers: {allowBindMounts: true}"), "{d}");
    assert_clean(&docker).await;
    let r = test_phase::test_image(&docker, &allowed_input(&project))
        .await
        .unwrap();
    assert_as_cst(&r);
    assert_clean(&docker).await;
}

/// This machine's engine cannot run privileged containers at all (its own
/// capability bounding set lacks CAP_SYS_RESOURCE: `docker run
/// --privileged` fails the same way), so the allowed case shows that the
/// request reached the engine: passing where the engine can, or the
/// engine's refusal as a failed check — never a phase error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_needs_the_operator() {
    let (_l, docker) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let project = project(dir.path(), &["privileged.yaml"]);
    let d = input(&project, IMAGE).unwrap_err().to_string();
    assert!(
        d.contains("tests/privileged.yaml:3:1: containerRunOptions.privileged is not allowed"),
        "{d}"
    );
    assert!(d.contains("testContainers: {allowPrivileged: true}"), "{d}");
    let r = test_phase::test_image(&docker, &allowed_input(&project))
        .await
        .unwrap();
    let c = r
        .checks
        .iter()
        .find(|c| c.name == "pass-all-capabilities")
        .unwrap();
    assert!(
        c.passed
            || c.detail
                .contains("cannot start the command test's container"),
        "{}",
        r.summary()
    );
    println!(
        "privileged on this engine: {}",
        if c.passed {
            "ran"
        } else {
            "refused by the engine"
        }
    );
    assert_clean(&docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_mount_outside_the_project_is_refused_at_load() {
    support::services();
    let dir = tempfile::tempdir().unwrap();
    let project = project(dir.path(), &["bind-mounts.yaml"]);
    let f = dir.path().join("tests/bind-mounts.yaml");
    let text = std::fs::read_to_string(&f)
        .unwrap()
        .replace("data:/mnt", "/etc:/mnt");
    std::fs::write(&f, text).unwrap();
    let d = load::load_recipe(&project, "cst").unwrap_err().to_string();
    assert!(d.contains("tests/bind-mounts.yaml:4:"), "{d}");
    assert!(d.contains("confined to the project folder"), "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_warn_and_the_known_tests_run() {
    let (_l, docker) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let project = project(dir.path(), &["unknown-keys.yaml"]);
    let loaded = load::load_recipe(&project, "cst").unwrap_or_else(|d| panic!("{d}"));
    let w: Vec<String> = loaded.test.warnings().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(
        w[0].starts_with("tests/unknown-keys.yaml:2:1: unknown field `futureFeature`"),
        "{w:?}"
    );
    assert!(
        w[1].starts_with("tests/unknown-keys.yaml:7:5: unknown field `retries`"),
        "{w:?}"
    );
    assert!(
        w[2].starts_with("tests/unknown-keys.yaml:9:3: unknown field `env`")
            && w[2].contains("envVars"),
        "{w:?}"
    );
    let r = run(&docker, IMAGE, &["unknown-keys.yaml"]).await;
    assert_as_cst(&r);
}
