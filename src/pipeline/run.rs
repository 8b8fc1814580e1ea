//! [`Pipeline::run`]: one recipe, end to end. A failure at any stage after
//! loading is recorded as a failed record; only a run whose tests passed and
//! whose pushes were verified is recorded as passed.

use std::time::{Duration, Instant};

use bollard::Docker;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::error::{PipelineError, StageError, chain};
use super::events::{EventSink, PipelineEvent, Stage};
use super::record_of::{self, Outputs};
use super::{guard, pins};
use crate::build::{self, BuildError, BuildRequest, BuiltImage, Prepared};
use crate::diagnostic::Diagnostics;
use crate::digest::Digest;
use crate::distribute::{self, PushOptions, PushRequest, PushedImage};
use crate::load::{self, LoadedRecipe};
use crate::project::Project;
use crate::record::{self, Allocation, ChainKeys, ChainedRecord, Failure, Fence, Records, Status};
use crate::registry::{LookupScope, RegistryClient};
use crate::render::{self, Pins, RenderedBuild};
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
    /// The operator's policy, findings gate and test-container allowances.
    pub governance: std::sync::Arc<crate::operator::Governance>,
    /// The record store (`--state`; default the project's SQLite file).
    /// The pipeline signs and checks with its own [`Pipeline::chain_keys`],
    /// whatever keys this handle has.
    pub records: Records,
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
    /// A branch pipeline run: tags get the branch's suffix, the record
    /// names the branch (never approvable), the up-to-date check looks at
    /// this branch's records only.
    pub branch: Option<crate::branch::BranchName>,
    /// A cluster run's claim: every record write of the run (build number,
    /// records, the journal's leftover) checks it first and fails with
    /// `RecordError::Fenced` once the claim is lost (PostgreSQL; see
    /// [`Records::fenced`]). `None`: unfenced, as `kiln run` is.
    pub fence: Option<Fence>,
    /// The daemon's run id (`None` for `kiln run`): the run's test
    /// containers are labelled with it (`test_phase::LABEL_DAEMON_RUN`) so a
    /// restarted daemon removes them once it knows the run is dead.
    pub daemon_run: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            update_parents: false,
            no_cache: false,
            cancel: CancellationToken::new(),
            events: super::events::discard(),
            lookups: None,
            branch: None,
            fence: None,
            daemon_run: None,
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
    /// The pipeline's records, with its keys, fenced by `opts.fence`.
    records: Records,
    recipe: LoadedRecipe,
    ignores: crate::findings::ignore::IgnoreFile,
    outputs: Outputs,
    timings: Vec<(Stage, Duration)>,
    started_at: chrono::DateTime<Utc>,
    stage_start: Instant,
}

impl Pipeline {
    /// The record store with this pipeline's keys, fenced by `fence` when
    /// there is one.
    pub fn records(&self, fence: Option<&Fence>) -> Records {
        self.records.with_keys(self.chain_keys()).fenced_by(fence)
    }

    /// Approvals and promotions against this pipeline's records and
    /// registries, signed with the same key as the records.
    pub fn approvals(&self) -> super::Approvals {
        super::Approvals {
            records: self.records(None),
            registry: self.registry.clone(),
        }
    }

    /// The keys records are signed and checked with: the operator's signing
    /// key, or none (records unsigned).
    pub fn chain_keys(&self) -> ChainKeys {
        self.signing
            .clone()
            .map_or_else(ChainKeys::default, ChainKeys::signing)
    }

    /// Runs `recipe` (a name or path): resolve → render → build (skipped when
    /// a passing record has the same build key) → test → distribute → record.
    pub async fn run(&self, recipe: &str, opts: &RunOptions) -> Result<RunSummary, PipelineError> {
        let emit = |e| (opts.events)(e);
        let t = Instant::now();
        emit(PipelineEvent::StageStarted(Stage::Load));
        let mut loaded = load::load_recipe(&self.project, recipe)?;
        let policy = &self.governance.policy;
        let violations =
            crate::operator::policy_check::check_recipe(policy, &self.project, &loaded);
        if !violations.0.is_empty() {
            return Err(PipelineError::Policy(violations));
        }
        // `requireApproval`: every build waits at the approval gate.
        loaded.distribute.approval_required |= policy.require_approval;
        let ignores = crate::findings::ignore::IgnoreFile::load(&self.project)?;
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
        let records = self.records(opts.fence.as_ref());
        let _lock = guard::enter(self.project.root(), &loaded.name, opts, &records).await?;
        let run = Run {
            pipeline: self,
            opts,
            records,
            recipe: loaded,
            ignores,
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
            return Err(self.fail(stage, StageError::Cancelled).await);
        }
        self.begin(stage);
        Ok(())
    }

    /// The sign stage, when a key is configured and something was pushed:
    /// every verified OCI target's digest gets a cosign signature and the
    /// provenance and SBOM attestations.
    async fn sign(
        &mut self,
        image_id: &str,
        allocation: Allocation,
    ) -> Result<Allocation, PipelineError> {
        let (Some(key), Some(pushed)) = (&self.pipeline.signing, &self.outputs.pushed) else {
            return Ok(allocation);
        };
        let (key, pushed) = (key.clone(), pushed.clone());
        self.start(Stage::Sign).await?;
        let predicates = match self.predicates(image_id, &allocation).await {
            Ok(p) => p,
            Err(error) => return Err(self.fail_allocated(Stage::Sign, error, allocation).await),
        };
        let build = u64::from(allocation.build.build.0);
        let (name, version) = (self.recipe.name.clone(), self.recipe.version.to_string());
        let registry = &self.pipeline.registry;
        let who = (name.as_str(), version.as_str(), build);
        match super::sign_stage::sign_pushed(registry, &key, &pushed, who, &predicates).await {
            Ok(out) => {
                self.outputs.signatures = out.signatures;
                self.outputs.attestations = out.attestations;
                self.finish(Stage::Sign, out.note);
                Ok(allocation)
            }
            Err(e) => {
                let error = StageError::Sign(Box::new(e));
                Err(self.fail_allocated(Stage::Sign, error, allocation).await)
            }
        }
    }

    /// The attestations' predicates: the SLSA provenance of the record this
    /// run is about to append, and the CycloneDX SBOM of the built image.
    async fn predicates(
        &self,
        image_id: &str,
        allocation: &Allocation,
    ) -> Result<super::sign_stage::Predicates, StageError> {
        let rec = record_of::record(
            &self.recipe,
            allocation,
            Status::Passed,
            &self.outputs,
            None,
            self.started_at,
        );
        let provenance = record::provenance::statement(&rec)?;
        let sbom = crate::sbom::generate(&self.pipeline.docker, image_id)
            .await
            .map_err(|e| StageError::Sbom(Box::new(e)))?;
        let name = format!("{}:{}", self.recipe.name, rec.build_id());
        Ok(super::sign_stage::Predicates {
            list: vec![
                (
                    record::provenance::PREDICATE_TYPE.to_string(),
                    serde_json::to_value(provenance.predicate).expect("provenance serialises"),
                ),
                (
                    crate::sbom::cyclonedx::PREDICATE_TYPE.to_string(),
                    sbom.cyclonedx(&name),
                ),
            ],
        })
    }

    fn begin(&mut self, stage: Stage) {
        self.stage_start = Instant::now();
        self.emit(PipelineEvent::StageStarted(stage));
    }

    /// Records how long `stage` took so far.
    fn time(&mut self, stage: Stage) -> Duration {
        let elapsed = self.stage_start.elapsed();
        self.timings.push((stage, elapsed));
        self.outputs
            .timings_ms
            .insert(stage.as_str().to_string(), elapsed.as_millis() as u64);
        elapsed
    }

    fn finish(&mut self, stage: Stage, note: String) {
        let elapsed = self.time(stage);
        self.emit(PipelineEvent::StageFinished {
            stage,
            elapsed,
            note,
        });
    }

    /// The value, or the error recorded as `stage`'s failure.
    async fn or_fail<T>(
        &mut self,
        stage: Stage,
        r: Result<T, impl Into<StageError>>,
    ) -> Result<T, PipelineError> {
        match r {
            Ok(v) => Ok(v),
            Err(e) => Err(self.fail(stage, e.into()).await),
        }
    }

    /// Records the failure (allocating a build number for it) and returns
    /// the error.
    async fn fail(&mut self, stage: Stage, error: StageError) -> PipelineError {
        let (name, version) = (&self.recipe.name, &self.recipe.version);
        match self.records.allocate(name, version).await {
            Ok(a) => self.fail_allocated(stage, error, a).await,
            Err(e) => PipelineError::Unrecorded {
                stage,
                failure: Box::new(error),
                source: Box::new(StageError::Store(e)),
            },
        }
    }

    async fn fail_allocated(
        &mut self,
        stage: Stage,
        error: StageError,
        allocation: Allocation,
    ) -> PipelineError {
        let status = if self.opts.cancel.is_cancelled() {
            Status::Cancelled
        } else {
            Status::Failed
        };
        let failure = Failure {
            stage: stage.as_str().to_string(),
            message: chain(&error),
        };
        match self.append(status, Some(failure), allocation).await {
            Ok(_) if status == Status::Cancelled => PipelineError::Cancelled { stage },
            Ok(r) => PipelineError::Stage {
                stage,
                source: error,
                record: Some(Box::new(r)),
            },
            Err(e) => PipelineError::Unrecorded {
                stage,
                failure: Box::new(error),
                source: Box::new(e),
            },
        }
    }

    async fn append(
        &self,
        status: Status,
        failure: Option<Failure>,
        allocation: Allocation,
    ) -> Result<ChainedRecord, StageError> {
        let rec = record_of::record(
            &self.recipe,
            &allocation,
            status,
            &self.outputs,
            failure,
            self.started_at,
        );
        let appended = self.records.append(&rec).await?;
        guard::clear(self.pipeline.project.root(), &self.recipe.name);
        Ok(appended)
    }

    /// The stages after load, in order; each step records its own failure.
    async fn go(mut self) -> Result<RunSummary, PipelineError> {
        self.outputs.branch = self.opts.branch.as_ref().map(|b| b.to_string());
        let pins = self.resolve().await?;
        let (rendered, request, prepared) = self.render(&pins).await?;
        let key = prepared.build_key.digest.clone();
        if let Some(approved) = self.up_to_date(&key).await? {
            return Ok(self.summary(Status::UpToDate, key, None, None, approved));
        }
        let built = self.build(&rendered, request, prepared, &key).await?;
        self.test(&rendered, &built.image_id).await?;
        self.gate(&built.image_id).await?;
        let allocation = self.distribute(&built.image_id).await?;
        let allocation = self.sign(&built.image_id, allocation).await?;
        self.record(key, built.image_id, allocation).await
    }

    /// Pins the parents (the lock, or HEAD-first lookups for the daemon).
    async fn resolve(&mut self) -> Result<Pins, PipelineError> {
        self.start(Stage::Resolve).await?;
        let (registry, project) = (&self.pipeline.registry, &self.pipeline.project);
        let resolved = match &self.opts.lookups {
            Some(scope) => pins::refresh_lock(registry, project, &self.recipe, scope).await,
            None => pins::ensure(registry, project, &self.recipe, self.opts.update_parents).await,
        };
        let (pins, parents) = self.or_fail(Stage::Resolve, resolved).await?;
        let note = parents
            .iter()
            .map(|p| p.pinned.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        self.outputs.parents = parents;
        self.finish(Stage::Resolve, note);
        Ok(pins)
    }

    /// Renders, scans the context and computes the build key.
    async fn render(
        &mut self,
        pins: &Pins,
    ) -> Result<(RenderedBuild, BuildRequest, Prepared), PipelineError> {
        self.start(Stage::Render).await?;
        let mut rendered = render::render(&self.recipe, pins);
        if let Err(e) = crate::s3::fetch_objects(&mut rendered).await {
            return Err(self.fail(Stage::Render, StageError::S3(Box::new(e))).await);
        }
        let mut request = BuildRequest::for_recipe(&self.recipe);
        request.state_dir = Some(record::state_dir(self.pipeline.project.root()));
        request.tag = Some(format!("kiln/{}:{}", self.recipe.name, self.recipe.version));
        request.no_cache = self.opts.no_cache;
        request.cancel = self.opts.cancel.child_token();
        let (r, q) = (rendered.clone(), request.clone());
        let prepared = tokio::task::spawn_blocking(move || build::prepare(&r, &q))
            .await
            .map_err(|source| StageError::Task {
                what: "preparing the build context",
                source,
            })
            .and_then(|p| p.map_err(StageError::from));
        let prepared = self.or_fail(Stage::Render, prepared).await?;
        let key = &prepared.build_key.digest;
        self.outputs.build_key = Some(key.clone());
        self.finish(Stage::Render, format!("build key {}", key.short()));
        Ok((rendered, request, prepared))
    }

    /// When an approved record — or one still awaiting approval — has the
    /// same key and the same test and distribute settings: its approved
    /// references (none while it awaits approval).
    /// On a branch: a passed record of that branch with the same key (never
    /// approved, so no references).
    async fn up_to_date(&mut self, key: &Digest) -> Result<Option<Vec<String>>, PipelineError> {
        let (name, records) = (&self.recipe.name, &self.records);
        let found = match &self.outputs.branch {
            Some(b) => records
                .latest_passing_on_branch(name, key, b)
                .await
                .map(|found| found.map(|rec| (rec, None))),
            None => records.latest_with_key(name, key).await,
        }
        .map_err(|e| StageError::StoreRead(Box::new(StageError::Store(e))));
        let found = self.or_fail(Stage::Record, found).await?;
        Ok(found
            .filter(|(rec, _)| record_of::same_run_inputs(&rec.record, &self.recipe))
            .map(|(_, approved)| approved.map(|a| a.references).unwrap_or_default()))
    }

    /// Builds the prepared context (the one scanned for the key).
    async fn build(
        &mut self,
        rendered: &RenderedBuild,
        mut request: BuildRequest,
        prepared: Prepared,
        key: &Digest,
    ) -> Result<BuiltImage, PipelineError> {
        self.start(Stage::Build).await?;
        let credentials = super::pull_credentials(&self.pipeline.registry, rendered).await;
        request.credentials = self.or_fail(Stage::Build, credentials).await?;
        let secrets = build::secrets::resolve(&self.pipeline.project, &self.recipe.build.secrets)
            .await
            .map_err(BuildError::from);
        request.secret_values = self.or_fail(Stage::Build, secrets).await?;
        let events = self.opts.events.clone();
        let built = build::build_prepared(
            &self.pipeline.docker,
            rendered,
            &request,
            prepared,
            &mut |e| events(PipelineEvent::Build(e)),
        )
        .await;
        if let Err(BuildError::Cancelled { .. }) = built {
            self.opts.cancel.cancel();
            return Err(self.fail(Stage::Build, StageError::Cancelled).await);
        }
        let built = self.or_fail(Stage::Build, built).await?;
        let note = if built.skipped {
            let id = short_id(&built.image_id);
            format!("image {id} exists (key {})", key.short())
        } else {
            format!("image {}", short_id(&built.image_id))
        };
        self.finish(Stage::Build, note);
        Ok(built)
    }

    /// Runs the recipe's tests; a failed check fails the run.
    async fn test(&mut self, rendered: &RenderedBuild, image: &str) -> Result<(), PipelineError> {
        self.start(Stage::Test).await?;
        let allow = self.pipeline.governance.test_containers;
        let input = test_phase::TestInput::under(&self.recipe, rendered, image, allow)
            .map_err(Diagnostics::from);
        let mut input = self.or_fail(Stage::Test, input).await?;
        input.daemon_run = self.opts.daemon_run.clone();
        let cancel = self.opts.cancel.clone();
        let report = test_phase::test_image_until(&self.pipeline.docker, &input, async move {
            cancel.cancelled().await
        })
        .await;
        let report = self.or_fail(Stage::Test, report).await?;
        for c in &report.checks {
            self.emit(PipelineEvent::Check {
                name: c.name.clone(),
                passed: c.passed || c.skipped,
                detail: c.detail.clone(),
            });
        }
        let passed = report.checks.iter().filter(|c| c.passed).count();
        let total = report.checks.len();
        let ok = report.passed;
        self.outputs.tests = Some(report);
        if !ok {
            // Timed, but not reported as finished: the failure ends it.
            self.time(Stage::Test);
            let error = StageError::TestsFailed { passed, total };
            return Err(self.fail(Stage::Test, error).await);
        }
        self.finish(Stage::Test, format!("{passed} of {total} checks passed"));
        Ok(())
    }

    /// The policy on the built image, then the findings gate; the report
    /// goes into the record whether it passes or blocks.
    async fn gate(&mut self, image: &str) -> Result<(), PipelineError> {
        self.start(Stage::Gate).await?;
        let (docker, governance) = (&self.pipeline.docker, &self.pipeline.governance);
        let (report, verdict) = super::gate::check(docker, image, governance, &self.ignores).await;
        self.outputs.findings = report;
        let note = self.or_fail(Stage::Gate, verdict).await?;
        self.finish(Stage::Gate, note);
        Ok(())
    }

    /// Allocates the build number and pushes to every target (journalled
    /// first, so a killed run's tags are found by the next run).
    async fn distribute(&mut self, image: &str) -> Result<Allocation, PipelineError> {
        self.start(Stage::Distribute).await?;
        let (name, version) = (&self.recipe.name, &self.recipe.version);
        let allocation = self.records.allocate(name, version).await;
        let allocation = self.or_fail(Stage::Distribute, allocation).await?;
        if self.recipe.distribute.targets.is_empty() {
            self.finish(Stage::Distribute, "no targets".into());
            return Ok(allocation);
        }
        let req = self.push_request(image, &allocation);
        let root = self.pipeline.project.root();
        let journal = guard::journal(
            root,
            &self.recipe,
            &allocation,
            &self.outputs,
            &req,
            self.started_at,
        );
        if let Err(e) = journal {
            let error = StageError::Journal(e);
            return Err(self
                .fail_allocated(Stage::Distribute, error, allocation)
                .await);
        }
        let events = self.opts.events.clone();
        let on_event = move |e: &distribute::PushEvent| events(PipelineEvent::Push(e.clone()));
        let (docker, registry) = (&self.pipeline.docker, &self.pipeline.registry);
        let pushed = tokio::select! {
            r = distribute::distribute(docker, registry, &req, &on_event) => Some(r),
            _ = self.opts.cancel.cancelled() => None,
        };
        let error = match pushed {
            None => StageError::PushCancelled {
                tags: guard::tags_may_exist(&req),
            },
            Some(Err(e)) => e.into(),
            Some(Ok(p)) => match self.verified(p) {
                Ok(note) => {
                    self.finish(Stage::Distribute, note);
                    return Ok(allocation);
                }
                Err(e) => e,
            },
        };
        Err(self
            .fail_allocated(Stage::Distribute, error, allocation)
            .await)
    }

    fn push_request(&self, image: &str, allocation: &Allocation) -> PushRequest {
        let mut distribute = self.recipe.distribute.clone();
        if let Some(branch) = &self.opts.branch {
            if distribute.tags.is_empty() {
                distribute
                    .tags
                    .push(distribute::DEFAULT_TAG_TEMPLATE.to_string());
            }
            let suffix = branch.tag_suffix();
            distribute.tags.iter_mut().for_each(|t| t.push_str(&suffix));
        }
        PushRequest {
            image: image.to_string(),
            name: self.recipe.name.clone(),
            version: self.recipe.version.clone(),
            build: u64::from(allocation.build.build.0),
            distribute,
            parent: self.outputs.parents.first().map(|p| p.pinned.clone()),
            state_dir: Some(record::state_dir(self.pipeline.project.root())),
            options: PushOptions::default(),
        }
    }

    /// Keeps the pushes in the outputs; the stage note when every target
    /// reported the digest that was pushed.
    fn verified(&mut self, p: PushedImage) -> Result<String, StageError> {
        let unverified: Vec<String> = p
            .targets
            .iter()
            .filter(|t| !t.verified)
            .map(|t| format!("{}/{}", t.registry_host, t.repository))
            .collect();
        let note = p
            .targets
            .iter()
            .map(|t| format!("{}/{}@{}", t.registry_host, t.repository, t.manifest_digest))
            .collect::<Vec<_>>()
            .join(", ");
        self.outputs.pushed = Some(p);
        if unverified.is_empty() {
            Ok(note)
        } else {
            Err(StageError::Unverified {
                targets: unverified,
            })
        }
    }

    /// Appends the passing record: once the pushes are verified it is
    /// always written, cancelled or not.
    async fn record(
        mut self,
        key: Digest,
        image: String,
        allocation: Allocation,
    ) -> Result<RunSummary, PipelineError> {
        self.begin(Stage::Record);
        let t = Instant::now();
        self.outputs.timings_ms.insert("record".into(), 0);
        // A branch build is never approved, so it never waits for it.
        let status = if self.recipe.distribute.approval_required && self.outputs.branch.is_none() {
            Status::AwaitingApproval
        } else {
            Status::Passed
        };
        let rec = self
            .append(status, None, allocation)
            .await
            .map_err(|source| PipelineError::Stage {
                stage: Stage::Record,
                source,
                record: None,
            })?;
        let approved = if rec.record.is_approvable() {
            let targets = rec.record.targets.iter();
            targets.map(|t| t.pinned_reference()).collect()
        } else {
            Vec::new()
        };
        self.timings.push((Stage::Record, t.elapsed()));
        self.emit(PipelineEvent::StageFinished {
            stage: Stage::Record,
            elapsed: t.elapsed(),
            note: rec.record.build_id().to_string(),
        });
        let mut s = self.summary(status, key, Some(image), Some(rec), approved);
        s.tests = self.outputs.tests.take();
        s.pushed = self.outputs.pushed.take();
        Ok(s)
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
