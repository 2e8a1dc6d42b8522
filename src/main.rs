//! The `xln` binary: parses the command line and calls into the library's modules.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    cli::init_logging(&cli);
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One line: the reason, with its causes.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
