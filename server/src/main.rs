//! The `ohassist` command: see `ohassist_server::cli`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    ohassist_server::cli::run(ohassist_server::cli::Cli::parse())
}
