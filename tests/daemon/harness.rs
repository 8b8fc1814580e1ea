//! The daemon in-process on 127.0.0.1:0 over a temporary project, with a
//! test-double runner and a chosen clock, on the state store
//! `KILN_TEST_STATE` names: `sqlite` (default: the project's file) or
//! `postgres` (a fresh schema of the test PostgreSQL per daemon, so the
//! whole suite runs against the cluster queue too).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kiln::daemon::auth::{Role, hash_token};
use kiln::daemon::clock::Clock;
use kiln::daemon::config::{DaemonConfig, TokenEntry};
use kiln::daemon::node::NodeOptions;
use kiln::daemon::run::{RunRow, RunState};
use kiln::daemon::runner::{
    BuildNeed, LogSink, PipelineRunner, RunOutcome, RunRequest, RunnerError,
};
use kiln::daemon::{DaemonError, DaemonOptions, DaemonState};
use kiln::record::Status;
use kiln::state::StateLocation;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::postgres::TestSchema;

pub const READER: &str = "reader-token";
pub const TRIGGER: &str = "trigger-token";
pub const ADMIN: &str = "admin-token";
pub const APPROVER: &str = "approver-token";

/// A runner that records its calls; `gated` runs wait for [`FakeRunner::release`].
pub struct FakeRunner {
    pub clock: Arc<dyn Clock>,
    pub runs: Mutex<Vec<(String, String, DateTime<Utc>)>>,
    pub checks: Mutex<Vec<(String, DateTime<Utc>)>>,
    pub cleanups: Mutex<Vec<String>>,
    /// The branch of each run, by run id.
    pub branches: Mutex<Vec<(String, Option<String>)>>,
    pub need: Mutex<BuildNeed>,
    pub gated: AtomicBool,
    pub fail: AtomicBool,
    /// How many runs stopped on their cancellation token.
    pub cancelled: AtomicUsize,
    gate: Semaphore,
}

impl FakeRunner {
    pub fn new(clock: Arc<dyn Clock>) -> Arc<FakeRunner> {
        Arc::new(FakeRunner {
            clock,
            runs: Mutex::default(),
            checks: Mutex::default(),
            cleanups: Mutex::default(),
            branches: Mutex::default(),
            need: Mutex::new(BuildNeed::Needed("parent moved".into())),
            gated: AtomicBool::new(false),
            fail: AtomicBool::new(false),
            cancelled: AtomicUsize::new(0),
            gate: Semaphore::new(0),
        })
    }

    pub fn release(&self) {
        self.gate.add_permits(1);
    }

    pub fn run_count(&self) -> usize {
        self.runs.lock().unwrap().len()
    }
}

#[async_trait]
impl PipelineRunner for FakeRunner {
    async fn run(&self, run: RunRequest, log: LogSink, cancel: CancellationToken) -> RunOutcome {
        let now = self.clock.now();
        let branch = run.branch.as_ref().map(|b| b.as_str().to_string());
        self.branches
            .lock()
            .unwrap()
            .push((run.run_id.clone(), branch));
        self.runs
            .lock()
            .unwrap()
            .push((run.run_id, run.pipeline, now));
        log.stage_started("build");
        log.line("step 1 of build");
        if self.gated.load(Ordering::SeqCst) {
            tokio::select! {
                p = self.gate.acquire() => p.unwrap().forget(),
                () = cancel.cancelled() => {
                    self.cancelled.fetch_add(1, Ordering::SeqCst);
                    log.stage_finished("build", false, "cancelled");
                    return RunOutcome { status: Status::Cancelled, summary: "cancelled".into(), record_id: None, failure: None };
                }
            }
        }
        log.line("step 2 of build");
        let ok = !self.fail.load(Ordering::SeqCst);
        log.stage_finished("build", ok, "");
        RunOutcome {
            status: if ok { Status::Passed } else { Status::Failed },
            summary: if ok {
                "pushed".into()
            } else {
                "build: step 2 failed".into()
            },
            record_id: None,
            failure: (!ok).then_some(kiln::pipeline::FailureKind::Failed),
        }
    }

    async fn needs_build(
        &self,
        pipeline: &str,
        _queued: tokio::time::Instant,
        _log: &LogSink,
    ) -> Result<BuildNeed, RunnerError> {
        self.checks
            .lock()
            .unwrap()
            .push((pipeline.into(), self.clock.now()));
        Ok(self.need.lock().unwrap().clone())
    }

    async fn cleanup_run(&self, run_id: &str) {
        self.cleanups.lock().unwrap().push(run_id.into());
    }
}

/// A project folder with the example component and template and one recipe
/// per `(name, schedule YAML)`.
pub fn project(recipes: &[(&str, Option<&str>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["components", "dockerfiles", "recipes"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    std::fs::copy(
        repo.join("components/hello-site.yaml"),
        dir.path().join("components/hello-site.yaml"),
    )
    .unwrap();
    std::fs::copy(
        repo.join("dockerfiles/hello-web.Dockerfile"),
        dir.path().join("dockerfiles/hello-web.Dockerfile"),
    )
    .unwrap();
    let example = std::fs::read_to_string(repo.join("recipes/hello-web.yaml")).unwrap();
    let body = &example[..example.find("schedule:").unwrap()];
    for (name, schedule) in recipes {
        let mut text = body.replace("name: hello-web", &format!("name: {name}"));
        if let Some(s) = schedule {
            text.push_str(s);
        }
        std::fs::write(dir.path().join(format!("recipes/{name}.yaml")), text).unwrap();
    }
    dir
}

pub fn config(grace_seconds: u64) -> DaemonConfig {
    let token = |name: &str, role, t: &str| TokenEntry {
        name: name.into(),
        role,
        sha256: hash_token(t),
    };
    DaemonConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        concurrency: 2,
        grace_seconds,
        tokens: vec![
            token("r", Role::Reader, READER),
            token("t", Role::Trigger, TRIGGER),
            token("a", Role::Admin, ADMIN),
            token("qa", Role::Approver, APPROVER),
        ],
        registries: Default::default(),
        catch_up_missed_slots: true,
        ..Default::default()
    }
}

/// Whether this run of the suite is on PostgreSQL (`KILN_TEST_STATE=postgres`).
pub fn on_postgres() -> bool {
    match std::env::var("KILN_TEST_STATE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Ok("") | Err(_) => false,
        Ok(other) => panic!("KILN_TEST_STATE={other}: use sqlite or postgres"),
    }
}

/// The state store of a daemon over the project at `dir`: its SQLite
/// file, or (on PostgreSQL) a fresh schema, kept by the caller.
pub async fn state_for(dir: &Path) -> (StateLocation, Option<TestSchema>) {
    if on_postgres() {
        let schema = TestSchema::new().await;
        (StateLocation::Postgres(schema.url.clone()), Some(schema))
    } else {
        let root = dir.canonicalize().unwrap();
        (StateLocation::Sqlite(kiln::record::db_path(&root)), None)
    }
}

/// The options of a daemon over `dir` on `state`, as the tests use them.
pub async fn options(
    dir: &Path,
    state: StateLocation,
    config: DaemonConfig,
    runner: Arc<dyn PipelineRunner>,
    clock: Arc<dyn Clock>,
) -> DaemonOptions {
    let records = kiln::record::Records::open(&state, kiln::record::ChainKeys::default())
        .await
        .unwrap();
    DaemonOptions {
        records,
        project: kiln::project::Project::open(dir).unwrap(),
        config,
        config_path: None,
        state,
        node: NodeOptions {
            id: Some("test-node".into()),
            docker_host: Some("unix:///var/run/docker.sock".into()),
            platforms: vec!["linux/amd64".into()],
        },
        runner,
        clock,
    }
}

pub struct Daemon {
    pub url: String,
    pub state: DaemonState,
    pub runner: Arc<FakeRunner>,
    pub task: JoinHandle<Result<(), DaemonError>>,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// The PostgreSQL schema of its state, on PostgreSQL.
    pub schema: Option<TestSchema>,
}

/// Starts the daemon over `dir`.
pub async fn start(dir: tempfile::TempDir, clock: Arc<dyn Clock>, grace: u64) -> Daemon {
    start_with(dir, clock, config(grace)).await
}

/// Starts the daemon over `dir` with `config`.
pub async fn start_with(
    dir: tempfile::TempDir,
    clock: Arc<dyn Clock>,
    config: DaemonConfig,
) -> Daemon {
    let (location, schema) = state_for(dir.path()).await;
    start_on(dir, location, schema, clock, config).await
}

/// Starts the daemon over `dir` on `location` (kept with `schema`).
pub async fn start_on(
    dir: tempfile::TempDir,
    location: StateLocation,
    schema: Option<TestSchema>,
    clock: Arc<dyn Clock>,
    config: DaemonConfig,
) -> Daemon {
    let runner = FakeRunner::new(clock.clone());
    let opts = options(dir.path(), location, config, runner.clone(), clock).await;
    let (state, url, task) = serve_opts(opts).await;
    Daemon {
        url,
        state,
        runner,
        task,
        http: reqwest::Client::new(),
        dir,
        schema,
    }
}

/// Serves the project at `dir` with `runner` on the project's SQLite file
/// (`location`: the state store; kept alive by the caller); returns once
/// the API answers.
pub async fn serve_with(
    dir: &Path,
    location: StateLocation,
    clock: Arc<dyn Clock>,
    runner: Arc<dyn PipelineRunner>,
    config: DaemonConfig,
) -> (DaemonState, String, JoinHandle<Result<(), DaemonError>>) {
    serve_opts(options(dir, location, config, runner, clock).await).await
}

/// Opens and serves `opts`; returns once the API answers.
pub async fn serve_opts(
    opts: DaemonOptions,
) -> (DaemonState, String, JoinHandle<Result<(), DaemonError>>) {
    let state = DaemonState::open(opts).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(kiln::daemon::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));
    // The server accepts only after crash recovery: wait for it.
    let health = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert!(health.status().is_success());
    (state, url, task)
}

impl Daemon {
    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        let req = self.http.post(format!("{}{path}", self.url));
        req.bearer_auth(token).json(body).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.http.post(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    /// Waits (real time, bounded) until run `id` satisfies `done`.
    pub async fn wait_run(&self, id: &str, done: impl Fn(&RunRow) -> bool) -> RunRow {
        for _ in 0..3000 {
            if let Some(run) = self.state.queue().get(id).await.unwrap()
                && done(&run)
            {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("run {id} never reached the expected state");
    }

    pub async fn wait_finished(&self, id: &str) -> RunRow {
        self.wait_run(id, |r| r.status.is_finished()).await
    }

    /// Shuts the daemon down; returns its project and state store.
    pub async fn stop(self) -> (tempfile::TempDir, Option<TestSchema>) {
        self.state.shutdown();
        self.task.await.unwrap().unwrap();
        (self.dir, self.schema)
    }

    /// Shuts the daemon down and drops its PostgreSQL schema (if any).
    pub async fn finish(self) {
        let (_dir, schema) = self.stop().await;
        if let Some(schema) = schema {
            schema.remove().await;
        }
    }
}

pub fn is(state: RunState) -> impl Fn(&RunRow) -> bool {
    move |r| r.status == state
}

/// Leaves run `id` of `pipeline` in the state a previous daemon (node
/// `test-node`) left it: `status` (`running`, `passed`, …) since `at`, in
/// the project's SQLite file or in `schema`. Bypasses the queue on purpose.
pub async fn seed_run(
    dir: &Path,
    schema: Option<&TestSchema>,
    (id, pipeline, status): (&str, &str, &str),
    at: &str,
) {
    let (id, pipeline, status, at) = (
        id.to_string(),
        pipeline.to_string(),
        status.to_string(),
        at.to_string(),
    );
    let Some(schema) = schema else {
        let db = kiln::record::db_path(&dir.canonicalize().unwrap());
        let queue = kiln::daemon::queue::Queue::open(&db).unwrap();
        queue
            .with_connection(move |c| {
                c.execute(
                    "INSERT INTO runs (id, pipeline, trigger, check_first, status, queued_at, \
                     started_at, finished_at) VALUES (?1, ?2, 'manual', 0, ?3, ?4, ?4, \
                     CASE WHEN ?3 = 'running' THEN NULL ELSE ?4 END)",
                    [id, pipeline, status, at],
                )
            })
            .await
            .unwrap();
        return;
    };
    // Migrated as a node would (on a runtime of its own: the pool's
    // timeouts must not run on a paused test clock); the row carries this
    // project's checkout, so a retry of it is claimable over `dir`.
    let url = schema.url.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(kiln::daemon::cluster::Cluster::connect(&url))
            .unwrap();
    })
    .join()
    .unwrap();
    let checkout =
        kiln::daemon::checkout::of_project(&kiln::project::Project::open(dir).unwrap()).unwrap();
    let db = schema.admin().await;
    db.execute(
        "INSERT INTO nodes (id, docker_host, platforms, checkout) \
         VALUES ('test-node', 'unix:///var/run/docker.sock', '{linux/amd64}', $1) \
         ON CONFLICT DO NOTHING",
        &[&checkout],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO cluster_runs (id, pipeline, platform, checkout, trigger, status, node, \
         epoch, lease_until, queued_at, started_at, finished_at) \
         VALUES ($1, $2, 'linux/amd64', $3, 'manual', $4, 'test-node', 1, \
         CASE WHEN $4 = 'running' THEN now() + interval '1 hour' END, \
         $5::text::timestamptz, $5::text::timestamptz, \
         CASE WHEN $4 = 'running' THEN NULL ELSE $5::text::timestamptz END)",
        &[&id, &pipeline, &checkout, &status, &at],
    )
    .await
    .unwrap();
}
