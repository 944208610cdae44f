//! `twinmesh` — the agent daemon and command-line tool.
//!
//! Run `twinmesh --help` for the commands. Errors reach the user through
//! `anyhow` with context they can act on; everything below the CLI returns
//! typed errors.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
