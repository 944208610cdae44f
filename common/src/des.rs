//! The discrete-event simulator: jobs run on the twin's fabric in virtual
//! time.
//!
//! Events are small `Copy` values in a binary heap ([`EventQueue`]); state
//! lives in flat arrays indexed by a global stage number, so a simulation
//! of many thousands of jobs allocates a handful of vectors, not a few per
//! job. What it models:
//!
//! * **dependencies and transfers** — a stage is ready on its node when
//!   every predecessor has finished and its output has crossed the link
//!   (latency + size / bandwidth; nothing on the same node); first stages
//!   wait for the origin's latency;
//! * **queueing** — a node runs stages while their CPU and memory fit its
//!   allocatable capacity; others wait in FIFO order;
//! * **noise** — run times × lognormal(mean 1, σ the node's learned jitter
//!   or the configured default);
//! * **failures** — while running, a node fails at the rate implied by its
//!   resiliency (r = survival over the risk horizon); the stage reruns after
//!   the recovery delay on its shadow node if the plan has one, else in
//!   place, up to `max_attempts`;
//! * **formats and energy** — QEMU/Wasm overheads and calibration as in the
//!   predictor; energy = CPU time × the node's joules per core-second.
//!
//! With noise and failures off and one job, the simulator reproduces the
//! predictor ([`crate::predict::score_plan`]) exactly.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use rand::RngExt;
use rand_distr::{Distribution, Exp1, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::job::Job;
use crate::model::Format;
use crate::predict::Assignment;
use crate::rng::{SimRng, seeded};
use crate::view::{FabricView, OriginIdx};

/// A min-heap of timed events; equal times pop in insertion order, which
/// makes runs deterministic.
#[derive(Clone, Debug)]
pub struct EventQueue<T: Copy> {
    heap: BinaryHeap<Entry<T>>,
    seq: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry<T: Copy> {
    // Non-negative f64 bit patterns order like the numbers.
    key: u64,
    seq: u64,
    payload: T,
}

impl<T: Copy> PartialEq for Entry<T> {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key && self.seq == o.seq
    }
}
impl<T: Copy> Eq for Entry<T> {}
impl<T: Copy> PartialOrd for Entry<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T: Copy> Ord for Entry<T> {
    fn cmp(&self, o: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap.
        (o.key, o.seq).cmp(&(self.key, self.seq))
    }
}

impl<T: Copy> Default for EventQueue<T> {
    fn default() -> Self {
        EventQueue { heap: BinaryHeap::new(), seq: 0 }
    }
}

impl<T: Copy> EventQueue<T> {
    /// An empty queue with room for `n` events.
    pub fn with_capacity(n: usize) -> Self {
        EventQueue { heap: BinaryHeap::with_capacity(n), seq: 0 }
    }

    /// Schedules `payload` at `time` (ms, ≥ 0).
    #[inline]
    pub fn push(&mut self, time: f64, payload: T) {
        debug_assert!(time >= 0.0, "event time {time} is negative");
        self.seq += 1;
        self.heap.push(Entry { key: time.max(0.0).to_bits(), seq: self.seq, payload });
    }

    /// The earliest event.
    #[inline]
    pub fn pop(&mut self) -> Option<(f64, T)> {
        self.heap.pop().map(|e| (f64::from_bits(e.key), e.payload))
    }

    /// Time of the earliest event.
    pub fn peek_time(&self) -> Option<f64> {
        self.heap.peek().map(|e| f64::from_bits(e.key))
    }

    /// Number of pending events.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// Simulator settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// Default lognormal σ of run times (0 = exact).
    pub noise_sigma: f64,
    /// Whether nodes fail while running stages.
    pub failures: bool,
    /// Resiliency r = probability of surviving this long (ms).
    pub risk_horizon_ms: f64,
    /// Delay before a failed stage reruns (ms).
    pub recovery_ms: f64,
    /// Attempts per stage before the job fails.
    pub max_attempts: u16,
    /// RNG seed.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            noise_sigma: 0.15,
            failures: true,
            risk_horizon_ms: 60_000.0,
            recovery_ms: 5_000.0,
            max_attempts: 3,
            seed: 1,
        }
    }
}

impl SimConfig {
    /// No noise, no failures: the predictor's world.
    pub fn exact() -> Self {
        SimConfig { noise_sigma: 0.0, failures: false, ..SimConfig::default() }
    }
}

/// What happened to one stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageOutcome {
    /// Node it finally ran on.
    pub node: usize,
    /// Format.
    pub format: Format,
    /// When its inputs were on that node (ms).
    pub ready_ms: f64,
    /// When its last attempt started (ms).
    pub start_ms: f64,
    /// When it finished (ms; NaN if it never did).
    pub finish_ms: f64,
    /// Run time of the last attempt (ms).
    pub compute_ms: f64,
    /// Attempts made.
    pub attempts: u16,
}

/// What happened to one job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// Submission time (ms).
    pub submit_ms: f64,
    /// Completion (or failure) time (ms).
    pub finish_ms: f64,
    /// finish − submit (ms).
    pub latency_ms: f64,
    /// Energy of all attempts (J).
    pub energy_j: f64,
    /// Whether a stage ran out of attempts or could never fit its node.
    pub failed: bool,
    /// Node failures suffered.
    pub failures: u32,
    /// Per stage, in document order.
    pub stages: Vec<StageOutcome>,
}

#[derive(Clone, Copy, Debug)]
enum Ev {
    /// Stage (global index) reaches its node.
    Arrive(u32),
    /// Stage finishes (global index, attempt).
    Finish(u32, u16),
    /// Stage's node fails under it (global index, attempt).
    Fail(u32, u16),
}

#[derive(Clone, Debug, Default)]
struct NodeState {
    used_cpu: f64,
    used_mem: f64,
    peak_cpu: f64,
    waiting: VecDeque<u32>,
    /// Σ cpu × expected end over running stages (core·ms).
    running_end: f64,
    /// Σ cpu × nominal run time over stages placed here that have not
    /// started (waiting for predecessors or for room) (core·ms).
    pending_work: f64,
    /// CPU and memory of every placed, unfinished stage (what the twin
    /// calls `allocated`).
    assigned_cpu: f64,
    assigned_mem: f64,
}

/// A simulation over one fabric view.
pub struct Simulator<'a> {
    view: &'a FabricView,
    cfg: SimConfig,
    rng: SimRng,
    queue: EventQueue<Ev>,
    nodes: Vec<NodeState>,
    events: u64,
    // Per job.
    jobs: Vec<&'a Job>,
    job_base: Vec<u32>,
    job_origin: Vec<OriginIdx>,
    job_submit: Vec<f64>,
    job_left: Vec<u32>,
    job_energy: Vec<f64>,
    job_failed: Vec<bool>,
    job_failures: Vec<u32>,
    job_finish: Vec<f64>,
    // Per stage, global index = job_base[j] + s.
    st_job: Vec<u32>,
    st_pending: Vec<u16>,
    st_assign: Vec<Assignment>,
    st_shadow: Vec<Option<Assignment>>,
    st_ready: Vec<f64>,
    st_start: Vec<f64>,
    st_finish: Vec<f64>,
    st_compute: Vec<f64>,
    st_attempt: Vec<u16>,
    st_nominal: Vec<f64>,
    st_state: Vec<StageState>,
}

/// Where a stage is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StageState {
    /// Placed, not running: waiting for inputs or room (holds its node's
    /// `assigned_*` and `pending_work`).
    Pending,
    /// On its node's cores.
    Running,
    /// Finished, or abandoned with its job.
    Done,
}

impl<'a> Simulator<'a> {
    /// A simulator over `view`.
    pub fn new(view: &'a FabricView, cfg: SimConfig) -> Self {
        Simulator {
            view,
            rng: seeded(cfg.seed),
            cfg,
            queue: EventQueue::with_capacity(1024),
            nodes: vec![NodeState::default(); view.nodes.len()],
            events: 0,
            jobs: Vec::new(),
            job_base: Vec::new(),
            job_origin: Vec::new(),
            job_submit: Vec::new(),
            job_left: Vec::new(),
            job_energy: Vec::new(),
            job_failed: Vec::new(),
            job_failures: Vec::new(),
            job_finish: Vec::new(),
            st_job: Vec::new(),
            st_pending: Vec::new(),
            st_assign: Vec::new(),
            st_shadow: Vec::new(),
            st_ready: Vec::new(),
            st_start: Vec::new(),
            st_finish: Vec::new(),
            st_compute: Vec::new(),
            st_attempt: Vec::new(),
            st_nominal: Vec::new(),
            st_state: Vec::new(),
        }
    }

    /// Submits a placed job at `at_ms`; returns its handle.
    pub fn submit(
        &mut self,
        job: &'a Job,
        origin: OriginIdx,
        assign: &[Assignment],
        shadow: &[Option<Assignment>],
        at_ms: f64,
    ) -> usize {
        assert_eq!(assign.len(), job.stages.len(), "one assignment per stage");
        let j = self.jobs.len();
        let base = self.st_job.len() as u32;
        self.jobs.push(job);
        self.job_base.push(base);
        self.job_origin.push(origin);
        self.job_submit.push(at_ms);
        self.job_left.push(job.stages.len() as u32);
        self.job_energy.push(0.0);
        self.job_failed.push(false);
        self.job_failures.push(0);
        self.job_finish.push(f64::NAN);
        for (s, stage) in job.stages.iter().enumerate() {
            self.st_job.push(j as u32);
            self.st_pending.push(stage.predecessors.len() as u16);
            self.st_assign.push(assign[s]);
            self.st_shadow.push(shadow.get(s).copied().flatten());
            self.st_ready.push(at_ms);
            self.st_start.push(f64::NAN);
            self.st_finish.push(f64::NAN);
            self.st_compute.push(0.0);
            self.st_attempt.push(0);
            let nominal = self.view.compute_ms(assign[s].node, &stage.compute, assign[s].format);
            self.st_nominal.push(nominal);
            self.st_state.push(StageState::Pending);
            self.hold(assign[s].node, &stage.compute, nominal, 1.0);
            if stage.predecessors.is_empty() {
                let t = at_ms + self.view.origin_latency(origin, assign[s].node);
                self.st_ready[base as usize + s] = t;
                self.queue.push(t, Ev::Arrive(base + s as u32));
            }
        }
        j
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
        self.events
    }

    fn handle(&mut self, now: f64, ev: Ev) {
        self.events += 1;
        match ev {
            Ev::Arrive(g) => {
                let g = g as usize;
                if self.st_state[g] != StageState::Pending {
                    return; // its job failed meanwhile
                }
                let j = self.st_job[g] as usize;
                let node = self.st_assign[g].node;
                let c = self.stage(g).compute;
                if c.cpu > self.view.nodes.alloc_cpu[node] || c.mem_gb > self.view.nodes.alloc_mem[node] {
                    // Can never fit: fail the job instead of waiting forever.
                    self.fail_job(j, now);
                    return;
                }
                self.nodes[node].waiting.push_back(g as u32);
                self.start_waiting(node, now);
            }
            Ev::Finish(g, attempt) => {
                let g = g as usize;
                if self.st_attempt[g] != attempt || self.st_state[g] != StageState::Running {
                    return;
                }
                let node = self.st_assign[g].node;
                let j = self.st_job[g] as usize;
                let c = self.stage(g).compute;
                self.stop_running(g, node);
                self.st_state[g] = StageState::Done;
                self.hold(node, &c, 0.0, -1.0);
                self.st_finish[g] = now;
                self.job_energy[j] += self.view.energy_j(node, &c, now - self.st_start[g]);
                self.job_left[j] -= 1;
                if self.job_left[j] == 0 && !self.job_failed[j] {
                    self.job_finish[j] = now;
                }
                if !self.job_failed[j] {
                    self.release_successors(j, g, now);
                }
                self.start_waiting(node, now);
            }
            Ev::Fail(g, attempt) => {
                let g = g as usize;
                if self.st_attempt[g] != attempt || self.st_state[g] != StageState::Running {
                    return;
                }
                let node = self.st_assign[g].node;
                let j = self.st_job[g] as usize;
                let c = self.stage(g).compute;
                self.stop_running(g, node);
                self.job_energy[j] += self.view.energy_j(node, &c, now - self.st_start[g]);
                self.job_failures[j] += 1;
                if self.job_failed[j] || self.st_attempt[g] >= self.cfg.max_attempts {
                    self.st_state[g] = StageState::Done;
                    self.hold(node, &c, 0.0, -1.0);
                    self.fail_job(j, now);
                } else {
                    self.st_state[g] = StageState::Pending;
                    if let Some(sh) = self.st_shadow[g] {
                        self.hold(node, &c, 0.0, -1.0);
                        self.st_assign[g] = sh;
                        self.st_nominal[g] = self.view.compute_ms(sh.node, &c, sh.format);
                        self.hold(sh.node, &c, 0.0, 1.0);
                    }
                    let to = self.st_assign[g].node;
                    self.nodes[to].pending_work += c.cpu * self.st_nominal[g];
                    let ready = (now + self.cfg.recovery_ms).max(self.inputs_ready(j, g, to));
                    self.st_ready[g] = ready;
                    self.queue.push(ready, Ev::Arrive(g as u32));
                }
                self.start_waiting(node, now);
            }
        }
    }

    fn stage(&self, g: usize) -> &'a crate::job::Stage {
        let j = self.st_job[g] as usize;
        &self.jobs[j].stages[g - self.job_base[j] as usize]
    }

    /// When all of stage `g`'s inputs can be on node `to`.
    fn inputs_ready(&self, j: usize, g: usize, to: usize) -> f64 {
        let job = self.jobs[j];
        let base = self.job_base[j] as usize;
        let st = &job.stages[g - base];
        if st.predecessors.is_empty() {
            return self.job_submit[j] + self.view.origin_latency(self.job_origin[j], to);
        }
        st.predecessors
            .iter()
            .map(|&p| {
                self.st_finish[base + p]
                    + self.view.transfer_ms(self.st_assign[base + p].node, to, job.stages[p].output_mb)
            })
            .fold(0.0, f64::max)
    }

    fn release_successors(&mut self, j: usize, g: usize, now: f64) {
        let job = self.jobs[j];
        let base = self.job_base[j] as usize;
        let s = g - base;
        let out_mb = job.stages[s].output_mb;
        let from = self.st_assign[g].node;
        // Successors are the stages listing s as a predecessor; jobs are
        // small (≤ 64 stages), a scan beats storing adjacency per job.
        for (k, st) in job.stages.iter().enumerate() {
            if !st.predecessors.contains(&s) {
                continue;
            }
            let gk = base + k;
            let arrive = now + self.view.transfer_ms(from, self.st_assign[gk].node, out_mb);
            self.st_ready[gk] = self.st_ready[gk].max(arrive);
            self.st_pending[gk] -= 1;
            if self.st_pending[gk] == 0 {
                self.queue.push(self.st_ready[gk], Ev::Arrive(gk as u32));
            }
        }
    }

    /// Takes a running stage off its node's cores.
    fn stop_running(&mut self, g: usize, node: usize) {
        let c = self.stage(g).compute;
        let n = &mut self.nodes[node];
        n.used_cpu -= c.cpu;
        n.used_mem -= c.mem_gb;
        n.running_end -= c.cpu * (self.st_start[g] + self.st_nominal[g]);
    }

    /// Adds (sign 1) or removes (−1) a placed stage's hold on a node, with
    /// `pending_ms` of not-yet-started work.
    fn hold(&mut self, node: usize, c: &crate::job::Compute, pending_ms: f64, sign: f64) {
        let n = &mut self.nodes[node];
        n.assigned_cpu += sign * c.cpu;
        n.assigned_mem += sign * c.mem_gb;
        n.pending_work += sign * c.cpu * pending_ms;
    }

    fn fail_job(&mut self, j: usize, now: f64) {
        if self.job_failed[j] {
            return;
        }
        self.job_failed[j] = true;
        self.job_finish[j] = now;
        // Unstarted stages give back their hold now; running ones when their
        // finish or failure event fires.
        let base = self.job_base[j] as usize;
        for g in base..base + self.jobs[j].stages.len() {
            if self.st_state[g] == StageState::Pending {
                self.st_state[g] = StageState::Done;
                let c = self.stage(g).compute;
                self.hold(self.st_assign[g].node, &c, self.st_nominal[g], -1.0);
            }
        }
    }

    /// Starts waiting stages on `node` in FIFO order while they fit.
    fn start_waiting(&mut self, node: usize, now: f64) {
        let cap_cpu = self.view.nodes.alloc_cpu[node];
        let cap_mem = self.view.nodes.alloc_mem[node];
        while let Some(&g) = self.nodes[node].waiting.front() {
            let g = g as usize;
            if self.st_state[g] != StageState::Pending {
                self.nodes[node].waiting.pop_front(); // its job failed
                continue;
            }
            let c = self.stage(g).compute;
            let n = &self.nodes[node];
            if n.used_cpu + c.cpu > cap_cpu + 1e-9 || n.used_mem + c.mem_gb > cap_mem + 1e-9 {
                break;
            }
            self.nodes[node].waiting.pop_front();
            self.start(g, node, now);
        }
    }

    fn start(&mut self, g: usize, node: usize, now: f64) {
        let c = self.stage(g).compute;
        let nominal = self.st_nominal[g];
        let ns = &mut self.nodes[node];
        ns.used_cpu += c.cpu;
        ns.used_mem += c.mem_gb;
        ns.peak_cpu = ns.peak_cpu.max(ns.used_cpu);
        ns.pending_work -= c.cpu * nominal;
        ns.running_end += c.cpu * (now + nominal);
        self.st_state[g] = StageState::Running;
        let sigma = if self.view.nodes.jitter_sigma[node] >= 0.0 {
            self.view.nodes.jitter_sigma[node]
        } else {
            self.cfg.noise_sigma
        };
        let run = if sigma > 0.0 {
            let z: f64 = StandardNormal.sample(&mut self.rng);
            nominal * (sigma * z - sigma * sigma / 2.0).exp()
        } else {
            nominal
        };
        self.st_attempt[g] += 1;
        let attempt = self.st_attempt[g];
        self.st_start[g] = now;
        self.st_compute[g] = run;
        let r = self.view.nodes.resiliency[node];
        if self.cfg.failures && r < 1.0 {
            let rate = -r.max(1e-12).ln() / self.cfg.risk_horizon_ms;
            let ttf: f64 = Exp1.sample(&mut self.rng);
            let ttf = ttf / rate;
            if ttf < run {
                self.queue.push(now + ttf, Ev::Fail(g as u32, attempt));
                return;
            }
        }
        self.queue.push(now + run, Ev::Finish(g as u32, attempt));
    }

    /// The outcome of job `j` (after [`Simulator::run`]).
    pub fn outcome(&self, j: usize) -> JobOutcome {
        let base = self.job_base[j] as usize;
        let n = self.jobs[j].stages.len();
        let stages = (base..base + n)
            .map(|g| StageOutcome {
                node: self.st_assign[g].node,
                format: self.st_assign[g].format,
                ready_ms: self.st_ready[g],
                start_ms: self.st_start[g],
                finish_ms: self.st_finish[g],
                compute_ms: self.st_compute[g],
                attempts: self.st_attempt[g],
            })
            .collect();
        JobOutcome {
            submit_ms: self.job_submit[j],
            finish_ms: self.job_finish[j],
            latency_ms: self.job_finish[j] - self.job_submit[j],
            energy_j: self.job_energy[j],
            failed: self.job_failed[j] || self.job_finish[j].is_nan(),
            failures: self.job_failures[j],
            stages,
        }
    }

    /// Outcomes of every job.
    pub fn outcomes(&self) -> Vec<JobOutcome> {
        (0..self.jobs.len()).map(|j| self.outcome(j)).collect()
    }

    /// Highest CPU in use on each node at any time.
    pub fn peak_cpu(&self) -> Vec<f64> {
        self.nodes.iter().map(|n| n.peak_cpu).collect()
    }

    /// CPU cores and GB of memory in use on `node` now.
    pub fn used(&self, node: usize) -> (f64, f64) {
        (self.nodes[node].used_cpu, self.nodes[node].used_mem)
    }

    /// CPU cores and GB of memory held on `node` by placed, unfinished
    /// stages, running or not (the twin's `allocated`).
    pub fn assigned(&self, node: usize) -> (f64, f64) {
        (self.nodes[node].assigned_cpu.max(0.0), self.nodes[node].assigned_mem.max(0.0))
    }

    /// Expected wait (ms) at `now` before `node` has drained what it runs
    /// and what is placed on it, treating its cores as one fluid pool and run
    /// times as nominal — the estimate an agent publishes as its backlog.
    pub fn backlog_ms(&self, node: usize, now: f64) -> f64 {
        let n = &self.nodes[node];
        let remaining = (n.running_end - n.used_cpu * now).max(0.0) + n.pending_work.max(0.0);
        remaining / self.view.nodes.alloc_cpu[node].max(1e-9)
    }

    /// Stages waiting for room on `node` now.
    pub fn waiting(&self, node: usize) -> usize {
        self.nodes[node].waiting.len()
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
