//! E8 — how accurate the twin's predictions are, before and after
//! calibration, per job kind and load, in the embedded fabric's ground
//! truth (hidden node speeds 0.85–1.25×, true emulation costs, σ = 0.05
//! noise: `common::truth`, the world the agent's embedded actuator runs).
//!
//! A calibration stream is run on the uncalibrated twin and every run it
//! observed is folded into a `Calibration` (the agent's rule); a second
//! stream is then planned and run twice, on the uncalibrated and on the
//! calibrated twin. A prediction is the plan's latency at the job's
//! arrival — it sees the work booked then, not jobs arriving later; the
//! third twin, `calibrated+arrivals`, forecasts the same placements in the
//! twin's DES with every arrival known, to show how much of the error is
//! queueing behind jobs that came later.

use twinmesh_common::calibrate::Calibration;
use twinmesh_common::fabric;
use twinmesh_common::policy::{Policy, PolicyConfig};
use twinmesh_common::truth;

use super::svg::Chart;
use super::world::{self, Luck, World};
use super::{Ctx, Experiment, Row, SummaryRow, find, met};

pub fn experiments() -> Vec<Experiment> {
    vec![Experiment {
        name: "e8-accuracy",
        title: "E8 prediction accuracy before and after calibration",
        run,
        charts: || {
            vec![
                Chart::bars("jobs within ±10 % latency (%)", "load", Some("twin"), "within_10_pct"),
                Chart::bars("latency MAPE (%)", "load", Some("twin"), "mape_pct"),
                Chart::bars("jobs within ±20 % energy (%)", "load", Some("twin"), "energy_within_20_pct"),
            ]
        },
        verdict,
    }]
}

fn run(ctx: Ctx, seed: u64) -> anyhow::Result<Vec<Row>> {
    let fabric = fabric::reference();
    let (n, loads): (usize, &[f64]) = if ctx.quick { (120, &[0.3, 0.7]) } else { (600, &[0.1, 0.3, 0.5, 0.7]) };
    let cfg = PolicyConfig { seed, ..PolicyConfig::default() };
    let policy = Policy::Greedy;
    let mut rows = Vec::new();
    for &load in loads {
        // Learn from a first stream.
        let learn = world::stream_at_load(&fabric, n, load, seed ^ 0xca1)?;
        let mut w = World::new(&fabric, seed, false, 0.0);
        w.luck = Luck::Truth(world::ground_truth(&learn, seed ^ 0xca1));
        let (placed, out) = world::run_policy(&w, &w.truth, &learn, policy, &cfg)?;
        // Every owner measures its nodes at start, as the agent does
        // (`probe_own_speed`: four 1 s probes in each format a node
        // offers), and then learns from every run on them.
        let mut cal = Calibration::default();
        for n in 0..w.truth.nodes.len() {
            let name = &w.truth.nodes.name[n];
            for f in w.truth.nodes.runtimes[n].iter() {
                let model = truth::model_ms(&w.truth, n, 1000.0, f);
                for i in 0..4 {
                    let t = truth::true_ms(&w.truth, n, model, f, &format!("probe/{name}/{f}/{i}"));
                    cal.observe(name, f, model, t);
                }
            }
        }
        for (((job, _), p), o) in learn.iter().zip(&placed).zip(&out) {
            for (s, so) in o.stages.iter().enumerate() {
                if so.compute_ms > 0.0 && so.attempts == 1 && so.node == p.assign[s].node {
                    let model = truth::model_ms(&w.truth, so.node, job.stages[s].compute.duration_ms, so.format);
                    cal.observe(&w.truth.nodes.name[so.node], so.format, model, so.compute_ms);
                }
            }
        }
        let mut calibrated = fabric.view();
        cal.apply_under_owners(&mut calibrated);
        cal.apply_spread(&mut calibrated);
        // Predict a second stream with each twin; the last books stages
        // only when they are ready, as before reservations.
        let eval = world::stream_at_load(&fabric, n, load, seed)?;
        w.luck = Luck::Truth(world::ground_truth(&eval, seed));
        for (twin, view, reserve) in [
            ("uncalibrated", &w.truth, true),
            ("calibrated", &calibrated, true),
            ("calibrated, booked on readiness", &calibrated, false),
        ] {
            w.reserve = reserve;
            let (placed, out) = world::run_policy(&w, view, &eval, policy, &cfg)?;
            let mut kinds: Vec<String> = eval.iter().map(|(j, _)| j.name.clone()).collect();
            kinds.sort();
            kinds.dedup();
            kinds.insert(0, "all".into());
            for kind in kinds {
                let (mut err, mut planned_err, mut latency) = (Vec::new(), Vec::new(), Vec::new());
                let (mut energy_ok, mut under_p90, mut under_p50) = (0usize, 0usize, 0usize);
                let (mut idle_core_ms, mut reserved_core_ms, mut used_core_ms) = (0.0, 0.0, 0.0);
                for (((job, _), p), o) in eval.iter().zip(&placed).zip(&out) {
                    if o.failed || (kind != "all" && job.name != kind) {
                        continue;
                    }
                    err.push((o.latency_ms - p.predicted_ms) / p.predicted_ms);
                    latency.push(o.latency_ms);
                    planned_err.push((o.latency_ms - p.planned_ms) / p.planned_ms);
                    under_p90 += usize::from(o.latency_ms <= p.p90_ms);
                    under_p50 += usize::from(o.latency_ms <= p.predicted_ms);
                    if ((o.energy_j - p.predicted_j) / p.predicted_j).abs() <= 0.2 {
                        energy_ok += 1;
                    }
                    // Room reserved that no run used: each stage's window
                    // less the part of it its run covered.
                    for ((st, so), &(w0, w1)) in job.stages.iter().zip(&o.stages).zip(&p.windows) {
                        let cpu = st.compute.cpu;
                        used_core_ms += cpu * so.compute_ms.max(0.0);
                        if reserve && w1 > w0 && !st.predecessors.is_empty() {
                            let covered = (w1.min(so.finish_ms) - w0.max(so.start_ms)).max(0.0);
                            reserved_core_ms += cpu * (w1 - w0);
                            idle_core_ms += cpu * (w1 - w0 - covered);
                        }
                    }
                }
                let m = err.len().max(1) as f64;
                let share = |v: &[f64]| 100.0 * v.iter().filter(|e| e.abs() <= 0.10).count() as f64 / m;
                rows.push(
                    Row::new(vec![("twin", twin.to_string()), ("load", format!("{load}")), ("kind", kind)])
                        .with("within_10_pct", share(&err))
                        .with("mape_pct", 100.0 * err.iter().map(|e| e.abs()).sum::<f64>() / m)
                        .with("bias_pct", 100.0 * err.iter().sum::<f64>() / m)
                        .with("p90_coverage_pct", 100.0 * under_p90 as f64 / m)
                        .with("under_p50_pct", 100.0 * under_p50 as f64 / m)
                        .with("plan_within_10_pct", share(&planned_err))
                        .with("energy_within_20_pct", 100.0 * energy_ok as f64 / m)
                        .with("mean_latency_ms", latency.iter().sum::<f64>() / m)
                        .with("reserved_idle_core_s", idle_core_ms / 1000.0)
                        .with("reserved_idle_pct_of_used", 100.0 * idle_core_ms / used_core_ms.max(1e-9))
                        .with("reserved_core_s", reserved_core_ms / 1000.0)
                        .with("jobs", err.len() as f64),
                );
            }
        }
    }
    Ok(rows)
}

fn verdict(sum: &[SummaryRow]) -> Vec<String> {
    let mut out = Vec::new();
    let mut loads: Vec<&str> = sum
        .iter()
        .filter(|r| r.metric == "within_10_pct")
        .filter_map(|r| r.group.iter().find(|(k, _)| k == "load").map(|(_, v)| v.as_str()))
        .collect();
    loads.sort_unstable();
    loads.dedup();
    for load in loads {
        let get = |metric: &str, twin: &str, kind: &str| {
            find(sum, metric, &[("twin", twin), ("load", load), ("kind", kind)]).map(|r| r.stats.mean)
        };
        let (Some(b), Some(a), Some(r)) = (
            get("within_10_pct", "uncalibrated", "all"),
            get("within_10_pct", "calibrated", "all"),
            get("within_10_pct", "calibrated, booked on readiness", "all"),
        ) else {
            continue;
        };
        // Every job kind, not only the mix.
        let kinds: Vec<(String, f64)> = sum
            .iter()
            .filter(|x| x.metric == "within_10_pct")
            .filter(|x| x.group.iter().any(|(k, v)| k == "twin" && v == "calibrated"))
            .filter(|x| x.group.iter().any(|(k, v)| k == "load" && v == load))
            .filter_map(|x| x.group.iter().find(|(k, _)| k == "kind").map(|(_, v)| (v.clone(), x.stats.mean)))
            .filter(|(k, _)| k != "all")
            .collect();
        let worst = kinds.iter().map(|(_, v)| *v).fold(f64::INFINITY, f64::min);
        let bias = get("bias_pct", "calibrated", "all").unwrap_or(f64::NAN);
        let cover = get("p90_coverage_pct", "calibrated", "all").unwrap_or(f64::NAN);
        out.push(format!(
            "load {load}: {a:.1} % of jobs within ±10 % after calibration (uncalibrated {b:.1} %, booked on readiness {r:.1} %), worst kind {worst:.1} % (target ≥ 95 % for every kind: {}); bias {bias:+.1} % (±2 %: {}); p90 covers {cover:.1} % (85–95 %: {})",
            met(worst >= 95.0),
            met(bias.abs() <= 2.0),
            met((85.0..=95.0).contains(&cover)),
        ));
    }
    out
}
