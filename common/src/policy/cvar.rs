//! CVaR: minimise the conditional value at risk of each stage's finish time.
//!
//! For every candidate node the stage is "run" `cvar_runs` times: run time ×
//! a lognormal factor (mean 1, σ the node's learned jitter or the default),
//! and if the run's failure draw falls under the node's failure probability
//! the stage pays the recovery delay and runs again. The score is the mean
//! of the worst (1 − α) of the runs' finish times. Runs use **common random
//! numbers**: run k of every candidate sees the same normal and uniform
//! draws, so candidates differ by their nodes, not by luck. The draws are
//! stratified, so a 1-in-16 event appears once in 16 runs rather than
//! "maybe". Each run carries its predecessors' finish times of the same
//! run, so the tail of the whole path is what is minimised.

use super::greedy::cluster_arrivals;
use super::{Decision, PlanError, PolicyConfig, infeasible};
use crate::job::Job;
use crate::model::Format;
use crate::predict::Assignment;
use crate::rng::{seeded, stratified_normals, stratified_uniforms};
use crate::view::{FabricView, OriginIdx, allowed_by_arch};

pub(crate) fn decide(
    view: &FabricView,
    job: &Job,
    origin: OriginIdx,
    cfg: &PolicyConfig,
) -> Result<Decision, PlanError> {
    let t = &view.nodes;
    let k = cfg.cvar_runs.max(1);
    let nstages = job.stages.len();
    let mut rng = seeded(cfg.seed);
    let z = stratified_normals(&mut rng, k);
    let u = stratified_uniforms(&mut rng, k);
    let sigma = cfg.noise_sigma;
    let default_mult: Vec<f64> = z.iter().map(|z| (sigma * z - sigma * sigma / 2.0).exp()).collect();
    let tail = Tail::new(k, cfg.cvar_alpha);

    let mut assign = vec![Assignment { node: 0, format: Format::Native }; nstages];
    let mut finish_nom = vec![0.0; nstages];
    // finish[s * k + run]
    let mut finish = vec![0.0; nstages * k];
    let mut arrival = vec![0.0; view.latency.len()];
    let mut special = Vec::with_capacity(4);
    let mut cand = vec![0.0; k];
    let mut best_runs = vec![0.0; k];
    let mut mult = vec![0.0; k];
    let mut scratch = vec![0.0; k];
    let mut job_tail = 0.0;

    for &s in &job.topo {
        let st = &job.stages[s];
        let preds = &st.predecessors;
        let allowed = allowed_by_arch(&st.constraints);
        cluster_arrivals(view, job, origin, s, &assign, &finish_nom, &mut arrival, &mut special);
        let c = &st.compute;
        let mut best: Option<(usize, Format, f64, f64)> = None;
        for n in 0..t.len() {
            if !view.hosts(n, c) {
                continue;
            }
            let wait = view.wait_ms(n, c);
            if !wait.is_finite() {
                continue;
            }
            let Some((format, factor)) = view.best_format(n, &allowed) else { continue };
            let nominal = c.duration_ms * t.inv_speed[n] * factor;
            let p_fail = view.failure_probability(n, nominal, cfg.risk_horizon_ms);
            let m: &[f64] = if t.jitter_sigma[n] >= 0.0 {
                let sg = t.jitter_sigma[n];
                for (dst, z) in mult.iter_mut().zip(&z) {
                    *dst = (sg * z - sg * sg / 2.0).exp();
                }
                &mult
            } else {
                &default_mult
            };
            // Per-run ready time: first stages wait for the origin only.
            if preds.is_empty() {
                let r = view.origin_latency(origin, n);
                cand.fill(r);
            } else {
                cand.fill(0.0);
                for &p in preds {
                    let xfer = view.transfer_ms(assign[p].node, n, job.stages[p].output_mb);
                    let fp = &finish[p * k..(p + 1) * k];
                    for (dst, f) in cand.iter_mut().zip(fp) {
                        *dst = dst.max(f + xfer);
                    }
                }
            }
            for run in 0..k {
                cand[run] = cand[run].max(wait);
                let mut run_ms = nominal * m[run];
                if u[run] < p_fail {
                    run_ms += cfg.recovery_ms + nominal * m[run];
                }
                cand[run] += run_ms;
            }
            let score = tail.cvar(&cand, &mut scratch);
            if best.is_none_or(|(_, _, _, b)| score < b) {
                best = Some((n, format, nominal, score));
                best_runs.copy_from_slice(&cand);
            }
        }
        let (node, format, nominal, score) = best.ok_or_else(|| infeasible(view, job, s))?;
        assign[s] = Assignment { node, format };
        finish[s * k..(s + 1) * k].copy_from_slice(&best_runs);
        finish_nom[s] = crate::predict::ready_at(view, job, origin, s, node, &assign, &finish_nom)
            .max(view.wait_ms(node, c))
            + nominal;
        job_tail = f64::max(job_tail, score);
    }
    // The job's tail is that of its latest-finishing path, run by run.
    let mut last = vec![0.0f64; k];
    for s in 0..nstages {
        for run in 0..k {
            last[run] = last[run].max(finish[s * k + run]);
        }
    }
    job_tail = job_tail.max(tail.cvar(&last, &mut scratch));
    Ok(Decision { shadow: vec![None; nstages], assign, tail_latency_ms: Some(job_tail) })
}

/// The weights of CVaR over `k` equally likely runs: the worst
/// `(1 − α)·k` runs, the last one fractionally.
pub(crate) struct Tail {
    whole: usize,
    frac: f64,
    mass: f64,
}

impl Tail {
    pub(crate) fn new(k: usize, alpha: f64) -> Self {
        let mass = ((1.0 - alpha) * k as f64).clamp(1.0, k as f64);
        let whole = mass.floor() as usize;
        Tail { whole, frac: mass - whole as f64, mass }
    }

    /// Mean of the worst `mass` values of `v` (uses `scratch`).
    pub(crate) fn cvar(&self, v: &[f64], scratch: &mut [f64]) -> f64 {
        scratch.copy_from_slice(v);
        let need = self.whole + usize::from(self.frac > 0.0);
        // Partial selection: move the `need` largest to the front.
        for i in 0..need {
            let mut m = i;
            for j in i + 1..scratch.len() {
                if scratch[j] > scratch[m] {
                    m = j;
                }
            }
            scratch.swap(i, m);
        }
        let mut sum: f64 = scratch[..self.whole].iter().sum();
        if self.frac > 0.0 {
            sum += self.frac * scratch[self.whole];
        }
        sum / self.mass
    }
}

#[cfg(test)]
mod tests {
    use super::Tail;

    #[test]
    fn cvar_weights_the_worst_runs() {
        let v: Vec<f64> = (1..=16).map(f64::from).collect();
        let mut s = vec![0.0; 16];
        // α = 0.9 over 16 runs: worst 1.6 runs = (16 + 0.6·15) / 1.6.
        let c = Tail::new(16, 0.9).cvar(&v, &mut s);
        assert!((c - (16.0 + 0.6 * 15.0) / 1.6).abs() < 1e-12, "{c}");
        // α = 0.5: mean of the top 8.
        let c = Tail::new(16, 0.5).cvar(&v, &mut s);
        assert!((c - (9..=16).sum::<i32>() as f64 / 8.0).abs() < 1e-12);
    }
}
