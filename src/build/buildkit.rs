//! The BuildKit path of the build stage: opens kiln's session
//! ([`super::session`]), streams the context into `POST /build?version=2`,
//! and turns BuildKit's status stream into [`BuildEvent`]s
//! ([`super::progress_buildkit`]). BuildKit runs its steps outside Docker's
//! container list, so a failed or cancelled build leaves no container; a
//! dropped request cancels the solve on the engine, and nothing is tagged
//! unless the build succeeded.

use bollard::Docker;
use bollard::models::BuildInfoAux;
use bollard::query_parameters::{BuildImageOptions, BuilderVersion};
use futures_util::StreamExt;

use super::progress_buildkit::BuildkitProgress;
use super::session::{self, SessionData};
use super::{
    BUILD_REQUEST_TIMEOUT, BuildError, BuildEvent, BuildRequest, BuiltImage, context, docker_err,
    labels,
};
use crate::render::RenderedBuild;

/// Builds with BuildKit and fills `out` like the classic path does.
pub(super) async fn run(
    docker: &Docker,
    rendered: &RenderedBuild,
    request: &BuildRequest,
    manifest: context::ContextManifest,
    out: &mut BuiltImage,
    events: &mut (dyn FnMut(BuildEvent) + Send),
) -> Result<(), BuildError> {
    let recipe = &request.recipe;
    let session_err = |source| BuildError::Session {
        recipe: recipe.clone(),
        source,
    };
    let endpoint = crate::docker::Endpoint::from_env()
        .map_err(|e| session_err(session::SessionError::Endpoint(e)))?;
    let id = session::new_id();
    let data = SessionData {
        credentials: request.credentials.clone(),
        secrets: request.secret_values.0.clone(),
    };
    let _session = session::open(&endpoint, &id, data)
        .await
        .map_err(session_err)?;
    let created = out.labels.get_key_value(labels::CREATED);
    let created = created.map(|(k, v)| (k.clone(), v.clone()));
    let (body, tar_task) = context::stream(manifest);
    let options = BuildImageOptions {
        dockerfile: context::DOCKERFILE_PATH.to_string(),
        t: request.tag.clone(),
        nocache: request.no_cache,
        buildargs: Some(rendered.build_args.clone().into_iter().collect()),
        labels: Some(created.into_iter().collect()),
        target: rendered.target.clone().unwrap_or_default(),
        platform: request.platform.clone().unwrap_or_default(),
        version: BuilderVersion::BuilderBuildKit,
        session: Some(id),
        ..Default::default()
    };
    let long = docker.clone().with_timeout(BUILD_REQUEST_TIMEOUT);
    let mut parser = BuildkitProgress::new(stage_names(&rendered.dockerfile));
    let stream = long.build_image(options, None, Some(bollard::body_try_stream(body)));
    let image = follow(stream, request, &mut parser, events).await;
    let image = match image {
        Ok(image) => image,
        Err(e) => {
            tar_task.abort();
            return Err(e);
        }
    };
    super::finish(docker, recipe, tar_task, image, out).await?;
    out.kiln_steps = std::mem::take(&mut parser.kiln_steps);
    out.log = parser.into_log();
    Ok(())
}

/// Stage names of the Dockerfile in order (`None` for an unnamed stage).
fn stage_names(dockerfile: &str) -> Vec<Option<String>> {
    crate::load::template::instructions(dockerfile)
        .iter()
        .filter(|i| i.keyword.eq_ignore_ascii_case("FROM"))
        .map(|i| {
            crate::load::template::parse_from(i)
                .ok()
                .and_then(|f| f.stage)
        })
        .collect()
}

/// Follows the build stream to its end; the image id the engine reported.
async fn follow(
    mut stream: impl futures_util::Stream<
        Item = Result<bollard::models::BuildInfo, bollard::errors::Error>,
    > + Unpin,
    request: &BuildRequest,
    parser: &mut BuildkitProgress,
    events: &mut (dyn FnMut(BuildEvent) + Send),
) -> Result<Option<String>, BuildError> {
    let mut image = None;
    loop {
        let item = tokio::select! {
            _ = request.cancel.cancelled() => {
                return Err(BuildError::Cancelled { recipe: request.recipe.clone() });
            }
            item = stream.next() => item,
        };
        let Some(item) = item else {
            return Ok(image);
        };
        match item {
            Ok(info) => match info.aux {
                Some(BuildInfoAux::BuildKit(status)) => {
                    parser.feed(&status).into_iter().for_each(&mut *events)
                }
                Some(BuildInfoAux::Default(img)) => image = img.id.or(image),
                None => {}
            },
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                events(parser.error(&error));
                return Err(failure(request, parser, error));
            }
            Err(source) => return Err(docker_err(&request.recipe, "build")(source)),
        }
    }
}

/// The error for a failed BuildKit build: the failing step when a vertex
/// reported one, an unsupported platform when the engine could not run
/// the platform's programs.
fn failure(request: &BuildRequest, parser: &BuildkitProgress, message: String) -> BuildError {
    let recipe = request.recipe.clone();
    let step = parser.failed_step();
    let tail = step.iter().flat_map(|s| s.tail.iter());
    let exec_format = std::iter::once(&message)
        .chain(tail)
        .any(|l| l.contains("exec format error"));
    if exec_format && let Some(platform) = request.platform.clone() {
        return BuildError::UnsupportedPlatform {
            recipe,
            platform,
            message,
        };
    }
    let Some(step) = step else {
        return BuildError::Refused { recipe, message };
    };
    BuildError::StepFailed(Box::new(super::StepFailure {
        recipe,
        stage: step.stage,
        stage_name: step.stage_name,
        step: step.number,
        total: step.total,
        instruction: step.instruction,
        exit_code: super::progress::exit_code(&message),
        message,
        last_lines: step.tail.into_iter().collect(),
    }))
}
