//! Command-line interface: one clap struct per command, every flag also
//! readable from a `TWINMESH_*` environment variable.

pub mod agent;
mod bench;
mod client;
pub mod config;
mod demo;
mod manners;
mod plan;
pub mod port;
mod reaction;
mod service;
mod soak;
mod whatif;
pub mod work;

use clap::{Parser, Subcommand, ValueEnum};
pub use manners::{ColorWhen, parse};

/// twinmesh: predictive placement on a digital twin of a cloud–edge fabric.
#[derive(Debug, Parser)]
#[command(name = "twinmesh", version, about, args_override_self = true)]
pub struct Cli {
    /// Colour in logs, help and errors: `auto` (on a terminal, unless the
    /// NO_COLOR variable is set), `always` or `never`.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = manners::ColorWhen::Auto)]
    pub color: manners::ColorWhen,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Plan a job on a fabric and print the placement and predictions.
    Plan(plan::PlanArgs),
    /// Run the agent: mesh, store, API, telemetry, actuator.
    Agent(Box<agent::AgentArgs>),
    /// Submit a job to a running agent.
    Submit(client::SubmitArgs),
    /// Print a running agent's twin.
    Twin(client::TwinArgs),
    /// Run a local mesh of seven agents on the embedded fabric and a stream of jobs.
    Demo(demo::DemoArgs),
    /// Agent benchmarks (gossip delivery, API, idle footprint).
    Bench(bench::BenchArgs),
    /// What a stage pod runs: keep a CPU busy for a while and report it.
    Work(work::WorkArgs),
    /// Print a shell completion script (e.g. `twinmesh completions bash >
    /// /etc/bash_completion.d/twinmesh`).
    Completions(manners::CompletionsArgs),
    /// Print the manual page (roff), or write one per command to a
    /// directory (`--dir`).
    Man(manners::ManArgs),
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
        Command::Agent(args) => runtime()?.block_on(agent::run(*args, agent::terminated())),
        Command::Submit(args) => runtime()?.block_on(client::submit(args)),
        Command::Twin(args) => runtime()?.block_on(client::twin(args)),
        Command::Demo(args) => runtime()?.block_on(demo::run(args)),
        Command::Bench(args) => runtime()?.block_on(bench::run(args)),
        Command::Work(args) => work::run(args),
        Command::Completions(args) => manners::completions(&args),
        Command::Man(args) => manners::man(&args),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
