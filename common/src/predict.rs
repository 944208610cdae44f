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

/// A prediction's interval: the median and 90th-percentile latency (from
/// submission) and energy.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Interval {
    /// Median latency (ms).
    pub p50_ms: f64,
    /// 90th-percentile latency (ms).
    pub p90_ms: f64,
    /// Median energy (J).
    pub p50_j: f64,
    /// 90th-percentile energy (J).
    pub p90_j: f64,
}

/// Runs drawn for an [`interval`] by default.
pub const INTERVAL_RUNS: usize = 64;

/// The interval an agent states for job `job` in `windows`: [`interval`]
/// with [`INTERVAL_RUNS`] draws seeded by the job's name (the same job
/// gets the same interval), σ 0.15 where a node's spread is not learned,
/// and the 90th percentiles no lower than the medians.
pub fn stated_interval(
    view: &FabricView,
    job: &Job,
    assign: &[Assignment],
    windows: &[(f64, f64)],
    submit: f64,
) -> Interval {
    let seed = job.name.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let iv = interval(view, job, assign, windows, submit, 0.15, INTERVAL_RUNS, seed);
    Interval { p90_ms: iv.p90_ms.max(iv.p50_ms), p90_j: iv.p90_j.max(iv.p50_j), ..iv }
}

/// The latency and energy quantiles of a job whose stages hold `windows`
/// (start, end; ms, absolute: the windows its owners reserved, or the
/// plan's), submitted at `submit`: Monte Carlo over each stage's run time
/// × a lognormal factor of mean 1 with its node's learned spread
/// (`jitter_sigma`; `default_sigma` where nothing was learned), stratified
/// so `runs` draws cover the tails. A stage starts at its window, or when
/// its inputs are there if later (a late predecessor pushes it; an early
/// one gains nothing, since the room before its window may be taken).
#[allow(clippy::too_many_arguments)]
pub fn interval(
    view: &FabricView,
    job: &Job,
    assign: &[Assignment],
    windows: &[(f64, f64)],
    submit: f64,
    default_sigma: f64,
    runs: usize,
    seed: u64,
) -> Interval {
    use crate::rng::{seeded, stratified_normals};
    let n = job.stages.len();
    let runs = runs.max(1);
    let mut rng = seeded(seed);
    // One stratified column of normals per stage, shuffled independently.
    let z: Vec<Vec<f64>> = (0..n).map(|_| stratified_normals(&mut rng, runs)).collect();
    let mut lat = Vec::with_capacity(runs);
    let mut energy = Vec::with_capacity(runs);
    let mut finish = vec![0.0; n];
    #[allow(clippy::needless_range_loop)] // r indexes every stage's column
    for r in 0..runs {
        let mut e = 0.0;
        for &s in &job.topo {
            let a = assign[s];
            let (w0, w1) = windows[s];
            let j = view.nodes.jitter_sigma[a.node];
            let sg = if j >= 0.0 { j } else { default_sigma };
            let d = (w1 - w0) * (sg * z[s][r] - sg * sg / 2.0).exp();
            let mut start = w0;
            for &p in &job.stages[s].predecessors {
                start = start.max(finish[p] + view.transfer_ms(assign[p].node, a.node, job.stages[p].output_mb));
            }
            finish[s] = start + d;
            e += view.energy_j(a.node, &job.stages[s].compute, d);
        }
        lat.push(finish.iter().copied().fold(submit, f64::max) - submit);
        energy.push(e);
    }
    let q = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
    };
    Interval {
        p50_ms: q(&mut lat, 0.5),
        p90_ms: q(&mut lat, 0.9),
        p50_j: q(&mut energy, 0.5),
        p90_j: q(&mut energy, 0.9),
    }
}

#[cfg(test)]
mod interval_tests {
    use super::*;
    use crate::testkit::{one_stage, tiny, view_of};

    #[test]
    fn interval_widens_with_the_learned_spread() {
        // Rule: one 1,000 ms stage (window [1, 1001)) on a node with no
        // spread is exactly 1,001 ms at p50 and p90; with σ = 0.1 the p90
        // is near exp(1.2816·0.1 − 0.005) ≈ 1.131 × the run, and the
        // median near exp(−0.005) ≈ 0.995 ×.
        let f = tiny();
        let mut v = view_of(&f);
        let j = one_stage("a", 1.0, 1000.0);
        let n = v.node_index("a-one-01").unwrap();
        let a = [Assignment { node: n, format: Format::Native }];
        v.nodes.jitter_sigma[n] = 0.0;
        let i = interval(&v, &j, &a, &[(1.0, 1001.0)], 0.0, 0.15, 256, 1);
        assert_eq!((i.p50_ms, i.p90_ms), (1001.0, 1001.0));
        v.nodes.jitter_sigma[n] = 0.1;
        let i = interval(&v, &j, &a, &[(1.0, 1001.0)], 0.0, 0.15, 256, 1);
        assert!((i.p90_ms - 1.0 - 1000.0 * 1.1315).abs() < 8.0, "{i:?}");
        assert!((i.p50_ms - 1.0 - 1000.0 * 0.995).abs() < 8.0, "{i:?}");
        assert!(i.p90_j > i.p50_j);
    }
}
