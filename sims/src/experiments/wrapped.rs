//! E11 (preemptive actions) and E12 (KubeTwin's autoscaling scenario) in
//! the framework: the same simulations as `twinmesh-sims preemptive` and
//! `twinmesh-sims autoscale`, with the seed's statistics over
//! replications.

use std::time::Instant;

use twinmesh_common::autoscale::{Scaling, ServiceCase, simulate as simulate_service};
use twinmesh_common::fabric;

use super::svg::Chart;
use super::{Ctx, Experiment, Row, SummaryRow, find, met};
use crate::preemptive::{Arm, Cell, simulate};

pub fn experiments() -> Vec<Experiment> {
    vec![
        Experiment {
            name: "e11-preemptive",
            title: "E11 preemptive actions and scaling against reactive failover and the HPA (precursors 10 s ahead, 70 % announced)",
            run: preemptive,
            charts: || {
                vec![
                    Chart::lines("SLO violations (% of jobs)", "load", "arm", "slo_violation_pct"),
                    Chart::lines("runs lost to node failures", "load", "arm", "runs_lost"),
                    Chart::lines("hosted service: requests late (%)", "load", "arm", "service_late_pct"),
                ]
            },
            verdict: preemptive_verdict,
        },
        Experiment {
            name: "e12-autoscale",
            title: "E12 KubeTwin's autoscaling scenario (130,000 requests)",
            run: autoscale,
            charts: || {
                vec![
                    Chart::bars("requests later than the objective (%)", "mode", None, "late_pct"),
                    Chart::bars("p99 latency (ms)", "mode", None, "p99_ms"),
                    Chart::bars("replica-seconds", "mode", None, "replica_s"),
                ]
            },
            verdict: autoscale_verdict,
        },
    ]
}

fn preemptive(ctx: Ctx, seed: u64) -> anyhow::Result<Vec<Row>> {
    let f = fabric::reference();
    let (jobs, loads): (usize, &[f64]) = if ctx.quick { (250, &[0.7]) } else { (1500, &[0.3, 0.5, 0.7, 0.9]) };
    let mut rows = Vec::new();
    for &load in loads {
        let cell = Cell {
            jobs,
            load,
            reliability: 0.7,
            lead_ms: 10_000.0,
            repair_ms: 20_000.0,
            false_alarms_per_hour: 2.0,
            seed,
        };
        for arm in Arm::ALL {
            let r = simulate(&f, &cell, arm)?;
            rows.push(
                Row::new(vec![("arm", arm.name().to_string()), ("load", format!("{load}"))])
                    .with("slo_violation_pct", 100.0 * r.slo_violations as f64 / r.jobs.max(1) as f64)
                    .with("p99_latency_ms", r.p99_latency_ms)
                    .with("core_s", r.core_s)
                    .with("wasted_core_s", r.wasted_core_s)
                    .with("runs_lost", r.stage_failures as f64)
                    .with("actions", (r.migrations + r.replicas) as f64)
                    .with("false_alarm_actions", r.false_alarm_actions as f64)
                    .with("utilisation", r.utilisation)
                    .with("service_late_pct", r.service_late_pct)
                    .with("service_core_s", r.service_core_s),
            );
        }
    }
    Ok(rows)
}

fn preemptive_verdict(sum: &[SummaryRow]) -> Vec<String> {
    let mut out = Vec::new();
    let get = |arm: &str, m: &str| find(sum, m, &[("arm", arm), ("load", "0.7")]).map(|r| r.stats.mean);
    let Some(reactive) = get("reactive", "slo_violation_pct") else { return out };
    for arm in ["migrate", "migrate+replicate", "preemptive+scaling"] {
        if let (Some(v), Some(cpu), Some(cpu0)) =
            (get(arm, "slo_violation_pct"), get(arm, "core_s"), get("reactive", "core_s"))
        {
            let fewer = 100.0 * (1.0 - v / reactive);
            let extra = 100.0 * (cpu / cpu0 - 1.0);
            out.push(format!(
                "{arm} at 70 % load: {v:.2} % SLO violations vs {reactive:.2} % reactive — {fewer:.0} % fewer (target ≥ 50 %: {}), CPU {extra:+.2} % (≤ 10 %: {})",
                met(fewer >= 50.0),
                met(extra <= 10.0)
            ));
        }
    }
    if let (Some(hpa), Some(twin)) =
        (get("reactive", "service_late_pct"), get("preemptive+scaling", "service_late_pct"))
    {
        out.push(format!(
            "the hosted service: {twin:.1} % of requests late scaled on the twin's forecast, {hpa:.1} % with the reactive HPA rule"
        ));
    }
    if let Some(floor) = get("no failures", "slo_violation_pct") {
        out.push(format!(
            "without failures (and without actions) {floor:.2} % violate from queueing alone: failures account for {:.0} % of reactive's violations, the rest is what moving queued stages removes",
            100.0 * (1.0 - floor / reactive)
        ));
    }
    out
}

fn autoscale(_ctx: Ctx, seed: u64) -> anyhow::Result<Vec<Row>> {
    let case = ServiceCase::kubetwin(seed);
    let mut rows = Vec::new();
    for mode in Scaling::ALL {
        let t = Instant::now();
        let r = simulate_service(&case, mode);
        let wall = t.elapsed().as_secs_f64();
        rows.push(
            Row::new(vec![("mode", mode.name().to_string())])
                .with("late_pct", 100.0 * r.late as f64 / r.requests.max(1) as f64)
                .with("p50_ms", r.p50_ms)
                .with("p99_ms", r.p99_ms)
                .with("replica_s", r.replica_s)
                .with("actions", f64::from(r.actions))
                .with("peak_replicas", f64::from(r.replicas.iter().map(|x| x.1).max().unwrap_or(0)))
                .with("requests_per_wall_s", r.requests as f64 / wall.max(1e-9)),
        );
    }
    Ok(rows)
}

fn autoscale_verdict(sum: &[SummaryRow]) -> Vec<String> {
    let get = |mode: &str, m: &str| find(sum, m, &[("mode", mode)]).map(|r| r.stats.mean);
    let mut out = Vec::new();
    if let (Some(r), Some(p), Some(rs), Some(ps)) = (
        get("reactive", "late_pct"),
        get("predictive", "late_pct"),
        get("reactive", "replica_s"),
        get("predictive", "replica_s"),
    ) {
        out.push(format!(
            "predictive scaling: {p:.2} % of requests late vs {r:.2} % for the reactive HPA rule, with {ps:.0} vs {rs:.0} replica-seconds"
        ));
    }
    if let Some(rate) = get("predictive", "requests_per_wall_s") {
        out.push(format!("simulated {:.1} M requests per wall second (KubeTwin: 10,000 in 2.72 s)", rate / 1e6));
    }
    out
}
