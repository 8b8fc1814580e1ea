//! Argument parsing and command dispatch for the `kiln` binary. Each command
//! lives in its own file and only formats what the library returns, through
//! the shared conventions of [`output`] (exit codes, the error printer,
//! `--json`, colour, closed pipes).

#[macro_use]
pub mod output;
mod affected;
mod approve;
mod approved;
mod branches;
mod build;
mod client;
mod completions;
mod exit_code;
mod export;
mod import;
mod key;
mod logs;
mod progress;
mod push;
mod records;
mod render;
mod resolve;
mod run;
mod runs;
mod schedule;
mod serve;
mod test;
mod test_recipes;
mod token;
mod trigger;
mod validate;
mod verify;

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use kiln::project::Project;
use kiln::state::StateLocation;

/// kiln: container image build pipelines on any Docker host.
#[derive(Debug, Parser)]
#[command(name = "kiln", version = version(), about, long_about = None,
    after_help = output::EXIT_CODES_HELP)]
pub struct Cli {
    /// Project folder holding recipes/, components/, dockerfiles/, config/.
    #[arg(long, global = true, default_value = ".", env = "KILN_PROJECT")]
    pub project: PathBuf,
    /// Operator config (tokens, policy, findings gate, registries, signing
    /// key), kept outside every project; default `/etc/kiln/kiln.yaml` when
    /// it exists, else the project's `config/kiln.yaml` (with a warning).
    #[arg(long, global = true, env = "KILN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where records live: `sqlite:PATH` or `postgres://USER@HOST:PORT/DB`
    /// (a cluster's shared database); overrides the operator config's
    /// `state:`; default the project's `.kiln/state/kiln.db`.
    #[arg(
        long,
        global = true,
        env = "KILN_STATE",
        hide_env_values = true,
        value_name = "STATE"
    )]
    pub state: Option<String>,
    /// More log output (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Colour on a terminal (auto, honouring NO_COLOR), always, or never;
    /// also the daemon's log.
    #[arg(long, global = true, value_enum, default_value_t, value_name = "WHEN")]
    pub color: output::ColorChoice,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline end to end: resolve, build, test, push, record.
    Run(run::Args),
    /// List branch pipelines (builds made with `--branch`) and their cleanups.
    Branches(branches::Args),
    /// Remove a branch's tags from every registry its builds pushed to.
    Cleanup(branches::CleanupArgs),
    /// List the recipes whose inputs changed since a git revision.
    Affected(affected::Args),
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
    /// Run the project's recipe tests (`tests/*.kilntest.yaml`): plan and apply runs with assertions.
    TestRecipes(test_recipes::Args),
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
    /// Approve a build awaiting approval; it is then promoted.
    Approve(approve::ApproveArgs),
    /// Reject a build awaiting approval (never served or promoted).
    Reject(approve::RejectArgs),
    /// Copy an approved build, digest for digest, to one of its promote targets.
    Promote(approve::PromoteArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::Args),
    /// Print kiln's man page (roff; `kiln man | man -l -`).
    Man,
    /// Check a digest's signature, attestations and (with --server) approval.
    Verify(verify::Args),
}

pub use output::{Outcome, fail, fail_msg};

/// `kiln --version`: the crate version and the commit it was built from
/// (`build.rs`; `revision unknown` when built without git).
const fn version() -> &'static str {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (",
        env!("KILN_BUILD_REVISION_TEXT"),
        ")"
    )
}

/// Parses the arguments and fixes the output mode. A usage error exits 2 —
/// as clap prints it, or as a JSON error document when `--json` was given.
pub fn parse() -> Result<Cli, Outcome> {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut command = Cli::command();
    if let Some(choice) = color_in(&argv) {
        command = command.color(match choice {
            output::ColorChoice::Auto => clap::ColorChoice::Auto,
            output::ColorChoice::Always => clap::ColorChoice::Always,
            output::ColorChoice::Never => clap::ColorChoice::Never,
        });
    }
    let matches = command.try_get_matches_from(&argv);
    let parsed = matches.and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    match parsed {
        Ok((cli, m)) => {
            output::init(json_requested(&m), cli.color);
            Ok(cli)
        }
        Err(e) if e.use_stderr() && argv.iter().any(|a| a == "--json") => {
            output::init(true, output::ColorChoice::Never);
            let text = e.render().to_string();
            let message = text.lines().next().unwrap_or_default();
            Err(fail_msg(
                Outcome::Usage,
                message.strip_prefix("error: ").unwrap_or(message),
            ))
        }
        Err(e) => e.exit(),
    }
}

/// `--color WHEN` among the raw arguments, for clap's own messages.
fn color_in(argv: &[std::ffi::OsString]) -> Option<output::ColorChoice> {
    use clap::ValueEnum;
    let args: Vec<&str> = argv.iter().filter_map(|a| a.to_str()).collect();
    let value = args
        .iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix("--color") {
            Some(v) if v.starts_with('=') => Some(&v[1..]),
            Some("") => args.get(i + 1).copied(),
            _ => None,
        })?;
    output::ColorChoice::from_str(value, true).ok()
}

/// Whether the (sub)command was given `--json`: any command whose flag is
/// named `json` gets JSON errors without further code.
fn json_requested(m: &clap::ArgMatches) -> bool {
    let here = matches!(m.try_get_one::<bool>("json"), Ok(Some(true)));
    here || m.subcommand().is_some_and(|(_, sub)| json_requested(sub))
}

/// Logs go to stderr, coloured only as [`output::Mode::color`] says (a log
/// file never gets escape codes); `RUST_LOG` overrides the level.
pub fn init_tracing(verbose: u8) {
    // -vv is kiln's and the SDKs' debug output; the Docker client's debug
    // lines (whole request URLs and response bodies) and the HTTP/TLS
    // plumbing stay at info. Every line is redacted either way.
    let default = match verbose {
        // rustls logs a refused certificate at ERROR; the client's own
        // error says it once, with the cause chain.
        0 => "warn,kiln=info,rustls=off",
        1 => "info,kiln=debug,rustls=off",
        _ => {
            "debug,bollard=info,hyper=info,hyper_util=info,h2=info,rustls=info,tonic=info,tower=info"
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(kiln::redact::stderr)
        .with_target(false)
        .with_ansi(output::mode().color)
        .without_time()
        .init();
}

/// Opens the project folder or reports why not.
pub fn open_project(path: &std::path::Path) -> Result<Project, Outcome> {
    Project::open(path).map_err(|e| {
        let failure = output::Failure {
            causes: vec![e.to_string()],
            ..output::Failure::message(format!("cannot open project folder `{}`", path.display()))
        };
        output::print_failure(Outcome::Usage, &failure)
    })
}

/// Prints an error with its cause chain through the one error printer
/// ([`output::fail`]) as a plain failure (exit 1); commands that know a
/// more specific exit code call [`fail`] with it.
/// The registry client the operator config describes (credential sources,
/// insecure registries, timeouts): every command that talks to registries
/// uses it, so no command ignores that part of the config.
pub fn registry_client(
    operator: &kiln::operator::OperatorConfig,
) -> Result<kiln::registry::RegistryClient, Outcome> {
    kiln::registry::RegistryClient::new(operator.daemon.registries.client_config())
        .map_err(|e| fail(Outcome::Infrastructure, &e))
}

pub fn report(e: &dyn std::error::Error) {
    fail(Outcome::Failed, e);
}

/// A usage error when `--state` was given on the command line to a command
/// that never reads a store (it talks to a daemon, or to nothing), rather
/// than ignoring it; `KILN_STATE` in the environment applies to the
/// commands that read a store and is left alone by the others.
fn refuse_unused_state(cli: &Cli) -> Option<Outcome> {
    let given = cli.state.as_deref()?;
    if std::env::var("KILN_STATE").is_ok_and(|env| env == given) {
        return None;
    }
    let name = match &cli.command {
        Command::Trigger(_) => "trigger",
        Command::Logs(_) => "logs",
        Command::Token(_) => "token",
        Command::Key(_) => "key",
        Command::Verify(_) => "verify",
        Command::Approved(a) if a.server.is_some() => "approved --server",
        Command::Import(_) => "import",
        Command::Completions(_) => "completions",
        Command::Man => "man",
        _ => return None,
    };
    let message = format!(
        "`kiln {name}` reads no state store, so `--state` would be ignored: drop it \
         (a daemon's store is set on `kiln serve`)"
    );
    Some(output::print_failure(
        Outcome::Usage,
        &output::Failure::message(message),
    ))
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Outcome {
    // Parsed here, not by clap, so a refused value never shows a password.
    let state = cli.state.as_deref().map(str::parse::<StateLocation>);
    let state = match state.transpose() {
        Ok(s) => s,
        Err(e) => return fail(Outcome::Usage, &e),
    };
    if let Some(o) = refuse_unused_state(&cli) {
        return o;
    }
    match cli.command {
        Command::Trigger(a) => return trigger::run(a).await,
        Command::Runs(a) => return runs::run(a, state.as_ref()).await,
        Command::Logs(a) => return logs::run(a).await,
        Command::Token(a) => return token::run(a),
        Command::Key(a) => return key::run(a),
        Command::Verify(a) => return verify::run(cli.config.as_deref(), &cli.project, a).await,
        Command::Approved(a) if a.server.is_some() => return approved::remote(a).await,
        Command::Import(a) => return import::run(&cli.project, a).await,
        Command::Completions(a) => return completions::run(a),
        Command::Man => return completions::man(),
        _ => {}
    }
    let project = match open_project(&cli.project) {
        Ok(p) => p,
        Err(o) => return o,
    };
    let mut operator = match key::operator(cli.config.as_deref(), &project).await {
        Ok(op) => op,
        Err(o) => return o,
    };
    if state.is_some() {
        operator.state = state;
    }
    let project = project.with_build_policy(operator.build.clone());
    match cli.command {
        Command::Validate(a) => validate::run(&project, a, &operator.governance.policy),
        Command::Run(a) => run::run(&project, a, operator).await,
        Command::Render(a) => render::run(&project, a),
        Command::Affected(a) => affected::run(&project, a),
        Command::Branches(a) => branches::list(&project, a, &operator).await,
        Command::Cleanup(a) => branches::cleanup(&project, a, operator).await,
        Command::Resolve(a) => resolve::run(&project, a, &operator).await,
        Command::Records(a) => records::run(&project, a, &operator).await,
        Command::Approved(a) => approved::run(&project, a, &operator).await,
        Command::Build(a) => build::run(&project, a, &operator).await,
        Command::Test(a) => test::run(&project, a, operator.governance.test_containers).await,
        Command::TestRecipes(a) => test_recipes::run(&project, a, operator).await,
        Command::Push(a) => push::run(&project, a, operator).await,
        Command::Serve(a) => serve::run(&project, a, operator).await,
        Command::Schedule(a) => schedule::run(&project, a),
        Command::Approve(a) => {
            let decision = kiln::record::Decision::Approve;
            approve::decide(&project, operator, &a.build, decision, a.note).await
        }
        Command::Reject(a) => {
            let decision = kiln::record::Decision::Reject;
            approve::decide(&project, operator, &a.build, decision, Some(a.note)).await
        }
        Command::Promote(a) => approve::promote(&project, operator, a).await,
        Command::Export(a) => export::run(&project, a),
        Command::Trigger(_)
        | Command::Runs(_)
        | Command::Logs(_)
        | Command::Token(_)
        | Command::Import(_)
        | Command::Completions(_)
        | Command::Man
        | Command::Key(_)
        | Command::Verify(_) => {
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
                errln!(
                    "note: `{}` is not pinned in kiln.lock; FROM lines keep their tags (run `kiln resolve`)",
                    r.recipe.name
                );
            }
            Ok((r.recipe, r.rendered))
        }
        Err(LockedRenderError::Invalid(d)) => Err(output::fail_invalid(
            d.0,
            format_args!("recipe `{recipe}` is invalid"),
        )),
        Err(e) => Err(fail(Outcome::Failed, &e)),
    }
}
