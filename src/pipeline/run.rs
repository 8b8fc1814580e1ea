//! [`Pipeline::run`]: one recipe, end to end. A failure at any stage after
//! loading is recorded as a failed record; only a run whose tests passed and
//! whose pushes were verified is recorded as passed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bollard::Docker;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::error::{PipelineError, chain};
use super::events::{EventSink, PipelineEvent, Stage};
use super::record_of::{self, Outputs};
use super::{guard, pins};
use crate::build::{self, BuildError, BuildRequest, BuiltImage};
use crate::digest::Digest;
use crate::distribute::{self, PushOptions, PushRequest, PushedImage};
use crate::load::{self, LoadedRecipe};
use crate::project::Project;
use crate::record::{self, ChainedRecord, Failure, Status, Store};
use crate::registry::{LookupScope, RegistryClient};
use crate::render;
use crate::test_phase::{self, TestReport};

/// The services a run uses.
#[derive(Clone)]
pub struct Pipeline {
    /// The project folder.
    pub project: Project,
    /// The Docker engine.
    pub docker: Docker,
    /// Registries (resolve and push).
    pub registry: RegistryClient,
    /// The operator's signing key: with one, every verified push is signed.
    pub signing: Option<std::sync::Arc<crate::sign::SigningKey>>,
}

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// Re-resolve parents even when the lock has them.
    pub update_parents: bool,
    /// Build without the layer cache.
    pub no_cache: bool,
    /// Stops the run; containers are cleaned up.
    pub cancel: CancellationToken,
    /// Progress.
    pub events: EventSink,
    /// Daemon runs: parents are checked HEAD first against the lock with
    /// lookups shared within this scope (the run's queue time), and the lock
    /// follows moved parents. `None`: the lock as is (`update_parents`
    /// re-pins everything with `GET`s), as `kiln run` does.
    pub lookups: Option<LookupScope>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            update_parents: false,
            no_cache: false,
            cancel: CancellationToken::new(),
            events: super::events::discard(),
            lookups: None,
        }
    }
}

/// What a finished run produced.
#[derive(Debug)]
pub struct RunSummary {
    /// Pipeline name.
    pub pipeline: String,
    /// Outcome.
    pub status: Status,
    /// The build key.
    pub build_key: Digest,
    /// The local image, when one was built or found.
    pub image_id: Option<String>,
    /// The record written by this run (none when up to date).
    pub record: Option<ChainedRecord>,
    /// `REGISTRY/REPOSITORY@sha256:…` of the approved image.
    pub approved: Vec<String>,
    /// Time per stage.
    pub timings: Vec<(Stage, Duration)>,
    /// The test report, when tests ran.
    pub tests: Option<TestReport>,
    /// The pushes, when they ran.
    pub pushed: Option<PushedImage>,
}

struct Run<'a> {
    pipeline: &'a Pipeline,
    opts: &'a RunOptions,
    recipe: LoadedRecipe,
    outputs: Outputs,
    timings: Vec<(Stage, Duration)>,
    started_at: chrono::DateTime<Utc>,
    stage_start: Instant,
}

/// Runs `f` on the record store in a blocking task.
async fn with_store<T: Send + 'static>(
    path: PathBuf,
    f: impl FnOnce(&mut Store) -> Result<T, record::RecordError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(move || {
        let mut store = Store::open(&path).map_err(|e| chain(&e))?;
        f(&mut store).map_err(|e| chain(&e))
    })
    .await
    .map_err(|e| format!("record store task failed: {e}"))?
}

impl Pipeline {
    /// The record database of this project.
    pub fn db_path(&self) -> PathBuf {
        record::db_path(self.project.root())
    }

    /// Runs `recipe` (a name or path): resolve → render → build (skipped when
    /// a passing record has the same build key) → test → distribute → record.
    pub async fn run(&self, recipe: &str, opts: &RunOptions) -> Result<RunSummary, PipelineError> {
        let emit = |e| (opts.events)(e);
        let t = Instant::now();
        emit(PipelineEvent::StageStarted(Stage::Load));
        let loaded = load::load_recipe(&self.project, recipe)?;
        emit(PipelineEvent::StageFinished {
            stage: Stage::Load,
            elapsed: t.elapsed(),
            note: format!(
                "{} {} ({} components)",
                loaded.name,
                loaded.version,
                loaded.components.len()
            ),
        });
        // One run of a pipeline at a time; held until `go` returns.
        let _lock = guard::enter(self.project.root(), &loaded.name, opts).await?;
        let run = Run {
            pipeline: self,
            opts,
            recipe: loaded,
            outputs: Outputs::default(),
            timings: vec![(Stage::Load, t.elapsed())],
            started_at: Utc::now(),
            stage_start: Instant::now(),
        };
        run.go().await
    }
}

impl Run<'_> {
    fn emit(&self, e: PipelineEvent) {
        (self.opts.events)(e)
    }

    /// Begins a stage, or records the run as cancelled when it was.
    async fn start(&mut self, stage: Stage) -> Result<(), PipelineError> {
        if self.opts.cancel.is_cancelled() {
            return Err(self.fail(stage, "cancelled".into()).await);
        }
        self.begin(stage);
        Ok(())
    }

    /// The sign stage, when a key is configured and something was pushed.
    async fn sign(&mut self, allocation: &record::Allocation) -> Result<(), String> {
        let (Some(key), Some(pushed)) = (&self.pipeline.signing, &self.outputs.pushed) else {
            return Ok(());
        };
        let (key, pushed) = (key.clone(), pushed.clone());
        self.begin(Stage::Sign);
        let build = u64::from(allocation.build.build.0);
        let (name, version) = (&self.recipe.name, self.recipe.version.to_string());
        let (signed, note) = super::sign_stage::sign_pushed(
            &self.pipeline.registry,
            &key,
            &pushed,
            name,
            &version,
            build,
        )
        .await
        .map_err(|e| chain(&e))?;
        self.outputs.signatures = signed;
        self.finish(Stage::Sign, note);
        Ok(())
    }

    fn begin(&mut self, stage: Stage) {
        self.stage_start = Instant::now();
        self.emit(PipelineEvent::StageStarted(stage));
    }

    fn finish(&mut self, stage: Stage, note: String) {
        let elapsed = self.stage_start.elapsed();
        self.timings.push((stage, elapsed));
        self.outputs
            .timings_ms
            .insert(stage.as_str().to_string(), elapsed.as_millis() as u64);
        self.emit(PipelineEvent::StageFinished {
            stage,
            elapsed,
            note,
        });
    }

    /// Records the failure (allocating a build number for it) and returns
    /// the error.
    async fn fail(&mut self, stage: Stage, message: String) -> PipelineError {
        let (name, version) = (self.recipe.name.clone(), self.recipe.version.clone());
        match with_store(self.pipeline.db_path(), move |s| {
            s.allocate(&name, &version)
        })
        .await
        {
            Ok(a) => self.fail_allocated(stage, message, a).await,
            Err(e) => PipelineError::Stage {
                stage,
                message: format!("{message} (and the failure could not be recorded: {e})"),
                record: None,
            },
        }
    }

    async fn append(
        &self,
        status: Status,
        failure: Option<Failure>,
        allocation: record::Allocation,
    ) -> Result<ChainedRecord, String> {
        let path = self.pipeline.db_path();
        let rec = record_of::record(
            &self.recipe,
            &allocation,
            status,
            &self.outputs,
            failure,
            self.started_at,
        );
        let appended = with_store(path, move |s| s.append(&rec)).await?;
        guard::clear(self.pipeline.project.root(), &self.recipe.name);
        Ok(appended)
    }

    async fn go(mut self) -> Result<RunSummary, PipelineError> {
        // Resolve.
        self.start(Stage::Resolve).await?;
        let (registry, project) = (&self.pipeline.registry, &self.pipeline.project);
        let resolved = match &self.opts.lookups {
            Some(scope) => pins::refresh_lock(registry, project, &self.recipe, scope).await,
            None => pins::ensure(registry, project, &self.recipe, self.opts.update_parents).await,
        };
        let (pins, parents) = match resolved {
            Ok(p) => p,
            Err(e) => return Err(self.fail(Stage::Resolve, chain(&e)).await),
        };
        let note = parents
            .iter()
            .map(|p| p.pinned.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        self.outputs.parents = parents;
        self.finish(Stage::Resolve, note);

        // Render and compute the build key.
        self.start(Stage::Render).await?;
        let rendered = render::render(&self.recipe, &pins);
        let mut request = BuildRequest::for_recipe(&self.recipe);
        request.state_dir = Some(record::state_dir(self.pipeline.project.root()));
        request.tag = Some(format!("kiln/{}:{}", self.recipe.name, self.recipe.version));
        request.no_cache = self.opts.no_cache;
        request.cancel = self.opts.cancel.child_token();
        let prepared = {
            let (r, q) = (rendered.clone(), request.clone());
            tokio::task::spawn_blocking(move || build::prepare(&r, &q)).await
        };
        let prepared = match prepared {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Err(self.fail(Stage::Render, chain(&e)).await),
            Err(e) => return Err(self.fail(Stage::Render, e.to_string()).await),
        };
        let key = prepared.build_key.digest.clone();
        self.outputs.build_key = Some(key.clone());
        self.finish(Stage::Render, format!("build key {}", key.short()));

        // Up to date: a passing, verified record with the same key and the
        // same test and distribute settings.
        let (name, k) = (self.recipe.name.clone(), key.clone());
        let approved = with_store(self.pipeline.db_path(), move |s| {
            s.latest_passing_with_key(&name, &k)
        })
        .await;
        match approved {
            Ok(Some(rec)) if record_of::same_run_inputs(&rec.record, &self.recipe) => {
                let approved = rec
                    .record
                    .targets
                    .iter()
                    .map(|t| t.pinned_reference())
                    .collect();
                return Ok(self.summary(Status::UpToDate, key, None, None, approved));
            }
            Ok(_) => {}
            Err(e) => {
                return Err(self
                    .fail(
                        Stage::Record,
                        format!("the record store cannot be read: {e}"),
                    )
                    .await);
            }
        }

        // Build.
        self.start(Stage::Build).await?;
        request.credentials =
            match super::pull_credentials(&self.pipeline.registry, &rendered).await {
                Ok(c) => c,
                Err(e) => return Err(self.fail(Stage::Build, chain(&e)).await),
            };
        let events = self.opts.events.clone();
        // The context scanned for the key is the one that is built.
        let built = build::build_prepared(
            &self.pipeline.docker,
            &rendered,
            &request,
            prepared,
            &mut |e| events(PipelineEvent::Build(e)),
        )
        .await;
        let built: BuiltImage = match built {
            Ok(b) => b,
            Err(BuildError::Cancelled { .. }) => {
                self.opts.cancel.cancel();
                return Err(self.fail(Stage::Build, "cancelled".into()).await);
            }
            Err(e) => return Err(self.fail(Stage::Build, chain(&e)).await),
        };
        let note = if built.skipped {
            format!(
                "image {} exists (key {})",
                short_id(&built.image_id),
                key.short()
            )
        } else {
            format!("image {}", short_id(&built.image_id))
        };
        self.finish(Stage::Build, note);

        // Test.
        self.start(Stage::Test).await?;
        let input = match test_phase::TestInput::from_recipe(
            &self.recipe,
            &rendered,
            built.image_id.clone(),
        ) {
            Ok(i) => i,
            Err(d) => return Err(self.fail(Stage::Test, d.to_string()).await),
        };
        let cancel = self.opts.cancel.clone();
        let report = test_phase::test_image_until(&self.pipeline.docker, &input, async move {
            cancel.cancelled().await
        })
        .await;
        let report = match report {
            Ok(r) => r,
            Err(e) => return Err(self.fail(Stage::Test, chain(&e)).await),
        };
        for c in &report.checks {
            self.emit(PipelineEvent::Check {
                name: c.name.clone(),
                passed: c.passed || c.skipped,
                detail: c.detail.clone(),
            });
        }
        let passed = report.passed;
        let summary_line = format!(
            "{} of {} checks passed",
            report.checks.iter().filter(|c| c.passed).count(),
            report.checks.len()
        );
        self.outputs.tests = Some(report);
        if !passed {
            self.finish(Stage::Test, summary_line.clone());
            return Err(self
                .fail(Stage::Test, format!("tests failed: {summary_line}"))
                .await);
        }
        self.finish(Stage::Test, summary_line);

        // Distribute.
        self.start(Stage::Distribute).await?;
        let (name, version) = (self.recipe.name.clone(), self.recipe.version.clone());
        let allocation = match with_store(self.pipeline.db_path(), move |s| {
            s.allocate(&name, &version)
        })
        .await
        {
            Ok(a) => a,
            Err(e) => return Err(self.fail(Stage::Distribute, e).await),
        };
        if !self.recipe.distribute.targets.is_empty() {
            let req = PushRequest {
                image: built.image_id.clone(),
                name: self.recipe.name.clone(),
                version: self.recipe.version.clone(),
                build: u64::from(allocation.build.build.0),
                distribute: self.recipe.distribute.clone(),
                parent: self.outputs.parents.first().map(|p| p.pinned.clone()),
                state_dir: Some(record::state_dir(self.pipeline.project.root())),
                options: PushOptions::default(),
            };
            let root = self.pipeline.project.root();
            if let Err(e) = guard::journal(
                root,
                &self.recipe,
                &allocation,
                &self.outputs,
                &req,
                self.started_at,
            ) {
                let msg = format!("cannot write the push journal: {e}");
                return Err(self
                    .fail_allocated(Stage::Distribute, msg, allocation)
                    .await);
            }
            let events = self.opts.events.clone();
            let on_event = move |e: &distribute::PushEvent| events(PipelineEvent::Push(e.clone()));
            let pushed = tokio::select! {
                r = distribute::distribute(&self.pipeline.docker, &self.pipeline.registry, &req, &on_event) => r,
                _ = self.opts.cancel.cancelled() => {
                    let msg = format!("cancelled during the push; {}", guard::tags_may_exist(&req));
                    return Err(self.fail_allocated(Stage::Distribute, msg, allocation).await);
                }
            };
            match pushed {
                Ok(p) => {
                    let unverified: Vec<String> = p
                        .targets
                        .iter()
                        .filter(|t| !t.verified)
                        .map(|t| format!("{}/{}", t.registry_host, t.repository))
                        .collect();
                    let note = p
                        .targets
                        .iter()
                        .map(|t| {
                            format!("{}/{}@{}", t.registry_host, t.repository, t.manifest_digest)
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    self.outputs.pushed = Some(p);
                    if !unverified.is_empty() {
                        let msg = format!(
                            "the pushed digest could not be verified at {}",
                            unverified.join(", ")
                        );
                        return Err(self
                            .fail_allocated(Stage::Distribute, msg, allocation)
                            .await);
                    }
                    self.finish(Stage::Distribute, note);
                }
                Err(e) => {
                    return Err(self
                        .fail_allocated(Stage::Distribute, chain(&e), allocation)
                        .await);
                }
            }
        } else {
            self.finish(Stage::Distribute, "no targets".into());
        }

        if let Err(e) = self.sign(&allocation).await {
            return Err(self.fail_allocated(Stage::Sign, e, allocation).await);
        }

        // Record: once the pushes are verified the record is always written,
        // cancelled or not.
        self.begin(Stage::Record);
        let t = Instant::now();
        self.outputs.timings_ms.insert("record".into(), 0);
        let rec = match self.append(Status::Passed, None, allocation).await {
            Ok(r) => r,
            Err(e) => {
                return Err(PipelineError::Stage {
                    stage: Stage::Record,
                    message: e,
                    record: None,
                });
            }
        };
        let approved = if rec.record.is_approvable() {
            rec.record
                .targets
                .iter()
                .map(|t| t.pinned_reference())
                .collect()
        } else {
            Vec::new()
        };
        self.timings.push((Stage::Record, t.elapsed()));
        self.emit(PipelineEvent::StageFinished {
            stage: Stage::Record,
            elapsed: t.elapsed(),
            note: rec.record.build_id().to_string(),
        });
        let mut s = self.summary(
            Status::Passed,
            key,
            Some(built.image_id),
            Some(rec),
            approved,
        );
        s.tests = self.outputs.tests.take();
        s.pushed = self.outputs.pushed.take();
        Ok(s)
    }

    async fn fail_allocated(
        &mut self,
        stage: Stage,
        message: String,
        allocation: record::Allocation,
    ) -> PipelineError {
        let status = if self.opts.cancel.is_cancelled() {
            Status::Cancelled
        } else {
            Status::Failed
        };
        let failure = Failure {
            stage: stage.as_str().to_string(),
            message: message.clone(),
        };
        match self.append(status, Some(failure), allocation).await {
            Ok(_) if status == Status::Cancelled => PipelineError::Cancelled { stage },
            Ok(r) => PipelineError::Stage {
                stage,
                message,
                record: Some(Box::new(r)),
            },
            Err(e) => PipelineError::Stage {
                stage,
                message: format!("{message} (and the failure could not be recorded: {e})"),
                record: None,
            },
        }
    }

    fn summary(
        &self,
        status: Status,
        key: Digest,
        image_id: Option<String>,
        record: Option<ChainedRecord>,
        approved: Vec<String>,
    ) -> RunSummary {
        RunSummary {
            pipeline: self.recipe.name.clone(),
            status,
            build_key: key,
            image_id,
            record,
            approved,
            timings: self.timings.clone(),
            tests: None,
            pushed: None,
        }
    }
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}
