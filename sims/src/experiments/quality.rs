//! E7 — placement quality under load: baseline, greedy, resilient and CVaR
//! on the same arrivals, noise and node failures, from 30 % to 90 % offered
//! load of the reference fabric.

use twinmesh_common::fabric;
use twinmesh_common::policy::{Policy, PolicyConfig};

use super::svg::Chart;
use super::world::{self, World};
use super::{Ctx, Experiment, Row, SummaryRow, find, met};

pub fn experiments() -> Vec<Experiment> {
    vec![Experiment {
        name: "e7-quality",
        title: "E7 placement quality under load (failures on)",
        run,
        charts: || {
            vec![
                Chart::lines("SLO violations (% of jobs)", "load", "policy", "slo_violation_pct"),
                Chart::lines("p99 latency (ms)", "load", "policy", "p99_latency_ms"),
                Chart::lines("mean latency (ms)", "load", "policy", "mean_latency_ms"),
            ]
        },
        verdict,
    }]
}

pub const LOADS: [f64; 4] = [0.3, 0.5, 0.7, 0.9];

fn run(ctx: Ctx, seed: u64) -> anyhow::Result<Vec<Row>> {
    let fabric = fabric::reference();
    let (jobs_n, loads): (usize, &[f64]) = if ctx.quick { (150, &[0.3, 0.7]) } else { (800, &LOADS) };
    let mut rows = Vec::new();
    for &load in loads {
        let jobs = world::stream_at_load(&fabric, jobs_n, load, seed)?;
        let span = jobs.last().map_or(1.0, |j| j.1);
        let w = World::new(&fabric, seed, true, span + 600_000.0);
        let cap = w.truth.capacity();
        let offered = jobs.iter().map(|(j, _)| j.work()).sum::<f64>() / (cap * span);
        let cfg = PolicyConfig { seed, ..PolicyConfig::default() };
        for policy in Policy::ALL {
            let (_, out) = world::run_policy(&w, &w.truth, &jobs, policy, &cfg)?;
            let violations = jobs.iter().zip(&out).filter(|((j, _), o)| world::violated(j, o)).count();
            let failed = out.iter().filter(|o| o.failed).count();
            let done: f64 = jobs.iter().zip(&out).filter(|(_, o)| !o.failed).map(|((j, _), _)| j.work()).sum();
            let end = out.iter().map(|o| o.finish_ms).fold(span, f64::max);
            rows.push(
                Row::new(vec![("policy", policy.to_string()), ("load", format!("{load}"))])
                    .with("slo_violation_pct", 100.0 * violations as f64 / jobs.len() as f64)
                    .with("failed_pct", 100.0 * failed as f64 / jobs.len() as f64)
                    .with("mean_latency_ms", world::mean_latency(&out))
                    .with("p99_latency_ms", world::latency_quantile(&out, 0.99))
                    .with("offered_util", offered)
                    .with("reached_util", done / (cap * end)),
            );
        }
    }
    Ok(rows)
}

fn verdict(sum: &[SummaryRow]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(base) = find(sum, "slo_violation_pct", &[("policy", "baseline"), ("load", "0.7")]) else { return out };
    for p in ["greedy", "resilient", "cvar"] {
        if let Some(r) = find(sum, "slo_violation_pct", &[("policy", p), ("load", "0.7")]) {
            let fewer = 100.0 * (1.0 - r.stats.mean / base.stats.mean);
            out.push(format!(
                "{p} at 70 % load: {:.2} % of jobs violate their SLO vs {:.2} % for the baseline — {fewer:.0} % fewer (target ≥ 50 %: {})",
                r.stats.mean,
                base.stats.mean,
                met(fewer >= 50.0)
            ));
        }
    }
    out
}
