//! twinmesh experiments on a virtual clock.
//!
//! `twinmesh-sims policies` runs the same stream of jobs through the
//! discrete-event simulator once per policy and reports latency, energy,
//! failures and deadline hits, so every policy is measured against the
//! kube-scheduler-like baseline on identical arrivals and identical luck.
//!
//! `twinmesh-sims preemptive` runs each job stream over one timeline of
//! node failures once per arm: failing over after the fact, also moving
//! stages ahead of forecast failures and off queues when a job is forecast
//! late, also racing hot replicas, and also scaling a hosted service on the
//! twin's forecast — across
//! offered load and precursor reliability.
//!
//! `twinmesh-sims autoscale` scales a service through KubeTwin's scenario:
//! a fixed minimum, the reactive HPA rule, and the twin's predictive
//! scaling.
//!
//! `twinmesh-sims run <name>|all` runs the experiments of
//! docs/experiments.md (the seed's V1–V6, E7–E12) with replications and
//! summary statistics.
//!
//! `twinmesh-sims mesh` runs N agents' protocol (`common::replica`, the
//! code the agent runs) on a virtual clock and a simulated network.
//!
//! `twinmesh-sims scenario FILE` runs a scripted scenario with a few named
//! agents and lists the job protocol's decisions, as the agents log them.

mod autoscale;
mod experiments;
mod mesh;
mod policies;
mod preemptive;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "twinmesh-sims", about = "twinmesh experiments on a virtual clock")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compare the four policies on one job stream.
    Policies(policies::Args),
    /// Many agents' protocol on a simulated network: convergence, traffic,
    /// liveness, routing.
    Mesh(mesh::Args),
    /// A scripted scenario (a few named agents; submit, pause, resume,
    /// cut, heal, wait): the job protocol's decisions, as the agents log
    /// them (`TWINMESH_LOG=twinmesh::decision=debug`).
    Scenario(mesh::scenario::ScenarioArgs),
    /// Preemptive actions (migrate, replicate) against reactive failover on
    /// the same node failures (with precursors and false alarms), across
    /// load and precursor reliability.
    #[command(alias = "preempt")]
    Preemptive(preemptive::Args),
    /// KubeTwin's autoscaling scenario: fixed, reactive HPA and predictive
    /// scaling of a service (replicas over time, latency, replica-seconds).
    Autoscale(autoscale::Args),
    /// Run an experiment (or `all`, or `list` them) with replications:
    /// raw CSV, summary statistics, a plot and its verdict on the targets.
    Run(experiments::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Policies(a) => policies::run(a),
        Command::Mesh(a) => mesh::run(a),
        Command::Scenario(a) => mesh::scenario::run(a),
        Command::Preemptive(a) => preemptive::run(a),
        Command::Autoscale(a) => autoscale::run(a),
        Command::Run(a) => experiments::run(a),
    }
}
