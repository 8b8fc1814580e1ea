//! A kiln cluster as real processes (issue 15): `kiln serve` nodes, each
//! with its own checkout of one project and its own Docker engine (the
//! default engine and `KILN_TEST_DOCKER_HOSTS` from `scripts/services up`),
//! sharing one PostgreSQL schema.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::serve_process::Daemon;

/// The trigger token of `deploy/kiln.yaml` (reader rights included).
pub const TOKEN: &str = "kiln-dev-trigger";

/// The Docker engines a cluster test may use: the default one first.
pub fn engines() -> Vec<String> {
    let s = super::services();
    let extra = super::services_env("KILN_TEST_DOCKER_HOSTS").unwrap_or_else(|| {
        panic!("KILN_TEST_DOCKER_HOSTS is not set and not in target/services.env: run `scripts/services up`")
    });
    std::iter::once(s.docker_host)
        .chain(extra.split(',').map(str::to_string))
        .collect()
}

/// A project with one small recipe per name (the embedded example's site,
/// pushed to the test registry only, as [`repository`] of its name,
/// unscheduled); `slow` recipes serve only after 12 s, so their test phase
/// holds a container that long. Names should be unique to the test (the
/// test containers and images on the shared engines carry them).
pub fn project(names: &[String], slow: &[String]) -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for sub in ["recipes", "components", "dockerfiles"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    std::fs::copy(
        root.join("components/hello-site.yaml"),
        dir.path().join("components/hello-site.yaml"),
    )
    .unwrap();
    let dockerfile =
        std::fs::read_to_string(root.join("dockerfiles/hello-web.Dockerfile")).unwrap();
    let delayed = dockerfile.replace(
        r#"CMD ["/bin/busybox", "httpd","#,
        r#"CMD ["/bin/sh", "-c", "sleep 12; exec /bin/busybox httpd -f -p 8080 -h /www"]
# was: CMD ["/bin/busybox", "httpd","#,
    );
    assert_ne!(
        delayed, dockerfile,
        "the example's CMD changed; update this fixture"
    );
    std::fs::write(dir.path().join("dockerfiles/fast.Dockerfile"), &dockerfile).unwrap();
    std::fs::write(dir.path().join("dockerfiles/slow.Dockerfile"), delayed).unwrap();
    let example = std::fs::read_to_string(root.join("recipes/hello-web.yaml")).unwrap();
    let example = &example[..example.find("schedule:").unwrap()];
    for name in names.iter().chain(slow) {
        let df = if slow.contains(name) { "slow" } else { "fast" };
        let text = example
            .replace("name: hello-web", &format!("name: {name}"))
            .replace(
                "dockerfile: hello-web.Dockerfile",
                &format!("dockerfile: {df}.Dockerfile"),
            )
            .replace(
                "repository: kiln/hello-web",
                &format!("repository: {}", repository(name)),
            );
        let text = drop_ecr_target(&text);
        std::fs::write(dir.path().join(format!("recipes/{name}.yaml")), text).unwrap();
    }
    dir
}

/// The test registry repository recipe `name` pushes to.
pub fn repository(name: &str) -> String {
    format!("kiln-it/cluster-{name}")
}

/// The recipe text without its ECR target, the last one of the example
/// (the cluster tests push to the registry only).
fn drop_ecr_target(text: &str) -> String {
    let start = text
        .find("    - ecr:")
        .expect("the example has an ECR target");
    text[..start].to_string()
}

/// The operator config: `deploy/kiln.yaml` (dev tokens) with `extra`
/// appended, in a folder of its own.
pub fn operator_config(extra: &str) -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(root.join("deploy/kiln.yaml")).unwrap();
    std::fs::write(dir.path().join("kiln.yaml"), format!("{base}\n{extra}")).unwrap();
    dir
}

/// One node: its process, API URL, id, engine and checkout.
pub struct Node {
    /// The process (killed when dropped).
    pub daemon: Daemon,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The node id.
    pub id: String,
    /// Its `DOCKER_HOST`.
    pub engine: String,
    /// Its stderr, kept for a failing test's message.
    pub log: PathBuf,
}

/// Starts `kiln --project CHECKOUT --config CONFIG --state STATE serve
/// --node-id ID` on `engine`; returns once it listens. Its stderr goes to
/// `CHECKOUT/node-ID.log` (appended, so a restarted node keeps the first
/// incarnation's lines).
pub fn start(checkout: &Path, config: &Path, state: &str, id: &str, engine: &str) -> Node {
    let log = checkout.join(format!("node-{id}.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--project")
        .arg(checkout)
        .arg("--config")
        .arg(config.join("kiln.yaml"))
        .args([
            "--state",
            state,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--node-id",
            id,
        ])
        .env("DOCKER_HOST", engine)
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let daemon = Daemon(child);
    let (tx, rx) = std::sync::mpsc::channel();
    let log_path = log.clone();
    std::thread::spawn(move || {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            use std::io::Write as _;
            let _ = writeln!(file, "{line}");
            if !sent && let Some(rest) = line.split("listening on ").nth(1) {
                let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                let addr = addr
                    .trim_end_matches(|c: char| !c.is_ascii_digit())
                    .to_string();
                let _ = tx.send(addr);
                sent = true;
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| {
            panic!(
                "node {id} did not listen; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    Node {
        daemon,
        url: format!("http://{addr}"),
        id: id.to_string(),
        engine: engine.to_string(),
        log,
    }
}

impl Node {
    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `POST /v1/pipelines/NAME/runs`: the run id.
    pub async fn trigger(&self, pipeline: &str) -> String {
        self.trigger_on(pipeline, None).await
    }

    /// `POST /v1/pipelines/NAME/runs[?branch=BRANCH]`: the id of the run
    /// queued (a joined run fails the test).
    pub async fn trigger_on(&self, pipeline: &str, branch: Option<&str>) -> String {
        let query = branch.map(|b| format!("?branch={b}")).unwrap_or_default();
        let res = reqwest::Client::new()
            .post(format!("{}/v1/pipelines/{pipeline}/runs{query}", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, 202, "trigger {pipeline}{query}: {body}");
        body["run"]["id"].as_str().unwrap().to_string()
    }

    /// `GET PATH` as JSON.
    pub async fn get(&self, path: &str) -> Value {
        let res = reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body = res.text().await.unwrap();
        assert!(status.is_success(), "GET {path}: {status} {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Every run of the cluster, newest first.
    pub async fn runs(&self) -> Vec<Value> {
        self.get("/v1/runs?limit=500")
            .await
            .as_array()
            .unwrap()
            .clone()
    }

    /// `GET /v1/runs/ID`: the run row with its `stages`.
    pub async fn run(&self, id: &str) -> Value {
        self.get(&format!("/v1/runs/{id}")).await
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.daemon.id()
    }
}

/// Polls `check` every 250 ms until it returns `Some`, or panics with
/// `what` after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether a run row has ended.
pub fn ended(run: &Value) -> bool {
    !matches!(run["status"].as_str(), Some("queued" | "running"))
}

/// `kiln --state STATE ARGS…` (outside any project): exit code, stdout, stderr.
pub fn kiln_state(state: &str, args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--project")
        .arg(dir.path())
        .args(["--state", state])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Test containers (any owner) of recipes `recipes` on `engine`.
pub fn test_containers_on(engine: &str, recipes: &[String]) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "label=dev.kiln.role=test",
            "--format",
            "{{.ID}} {{.Label \"dev.kiln.recipe\"}}",
        ])
        .env("DOCKER_HOST", engine)
        .output()
        .unwrap();
    assert!(out.status.success(), "docker ps on {engine} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, recipe)| recipes.iter().any(|r| r == recipe))
        .map(|(id, _)| id.to_string())
        .collect()
}

/// Removes the images kiln built for `recipes` (`kiln/NAME:1.0.0`) from
/// `engine`, best effort (the layers they share with other tests stay).
pub fn remove_images(engine: &str, recipes: &[String]) {
    let tags: Vec<String> = recipes.iter().map(|r| format!("kiln/{r}:1.0.0")).collect();
    let _ = Command::new("docker")
        .args(["image", "rm", "--force"])
        .args(&tags)
        .env("DOCKER_HOST", engine)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Sends `signal` (`STOP`, `CONT`) to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid} failed");
}
