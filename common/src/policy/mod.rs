//! Placement policies.
//!
//! * [`Policy::Baseline`] behaves like the default kube-scheduler: filter
//!   nodes that fit, score by least-allocated, no idea of origin, latency or
//!   prediction. Every claim twinmesh makes is measured against it.
//! * [`Policy::Greedy`] puts each stage (in topological order) where it
//!   would finish earliest: origin latency for the first stage, transfers
//!   after, run time with the best format.
//! * [`Policy::Resilient`] maximises `reliability − w·latency` (w = 0.001
//!   per ms) and adds a shadow placement on another failure domain.
//! * [`Policy::Cvar`] minimises the conditional value at risk of the
//!   finish time over Monte Carlo runs (lognormal noise σ = 0.15, α = 0.9,
//!   16 runs, failures drawn from resiliency), with common random numbers
//!   across candidates so they are compared on the same luck.
//!
//! All but the baseline are origin-aware and deadline-aware: when a plan
//! misses the job's deadline and the greedy plan would meet it, the greedy
//! plan is used and the plan's notes say so.

mod baseline;
mod cvar;
mod greedy;
mod resilient;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::job::Job;
use crate::plan::{Placement, Plan};
use crate::predict::{Assignment, score_plan};
use crate::view::{FabricView, OriginIdx, allowed_by_arch};

/// A placement policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// kube-scheduler-like: fit + least allocated.
    Baseline,
    /// Earliest finish.
    Greedy,
    /// Reliability − w·latency, with a shadow plan.
    Resilient,
    /// Lowest CVaR of finish time.
    Cvar,
}

impl Policy {
    /// Every policy.
    pub const ALL: [Policy; 4] = [Policy::Baseline, Policy::Greedy, Policy::Resilient, Policy::Cvar];

    /// The name used on the command line and in documents.
    pub const fn as_str(self) -> &'static str {
        match self {
            Policy::Baseline => "baseline",
            Policy::Greedy => "greedy",
            Policy::Resilient => "resilient",
            Policy::Cvar => "cvar",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "baseline" | "kube" => Ok(Policy::Baseline),
            "greedy" | "greedy-latency" => Ok(Policy::Greedy),
            "resilient" => Ok(Policy::Resilient),
            "cvar" => Ok(Policy::Cvar),
            other => Err(format!("unknown policy '{other}' (expected baseline, greedy, resilient or cvar)")),
        }
    }
}

/// Tunables shared by the policies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyConfig {
    /// Monte Carlo runs per candidate (CVaR).
    pub cvar_runs: usize,
    /// CVaR confidence level: the mean of the worst (1 − α) of runs.
    pub cvar_alpha: f64,
    /// Default lognormal σ of run times.
    pub noise_sigma: f64,
    /// Seed for the Monte Carlo draws.
    pub seed: u64,
    /// Resiliency r means surviving this long with probability r (ms).
    pub risk_horizon_ms: f64,
    /// Delay before a failed stage reruns (ms).
    pub recovery_ms: f64,
    /// Weight of latency (per ms) against reliability (resilient).
    pub latency_weight: f64,
    /// Fall back to greedy when a plan misses the deadline and greedy
    /// meets it.
    pub deadline_fallback: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            cvar_runs: 16,
            cvar_alpha: 0.9,
            noise_sigma: 0.15,
            seed: 0x7E57_u64,
            risk_horizon_ms: 60_000.0,
            recovery_ms: 5_000.0,
            latency_weight: 0.001,
            deadline_fallback: true,
        }
    }
}

/// Why no plan could be made.
#[derive(Debug, Error, Clone, PartialEq, Serialize, Deserialize)]
pub enum PlanError {
    /// The origin cluster is not in the fabric.
    #[error("metadata.origin.cluster: cluster '{0}' is not in the fabric")]
    UnknownOrigin(String),
    /// No node can run a stage.
    #[error("stage '{stage}': no feasible node: {reason}")]
    NoFeasibleNode {
        /// Stage id.
        stage: String,
        /// Why, in numbers.
        reason: String,
    },
}

/// A policy's raw decision: primary and shadow assignments.
pub(crate) struct Decision {
    pub assign: Vec<Assignment>,
    pub shadow: Vec<Option<Assignment>>,
    pub tail_latency_ms: Option<f64>,
}

impl Policy {
    /// Plans `job` on `view`.
    pub fn plan(&self, view: &FabricView, job: &Job, cfg: &PolicyConfig) -> Result<Plan, PlanError> {
        let origin = view.origin(job).ok_or_else(|| PlanError::UnknownOrigin(job.origin.cluster.clone()))?;
        let mut decision = self.decide(view, job, origin, cfg)?;
        let mut predicted = score_plan(view, job, origin, &decision.assign, cfg.risk_horizon_ms);
        let mut notes = Vec::new();
        if *self != Policy::Baseline && *self != Policy::Greedy && cfg.deadline_fallback && !predicted.meets_deadline {
            let fast = greedy::decide(view, job, origin)?;
            let fast_pred = score_plan(view, job, origin, &fast.assign, cfg.risk_horizon_ms);
            if fast_pred.meets_deadline {
                notes.push(format!(
                    "{self} plan would take {:.0} ms, past the {:.0} ms deadline; used the greedy-latency plan ({:.0} ms)",
                    predicted.latency_ms,
                    job.deadline_ms.unwrap_or(0.0),
                    fast_pred.latency_ms
                ));
                decision.assign = fast.assign;
                decision.tail_latency_ms = None;
                predicted = fast_pred;
            }
        }
        predicted.tail_latency_ms = decision.tail_latency_ms;
        if !predicted.meets_deadline {
            notes.push(format!(
                "predicted latency {:.0} ms exceeds the {:.0} ms deadline",
                predicted.latency_ms,
                job.deadline_ms.unwrap_or(0.0)
            ));
        }
        let placement = |s: usize, a: Assignment| Placement {
            stage: job.stages[s].id.clone(),
            node: view.nodes.name[a.node].clone(),
            cluster: view.cluster_name(a.node).to_string(),
            format: a.format,
        };
        Ok(Plan {
            job: job.name.clone(),
            policy: *self,
            placements: decision.assign.iter().enumerate().map(|(s, a)| placement(s, *a)).collect(),
            shadow: decision.shadow.iter().enumerate().map(|(s, a)| a.map(|a| placement(s, a))).collect(),
            predicted,
            notes,
        })
    }

    /// The raw decision, without prediction or names.
    pub(crate) fn decide(
        &self,
        view: &FabricView,
        job: &Job,
        origin: OriginIdx,
        cfg: &PolicyConfig,
    ) -> Result<Decision, PlanError> {
        match self {
            Policy::Baseline => baseline::decide(view, job),
            Policy::Greedy => greedy::decide(view, job, origin),
            Policy::Resilient => resilient::decide(view, job, origin, cfg),
            Policy::Cvar => cvar::decide(view, job, origin, cfg),
        }
    }
}

/// Explains why no node can run stage `s` (slow path, only on failure).
pub(crate) fn infeasible(view: &FabricView, job: &Job, s: usize) -> PlanError {
    let st = &job.stages[s];
    let allowed = allowed_by_arch(&st.constraints);
    let t = &view.nodes;
    let total = t.len();
    let not_ready = (0..total).filter(|&n| !t.ready[n]).count();
    let no_format = (0..total).filter(|&n| t.ready[n] && view.best_format(n, &allowed).is_none()).count();
    let usable: Vec<usize> = (0..total).filter(|&n| t.ready[n] && view.best_format(n, &allowed).is_some()).collect();
    let max_cpu = usable.iter().map(|&n| t.free_cpu[n]).fold(0.0, f64::max);
    let max_mem = usable.iter().map(|&n| t.free_mem[n]).fold(0.0, f64::max);
    let max_vram = usable.iter().map(|&n| t.free_vram[n]).fold(0.0, f64::max);
    let cap_cpu = usable.iter().map(|&n| t.alloc_cpu[n]).fold(0.0, f64::max);
    let c = &st.compute;
    PlanError::NoFeasibleNode {
        stage: st.id.clone(),
        reason: format!(
            "{total} nodes, {not_ready} not ready, {no_format} without a usable format; needs cpu {} / mem {} GB / vram {} GB, most free on a usable node: cpu {max_cpu} / mem {max_mem} GB / vram {max_vram} GB (largest: cpu {cap_cpu}); busy nodes without a known backlog are not candidates",
            c.cpu, c.mem_gb, c.gpu_vram_gb
        ),
    }
}

#[cfg(test)]
mod tests;
