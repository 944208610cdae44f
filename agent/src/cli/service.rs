//! `twinmesh plan SERVICE` — a service document (`kind: Service`) run
//! through the twin's service DES (`common::autoscale`) under each scaling
//! mode on its declared load: requests late against the objective,
//! latency, replica-seconds, scaling actions and replicas over time — what
//! the twin would do, first simulated. Where one replica would be placed
//! is planned as a one-stage job from the service's origin.

use anyhow::Context;
use serde::Serialize;
use twinmesh_common::autoscale::{Scaling, ServiceRun, simulate};
use twinmesh_common::fabric::Fabric;
use twinmesh_common::policy::{Policy, PolicyConfig};
use twinmesh_common::spec;

use super::Output;

#[derive(Serialize)]
struct ModeReport {
    mode: &'static str,
    chosen: bool,
    requests: u64,
    late: u64,
    late_pct: f64,
    p50_ms: f64,
    p99_ms: f64,
    replica_s: f64,
    actions: u32,
    peak_replicas: u32,
    /// (seconds, replicas) at each change.
    replicas: Vec<(f64, u32)>,
}

fn report(mode: Scaling, chosen: bool, r: &ServiceRun) -> ModeReport {
    ModeReport {
        mode: mode.name(),
        chosen,
        requests: r.requests,
        late: r.late,
        late_pct: 100.0 * r.late as f64 / r.requests.max(1) as f64,
        p50_ms: r.p50_ms,
        p99_ms: r.p99_ms,
        replica_s: r.replica_s,
        actions: r.actions,
        peak_replicas: r.replicas.iter().map(|x| x.1).max().unwrap_or(0),
        replicas: r.replicas.iter().map(|&(t, n)| (t / 1000.0, n)).collect(),
    }
}

/// Plans a service document (already known to be one).
pub fn run(text: &str, source: &str, fabric: &Fabric, seed: u64, output: Output) -> anyhow::Result<()> {
    let (doc, case, chosen) =
        spec::parse_service(text, seed).with_context(|| format!("invalid service document {source}"))?;
    let modes: Vec<ModeReport> = Scaling::ALL.iter().map(|&m| report(m, m == chosen, &simulate(&case, m))).collect();
    // Where one replica goes: a one-stage job of the replica's size from
    // the service's origin, planned by greedy on the idle fabric.
    let s = &doc.spec;
    let probe = doc.replica_job().context("the replica as a job")?;
    let view = fabric.view();
    let place = Policy::Greedy
        .plan(&view, &probe, &PolicyConfig { seed, ..PolicyConfig::default() })
        .with_context(|| format!("no node of the fabric can hold a replica of '{}'", doc.metadata.name))?;
    let node = place.placements[0].node.clone();
    let cluster = place.placements[0].cluster.clone();
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string(&serde_json::json!({
                "service": doc.metadata.name, "scaling": chosen.name(), "replica_node": node,
                "replica_cluster": cluster, "modes": modes,
            }))?
        ),
        Output::Text => {
            println!(
                "service {} · {}–{} replicas of {} cores / {} GB · objective {} ms · {} requests",
                doc.metadata.name,
                case.scale.min,
                case.scale.max,
                s.replica.cpu,
                s.replica.mem_gb,
                case.objective_ms,
                case.phases.iter().map(|p| p.count).sum::<u64>()
            );
            println!(
                "  {:<19} {:>8} {:>7} {:>8} {:>9} {:>10} {:>7} {:>5}",
                "MODE", "REQUESTS", "LATE %", "P50 ms", "P99 ms", "REPLICA-S", "ACTIONS", "PEAK"
            );
            for m in &modes {
                println!(
                    "{} {:<19} {:>8} {:>6.2}% {:>8.0} {:>9.0} {:>10.0} {:>7} {:>5}",
                    if m.chosen { "*" } else { " " },
                    m.mode,
                    m.requests,
                    m.late_pct,
                    m.p50_ms,
                    m.p99_ms,
                    m.replica_s,
                    m.actions,
                    m.peak_replicas
                );
            }
            let c = modes.iter().find(|m| m.chosen).expect("the chosen mode ran");
            let steps: Vec<String> = c.replicas.iter().map(|(t, n)| format!("{t:.0} s → {n}")).collect();
            println!("  replicas ({}, *): {}", c.mode, steps.join(", "));
            println!("  a replica is placed on {node} ({cluster})");
        }
    }
    Ok(())
}
