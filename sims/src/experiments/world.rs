//! The world the experiments run jobs in: the reference fabric's ground
//! truth with noise and node failures fixed *in advance* — the noise of a
//! run keyed by (job, stage, attempt), failures a timeline of outages — so
//! every policy, and the oracle replaying any placement, meets identical
//! luck; and the closed loop the agent runs (plan on what the twin shows at
//! the job's arrival, run on the truth).

use rand_distr::{Distribution, StandardNormal};
use twinmesh_common::des::{RunQuery, RunTimes, SimConfig, Simulator};
use twinmesh_common::execution::JobOutcome;
use twinmesh_common::fabric::Fabric;
use twinmesh_common::forecast::{OutageConfig, Outages};
use twinmesh_common::job::Job;
use twinmesh_common::policy::{Policy, PolicyConfig};
use twinmesh_common::predict::Assignment;
use twinmesh_common::rng::{SimRng, seeded};
use twinmesh_common::truth::GroundTruth;
use twinmesh_common::view::FabricView;

/// Lognormal noise (mean 1) drawn from the run's key, not from the order
/// in which runs happen: a stage's luck is the same wherever and whenever
/// it runs.
#[derive(Clone, Copy, Debug)]
pub struct KeyedNoise {
    pub sigma: f64,
    pub seed: u64,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl RunTimes for KeyedNoise {
    fn run_ms(&mut self, view: &FabricView, q: RunQuery, _rng: &mut SimRng) -> f64 {
        let j = view.nodes.jitter_sigma[q.node];
        let sigma = if j >= 0.0 { j } else { self.sigma };
        if sigma <= 0.0 {
            return q.nominal_ms;
        }
        let key = splitmix(self.seed ^ splitmix((q.job as u64) << 24 ^ (q.stage as u64) << 8 ^ u64::from(q.attempt)));
        let z: f64 = StandardNormal.sample(&mut seeded(key));
        q.nominal_ms * (sigma * z - sigma * sigma / 2.0).exp()
    }
}

/// `jobs` jobs of the policy comparison's templates from random origins,
/// Poisson arrivals spaced for an offered `load` of the fabric's capacity
/// (the preemptive experiment's streams).
pub fn stream_at_load(fabric: &Fabric, jobs: usize, load: f64, seed: u64) -> anyhow::Result<Vec<(Job, f64)>> {
    crate::preemptive::sim::stream_at(fabric, jobs, load, seed)
}

/// How long runs really take: keyed lognormal noise on the model, or the
/// embedded fabric's ground truth (hidden node speeds, true emulation
/// costs, σ = 0.05 — what the agent's calibration learns).
#[derive(Clone, Debug)]
pub enum Luck {
    Keyed(KeyedNoise),
    Truth(GroundTruth),
}

impl RunTimes for Luck {
    fn run_ms(&mut self, view: &FabricView, q: RunQuery, rng: &mut SimRng) -> f64 {
        match self {
            Luck::Keyed(k) => k.run_ms(view, q, rng),
            Luck::Truth(t) => t.run_ms(view, q, rng),
        }
    }
}

/// The ground truth for a job stream (job `i` named `job-<seed>-i`: the
/// name seeds its runs' noise).
pub fn ground_truth(jobs: &[(Job, f64)], seed: u64) -> GroundTruth {
    GroundTruth {
        jobs: jobs
            .iter()
            .enumerate()
            .map(|(i, (j, _))| (format!("job-{seed}-{i}"), j.stages.iter().map(|s| s.id.clone()).collect()))
            .collect(),
        durations: jobs.iter().map(|(j, _)| j.stages.iter().map(|s| s.compute.duration_ms).collect()).collect(),
    }
}

/// One world: truth, luck and failures.
pub struct World {
    pub truth: FabricView,
    pub luck: Luck,
    pub outages: Outages,
    pub seed: u64,
    /// Owners reserve every stage of a plan when it starts (the default);
    /// off, stages hold nothing until they are ready.
    pub reserve: bool,
}

impl World {
    /// The fabric's truth with σ = 0.15 noise and, when `failures`, the
    /// outages its resiliency implies over `until_ms` (20 s repairs).
    pub fn new(fabric: &Fabric, seed: u64, failures: bool, until_ms: f64) -> World {
        let truth = fabric.view();
        let outages = if failures {
            Outages::sample(&truth, until_ms, &OutageConfig::default(), &mut seeded(seed ^ 0x0a7a))
        } else {
            Outages::default()
        };
        World { truth, luck: Luck::Keyed(KeyedNoise { sigma: 0.15, seed }), outages, seed, reserve: true }
    }

    pub fn simulator(&self) -> Simulator<'_, Luck> {
        let mut cfg = SimConfig { seed: self.seed, ..SimConfig::default() };
        cfg.exec.reserve = self.reserve;
        Simulator::with_run_times(&self.truth, cfg, self.luck.clone()).with_outages(self.outages.clone())
    }
}

/// What one job was given and what the twin predicted.
#[derive(Clone, Debug)]
pub struct Placed {
    pub assign: Vec<Assignment>,
    pub shadow: Vec<Option<Assignment>>,
    /// The committed prediction: the latest end of the windows its stages'
    /// owners reserved (ms from submission) — the median.
    pub predicted_ms: f64,
    /// The 90th percentile over the twin's learned run-time spread.
    pub p90_ms: f64,
    pub predicted_j: f64,
    /// What the plan itself predicted before its stages were reserved.
    pub planned_ms: f64,
    /// Each stage's reserved window (absolute ms).
    pub windows: Vec<(f64, f64)>,
}

/// Closed loop: the planner sees what runs and waits at each arrival (as
/// agents publish it) in `planning` (the twin's view: the truth, or a
/// drifted or calibrated copy). A job no node can take now is planned on
/// the idle fabric and queued; one no node could ever take is an error
/// (the streams' templates fit the reference fabric).
pub fn run_policy(
    world: &World,
    planning: &FabricView,
    jobs: &[(Job, f64)],
    policy: Policy,
    cfg: &PolicyConfig,
) -> anyhow::Result<(Vec<Placed>, Vec<JobOutcome>)> {
    run_mixed(world, planning, jobs, &vec![policy; jobs.len()], cfg)
}

/// [`run_policy`] with job `i` planned by `policies[i]`.
pub fn run_mixed(
    world: &World,
    planning: &FabricView,
    jobs: &[(Job, f64)],
    policies: &[Policy],
    cfg: &PolicyConfig,
) -> anyhow::Result<(Vec<Placed>, Vec<JobOutcome>)> {
    let mut view = planning.clone();
    let mut sim = world.simulator();
    let mut placed = Vec::with_capacity(jobs.len());
    let mut handles = Vec::with_capacity(jobs.len());
    for ((job, at), &policy) in jobs.iter().zip(policies) {
        sim.run_until(*at);
        crate::policies::observe(&mut view, &sim, *at);
        let plan = match policy.plan(&view, job, cfg) {
            Ok(p) => p,
            Err(_) => policy.plan(planning, job, cfg).map_err(|e| anyhow::anyhow!("{policy}: {e}"))?,
        };
        let p = twinmesh_common::execution::placed(&world.truth, &job.name, &plan).map_err(anyhow::Error::msg)?;
        let (assign, shadow) = (p.assign, p.shadow);
        // The owners reserve each stage for the run time the plan
        // predicted; their windows are the committed prediction.
        let durations: Vec<f64> = plan.predicted.stages.iter().map(|t| t.compute_ms).collect();
        let h = sim.submit_planned(job, world.truth.origin(job).expect("origin"), &assign, &shadow, *at, &durations);
        handles.push(h);
        let exec = sim.job(h).1;
        let windows: Vec<(f64, f64)> =
            (0..job.stages.len()).map(|s| exec.window(s).unwrap_or((f64::NAN, f64::NAN))).collect();
        let finish = exec.reserved_finish().unwrap_or(*at + plan.predicted.latency_ms);
        let seed = world.seed ^ (handles.len() as u64).wrapping_mul(0x9e37_79b9);
        let iv = twinmesh_common::predict::interval(
            &view,
            job,
            &assign,
            &windows,
            *at,
            0.15,
            twinmesh_common::predict::INTERVAL_RUNS,
            seed,
        );
        placed.push(Placed {
            assign,
            shadow,
            predicted_ms: finish - *at,
            p90_ms: iv.p90_ms.max(finish - *at),
            predicted_j: plan.predicted.energy_j,
            planned_ms: plan.predicted.latency_ms,
            windows,
        });
    }
    sim.run();
    let outcomes = handles.iter().map(|h| sim.outcome(*h)).collect();
    Ok((placed, outcomes))
}

/// Runs fixed placements (a policy's, or the oracle's) in the same world.
pub fn replay(world: &World, jobs: &[(Job, f64)], placed: &[Placed]) -> Vec<JobOutcome> {
    let mut sim = world.simulator();
    let mut handles = Vec::with_capacity(jobs.len());
    for ((job, at), p) in jobs.iter().zip(placed) {
        sim.run_until(*at);
        handles.push(sim.submit(job, world.truth.origin(job).expect("origin"), &p.assign, &p.shadow, *at));
    }
    sim.run();
    handles.iter().map(|h| sim.outcome(*h)).collect()
}

/// A job's latency, or — failed — a penalty of twice its deadline (two
/// minutes without one): what the oracle minimises.
pub fn cost(job: &Job, o: &JobOutcome) -> f64 {
    if o.failed { 2.0 * job.deadline_ms.unwrap_or(60_000.0) } else { o.latency_ms }
}

/// Whether a job missed its service level: failed, or later than its
/// deadline.
pub fn violated(job: &Job, o: &JobOutcome) -> bool {
    o.failed || job.deadline_ms.is_some_and(|d| o.latency_ms > d)
}

/// The `q` quantile of the latencies of the jobs that succeeded.
pub fn latency_quantile(outcomes: &[JobOutcome], q: f64) -> f64 {
    let mut v: Vec<f64> = outcomes.iter().filter(|o| !o.failed).map(|o| o.latency_ms).collect();
    v.sort_by(f64::total_cmp);
    super::stats::quantile(&v, q)
}

/// Mean latency of the jobs that succeeded.
pub fn mean_latency(outcomes: &[JobOutcome]) -> f64 {
    let v: Vec<f64> = outcomes.iter().filter(|o| !o.failed).map(|o| o.latency_ms).collect();
    if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
}
