//! The seed document's experiments V1, V2, V4 and V6 on the reference
//! fabric, planned as the agent plans (a policy on the twin's view at the
//! job's arrival) and run on the DES's ground truth. V3 (format overhead)
//! and V5 (planning throughput through the HTTP API) need the agent and
//! QEMU: `twinmesh bench` and `tests/tests/qemu.rs` (docs/experiments.md).

use twinmesh_common::calibrate::Calibration;
use twinmesh_common::fabric;
use twinmesh_common::forecast::Outages;
use twinmesh_common::job::Job;
use twinmesh_common::policy::{Policy, PolicyConfig};
use twinmesh_common::spec::parse_job;
use twinmesh_common::truth;

use super::svg::Chart;
use super::world::{self, Luck, World};
use super::{Ctx, Experiment, Row, SummaryRow, find, met};

pub fn experiments() -> Vec<Experiment> {
    vec![
        Experiment {
            name: "v1-controller",
            title: "V1 resilient controller against the kube-like baseline (10 jobs, 1,000–1,450 ms)",
            run: v1,
            charts: || {
                vec![
                    Chart::bars("mean latency (ms)", "policy", None, "mean_latency_ms"),
                    Chart::bars("deadlines met (%)", "policy", None, "on_time_pct"),
                ]
            },
            verdict: v1_verdict,
        },
        Experiment {
            name: "v2-ablation",
            title: "V2 predictive ablation (20 jobs, 800–1,600 ms, policies and origins rotated)",
            run: v2,
            charts: || {
                vec![
                    Chart::bars("mean latency (ms)", "policy", None, "mean_latency_ms"),
                    Chart::bars("mean |prediction error| (%)", "policy", None, "mean_abs_error_pct"),
                ]
            },
            verdict: |_| Vec::new(),
        },
        Experiment {
            name: "v4-shadow",
            title: "V4 shadow plans: the primary node fails 1 s into every job",
            run: v4,
            charts: || {
                vec![
                    Chart::bars("jobs succeeded (%)", "plan", None, "succeeded_pct"),
                    Chart::bars("time lost to the failure (ms)", "plan", None, "failover_ms"),
                ]
            },
            verdict: v4_verdict,
        },
        Experiment {
            name: "v6-drift",
            title: "V6 drift: every node slower by 1.0 / 1.25 / 1.5×, calibration online",
            run: v6,
            charts: || {
                vec![
                    Chart::bars("|error| of the first 5 jobs (%)", "drift", None, "first5_abs_error_pct"),
                    Chart::bars("|error| of the last 10 jobs (%)", "drift", None, "last10_abs_error_pct"),
                    Chart::bars("jobs until within ±10 %", "drift", None, "jobs_to_converge"),
                ]
            },
            verdict: v6_verdict,
        },
    ]
}

const CLUSTERS: [&str; 7] =
    ["dc-core", "prosumer-mining", "campus-lab", "gamer-pc", "phone-pan-1", "phone-pan-2", "edge-microdc"];

fn job(name: &str, cluster: &str, duration_ms: f64, deadline_ms: f64) -> anyhow::Result<Job> {
    Ok(parse_job(&format!(
        r#"{{"apiVersion":"twinmesh.io/v1","metadata":{{"name":"{name}","deadline_ms":{deadline_ms},"origin":{{"cluster":"{cluster}"}}}},"spec":{{"stages":[
          {{"id":"ingest","compute":{{"cpu":1,"mem_gb":0.5,"duration_ms":150}},"output_mb":4}},
          {{"id":"work","compute":{{"cpu":2,"mem_gb":2,"duration_ms":{duration_ms}}},"predecessor":"ingest"}}]}}}}"#
    ))?)
}

fn rows_of(
    label: (&'static str, String),
    jobs: &[(Job, f64)],
    placed: &[world::Placed],
    out: &[twinmesh_common::execution::JobOutcome],
) -> Row {
    let ok: Vec<usize> = (0..out.len()).filter(|&i| !out[i].failed).collect();
    let n = ok.len().max(1) as f64;
    let on_time = jobs.iter().zip(out).filter(|((j, _), o)| !world::violated(j, o)).count();
    Row::new(vec![label])
        .with("mean_latency_ms", world::mean_latency(out))
        .with("p95_latency_ms", world::latency_quantile(out, 0.95))
        .with("on_time_pct", 100.0 * on_time as f64 / jobs.len() as f64)
        .with("failed", (out.len() - ok.len()) as f64)
        .with(
            "mean_abs_error_pct",
            100.0
                * ok.iter()
                    .map(|&i| ((out[i].latency_ms - placed[i].predicted_ms) / placed[i].predicted_ms).abs())
                    .sum::<f64>()
                / n,
        )
}

fn v1(_ctx: Ctx, seed: u64) -> anyhow::Result<Vec<Row>> {
    let f = fabric::reference();
    let jobs: Vec<(Job, f64)> = (0..10)
        .map(|i| {
            let d = 1000.0 + 50.0 * i as f64;
            Ok((job(&format!("v1-{i}"), CLUSTERS[i % CLUSTERS.len()], d, d + 600.0)?, 500.0 * i as f64))
        })
        .collect::<anyhow::Result<_>>()?;
    let w = World::new(&f, seed, true, 600_000.0);
    let cfg = PolicyConfig { seed, ..PolicyConfig::default() };
    let mut rows = Vec::new();
    for p in [Policy::Baseline, Policy::Resilient] {
        let (placed, out) = world::run_policy(&w, &w.truth, &jobs, p, &cfg)?;
        rows.push(rows_of(("policy", p.to_string()), &jobs, &placed, &out));
    }
    Ok(rows)
}

fn v1_verdict(sum: &[SummaryRow]) -> Vec<String> {
    let get = |p: &str, m: &str| find(sum, m, &[("policy", p)]).map(|r| r.stats.mean);
    match (get("baseline", "mean_latency_ms"), get("resilient", "mean_latency_ms")) {
        (Some(b), Some(r)) => vec![format!(
            "resilient: mean latency {r:.0} ms vs {b:.0} ms for the baseline ({:+.0} %); deadlines met {:.0} % vs {:.0} %",
            100.0 * (r / b - 1.0),
            get("resilient", "on_time_pct").unwrap_or(f64::NAN),
            get("baseline", "on_time_pct").unwrap_or(f64::NAN)
        )],
        _ => Vec::new(),
    }
}

fn v2(_ctx: Ctx, seed: u64) -> anyhow::Result<Vec<Row>> {
    let f = fabric::reference();
    let origins = ["dc-core", "edge-microdc", "campus-lab", "gamer-pc"];
    let policies = [Policy::Greedy, Policy::Resilient, Policy::Cvar];
    let jobs: Vec<(Job, f64)> = (0..20)
        .map(|i| {
            let d = 800.0 + 800.0 * i as f64 / 19.0;
            Ok((job(&format!("v2-{i}"), origins[i % origins.len()], d.round(), 2.0 * d)?, 300.0 * i as f64))
        })
        .collect::<anyhow::Result<_>>()?;
    let rotated: Vec<Policy> = (0..jobs.len()).map(|i| policies[i % policies.len()]).collect();
    let w = World::new(&f, seed, true, 600_000.0);
    let cfg = PolicyConfig { seed, ..PolicyConfig::default() };
    let (placed, out) = world::run_mixed(&w, &w.truth, &jobs, &rotated, &cfg)?;
    let mut rows = Vec::new();
    for p in policies {
        let idx: Vec<usize> = (0..jobs.len()).filter(|&i| rotated[i] == p).collect();
        let j: Vec<_> = idx.iter().map(|&i| jobs[i].clone()).collect();
        let pl: Vec<_> = idx.iter().map(|&i| placed[i].clone()).collect();
        let o: Vec<_> = idx.iter().map(|&i| out[i].clone()).collect();
        rows.push(rows_of(("policy", p.to_string()), &j, &pl, &o));
    }
    Ok(rows)
}

fn v4(ctx: Ctx, seed: u64) -> anyhow::Result<Vec<Row>> {
    let f = fabric::reference();
    let n = if ctx.quick { 6 } else { 14 };
    // Jobs 60 s apart, so one job's failure is over before the next.
    let jobs: Vec<(Job, f64)> = (0..n)
        .map(|i| Ok((job(&format!("v4-{i}"), CLUSTERS[i % CLUSTERS.len()], 4000.0, 9000.0)?, 60_000.0 * i as f64)))
        .collect::<anyhow::Result<_>>()?;
    let calm = World::new(&f, seed, false, 0.0);
    let cfg = PolicyConfig { seed, ..PolicyConfig::default() };
    let (placed, base) = world::run_policy(&calm, &calm.truth, &jobs, Policy::Resilient, &cfg)?;
    // The node of each job's long stage fails 1 s after it starts, for 20 s.
    let mut down = vec![Vec::new(); calm.truth.nodes.len()];
    for (p, o) in placed.iter().zip(&base) {
        let start = o.stages[1].start_ms;
        down[p.assign[1].node].push((start + 1000.0, start + 21_000.0));
    }
    let failing = World { outages: Outages::from_spans(down), ..World::new(&f, seed, false, 0.0) };
    let mut rows = Vec::new();
    for (label, keep_shadow) in [("shadow", true), ("chosen at failure", false)] {
        let plans: Vec<world::Placed> = placed
            .iter()
            .cloned()
            .map(|mut p| {
                if !keep_shadow {
                    p.shadow = vec![None; p.shadow.len()];
                }
                p
            })
            .collect();
        let out = world::replay(&failing, &jobs, &plans);
        let ok: Vec<usize> = (0..out.len()).filter(|&i| !out[i].failed).collect();
        let lost: f64 =
            ok.iter().map(|&i| out[i].latency_ms - base[i].latency_ms).sum::<f64>() / ok.len().max(1) as f64;
        rows.push(
            Row::new(vec![("plan", label.to_string())])
                .with("succeeded_pct", 100.0 * ok.len() as f64 / out.len() as f64)
                .with("failover_ms", lost)
                .with(
                    "on_time_pct",
                    100.0 * jobs.iter().zip(&out).filter(|((j, _), o)| !world::violated(j, o)).count() as f64
                        / n as f64,
                )
                .with("stage_failures", out.iter().map(|o| f64::from(o.failures)).sum()),
        );
    }
    Ok(rows)
}

fn v4_verdict(sum: &[SummaryRow]) -> Vec<String> {
    let get = |p: &str, m: &str| find(sum, m, &[("plan", p)]).map(|r| r.stats.mean);
    match (get("shadow", "failover_ms"), get("chosen at failure", "failover_ms")) {
        (Some(s), Some(n)) => vec![format!(
            "with the planned shadow a failed primary costs {s:.0} ms, with the node chosen at the failure {n:.0} ms; succeeded {:.0} % vs {:.0} %",
            get("shadow", "succeeded_pct").unwrap_or(f64::NAN),
            get("chosen at failure", "succeeded_pct").unwrap_or(f64::NAN)
        )],
        _ => Vec::new(),
    }
}

/// Jobs until the prediction error stays within ±10 % for five jobs in a
/// row (the length of the run when it never does).
pub fn jobs_to_converge(errors: &[f64]) -> usize {
    let mut streak = 0;
    for (i, e) in errors.iter().enumerate() {
        streak = if e.abs() <= 0.10 { streak + 1 } else { 0 };
        if streak == 5 {
            return i + 1 - 5;
        }
    }
    errors.len()
}

fn v6(ctx: Ctx, seed: u64) -> anyhow::Result<Vec<Row>> {
    let f = fabric::reference();
    let n = if ctx.quick { 30 } else { 60 };
    let cfg = PolicyConfig { seed, ..PolicyConfig::default() };
    let mut rows = Vec::new();
    for drift in [1.0, 1.25, 1.5] {
        // One origin, jobs 2 s apart: the planner learns from the runs
        // that finished before each arrival.
        let jobs: Vec<(Job, f64)> = (0..n)
            .map(|i| Ok((job(&format!("v6-{i}"), "edge-microdc", 1200.0, 4000.0)?, 2000.0 * i as f64)))
            .collect::<anyhow::Result<_>>()?;
        let mut w = World::new(&f, seed, false, 0.0);
        for s in &mut w.truth.nodes.inv_speed {
            *s *= drift;
        }
        w.luck = Luck::Truth(world::ground_truth(&jobs, seed));
        let nominal = f.view();
        let mut cal = Calibration::default();
        let mut sim = w.simulator();
        let mut handles = Vec::new();
        let mut learned = vec![false; n];
        let mut predicted = Vec::new();
        for (job, at) in &jobs {
            sim.run_until(*at);
            for (k, h) in handles.iter().enumerate() {
                if learned[k] || !sim.job(*h).1.is_done() {
                    continue;
                }
                learned[k] = true;
                let o = sim.outcome(*h);
                for (s, so) in o.stages.iter().enumerate() {
                    if so.compute_ms > 0.0 {
                        let model =
                            truth::model_ms(&nominal, so.node, jobs[k].0.stages[s].compute.duration_ms, so.format);
                        cal.observe(&nominal.nodes.name[so.node], so.format, model, so.compute_ms);
                    }
                }
            }
            let mut view = nominal.clone();
            cal.apply_under_owners(&mut view);
            crate::policies::observe(&mut view, &sim, *at);
            let plan = Policy::Greedy.plan(&view, job, &cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
            let p = twinmesh_common::execution::placed(&w.truth, &job.name, &plan).map_err(anyhow::Error::msg)?;
            handles.push(sim.submit(job, w.truth.origin(job).expect("origin"), &p.assign, &p.shadow, *at));
            predicted.push(plan.predicted.latency_ms);
        }
        sim.run();
        let errors: Vec<f64> =
            handles.iter().zip(&predicted).map(|(h, p)| (sim.outcome(*h).latency_ms - p) / p).collect();
        let mean_abs = |e: &[f64]| 100.0 * e.iter().map(|x| x.abs()).sum::<f64>() / e.len().max(1) as f64;
        rows.push(
            Row::new(vec![("drift", format!("{drift}"))])
                .with("first5_abs_error_pct", mean_abs(&errors[..5]))
                .with("last10_abs_error_pct", mean_abs(&errors[n - 10..]))
                .with("jobs_to_converge", jobs_to_converge(&errors) as f64),
        );
    }
    Ok(rows)
}

fn v6_verdict(sum: &[SummaryRow]) -> Vec<String> {
    ["1", "1.25", "1.5"]
        .iter()
        .filter_map(|d| {
            let get = |m: &str| find(sum, m, &[("drift", d)]).map(|r| r.stats.mean);
            Some(format!(
                "drift {d}×: first 5 jobs off by {:.1} %, last 10 by {:.1} % (within ±10 %: {}), converged after {:.1} jobs",
                get("first5_abs_error_pct")?,
                get("last10_abs_error_pct")?,
                met(get("last10_abs_error_pct")? <= 10.0),
                get("jobs_to_converge")?
            ))
        })
        .collect()
}
