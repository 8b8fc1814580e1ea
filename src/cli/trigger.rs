//! `kiln trigger PIPELINE [--wait]`: starts a run on the daemon (or joins the
//! active one) and optionally follows its log; with `--wait` the exit code
//! is the run's outcome (0 passed / up to date, 1 otherwise).

use super::Outcome;
use super::client::{ServerArgs, from_args, outcome_of, print_event};

/// Arguments of `kiln trigger`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipeline.
    pub pipeline: String,
    /// Follow the run's log until it ends; exit with its outcome.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Triggers and optionally waits.
pub async fn run(args: Args) -> Outcome {
    let client = match from_args(&args.server) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let body = match client.trigger(&args.pipeline).await {
        Ok(b) => b,
        Err(e) => {
            super::report(&e);
            return Outcome::Failed;
        }
    };
    let id = body["run"]["id"].as_str().unwrap_or_default().to_string();
    if body["joined"] == true {
        eprintln!(
            "joined run {id} (already {})",
            body["run"]["status"].as_str().unwrap_or("?")
        );
    } else {
        eprintln!("queued run {id}");
    }
    println!("{id}");
    if !args.wait {
        return Outcome::Ok;
    }
    match client.log(&id, true, print_event).await {
        Ok(Some(run)) => {
            eprintln!(
                "run {id} {}: {}",
                run["status"].as_str().unwrap_or("?"),
                run["summary"].as_str().unwrap_or("")
            );
            outcome_of(&run)
        }
        Ok(None) => {
            eprintln!("error: the daemon closed the log before run {id} ended");
            Outcome::Failed
        }
        Err(e) => {
            super::report(&e);
            Outcome::Failed
        }
    }
}
