//! Migrate off a queue: a stage that has not started and waits behind work
//! on its node long enough that its job is forecast to miss its deadline
//! moves to a node where it is expected to end sooner — the queueing half
//! of the migrate rule (the failure half is [`super::consider_migrations`]).

use super::{Decision, PreemptConfig, best_elsewhere, decide_move, predicted_finishes};
use crate::execution::{ExecConfig, Execution, StageState};
use crate::job::Job;
use crate::view::FabricView;

/// When the job is forecast to end (ms, absolute): its last stage's
/// predicted finish.
pub fn forecast_finish(job: &Job, exec: &Execution, view: &FabricView, now: f64) -> f64 {
    predicted_finishes(job, exec, view, now).into_iter().filter(|f| f.is_finite()).fold(now, f64::max)
}

/// Whether a job with a deadline is forecast to miss it: the rules are
/// asked then too, not only when a precursor shows.
pub fn late(job: &Job, exec: &Execution, view: &FabricView, now: f64) -> bool {
    !exec.is_done() && job.deadline_ms.is_some_and(|d| forecast_finish(job, exec, view, now) > exec.submitted() + d)
}

/// Stages of a job forecast to miss its deadline that are booked to start
/// later (queued behind work on their node) and would end earlier
/// elsewhere, best gain first. Failures are weighed as in the
/// failure rule: expected finish with `risk(node, until)`.
pub fn consider_requeues(
    job: &Job,
    exec: &Execution,
    view: &FabricView,
    now: f64,
    risk: &dyn Fn(usize, f64) -> f64,
    exec_cfg: &ExecConfig,
    cfg: &PreemptConfig,
) -> Vec<Decision> {
    let Some(deadline) = job.deadline_ms.map(|d| exec.submitted() + d) else { return Vec::new() };
    if exec.is_done() {
        return Vec::new();
    }
    let fin = predicted_finishes(job, exec, view, now);
    let end = fin.iter().copied().filter(|f| f.is_finite()).fold(now, f64::max);
    if end <= deadline {
        return Vec::new();
    }
    let mut out = Vec::new();
    for s in 0..exec.stage_count() {
        let t = exec.timing(s);
        // Booked to start later: its start is the owner's word, and the
        // other nodes' published waits do not hold it (a stage not yet
        // ready is counted in its node's wait, which would make staying
        // look worse than it is).
        let queued = t.state == StageState::Booked && t.start > now + cfg.migrate_cost_ms;
        if !queued || exec.replica_of(s).is_some() {
            continue;
        }
        let c = &job.stages[s].compute;
        let from = t.at.node;
        let run_from = view.compute_ms(from, c, t.at.format);
        let expected =
            |finish: f64, p: f64, run: f64| (1.0 - p) * finish + p * (finish + exec_cfg.failover_delay_ms + run);
        let p_stay = risk(from, fin[s]);
        let stay = expected(fin[s], p_stay, run_from);
        let Some(best) = best_elsewhere(job, exec, view, &fin, s, now, risk, exec_cfg, cfg) else { continue };
        out.extend(decide_move(s, from, stay, p_stay, best, 0.0, cfg, |to, _, gain, finish_to| {
            format!(
                "move queued stage '{}': on '{}' it ends in {:.0} ms and the job {:.0} ms after its deadline; on '{}' it ends in {:.0} ms ({:.0} ms earlier)",
                job.stages[s].id,
                view.nodes.name[from],
                fin[s] - now,
                end - deadline,
                view.nodes.name[to],
                finish_to - now,
                gain,
            )
        }));
    }
    out.sort_by(|a, b| b.gain_ms.total_cmp(&a.gain_ms));
    out
}
