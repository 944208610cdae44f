use super::*;
use crate::execution::{ExecAction, ExecEvent, RunKey};
use crate::forecast::{ForecastConfig, NodeSigns, p_fail};
use crate::model::Format;
use crate::testkit::{one_stage, tiny, view_of};

fn native(node: usize) -> Assignment {
    Assignment { node, format: Format::Native }
}

/// A one-stage job from cluster a, planned on a-slow-01 (4 cores, speed
/// 0.5: 2,000 ms for 1,000 ms of work), booked to start at 1,000.
fn booked_on_slow() -> (crate::fabric::Fabric, Job, Execution, RunKey) {
    let f = tiny();
    let v = view_of(&f);
    let j = one_stage("a", 1.0, 1000.0);
    let slow = v.node_index("a-slow-01").unwrap();
    let mut e = Execution::new(&j, v.origin(&j).unwrap(), &[native(slow)], &[None], 1, 0.0, ExecConfig::default());
    let mut out = Vec::new();
    e.start(&j, &v, &mut out);
    let key = RunKey { plan: 1, stage: 0, attempt: 1 };
    e.handle(&j, &v, 0.0, ExecEvent::Booked { key, start: 1_000.0 }, &mut out);
    (f, j, e, key)
}

// Rule: a precursor on the node of a stage that has not started moves the
// stage — to the node where it is expected to end earliest, failures
// weighed — and the decision carries its numbers and its reason.
#[test]
fn a_stage_moves_off_a_node_that_shows_a_precursor() {
    let (f, j, e, _) = booked_on_slow();
    let v = view_of(&f);
    let slow = v.node_index("a-slow-01").unwrap();
    let fc = ForecastConfig::default();
    let warned = |n: usize, until: f64| {
        // Seen 6 s ago: the failure it announces is due within 4 s.
        let signs = NodeSigns { resiliency: 0.99, precursor_at: (n == slow).then_some(-6_000.0) };
        p_fail(signs, 0.0, until, &fc)
    };
    let d = consider_migrations(&j, &e, &v, 0.0, &warned, &ExecConfig::default(), &PreemptConfig::default());
    assert_eq!(d.len(), 1, "{d:?}");
    let Action::Migrate { stage, from, to } = d[0].action;
    assert_eq!((stage, from), (0, slow));
    assert_ne!(to.node, slow);
    assert!(d[0].risk_before > 0.1 && d[0].risk_after < d[0].risk_before, "{:?}", d[0]);
    assert!(d[0].gain_ms >= PreemptConfig::default().min_gain_ms);
    assert!(d[0].reason.contains("a-slow-01") && d[0].reason.contains(&v.nodes.name[to.node]), "{}", d[0].reason);
    // Without the precursor nothing moves: a healthy node's risk is under
    // the budget.
    let calm = |_: usize, until: f64| p_fail(NodeSigns { resiliency: 0.99, precursor_at: None }, 0.0, until, &fc);
    assert!(consider_migrations(&j, &e, &v, 0.0, &calm, &ExecConfig::default(), &PreemptConfig::default()).is_empty());
}

// Rule: hysteresis: a move whose expected gain is below the margin does
// not happen, however risky the node.
#[test]
fn no_move_below_the_margin() {
    let (f, j, e, _) = booked_on_slow();
    let v = view_of(&f);
    let slow = v.node_index("a-slow-01").unwrap();
    let fc = ForecastConfig::default();
    let warned = |n: usize, until: f64| {
        p_fail(NodeSigns { resiliency: 0.99, precursor_at: (n == slow).then_some(-6_000.0) }, 0.0, until, &fc)
    };
    let x = ExecConfig::default();
    let d = consider_migrations(&j, &e, &v, 0.0, &warned, &x, &PreemptConfig::default());
    let gain = d[0].gain_ms;
    let strict = PreemptConfig { min_gain_ms: gain + 1.0, ..PreemptConfig::default() };
    assert!(consider_migrations(&j, &e, &v, 0.0, &warned, &x, &strict).is_empty());
    let loose = PreemptConfig { min_gain_ms: gain - 1.0, ..PreemptConfig::default() };
    assert_eq!(consider_migrations(&j, &e, &v, 0.0, &warned, &x, &loose).len(), 1);
}

// Rule: the execution carries a move out: a booked stage that has not
// started gives its booking back and books the new node as a new attempt
// that does not count against max_attempts.
#[test]
fn migrate_releases_the_booking_and_books_elsewhere() {
    let (f, j, mut e, key) = booked_on_slow();
    let v = view_of(&f);
    let slow = v.node_index("a-slow-01").unwrap();
    let fast = v.node_index("b-fast-01").unwrap();
    let mut out = Vec::new();
    assert!(!e.migrate(&j, &v, 500.0, 0, native(slow), &mut out), "already there");
    assert!(e.migrate(&j, &v, 500.0, 0, native(fast), &mut out));
    assert_eq!(out[0], ExecAction::Release { key, node: slow, at: 500.0 });
    let ExecAction::Book { key: k2, node, ready_at, .. } = out[1] else { panic!("{out:?}") };
    assert_eq!((k2.attempt, node), (2, fast));
    assert_eq!(ready_at, 500.0, "inputs from the origin are there already");
    e.handle(&j, &v, 500.0, ExecEvent::Booked { key: k2, start: 520.0 }, &mut out);
    // The move is not a failure: three more failed runs are still allowed
    // (max_attempts 3).
    for (i, at) in [(2u16, 600.0), (3, 2_000.0), (4, 4_000.0)] {
        out.clear();
        e.handle(&j, &v, at, ExecEvent::Failed { key: RunKey { plan: 1, stage: 0, attempt: i } }, &mut out);
        if i < 4 {
            let ExecAction::Book { key, .. } = out[1] else { panic!("{out:?}") };
            e.handle(&j, &v, at, ExecEvent::Booked { key, start: at + 1.0 }, &mut out);
        }
    }
    let o = e.outcome();
    assert!(o.failed, "gives up after three failures");
    assert_eq!(o.migrations, 1);
    assert_eq!(o.failures, 3);
}

// Rule: guard rails: one action per job per interval, a budget per minute.
#[test]
fn guard_rails_hold() {
    let cfg = PreemptConfig { min_interval_ms: 1_000.0, budget_per_minute: 2, ..PreemptConfig::default() };
    let mut g = Guard::default();
    assert!(g.admit("j1", 0.0, &cfg).is_ok());
    assert_eq!(g.admit("j1", 500.0, &cfg), Err("acted on this job too recently"));
    assert!(g.admit("j2", 500.0, &cfg).is_ok());
    assert_eq!(g.admit("j3", 600.0, &cfg), Err("action budget for this minute spent"));
    assert!(g.admit("j3", 60_000.0, &cfg).is_ok(), "a minute later the budget is back");
}

// Rule: a running stage restarts elsewhere only when what is left of it
// on a node about to fail is worth more than starting over: a long stage
// early in its run on a warned slow node moves to a fast one; the same
// stage near its end stays.
#[test]
fn a_running_stage_restarts_elsewhere_only_when_worth_it() {
    let f = tiny();
    let v = view_of(&f);
    let j = one_stage("a", 1.0, 10_000.0);
    let slow = v.node_index("a-slow-01").unwrap();
    let fast = v.node_index("b-fast-01").unwrap();
    let mut e = Execution::new(&j, v.origin(&j).unwrap(), &[native(slow)], &[None], 1, 0.0, ExecConfig::default());
    let mut out = Vec::new();
    e.start(&j, &v, &mut out);
    let key = RunKey { plan: 1, stage: 0, attempt: 1 };
    // Runs 20,000 ms on the slow node, from 1,000.
    e.handle(&j, &v, 0.0, ExecEvent::Booked { key, start: 1_000.0 }, &mut out);
    let fc = ForecastConfig { precursor_precision: 0.9, lead_ms: 30_000.0, ..ForecastConfig::default() };
    let x = ExecConfig::default();
    let p = PreemptConfig::default();
    let decide = |now: f64| {
        let risk = |n: usize, until: f64| {
            p_fail(NodeSigns { resiliency: 0.999, precursor_at: (n == slow).then_some(now) }, now, until, &fc)
        };
        consider_migrations(&j, &e, &v, now, &risk, &x, &p)
    };
    let early = decide(2_000.0);
    assert_eq!(early.len(), 1, "{early:?}");
    assert!(matches!(early[0].action, Action::Migrate { to, .. } if to.node == fast), "{early:?}");
    assert!(decide(20_500.0).is_empty(), "half a second left: it stays");
    out.clear();
    assert!(e.migrate(&j, &v, 2_000.0, 0, native(fast), &mut out));
    assert_eq!(out[0], ExecAction::Release { key, node: slow, at: 2_000.0 });
    assert!(e.outcome().energy_j > 0.0, "the lost second of work is counted");
}
