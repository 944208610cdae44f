//! Resilient: maximise `reliability − w·latency` per stage (reliability =
//! the node's resiliency score, latency = the stage's finish time in ms,
//! w = 0.001 by default), and name a shadow node in another cluster — a
//! different failure domain — scored the same way, to fail over to.

use super::greedy::cluster_arrivals;
use super::{Decision, PlanError, PolicyConfig, infeasible};
use crate::job::Job;
use crate::model::Format;
use crate::predict::{Assignment, ready_at};
use crate::view::{FabricView, OriginIdx, allowed_by_arch};

pub(crate) fn decide(
    view: &FabricView,
    job: &Job,
    origin: OriginIdx,
    cfg: &PolicyConfig,
) -> Result<Decision, PlanError> {
    let t = &view.nodes;
    let nstages = job.stages.len();
    let w = cfg.latency_weight;
    let mut assign = vec![Assignment { node: 0, format: Format::Native }; nstages];
    let mut shadow = vec![None; nstages];
    let mut finish = vec![0.0; nstages];
    let mut arrival = vec![0.0; view.latency.len()];
    let mut special = Vec::with_capacity(4);
    // Scored candidates of the current stage: (node, format, finish, score).
    let mut scored: Vec<(usize, Format, f64, f64)> = Vec::with_capacity(t.len());
    for &s in &job.topo {
        let st = &job.stages[s];
        let allowed = allowed_by_arch(&st.constraints);
        cluster_arrivals(view, job, origin, s, &assign, &finish, &mut arrival, &mut special);
        let c = &st.compute;
        scored.clear();
        for n in 0..t.len() {
            if !view.hosts(n, c) {
                continue;
            }
            let Some((format, factor)) = view.best_format(n, &allowed) else { continue };
            let ready = if special.contains(&n) {
                ready_at(view, job, origin, s, n, &assign, &finish)
            } else {
                arrival[t.cluster[n] as usize]
            };
            let done = ready.max(view.wait_ms(n, c)) + c.duration_ms * t.inv_speed[n] * factor;
            if !done.is_finite() {
                continue;
            }
            scored.push((n, format, done, t.resiliency[n] - w * done));
        }
        let best = scored
            .iter()
            .copied()
            .reduce(|a, b| if b.3 > a.3 { b } else { a })
            .ok_or_else(|| infeasible(view, job, s))?;
        assign[s] = Assignment { node: best.0, format: best.1 };
        finish[s] = best.2;
        let domain = t.cluster[best.0];
        shadow[s] = scored
            .iter()
            .copied()
            .filter(|x| t.cluster[x.0] != domain)
            .reduce(|a, b| if b.3 > a.3 { b } else { a })
            .map(|x| Assignment { node: x.0, format: x.1 });
    }
    Ok(Decision { assign, shadow, tail_latency_ms: None })
}
