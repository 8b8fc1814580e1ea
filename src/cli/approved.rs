//! `kiln approved PIPELINE [--json] [--server URL]`: what downstream teams
//! pull, by digest — from the local record store, or from a daemon.

use kiln::project::Project;

use super::Outcome;
use super::records::open_store;
use super::report;

/// Arguments of `kiln approved`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipeline.
    pub pipeline: String,
    /// Print the approved record as JSON.
    #[arg(long)]
    pub json: bool,
    /// Ask this kiln daemon instead of the local record store.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// API token for --server (prefer the KILN_TOKEN environment variable).
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true, requires = "server")]
    pub token: Option<String>,
}

/// `--server`: the same answer from a daemon's `/v1/pipelines/{name}/approved`.
pub async fn remote(args: Args) -> Outcome {
    let server = args.server.clone().unwrap_or_default();
    let client = match super::client::connect(&server, args.token.clone()) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let approved = match client.approved(&args.pipeline).await {
        Ok(a) => a,
        Err(e) => {
            super::report(&e);
            return Outcome::Failed;
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&approved).unwrap_or_default()
        );
    } else {
        for reference in approved["references"].as_array().into_iter().flatten() {
            println!("{}", reference.as_str().unwrap_or_default());
        }
    }
    Outcome::Ok
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
