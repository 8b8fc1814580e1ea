//! The `kiln` command: parses arguments, sets up logging, runs one command of
//! the library, and maps the outcome to its documented exit code
//! (`cli::output::Outcome`).

mod cli;

fn main() -> std::process::ExitCode {
    cli::output::quiet_broken_pipe_panics();
    let args = match cli::parse() {
        Ok(args) => args,
        Err(outcome) => return outcome.into(),
    };
    cli::init_tracing(args.verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            let failure = cli::output::Failure::message("cannot start the async runtime");
            let failure = cli::output::Failure {
                causes: vec![e.to_string()],
                ..failure
            };
            return cli::output::print_failure(cli::Outcome::Failed, &failure).into();
        }
    };
    cli::output::finish(runtime.block_on(cli::run(args))).into()
}
