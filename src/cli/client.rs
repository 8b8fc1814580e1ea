//! What the daemon commands share (`kiln trigger`, `runs`, `logs`,
//! `approved --server`): server and token from flags or `KILN_SERVER` /
//! `KILN_TOKEN`, and the printing of log events. The client itself is
//! `kiln::daemon::client`.

use kiln::daemon::client::Client;
use serde_json::Value;

use super::Outcome;

/// Where the daemon is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The daemon's URL.
    #[arg(long, env = "KILN_SERVER", default_value = "http://127.0.0.1:8420")]
    pub server: String,
    /// API token (prefer the KILN_TOKEN environment variable).
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// The daemon client for `--server` / `--token`; a bad URL is reported.
pub fn connect(server: &str, token: Option<String>) -> Result<Client, Outcome> {
    Client::new(server, token).map_err(|e| {
        super::report(&e);
        Outcome::Usage
    })
}

/// [`connect`] from the shared arguments.
pub fn from_args(args: &ServerArgs) -> Result<Client, Outcome> {
    connect(&args.server, args.token.clone())
}

/// Prints one log event the way `kiln logs` and `kiln trigger --wait` do.
pub fn print_event(name: &str, e: &Value) {
    let stage = e["stage"].as_str().unwrap_or("-");
    let text = e["text"].as_str().unwrap_or("");
    match name {
        "line" => println!("[{stage}] {text}"),
        "stage_started" => println!("==> {stage}"),
        "stage_passed" => println!("<== {stage} passed {text}"),
        "stage_failed" => println!("<== {stage} FAILED {text}"),
        _ => {}
    }
}

/// The exit outcome for a finished run: passed and up to date are success.
pub fn outcome_of(run: &Value) -> Outcome {
    match run["status"].as_str() {
        Some("passed" | "up_to_date") => Outcome::Ok,
        _ => Outcome::Failed,
    }
}
