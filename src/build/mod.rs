//! Stage 4 — build: turns a [`RenderedBuild`] into an image on a Docker
//! Engine through the Engine API (classic builder), or finds that an image
//! with the same build key already exists and skips the build.
//!
//! Flow: scan the context → compute the [`BuildKey`] → skip if an image has
//! that key → report which inputs changed since the recipe's last build →
//! pull pinned parents by digest → stream the context tar into `/build` →
//! parse the stream into [`BuildEvent`]s → label, tag, record the inputs.

mod buildkit;
pub mod context;
pub mod dockerignore;
mod engine;
mod error;
pub mod key;
pub mod labels;
pub mod progress;
pub mod progress_buildkit;
mod revision;
pub mod secrets;
pub mod session;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::BuildImageOptions;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

pub use error::{BuildError, StepFailure};
pub use key::{BuildKey, ComponentInput, InputChange};
pub use progress::{BuildEvent, KilnStep};
pub use revision::git_revision;
pub use secrets::{SecretError, SecretValues};

pub use crate::load::build_settings::Builder;

/// Removes the local tag `reference` (`repo:tag`); the image goes with it
/// when no other tag or container holds it. A missing tag is not an error.
pub async fn remove_tag(docker: &Docker, recipe: &str, reference: &str) -> Result<(), BuildError> {
    engine::remove_tag(docker, reference)
        .await
        .map_err(docker_err(recipe, "remove image"))
}

use crate::digest::Digest;
use crate::load::LoadedRecipe;
use crate::reference::ImageReference;
use crate::render::RenderedBuild;

/// How long the build request may wait for the daemon's first response.
const BUILD_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);

/// What to build besides the rendered recipe. (`Debug` shows the hosts of
/// `credentials`, never the secrets.)
#[derive(Clone, Default)]
pub struct BuildRequest {
    /// Recipe name (label `dev.kiln.recipe`, state file name).
    pub recipe: String,
    /// Recipe version (label `org.opencontainers.image.version`).
    pub version: String,
    /// Target platform, e.g. `linux/amd64`; part of the key.
    pub platform: Option<String>,
    /// Components with their document digests and parameters.
    pub components: Vec<ComponentInput>,
    /// Tag to give the image (`repo:tag`), if any.
    pub tag: Option<String>,
    /// Extra labels (inputs; cannot override kiln's own).
    pub labels: BTreeMap<String, String>,
    /// Source revision for the OCI label (provenance, not an input).
    pub revision: Option<String>,
    /// Source location for the OCI label (provenance, not an input).
    pub source: Option<String>,
    /// Where the last build of each recipe is kept; `None` keeps nothing.
    pub state_dir: Option<PathBuf>,
    /// Registry credentials by registry host, for pulling parents.
    pub credentials: HashMap<String, DockerCredentials>,
    /// Build without the daemon's layer cache.
    pub no_cache: bool,
    /// Cancels the build; leftover containers are removed.
    pub cancel: CancellationToken,
    /// The builder.
    pub builder: Builder,
    /// Build secrets by id → source text (a build-key input; no values).
    pub secret_sources: BTreeMap<String, String>,
    /// The secrets' values ([`secrets::resolve`]), served to BuildKit by
    /// kiln's session; required for every id in `secret_sources`.
    pub secret_values: SecretValues,
}

impl std::fmt::Debug for BuildRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosts: Vec<&String> = self.credentials.keys().collect();
        f.debug_struct("BuildRequest")
            .field("recipe", &self.recipe)
            .field("version", &self.version)
            .field("platform", &self.platform)
            .field("components", &self.components)
            .field("tag", &self.tag)
            .field("labels", &self.labels)
            .field("credentials for", &hosts)
            .field("no_cache", &self.no_cache)
            .field("builder", &self.builder)
            .field("secrets", &self.secret_sources)
            .finish_non_exhaustive()
    }
}

impl BuildRequest {
    /// A request for `recipe` with its name, version, platform and components.
    pub fn for_recipe(recipe: &LoadedRecipe) -> Self {
        BuildRequest {
            recipe: recipe.name.clone(),
            version: recipe.version.to_string(),
            platform: Some(recipe.platform.clone()),
            components: recipe
                .components
                .iter()
                .map(|a| ComponentInput {
                    name: a.component.name.clone(),
                    document: a.component.digest.clone(),
                    parameters: a.parameters.clone(),
                })
                .collect(),
            builder: recipe.build.builder,
            secret_sources: recipe
                .build
                .secrets
                .iter()
                .map(|s| (s.id.clone(), s.source.to_string()))
                .collect(),
            ..Default::default()
        }
    }
}

/// The build context as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextInfo {
    /// sha256 of the tar.
    pub digest: Digest,
    /// Size of the tar.
    pub bytes: u64,
}

/// The result of [`build`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuiltImage {
    /// Recipe.
    pub recipe: String,
    /// Image id (`sha256:…`).
    pub image_id: String,
    /// The key and its named inputs.
    pub build_key: BuildKey,
    /// Whether an image with this key existed and nothing was built.
    pub skipped: bool,
    /// The tag given, if any.
    pub tag: Option<String>,
    /// Base images as written and as used.
    pub base_images: Vec<(ImageReference, ImageReference)>,
    /// Labels put on the image (for a skipped build: the ones it would get).
    pub labels: BTreeMap<String, String>,
    /// Inputs changed since the recipe's last recorded build (`None`: no
    /// previous build recorded).
    pub changed_inputs: Option<Vec<InputChange>>,
    /// The context tar (`None` when skipped).
    pub context: Option<ContextInfo>,
    /// Component step results.
    pub kiln_steps: Vec<KilnStep>,
    /// The full build log.
    pub log: String,
    /// Wall time.
    pub elapsed: Duration,
}

/// Containers and layers seen so far, shared with the drop guard.
type Seen = Arc<Mutex<(Vec<String>, Vec<String>)>>;

/// Removes leftover containers if the build future is dropped mid-build.
struct LeftoverGuard {
    docker: Docker,
    before: std::collections::BTreeSet<String>,
    seen: Seen,
    armed: bool,
}

impl Drop for LeftoverGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let docker = self.docker.clone();
        let before = std::mem::take(&mut self.before);
        let (reported, layers) = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
        rt.spawn(async move {
            engine::remove_leftovers(&docker, &before, &reported, &layers).await;
        });
    }
}

/// What [`prepare`] works out before anything is sent to the daemon.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The key and its named inputs.
    pub build_key: BuildKey,
    /// Every label the image gets, `created` included.
    pub labels: BTreeMap<String, String>,
    /// The Dockerfile as sent: rendered, plus one `LABEL` instruction with
    /// every label but `created` (that one varies per build, so it goes
    /// through the API and the context stays reproducible).
    pub dockerfile: String,
    /// The context as sent, Dockerfile included.
    pub manifest: context::ContextManifest,
}

/// Scans the context and computes the build key and labels (blocking IO:
/// reads every context file once).
pub fn prepare(rendered: &RenderedBuild, request: &BuildRequest) -> Result<Prepared, BuildError> {
    let manifest = context::scan(rendered).map_err(|source| BuildError::Context {
        recipe: request.recipe.clone(),
        source: Box::new(source),
    })?;
    let inputs = labels::input_labels(
        &request.recipe,
        &request.version,
        rendered.base_images.first(),
        &request.labels,
    );
    let build_key = key::build_key(&key::KeyInputs {
        dockerfile: &rendered.dockerfile,
        base_images: &rendered.base_images,
        context: &manifest,
        components: &request.components,
        build_args: &rendered.build_args,
        target: rendered.target.as_deref(),
        platform: request.platform.as_deref(),
        labels: &inputs,
        builder: request.builder,
        secrets: &request.secret_sources,
    });
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let all = labels::all_labels(
        &inputs,
        &build_key.digest.to_string(),
        &created,
        request.revision.as_deref(),
        request.source.as_deref(),
    );
    let mut stable = all.clone();
    stable.remove(labels::CREATED);
    let dockerfile =
        labels::with_label_instruction(&rendered.dockerfile, rendered.target.as_deref(), &stable);
    Ok(Prepared {
        build_key,
        labels: all,
        manifest: manifest.with_dockerfile(&dockerfile),
        dockerfile,
    })
}

/// Builds `rendered` on `docker`, or skips the build when an image with the
/// same key exists. `events` receives progress as it happens.
pub async fn build(
    docker: &Docker,
    rendered: &RenderedBuild,
    request: &BuildRequest,
    events: &mut (dyn FnMut(BuildEvent) + Send),
) -> Result<BuiltImage, BuildError> {
    let prepared = {
        let (r, q) = (rendered.clone(), request.clone());
        tokio::task::spawn_blocking(move || prepare(&r, &q))
            .await
            .expect("context scan does not panic")?
    };
    build_prepared(docker, rendered, request, prepared, events).await
}

/// [`build`] with the context already scanned and the key computed by
/// [`prepare`] (the pipeline computes the key first, to skip up-to-date
/// runs, and must not scan the context twice).
pub async fn build_prepared(
    docker: &Docker,
    rendered: &RenderedBuild,
    request: &BuildRequest,
    prepared: Prepared,
    events: &mut (dyn FnMut(BuildEvent) + Send),
) -> Result<BuiltImage, BuildError> {
    // Secret values a step prints never leave the build unmasked.
    let masker = request.secret_values.masker();
    let mut masked = |e: BuildEvent| events(masker.event(e));
    let built = build_unmasked(docker, rendered, request, prepared, &mut masked).await;
    match built {
        Ok(mut out) => {
            out.log = masker.mask(&out.log);
            Ok(out)
        }
        Err(e) => Err(masker.error(e)),
    }
}

async fn build_unmasked(
    docker: &Docker,
    rendered: &RenderedBuild,
    request: &BuildRequest,
    prepared: Prepared,
    events: &mut (dyn FnMut(BuildEvent) + Send),
) -> Result<BuiltImage, BuildError> {
    let started = Instant::now();
    let Prepared {
        build_key,
        labels: all_labels,
        dockerfile: _,
        manifest,
    } = prepared;
    let last = request
        .state_dir
        .as_deref()
        .and_then(|d| state::read(d, &request.recipe));
    let changed_inputs = last.as_ref().map(|l| build_key.changes_since(&l.inputs));
    let mut out = BuiltImage {
        recipe: request.recipe.clone(),
        image_id: String::new(),
        build_key,
        skipped: false,
        tag: request.tag.clone(),
        base_images: rendered.base_images.clone(),
        labels: all_labels,
        changed_inputs,
        context: None,
        kiln_steps: Vec::new(),
        log: String::new(),
        elapsed: Duration::ZERO,
    };
    if let Some(found) = existing_image(docker, request, last.as_ref(), &out).await? {
        reuse(docker, request, found, last.as_ref(), &mut out, events).await?;
        out.elapsed = started.elapsed();
        return Ok(out);
    }
    if let Some(changes) = &out.changed_inputs {
        events(BuildEvent::InputsChanged {
            changes: changes.iter().map(ToString::to_string).collect(),
        });
    }
    pull_parents(docker, rendered, request, events).await?;
    match request.builder {
        Builder::Classic => {
            run_build(docker, rendered, request, manifest, &mut out, events).await?
        }
        Builder::Buildkit => {
            buildkit::run(docker, rendered, request, manifest, &mut out, events).await?
        }
    }
    platform_check(docker, request, &out).await?;
    record(request, &out);
    out.elapsed = started.elapsed();
    Ok(out)
}

/// Maps a Docker API error of `operation` to [`BuildError::Docker`].
fn docker_err(
    recipe: &str,
    operation: &'static str,
) -> impl FnOnce(bollard::errors::Error) -> BuildError {
    let recipe = recipe.to_string();
    move |source| BuildError::Docker {
        recipe,
        operation,
        source,
    }
}

/// An image labelled with this build key (`id`, its tags): the last build's
/// image when it still has the key, else any image with it. `no_cache`
/// asks for a fresh build: no existing image is reused.
async fn existing_image(
    docker: &Docker,
    request: &BuildRequest,
    last: Option<&state::LastBuild>,
    out: &BuiltImage,
) -> Result<Option<(String, Vec<String>)>, BuildError> {
    if request.no_cache {
        return Ok(None);
    }
    let key_text = out.build_key.digest.to_string();
    let last_image = last.filter(|l| l.build_key == out.build_key.digest);
    if let Some(l) = last_image
        && let Some(hit) = engine::check_key(docker, &l.image_id, &key_text).await
    {
        return Ok(Some(hit));
    }
    engine::find_by_key(docker, &key_text)
        .await
        .map_err(docker_err(&request.recipe, "list images"))
}

/// Skips the build: tags the existing image and records it as the last
/// build when it was not already.
async fn reuse(
    docker: &Docker,
    request: &BuildRequest,
    (id, tags): (String, Vec<String>),
    last: Option<&state::LastBuild>,
    out: &mut BuiltImage,
    events: &mut (dyn FnMut(BuildEvent) + Send),
) -> Result<(), BuildError> {
    events(BuildEvent::Skipped {
        image_id: id.clone(),
        build_key: out.build_key.digest.to_string(),
    });
    if let Some(t) = request.tag.as_ref().filter(|t| !tags.contains(t)) {
        engine::tag(docker, &id, t)
            .await
            .map_err(docker_err(&request.recipe, "tag"))?;
    }
    out.image_id = id;
    out.skipped = true;
    out.changed_inputs = Some(Vec::new());
    if last.map(|l| &l.build_key) != Some(&out.build_key.digest) {
        record(request, out);
    }
    Ok(())
}

/// Pulls the pinned parents the engine lacks, with the request's
/// credentials for their registries.
async fn pull_parents(
    docker: &Docker,
    rendered: &RenderedBuild,
    request: &BuildRequest,
    events: &mut (dyn FnMut(BuildEvent) + Send),
) -> Result<(), BuildError> {
    for (_, used) in &rendered.base_images {
        let reference = used.to_string();
        if engine::has_image(docker, &reference).await {
            continue;
        }
        events(BuildEvent::Pulling {
            image: reference.clone(),
        });
        let creds = request.credentials.get(&used.registry).cloned();
        engine::ensure_image(docker, &reference, request.platform.as_deref(), creds)
            .await
            .map_err(|source| BuildError::Pull {
                recipe: request.recipe.clone(),
                image: reference.clone(),
                source,
            })?;
    }
    Ok(())
}

/// How the `/build` stream ended.
enum StreamEnd {
    Done,
    Cancelled,
    Failed(BuildError),
}

/// Streams the context into `POST /build` and fills `out` with the image,
/// the context digest, the component steps and the log. A failed or
/// cancelled build leaves no container behind.
async fn run_build(
    docker: &Docker,
    rendered: &RenderedBuild,
    request: &BuildRequest,
    manifest: context::ContextManifest,
    out: &mut BuiltImage,
    events: &mut (dyn FnMut(BuildEvent) + Send),
) -> Result<(), BuildError> {
    let recipe = &request.recipe;
    let before = engine::container_ids(docker)
        .await
        .map_err(docker_err(recipe, "list containers"))?;
    let seen: Seen = Arc::default();
    let mut guard = LeftoverGuard {
        docker: docker.clone(),
        before,
        seen: seen.clone(),
        armed: true,
    };
    let created_label = out.labels.get_key_value(labels::CREATED);
    let created_label = created_label.map(|(k, v)| (k.clone(), v.clone()));
    let (body, tar_task) = context::stream(manifest);
    let options = BuildImageOptions {
        dockerfile: context::DOCKERFILE_PATH.to_string(),
        t: request.tag.clone(),
        rm: true,
        forcerm: true,
        nocache: request.no_cache,
        buildargs: Some(rendered.build_args.clone().into_iter().collect()),
        labels: Some(created_label.into_iter().collect()),
        target: rendered.target.clone().unwrap_or_default(),
        platform: request.platform.clone().unwrap_or_default(),
        ..Default::default()
    };
    let long = docker.clone().with_timeout(BUILD_REQUEST_TIMEOUT);
    let mut parser = progress::ProgressParser::new();
    let stream = long.build_image(options, None, Some(bollard::body_try_stream(body)));
    let (end, aux_id) = follow(stream, request, &mut parser, &seen, events).await;
    guard.armed = false;
    if !matches!(end, StreamEnd::Done) {
        let (reported, layers) = (parser.containers.clone(), parser.layers.clone());
        engine::remove_leftovers(docker, &guard.before, &reported, &layers).await;
        tar_task.abort();
    }
    match end {
        StreamEnd::Done => {}
        StreamEnd::Cancelled => {
            let recipe = recipe.clone();
            return Err(BuildError::Cancelled { recipe });
        }
        StreamEnd::Failed(e) => return Err(e),
    }
    parser.finish().into_iter().for_each(&mut *events);
    let image = aux_id.or_else(|| parser.image_id.clone());
    let kiln_steps = std::mem::take(&mut parser.kiln_steps);
    finish(docker, recipe, tar_task, image, out).await?;
    out.kiln_steps = kiln_steps;
    out.log = parser.into_log();
    Ok(())
}

/// After a successful build stream: waits for the context digest and
/// fills `out` with the full image id and the context.
async fn finish(
    docker: &Docker,
    recipe: &str,
    tar_task: context::TarTask,
    image: Option<String>,
    out: &mut BuiltImage,
) -> Result<(), BuildError> {
    let (digest, bytes) = tar_task
        .await
        .expect("tar writer does not panic")
        .map_err(|source| BuildError::Context {
            recipe: recipe.to_string(),
            source: Box::new(source),
        })?;
    let short = image.ok_or_else(|| BuildError::NoImage {
        recipe: recipe.to_string(),
    })?;
    let inspect = docker
        .inspect_image(&short)
        .await
        .map_err(docker_err(recipe, "inspect image"))?;
    out.image_id = inspect.id.unwrap_or(short);
    out.context = Some(ContextInfo { digest, bytes });
    Ok(())
}

/// Feeds the `/build` stream to `parser` until it ends, fails or the
/// request is cancelled; also returns the image id the engine reported.
async fn follow(
    mut stream: impl futures_util::Stream<
        Item = Result<bollard::models::BuildInfo, bollard::errors::Error>,
    > + Unpin,
    request: &BuildRequest,
    parser: &mut progress::ProgressParser,
    seen: &Seen,
    events: &mut (dyn FnMut(BuildEvent) + Send),
) -> (StreamEnd, Option<String>) {
    let mut aux_id = None;
    loop {
        let item = tokio::select! {
            _ = request.cancel.cancelled() => return (StreamEnd::Cancelled, aux_id),
            item = stream.next() => item,
        };
        let Some(item) = item else {
            return (StreamEnd::Done, aux_id);
        };
        match item {
            Ok(info) => {
                if let Some(text) = &info.stream {
                    parser.feed(text).into_iter().for_each(&mut *events);
                    if let Ok(mut s) = seen.lock() {
                        *s = (parser.containers.clone(), parser.layers.clone());
                    }
                }
                if let Some(bollard::models::BuildInfoAux::Default(img)) = &info.aux {
                    aux_id = img.id.clone();
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                parser.finish().into_iter().for_each(&mut *events);
                events(parser.error(&error));
                let exec_format = std::iter::once(&error)
                    .chain(parser.current.tail.iter())
                    .any(|l| l.contains("exec format error"));
                let failure = match request.platform.clone() {
                    Some(platform) if exec_format => BuildError::UnsupportedPlatform {
                        recipe: request.recipe.clone(),
                        platform,
                        message: error,
                    },
                    _ => step_failure(&request.recipe, parser, error),
                };
                return (StreamEnd::Failed(failure), aux_id);
            }
            Err(source) => {
                let failure = docker_err(&request.recipe, "build")(source);
                return (StreamEnd::Failed(failure), aux_id);
            }
        }
    }
}

/// Refuses an image whose platform is not the one asked for (an engine
/// may fall back to its own), removing it: nothing of another platform is
/// tagged or recorded as this one.
async fn platform_check(
    docker: &Docker,
    request: &BuildRequest,
    out: &BuiltImage,
) -> Result<(), BuildError> {
    let Some(wanted) = request.platform.as_deref() else {
        return Ok(());
    };
    let inspect = docker
        .inspect_image(&out.image_id)
        .await
        .map_err(docker_err(&request.recipe, "inspect image"))?;
    let got = format!(
        "{}/{}",
        inspect.os.as_deref().unwrap_or("?"),
        inspect.architecture.as_deref().unwrap_or("?")
    );
    let wanted_base: String = wanted.splitn(3, '/').take(2).collect::<Vec<_>>().join("/");
    if got == wanted_base {
        return Ok(());
    }
    engine::remove_image(docker, &out.image_id).await;
    Err(BuildError::WrongPlatform {
        recipe: request.recipe.clone(),
        wanted: wanted.to_string(),
        got,
    })
}

fn step_failure(recipe: &str, parser: &progress::ProgressParser, message: String) -> BuildError {
    let cur = &parser.current;
    if cur.number == 0 {
        return BuildError::Refused {
            recipe: recipe.to_string(),
            message,
        };
    }
    BuildError::StepFailed(Box::new(error::StepFailure {
        recipe: recipe.to_string(),
        stage: cur.stage,
        stage_name: cur.stage_name.clone(),
        step: cur.number,
        total: cur.total,
        instruction: cur.instruction.clone(),
        exit_code: progress::exit_code(&message),
        message,
        last_lines: cur.tail.iter().cloned().collect(),
    }))
}

fn record(request: &BuildRequest, out: &BuiltImage) {
    let Some(dir) = &request.state_dir else {
        return;
    };
    let last = state::LastBuild {
        recipe: out.recipe.clone(),
        build_key: out.build_key.digest.clone(),
        image_id: out.image_id.clone(),
        inputs: out.build_key.inputs.clone(),
    };
    if let Err(e) = state::write(dir, &last) {
        tracing::warn!(
            "cannot record the build of `{}` in `{}`: {e}",
            out.recipe,
            dir.display()
        );
    }
}
