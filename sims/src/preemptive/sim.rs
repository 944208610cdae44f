//! One arm of the experiment on one job stream and one failure timeline.

use twinmesh_common::autoscale::Scaling;
use twinmesh_common::des::{SimConfig, Simulator};
use twinmesh_common::execution::{ExecConfig, placed};
use twinmesh_common::fabric::Fabric;
use twinmesh_common::forecast::{ForecastConfig, OutageConfig, Outages, Signal, node_risk};
use twinmesh_common::job::Job;
use twinmesh_common::policy::{Policy, PolicyConfig};
use twinmesh_common::preempt::{Action, Guard, PreemptConfig, late, next_action, warned_nodes};
use twinmesh_common::rng::seeded;
use twinmesh_common::view::FabricView;

use super::service::Hosted;

/// How a run answers trouble.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arm {
    /// Failover after a node failed, nothing before.
    Reactive,
    /// Also move stages ahead of a forecast failure (restarts included), and
    /// queued stages of jobs forecast to miss their deadline.
    Migrate,
    /// Also move, and race hot replicas on idle capacity.
    Replicate,
    /// Move and replicate, and scale the hosted service on the twin's
    /// forecast (the other arms scale it with the reactive HPA rule).
    Scaling,
    /// The same jobs with no node failing: what no action can beat (the
    /// violations that queueing alone causes).
    Floor,
}

impl Arm {
    pub const ALL: [Arm; 5] = [Arm::Reactive, Arm::Migrate, Arm::Replicate, Arm::Scaling, Arm::Floor];

    pub fn name(self) -> &'static str {
        match self {
            Arm::Reactive => "reactive",
            Arm::Migrate => "migrate",
            Arm::Replicate => "migrate+replicate",
            Arm::Scaling => "preemptive+scaling",
            Arm::Floor => "no failures",
        }
    }
}

/// One cell of the sweep: the workload and the failures.
#[derive(Clone, Debug)]
pub struct Cell {
    pub jobs: usize,
    /// Offered load: nominal work per ms over the fabric's capacity.
    pub load: f64,
    /// Share of failures a precursor announces.
    pub reliability: f64,
    pub lead_ms: f64,
    pub repair_ms: f64,
    pub false_alarms_per_hour: f64,
    pub seed: u64,
}

/// What one arm did on one cell.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub arm: Arm,
    pub jobs: usize,
    pub failed: usize,
    /// Failed or late.
    pub slo_violations: usize,
    pub mean_latency_ms: f64,
    pub p99_latency_ms: f64,
    /// Core-seconds of every run (useful and wasted).
    pub core_s: f64,
    /// Core-seconds of runs that did not count.
    pub wasted_core_s: f64,
    /// Runs cut short by a node failure (or refused).
    pub stage_failures: u64,
    pub migrations: u64,
    pub replicas: u64,
    /// Actions taken on a precursor no failure followed.
    pub false_alarm_actions: u64,
    pub outages: usize,
    /// Nominal work done over capacity × span: the load reached.
    pub utilisation: f64,
    /// The hosted service's requests later than its objective (%).
    pub service_late_pct: f64,
    /// Core-seconds its replicas leased.
    pub service_core_s: f64,
}

/// The job stream of a cell: the templates of `policies`, Poisson arrivals
/// spaced for the cell's load.
pub fn stream(fabric: &Fabric, cell: &Cell) -> anyhow::Result<Vec<(Job, f64)>> {
    stream_at(fabric, cell.jobs, cell.load, cell.seed)
}

/// `jobs` jobs of `policies`' templates, Poisson arrivals spaced for an
/// offered `load` of the fabric's capacity.
pub fn stream_at(fabric: &Fabric, jobs: usize, load: f64, seed: u64) -> anyhow::Result<Vec<(Job, f64)>> {
    let probe = crate::policies::stream(fabric, jobs, 1.0, seed)?;
    let mean = probe.iter().map(|(j, _)| j.work()).sum::<f64>() / probe.len().max(1) as f64;
    let interarrival = mean / (load * fabric.view().capacity());
    crate::policies::stream(fabric, jobs, interarrival, seed)
}

/// How often jobs on warned nodes are looked at again (ms).
const TICK_MS: f64 = 500.0;

/// Runs one arm over one cell.
pub fn simulate(fabric: &Fabric, cell: &Cell, arm: Arm) -> anyhow::Result<Row> {
    let jobs = stream(fabric, cell)?;
    let truth = fabric.view();
    let mut planning = fabric.view();
    let until = jobs.last().map_or(0.0, |j| j.1) + 600_000.0;
    let ocfg = OutageConfig {
        repair_ms: cell.repair_ms,
        precursor_prob: cell.reliability,
        lead_ms: cell.lead_ms,
        false_alarms_per_hour: cell.false_alarms_per_hour,
        ..OutageConfig::default()
    };
    let outages = if arm == Arm::Floor {
        Outages::default()
    } else {
        Outages::sample(&truth, until, &ocfg, &mut seeded(cell.seed ^ 0x0a7a))
    };
    let signals = outages.signals().to_vec();
    // Stages are booked when ready here, not reserved at planning: with
    // reservations the preemptive+scaling arm loses its edge over reactive
    // failover (22 vs 16 late jobs in the test cell; docs/preemptive.md),
    // which is still to be understood. The other arms keep theirs.
    let exec_cfg = ExecConfig { reserve: false, ..ExecConfig::default() };
    let lease = Hosted::lease_job()?;
    let mut sim = Simulator::new(&truth, SimConfig { seed: cell.seed, exec: exec_cfg.clone(), ..SimConfig::default() })
        .with_outages(outages.clone());
    let pcfg = PreemptConfig { replicate: matches!(arm, Arm::Replicate | Arm::Scaling), ..PreemptConfig::default() };
    let act = matches!(arm, Arm::Migrate | Arm::Replicate | Arm::Scaling);
    let span_ms = jobs.last().map_or(0.0, |j| j.1);
    let mode = if arm == Arm::Scaling { Scaling::Predictive } else { Scaling::Reactive };
    let mut hosted = Hosted::new(span_ms, cell.seed, mode)?;
    let mut guard = Guard::default();
    let mut seen: Vec<Option<f64>> = vec![None; truth.nodes.len()];
    // What the forecaster has learned: precursors whose window has passed,
    // and how many a failure followed.
    let mut learned = Precision::default();
    let mut next_judged = 0usize;
    let mut tally = Tally::default();
    let mut handles = Vec::new();
    let (mut ai, mut si) = (0usize, 0usize);
    let policy_cfg = PolicyConfig::default();
    // While a precursor's window is open, its node's jobs are looked at
    // again every tick (stages booked there since, runs that go on).
    let mut next_tick = f64::INFINITY;
    while ai < jobs.len() || si < signals.len() {
        let t_arrival = jobs.get(ai).map_or(f64::INFINITY, |j| j.1);
        let t_signal = signals.get(si).map_or(f64::INFINITY, |s| s.at);
        let t_tick = if act { next_tick } else { f64::INFINITY };
        let t_period = hosted.next_at();
        if t_period <= t_arrival.min(t_signal).min(t_tick) {
            sim.run_until(t_period);
            refresh(&mut planning, &sim, &outages, t_period);
            hosted.period(&mut sim, &lease, &planning, &truth, &policy_cfg)?;
            continue;
        }
        if act && next_tick < t_arrival.min(t_signal) {
            let now = next_tick;
            sim.run_until(now);
            refresh(&mut planning, &sim, &outages, now);
            let nodes: Vec<usize> = warned_nodes(&seen, now, cell.lead_ms).collect();
            // Jobs forecast to miss their deadline are looked at too.
            next_tick = now + TICK_MS;
            let fcfg = learned.config(cell.lead_ms);
            act_on(&mut sim, &planning, &seen, &nodes, now, &fcfg, &exec_cfg, &pcfg, &mut guard, &signals, &mut tally);
            continue;
        }
        if t_arrival <= t_signal {
            let (job, at) = &jobs[ai];
            ai += 1;
            sim.run_until(*at);
            refresh(&mut planning, &sim, &outages, *at);
            if act {
                if next_tick.is_infinite() {
                    next_tick = *at + TICK_MS;
                }
                // Placement is preemptive too: nothing new on a node
                // forecast to fail.
                for n in warned_nodes(&seen, *at, cell.lead_ms) {
                    planning.nodes.ready[n] = false;
                }
            }
            let Ok(plan) = Policy::Greedy
                .plan(&planning, job, &policy_cfg)
                .or_else(|_| Policy::Greedy.plan(&truth, job, &policy_cfg))
            else {
                continue;
            };
            let p = placed(&truth, &job.name, &plan).map_err(anyhow::Error::msg)?;
            let h = sim.submit(job, truth.origin(job).expect("origin"), &p.assign, &p.shadow, *at);
            handles.push((h, job.deadline_ms));
            continue;
        }
        let sig = signals[si];
        si += 1;
        sim.run_until(sig.at);
        refresh(&mut planning, &sim, &outages, sig.at);
        seen[sig.node] = Some(sig.at);
        while next_judged < signals.len() && signals[next_judged].at + cell.lead_ms < sig.at {
            let s = signals[next_judged];
            learned.judge(outages.fails_during(s.node, s.at, s.at + cell.lead_ms + 1.0).is_some());
            next_judged += 1;
        }
        if !act {
            continue;
        }
        let fcfg = learned.config(cell.lead_ms);
        act_on(
            &mut sim,
            &planning,
            &seen,
            &[sig.node],
            sig.at,
            &fcfg,
            &exec_cfg,
            &pcfg,
            &mut guard,
            &signals,
            &mut tally,
        );
        next_tick = next_tick.min(sig.at + TICK_MS);
    }
    sim.run();
    let mut lat = Vec::new();
    let (mut failed, mut late, mut stage_failures) = (jobs.len() - handles.len(), 0usize, 0u64);
    let (mut core_ms, mut wasted_ms, mut done_work) = (0.0, 0.0, 0.0);
    for (h, deadline) in &handles {
        let o = sim.outcome(*h);
        let (job, _) = sim.job(*h);
        stage_failures += u64::from(o.failures);
        wasted_ms += o.wasted_core_ms;
        core_ms += o.wasted_core_ms;
        for (st, so) in job.stages.iter().zip(&o.stages) {
            if so.finish_ms.is_finite() {
                core_ms += st.compute.cpu * so.compute_ms;
            }
        }
        if o.failed {
            failed += 1;
            continue;
        }
        done_work += job.work();
        lat.push(o.latency_ms);
        late += usize::from(deadline.is_some_and(|d| o.latency_ms > d));
    }
    lat.sort_by(f64::total_cmp);
    let span = jobs.last().map_or(1.0, |j| j.1) - jobs.first().map_or(0.0, |j| j.1);
    Ok(Row {
        arm,
        jobs: jobs.len(),
        failed,
        slo_violations: failed + late,
        mean_latency_ms: lat.iter().sum::<f64>() / lat.len().max(1) as f64,
        p99_latency_ms: quantile(&lat, 0.99),
        core_s: core_ms / 1000.0,
        wasted_core_s: wasted_ms / 1000.0,
        stage_failures,
        migrations: tally.migrations,
        replicas: tally.replicas,
        false_alarm_actions: tally.false_alarms,
        outages: outages.count(),
        utilisation: done_work / (truth.capacity() * span.max(1.0)),
        service_late_pct: hosted.late_pct(),
        service_core_s: hosted.core_s,
    })
}

/// The `q` quantile of sorted values (nearest rank; NaN if empty).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// Precursors judged (their window passed) and how many came true.
#[derive(Default)]
struct Precision {
    judged: usize,
    came_true: usize,
}

impl Precision {
    fn judge(&mut self, came_true: bool) {
        self.judged += 1;
        self.came_true += usize::from(came_true);
    }

    /// The forecaster's settings with the precision learned so far
    /// (Laplace's rule).
    fn config(&self, lead_ms: f64) -> ForecastConfig {
        ForecastConfig {
            precursor_precision: (1.0 + self.came_true as f64) / (2.0 + self.judged as f64),
            lead_ms,
            ..ForecastConfig::default()
        }
    }
}

#[derive(Default)]
struct Tally {
    migrations: u64,
    replicas: u64,
    false_alarms: u64,
}

/// Applies the rules to every unfinished job with a stage on one of
/// `nodes`.
#[allow(clippy::too_many_arguments)]
fn act_on(
    sim: &mut Simulator<'_>,
    planning: &FabricView,
    seen: &[Option<f64>],
    nodes: &[usize],
    now: f64,
    fcfg: &ForecastConfig,
    exec_cfg: &ExecConfig,
    pcfg: &PreemptConfig,
    guard: &mut Guard,
    signals: &[Signal],
    tally: &mut Tally,
) {
    let risk = node_risk(&planning.nodes.resiliency, seen, now, fcfg);
    for j in 0..sim.job_count() {
        let (job, exec) = sim.job(j);
        if exec.is_done()
            || !((0..exec.stage_count()).any(|s| nodes.contains(&exec.timing(s).at.node))
                || late(job, exec, planning, now))
        {
            continue;
        }
        let key = j.to_string();
        let mut admit = |t: f64| guard.admit(&key, t, pcfg).is_ok();
        let Some(d) = next_action(job, exec, planning, now, &risk, exec_cfg, pcfg, &mut admit) else { continue };
        let (from, done) = match d.action {
            Action::Migrate { stage, from, to } => {
                let ok = sim.migrate(j, stage, to);
                tally.migrations += u64::from(ok);
                (from, ok)
            }
            Action::Replicate { stage, from, on } => {
                let ok = sim.replicate(j, stage, on);
                tally.replicas += u64::from(ok);
                (from, ok)
            }
        };
        if done && nodes.contains(&from) {
            // The alarm acted on: the latest precursor of the node.
            let alarm = signals.iter().rev().find(|s| s.node == from && s.at <= now);
            tally.false_alarms += u64::from(alarm.is_some_and(|s| !s.true_alarm));
        }
    }
}

/// What the planners see at `now`, as agents publish it: free resources,
/// backlog, and which nodes are down (failures are gossiped).
fn refresh(planning: &mut FabricView, sim: &Simulator<'_>, outages: &Outages, now: f64) {
    crate::policies::observe(planning, sim, now);
    for n in 0..planning.nodes.len() {
        planning.nodes.ready[n] = !outages.down_at(n, now);
    }
}
