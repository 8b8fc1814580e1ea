//! `kiln approved PIPELINE [--json]`: what downstream teams pull, by digest.

use kiln::project::Project;

use super::Outcome;
use super::records::{open_store, report};

/// Arguments of `kiln approved`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipeline.
    pub pipeline: String,
    /// Print the approved record as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Prints one `REGISTRY/REPOSITORY@sha256:…` line per target of the newest
/// record whose tests passed and whose pushes were all verified.
pub fn run(project: &Project, args: Args) -> Outcome {
    let store = match open_store(project) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let approved = match store.map(|s| s.approved(&args.pipeline)).transpose() {
        Ok(a) => a.flatten(),
        Err(e) => {
            report(&e);
            return Outcome::Failed;
        }
    };
    let Some(approved) = approved else {
        eprintln!(
            "error: pipeline `{}` has no approved build: no record whose tests passed \
             and whose pushes were all verified",
            args.pipeline
        );
        return Outcome::Failed;
    };
    if args.json {
        match serde_json::to_string_pretty(&approved) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                report(&e);
                return Outcome::Failed;
            }
        }
    } else {
        for reference in &approved.references {
            println!("{reference}");
        }
    }
    Outcome::Ok
}
