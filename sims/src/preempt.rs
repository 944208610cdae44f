//! Preemptive actions against reactive failover: the same job stream, the
//! same node failures (a timeline with precursors and false alarms), run
//! twice by the DES — once failing over only after a node failed, once
//! also moving stages off nodes whose forecast risk crossed the budget
//! (`common::preempt`, the rule an agent applies).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use twinmesh_common::des::{SimConfig, Simulator};
use twinmesh_common::execution::ExecConfig;
use twinmesh_common::fabric::{self, Fabric};
use twinmesh_common::forecast::{ForecastConfig, OutageConfig, Outages, node_risk};
use twinmesh_common::job::Job;
use twinmesh_common::policy::{Policy, PolicyConfig};
use twinmesh_common::predict::Assignment;
use twinmesh_common::preempt::{Action, Guard, PreemptConfig, next_action};
use twinmesh_common::rng::seeded;

/// Arguments of `preempt`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Jobs.
    #[arg(long, default_value_t = 1500)]
    pub jobs: usize,
    /// Mean time between arrivals (ms).
    #[arg(long, default_value_t = 200.0)]
    pub interarrival_ms: f64,
    /// Seed for arrivals, origins, noise and failures.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How long a failed node stays down (ms).
    #[arg(long, default_value_t = 20_000.0)]
    pub repair_ms: f64,
    /// Share of failures announced by a precursor.
    #[arg(long, default_value_t = 0.8)]
    pub precursor_prob: f64,
    /// How long before its failure a precursor shows (ms).
    #[arg(long, default_value_t = 8_000.0)]
    pub lead_ms: f64,
    /// False alarms per node per hour.
    #[arg(long, default_value_t = 2.0)]
    pub false_alarms_per_hour: f64,
    /// Write the summary here as CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Run seeds `seed`, `seed`+1, … this many.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// Plot runs lost and deadline misses per seed here (SVG).
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

/// One mode's results.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub mode: &'static str,
    pub jobs: usize,
    pub failed: usize,
    pub on_time: usize,
    pub mean_latency_ms: f64,
    pub p95_latency_ms: f64,
    /// Runs cut short by a node failure (or refused).
    pub stage_failures: u64,
    pub migrations: u64,
    /// Migrations made on a precursor that no failure followed.
    pub false_alarm_moves: u64,
    pub outages: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let fabric = fabric::reference();
    let mut rows = Vec::new();
    for k in 0..args.seeds.max(1) {
        let a = Args { seed: args.seed + k, ..args.clone() };
        rows.push((a.seed, simulate(&fabric, &a, false)?));
        rows.push((a.seed, simulate(&fabric, &a, true)?));
    }
    println!(
        "{:>4} {:<10} {:>6} {:>6} {:>8} {:>10} {:>10} {:>9} {:>10} {:>11} {:>8}",
        "seed",
        "mode",
        "jobs",
        "failed",
        "on time",
        "mean ms",
        "p95 ms",
        "stage f.",
        "migrated",
        "false al.",
        "outages"
    );
    for (seed, r) in &rows {
        println!(
            "{:>4} {:<10} {:>6} {:>6} {:>7.1}% {:>10.0} {:>10.0} {:>9} {:>10} {:>11} {:>8}",
            seed,
            r.mode,
            r.jobs,
            r.failed,
            100.0 * r.on_time as f64 / r.jobs.max(1) as f64,
            r.mean_latency_ms,
            r.p95_latency_ms,
            r.stage_failures,
            r.migrations,
            r.false_alarm_moves,
            r.outages
        );
    }
    if let Some(path) = &args.csv {
        let mut f = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(
            f,
            "seed,mode,jobs,failed,on_time,mean_latency_ms,p95_latency_ms,stage_failures,migrations,false_alarm_moves,outages"
        )?;
        for (seed, r) in &rows {
            writeln!(
                f,
                "{},{},{},{},{},{:.1},{:.1},{},{},{},{}",
                seed,
                r.mode,
                r.jobs,
                r.failed,
                r.on_time,
                r.mean_latency_ms,
                r.p95_latency_ms,
                r.stage_failures,
                r.migrations,
                r.false_alarm_moves,
                r.outages
            )?;
        }
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, plot(&rows)).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Grouped bars per seed: runs lost to failures and deadline misses,
/// reactive (grey) against preemptive (blue).
fn plot(rows: &[(u64, Row)]) -> String {
    use std::fmt::Write as _;
    let seeds: Vec<u64> = rows.iter().map(|r| r.0).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let get = |seed: u64, mode: &str| rows.iter().find(|r| r.0 == seed && r.1.mode == mode).map(|r| &r.1);
    type Metric = fn(&Row) -> f64;
    let panels: [(&str, Metric); 2] = [
        ("runs lost to node failures", |r| r.stage_failures as f64),
        ("deadline misses (failed jobs included)", |r| (r.jobs - r.on_time) as f64),
    ];
    let (pw, ph, top) = (420.0, 220.0, 40.0);
    let w = pw * 2.0 + 60.0;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#,
        ph + top + 60.0
    );
    for (i, (title, f)) in panels.iter().enumerate() {
        let x0 = 40.0 + i as f64 * (pw + 20.0);
        let max = rows.iter().map(|r| f(&r.1)).fold(1.0, f64::max);
        let _ =
            write!(s, r#"<text x="{}" y="20" text-anchor="middle" font-weight="bold">{title}</text>"#, x0 + pw / 2.0);
        let _ = write!(s, r#"<line x1="{x0}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#, top + ph, x0 + pw, top + ph);
        let slot = pw / seeds.len() as f64;
        for (k, seed) in seeds.iter().enumerate() {
            for (m, (mode, colour)) in [("reactive", "#999999"), ("preemptive", "#2a6fdb")].iter().enumerate() {
                let Some(r) = get(*seed, mode) else { continue };
                let v = f(r);
                let bh = ph * v / max;
                let bx = x0 + k as f64 * slot + slot * 0.15 + m as f64 * slot * 0.35;
                let _ = write!(
                    s,
                    r#"<rect x="{bx:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{colour}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{v:.0}</text>"#,
                    top + ph - bh,
                    slot * 0.33,
                    bx + slot * 0.165,
                    top + ph - bh - 3.0
                );
            }
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">seed {seed}</text>"#,
                x0 + (k as f64 + 0.5) * slot,
                top + ph + 16.0
            );
        }
    }
    let _ = write!(
        s,
        r##"<rect x="40" y="{y}" width="12" height="12" fill="#999999"/><text x="58" y="{t}">reactive failover</text><rect x="200" y="{y}" width="12" height="12" fill="#2a6fdb"/><text x="218" y="{t}">preemptive migration</text></svg>"##,
        y = ph + top + 32.0,
        t = ph + top + 42.0
    );
    s
}

/// One run: reactive only (`act` false) or with preemptive migrations.
pub fn simulate(fabric: &Fabric, args: &Args, act: bool) -> anyhow::Result<Row> {
    let jobs: Vec<(Job, f64)> = crate::policies::stream(fabric, args.jobs, args.interarrival_ms, args.seed)?;
    let truth = fabric.view();
    let mut planning = fabric.view();
    let until = jobs.last().map_or(0.0, |j| j.1) + 600_000.0;
    let ocfg = OutageConfig {
        repair_ms: args.repair_ms,
        precursor_prob: args.precursor_prob,
        lead_ms: args.lead_ms,
        false_alarms_per_hour: args.false_alarms_per_hour,
        ..OutageConfig::default()
    };
    let outages = Outages::sample(&truth, until, &ocfg, &mut seeded(args.seed ^ 0x0a7a));
    let signals = outages.signals().to_vec();
    let n_outages = outages.count();
    let exec_cfg = ExecConfig::default();
    let mut sim = Simulator::new(&truth, SimConfig { seed: args.seed, exec: exec_cfg.clone(), ..SimConfig::default() })
        .with_outages(outages.clone());
    let pcfg = PreemptConfig::default();
    let mut guard = Guard::default();
    let mut seen: Vec<Option<f64>> = vec![None; truth.nodes.len()];
    // What the forecaster has learned: precursors whose window has passed,
    // and how many a failure followed.
    let (mut judged, mut came_true) = (0usize, 0usize);
    let mut next_judged = 0usize;
    let (mut moves, mut false_moves) = (0u64, 0u64);
    let mut handles = Vec::new();
    let (mut ai, mut si) = (0usize, 0usize);
    let policy_cfg = PolicyConfig::default();
    // While a precursor's window is open, its node's jobs are looked at
    // again every tick (stages booked there since, runs that go on).
    let mut next_tick = f64::INFINITY;
    let warned = |seen: &[Option<f64>], n: usize, now: f64| seen[n].is_some_and(|t| now < t + args.lead_ms);
    while ai < jobs.len() || si < signals.len() {
        let t_arrival = jobs.get(ai).map_or(f64::INFINITY, |j| j.1);
        let t_signal = signals.get(si).map_or(f64::INFINITY, |s| s.at);
        if act && next_tick < t_arrival.min(t_signal) {
            let now = next_tick;
            sim.run_until(now);
            refresh(&mut planning, &sim, &outages, now);
            let nodes: Vec<usize> = (0..seen.len()).filter(|&n| warned(&seen, n, now)).collect();
            next_tick = if nodes.is_empty() { f64::INFINITY } else { now + TICK_MS };
            let fcfg = forecast_cfg(came_true, judged, args.lead_ms);
            let (m, f) =
                act_on(&mut sim, &planning, &truth, &seen, &nodes, now, &fcfg, &exec_cfg, &pcfg, &mut guard, &signals);
            moves += m;
            false_moves += f;
            continue;
        }
        if t_arrival <= t_signal {
            let (job, at) = &jobs[ai];
            ai += 1;
            sim.run_until(*at);
            refresh(&mut planning, &sim, &outages, *at);
            if act {
                // Placement is preemptive too: nothing new on a node
                // forecast to fail.
                for n in 0..seen.len() {
                    if warned(&seen, n, *at) {
                        planning.nodes.ready[n] = false;
                    }
                }
            }
            let Ok(plan) = Policy::Greedy
                .plan(&planning, job, &policy_cfg)
                .or_else(|_| Policy::Greedy.plan(&truth, job, &policy_cfg))
            else {
                continue;
            };
            let idx = |name: &str| truth.node_index(name).expect("planned node exists");
            let assign: Vec<Assignment> =
                plan.placements.iter().map(|p| Assignment { node: idx(&p.node), format: p.format }).collect();
            let shadow: Vec<Option<Assignment>> = plan
                .shadow
                .iter()
                .map(|s| s.as_ref().map(|p| Assignment { node: idx(&p.node), format: p.format }))
                .collect();
            let h = sim.submit(job, truth.origin(job).expect("origin"), &assign, &shadow, *at);
            handles.push((h, job.deadline_ms));
            continue;
        }
        let sig = signals[si];
        si += 1;
        sim.run_until(sig.at);
        refresh(&mut planning, &sim, &outages, sig.at);
        seen[sig.node] = Some(sig.at);
        while next_judged < signals.len() && signals[next_judged].at + args.lead_ms < sig.at {
            let s = signals[next_judged];
            judged += 1;
            came_true += usize::from(outages.fails_during(s.node, s.at, s.at + args.lead_ms + 1.0).is_some());
            next_judged += 1;
        }
        if !act {
            continue;
        }
        let fcfg = forecast_cfg(came_true, judged, args.lead_ms);
        let (m, f) = act_on(
            &mut sim,
            &planning,
            &truth,
            &seen,
            &[sig.node],
            sig.at,
            &fcfg,
            &exec_cfg,
            &pcfg,
            &mut guard,
            &signals,
        );
        moves += m;
        false_moves += f;
        next_tick = next_tick.min(sig.at + TICK_MS);
    }
    sim.run();
    let mut lat = Vec::new();
    let (mut failed, mut on_time, mut stage_failures) = (jobs.len() - handles.len(), 0usize, 0u64);
    for (h, deadline) in &handles {
        let o = sim.outcome(*h);
        stage_failures += u64::from(o.failures);
        if o.failed {
            failed += 1;
            continue;
        }
        lat.push(o.latency_ms);
        on_time += usize::from(deadline.is_none_or(|d| o.latency_ms <= d));
    }
    lat.sort_by(f64::total_cmp);
    let mean = lat.iter().sum::<f64>() / lat.len().max(1) as f64;
    let p95 = lat.get(((lat.len() as f64 - 1.0) * 0.95).round().max(0.0) as usize).copied().unwrap_or(f64::NAN);
    Ok(Row {
        mode: if act { "preemptive" } else { "reactive" },
        jobs: jobs.len(),
        failed,
        on_time,
        mean_latency_ms: mean,
        p95_latency_ms: p95,
        stage_failures,
        migrations: moves,
        false_alarm_moves: false_moves,
        outages: n_outages,
    })
}

/// How often jobs on warned nodes are looked at again (ms).
const TICK_MS: f64 = 500.0;

/// The forecaster's settings, with the precision learned so far (Laplace's
/// rule over the precursors whose window has passed).
fn forecast_cfg(came_true: usize, judged: usize, lead_ms: f64) -> ForecastConfig {
    ForecastConfig {
        precursor_precision: (1.0 + came_true as f64) / (2.0 + judged as f64),
        lead_ms,
        ..ForecastConfig::default()
    }
}

/// Applies the migration rule to every unfinished job with a stage on one
/// of `nodes`; returns (moves, moves on a false alarm).
#[allow(clippy::too_many_arguments)]
fn act_on(
    sim: &mut Simulator<'_>,
    planning: &twinmesh_common::view::FabricView,
    truth: &twinmesh_common::view::FabricView,
    seen: &[Option<f64>],
    nodes: &[usize],
    now: f64,
    fcfg: &ForecastConfig,
    exec_cfg: &ExecConfig,
    pcfg: &PreemptConfig,
    guard: &mut Guard,
    signals: &[twinmesh_common::forecast::Signal],
) -> (u64, u64) {
    let risk = node_risk(&truth.nodes.resiliency, seen, now, fcfg);
    let (mut moves, mut false_moves) = (0, 0);
    for j in 0..sim.job_count() {
        let (job, exec) = sim.job(j);
        if exec.is_done() || !(0..exec.stage_count()).any(|s| nodes.contains(&exec.timing(s).at.node)) {
            continue;
        }
        let key = j.to_string();
        let mut admit = |t: f64| guard.admit(&key, t, pcfg).is_ok();
        let Some(d) = next_action(job, exec, planning, now, &risk, exec_cfg, pcfg, &mut admit) else { continue };
        let Action::Migrate { stage, from, to } = d.action;
        if sim.migrate(j, stage, to) {
            moves += 1;
            // The alarm acted on: the latest precursor of the node.
            let alarm = signals.iter().rev().find(|s| s.node == from && s.at <= now);
            false_moves += u64::from(alarm.is_some_and(|s| !s.true_alarm));
        }
    }
    (moves, false_moves)
}

/// What the planners see at `now`, as agents publish it: free resources,
/// backlog, and which nodes are down (failures are gossiped).
fn refresh(planning: &mut twinmesh_common::view::FabricView, sim: &Simulator<'_>, outages: &Outages, now: f64) {
    crate::policies::observe(planning, sim, now);
    for n in 0..planning.nodes.len() {
        planning.nodes.ready[n] = !outages.down_at(n, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Rule: on identical arrivals and identical node failures, moving
    // stages off nodes that show a precursor cuts the runs lost to failures
    // and meets at least as many deadlines as failing over afterwards.
    #[test]
    fn preemptive_migration_loses_fewer_runs_than_reactive_failover() {
        let args = Args {
            jobs: 400,
            interarrival_ms: 200.0,
            seed: 4,
            repair_ms: 20_000.0,
            precursor_prob: 0.8,
            lead_ms: 8_000.0,
            false_alarms_per_hour: 2.0,
            csv: None,
            seeds: 1,
            svg: None,
        };
        let f = fabric::reference();
        let off = simulate(&f, &args, false).unwrap();
        let on = simulate(&f, &args, true).unwrap();
        eprintln!("{off:?}\n{on:?}");
        assert_eq!(off.outages, on.outages, "same failures");
        assert_eq!(off.migrations, 0);
        assert!(on.migrations > 0);
        assert!(on.stage_failures < off.stage_failures, "{} vs {}", on.stage_failures, off.stage_failures);
        assert!(on.on_time >= off.on_time, "{} vs {}", on.on_time, off.on_time);
        assert!(on.failed <= off.failed);
    }
}
