use twinmesh_common::lifecycle::{Config, Decision};

use super::*;

fn fixture() -> Scenario {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/scenario.json");
    Scenario::read(&path).expect("the fixture reads")
}

fn at(trace: &[(f64, String, Decision)], agent: &str, want: &Decision) -> f64 {
    trace
        .iter()
        .find(|(_, a, d)| a == agent && d == want)
        .map(|(t, _, _)| *t)
        .unwrap_or_else(|| panic!("{agent} never decided {want:?}; trace: {trace:#?}"))
}

fn book(job: &str, attempt: u32) -> Decision {
    Decision::Book { job: job.into(), stage: "rv".into(), owner: "lab-pc-01".into(), attempt }
}

// Rules, with hand-computed times: a forward to a paused agent is given up
// after clamp(2 × RTT timeout, 2 s, 5 s) = 2 s and the next agent nearest
// the origin is tried; the late forward is planned by its target when it
// resumes, and the copy farther from the origin gives way; a run whose
// owner is paused fails over once the owner has been suspect for the 2 s
// grace, and its booking is asked at 0, +1 s and +3 s; a job submitted
// across a cut is planned where it was submitted, without a forward.
#[test]
fn the_scripted_scenario_follows_the_protocol_rules() {
    let s = fixture();
    let t = Mesh::scenario(&s).unwrap().run_scenario();
    let cfg = Config::default();
    let (a, b, c) = ("dc-x86-01", "edge-srv-01", "lab-pc-01");
    let fwd = at(&t, a, &Decision::Forward { job: "lost-forward".into(), to: b.into() });
    assert_eq!(fwd, s.start_s * 1000.0, "forwarded at once");
    let gave_up = at(&t, a, &Decision::Unanswered { job: "lost-forward".into(), to: b.into() });
    assert_eq!(gave_up - fwd, cfg.forward_min_ms, "2 s: the clamp's floor on a fast link");
    assert_eq!(at(&t, a, &Decision::Forward { job: "lost-forward".into(), to: c.into() }), gave_up);
    let late = at(&t, b, &Decision::PlanHere { job: "lost-forward".into(), from: Some(a.into()) });
    assert!(late >= gave_up + 3_000.0, "planned by the paused agent only once resumed ({late} ms)");
    let lost = at(&t, c, &Decision::Superseded { job: "lost-forward".into(), by: b.into() });
    assert!(lost > late, "campus-lab is farther from edge-microdc than edge-srv-01 is");
    assert!(!t.iter().any(|(_, who, d)| who == b && matches!(d, Decision::Superseded { .. })));

    let planned = at(&t, a, &Decision::PlanHere { job: "paused-owner".into(), from: None });
    let paused = planned + 1_000.0;
    let failed_over =
        at(&t, a, &Decision::FailOver { job: "paused-owner".into(), stage: "rv".into(), owner: c.into() });
    assert!(
        failed_over - paused >= s.failover_grace_s * 1000.0 + 1_000.0,
        "suspected (a probe after 1 s of silence, unanswered) and then the grace: {} ms",
        failed_over - paused
    );
    assert!(failed_over - paused <= 2_000.0 + 2_500.0 + 250.0, "{} ms", failed_over - paused);
    let tries: Vec<f64> = t
        .iter()
        .filter(|(when, who, d)| {
            *when >= failed_over && who == a && matches!(d, Decision::Book { job, .. } if job == "paused-owner")
        })
        .map(|(when, _, _)| when - failed_over)
        .collect();
    assert_eq!(tries, vec![0.0, 1_000.0, 3_000.0], "1 s, then 2 s between tries");
    assert_eq!(at(&t, a, &book("paused-owner", 3)) - failed_over, 3_000.0);
    assert!(!t.iter().any(|(_, _, d)| matches!(d, Decision::Unreachable { .. })), "answered on resume");

    let across = at(&t, c, &Decision::PlanHere { job: "across-cut".into(), from: None });
    assert!(!t.iter().any(|(_, _, d)| matches!(d, Decision::Forward { job, .. } if job == "across-cut")));
    // The heal: each side reconciles with the other.
    for (who, peer) in [(c, a), (c, b), (a, c), (b, c)] {
        assert!(
            t.iter().any(|(when, x, d)| *when > across && x == who && *d == Decision::Reconcile { peer: peer.into() }),
            "{who} did not reconcile with {peer} after the heal"
        );
    }
}

// Rule: the simulator is deterministic for a scenario too.
#[test]
fn a_scenario_runs_the_same_twice() {
    let s = fixture();
    assert_eq!(Mesh::scenario(&s).unwrap().run_scenario(), Mesh::scenario(&s).unwrap().run_scenario());
}

// Rule: a bad scenario is refused naming what is wrong.
#[test]
fn bad_scenarios_name_the_problem() {
    let mut s = fixture();
    s.steps.push(Step::Pause("nobody".into()));
    let e = Mesh::scenario(&s).err().expect("refused").to_string();
    assert!(e.contains("unknown agent 'nobody'"), "{e}");
    let mut s = fixture();
    s.steps.push(Step::Cut(vec!["edge-srv-01".into()]));
    let e = Mesh::scenario(&s).err().expect("refused").to_string();
    assert!(e.contains("must be the first of `agents`"), "{e}");
    let mut s = fixture();
    s.agents[0].cluster = "mars".into();
    let e = Mesh::scenario(&s).err().expect("refused").to_string();
    assert!(e.contains("agents[0].cluster: unknown cluster 'mars'"), "{e}");
    let text = r#"{"agents":[],"failover_grace_s":1,"start_s":1,"settle_s":1,"steps":[],"extra":1}"#;
    let e = serde_json::from_str::<Scenario>(text).expect_err("refused").to_string();
    assert!(e.contains("unknown field `extra`"), "{e}");
}
