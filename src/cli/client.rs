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
    /// Trust only these PEM CA certificates for an https:// daemon.
    #[arg(long, env = "KILN_CACERT", value_name = "FILE")]
    pub cacert: Option<std::path::PathBuf>,
}

/// The daemon client for `--server` / `--token`; a bad URL is reported.
pub fn connect(
    server: &str,
    token: Option<String>,
    cacert: Option<&std::path::Path>,
) -> Result<Client, Outcome> {
    Client::with_ca(server, token, cacert).map_err(|e| super::fail(Outcome::Usage, &e))
}

/// [`connect`] from the shared arguments.
pub fn from_args(args: &ServerArgs) -> Result<Client, Outcome> {
    connect(&args.server, args.token.clone(), args.cacert.as_deref())
}

/// Prints one log event the way `kiln logs` and `kiln trigger --wait` do;
/// stops following once stdout is closed (`kiln logs -f RUN | head`).
pub fn print_event(name: &str, e: &Value) -> std::ops::ControlFlow<()> {
    if let Some(line) = event_line(name, e) {
        outln!("{line}");
    }
    if super::output::stdout_closed() {
        std::ops::ControlFlow::Break(())
    } else {
        std::ops::ControlFlow::Continue(())
    }
}

/// One log event as a line (None for events that print nothing).
pub fn event_line(name: &str, e: &Value) -> Option<String> {
    let stage = e["stage"].as_str().unwrap_or("-");
    let text = e["text"].as_str().unwrap_or("");
    Some(match name {
        "line" => format!("[{stage}] {text}"),
        "stage_started" => format!("==> {stage}"),
        "stage_passed" => format!("<== {stage} passed {text}"),
        "stage_failed" => format!("<== {stage} FAILED {text}"),
        _ => return None,
    })
}

/// The exit outcome for a finished run, as `kiln run` would end: passed, up
/// to date and awaiting approval are success; a failed run ends with the
/// code of its kind of failure.
pub fn outcome_of(run: &Value) -> Outcome {
    match run["status"].as_str() {
        Some("passed" | "up_to_date" | "awaiting_approval") => Outcome::Ok,
        _ => serde_json::from_value::<kiln::pipeline::FailureKind>(run["failure"].clone())
            .map_or(Outcome::Failed, super::exit_code::failure),
    }
}
