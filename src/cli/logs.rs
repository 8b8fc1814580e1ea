//! `kiln logs RUN [-f]`: a run's stored log; `-f` follows it until the run
//! ends and exits with the run's outcome.

use super::Outcome;
use super::client::{ServerArgs, from_args, outcome_of, print_event};

/// Arguments of `kiln logs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run id.
    pub run: String,
    /// Keep following until the run ends.
    #[arg(short, long)]
    pub follow: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Prints (and optionally follows) a run's log.
pub async fn run(args: Args) -> Outcome {
    let client = match from_args(&args.server) {
        Ok(c) => c,
        Err(o) => return o,
    };
    match client.log(&args.run, args.follow, print_event).await {
        Ok(Some(run)) => {
            errln!(
                "run {} {}: {}",
                args.run,
                run["status"].as_str().unwrap_or("?"),
                run["summary"].as_str().unwrap_or("")
            );
            if args.follow {
                outcome_of(&run)
            } else {
                Outcome::Ok
            }
        }
        Ok(None) => Outcome::Ok,
        Err(e) => super::fail(super::exit_code::client(&e), &e),
    }
}
