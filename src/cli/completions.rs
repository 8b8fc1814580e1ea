//! `kiln completions SHELL` (clap_complete) and `kiln man` (clap_mangen):
//! both generated from the same clap definition as the parser, so they
//! cannot drift from the flags kiln accepts.

use clap::CommandFactory;

use super::{Cli, Outcome, fail};

/// Arguments of `kiln completions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Prints the completion script for the shell.
pub fn run(args: Args) -> Outcome {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "kiln", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Outcome::Ok
}

/// Prints the man page `kiln(1)`: synopsis, global options, the command
/// list, and the exit codes (`kiln help COMMAND` has each command's options).
pub fn man() -> Outcome {
    let mut page = Vec::new();
    match clap_mangen::Man::new(Cli::command()).render(&mut page) {
        Ok(()) => {
            out!("{}", String::from_utf8_lossy(&page));
            Outcome::Ok
        }
        Err(e) => fail(Outcome::Failed, &e),
    }
}
