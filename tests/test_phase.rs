//! The test phase against the real Docker engine, with purpose-built images
//! from the local base image. Fails (never skips) without Docker. Tests run
//! one at a time (a shared lock) so each can check that no kiln-labelled
//! container or network is left afterwards.

#[path = "support/images.rs"]
mod images;
mod support;

use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bollard::Docker;
use kiln::load::{HttpCheck, ResourceLimits, TestConfig};
use kiln::project::Project;
use kiln::test_phase::{self, CheckKind, ReadinessOutcome, TestInput, TestPhaseError, TestReport};
use kiln::{load, render};

static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn setup() -> (tokio::sync::MutexGuard<'static, ()>, Docker) {
    let guard = LOCK.lock().await;
    support::services();
    (guard, images::docker().await)
}

fn config(port: Option<u16>, timeout: Duration) -> TestConfig {
    TestConfig {
        port,
        http: None,
        log_line: None,
        timeout,
        limits: ResourceLimits::default(),
        structure_tests: Vec::new(),
    }
}

fn input(image: &str, config: TestConfig) -> TestInput {
    TestInput {
        image: image.into(),
        recipe: "it".into(),
        config,
        test_scripts: Vec::new(),
        exec_timeout: Duration::from_secs(60),
        policy: Default::default(),
        daemon_run: None,
    }
}

/// No container this process started is left (other processes may share
/// the engine, so only this process's owner label counts).
async fn assert_clean(docker: &Docker) {
    let containers = images::own_test_containers(docker, None).await;
    assert!(containers.is_empty(), "left behind: {containers:?}");
}

fn check<'a>(r: &'a TestReport, name: &str) -> &'a kiln::test_phase::CheckResult {
    r.checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check `{name}` in\n{}", r.summary()))
}

/// A server that starts listening after 1.5 s and logs when it does.
const DELAYED: &str = "RUN mkdir -p /www && echo 'hello kiln' > /www/index.html\n\
    CMD [\"sh\", \"-c\", \"echo starting; sleep 1.5; httpd -p 8080 -h /www; echo listening $EPOCHREALTIME; exec sleep 3600\"]";

fn listening_at(logs: &str) -> Option<f64> {
    logs.lines()
        .find_map(|l| l.strip_prefix("listening ")?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_server_is_ready_when_it_listens() {
    let (_l, docker) = setup().await;
    images::build(&docker, "kiln-it/delayed:1", DELAYED).await;
    let r = test_phase::test_image(
        &docker,
        &input(
            "kiln-it/delayed:1",
            config(Some(8080), Duration::from_secs(20)),
        ),
    )
    .await
    .unwrap();
    assert!(r.passed, "{}", r.summary());
    let latency = r.readiness_latency.expect("ready");
    assert!(
        latency >= Duration::from_millis(1400) && latency < Duration::from_secs(8),
        "{latency:?}"
    );
    let listening = listening_at(&r.logs).expect("the server logs when it listens");
    let ready = r
        .ready_at
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let lag = ready - listening;
    println!(
        "readiness latency {latency:?}, lag after listening {:.1} ms",
        lag * 1000.0
    );
    assert!((-0.01..1.0).contains(&lag), "lag {lag}");
    assert_clean(&docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_log_line_readiness() {
    let (_l, docker) = setup().await;
    images::build(&docker, "kiln-it/delayed:1", DELAYED).await;
    let mut c = config(Some(8080), Duration::from_secs(20));
    c.log_line = Some("^listening [0-9.]+$".into());
    c.http = Some(HttpCheck {
        path: "/index.html".into(),
        expect_status: 200,
        body_contains: Some("hello".into()),
        body_regex: Some("k.ln".into()),
        headers: [("X-Probe".to_string(), "kiln".to_string())].into(),
    });
    let r = test_phase::test_image(&docker, &input("kiln-it/delayed:1", c))
        .await
        .unwrap();
    assert!(r.passed, "{}", r.summary());
    assert!(r.readiness_latency.unwrap() >= Duration::from_millis(1400));
    assert_clean(&docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_exiting_at_once_fails_fast() {
    let (_l, docker) = setup().await;
    images::build(
        &docker,
        "kiln-it/exit1:1",
        "CMD [\"sh\", \"-c\", \"echo boom-from-server >&2; exit 1\"]",
    )
    .await;
    let t = Instant::now();
    let r = test_phase::test_image(
        &docker,
        &input(
            "kiln-it/exit1:1",
            config(Some(8080), Duration::from_secs(30)),
        ),
    )
    .await
    .unwrap();
    let took = t.elapsed();
    assert!(!r.passed);
    match &r.readiness {
        ReadinessOutcome::Exited {
            exit_code, logs, ..
        } => {
            assert_eq!(*exit_code, 1);
            assert!(logs.contains("boom-from-server"), "{logs}");
        }
        other => panic!("expected an exit, got {other:?}"),
    }
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} with a 30 s timeout"
    );
    assert!(
        r.summary().contains("exited with code 1"),
        "{}",
        r.summary()
    );
    assert_clean(&docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_that_never_opens_fails_at_the_timeout() {
    let (_l, docker) = setup().await;
    images::build(
        &docker,
        "kiln-it/idle:1",
        "CMD [\"sh\", \"-c\", \"echo still-starting; exec sleep 3600\"]",
    )
    .await;
    let t = Instant::now();
    let r = test_phase::test_image(
        &docker,
        &input("kiln-it/idle:1", config(Some(8080), Duration::from_secs(2))),
    )
    .await
    .unwrap();
    let took = t.elapsed();
    match &r.readiness {
        ReadinessOutcome::TimedOut {
            logs, waiting_for, ..
        } => {
            assert!(logs.contains("still-starting"), "{logs}");
            assert!(waiting_for.contains("port 8080"), "{waiting_for}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_clean(&docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_that_opens_then_dies_is_not_ready() {
    let (_l, docker) = setup().await;
    // Accepts one connection, then the process exits.
    images::build(
        &docker,
        "kiln-it/once:1",
        "CMD [\"sh\", \"-c\", \"nc -l -p 8080 </dev/null; echo nc-done; exit 3\"]",
    )
    .await;
    let r = test_phase::test_image(
        &docker,
        &input(
            "kiln-it/once:1",
            config(Some(8080), Duration::from_secs(20)),
        ),
    )
    .await
    .unwrap();
    match &r.readiness {
        ReadinessOutcome::Exited { exit_code, .. } => assert_eq!(*exit_code, 3, "{}", r.summary()),
        other => panic!("expected an exit, got {other:?}\n{}", r.summary()),
    }
    assert!(!r.passed);
    assert_clean(&docker).await;
}

/// A project folder with one recipe using `components` and structure tests.
fn project(dir: &Path, recipe: &str, components: &[&str], structure: &[&str]) -> Project {
    for d in ["recipes", "components", "tests"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test_phase");
    let mut yaml = format!(
        "name: {recipe}\nversion: 1.0.0\nparentImage: {}\ntest:\n  port: 8080\n  timeoutSeconds: 20\n",
        images::base()
    );
    if !structure.is_empty() {
        yaml.push_str("  structureTests:\n");
        for s in structure {
            std::fs::copy(fixtures.join(s), dir.join("tests").join(s)).unwrap();
            yaml.push_str(&format!("    - tests/{s}\n"));
        }
    }
    if !components.is_empty() {
        yaml.push_str("components:\n");
    }
    for c in components {
        std::fs::copy(
            fixtures.join(format!("{c}.yaml")),
            dir.join("components").join(format!("{c}.yaml")),
        )
        .unwrap();
        yaml.push_str(&format!("  - name: {c}\n"));
    }
    std::fs::write(dir.join("recipes").join(format!("{recipe}.yaml")), yaml).unwrap();
    Project::open(dir).unwrap()
}

const SERVER: &str = "RUN mkdir -p /www && echo 'hello kiln' > /www/index.html && chmod 0644 /www/index.html\n\
    ENV APP_MODE=prod\nLABEL org.example.team=platform\nEXPOSE 8080\nWORKDIR /www\n\
    CMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]";

async fn run_recipe(
    docker: &Docker,
    recipe: &str,
    components: &[&str],
    structure: &[&str],
) -> TestReport {
    images::build(docker, "kiln-it/server:1", SERVER).await;
    let dir = tempfile::tempdir().unwrap();
    let project = project(dir.path(), recipe, components, structure);
    let loaded = load::load_recipe(&project, recipe).unwrap_or_else(|d| panic!("{d}"));
    let rendered = render::render(&loaded, &render::Pins::default());
    let input = TestInput::from_recipe(&loaded, &rendered, "kiln-it/server:1")
        .unwrap_or_else(|d| panic!("{d}"));
    test_phase::test_image(docker, &input).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_step_failing_with_continue_runs_the_rest() {
    let (_l, docker) = setup().await;
    let r = run_recipe(&docker, "cont", &["checks-continue"], &[]).await;
    let failed = check(&r, "checks-continue/FailsButContinues");
    // The exit code shown is the runtime's (currently always 1, see
    // toe_script's `|| return 1`), so only the failure is asserted.
    assert!(
        !failed.passed && failed.detail.contains("after 1 attempt(s)"),
        "{}",
        r.summary()
    );
    assert!(
        failed.detail.contains("failing on purpose"),
        "{}",
        r.summary()
    );
    // Later steps ran: output chaining, loops and parameters work.
    assert!(
        check(&r, "checks-continue/ReadsPage").passed,
        "{}",
        r.summary()
    );
    assert!(
        check(&r, "checks-continue/ChainsOutput").passed,
        "{}",
        r.summary()
    );
    assert!(
        check(&r, "checks-continue/Ignored").passed,
        "{}",
        r.summary()
    );
    assert!(!r.passed);
    assert_clean(&docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_step_failing_with_abort_skips_the_rest() {
    let (_l, docker) = setup().await;
    let r = run_recipe(&docker, "abort", &["checks-abort"], &[]).await;
    let failed = check(&r, "checks-abort/FailsAndAborts");
    assert!(
        !failed.passed && failed.detail.contains("after 2 attempt(s)"),
        "{}",
        r.summary()
    );
    let skipped = check(&r, "checks-abort/NeverRuns");
    assert!(skipped.skipped, "{}", r.summary());
    assert!(!r.passed);
    let junit = r.to_junit();
    assert!(
        junit.contains("<skipped") && junit.contains("<failure"),
        "{junit}"
    );
    assert_clean(&docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structure_tests_pass_and_fail() {
    let (_l, docker) = setup().await;
    let r = run_recipe(
        &docker,
        "structure",
        &[],
        &["pass-fail.yaml", "meta-fail.yaml"],
    )
    .await;
    let expect = [
        ("cmd-pass", CheckKind::Command, true),
        ("cmd-image-env", CheckKind::Command, true),
        ("cmd-fail", CheckKind::Command, false),
        ("file-pass", CheckKind::FileExistence, true),
        ("dir-pass", CheckKind::FileExistence, true),
        ("exec-pass", CheckKind::FileExistence, true),
        ("absent-pass", CheckKind::FileExistence, true),
        ("perm-fail", CheckKind::FileExistence, false),
        ("missing-fail", CheckKind::FileExistence, false),
        ("content-pass", CheckKind::FileContent, true),
        ("content-fail", CheckKind::FileContent, false),
        ("metadata (tests/pass-fail.yaml)", CheckKind::Metadata, true),
        (
            "metadata (tests/meta-fail.yaml)",
            CheckKind::Metadata,
            false,
        ),
        ("http-pass", CheckKind::Http, true),
        ("http-fail", CheckKind::Http, false),
    ];
    for (name, kind, passed) in expect {
        let c = check(&r, name);
        assert_eq!(
            (c.kind, c.passed),
            (kind, passed),
            "{name}\n{}",
            r.summary()
        );
    }
    let meta = check(&r, "metadata (tests/meta-fail.yaml)");
    for part in [
        "workdir is `/www`",
        "env var MISSING not found",
        "label org.example.team=platform does not match",
    ] {
        assert!(meta.detail.contains(part), "{part}: {}", meta.detail);
    }
    assert!(!r.passed);
    assert_clean(&docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_and_dropped_futures_remove_the_container() {
    let (_l, docker) = setup().await;
    images::build(
        &docker,
        "kiln-it/idle:1",
        "CMD [\"sh\", \"-c\", \"echo still-starting; exec sleep 3600\"]",
    )
    .await;
    let i = input(
        "kiln-it/idle:1",
        config(Some(8080), Duration::from_secs(30)),
    );
    // Ctrl-C path: explicit removal before returning.
    let err =
        test_phase::test_image_until(&docker, &i, tokio::time::sleep(Duration::from_millis(800)))
            .await
            .unwrap_err();
    assert!(matches!(err, TestPhaseError::Interrupted), "{err}");
    assert_clean(&docker).await;
    // Dropped future: the guard's Drop spawns the removal.
    let dropped = tokio::time::timeout(
        Duration::from_millis(800),
        test_phase::test_image(&docker, &i),
    )
    .await;
    assert!(dropped.is_err());
    let t = Instant::now();
    while !images::own_test_containers(&docker, None).await.is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the guard did not remove the container"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_clean(&docker).await;
}

/// Creates (does not start) a `kiln-it/idle:1` container with `labels`.
async fn idle_with(docker: &Docker, labels: &[(&str, &str)]) -> String {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let body = bollard::models::ContainerCreateBody {
        image: Some("kiln-it/idle:1".into()),
        labels: Some(labels),
        ..Default::default()
    };
    docker.create_container(None, body).await.unwrap().id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_dead_run_are_removed() {
    let (_l, docker) = setup().await;
    images::build(&docker, "kiln-it/idle:1", "CMD [\"sleep\", \"3600\"]").await;
    let owner = format!(
        "{}:999999999",
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
    );
    let labels = [
        (test_phase::LABEL_ROLE, test_phase::ROLE_TEST),
        (test_phase::LABEL_RECIPE, "crashed"),
        (test_phase::LABEL_RUN, "dead"),
        (test_phase::LABEL_OWNER, owner.as_str()),
    ];
    let id = idle_with(&docker, &labels).await;
    let listed = test_phase::labelled_containers(&docker).await.unwrap();
    assert!(listed.contains(&id), "{listed:?}");
    // Other processes' leftovers on a shared engine may be removed too.
    assert!(test_phase::cleanup_leftovers(&docker).await.unwrap() >= 1);
    let listed = test_phase::labelled_containers(&docker).await.unwrap();
    assert!(!listed.contains(&id), "{listed:?}");
    assert_clean(&docker).await;
}

/// A daemon run's test containers carry its run id, and `cleanup_run`
/// removes those of a dead run whatever their owner label says (a node
/// restarted under another host name or as PID 1 would never match it),
/// while another run's container stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_daemon_runs_containers_are_removed_by_its_run_id() {
    let (_l, docker) = setup().await;
    images::build(&docker, "kiln-it/idle:1", "CMD [\"sleep\", \"3600\"]").await;
    let of_run = |run: &str| {
        let label = format!("{}={run}", test_phase::LABEL_DAEMON_RUN);
        let filters = std::collections::HashMap::from([("label".to_string(), vec![label])]);
        bollard::query_parameters::ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build()
    };
    // The test phase labels a daemon run's container with the run's id.
    let run = format!("run-{}", support::nonce());
    let mut i = input(
        "kiln-it/idle:1",
        config(Some(8080), Duration::from_secs(30)),
    );
    i.daemon_run = Some(run.clone());
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = {
        let (docker, seen, options) = (docker.clone(), seen.clone(), of_run(&run));
        async move {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(20) {
                let listed = docker.list_containers(Some(options.clone())).await.unwrap();
                if !listed.is_empty() {
                    seen.store(true, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let err = test_phase::test_image_until(&docker, &i, watch)
        .await
        .unwrap_err();
    assert!(matches!(err, TestPhaseError::Interrupted), "{err}");
    assert!(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        "no container labelled with the daemon run {run}"
    );
    assert_clean(&docker).await;

    // Two runs' containers, owned by a process on another host (as a node
    // restarted under a new host name sees its own old ones).
    let dead = format!("dead-{}", support::nonce());
    let live = format!("live-{}", support::nonce());
    let mut ids = Vec::new();
    for r in [&dead, &live] {
        let labels = [
            (test_phase::LABEL_ROLE, test_phase::ROLE_TEST),
            (test_phase::LABEL_RECIPE, "crashed"),
            (test_phase::LABEL_RUN, "t"),
            (test_phase::LABEL_DAEMON_RUN, r.as_str()),
            (test_phase::LABEL_OWNER, "another-host-name:1"),
        ];
        ids.push(idle_with(&docker, &labels).await);
    }
    // The owner label alone cannot tell: the leftovers sweep keeps both.
    test_phase::cleanup_leftovers(&docker).await.unwrap();
    let listed = test_phase::labelled_containers(&docker).await.unwrap();
    assert!(ids.iter().all(|id| listed.contains(id)), "{listed:?}");
    // The dead run's id does.
    assert_eq!(test_phase::cleanup_run(&docker, &dead).await.unwrap(), 1);
    let listed = test_phase::labelled_containers(&docker).await.unwrap();
    assert!(!listed.contains(&ids[0]), "{listed:?}");
    assert!(
        listed.contains(&ids[1]),
        "another run's container stays: {listed:?}"
    );
    assert_eq!(test_phase::cleanup_run(&docker, &dead).await.unwrap(), 0);
    assert_eq!(test_phase::cleanup_run(&docker, &live).await.unwrap(), 1);
    let listed = test_phase::labelled_containers(&docker).await.unwrap();
    assert!(!listed.contains(&ids[1]), "{listed:?}");
}

/// The docker-proxy pitfall the TCP probe avoids: the published port accepts
/// while nothing listens; `served_via_proxy` tells the two apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_probe_is_not_fooled_by_docker_proxy() {
    let (_l, docker) = setup().await;
    images::build(&docker, "kiln-it/delayed:1", DELAYED).await;
    let port_key = "8080/tcp".to_string();
    let body = bollard::models::ContainerCreateBody {
        image: Some("kiln-it/delayed:1".into()),
        labels: Some(
            [(
                test_phase::LABEL_ROLE.to_string(),
                test_phase::ROLE_TEST.to_string(),
            )]
            .into(),
        ),
        exposed_ports: Some(vec![port_key.clone()]),
        host_config: Some(bollard::models::HostConfig {
            port_bindings: Some(
                [(
                    port_key.clone(),
                    Some(vec![bollard::models::PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(String::new()),
                    }]),
                )]
                .into(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = docker.create_container(None, body).await.unwrap().id;
    docker.start_container(&id, None).await.unwrap();
    let info = docker.inspect_container(&id, None).await.unwrap();
    let port: u16 = info.network_settings.unwrap().ports.unwrap()[&port_key]
        .as_ref()
        .unwrap()[0]
        .host_port
        .as_ref()
        .unwrap()
        .parse()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // Before the server listens (it sleeps 1.5 s): a plain connect succeeds anyway…
    let plain = tokio::net::TcpStream::connect(addr).await.is_ok();
    // …but the confirmed probe says "not served".
    let early = test_phase::served_via_proxy(addr).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let late = test_phase::served_via_proxy(addr).await;
    let removal = bollard::query_parameters::RemoveContainerOptionsBuilder::default()
        .force(true)
        .build();
    docker.remove_container(&id, Some(removal)).await.unwrap();
    println!("plain connect before listening: {plain}");
    assert!(
        !early,
        "a published port with no listener must not count as served"
    );
    assert!(late, "a listening server must count as served");
    assert_clean(&docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_is_an_error() {
    let (_l, docker) = setup().await;
    let err = test_phase::test_image(
        &docker,
        &input(
            "kiln-it/does-not-exist:0",
            config(None, Duration::from_secs(5)),
        ),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TestPhaseError::ImageNotFound { .. }), "{err}");
    assert_clean(&docker).await;
}
