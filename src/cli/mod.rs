//! Argument parsing and command dispatch for the `kiln` binary. Each command
//! lives in its own file and only formats what the library returns.

mod approved;
mod build;
mod client;
mod export;
mod import;
mod key;
mod logs;
mod push;
mod records;
mod render;
mod resolve;
mod run;
mod runs;
mod schedule;
mod serve;
mod test;
mod token;
mod trigger;
mod validate;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use kiln::project::Project;

/// kiln: container image build pipelines on any Docker host.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about = None)]
pub struct Cli {
    /// Project folder holding recipes/, components/, dockerfiles/, config/.
    #[arg(long, global = true, default_value = ".", env = "KILN_PROJECT")]
    pub project: PathBuf,
    /// Operator config (signing key), kept outside every project; default
    /// `/etc/kiln/kiln.yaml` when it exists.
    #[arg(long, global = true, env = "KILN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More log output (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline end to end: resolve, build, test, push, record.
    Run(run::Args),
    /// Validate recipes, the components they use and their templates.
    Validate(validate::Args),
    /// Build a recipe's image on the Docker engine (skipped when its inputs are unchanged).
    Build(build::Args),
    /// Pin parent images to digests in kiln.lock (or check that they have not moved).
    Resolve(resolve::Args),
    /// Print the final Dockerfile of a recipe (and optionally write its build context).
    Render(render::Args),
    /// List build records, verify their hash chain, or export provenance.
    Records(records::Args),
    /// Print the approved image references of a pipeline, by digest.
    Approved(approved::Args),
    /// Run an image of a recipe, wait until it serves, run its tests.
    Test(test::Args),
    /// Push an image from the daemon to the recipe's targets (distribute stage).
    Push(push::Args),
    /// Run the kiln daemon: scheduled refreshes, run queue, HTTP API.
    Serve(serve::Args),
    /// Start a pipeline run on a kiln daemon.
    Trigger(trigger::Args),
    /// List a kiln daemon's runs.
    Runs(runs::Args),
    /// Print (or follow) a run's log from a kiln daemon.
    Logs(logs::Args),
    /// Import EC2 Image Builder recipes, components and pipelines (CloudFormation, Terraform, CLI JSON, or the service).
    Import(import::Args),
    /// Print the CloudFormation (or Terraform) template that recreates a recipe's pipeline in Image Builder.
    Export(export::Args),
    /// Print a recipe's schedule and its next fire times.
    Schedule(schedule::Args),
    /// API token helpers.
    #[command(subcommand)]
    Token(token::Args),
    /// Signing key helpers.
    #[command(subcommand)]
    Key(key::Args),
}

/// What a command ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Success: exit 0.
    Ok,
    /// The pipeline or validation failed: exit 1.
    Failed,
    /// Bad usage: exit 2.
    Usage,
}

impl From<Outcome> for std::process::ExitCode {
    fn from(o: Outcome) -> Self {
        std::process::ExitCode::from(match o {
            Outcome::Ok => 0,
            Outcome::Failed => 1,
            Outcome::Usage => 2,
        })
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the level.
pub fn init_tracing(verbose: u8) {
    // -vv is kiln's and the SDKs' debug output; the Docker client's debug
    // lines (whole request URLs and response bodies) and the HTTP/TLS
    // plumbing stay at info. Every line is redacted either way.
    let default = match verbose {
        0 => "warn,kiln=info",
        1 => "info,kiln=debug",
        _ => "debug,bollard=info,hyper=info,hyper_util=info,h2=info,rustls=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(kiln::redact::stderr)
        .with_target(false)
        .without_time()
        .init();
}

/// Opens the project folder or reports why not.
pub fn open_project(path: &std::path::Path) -> Result<Project, Outcome> {
    Project::open(path).map_err(|e| {
        eprintln!(
            "error: cannot open project folder `{}`: {e}",
            path.display()
        );
        Outcome::Usage
    })
}

/// Prints an error with its chain of causes, once, on one line (the only
/// place the CLI renders a library error).
pub fn report(e: &dyn std::error::Error) {
    eprintln!("error: {}", kiln::pipeline::chain(e));
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Outcome {
    match cli.command {
        Command::Trigger(a) => return trigger::run(a).await,
        Command::Runs(a) => return runs::run(a).await,
        Command::Logs(a) => return logs::run(a).await,
        Command::Token(a) => return token::run(a),
        Command::Key(a) => return key::run(a),
        Command::Approved(a) if a.server.is_some() => return approved::remote(a).await,
        Command::Import(a) => return import::run(&cli.project, a).await,
        _ => {}
    }
    let project = match open_project(&cli.project) {
        Ok(p) => p,
        Err(o) => return o,
    };
    match cli.command {
        Command::Validate(a) => validate::run(&project, a),
        Command::Run(a) => match key::operator(cli.config.as_deref(), &project) {
            Ok(op) => run::run(&project, a, op).await,
            Err(o) => o,
        },
        Command::Render(a) => render::run(&project, a),
        Command::Resolve(a) => resolve::run(&project, a).await,
        Command::Records(a) => records::run(&project, a),
        Command::Approved(a) => approved::run(&project, a),
        Command::Build(a) => build::run(&project, a).await,
        Command::Test(a) => test::run(&project, a).await,
        Command::Push(a) => push::run(&project, a).await,
        Command::Serve(a) => match key::operator(cli.config.as_deref(), &project) {
            Ok(op) => serve::run(&project, a, op).await,
            Err(o) => o,
        },
        Command::Schedule(a) => schedule::run(&project, a),
        Command::Export(a) => export::run(&project, a),
        Command::Trigger(_)
        | Command::Runs(_)
        | Command::Logs(_)
        | Command::Token(_)
        | Command::Import(_)
        | Command::Key(_) => {
            unreachable!("handled before the project is opened")
        }
    }
}

pub use kiln::pipeline::pins::WhenUnpinned;

/// Loads a recipe and renders it with the pins from kiln.lock
/// ([`kiln::pipeline::pins::render_locked`]), printing every problem.
pub fn load_rendered(
    project: &Project,
    recipe: &str,
    when: WhenUnpinned,
) -> Result<(kiln::load::LoadedRecipe, kiln::render::RenderedBuild), Outcome> {
    use kiln::pipeline::pins::{LockedRenderError, render_locked};
    match render_locked(project, recipe, when) {
        Ok(r) => {
            if !r.pinned {
                eprintln!(
                    "note: `{}` is not pinned in kiln.lock; FROM lines keep their tags (run `kiln resolve`)",
                    r.recipe.name
                );
            }
            Ok((r.recipe, r.rendered))
        }
        Err(LockedRenderError::Invalid(d)) => {
            eprintln!("{d}");
            Err(Outcome::Failed)
        }
        Err(e) => {
            report(&e);
            Err(Outcome::Failed)
        }
    }
}
