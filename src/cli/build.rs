//! `kiln build RECIPE [--tag T] [--no-cache] [--json] [--quiet]`.

use std::path::Path;

use kiln::build::{self, BuildEvent, BuildRequest, BuiltImage};
use kiln::project::Project;
use kiln::render;

use super::{Outcome, exit_code, fail, output};

/// Arguments of `kiln build`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recipe name or path.
    pub recipe: String,
    /// Tag for the image (default `kiln/<recipe>:<version>`).
    #[arg(long)]
    pub tag: Option<String>,
    /// Build without the daemon's layer cache (the build key still applies).
    #[arg(long)]
    pub no_cache: bool,
    /// Source location for the `org.opencontainers.image.source` label.
    #[arg(long, value_name = "URL")]
    pub source: Option<String>,
    /// Extra image label `KEY=VALUE` (repeatable; part of the build key).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Write the exact context tar kiln would send (Dockerfile at
    /// `.kiln/Dockerfile`) to FILE and stop without building.
    #[arg(long, value_name = "FILE")]
    pub save_context: Option<std::path::PathBuf>,
    /// Print a machine-readable summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// Print only the result.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Renders and builds one recipe.
pub async fn run(
    project: &Project,
    args: Args,
    operator: &kiln::operator::OperatorConfig,
) -> Outcome {
    let (recipe, mut rendered) =
        match super::load_rendered(project, &args.recipe, super::WhenUnpinned::Refuse) {
            Ok(r) => r,
            Err(o) => return o,
        };
    if let Err(e) = kiln::s3::fetch_objects(&mut rendered).await {
        return fail(Outcome::Infrastructure, &e);
    }
    let mut request = BuildRequest::for_recipe(&recipe);
    request.tag = Some(
        args.tag
            .clone()
            .unwrap_or_else(|| format!("kiln/{}:{}", recipe.name, recipe.version)),
    );
    request.no_cache = args.no_cache;
    request.labels.extend(args.labels.iter().cloned());
    request.source = args.source.clone();
    request.revision = build::git_revision(project.root());
    request.state_dir = Some(project.root().join(".kiln/state"));
    if let Some(file) = &args.save_context {
        return save_context(&rendered, &request, file);
    }
    let docker = match kiln::docker::connect().await {
        Ok(d) => d,
        Err(e) => return fail(Outcome::Infrastructure, &e),
    };
    request.secret_values = match build::secrets::resolve(project, &recipe.build.secrets).await {
        Ok(v) => v,
        Err(e) => {
            super::report(&e);
            return Outcome::Failed;
        }
    };
    let client = match super::registry_client(operator) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let credentials = kiln::pipeline::pull_credentials(&client, &rendered).await;
    request.credentials = match credentials {
        Ok(c) => c,
        Err(e) => return fail(Outcome::Infrastructure, &e),
    };
    let cancel = request.cancel.clone();
    tokio::spawn(async move {
        kiln::shutdown::requested().await;
        errln!("cancelling the build…");
        cancel.cancel();
    });
    let mut printer = Printer {
        tty: output::mode().color,
        quiet: args.quiet,
        ..Printer::default()
    };
    let mut on_event = |e: BuildEvent| printer.event(e);
    let built = build::build(&docker, &rendered, &request, &mut on_event).await;
    printer.progress.finish();
    match built {
        Ok(built) => {
            if args.json {
                outln!("{}", summary(&built));
            } else {
                print_result(&built);
            }
            Outcome::Ok
        }
        Err(e) => {
            let mut failure = output::Failure::of(&e);
            let lines = e.last_lines();
            if !lines.is_empty() {
                failure.extra.insert("lastLines".into(), lines.into());
            }
            let outcome = output::print_failure(exit_code::build(&e), &failure);
            if !lines.is_empty() && !output::mode().json {
                errln!("last output lines:");
                for l in lines {
                    errln!("  | {l}");
                }
            }
            outcome
        }
    }
}

fn save_context(rendered: &render::RenderedBuild, request: &BuildRequest, file: &Path) -> Outcome {
    let context_error = |source| build::BuildError::Context {
        recipe: request.recipe.clone(),
        source: Box::new(source),
    };
    let result = build::prepare(rendered, request).and_then(|p| {
        let mut failed = None;
        let written = kiln::atomic_file::write_with(file, kiln::atomic_file::USER_FILE, |f| {
            build::context::write_tar(&p.manifest, std::io::BufWriter::new(f))
                .map_err(|e| std::io::Error::other(failed.insert(e).to_string()))
        });
        match (written, failed) {
            (Ok(d), _) => Ok((p, d)),
            (Err(_), Some(e)) => Err(context_error(e)),
            (Err(source), None) => Err(context_error(build::context::ContextError::Io {
                path: file.to_path_buf(),
                source,
            })),
        }
    });
    match result {
        Ok((p, (digest, bytes))) if output::mode().json => {
            output::json_result(&serde_json::json!({
                "context": {"digest": digest, "bytes": bytes, "file": file},
                "dockerfile": build::context::DOCKERFILE_PATH,
                "buildKey": p.build_key.digest,
            }))
        }
        Ok((p, (digest, bytes))) => {
            outln!("context {digest} ({bytes} bytes) -> {}", file.display());
            outln!("dockerfile {}", build::context::DOCKERFILE_PATH);
            outln!("build key {}", p.build_key.digest);
            Outcome::Ok
        }
        Err(e) => fail(Outcome::Failed, &e),
    }
}

/// Prints build events: a line per event, and on a terminal a bar over
/// the Dockerfile's steps.
#[derive(Default)]
pub(super) struct Printer {
    pub(super) tty: bool,
    pub(super) quiet: bool,
    pub(super) progress: super::progress::Progress,
}

impl Printer {
    pub(super) fn event(&mut self, e: BuildEvent) {
        if self.quiet {
            return;
        }
        let (bold, dim, reset) = if self.tty {
            ("\x1b[1m", "\x1b[2m", "\x1b[0m")
        } else {
            ("", "", "")
        };
        let line = match e {
            BuildEvent::Skipped { build_key, .. } => {
                format!("inputs unchanged (build key {build_key}); skipping the build")
            }
            BuildEvent::InputsChanged { changes } if changes.is_empty() => {
                "no input changed since the last build; image not found, rebuilding".into()
            }
            BuildEvent::InputsChanged { changes } => {
                format!("changed since the last build: {}", changes.join(", "))
            }
            BuildEvent::Pulling { image } => format!("pulling {image}"),
            BuildEvent::Step {
                stage,
                stage_name,
                number,
                total,
                instruction,
            } => {
                if !self.progress.active() {
                    self.progress.start("build", total as u64);
                }
                self.progress
                    .set(number.saturating_sub(1) as u64, &instruction);
                let stage = stage_name.unwrap_or_else(|| stage.to_string());
                format!("{bold}[{number}/{total}] stage {stage}: {instruction}{reset}")
            }
            BuildEvent::StepDone {
                elapsed, cached, ..
            } => {
                self.progress.inc();
                let c = if cached { ", cached" } else { "" };
                format!("{dim}  done in {:.1}s{c}{reset}", elapsed.as_secs_f64())
            }
            BuildEvent::Output { line } => format!("{dim}  | {reset}{line}"),
            BuildEvent::KilnStep(s) => format!(
                "  {} {}/{}: {} (exit {}, {} attempt{}, {} ms)",
                if s.status == "passed" { "ok" } else { "--" },
                s.phase,
                s.step,
                s.status,
                s.exit,
                s.attempts,
                if s.attempts == 1 { "" } else { "s" },
                s.ms
            ),
            BuildEvent::Error { message } => format!("  error: {message}"),
            _ => return,
        };
        self.progress.line(&line);
    }
}

fn print_result(b: &BuiltImage) {
    let verb = if b.skipped { "up to date" } else { "built" };
    outln!("{verb} {}", b.image_id);
    outln!("build key {}", b.build_key.digest);
    if let Some(t) = &b.tag {
        outln!("tagged {t}");
    }
}

fn summary(b: &BuiltImage) -> serde_json::Value {
    serde_json::json!({
        "recipe": b.recipe,
        "imageId": b.image_id,
        "buildKey": b.build_key.digest,
        "skipped": b.skipped,
        "tag": b.tag,
        "baseImages": b.base_images.iter().map(|(w, u)| serde_json::json!({
            "asWritten": w.to_string(), "used": u.to_string()
        })).collect::<Vec<_>>(),
        "labels": b.labels,
        "changedInputs": b.changed_inputs,
        "context": b.context.as_ref().map(|c| serde_json::json!({
            "digest": c.digest, "bytes": c.bytes
        })),
        "componentSteps": b.kiln_steps,
        "elapsedMs": b.elapsed.as_millis() as u64,
    })
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got `{s}`"))?;
    if k.is_empty() {
        return Err("empty label key".into());
    }
    Ok((k.to_string(), v.to_string()))
}
