//! `kiln token hash`: prints the sha256 of a token read from stdin, for the
//! `tokens` list of `config/kiln.yaml` (raw tokens never go in files).

use std::io::Read as _;

use super::Outcome;

/// Token helpers.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Read a token from stdin and print its sha256 (hex) for config/kiln.yaml.
    Hash,
}

/// Runs `kiln token …`.
pub fn run(args: Args) -> Outcome {
    match args {
        Args::Hash => {
            let mut input = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut input) {
                eprintln!("error: cannot read the token from stdin: {e}");
                return Outcome::Failed;
            }
            let token = input.strip_suffix('\n').unwrap_or(&input);
            let token = token.strip_suffix('\r').unwrap_or(token);
            if token.is_empty() {
                eprintln!("error: no token on stdin (try: printf %s \"$TOKEN\" | kiln token hash)");
                return Outcome::Usage;
            }
            println!("{}", kiln::daemon::auth::hash_token(token));
            Outcome::Ok
        }
    }
}
