//! `kiln trigger PIPELINE [--wait]`: starts a run on the daemon (or joins the
//! active one) and optionally follows its log; with `--wait` the exit code
//! is the run's outcome (0 passed / up to date, 1 otherwise).

use super::Outcome;
use super::client::{ServerArgs, event_line, from_args, outcome_of, print_event};
use super::output;

/// Arguments of `kiln trigger`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipeline.
    pub pipeline: String,
    /// Run the branch pipeline of this git branch (tags get a branch
    /// suffix; never approvable), as `kiln run --branch` does.
    #[arg(long, value_name = "NAME")]
    pub branch: Option<String>,
    /// Follow the run's log until it ends; exit with its outcome.
    #[arg(long)]
    pub wait: bool,
    /// Print the queued run (with `--wait`: the finished run) as JSON on
    /// stdout; the log then goes to stderr.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Triggers and optionally waits.
pub async fn run(args: Args) -> Outcome {
    let client = match from_args(&args.server) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let body = match client.trigger(&args.pipeline, args.branch.as_deref()).await {
        Ok(b) => b,
        Err(e) => return super::fail(super::exit_code::client(&e), &e),
    };
    let id = body["run"]["id"].as_str().unwrap_or_default().to_string();
    if body["joined"] == true {
        errln!(
            "joined run {id} (already {})",
            body["run"]["status"].as_str().unwrap_or("?")
        );
    } else {
        errln!("queued run {id}");
    }
    if !args.wait {
        if args.json {
            return output::json_result(&body);
        }
        outln!("{id}");
        return Outcome::Ok;
    }
    if !args.json {
        outln!("{id}");
    }
    // Under --json stdout holds one document: the log goes to stderr.
    let on_event = |name: &str, e: &serde_json::Value| {
        if !args.json {
            return print_event(name, e);
        }
        if let Some(line) = event_line(name, e) {
            errln!("{line}");
        }
        std::ops::ControlFlow::Continue(())
    };
    match client.log(&id, true, on_event).await {
        Ok(Some(run)) => {
            let status = run["status"].as_str().unwrap_or("?");
            let summary = run["summary"].as_str().unwrap_or("");
            errln!("run {id} {status}: {summary}");
            let outcome = outcome_of(&run);
            if !args.json {
                return outcome;
            }
            if outcome == Outcome::Ok {
                return output::json_result(&run);
            }
            let failure = output::Failure::message(format_args!("run {id} {status}: {summary}"));
            let mut doc = failure.json(outcome);
            doc["run"] = run;
            outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            outcome
        }
        Ok(None) => super::fail_msg(
            Outcome::Infrastructure,
            format_args!("the daemon closed the log before run {id} ended"),
        ),
        Err(e) => super::fail(super::exit_code::client(&e), &e),
    }
}
