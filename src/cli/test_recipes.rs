//! `kiln test-recipes [FILE…] [--junit FILE]`: runs `tests/*.kilntest.yaml`
//! (or the files named), one line per run, then `N passed, N failed`.

use std::path::PathBuf;
use std::time::Duration;

use kiln::operator::OperatorConfig;
use kiln::pipeline::Pipeline;
use kiln::project::Project;
use kiln::recipe_test::{self, Command, RunResult};
use tokio_util::sync::CancellationToken;

use super::Outcome;

/// Arguments of `kiln test-recipes`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Test files; every `tests/*.kilntest.yaml` of the project when none.
    pub files: Vec<PathBuf>,
    /// Also write a JUnit XML report to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// Loads every file, then runs every run in order.
pub async fn run(project: &Project, args: Args, mut operator: OperatorConfig) -> Outcome {
    let files = if args.files.is_empty() {
        recipe_test::discover(project)
    } else {
        args.files.clone()
    };
    if files.is_empty() {
        let dir = project.dir("tests");
        let m = format!("no recipe tests in {}", dir.display());
        return super::output::fail_msg(Outcome::Failed, m);
    }
    let mut results = Vec::new();
    let mut loaded = Vec::new();
    for f in &files {
        match recipe_test::load(project, f) {
            Ok(t) => loaded.push(t),
            Err(d) => {
                errln!("{d}");
                results.push(unreadable(project, f, &d));
            }
        }
    }
    let needs_docker = loaded
        .iter()
        .any(|t| t.runs.iter().any(|r| r.command == Command::Apply));
    // Recipe tests push nowhere and record nothing: no signing key.
    operator.signing = None;
    let pipeline = match pipeline(project, needs_docker, operator).await {
        Ok(p) => p,
        Err(o) => return o,
    };
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        kiln::shutdown::requested().await;
        errln!("interrupted: cancelling and cleaning up");
        c.cancel();
    });
    for file in &loaded {
        for r in &file.runs {
            if cancel.is_cancelled() {
                break;
            }
            errln!(
                "... {} {} ({})",
                file.shown.display(),
                r.name,
                r.command.as_str()
            );
            let result = pipeline.test_recipe_run(file, r, &cancel).await;
            print_result(&result);
            results.push(result);
        }
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    outln!("{} passed, {failed} failed", results.len() - failed);
    if let Some(path) = &args.junit {
        let xml = recipe_test::junit::to_junit(&results);
        if let Err(e) = kiln::atomic_file::write(path, xml.as_bytes(), kiln::atomic_file::USER_FILE)
        {
            let m = format!("cannot write JUnit report `{}`: {e}", path.display());
            return super::output::fail_msg(Outcome::Failed, m);
        }
    }
    if failed > 0 || cancel.is_cancelled() {
        Outcome::Failed
    } else {
        Outcome::Ok
    }
}

/// A pipeline handle under the operator's config (governance, registries,
/// signing key); Docker is connected (and asked for its version) only when
/// `needs_docker`.
pub(super) async fn pipeline(
    project: &Project,
    needs_docker: bool,
    operator: OperatorConfig,
) -> Result<Pipeline, Outcome> {
    let docker = if needs_docker {
        kiln::docker::connect().await
    } else {
        kiln::docker::Endpoint::from_env().and_then(|e| kiln::docker::client(&e))
    };
    let docker = docker.map_err(|e| {
        super::report(&e);
        Outcome::Failed
    })?;
    let registry = super::registry_client(&operator)?;
    let keys = kiln::record::ChainKeys::default();
    let records = super::records::open_records(project, &operator, keys).await?;
    Ok(Pipeline {
        project: project.clone(),
        docker,
        registry,
        signing: operator.signing.map(std::sync::Arc::new),
        governance: std::sync::Arc::new(operator.governance),
        records,
    })
}

fn print_result(r: &RunResult) {
    let mark = if r.passed { "ok  " } else { "FAIL" };
    outln!(
        "{mark} {} {} ({}, {:.2}s)",
        r.file.display(),
        r.name,
        r.command.as_str(),
        r.elapsed.as_secs_f64()
    );
    for m in &r.messages {
        outln!("       {m}");
    }
}

/// A test file that did not load counts as one failed run.
fn unreadable(
    project: &Project,
    f: &std::path::Path,
    d: &kiln::diagnostic::Diagnostics,
) -> RunResult {
    let shown = if f.is_absolute() {
        project.display(f)
    } else {
        f.to_path_buf()
    };
    RunResult {
        file: shown,
        name: "(load)".into(),
        command: Command::Plan,
        passed: false,
        messages: d
            .0
            .iter()
            .map(|x| recipe_test::one_line(&x.to_string()))
            .collect(),
        elapsed: Duration::ZERO,
    }
}
