//! What `twinmesh-sims mesh` takes.

/// Arguments of `mesh`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Agents.
    #[arg(long, default_value_t = 1000)]
    pub agents: usize,
    /// Node records in the twin (each owned by one agent; the other agents
    /// own none). Default: as many as agents, at most 1,000.
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Simulated seconds.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Probability that a message is lost.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Cut a share of the agents off the rest: `SHARE@FROM-TO` (seconds),
    /// e.g. `0.3@10-20`.
    #[arg(long)]
    pub partition: Option<String>,
    /// Gossip mesh degree.
    #[arg(long, default_value_t = 6)]
    pub degree: usize,
    /// Record updates published per simulated second (by random owners).
    #[arg(long, default_value_t = 2.0)]
    pub updates_per_s: f64,
    /// Jobs submitted per simulated second (to random agents, from random
    /// clusters), routed, planned and run through the agents' own code.
    #[arg(long, default_value_t = 1.0)]
    pub jobs_per_s: f64,
    /// Updates and jobs stop this many seconds before the end, so replicas can
    /// settle and convergence be checked.
    #[arg(long, default_value_t = 5.0)]
    pub settle: f64,
    /// Run times of the simulated jobs' stages, times 0.3 s, 0.9 s and
    /// 0.1 s.
    #[arg(long, default_value_t = 1.0)]
    pub job_scale: f64,
    /// Seconds a run's node may have its owner unreachable before the run
    /// fails over (the agent's `--failover-grace`).
    #[arg(long, default_value_t = 10.0)]
    pub failover_grace: f64,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output.
    #[arg(long, value_enum, default_value_t = Output_::Text)]
    pub output: Output_,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output_ {
    /// A table.
    Text,
    /// One JSON object.
    Json,
}
