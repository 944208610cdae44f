//! The replicate rule: a hot replica of a running stage on idle capacity
//! when its node is forecast to fail before the stage ends.
//!
//! Staying costs what the migrate rule says (the stage's predicted finish
//! F, or — with the node's failure probability p — a failure halfway
//! through what is left, the failover delay and the run again). With a
//! replica on node n (finish F′, failure probability p′), the stage ends
//! at the first of the two that finishes:
//!
//! E = (1−p)·[(1−p′)·min(F, F′) + p′·F] + p·[(1−p′)·F′ + p′·(F′ + failover + run′)]
//!
//! Only nodes where the stage would not wait (idle capacity) are looked
//! at; among them the one with the lowest E, the stage's shadow on a tie.
//! The replica is worth it when staying − E is at least the margin and the
//! cost. Unlike a restart it keeps the work done so far, so it beats a
//! restart on a long stage past its start, and it spends the work of two
//! runs while both go on (`work_core_ms`).

use super::{Action, Decision, PreemptConfig, predicted_finishes, start_on};
use crate::execution::{ExecConfig, Execution, StageState};
use crate::job::Job;
use crate::predict::Assignment;
use crate::view::{FabricView, allowed_by_arch};

/// Running stages of `exec` worth a hot replica, best gain first;
/// `risk(node, until)` is the forecast P(node fails before `until`).
pub fn consider_replicas(
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
        if t.state != StageState::Booked || t.start > now || exec.replica_of(s).is_some() {
            continue;
        }
        let c = &job.stages[s].compute;
        let from = t.at.node;
        let f = fin[s];
        let p = risk(from, f);
        if p < cfg.risk_budget {
            continue;
        }
        let run_from = view.compute_ms(from, c, t.at.format);
        let stay = (1.0 - p) * f + p * ((now + f) / 2.0 + exec_cfg.failover_delay_ms + run_from);
        let allowed = allowed_by_arch(&job.stages[s].constraints);
        let shadow = exec.shadow_of(s).map(|a| a.node);
        let mut best: Option<(Assignment, f64, f64, f64)> = None;
        for n in 0..view.nodes.len() {
            if n == from || !idle(view, n, c) {
                continue;
            }
            let Some((format, _)) = view.best_format(n, &allowed) else { continue };
            let run = view.compute_ms(n, c, format);
            let fr = start_on(job, exec, view, &fin, s, n, now + cfg.migrate_cost_ms) + run;
            let pr = risk(n, fr);
            let e = (1.0 - p) * ((1.0 - pr) * f.min(fr) + pr * f)
                + p * ((1.0 - pr) * fr + pr * (fr + exec_cfg.failover_delay_ms + run));
            let better = match best {
                None => true,
                Some((b, be, _, _)) => e < be - 1e-9 || (e <= be + 1e-9 && Some(n) == shadow && Some(b.node) != shadow),
            };
            if e.is_finite() && better {
                best = Some((Assignment { node: n, format }, e, pr, fr));
            }
        }
        let Some((on, e, pr, fr)) = best else { continue };
        let gain = stay - e;
        if gain < cfg.min_gain_ms || gain < cfg.migrate_cost_ms {
            continue;
        }
        let both = (f.min(fr) - (now + cfg.migrate_cost_ms)).max(0.0);
        let reason = format!(
            "replicate running stage '{}': node '{}' fails before the stage ends with p={:.2} (budget {:.2}); a replica on idle '{}'{} (p={:.2}, ends in {:.0} ms) makes the expected finish {:.0} ms earlier (the stage ends in {:.0} ms where it is); the first to finish wins",
            job.stages[s].id,
            view.nodes.name[from],
            p,
            cfg.risk_budget,
            view.nodes.name[on.node],
            if Some(on.node) == shadow { ", its shadow," } else { "" },
            pr,
            fr - now,
            gain,
            f - now,
        );
        out.push(Decision {
            action: Action::Replicate { stage: s, from, on },
            gain_ms: gain,
            cost_ms: cfg.migrate_cost_ms,
            work_core_ms: c.cpu * both,
            risk_before: p,
            risk_after: p * pr,
            reason,
        });
    }
    out.sort_by(|a, b| b.gain_ms.total_cmp(&a.gain_ms));
    out
}

/// Whether node `n` has idle room for a replica of `c`: it takes work,
/// nothing waits there, and at least half of it stays free with the
/// replica running — a replica must not take the room later arrivals need.
fn idle(view: &FabricView, n: usize, c: &crate::job::Compute) -> bool {
    let t = &view.nodes;
    view.hosts(n, c) && view.wait_ms(n, c) == 0.0 && t.free_cpu[n] - c.cpu >= 0.5 * t.alloc_cpu[n]
}
