use super::*;
use crate::testkit::{job, one_stage, tiny, view_of};

fn idx(view: &FabricView, name: &str) -> usize {
    view.node_index(name).unwrap()
}

fn native(node: usize) -> Assignment {
    Assignment { node, format: Format::Native }
}

fn books(out: &[ExecAction]) -> Vec<(RunKey, usize, f64)> {
    out.iter()
        .filter_map(|a| match a {
            ExecAction::Book { key, node, ready_at, .. } => Some((*key, *node, *ready_at)),
            _ => None,
        })
        .collect()
}

#[test]
fn failed_stage_goes_to_shadow_then_best_untried_then_backs_off() {
    // Rule: a failed run's next attempt goes to its shadow, then to the
    // untried node with the earliest predicted finish — never straight
    // back to the node that just failed; with nothing untried left, it
    // waits the backoff and retries the node tried longest ago.
    let f = tiny();
    let v = view_of(&f);
    let j = one_stage("a", 1.0, 1000.0);
    let o = v.origin(&j).unwrap();
    let (one, slow, fast) = (idx(&v, "a-one-01"), idx(&v, "a-slow-01"), idx(&v, "b-fast-01"));
    let cfg =
        ExecConfig { max_attempts: 5, failover_delay_ms: 100.0, retry_backoff_ms: 2000.0, ..ExecConfig::default() };
    let mut e = Execution::new(&j, o, &[native(one)], &[Some(native(slow))], 7, 0.0, cfg);
    let mut out = Vec::new();
    e.start(&j, &v, &mut out);
    let b = books(&out);
    assert_eq!(b.len(), 1);
    assert_eq!((b[0].0, b[0].1, b[0].2), (RunKey { plan: 7, stage: 0, attempt: 1 }, one, 1.0));
    // Booked at 1, fails at 300: released, then to the shadow after the
    // failover delay.
    out.clear();
    e.handle(&j, &v, 1.0, ExecEvent::Booked { key: b[0].0, start: 1.0 }, &mut out);
    assert!(out.is_empty());
    e.handle(&j, &v, 300.0, ExecEvent::Failed { key: b[0].0 }, &mut out);
    assert_eq!(out[0], ExecAction::Release { key: b[0].0, node: one, at: 300.0 });
    let b = books(&out);
    assert_eq!((b[0].0.attempt, b[0].1, b[0].2), (2, slow, 400.0));
    // The shadow refuses (down): the best untried node is b-fast (speed 2,
    // 20 ms away: done at 400 + 20 + 500 = 920, vs b-rv, which has no
    // native amd64 format for this stage... it is riscv64: 1000/0.25).
    out.clear();
    e.handle(&j, &v, 400.0, ExecEvent::Refused { key: b[0].0, reason: Refusal::NodeDown }, &mut out);
    let b = books(&out);
    assert_eq!((b[0].0.attempt, b[0].1), (3, fast));
    assert_eq!(b[0].2, 500.0, "failover delay after the refusal at 400");
    // Fails there too; b-rv is the last untried node that can host it.
    out.clear();
    e.handle(&j, &v, 500.0, ExecEvent::Booked { key: b[0].0, start: 500.0 }, &mut out);
    e.handle(&j, &v, 600.0, ExecEvent::Failed { key: b[0].0 }, &mut out);
    let b = books(&out);
    assert_eq!((b[0].0.attempt, b[0].1), (4, idx(&v, "b-rv-01")));
    out.clear();
    e.handle(&j, &v, 700.0, ExecEvent::Refused { key: b[0].0, reason: Refusal::Unreachable }, &mut out);
    // Nothing untried: backoff, and the node tried longest ago (a-one).
    let b = books(&out);
    assert_eq!((b[0].0.attempt, b[0].1, b[0].2), (5, one, 2700.0));
    out.clear();
    e.handle(&j, &v, 2700.0, ExecEvent::Booked { key: b[0].0, start: 2700.0 }, &mut out);
    e.handle(&j, &v, 3700.0, ExecEvent::Finished { key: b[0].0 }, &mut out);
    assert_eq!(out, vec![ExecAction::Done]);
    let r = e.outcome();
    // Observed latency includes every attempt, wait and backoff.
    assert_eq!(r.latency_ms, 3700.0);
    assert!(!r.failed);
    assert_eq!(r.failures, 4);
    assert_eq!(r.stages[0].attempts, 5);
    assert_eq!(r.stages[0].node, one);
    // Energy counts the failed runs too: a-one 299 ms + b-fast 100 ms + a-one 1,000 ms.
    let want = v.energy_j(one, &j.stages[0].compute, 299.0)
        + v.energy_j(fast, &j.stages[0].compute, 100.0)
        + v.energy_j(one, &j.stages[0].compute, 1000.0);
    assert!((r.energy_j - want).abs() < 1e-9, "{} vs {want}", r.energy_j);
}

#[test]
fn out_of_attempts_fails_the_job_and_releases_everything() {
    let f = tiny();
    let v = view_of(&f);
    let j = job(r#"
apiVersion: twinmesh.io/v1
metadata: { name: par, origin: { cluster: a } }
spec:
  stages:
    - { id: x, compute: { cpu: 1, duration_ms: 1000 } }
    - { id: y, compute: { cpu: 1, duration_ms: 5000 } }
    - { id: z, compute: { cpu: 1, duration_ms: 10 }, predecessor: [x, y] }
"#);
    let o = v.origin(&j).unwrap();
    let fast = idx(&v, "b-fast-01");
    let cfg = ExecConfig { max_attempts: 1, ..ExecConfig::default() };
    let mut e = Execution::new(&j, o, &[native(fast); 3], &[], 1, 0.0, cfg);
    let mut out = Vec::new();
    e.start(&j, &v, &mut out);
    let b = books(&out);
    assert_eq!(b.len(), 2, "x and y have no predecessors: both booked at once");
    out.clear();
    e.handle(&j, &v, 20.0, ExecEvent::Booked { key: b[0].0, start: 20.0 }, &mut out);
    e.handle(&j, &v, 20.0, ExecEvent::Booked { key: b[1].0, start: 20.0 }, &mut out);
    e.handle(&j, &v, 50.0, ExecEvent::Failed { key: b[0].0 }, &mut out);
    assert!(e.is_done());
    let r = e.outcome();
    assert!(r.failed);
    assert!(r.error.as_deref().unwrap().contains("stage 'x'"), "{:?}", r.error);
    // x's run and y's booking are both given back.
    let released: Vec<RunKey> = out
        .iter()
        .filter_map(|a| match a {
            ExecAction::Release { key, .. } => Some(*key),
            _ => None,
        })
        .collect();
    // z, waiting for both, had been reserved once x and y were booked:
    // its reservation is given back too.
    let z = RunKey { plan: 1, stage: 2, attempt: 1 };
    assert_eq!(released, vec![b[0].0, b[1].0, z]);
    // Late events for a finished job change nothing.
    out.clear();
    e.handle(&j, &v, 60.0, ExecEvent::Finished { key: b[1].0 }, &mut out);
    assert!(out.is_empty());
    assert_eq!(format!("{:?}", e.outcome()), format!("{r:?}"));
}

#[test]
fn successors_wait_for_every_predecessor_and_its_transfer() {
    let f = tiny();
    let v = view_of(&f);
    let j = job(r#"
apiVersion: twinmesh.io/v1
metadata: { name: fan, origin: { cluster: a } }
spec:
  stages:
    - { id: x, compute: { cpu: 1, duration_ms: 100 }, output_mb: 10 }
    - { id: y, compute: { cpu: 1, duration_ms: 100 } }
    - { id: z, compute: { cpu: 1, duration_ms: 10 }, predecessor: [x, y] }
"#);
    let o = v.origin(&j).unwrap();
    let (a, b) = (idx(&v, "a-slow-01"), idx(&v, "b-fast-01"));
    let mut e = Execution::new(&j, o, &[native(a), native(b), native(b)], &[], 1, 0.0, ExecConfig::default());
    let mut out = Vec::new();
    e.start(&j, &v, &mut out);
    let k = books(&out);
    out.clear();
    for (key, _, ready) in &k {
        e.handle(&j, &v, *ready, ExecEvent::Booked { key: *key, start: *ready }, &mut out);
    }
    e.handle(&j, &v, 500.0, ExecEvent::Finished { key: k[1].0 }, &mut out);
    assert!(books(&out).is_empty(), "z still waits for x");
    e.handle(&j, &v, 1000.0, ExecEvent::Finished { key: k[0].0 }, &mut out);
    let z = books(&out);
    // x's 10 MB cross a→b: 20 ms + 10 MB over 100 Mbit/s (800 ms).
    assert_eq!((z[0].1, z[0].2), (b, 1000.0 + 820.0));
}

#[test]
fn stale_and_foreign_events_are_ignored() {
    let f = tiny();
    let v = view_of(&f);
    let j = one_stage("a", 1.0, 1000.0);
    let o = v.origin(&j).unwrap();
    let one = idx(&v, "a-one-01");
    let mut e = Execution::new(&j, o, &[native(one)], &[], 11, 0.0, ExecConfig::default());
    let mut out = Vec::new();
    e.start(&j, &v, &mut out);
    let key = books(&out)[0].0;
    out.clear();
    // Another plan's run with the same stage and attempt is not ours.
    let foreign = RunKey { plan: 12, ..key };
    e.handle(&j, &v, 5.0, ExecEvent::Booked { key: foreign, start: 5.0 }, &mut out);
    e.handle(&j, &v, 6.0, ExecEvent::Finished { key: foreign }, &mut out);
    assert!(!e.is_done());
    assert_eq!(e.stage(0).0, StageState::Booking);
    // Finishing before being booked is out of order: ignored.
    e.handle(&j, &v, 6.0, ExecEvent::Finished { key }, &mut out);
    assert!(!e.is_done());
    e.handle(&j, &v, 1.0, ExecEvent::Booked { key, start: 1.0 }, &mut out);
    e.handle(&j, &v, 1001.0, ExecEvent::Finished { key }, &mut out);
    assert!(e.is_done());
    assert_eq!(e.outcome().latency_ms, 1001.0);
}

#[test]
fn plan_digests_name_the_plan() {
    let a = plan_digest("job-1", [("n1", Format::Native), ("n2", Format::Native)]);
    assert_eq!(a, plan_digest("job-1", [("n1", Format::Native), ("n2", Format::Native)]));
    assert_ne!(a, plan_digest("job-1", [("n1", Format::Native), ("n3", Format::Native)]));
    assert_ne!(a, plan_digest("job-1", [("n1", Format::Wasm), ("n2", Format::Native)]));
    assert_ne!(a, plan_digest("job-2", [("n1", Format::Native), ("n2", Format::Native)]));
    // Concatenation does not collide: ("ab","c") ≠ ("a","bc").
    assert_ne!(
        plan_digest("j", [("ab", Format::Native), ("c", Format::Native)]),
        plan_digest("j", [("a", Format::Native), ("bc", Format::Native)])
    );
}
