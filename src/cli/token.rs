//! `kiln token hash`: prints the sha256 of a token read from stdin, for the
//! `tokens` list of the operator config (raw tokens never go in files).

use std::io::Read as _;

use super::Outcome;

/// Token helpers.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Read a token from stdin and print its sha256 (hex) for the operator config's `tokens`.
    Hash,
}

/// Runs `kiln token …`.
pub fn run(args: Args) -> Outcome {
    match args {
        Args::Hash => {
            let mut input = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut input) {
                return super::fail_msg(
                    Outcome::Failed,
                    format_args!("cannot read the token from stdin: {e}"),
                );
            }
            let token = input.strip_suffix('\n').unwrap_or(&input);
            let token = token.strip_suffix('\r').unwrap_or(token);
            if token.is_empty() {
                return super::fail_msg(
                    Outcome::Usage,
                    "no token on stdin (try: printf %s \"$TOKEN\" | kiln token hash)",
                );
            }
            outln!("{}", kiln::daemon::auth::hash_token(token));
            Outcome::Ok
        }
    }
}
