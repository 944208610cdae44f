//! E7 — the policies against an offline oracle: the best placement found
//! with hindsight of every run's noise and every node failure, on
//! instances small enough to search.
//!
//! The search: start from the best policy's placement; then, job by job,
//! try every joint placement of the job's stages (when there are at most
//! [`JOB_EXHAUSTIVE`] of them) or every node for one stage at a time,
//! replaying the whole instance in the DES for each candidate and keeping
//! any that lowers the total cost (latency, a failed job counting twice
//! its deadline); repeat until a pass improves nothing. The result is
//! never worse than any policy (it starts from the best) and no single
//! job's placement can be improved — a local optimum of the joint
//! placement, not a proof of the global one (that would be ~40^18
//! placements for six jobs of three stages on average on the reference
//! fabric).

use twinmesh_common::fabric;
use twinmesh_common::job::Job;
use twinmesh_common::policy::{Policy, PolicyConfig};
use twinmesh_common::predict::Assignment;
use twinmesh_common::view::allowed_by_arch;

use super::svg::Chart;
use super::world::{self, Placed, World};
use super::{Ctx, Experiment, Row, SummaryRow, find, met};

/// Largest number of joint placements of one job searched exhaustively.
pub const JOB_EXHAUSTIVE: usize = 2_500;
/// Passes over the jobs at most.
const MAX_PASSES: usize = 4;

pub fn experiments() -> Vec<Experiment> {
    vec![Experiment {
        name: "e7-oracle",
        title: "E7 policies against an offline oracle (small instances, 70 % load)",
        run,
        charts: || {
            vec![
                Chart::bars("mean cost (ms; failed = 2 × deadline)", "policy", None, "mean_cost_ms"),
                Chart::bars("above the oracle (%)", "policy", None, "gap_pct"),
            ]
        },
        verdict,
    }]
}

/// One instance's result per policy and the oracle: (name, outcomes'
/// total cost, mean latency, SLO violations).
pub struct Instance {
    pub jobs: Vec<(Job, f64)>,
    pub results: Vec<(String, f64, f64, usize)>,
    pub evaluations: usize,
}

pub fn instance(seed: u64, jobs_n: usize) -> anyhow::Result<Instance> {
    let fabric = fabric::reference();
    let jobs = world::stream_at_load(&fabric, jobs_n, 0.7, seed)?;
    let span = jobs.last().map_or(0.0, |j| j.1);
    let w = World::new(&fabric, seed, true, span + 600_000.0);
    let cfg = PolicyConfig { seed, ..PolicyConfig::default() };
    let total = |placed: &[Placed]| -> (f64, f64, usize) {
        let out = world::replay(&w, &jobs, placed);
        let cost = jobs.iter().zip(&out).map(|((j, _), o)| world::cost(j, o)).sum();
        let v = jobs.iter().zip(&out).filter(|((j, _), o)| world::violated(j, o)).count();
        (cost, world::mean_latency(&out), v)
    };
    let mut results = Vec::new();
    let mut start: Option<(f64, Vec<Placed>)> = None;
    for policy in Policy::ALL {
        let (placed, _) = world::run_policy(&w, &w.truth, &jobs, policy, &cfg)?;
        // Replayed, the placement meets the luck it met when planned.
        let (cost, mean, v) = total(&placed);
        if start.as_ref().is_none_or(|(c, _)| cost < *c) {
            start = Some((cost, placed.clone()));
        }
        results.push((policy.to_string(), cost, mean, v));
    }
    let (mut best_cost, mut best) = start.expect("four policies ran");
    let mut evaluations = 0usize;
    // Candidate nodes (with their best format) of every stage.
    let cands: Vec<Vec<Vec<Assignment>>> = jobs
        .iter()
        .map(|(job, _)| {
            job.stages
                .iter()
                .map(|st| {
                    let allowed = allowed_by_arch(&st.constraints);
                    (0..w.truth.nodes.len())
                        .filter(|&n| w.truth.hosts(n, &st.compute))
                        .filter_map(|n| {
                            w.truth.best_format(n, &allowed).map(|(format, _)| Assignment { node: n, format })
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    let mut try_job = |j: usize, assign: Vec<Assignment>, best: &mut Vec<Placed>, best_cost: &mut f64| -> bool {
        let mut cand = best.clone();
        let p = &mut cand[j];
        p.shadow = p.shadow.iter().zip(&assign).map(|(s, a)| s.filter(|s| s.node != a.node)).collect();
        p.assign = assign;
        evaluations += 1;
        let (c, _, _) = total(&cand);
        if c < *best_cost - 1e-9 {
            *best = cand;
            *best_cost = c;
            true
        } else {
            false
        }
    };
    for _ in 0..MAX_PASSES {
        let mut improved = false;
        for j in 0..jobs.len() {
            let per_stage = &cands[j];
            let product = per_stage.iter().map(Vec::len).try_fold(1usize, |a, n| a.checked_mul(n));
            if product.is_some_and(|p| p <= JOB_EXHAUSTIVE) {
                let mut idx = vec![0usize; per_stage.len()];
                'all: loop {
                    let assign: Vec<Assignment> = idx.iter().enumerate().map(|(s, &i)| per_stage[s][i]).collect();
                    if assign != best[j].assign {
                        improved |= try_job(j, assign, &mut best, &mut best_cost);
                    }
                    for s in 0..idx.len() {
                        idx[s] += 1;
                        if idx[s] < per_stage[s].len() {
                            continue 'all;
                        }
                        idx[s] = 0;
                    }
                    break;
                }
            } else {
                for s in 0..per_stage.len() {
                    for a in &per_stage[s] {
                        if *a == best[j].assign[s] {
                            continue;
                        }
                        let mut assign = best[j].assign.clone();
                        assign[s] = *a;
                        improved |= try_job(j, assign, &mut best, &mut best_cost);
                    }
                }
            }
        }
        if !improved {
            break;
        }
    }
    let (cost, mean, v) = total(&best);
    results.push(("oracle".into(), cost, mean, v));
    Ok(Instance { jobs, results, evaluations })
}

fn run(ctx: Ctx, seed: u64) -> anyhow::Result<Vec<Row>> {
    let jobs_n = if ctx.quick { 4 } else { 6 };
    let inst = instance(seed, jobs_n)?;
    let oracle = inst.results.last().expect("the oracle's row").1;
    let n = inst.jobs.len() as f64;
    Ok(inst
        .results
        .iter()
        .map(|(name, cost, mean, v)| {
            Row::new(vec![("policy", name.clone())])
                .with("mean_cost_ms", cost / n)
                .with("mean_latency_ms", *mean)
                .with("slo_violations", *v as f64)
                .with("gap_pct", 100.0 * (cost / oracle - 1.0))
                .with("oracle_evaluations", inst.evaluations as f64)
        })
        .collect())
}

fn verdict(sum: &[SummaryRow]) -> Vec<String> {
    let mut out = Vec::new();
    let best = ["greedy", "resilient", "cvar"]
        .iter()
        .filter_map(|p| find(sum, "gap_pct", &[("policy", p)]).map(|r| (*p, r.stats.mean)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((p, gap)) = best {
        out.push(format!(
            "best predictive policy ({p}) is {gap:.1} % above the oracle's mean cost (target ≤ 5 %: {})",
            met(gap <= 5.0)
        ));
    }
    if let Some(b) = find(sum, "gap_pct", &[("policy", "baseline")]) {
        out.push(format!("the baseline is {:.1} % above the oracle", b.stats.mean));
    }
    out
}
