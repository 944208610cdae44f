use twinmesh_common::fabric;
use twinmesh_common::policy::{Policy, PolicyConfig};

use super::world::{self, World};
use super::*;

// Rule: a seed fixes an experiment's every figure (replications may run
// on any thread, in any order).
#[test]
fn an_experiment_is_deterministic_for_a_seed() {
    let e = registry().into_iter().find(|e| e.name == "v1-controller").unwrap();
    let a = replicate(&e, Ctx { quick: true }, 7, 2, 2, Output::Json).unwrap();
    let b = replicate(&e, Ctx { quick: true }, 7, 2, 1, Output::Json).unwrap();
    let figures = |runs: &[Vec<Row>]| -> Vec<Vec<(&'static str, f64)>> {
        runs.iter().flatten().map(|r| r.figures.clone()).collect()
    };
    assert_eq!(format!("{:?}", figures(&a)), format!("{:?}", figures(&b)));
    // Another seed, other luck.
    let c = replicate(&e, Ctx { quick: true }, 8, 1, 1, Output::Json).unwrap();
    assert_ne!(format!("{:?}", figures(&a[..1])), format!("{:?}", figures(&c)));
}

// Rule: every submitted job ends in exactly one final state — succeeded
// (every stage finished, in order of time) or failed (with its reason).
#[test]
fn every_job_ends_once() {
    let f = fabric::reference();
    let jobs = world::stream_at_load(&f, 60, 0.9, 3).unwrap();
    let w = World::new(&f, 3, true, 900_000.0);
    for p in Policy::ALL {
        let (placed, out) = world::run_policy(&w, &w.truth, &jobs, p, &PolicyConfig::default()).unwrap();
        assert_eq!((placed.len(), out.len()), (60, 60));
        for ((j, at), o) in jobs.iter().zip(&out) {
            assert_eq!(o.submit_ms, *at);
            if o.failed {
                assert!(o.error.is_some(), "{p}: a failed job says why");
            } else {
                assert!(o.error.is_none() && o.finish_ms.is_finite() && o.finish_ms >= *at, "{p}: {o:?}");
                assert_eq!(o.stages.len(), j.stages.len());
                assert!(o.stages.iter().all(|s| s.finish_ms <= o.finish_ms && s.start_ms >= *at));
            }
        }
    }
}

// Rule: the oracle is never worse than any policy on the same instance,
// and replaying a placement meets the same luck as running it.
#[test]
fn the_oracle_is_never_worse_than_any_policy() {
    for seed in [1, 2] {
        let inst = oracle::instance(seed, 3).unwrap();
        let (_, oracle_cost, _, _) = inst.results.last().unwrap().clone();
        assert_eq!(inst.results.last().unwrap().0, "oracle");
        for (name, cost, _, _) in &inst.results[..4] {
            assert!(oracle_cost <= *cost + 1e-6, "seed {seed}: oracle {oracle_cost} > {name} {cost}");
        }
        assert!(inst.evaluations > 0);
    }
    let f = fabric::reference();
    let jobs = world::stream_at_load(&f, 20, 0.7, 5).unwrap();
    let w = World::new(&f, 5, true, 900_000.0);
    let (placed, out) = world::run_policy(&w, &w.truth, &jobs, Policy::Greedy, &PolicyConfig::default()).unwrap();
    let again = world::replay(&w, &jobs, &placed);
    let lat =
        |o: &[twinmesh_common::execution::JobOutcome]| o.iter().map(|o| (o.latency_ms, o.failed)).collect::<Vec<_>>();
    assert_eq!(lat(&out), lat(&again));
}

// Rule: the summary holds, per group and figure, the statistics of that
// figure over the replications — and nothing of other groups.
#[test]
fn the_summary_groups_figures_over_replications() {
    let row = |p: &str, v: f64| Row::new(vec![("policy", p.to_string())]).with("x", v).with("y", 2.0 * v);
    let runs = vec![vec![row("a", 1.0), row("b", 10.0)], vec![row("a", 3.0), row("b", 30.0)], vec![row("a", 2.0)]];
    let s = summarise(&runs);
    assert_eq!(s.len(), 4);
    let a = find(&s, "x", &[("policy", "a")]).unwrap();
    assert_eq!((a.stats.n, a.stats.mean, a.stats.median, a.stats.min, a.stats.max), (3, 2.0, 2.0, 1.0, 3.0));
    let by = find(&s, "y", &[("policy", "b")]).unwrap();
    assert_eq!((by.stats.n, by.stats.mean), (2, 40.0));
}

#[test]
fn experiments_are_found_by_name_or_short_name() {
    let names: Vec<&str> = registry().iter().map(|e| e.name).collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    let e7: Vec<&str> = select("e7").unwrap().iter().map(|e| e.name).collect();
    assert_eq!(e7, ["e7-quality", "e7-oracle"]);
    let err = select("v9").err().unwrap().to_string();
    assert!(err.contains("no experiment 'v9'") && err.contains("e8-accuracy"), "{err}");
}

#[test]
fn convergence_is_five_jobs_in_a_row_within_ten_percent() {
    assert_eq!(seed::jobs_to_converge(&[0.3, 0.2, 0.05, 0.0, -0.09, 0.1, 0.02, 0.0]), 2);
    assert_eq!(seed::jobs_to_converge(&[0.3, 0.05, 0.05, 0.05, 0.05, 0.3]), 6);
}
