//! `kiln approved PIPELINE [--json] [--server URL]`: what downstream teams
//! pull, by digest — from the record store (`--state`), or from a daemon.

use kiln::project::Project;

use super::Outcome;
use super::records::open_records;
use super::{exit_code, fail, fail_msg, output};

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
    /// Check record signatures with this public key (PEM) instead of the
    /// operator config's signing key.
    #[arg(long, value_name = "PUB", conflicts_with = "server")]
    pub key: Option<std::path::PathBuf>,
    /// Trust only these PEM CA certificates for an https:// --server.
    #[arg(long, env = "KILN_CACERT", value_name = "FILE", requires = "server")]
    pub cacert: Option<std::path::PathBuf>,
}

/// `--server`: the same answer from a daemon's `/v1/pipelines/{name}/approved`.
pub async fn remote(args: Args) -> Outcome {
    let server = args.server.clone().unwrap_or_default();
    let client = match super::client::connect(&server, args.token.clone(), args.cacert.as_deref()) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let approved = match client.approved(&args.pipeline).await {
        Ok(a) => a,
        Err(e) => return fail(exit_code::client(&e), &e),
    };
    if args.json {
        return output::json_result(&approved);
    } else {
        for reference in approved["references"].as_array().into_iter().flatten() {
            outln!("{}", reference.as_str().unwrap_or_default());
        }
    }
    Outcome::Ok
}

/// Prints one `REGISTRY/REPOSITORY@sha256:…` line per target (and
/// promotion) of the newest approved build; with a key, only signed records
/// are served.
pub async fn run(
    project: &Project,
    args: Args,
    operator: &kiln::operator::OperatorConfig,
) -> Outcome {
    let keys = match super::records::reading_keys(operator, args.key.as_deref()) {
        Ok(k) => k,
        Err(o) => return o,
    };
    let store = match open_records(project, operator, keys).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    let approved = match store.approved(&args.pipeline).await {
        Ok(a) => a,
        Err(e) => return fail(Outcome::Failed, &e),
    };
    let Some(approved) = approved else {
        return fail_msg(
            Outcome::Failed,
            format_args!(
                "pipeline `{}` has no approved build: no record whose tests passed, \
                 whose pushes were all verified and whose approval (when required) is recorded",
                args.pipeline
            ),
        );
    };
    if args.json {
        return output::json_result(&approved);
    } else {
        for reference in &approved.references {
            outln!("{reference}");
        }
    }
    Outcome::Ok
}
