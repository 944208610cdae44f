//! Preemptive actions: from the forecast, move work off a node before it
//! fails — not after.
//!
//! A decision is a pure function of the job's execution, the twin's view,
//! the time and a risk forecast ([`crate::forecast::p_fail`] per node), and
//! comes with its numbers: the expected gain (ms of expected finish,
//! failures weighted by their probability), the cost, the risk before and
//! after, and a sentence saying why. Guard rails ([`Guard`]) keep actions
//! rare: a risk budget below which nothing moves, hysteresis (the gain must
//! beat the cost by a margin), a minimum interval per job and a budget per
//! minute.
//!
//! **Migrate.** For each stage that has not started, staying costs its
//! expected finish on its node plus, with the node's failure probability
//! before the stage ends, a failover (the delay to notice, and the run
//! again elsewhere). Moving costs the expected finish on the best other
//! node — inputs there, its published wait, the move's own delay — plus
//! that node's risk the same way. The stage moves when its risk is at
//! least the budget and the gain is at least `min_gain_ms`. A running
//! stage is weighed the same way, as a restart: staying, it fails (with
//! the forecast probability) on average halfway through what is left of
//! it; moving, it starts over elsewhere — worth it only early in a long
//! run or onto a much faster node.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::execution::{ExecConfig, Execution, StageState};
use crate::job::Job;
use crate::predict::Assignment;
use crate::view::{FabricView, allowed_by_arch};

/// The rules' settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PreemptConfig {
    /// A stage moves only when its node's failure risk before it ends is at
    /// least this.
    pub risk_budget: f64,
    /// ... and the expected gain is at least this (ms): hysteresis.
    pub min_gain_ms: f64,
    /// What a move costs (ms): the new booking and the start elsewhere.
    pub migrate_cost_ms: f64,
    /// At most one action per job this often (ms).
    pub min_interval_ms: f64,
    /// At most this many actions per minute from one planner.
    pub budget_per_minute: usize,
    /// Whether hot replicas may be started (else stages only move).
    pub replicate: bool,
    /// Whether a stage queued behind work moves when its job is forecast
    /// to miss its deadline ([`consider_requeues`]), not only ahead of a
    /// forecast failure.
    pub requeue: bool,
}

impl Default for PreemptConfig {
    fn default() -> Self {
        PreemptConfig {
            risk_budget: 0.2,
            min_gain_ms: 250.0,
            migrate_cost_ms: 200.0,
            min_interval_ms: 2_000.0,
            budget_per_minute: 120,
            replicate: true,
            requeue: true,
        }
    }
}

/// What to do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action {
    /// Move a stage that has not started from `from` to `to`.
    Migrate {
        /// Stage index.
        stage: usize,
        /// Its node now.
        from: usize,
        /// Where it goes.
        to: Assignment,
    },
    /// Run a hot replica of a running stage on `on` beside its run on
    /// `from`; the first to finish wins ([`Execution::replicate`]).
    Replicate {
        /// Stage index.
        stage: usize,
        /// Its node now (it keeps running there).
        from: usize,
        /// Where the replica runs.
        on: Assignment,
    },
}

impl Action {
    /// Its name in records and metrics: `migrate` (a stage not yet
    /// started moves), `restart` (a running stage moves) or `replicate`.
    pub fn kind(&self, exec: &Execution, now: f64) -> &'static str {
        match *self {
            Action::Migrate { stage, .. } => {
                let t = exec.timing(stage);
                if t.state == StageState::Booked && t.start <= now { "restart" } else { "migrate" }
            }
            Action::Replicate { .. } => "replicate",
        }
    }

    /// The stage acted on.
    pub fn stage(&self) -> usize {
        match *self {
            Action::Migrate { stage, .. } | Action::Replicate { stage, .. } => stage,
        }
    }
}

/// An action with its numbers and reason.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The action.
    pub action: Action,
    /// Expected finish gained (ms).
    pub gain_ms: f64,
    /// What the action costs (ms).
    pub cost_ms: f64,
    /// Core-ms of work it may spend for nothing: the work a restart throws
    /// away, or the time a replica and the run it races both run.
    pub work_core_ms: f64,
    /// Failure risk of the stage where it is.
    pub risk_before: f64,
    /// ... and where it goes.
    pub risk_after: f64,
    /// Why, in words.
    pub reason: String,
}

/// Predicted finish (ms) of every stage: finished ones as they did, booked
/// ones from their start, the others after their predecessors.
pub fn predicted_finishes(job: &Job, exec: &Execution, view: &FabricView, now: f64) -> Vec<f64> {
    let n = exec.stage_count();
    let mut fin = vec![f64::NAN; n];
    // Predecessors come first in a valid document; a second pass covers
    // any other order.
    for _ in 0..2 {
        for s in 0..n {
            let t = exec.timing(s);
            let c = &job.stages[s].compute;
            let run = view.compute_ms(t.at.node, c, t.at.format);
            fin[s] = match t.state {
                StageState::Done | StageState::Abandoned => t.finish,
                StageState::Booked => t.start + run,
                StageState::Booking => t.ready.max(now) + run,
                // Its owner holds room for it: it starts at its window, or
                // when its inputs arrive if later. The node's published
                // wait counts that same room, so it is not added again.
                StageState::Waiting => match exec.held_window(s) {
                    Some((w0, _)) => inputs_at(job, exec, view, &fin, s, t.at.node, now).max(w0).max(now) + run,
                    None => start_on(job, exec, view, &fin, s, t.at.node, now) + run,
                },
            };
        }
    }
    fin
}

/// When stage `s` could start on node `n`: its inputs there (predicted for
/// predecessors still running), not before `now`, after `n`'s wait.
pub(crate) fn start_on(
    job: &Job,
    exec: &Execution,
    view: &FabricView,
    fin: &[f64],
    s: usize,
    n: usize,
    now: f64,
) -> f64 {
    inputs_at(job, exec, view, fin, s, n, now).max(now).max(now + view.wait_ms(n, &job.stages[s].compute))
}

/// When stage `s`'s inputs are on node `n` (predicted for predecessors
/// still running; `now` for one whose finish is unknown).
#[allow(clippy::too_many_arguments)]
fn inputs_at(job: &Job, exec: &Execution, view: &FabricView, fin: &[f64], s: usize, n: usize, now: f64) -> f64 {
    let preds = &job.stages[s].predecessors;
    if preds.is_empty() {
        exec.submitted() + view.origin_latency(exec.origin(), n)
    } else {
        preds
            .iter()
            .map(|&p| {
                let f = if fin[p].is_nan() { now } else { fin[p] };
                f + view.transfer_ms(exec.timing(p).at.node, n, job.stages[p].output_mb)
            })
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

/// The other node where stage `s` is expected to end earliest if it moved
/// now — the move's delay, its inputs there, the node's wait, its run,
/// and with the node's risk a failover and the run again: (where, expected
/// finish, risk, finish without failure).
#[allow(clippy::too_many_arguments)]
pub(crate) fn best_elsewhere(
    job: &Job,
    exec: &Execution,
    view: &FabricView,
    fin: &[f64],
    s: usize,
    now: f64,
    risk: &dyn Fn(usize, f64) -> f64,
    exec_cfg: &ExecConfig,
    cfg: &PreemptConfig,
) -> Option<(Assignment, f64, f64, f64)> {
    let c = &job.stages[s].compute;
    let from = exec.timing(s).at.node;
    let allowed = allowed_by_arch(&job.stages[s].constraints);
    let mut best: Option<(Assignment, f64, f64, f64)> = None;
    for n in 0..view.nodes.len() {
        if n == from || !view.hosts(n, c) {
            continue;
        }
        let Some((format, _)) = view.best_format(n, &allowed) else { continue };
        let run = view.compute_ms(n, c, format);
        let finish = start_on(job, exec, view, fin, s, n, now + cfg.migrate_cost_ms) + run;
        let p = risk(n, finish);
        let expected = (1.0 - p) * finish + p * (finish + exec_cfg.failover_delay_ms + run);
        if expected.is_finite() && best.is_none_or(|b| expected < b.1) {
            best = Some((Assignment { node: n, format }, expected, p, finish));
        }
    }
    best
}

/// A move of stage `s` from `from` (expected finish `stay` there, risk
/// `p_stay`) to the best other node, when it gains at least the margin and
/// its own cost; `reason(to, risk there, gain, finish there)` says why.
#[allow(clippy::too_many_arguments)]
pub(crate) fn decide_move(
    s: usize,
    from: usize,
    stay: f64,
    p_stay: f64,
    (to, moved, p_to, finish_to): (Assignment, f64, f64, f64),
    work_core_ms: f64,
    cfg: &PreemptConfig,
    reason: impl FnOnce(usize, f64, f64, f64) -> String,
) -> Option<Decision> {
    let gain = stay - moved;
    if gain < cfg.min_gain_ms || gain < cfg.migrate_cost_ms {
        return None;
    }
    Some(Decision {
        action: Action::Migrate { stage: s, from, to },
        gain_ms: gain,
        cost_ms: cfg.migrate_cost_ms,
        work_core_ms,
        risk_before: p_stay,
        risk_after: p_to,
        reason: reason(to.node, p_to, gain, finish_to),
    })
}

/// Stages of `exec` that should move ahead of a forecast failure, best
/// gain first; `risk(node, until)` is the forecast P(node fails before
/// `until`).
pub fn consider_migrations(
    job: &Job,
    exec: &Execution,
    view: &FabricView,
    now: f64,
    risk: &dyn Fn(usize, f64) -> f64,
    exec_cfg: &ExecConfig,
    cfg: &PreemptConfig,
) -> Vec<Decision> {
    if exec.is_done() {
        return Vec::new();
    }
    let fin = predicted_finishes(job, exec, view, now);
    let mut out = Vec::new();
    for s in 0..exec.stage_count() {
        let t = exec.timing(s);
        if !matches!(t.state, StageState::Waiting | StageState::Booked) || exec.replica_of(s).is_some() {
            continue;
        }
        let running = t.state == StageState::Booked && t.start <= now;
        let c = &job.stages[s].compute;
        let from = t.at.node;
        let run_from = view.compute_ms(from, c, t.at.format);
        let p_stay = risk(from, fin[s]);
        if p_stay < cfg.risk_budget {
            continue;
        }
        // Staying: on failure, the failover and the run again; a running
        // stage fails on average halfway through what is left of it.
        let fails_at = if running { (now + fin[s]) / 2.0 } else { fin[s] };
        let stay = (1.0 - p_stay) * fin[s] + p_stay * (fails_at + exec_cfg.failover_delay_ms + run_from);
        let Some(best) = best_elsewhere(job, exec, view, &fin, s, now, risk, exec_cfg, cfg) else { continue };
        let work = if running { c.cpu * (now - t.start).max(0.0) } else { 0.0 };
        out.extend(decide_move(s, from, stay, p_stay, best, work, cfg, |to, p_to, gain, finish_to| {
            format!(
                "{} '{}': node '{}' fails before the stage ends with p={:.2} (budget {:.2}); on '{}' p={:.2}, expected finish {:.0} ms earlier (ends in {:.0} → {:.0} ms)",
                if running { "restart running stage" } else { "move stage" },
                job.stages[s].id,
                view.nodes.name[from],
                p_stay,
                cfg.risk_budget,
                view.nodes.name[to],
                p_to,
                gain,
                fin[s] - now,
                finish_to - now,
            )
        }));
    }
    out.sort_by(|a, b| b.gain_ms.total_cmp(&a.gain_ms));
    out
}

/// The one action to take for a job now, if any: the rule's best decision,
/// when `admit` (the guard rails of whoever acts) lets it through. Every
/// driver — the agent's actuators, the DES experiments — asks this.
#[allow(clippy::too_many_arguments)]
pub fn next_action(
    job: &Job,
    exec: &Execution,
    view: &FabricView,
    now: f64,
    risk: &dyn Fn(usize, f64) -> f64,
    exec_cfg: &ExecConfig,
    cfg: &PreemptConfig,
    admit: &mut dyn FnMut(f64) -> bool,
) -> Option<Decision> {
    let mut moves = consider_migrations(job, exec, view, now, risk, exec_cfg, cfg);
    if cfg.requeue {
        moves.extend(consider_requeues(job, exec, view, now, risk, exec_cfg, cfg));
    }
    let mut all = Vec::with_capacity(moves.len() + 1);
    if cfg.replicate {
        // A replica spends the work of two runs: it is taken over moving
        // the same stage only when it gains the margin more.
        for r in consider_replicas(job, exec, view, now, risk, exec_cfg, cfg) {
            let s = r.action.stage();
            if !moves.iter().any(|m| m.action.stage() == s && m.gain_ms + cfg.min_gain_ms > r.gain_ms) {
                all.push(r);
            }
        }
    }
    all.extend(moves);
    let d = all.into_iter().max_by(|a, b| a.gain_ms.total_cmp(&b.gain_ms))?;
    admit(now).then_some(d)
}

/// Nodes whose latest precursor is less than `lead_ms` before `now`: they
/// take no new work while the window is open (placement is preemptive
/// too), and jobs on them are what the rules look at.
pub fn warned_nodes(precursors: &[Option<f64>], now: f64, lead_ms: f64) -> impl Iterator<Item = usize> + '_ {
    precursors.iter().enumerate().filter(move |(_, p)| p.is_some_and(|p| now < p + lead_ms)).map(|(n, _)| n)
}

/// Whether any stage of `exec` not yet done is placed on a node whose
/// latest precursor (`precursors[node]`) is less than `lead_ms` before
/// `now`: the rules are asked only then — a node's resiliency alone is
/// what planning weighs, not a reason to act.
pub fn warned(exec: &Execution, precursors: &[Option<f64>], now: f64, lead_ms: f64) -> bool {
    (0..exec.stage_count()).any(|s| {
        let t = exec.timing(s);
        t.state != StageState::Done && precursors.get(t.at.node).copied().flatten().is_some_and(|p| now < p + lead_ms)
    })
}

/// Guard rails: a minimum interval per job and a budget per minute, for
/// one planner (all its jobs).
#[derive(Clone, Debug, Default)]
pub struct Guard {
    last: HashMap<String, f64>,
    recent: VecDeque<f64>,
}

impl Guard {
    /// Whether job `job` may act at `now`; when it may, the action is
    /// counted. The refusal says which rail held.
    pub fn admit(&mut self, job: &str, now: f64, cfg: &PreemptConfig) -> Result<(), &'static str> {
        if self.last.get(job).is_some_and(|&t| now - t < cfg.min_interval_ms) {
            return Err("acted on this job too recently");
        }
        while self.recent.front().is_some_and(|&t| now - t >= 60_000.0) {
            self.recent.pop_front();
        }
        if self.recent.len() >= cfg.budget_per_minute {
            return Err("action budget for this minute spent");
        }
        self.last.insert(job.to_string(), now);
        self.recent.push_back(now);
        Ok(())
    }
}

mod queue;
pub use queue::{consider_requeues, forecast_finish, late};
mod replicate;
pub use replicate::consider_replicas;
mod whatif;
pub use whatif::{Candidate, StageAt, WhatIf, what_if};

#[cfg(test)]
mod tests;

/// An action as an agent records it: what, why, the numbers it was
/// decided on, and — once the job ended — how it turned out. Stored with
/// the job (`GET /v1/jobs/{id}`, `GET /v1/actions`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// The job.
    pub job: String,
    /// Its number among the job's actions, from 1.
    pub seq: u32,
    /// When it was decided (Unix ms).
    pub at_ms: u64,
    /// `migrate` (a stage not yet started moved), `restart` (a running
    /// stage moved) or `replicate` (a hot replica started).
    pub action: String,
    /// The stage.
    pub stage: String,
    /// Its node.
    pub from: String,
    /// Where it went (or where the replica runs).
    pub to: String,
    /// Expected finish gained (ms).
    pub gain_ms: f64,
    /// What the action costs (ms).
    pub cost_ms: f64,
    /// Core-ms it may spend for nothing.
    pub work_core_ms: f64,
    /// The stage's failure risk where it was.
    pub risk_before: f64,
    /// ... and after.
    pub risk_after: f64,
    /// Why, in words.
    pub reason: String,
    /// Wall ms from the latest precursor's arrival to this decision, when
    /// one arrived within its lead time.
    pub reaction_ms: Option<f64>,
    /// How the job ended: `on_time`, `late` or `failed` (none while it
    /// runs).
    pub outcome: Option<String>,
}

impl ActionRecord {
    /// The record of decision `d` on `job`, made on `view`.
    pub fn of(job: &Job, id: &str, view: &FabricView, d: &Decision, action: &str) -> ActionRecord {
        let (stage, from, to) = match d.action {
            Action::Migrate { stage, from, to } => (stage, from, to.node),
            Action::Replicate { stage, from, on } => (stage, from, on.node),
        };
        ActionRecord {
            job: id.to_string(),
            seq: 0,
            at_ms: 0,
            action: action.to_string(),
            stage: job.stages[stage].id.clone(),
            from: view.nodes.name[from].clone(),
            to: view.nodes.name[to].clone(),
            gain_ms: d.gain_ms,
            cost_ms: d.cost_ms,
            work_core_ms: d.work_core_ms,
            risk_before: d.risk_before,
            risk_after: d.risk_after,
            reason: d.reason.clone(),
            reaction_ms: None,
            outcome: None,
        }
    }
}
