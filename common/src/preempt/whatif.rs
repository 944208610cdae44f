//! What the twin would do: a job's plan run on the twin's view (the DES,
//! exact) to a given moment, and the preemptive rules asked then, with
//! precursors seen where the caller says. Behind `twinmesh plan --what-if`.

use serde::Serialize;

use super::{Decision, PreemptConfig, consider_migrations, consider_replicas, next_action};
use crate::des::{SimConfig, Simulator};
use crate::execution::{ExecConfig, StageState, placed};
use crate::forecast::{ForecastConfig, node_risk};
use crate::job::Job;
use crate::plan::Plan;
use crate::view::FabricView;

/// Where each stage stands at the moment looked at.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageAt {
    /// Stage id.
    pub stage: String,
    /// `waiting`, `booked`, `running`, `done`.
    pub state: &'static str,
    /// Its node.
    pub node: String,
    /// The forecast P(its node fails before the stage ends).
    pub risk: f64,
}

/// A decision as reported.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    /// `migrate`, `restart` or `replicate`.
    pub action: &'static str,
    /// The stage.
    pub stage: String,
    /// From, to.
    pub from: String,
    /// Where it would go (or the replica run).
    pub to: String,
    /// Expected finish gained (ms), cost (ms), work (core-ms).
    pub gain_ms: f64,
    /// What it costs (ms).
    pub cost_ms: f64,
    /// Work it may spend for nothing (core-ms).
    pub work_core_ms: f64,
    /// Why.
    pub reason: String,
}

/// What the twin would do at `at_ms` of the job.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WhatIf {
    /// Job time looked at (ms from submission).
    pub at_ms: f64,
    /// Each stage then.
    pub stages: Vec<StageAt>,
    /// Every action the rules find worth it, best gain first.
    pub candidates: Vec<Candidate>,
    /// The one the agent would take (guard rails aside).
    pub action: Option<Candidate>,
}

/// Runs `plan` of `job` on `view` (exact, no failures) from 0 to `at_ms`,
/// then asks the rules, with node `n`'s latest precursor at
/// `precursors[n]` (job ms).
pub fn what_if(
    job: &Job,
    view: &FabricView,
    plan: &Plan,
    at_ms: f64,
    precursors: &[Option<f64>],
    forecast: &ForecastConfig,
    cfg: &PreemptConfig,
) -> Result<WhatIf, String> {
    let p = placed(view, &job.name, plan)?;
    let origin =
        view.origin(job).ok_or_else(|| format!("origin cluster '{}' is not in the fabric", job.origin.cluster))?;
    let mut sim = Simulator::new(view, SimConfig::exact());
    sim.submit(job, origin, &p.assign, &p.shadow, 0.0);
    sim.run_until(at_ms);
    let (_, exec) = sim.job(0);
    let risk = node_risk(&view.nodes.resiliency, precursors, at_ms, forecast);
    let x = ExecConfig::default();
    let fin = super::predicted_finishes(job, exec, view, at_ms);
    let stages = (0..exec.stage_count())
        .map(|s| {
            let t = exec.timing(s);
            let state = match t.state {
                StageState::Done => "done",
                StageState::Booked if t.start <= at_ms => "running",
                StageState::Booked | StageState::Booking => "booked",
                StageState::Waiting => "waiting",
                StageState::Abandoned => "abandoned",
            };
            let r = if t.state == StageState::Done { 0.0 } else { risk(t.at.node, fin[s]) };
            StageAt { stage: job.stages[s].id.clone(), state, node: view.nodes.name[t.at.node].clone(), risk: r }
        })
        .collect();
    let describe = |d: &Decision| {
        let action = d.action.kind(exec, at_ms);
        let (s, from, to) = match d.action {
            super::Action::Migrate { stage, from, to } => (stage, from, to.node),
            super::Action::Replicate { stage, from, on } => (stage, from, on.node),
        };
        Candidate {
            action,
            stage: job.stages[s].id.clone(),
            from: view.nodes.name[from].clone(),
            to: view.nodes.name[to].clone(),
            gain_ms: d.gain_ms,
            cost_ms: d.cost_ms,
            work_core_ms: d.work_core_ms,
            reason: d.reason.clone(),
        }
    };
    let mut all = Vec::new();
    if !super::warned(exec, precursors, at_ms, forecast.lead_ms) {
        return Ok(WhatIf { at_ms, stages, candidates: Vec::new(), action: None });
    }
    all.extend(consider_migrations(job, exec, view, at_ms, &risk, &x, cfg));
    if cfg.replicate {
        all.extend(consider_replicas(job, exec, view, at_ms, &risk, &x, cfg));
    }
    all.sort_by(|a, b| b.gain_ms.total_cmp(&a.gain_ms));
    let action = next_action(job, exec, view, at_ms, &risk, &x, cfg, &mut |_| true);
    Ok(WhatIf { at_ms, stages, candidates: all.iter().map(describe).collect(), action: action.as_ref().map(describe) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Policy, PolicyConfig};
    use crate::testkit::{one_stage, tiny};

    // Rule: halfway through a long stage, a precursor on its node makes the
    // twin act (the same decision an agent's execution would take); the
    // same moment without the precursor, or after the stage ended, nothing.
    #[test]
    fn a_precursor_on_the_running_stage_makes_the_twin_act() {
        let f = tiny();
        let v = f.view();
        let j = one_stage("a", 1.0, 20_000.0);
        let mut plan = Policy::Greedy.plan(&v, &j, &PolicyConfig::default()).unwrap();
        // Placed on the slow node (40 s of run): b-fast-01 would take 10 s.
        plan.placements[0].node = "a-slow-01".into();
        plan.placements[0].cluster = "a".into();
        plan.shadow[0] = None;
        let node = v.node_index(&plan.placements[0].node).unwrap();
        let fc = ForecastConfig { precursor_precision: 0.9, ..ForecastConfig::default() };
        let mut seen = vec![None; v.nodes.len()];
        seen[node] = Some(2_000.0);
        let cfg = PreemptConfig::default();
        let w = what_if(&j, &v, &plan, 2_000.0, &seen, &fc, &cfg).unwrap();
        assert_eq!(w.stages[0].state, "running");
        assert!(w.stages[0].risk > 0.5, "{w:?}");
        let a = w.action.clone().expect("the twin acts");
        assert_eq!(a.from, plan.placements[0].node);
        assert!(a.action == "restart" || a.action == "replicate", "{a:?}");
        assert_eq!(w.candidates[0].gain_ms, w.candidates.iter().map(|c| c.gain_ms).fold(f64::MIN, f64::max));
        let calm = what_if(&j, &v, &plan, 2_000.0, &vec![None; v.nodes.len()], &fc, &cfg).unwrap();
        assert!(calm.action.is_none() && calm.candidates.is_empty(), "{calm:?}");
        let after = what_if(&j, &v, &plan, 60_000.0, &seen, &fc, &cfg).unwrap();
        // (40 s of run from ~1 ms: done by 60 s.)
        assert_eq!(after.stages[0].state, "done");
        assert!(after.action.is_none());
    }
}
