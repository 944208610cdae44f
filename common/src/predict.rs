//! The predictor: nominal latency, energy, risk and deadline slack of a
//! placement, on the twin's view of the fabric.
//!
//! "Nominal" means no noise and no failures: the expected run with the
//! twin's current speeds, format overheads and calibration. Risk is the
//! probability that some stage's node fails while the stage runs. The DES
//! ([`crate::des`]) adds queueing, noise and failures on top of the same
//! formulas, so the two agree exactly when those are switched off.

use crate::job::Job;
use crate::model::Format;
use crate::plan::{Prediction, StageTiming};
use crate::view::{FabricView, OriginIdx};

/// A stage's placement as indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// Dense node id.
    pub node: usize,
    /// Execution format.
    pub format: Format,
}

/// When stage `s`'s inputs are on node `n`: origin latency for a first
/// stage, else the latest predecessor finish plus its transfer.
#[inline]
pub fn ready_at(
    view: &FabricView,
    job: &Job,
    origin: OriginIdx,
    s: usize,
    n: usize,
    assign: &[Assignment],
    finish: &[f64],
) -> f64 {
    let preds = &job.stages[s].predecessors;
    if preds.is_empty() {
        return view.origin_latency(origin, n);
    }
    let mut t: f64 = 0.0;
    for &p in preds {
        let arrive = finish[p] + view.transfer_ms(assign[p].node, n, job.stages[p].output_mb);
        t = t.max(arrive);
    }
    t
}

/// Scores a complete assignment. `risk_horizon_ms` turns resiliency into a
/// failure probability (see [`FabricView::failure_probability`]).
pub fn score_plan(
    view: &FabricView,
    job: &Job,
    origin: OriginIdx,
    assign: &[Assignment],
    risk_horizon_ms: f64,
) -> Prediction {
    let n = job.stages.len();
    let mut finish = vec![0.0; n];
    let mut timing: Vec<Option<StageTiming>> = vec![None; n];
    let mut energy = 0.0;
    let mut survive = 1.0;
    for &s in &job.topo {
        let a = assign[s];
        let stage = &job.stages[s];
        let ready = ready_at(view, job, origin, s, a.node, assign, &finish);
        let start = ready.max(view.wait_ms(a.node, &stage.compute));
        let compute = view.compute_ms(a.node, &stage.compute, a.format);
        finish[s] = start + compute;
        let e = view.energy_j(a.node, &stage.compute, compute);
        energy += e;
        survive *= 1.0 - view.failure_probability(a.node, compute, risk_horizon_ms);
        timing[s] = Some(StageTiming {
            stage: stage.id.clone(),
            ready_ms: ready,
            start_ms: start,
            finish_ms: finish[s],
            compute_ms: compute,
            energy_j: e,
        });
    }
    let latency = finish.iter().copied().fold(0.0, f64::max);
    let slack = job.deadline_ms.map(|d| d - latency);
    Prediction {
        latency_ms: latency,
        energy_j: energy,
        risk: 1.0 - survive,
        deadline_ms: job.deadline_ms,
        deadline_slack_ms: slack,
        meets_deadline: slack.is_none_or(|s| s >= 0.0),
        tail_latency_ms: None,
        stages: timing.into_iter().map(|t| t.expect("topo covers every stage")).collect(),
    }
}
