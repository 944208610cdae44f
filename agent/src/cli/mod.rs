//! Command-line interface: one clap struct per command, every flag also
//! readable from a `TWINMESH_*` environment variable.

mod plan;

use clap::{Parser, Subcommand, ValueEnum};

/// twinmesh: predictive placement on a digital twin of a cloud–edge fabric.
#[derive(Debug, Parser)]
#[command(name = "twinmesh", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Plan a job on a fabric and print the placement and predictions.
    Plan(plan::PlanArgs),
}

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned text for people.
    #[default]
    Text,
    /// One JSON object on stdout.
    Json,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Plan(args) => plan::run(args),
    }
}
