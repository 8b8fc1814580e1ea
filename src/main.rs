//! The `kiln` command: parses arguments, sets up logging, runs one command of
//! the library, and maps the outcome to an exit code (0 ok, 1 failed, 2 usage).

mod cli;

fn main() -> std::process::ExitCode {
    let args = <cli::Cli as clap::Parser>::parse();
    cli::init_tracing(args.verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    runtime.block_on(cli::run(args)).into()
}
