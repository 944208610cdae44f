//! The discrete-event simulator: jobs run on the twin's fabric in virtual
//! time.
//!
//! The simulator is a *driver* of [`crate::execution`]: every job is an
//! [`Execution`], the same state machine the agent's actuators drive, and
//! every node is a [`NodeSchedule`], the same booking discipline a node's
//! owner applies (earliest start from the ready time at which the stage
//! fits for its whole run — backfilling). So readiness, booking, failover
//! order, attempts and accounting are one set of rules, not a copy. What
//! the simulator adds is the world:
//!
//! * **run times** — the model's time on the node × noise (lognormal, mean
//!   1, σ the node's learned jitter or the configured default), or any
//!   other [`RunTimes`] (the embedded fabric's ground truth, for instance);
//! * **failures** — while running, a node fails at the rate implied by its
//!   resiliency (r = survival over the risk horizon);
//! * **time** — a binary heap of small `Copy` events ([`EventQueue`]).
//!
//! With noise and failures off and one job, the simulator reproduces the
//! predictor ([`crate::predict::score_plan`]) exactly.

use rand::RngExt;
use rand_distr::{Distribution, Exp1, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::capacity::NodeSchedule;
use crate::execution::{ExecAction, ExecConfig, ExecEvent, Execution, Refusal, RunKey};
pub use crate::execution::{JobOutcome, StageOutcome};
use crate::job::Job;
use crate::model::Format;
use crate::predict::Assignment;
use crate::rng::{SimRng, seeded};
use crate::view::{FabricView, OriginIdx};

mod queue;
pub use queue::EventQueue;

/// Simulator settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// Default lognormal σ of run times (0 = exact).
    pub noise_sigma: f64,
    /// Whether nodes fail while running stages.
    pub failures: bool,
    /// Resiliency r = probability of surviving this long (ms).
    pub risk_horizon_ms: f64,
    /// The execution rules (attempts, failover delay, backoff).
    pub exec: ExecConfig,
    /// RNG seed.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig { noise_sigma: 0.15, failures: true, risk_horizon_ms: 60_000.0, exec: ExecConfig::default(), seed: 1 }
    }
}

impl SimConfig {
    /// No noise, no failures: the predictor's world.
    pub fn exact() -> Self {
        SimConfig { noise_sigma: 0.0, failures: false, ..SimConfig::default() }
    }
}

/// One run a [`RunTimes`] is asked about.
#[derive(Clone, Copy, Debug)]
pub struct RunQuery {
    /// Job handle (order of submission).
    pub job: usize,
    /// Stage index.
    pub stage: usize,
    /// Attempt, from 1.
    pub attempt: u16,
    /// Node.
    pub node: usize,
    /// Format.
    pub format: Format,
    /// The model's run time on that node (ms, calibration included).
    pub nominal_ms: f64,
}

/// How long runs really take in the simulated world.
pub trait RunTimes {
    /// The run time (ms) of one run.
    fn run_ms(&mut self, view: &FabricView, q: RunQuery, rng: &mut SimRng) -> f64;
}

/// The default world: the model's time × lognormal noise (mean 1), σ the
/// node's learned jitter or the configured default.
#[derive(Clone, Copy, Debug)]
pub struct LognormalNoise {
    /// σ for nodes without a learned jitter.
    pub sigma: f64,
}

impl RunTimes for LognormalNoise {
    fn run_ms(&mut self, view: &FabricView, q: RunQuery, rng: &mut SimRng) -> f64 {
        let j = view.nodes.jitter_sigma[q.node];
        let sigma = if j >= 0.0 { j } else { self.sigma };
        if sigma > 0.0 {
            let z: f64 = StandardNormal.sample(rng);
            q.nominal_ms * (sigma * z - sigma * sigma / 2.0).exp()
        } else {
            q.nominal_ms
        }
    }
}

/// A run's tag in its node's schedule: (job, stage, key number); the
/// plan of a simulated job is its handle.
fn tag(j: usize, key: RunKey) -> u64 {
    (j as u64) << 32 | u64::from(key.stage) << 16 | u64::from(key.attempt)
}

fn untag(t: u64) -> (usize, RunKey) {
    let j = (t >> 32) as usize;
    (j, RunKey { plan: j as u64, stage: (t >> 16) as u16, attempt: t as u16 })
}

#[derive(Clone, Copy, Debug)]
enum Ev {
    /// A booked run's start comes (job, run, node): from then on it holds
    /// its node; until then a late run ranked before it may push it.
    Start(u32, RunKey, u32),
    /// A run ends (job, run).
    Finish(u32, RunKey),
    /// A run's node fails under it (job, run).
    Fail(u32, RunKey),
}

/// What a placed stage holds on its node before it is booked (waiting for
/// predecessors): what the twin calls `allocated`, and work to come.
#[derive(Clone, Copy, Debug, Default)]
struct Hold {
    cpu: f64,
    mem: f64,
    work: f64,
}

struct SimJob<'a> {
    job: &'a Job,
    exec: Execution,
    /// Node and hold of each stage not booked yet.
    held: Vec<Option<(usize, Hold)>>,
}

/// A simulation over one fabric view; runs take what `R` says.
pub struct Simulator<'a, R: RunTimes = LognormalNoise> {
    view: &'a FabricView,
    cfg: SimConfig,
    rng: SimRng,
    run_times: R,
    queue: EventQueue<Ev>,
    now: f64,
    events: u64,
    schedules: Vec<NodeSchedule>,
    holds: Vec<Hold>,
    peak: Vec<f64>,
    jobs: Vec<SimJob<'a>>,
    actions: Vec<ExecAction>,
    /// Reservations pushed later by late or long runs.
    shifts: u64,
    /// Booked runs pushed to a later start, to tell their jobs.
    moved: Vec<(usize, ExecEvent)>,
    /// Node failures on a timeline (with precursors), instead of a hazard
    /// per run.
    outages: Option<crate::forecast::Outages>,
}

impl<'a> Simulator<'a, LognormalNoise> {
    /// A simulator over `view` with lognormal noise on run times.
    pub fn new(view: &'a FabricView, cfg: SimConfig) -> Self {
        let noise = LognormalNoise { sigma: cfg.noise_sigma };
        Self::with_run_times(view, cfg, noise)
    }
}

impl<'a, R: RunTimes> Simulator<'a, R> {
    /// A simulator whose runs take what `run_times` says.
    pub fn with_run_times(view: &'a FabricView, cfg: SimConfig, run_times: R) -> Self {
        let t = &view.nodes;
        Simulator {
            view,
            rng: seeded(cfg.seed),
            cfg,
            run_times,
            queue: EventQueue::with_capacity(1024),
            now: 0.0,
            events: 0,
            schedules: (0..t.len()).map(|n| NodeSchedule::new(t.alloc_cpu[n], t.alloc_mem[n])).collect(),
            holds: vec![Hold::default(); t.len()],
            peak: vec![0.0; t.len()],
            jobs: Vec::new(),
            actions: Vec::new(),
            shifts: 0,
            moved: Vec::new(),
            outages: None,
        }
    }

    /// Nodes fail on `outages`' timeline (down for a repair time, some
    /// failures announced by precursors) instead of a hazard per run.
    pub fn with_outages(mut self, outages: crate::forecast::Outages) -> Self {
        self.outages = Some(outages);
        self
    }

    /// Job `j` and its execution.
    pub fn job(&self, j: usize) -> (&'a Job, &Execution) {
        (self.jobs[j].job, &self.jobs[j].exec)
    }

    /// Jobs submitted so far.
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// Moves stage `s` of job `j` to `to` now ([`Execution::migrate`]);
    /// returns whether it moved.
    pub fn migrate(&mut self, j: usize, s: usize, to: Assignment) -> bool {
        let now = self.now;
        let mut out = std::mem::take(&mut self.actions);
        let moved = {
            let sj = &mut self.jobs[j];
            sj.exec.migrate(sj.job, self.view, now, s, to, &mut out)
        };
        // A stage still waiting for its predecessors holds its new node.
        if moved {
            if let Some((n, h)) = self.jobs[j].held[s].take() {
                self.hold(n, h, -1.0);
                let c = &self.jobs[j].job.stages[s].compute;
                let h = Hold { cpu: c.cpu, mem: c.mem_gb, work: c.cpu * self.view.compute_ms(to.node, c, to.format) };
                self.hold(to.node, h, 1.0);
                self.jobs[j].held[s] = Some((to.node, h));
            }
        }
        self.carry_out(j, now, out);
        moved
    }

    /// Starts a hot replica of stage `s` of job `j` on `on` now
    /// ([`Execution::replicate`]); returns whether it was asked for.
    pub fn replicate(&mut self, j: usize, s: usize, on: Assignment) -> bool {
        let now = self.now;
        let mut out = std::mem::take(&mut self.actions);
        let started = {
            let sj = &mut self.jobs[j];
            sj.exec.replicate(sj.job, self.view, now, s, on, &mut out)
        };
        self.carry_out(j, now, out);
        started
    }

    /// Submits a placed job at `at_ms`; returns its handle. Its stages are
    /// reserved for the run times this simulator's view predicts.
    pub fn submit(
        &mut self,
        job: &'a Job,
        origin: OriginIdx,
        assign: &[Assignment],
        shadow: &[Option<Assignment>],
        at_ms: f64,
    ) -> usize {
        self.submit_planned(job, origin, assign, shadow, at_ms, &[])
    }

    /// As [`Simulator::submit`], reserving each stage for the run time its
    /// plan predicted (`durations`, ms, in stage order — from the
    /// planner's twin, which may know more or less than this simulator's
    /// view); stages left out are predicted by the view.
    pub fn submit_planned(
        &mut self,
        job: &'a Job,
        origin: OriginIdx,
        assign: &[Assignment],
        shadow: &[Option<Assignment>],
        at_ms: f64,
        durations: &[f64],
    ) -> usize {
        let j = self.jobs.len();
        let exec = Execution::new(job, origin, assign, shadow, j as u64, at_ms, self.cfg.exec.clone())
            .with_durations(durations);
        // Booking on readiness, a placed stage holds its node until it is
        // booked; reserving, its reservation does.
        let reserve = self.cfg.exec.reserve;
        let held = job
            .stages
            .iter()
            .zip(assign)
            .map(|(st, a)| {
                if reserve {
                    return None;
                }
                let c = &st.compute;
                let h = Hold { cpu: c.cpu, mem: c.mem_gb, work: c.cpu * self.view.compute_ms(a.node, c, a.format) };
                self.hold(a.node, h, 1.0);
                Some((a.node, h))
            })
            .collect();
        self.jobs.push(SimJob { job, exec, held });
        let mut out = std::mem::take(&mut self.actions);
        {
            let sj = &mut self.jobs[j];
            sj.exec.start(sj.job, self.view, &mut out);
        }
        self.carry_out(j, at_ms, out);
        j
    }

    /// Reservations pushed later by late or long runs so far.
    pub fn shifts(&self) -> u64 {
        self.shifts
    }

    /// Runs until no event is left; returns events processed so far.
    pub fn run(&mut self) -> u64 {
        while let Some((t, ev)) = self.queue.pop() {
            self.handle(t, ev);
        }
        self.events
    }

    /// Runs events up to and including `until_ms`.
    pub fn run_until(&mut self, until_ms: f64) -> u64 {
        while self.queue.peek_time().is_some_and(|t| t <= until_ms) {
            let (t, ev) = self.queue.pop().expect("peeked");
            self.handle(t, ev);
        }
        self.now = self.now.max(until_ms);
        self.events
    }

    fn handle(&mut self, now: f64, ev: Ev) {
        self.events += 1;
        self.now = now;
        let (j, ev) = match ev {
            Ev::Start(j, key, node) => return self.start_run(now, j as usize, key, node as usize),
            Ev::Finish(j, key) => (j as usize, ExecEvent::Finished { key }),
            Ev::Fail(j, key) => (j as usize, ExecEvent::Failed { key }),
        };
        self.feed(j, now, ev);
    }

    fn feed(&mut self, j: usize, now: f64, ev: ExecEvent) {
        let mut out = std::mem::take(&mut self.actions);
        {
            let sj = &mut self.jobs[j];
            sj.exec.handle(sj.job, self.view, now, ev, &mut out);
        }
        self.carry_out(j, now, out);
    }

    /// Carries out a job's actions, feeding back what booking answers
    /// (which may produce more actions).
    fn carry_out(&mut self, j: usize, now: f64, mut out: Vec<ExecAction>) {
        let mut i = 0;
        while i < out.len() {
            let action = out[i].clone();
            i += 1;
            match action {
                ExecAction::Reserve { key, node, ready_at, duration_ms, .. } => {
                    let c = self.jobs[j].job.stages[key.stage as usize].compute;
                    self.settle(node, now);
                    let sched = &mut self.schedules[node];
                    let start = sched
                        .reserve(tag(j, key), ready_at, duration_ms, c.cpu, c.mem_gb)
                        .map(|b| b.start)
                        .ok_or(Refusal::DoesNotFit);
                    let sj = &mut self.jobs[j];
                    sj.exec.handle(sj.job, self.view, now, ExecEvent::Reserved { key, start }, &mut out);
                }
                ExecAction::Book { key, node, format, ready_at } => {
                    let s = key.stage as usize;
                    if let Some((n, h)) = self.jobs[j].held[s].take() {
                        self.hold(n, h, -1.0);
                    }
                    let c = self.jobs[j].job.stages[s].compute;
                    let nominal = self.view.compute_ms(node, &c, format);
                    let q = RunQuery { job: j, stage: s, attempt: key.attempt, node, format, nominal_ms: nominal };
                    let run = self.run_times.run_ms(self.view, q, &mut self.rng);
                    self.settle(node, now);
                    let sched = &mut self.schedules[node];
                    sched.prune(now);
                    let answer = match sched.book_run(tag(j, key), ready_at, run, c.cpu, c.mem_gb) {
                        None => ExecEvent::Refused { key, reason: Refusal::DoesNotFit },
                        Some(r) => {
                            let b = r.booking;
                            self.peak[node] = self.peak[node].max(r.peak_cpu);
                            self.queue.push(b.start, Ev::Start(j as u32, key, node as u32));
                            // Runs it pushed start later: they hear it.
                            self.shifts += r.shifted.len() as u64;
                            for x in r.shifted.iter().filter(|x| x.booked) {
                                let (j2, key2) = untag(x.tag);
                                self.queue.push(x.to.start, Ev::Start(j2 as u32, key2, node as u32));
                                self.moved.push((j2, ExecEvent::Booked { key: key2, start: x.to.start }));
                            }
                            ExecEvent::Booked { key, start: b.start }
                        }
                    };
                    let sj = &mut self.jobs[j];
                    sj.exec.handle(sj.job, self.view, now, answer, &mut out);
                }
                ExecAction::Release { key, node, at } => {
                    self.schedules[node].release_tag(tag(j, key), at);
                }
                ExecAction::Done => {
                    for s in 0..self.jobs[j].held.len() {
                        if let Some((n, h)) = self.jobs[j].held[s].take() {
                            self.hold(n, h, -1.0);
                        }
                    }
                }
            }
        }
        out.clear();
        self.actions = out;
        while let Some((j2, ev)) = self.moved.pop() {
            self.feed(j2, now, ev);
        }
    }

    /// A booked run's start: fixed on its node from now on; when it ends
    /// (or its node fails under it) is drawn now.
    fn start_run(&mut self, now: f64, j: usize, key: RunKey, node: usize) {
        let t = tag(j, key);
        // Reservations ranked before it whose runs are late keep their
        // room: it may start later (a newer event).
        self.settle(node, now);
        while let Some((j2, ev)) = self.moved.pop() {
            self.feed(j2, now, ev);
        }
        // Stale: released, or pushed to a later start (a newer event).
        let Some((b, true)) = self.schedules[node].held(t) else { return };
        if b.start != now {
            return;
        }
        self.schedules[node].start(t);
        let run = b.end - b.start;
        let r = self.view.nodes.resiliency[node];
        let ttf = if let Some(o) = &self.outages {
            o.fails_during(node, b.start, b.end).map_or(f64::INFINITY, |t| t - b.start)
        } else if self.cfg.failures && r < 1.0 {
            let rate = -r.max(1e-12).ln() / self.cfg.risk_horizon_ms;
            let e: f64 = Exp1.sample(&mut self.rng);
            e / rate
        } else {
            f64::INFINITY
        };
        if ttf < run {
            self.queue.push(b.start + ttf, Ev::Fail(j as u32, key));
        } else {
            self.queue.push(b.end, Ev::Finish(j as u32, key));
        }
    }

    /// Brings `node`'s schedule to `now` as its owner does: reservations
    /// whose run is late slide with the clock and push what was planned
    /// after them (`NodeSchedule::slide_overdue`); pushed runs hear it.
    fn settle(&mut self, node: usize, now: f64) {
        let moved = self.schedules[node].slide_overdue(now);
        self.shifts += moved.len() as u64;
        for x in moved.iter().filter(|x| x.booked) {
            let (j2, key2) = untag(x.tag);
            self.queue.push(x.to.start, Ev::Start(j2 as u32, key2, node as u32));
            self.moved.push((j2, ExecEvent::Booked { key: key2, start: x.to.start }));
        }
    }

    fn hold(&mut self, node: usize, h: Hold, sign: f64) {
        let x = &mut self.holds[node];
        x.cpu += sign * h.cpu;
        x.mem += sign * h.mem;
        x.work += sign * h.work;
    }

    /// The outcome of job `j` (after [`Simulator::run`]).
    pub fn outcome(&self, j: usize) -> JobOutcome {
        let mut o = self.jobs[j].exec.outcome();
        o.failed |= !self.jobs[j].exec.is_done();
        o
    }

    /// Outcomes of every job.
    pub fn outcomes(&self) -> Vec<JobOutcome> {
        (0..self.jobs.len()).map(|j| self.outcome(j)).collect()
    }

    /// Highest CPU in use on each node at any time.
    pub fn peak_cpu(&self) -> Vec<f64> {
        self.peak.clone()
    }

    /// CPU cores and GB of memory in use on `node` now.
    pub fn used(&self, node: usize) -> (f64, f64) {
        self.schedules[node].used(self.now)
    }

    /// CPU cores and GB of memory held on `node` by placed, unfinished
    /// stages, booked or not (the twin's `allocated`).
    pub fn assigned(&self, node: usize) -> (f64, f64) {
        let (c, m) = self.schedules[node].allocated(self.now);
        let h = &self.holds[node];
        ((c + h.cpu).max(0.0), (m + h.mem).max(0.0))
    }

    /// Expected wait (ms) at `now` before `node` has drained what is booked
    /// and what is placed on it, treating its cores as one pool — the
    /// estimate an agent publishes as its backlog.
    pub fn backlog_ms(&self, node: usize, now: f64) -> f64 {
        let cap = self.view.nodes.alloc_cpu[node].max(1e-9);
        self.schedules[node].backlog(now) + self.holds[node].work.max(0.0) / cap
    }

    /// Booked stages that have not started on `node` now.
    pub fn waiting(&self, node: usize) -> usize {
        self.schedules[node].waiting(self.now)
    }

    /// Events processed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Draws a uniform number from the simulator's stream (for callers
    /// that need randomness consistent with the run, e.g. arrivals).
    pub fn uniform(&mut self) -> f64 {
        self.rng.random()
    }
}

/// The classic *hold* model: keep `pending` events in the queue; each step
/// pops the earliest and schedules a successor an Exp(1) time later.
/// Returns the final virtual time (a checksum). Used to benchmark the
/// event queue.
pub fn hold(pending: usize, steps: u64, seed: u64) -> f64 {
    let mut rng = seeded(seed);
    let mut q: EventQueue<u32> = EventQueue::with_capacity(pending + 1);
    for i in 0..pending {
        let t: f64 = Exp1.sample(&mut rng);
        q.push(t, i as u32);
    }
    let mut now = 0.0;
    for _ in 0..steps {
        let (t, id) = q.pop().expect("hold keeps the queue non-empty");
        now = t;
        let dt: f64 = Exp1.sample(&mut rng);
        q.push(t + dt, id);
    }
    now
}

#[cfg(test)]
mod tests;
