//! Entry point: parse the command line and hand it to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    wharf::cli::run(wharf::cli::Cli::parse())
}
