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
use twinmesh_common::des::{SimConfig, Simulator};
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
        let mut cal = Calibration::default();
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
        // Predict a second stream with each twin.
        let eval = world::stream_at_load(&fabric, n, load, seed)?;
        w.luck = Luck::Truth(world::ground_truth(&eval, seed));
        for (twin, view) in
            [("uncalibrated", &w.truth), ("calibrated", &calibrated), ("calibrated+arrivals", &calibrated)]
        {
            let (mut placed, out) = world::run_policy(&w, view, &eval, policy, &cfg)?;
            if twin == "calibrated+arrivals" {
                // The same placements forecast by the twin's DES with the
                // whole arrival stream known: what a prediction that
                // accounts for later arrivals can reach.
                let mut sim = Simulator::new(&calibrated, SimConfig::exact());
                let hs: Vec<usize> = eval
                    .iter()
                    .zip(&placed)
                    .map(|((j, at), p)| sim.submit(j, calibrated.origin(j).expect("origin"), &p.assign, &p.shadow, *at))
                    .collect();
                sim.run();
                for (p, h) in placed.iter_mut().zip(hs) {
                    p.predicted_ms = sim.outcome(h).latency_ms;
                }
            }
            let mut kinds: Vec<String> = eval.iter().map(|(j, _)| j.name.clone()).collect();
            kinds.sort();
            kinds.dedup();
            kinds.insert(0, "all".into());
            for kind in kinds {
                let mut err = Vec::new();
                let mut energy_ok = 0usize;
                for (((job, _), p), o) in eval.iter().zip(&placed).zip(&out) {
                    if o.failed || (kind != "all" && job.name != kind) {
                        continue;
                    }
                    err.push((o.latency_ms - p.predicted_ms) / p.predicted_ms);
                    if ((o.energy_j - p.predicted_j) / p.predicted_j).abs() <= 0.2 {
                        energy_ok += 1;
                    }
                }
                let m = err.len().max(1) as f64;
                rows.push(
                    Row::new(vec![("twin", twin.to_string()), ("load", format!("{load}")), ("kind", kind)])
                        .with("within_10_pct", 100.0 * err.iter().filter(|e| e.abs() <= 0.10).count() as f64 / m)
                        .with("mape_pct", 100.0 * err.iter().map(|e| e.abs()).sum::<f64>() / m)
                        .with("bias_pct", 100.0 * err.iter().sum::<f64>() / m)
                        .with("energy_within_20_pct", 100.0 * energy_ok as f64 / m)
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
    loads.dedup();
    for load in loads {
        let get = |twin: &str| find(sum, "within_10_pct", &[("twin", twin), ("load", load), ("kind", "all")]);
        if let (Some(b), Some(a), Some(f)) = (get("uncalibrated"), get("calibrated"), get("calibrated+arrivals")) {
            out.push(format!(
                "load {load}: {:.1} % of jobs within ±10 % before calibration, {:.1} % after (target ≥ 95 %: {}); {:.1} % forecasting with the arrivals known",
                b.stats.mean,
                a.stats.mean,
                met(a.stats.mean >= 95.0),
                f.stats.mean
            ));
        }
    }
    out
}
