//! Greedy-latency: each stage, in topological order, goes where it would
//! finish earliest.
//!
//! The inner loop is over nodes and must be cheap (a 1,000-node fabric is
//! planned in microseconds), so arrival times are computed once per
//! *cluster*; the few nodes where that over-estimates (the origin node, the
//! nodes of predecessors, where no transfer is needed) are re-checked
//! exactly afterwards.

use super::{Decision, PlanError, infeasible};
use crate::job::Job;
use crate::model::Format;
use crate::predict::{Assignment, ready_at};
use crate::view::{FabricView, OriginIdx, allowed_by_arch};

pub(crate) fn decide(view: &FabricView, job: &Job, origin: OriginIdx) -> Result<Decision, PlanError> {
    let t = &view.nodes;
    let nstages = job.stages.len();
    let mut assign = vec![Assignment { node: 0, format: Format::Native }; nstages];
    let mut finish = vec![0.0; nstages];
    let mut arrival = vec![0.0; view.latency.len()];
    let mut special: Vec<usize> = Vec::with_capacity(4);
    for &s in &job.topo {
        let st = &job.stages[s];
        let allowed = allowed_by_arch(&st.constraints);
        cluster_arrivals(view, job, origin, s, &assign, &finish, &mut arrival, &mut special);
        let c = &st.compute;
        let mut best: Option<(usize, Format, f64)> = None;
        for n in 0..t.len() {
            if !view.hosts(n, c) {
                continue;
            }
            let Some((format, factor)) = view.best_format(n, &allowed) else { continue };
            let start = arrival[t.cluster[n] as usize].max(view.wait_ms(n, c));
            let done = start + c.duration_ms * t.inv_speed[n] * factor;
            if done.is_finite() && best.is_none_or(|(_, _, b)| done < b) {
                best = Some((n, format, done));
            }
        }
        for &n in &special {
            if !view.hosts(n, c) {
                continue;
            }
            let Some((format, factor)) = view.best_format(n, &allowed) else { continue };
            let start = ready_at(view, job, origin, s, n, &assign, &finish).max(view.wait_ms(n, c));
            let done = start + c.duration_ms * t.inv_speed[n] * factor;
            if done.is_finite() && best.is_none_or(|(bn, _, b)| done < b || (done == b && n < bn)) {
                best = Some((n, format, done));
            }
        }
        let (node, format, done) = best.ok_or_else(|| infeasible(view, job, s))?;
        assign[s] = Assignment { node, format };
        finish[s] = done;
    }
    Ok(Decision { shadow: vec![None; nstages], assign, tail_latency_ms: None })
}

/// Fills `arrival[c]`: when stage `s`'s inputs reach any node of cluster
/// `c` that is neither the origin node nor a predecessor's node; those
/// nodes go into `special` for an exact check.
#[allow(clippy::too_many_arguments)]
pub(crate) fn cluster_arrivals(
    view: &FabricView,
    job: &Job,
    origin: OriginIdx,
    s: usize,
    assign: &[Assignment],
    finish: &[f64],
    arrival: &mut [f64],
    special: &mut Vec<usize>,
) {
    special.clear();
    let preds = &job.stages[s].predecessors;
    if preds.is_empty() {
        for (c, a) in arrival.iter_mut().enumerate() {
            *a = view.latency.latency(origin.cluster, c);
        }
        if let Some(n) = origin.node {
            special.push(n);
        }
        return;
    }
    arrival.fill(0.0);
    for &p in preds {
        let from = view.nodes.cluster[assign[p].node] as usize;
        let mb = job.stages[p].output_mb;
        for (c, a) in arrival.iter_mut().enumerate() {
            *a = a.max(finish[p] + view.latency.transfer_ms(from, c, mb));
        }
        if !special.contains(&assign[p].node) {
            special.push(assign[p].node);
        }
    }
}
