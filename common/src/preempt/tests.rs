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
    let Action::Migrate { stage, from, to } = d[0].action else { panic!("{d:?}") };
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

/// One 8,000 ms stage (1 core) from cluster a on a-one-01 (speed 1),
/// shadowed on b-fast-01, running since 1 ms; now = 4,001: 4 s left,
/// predicted end 8,001.
fn half_run() -> (crate::fabric::Fabric, Job, Execution, RunKey) {
    let f = tiny();
    let v = view_of(&f);
    let j = one_stage("a", 1.0, 8_000.0);
    let one = v.node_index("a-one-01").unwrap();
    let fast = v.node_index("b-fast-01").unwrap();
    let mut e =
        Execution::new(&j, v.origin(&j).unwrap(), &[native(one)], &[Some(native(fast))], 1, 0.0, ExecConfig::default());
    let mut out = Vec::new();
    e.start(&j, &v, &mut out);
    let key = RunKey { plan: 1, stage: 0, attempt: 1 };
    e.handle(&j, &v, 0.0, ExecEvent::Booked { key, start: 1.0 }, &mut out);
    (f, j, e, key)
}

/// The forecast of the replicate examples: a-one-01 0.3 over what is left
/// of the stage, its shadow b-fast-01 0.01, every other node 0.5.
fn risk_03(v: &FabricView) -> impl Fn(usize, f64) -> f64 + '_ {
    move |n: usize, _until: f64| match v.nodes.name[n].as_str() {
        "a-one-01" => 0.3,
        "b-fast-01" => 0.01,
        _ => 0.5,
    }
}

// Rule (hand-computed): a running stage with 4 s left on a node at risk 0.3
// and an idle shadow at risk 0.01 (as fast as the stage's node) gets a hot
// replica on the shadow, not a restart.
//   stay    = 0.7·8001 + 0.3·((4001+8001)/2 + 1000 + 8000)                       = 10101.0
//   replica : ready 4001+200, runs 8000 on the shadow → F′ = 12201
//   E       = 0.7·(0.99·8001 + 0.01·8001) + 0.3·(0.99·12201 + 0.01·(12201+1000+8000)) = 9288.0
//   gain    = 813.0 ms (≥ 250 margin, ≥ 200 cost); both run 4201 → 8001: 3800 core-ms
//   restart on the shadow: 0.99·12201 + 0.01·21201 = 12291.0 > stay → no move
#[test]
fn a_risky_running_stage_gets_a_replica_on_its_idle_shadow() {
    let (f, j, e, _) = half_run();
    let mut v = view_of(&f);
    let fast = v.node_index("b-fast-01").unwrap();
    v.nodes.inv_speed[fast] = 1.0;
    let names = view_of(&f);
    let risk = risk_03(&names);
    let (x, p) = (ExecConfig::default(), PreemptConfig::default());
    let d = consider_replicas(&j, &e, &v, 4_001.0, &risk, &x, &p);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(matches!(d[0].action, Action::Replicate { stage: 0, on, .. } if on.node == fast), "{d:?}");
    assert!((d[0].gain_ms - 813.0).abs() < 1e-6, "{}", d[0].gain_ms);
    assert!((d[0].work_core_ms - 3_800.0).abs() < 1e-6, "{}", d[0].work_core_ms);
    assert!((d[0].risk_before - 0.3).abs() < 1e-12 && (d[0].risk_after - 0.003).abs() < 1e-12);
    assert!(d[0].reason.contains("its shadow"), "{}", d[0].reason);
    assert!(consider_migrations(&j, &e, &v, 4_001.0, &risk, &x, &p).is_empty(), "no restart pays");
    let best = next_action(&j, &e, &v, 4_001.0, &risk, &x, &p, &mut |_| true).unwrap();
    assert!(matches!(best.action, Action::Replicate { .. }), "{best:?}");
    // With replicas switched off, nothing is done.
    let off = PreemptConfig { replicate: false, ..p };
    assert!(next_action(&j, &e, &v, 4_001.0, &risk, &x, &off, &mut |_| true).is_none());
}

// Rule (hand-computed): when the shadow is twice as fast, restarting there
// gains nearly as much as a replica, which spends the work of two runs: the
// replica must gain the margin (250 ms) more than the move, so the move wins.
//   replica: F′ = 4201 + 4000 = 8201; E = 0.7·8001 + 0.3·(0.99·8201 + 0.01·13201) = 8076.0 → gain 2025.0
//   restart: 0.99·8201 + 0.01·13201 = 8251.0 → gain 1850.0 (2025 − 1850 < 250)
#[test]
fn a_restart_nearly_as_good_is_preferred_to_a_replica() {
    let (f, j, e, _) = half_run();
    let v = view_of(&f);
    let risk = risk_03(&v);
    let (x, p) = (ExecConfig::default(), PreemptConfig::default());
    let r = consider_replicas(&j, &e, &v, 4_001.0, &risk, &x, &p);
    assert!((r[0].gain_ms - 2_025.0).abs() < 1e-6, "{r:?}");
    let m = consider_migrations(&j, &e, &v, 4_001.0, &risk, &x, &p);
    assert!((m[0].gain_ms - 1_850.0).abs() < 1e-6, "{m:?}");
    let best = next_action(&j, &e, &v, 4_001.0, &risk, &x, &p, &mut |_| true).unwrap();
    assert!(matches!(best.action, Action::Migrate { .. }), "{best:?}");
}

// Rule: the same stage with no idle capacity anywhere (every other node
// busy for 20 s) gets no action at all: no replica without idle room, and a
// restart behind 20 s of backlog ends later than staying.
#[test]
fn no_idle_capacity_no_action() {
    let (f, j, e, _) = half_run();
    let mut v = view_of(&f);
    let one = v.node_index("a-one-01").unwrap();
    for n in 0..v.nodes.len() {
        if n != one {
            v.nodes.free_cpu[n] = 0.0;
            v.nodes.backlog_ms[n] = 20_000.0;
        }
    }
    let names = view_of(&f);
    let risk = risk_03(&names);
    let (x, p) = (ExecConfig::default(), PreemptConfig::default());
    assert!(consider_replicas(&j, &e, &v, 4_001.0, &risk, &x, &p).is_empty());
    assert!(next_action(&j, &e, &v, 4_001.0, &risk, &x, &p, &mut |_| true).is_none());
}

// Rule: no flapping: once a stage has a replica, the rules propose nothing
// more for it — no second replica, no move — however high the risk stays,
// tick after tick.
#[test]
fn a_replicated_stage_is_left_alone() {
    let (f, j, mut e, _) = half_run();
    let mut v = view_of(&f);
    let fast = v.node_index("b-fast-01").unwrap();
    v.nodes.inv_speed[fast] = 1.0;
    let names = view_of(&f);
    let risk = risk_03(&names);
    let (x, p) = (ExecConfig::default(), PreemptConfig::default());
    let d = next_action(&j, &e, &v, 4_001.0, &risk, &x, &p, &mut |_| true).unwrap();
    let Action::Replicate { stage, on, .. } = d.action else { panic!("{d:?}") };
    let mut out = Vec::new();
    assert!(e.replicate(&j, &v, 4_001.0, stage, on, &mut out));
    for now in [4_100.0, 4_600.0, 5_100.0, 7_000.0] {
        assert!(next_action(&j, &e, &v, now, &risk, &x, &p, &mut |_| true).is_none(), "at {now}");
    }
    assert!(!e.migrate(&j, &v, 4_100.0, 0, native(v.node_index("a-slow-01").unwrap()), &mut out));
}

// Rule: the first run to finish wins. A replica that ends first becomes
// the stage's run and the other run is given back (its work counted as
// wasted); a stage whose run fails while its replica runs goes on with the
// replica — no failover, no new booking.
#[test]
fn the_first_run_to_finish_wins() {
    let fast = |v: &FabricView| native(v.node_index("b-fast-01").unwrap());
    // The replica wins.
    let (f, j, mut e, key) = half_run();
    let v = view_of(&f);
    let one = v.node_index("a-one-01").unwrap();
    let mut out = Vec::new();
    assert!(e.replicate(&j, &v, 4_001.0, 0, fast(&v), &mut out));
    let ExecAction::Book { key: rk, node, ready_at, .. } = out[0] else { panic!("{out:?}") };
    assert_eq!((rk.attempt, node, ready_at), (2, fast(&v).node, 4_001.0));
    e.handle(&j, &v, 4_001.0, ExecEvent::Booked { key: rk, start: 4_001.0 }, &mut out);
    out.clear();
    e.handle(&j, &v, 7_000.0, ExecEvent::Finished { key: rk }, &mut out);
    assert_eq!(out, vec![ExecAction::Release { key, node: one, at: 7_000.0 }, ExecAction::Done]);
    let o = e.outcome();
    assert!(!o.failed);
    assert_eq!((o.stages[0].node, o.finish_ms, o.replicas), (fast(&v).node, 7_000.0, 1));
    assert!((o.wasted_core_ms - 6_999.0).abs() < 1e-9, "the primary ran 1 → 7000: {}", o.wasted_core_ms);
    // A late word from the loser changes nothing.
    out.clear();
    e.handle(&j, &v, 8_001.0, ExecEvent::Finished { key }, &mut out);
    assert!(out.is_empty());

    // The primary fails: the replica carries on.
    let (f, j, mut e, key) = half_run();
    let v = view_of(&f);
    let mut out = Vec::new();
    assert!(e.replicate(&j, &v, 4_001.0, 0, fast(&v), &mut out));
    let ExecAction::Book { key: rk, .. } = out[0] else { panic!() };
    e.handle(&j, &v, 4_001.0, ExecEvent::Booked { key: rk, start: 4_201.0 }, &mut out);
    out.clear();
    e.handle(&j, &v, 5_000.0, ExecEvent::Failed { key }, &mut out);
    assert_eq!(out, vec![ExecAction::Release { key, node: v.node_index("a-one-01").unwrap(), at: 5_000.0 }]);
    e.handle(&j, &v, 8_201.0, ExecEvent::Finished { key: rk }, &mut out);
    let o = e.outcome();
    assert!(!o.failed && o.failures == 1 && o.stages[0].node == fast(&v).node, "{o:?}");
    assert_eq!(o.finish_ms, 8_201.0, "no failover delay");

    // The primary finishes first: the replica is given back.
    let (f, j, mut e, key) = half_run();
    let v = view_of(&f);
    let mut out = Vec::new();
    assert!(e.replicate(&j, &v, 4_001.0, 0, fast(&v), &mut out));
    let ExecAction::Book { key: rk, .. } = out[0] else { panic!() };
    e.handle(&j, &v, 4_001.0, ExecEvent::Booked { key: rk, start: 4_201.0 }, &mut out);
    out.clear();
    e.handle(&j, &v, 8_001.0, ExecEvent::Finished { key }, &mut out);
    assert_eq!(out, vec![ExecAction::Release { key: rk, node: fast(&v).node, at: 8_001.0 }, ExecAction::Done]);
    assert!((e.outcome().wasted_core_ms - 3_800.0).abs() < 1e-9);
}

// Rule: a stage queued behind work (booked on a-slow-01 to start at 1,000:
// ends at 3,000) whose job is forecast to miss its 2,500 ms deadline moves
// to where it ends earliest: b-fast-01 (speed 2), inputs there after 20 ms,
// the move's 200 ms, then 500 ms — ends at 700, 2,300 ms earlier. With a
// deadline it meets (3,500) nothing moves; no deadline, nothing moves.
#[test]
fn a_queued_stage_of_a_late_job_moves_where_it_ends_sooner() {
    let (f, mut j, e, _) = booked_on_slow();
    let v = view_of(&f);
    let calm = |_: usize, _: f64| 0.0;
    let x = ExecConfig::default();
    let cfg = PreemptConfig::default();
    j.deadline_ms = Some(2_500.0);
    assert!(late(&j, &e, &v, 0.0));
    assert_eq!(forecast_finish(&j, &e, &v, 0.0), 3_000.0);
    let d = consider_requeues(&j, &e, &v, 0.0, &calm, &x, &cfg);
    assert_eq!(d.len(), 1, "{d:?}");
    let Action::Migrate { stage, from, to } = d[0].action else { panic!("{d:?}") };
    assert_eq!((stage, from, to.node), (0, v.node_index("a-slow-01").unwrap(), v.node_index("b-fast-01").unwrap()));
    assert_eq!(d[0].gain_ms, 2_300.0);
    assert!(d[0].reason.contains("500 ms after its deadline"), "{}", d[0].reason);
    // next_action takes it (no precursor anywhere), unless requeues are off.
    let mut yes = |_: f64| true;
    assert_eq!(next_action(&j, &e, &v, 0.0, &calm, &x, &cfg, &mut yes).map(|d| d.gain_ms), Some(2_300.0));
    let off = PreemptConfig { requeue: false, ..cfg.clone() };
    assert!(next_action(&j, &e, &v, 0.0, &calm, &x, &off, &mut yes).is_none());
    j.deadline_ms = Some(3_500.0);
    assert!(!late(&j, &e, &v, 0.0));
    assert!(consider_requeues(&j, &e, &v, 0.0, &calm, &x, &cfg).is_empty());
    j.deadline_ms = None;
    assert!(consider_requeues(&j, &e, &v, 0.0, &calm, &x, &cfg).is_empty());
    // Started by now (1,000 ≤ now + the move's cost): not queued any more.
    j.deadline_ms = Some(2_500.0);
    assert!(consider_requeues(&j, &e, &v, 900.0, &calm, &x, &cfg).is_empty());
}
