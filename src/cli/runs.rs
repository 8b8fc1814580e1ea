//! `kiln runs [PIPELINE] [--limit N] [--json]`: the daemon's runs, newest
//! first, with the node that ran each (a cluster's, or the host's); with
//! `--state` they are read from that store instead of asking a daemon.

use kiln::daemon::queue::read_runs;
use kiln::state::StateLocation;
use serde_json::Value;

use super::Outcome;
use super::client::{ServerArgs, from_args};

/// Arguments of `kiln runs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this pipeline's runs.
    pub pipeline: Option<String>,
    /// Show at most N runs.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Lists runs, from the daemon at `--server`, or from `state` when given.
pub async fn run(args: Args, state: Option<&StateLocation>) -> Outcome {
    let runs = match state {
        Some(s) => from_store(s, &args).await,
        None => from_daemon(&args).await,
    };
    match runs {
        Ok(runs) => print(&args, runs),
        Err(o) => o,
    }
}

async fn from_daemon(args: &Args) -> Result<Value, Outcome> {
    let client = from_args(&args.server)?;
    client
        .runs(args.pipeline.as_deref(), args.limit)
        .await
        .map_err(|e| super::fail(super::exit_code::client(&e), &e))
}

async fn from_store(state: &StateLocation, args: &Args) -> Result<Value, Outcome> {
    let runs = read_runs(state, args.pipeline.clone(), args.limit)
        .await
        .map_err(|e| super::fail(Outcome::Infrastructure, &e))?;
    Ok(serde_json::to_value(runs).expect("runs serialize"))
}

fn print(args: &Args, runs: Value) -> Outcome {
    if args.json {
        return super::output::json_result(&runs);
    }
    let runs = runs.as_array().cloned().unwrap_or_default();
    if runs.is_empty() {
        errln!("no runs yet");
        return Outcome::Ok;
    }
    outln!(
        "{:<36}  {:<20}  {:<11}  {:<8}  {:<16}  {:<24}  SUMMARY",
        "RUN",
        "PIPELINE",
        "STATUS",
        "TRIGGER",
        "NODE",
        "QUEUED"
    );
    for r in runs {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
        // A branch run shows as `pipeline@branch`.
        let pipeline = match r["branch"].as_str() {
            Some(b) => format!("{}@{b}", s("pipeline")),
            None => s("pipeline"),
        };
        outln!(
            "{:<36}  {:<20}  {:<11}  {:<8}  {:<16}  {:<24}  {}",
            s("id"),
            pipeline,
            s("status"),
            s("trigger"),
            s("node"),
            s("queuedAt"),
            r["summary"].as_str().unwrap_or("")
        );
    }
    Outcome::Ok
}
