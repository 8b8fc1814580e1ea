//! `kiln runs [PIPELINE] [--limit N] [--json]`: the daemon's runs, newest
//! first, with the node that ran each (a cluster's, or the host's).

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

/// Lists runs.
pub async fn run(args: Args) -> Outcome {
    let client = match from_args(&args.server) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let runs = match client.runs(args.pipeline.as_deref(), args.limit).await {
        Ok(r) => r,
        Err(e) => return super::fail(super::exit_code::client(&e), &e),
    };
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
