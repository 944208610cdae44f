//! Scaling a long-running service — the third preemptive action.
//!
//! **The rule** ([`desired`]) is the Kubernetes HPA's, as KubeTwin models
//! it: desired = ⌈current × observed / target⌉, no change while
//! observed / target is within the tolerance band (±10 %), clamped to
//! [min, max], looked at once per period.
//!
//! **Reactive** scaling applies it to the utilisation observed over the
//! last period. **Predictive** scaling applies it to the utilisation the
//! twin forecasts for when a new replica would be ready (now, plus the cold
//! start and a period; the arrival rate extrapolated from the last two periods),
//! then *simulates* the next period at that rate in the service DES
//! ([`simulate`]) and adds replicas until the latency objective is met —
//! first simulated, then applied.
//!
//! **The service DES** ([`simulate`]): Poisson request phases (rate, from,
//! count), exponential service times, one FIFO queue served by the ready
//! replicas (a Kubernetes Service spreading requests), new replicas ready
//! after a cold start, scale-down taking idle replicas first.

use std::collections::{BinaryHeap, VecDeque};

use rand_distr::{Distribution, Exp1};
use serde::{Deserialize, Serialize};

use crate::rng::seeded;

/// The scaling rule's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScaleConfig {
    /// Fewest replicas.
    pub min: u32,
    /// Most replicas.
    pub max: u32,
    /// Target utilisation of a replica (0–1).
    pub target: f64,
    /// No change while |observed / target − 1| ≤ this.
    pub tolerance: f64,
    /// How often the rule is applied (ms).
    pub period_ms: f64,
}

impl Default for ScaleConfig {
    fn default() -> Self {
        ScaleConfig { min: 1, max: 10, target: 0.6, tolerance: 0.1, period_ms: 15_000.0 }
    }
}

/// The HPA rule: ⌈current × observed / target⌉ outside the tolerance
/// band, clamped to [min, max]; `current` (clamped) inside it.
pub fn desired(current: u32, observed: f64, cfg: &ScaleConfig) -> u32 {
    let current = current.clamp(cfg.min, cfg.max.max(cfg.min));
    let ratio = observed / cfg.target.max(1e-9);
    if !ratio.is_finite() || (ratio - 1.0).abs() <= cfg.tolerance {
        return current;
    }
    ((f64::from(current) * ratio - 1e-9).ceil().max(0.0) as u32).clamp(cfg.min, cfg.max.max(cfg.min))
}

/// How a service is scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scaling {
    /// Always `min` replicas.
    Fixed,
    /// The HPA rule on the utilisation observed over the last period.
    Reactive,
    /// The HPA rule on the forecast utilisation, checked in the DES.
    Predictive,
}

impl Scaling {
    /// Every mode.
    pub const ALL: [Scaling; 3] = [Scaling::Fixed, Scaling::Reactive, Scaling::Predictive];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Scaling::Fixed => "fixed",
            Scaling::Reactive => "reactive HPA",
            Scaling::Predictive => "predictive (twin)",
        }
    }
}

/// Requests at `rps` from `from_ms` on, `count` of them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// Start (ms).
    pub from_ms: f64,
    /// Requests per second.
    pub rps: f64,
    /// Requests.
    pub count: u64,
}

/// A service and its load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceCase {
    /// Mean service time of a request on one replica (ms).
    pub service_ms: f64,
    /// Request phases (they overlap: each is its own Poisson stream).
    pub phases: Vec<Phase>,
    /// Time for a new replica to become ready (ms).
    pub cold_start_ms: f64,
    /// A request answered later than this misses its objective (ms).
    pub objective_ms: f64,
    /// Replicas at the start.
    pub initial: u32,
    /// The rule.
    pub scale: ScaleConfig,
    /// Seed of arrivals and service times.
    pub seed: u64,
}

impl ServiceCase {
    /// KubeTwin's autoscaling scenario: 130,000 requests — 100,000 at
    /// 100 rps, plus 20,000 at 150 rps from 30 s, plus 10,000 at 50 rps
    /// from 70 s; 10 to 50 replicas, a 15 s period, no action inside
    /// [0.90, 1.10] of the target. Service time 60 ms (100 rps keeps 10
    /// replicas at the 60 % target), 5 s cold start, 250 ms objective.
    pub fn kubetwin(seed: u64) -> ServiceCase {
        ServiceCase {
            service_ms: 60.0,
            phases: vec![
                Phase { from_ms: 0.0, rps: 100.0, count: 100_000 },
                Phase { from_ms: 30_000.0, rps: 150.0, count: 20_000 },
                Phase { from_ms: 70_000.0, rps: 50.0, count: 10_000 },
            ],
            cold_start_ms: 5_000.0,
            objective_ms: 250.0,
            initial: 10,
            scale: ScaleConfig { min: 10, max: 50, target: 0.6, tolerance: 0.1, period_ms: 15_000.0 },
            seed,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceRun {
    /// Requests answered.
    pub requests: u64,
    /// Answered later than the objective.
    pub late: u64,
    /// Latency quantiles (ms).
    pub p50_ms: f64,
    /// 99th percentile (ms).
    pub p99_ms: f64,
    /// Replica-seconds paid for (ready or starting).
    pub replica_s: f64,
    /// Scale actions taken.
    pub actions: u32,
    /// (time ms, replicas asked for) after every change, from the start.
    pub replicas: Vec<(f64, u32)>,
    /// (window end ms, p99 ms of requests that arrived in the window), 5 s windows.
    pub p99_windows: Vec<(f64, f64)>,
    /// Simulated end (ms).
    pub end_ms: f64,
}

/// A time, ordered so that the earliest pops first from a max-heap.
#[derive(Clone, Copy, Debug, PartialEq)]
struct At(f64);
impl Eq for At {}
impl PartialOrd for At {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for At {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.0.total_cmp(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// A request of phase p arrives.
    Arrive(usize),
    /// A replica finishes the request that arrived at the stored time.
    Done(u32),
    /// A starting replica is ready.
    Ready,
    /// The scaler looks.
    Period,
}

type Queue = BinaryHeap<(At, u64, Ev)>;

fn push(q: &mut Queue, seq: &mut u64, t: f64, e: Ev) {
    *seq += 1;
    q.push((At(t), *seq, e));
}

/// Requests being served: each one's arrival, by slot.
#[derive(Default)]
struct Serving {
    arrival: Vec<f64>,
    free: Vec<u32>,
}

impl Serving {
    fn start(&mut self, arrival: f64) -> u32 {
        match self.free.pop() {
            Some(s) => {
                self.arrival[s as usize] = arrival;
                s
            }
            None => {
                self.arrival.push(arrival);
                (self.arrival.len() - 1) as u32
            }
        }
    }
}

/// Runs `case` with `mode` to the last answer.
pub fn simulate(case: &ServiceCase, mode: Scaling) -> ServiceRun {
    let mut rng = seeded(case.seed);
    let mut q = Queue::new();
    let mut seq = 0u64;
    let mut left: Vec<u64> = case.phases.iter().map(|p| p.count).collect();
    for (i, p) in case.phases.iter().enumerate() {
        if p.count > 0 && p.rps > 0.0 {
            let e: f64 = Exp1.sample(&mut rng);
            push(&mut q, &mut seq, p.from_ms + e * 1000.0 / p.rps, Ev::Arrive(i));
        }
    }
    let period = case.scale.period_ms;
    if period.is_finite() && period > 0.0 {
        push(&mut q, &mut seq, period, Ev::Period);
    }
    let (lo, hi) = (case.scale.min, case.scale.max.max(case.scale.min));
    let mut ready = case.initial.clamp(lo, hi);
    let (mut starting, mut target, mut busy) = (0u32, ready, 0u32);
    let mut waiting: VecDeque<f64> = VecDeque::new();
    let mut serving = Serving::default();
    let mut lat: Vec<(f64, f64)> = Vec::with_capacity(case.phases.iter().map(|p| p.count as usize).sum());
    let (mut last_t, mut paid, mut period_busy) = (0.0, 0.0, 0.0);
    let (mut arrivals_this, mut arrivals_prev) = (0u64, None::<u64>);
    let mut replicas = vec![(0.0, target)];
    let mut actions = 0u32;
    let mut now = 0.0;
    while let Some((At(t), _, ev)) = q.pop() {
        let dt = t - last_t;
        period_busy += f64::from(busy) * dt;
        paid += f64::from(ready + starting) * dt;
        last_t = t;
        now = t;
        // A request waiting or just arrived starts when a replica is free.
        let serve = |arrival: f64,
                     busy: &mut u32,
                     serving: &mut Serving,
                     rng: &mut crate::rng::SimRng,
                     q: &mut Queue,
                     seq: &mut u64| {
            *busy += 1;
            let slot = serving.start(arrival);
            let d: f64 = Exp1.sample(rng);
            push(q, seq, t + d * case.service_ms, Ev::Done(slot));
        };
        match ev {
            Ev::Arrive(i) => {
                left[i] -= 1;
                arrivals_this += 1;
                if left[i] > 0 {
                    let e: f64 = Exp1.sample(&mut rng);
                    push(&mut q, &mut seq, t + e * 1000.0 / case.phases[i].rps, Ev::Arrive(i));
                }
                if busy < ready {
                    serve(t, &mut busy, &mut serving, &mut rng, &mut q, &mut seq);
                } else {
                    waiting.push_back(t);
                }
            }
            Ev::Done(slot) => {
                let arrival = serving.arrival[slot as usize];
                serving.free.push(slot);
                lat.push((arrival, t - arrival));
                busy -= 1;
                // A replica scaled down goes once it is idle.
                if ready > target {
                    ready -= 1;
                } else if let Some(a) = waiting.pop_front() {
                    serve(a, &mut busy, &mut serving, &mut rng, &mut q, &mut seq);
                }
            }
            Ev::Ready => {
                starting -= 1;
                // One asked for and no longer wanted is not kept.
                if ready < target {
                    ready += 1;
                    if let Some(a) = waiting.pop_front() {
                        serve(a, &mut busy, &mut serving, &mut rng, &mut q, &mut seq);
                    }
                }
            }
            Ev::Period => {
                let util = period_busy / (f64::from(ready.max(1)) * period);
                let rate_now = arrivals_this as f64 * 1000.0 / period;
                let prev = arrivals_prev.map(|p| p as f64 * 1000.0 / period);
                let next = decide(case, mode, target, util, rate_now, prev, u64::from(actions));
                if next != target {
                    actions += 1;
                    while next > ready + starting {
                        starting += 1;
                        push(&mut q, &mut seq, t + case.cold_start_ms, Ev::Ready);
                    }
                    target = next;
                    // Idle replicas above the target go at once.
                    while ready > target && busy < ready {
                        ready -= 1;
                    }
                    replicas.push((t, target));
                }
                arrivals_prev = Some(arrivals_this);
                arrivals_this = 0;
                period_busy = 0.0;
                if left.iter().any(|&l| l > 0) || busy > 0 || !waiting.is_empty() {
                    push(&mut q, &mut seq, t + period, Ev::Period);
                }
            }
        }
    }
    let mut sorted: Vec<f64> = lat.iter().map(|x| x.1).collect();
    sorted.sort_by(f64::total_cmp);
    let pick = |q: f64| sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    lat.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut p99_windows = Vec::new();
    let mut i = 0;
    let mut w_end = 5_000.0;
    while i < lat.len() {
        let mut v: Vec<f64> = Vec::new();
        while i < lat.len() && lat[i].0 < w_end {
            v.push(lat[i].1);
            i += 1;
        }
        if !v.is_empty() {
            v.sort_by(f64::total_cmp);
            p99_windows.push((w_end, v[((v.len() as f64 - 1.0) * 0.99).round() as usize]));
        }
        w_end += 5_000.0;
    }
    ServiceRun {
        requests: sorted.len() as u64,
        late: sorted.iter().filter(|&&l| l > case.objective_ms).count() as u64,
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        replica_s: paid / 1000.0,
        actions,
        replicas,
        p99_windows,
        end_ms: now,
    }
}

impl ServiceCase {
    /// Offered requests per second over `[a, b)` ms of the service's time:
    /// what the phases send in that window.
    pub fn offered_rps(&self, a: f64, b: f64) -> f64 {
        if b <= a {
            return 0.0;
        }
        let sent: f64 = self
            .phases
            .iter()
            .map(|p| {
                let end = p.from_ms + p.count as f64 / p.rps.max(1e-12) * 1000.0;
                (end.min(b) - p.from_ms.max(a)).max(0.0) / 1000.0 * p.rps
            })
            .sum();
        sent * 1000.0 / (b - a)
    }
}

/// What a controller decided at the start of a period.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// Replicas for the period starting.
    pub replicas: u32,
    /// Offered requests per second over the period that ended (0 at the
    /// first).
    pub rps: f64,
    /// Utilisation of the replicas over it, capped at 1 as a CPU's is.
    pub utilisation: f64,
}

/// One service's scaling between periods — the sans-IO machine the agent
/// (`node::services`) and the simulator (`twinmesh-sims preemptive`) both
/// drive: at each period's start, the offered load of the period that
/// ended, the utilisation it gave the replicas, and [`decide`].
#[derive(Clone, Debug, PartialEq)]
pub struct Controller {
    /// Replicas now.
    pub replicas: u32,
    prev_rps: Option<f64>,
    periods: u64,
}

impl Controller {
    /// Before the first period: the case's initial replicas.
    pub fn new(case: &ServiceCase) -> Controller {
        Controller { replicas: case.initial, prev_rps: None, periods: 0 }
    }

    /// Going on after `periods` periods with `replicas` (a restart: the
    /// trend of the rates is learned again).
    pub fn resume(replicas: u32, periods: u64) -> Controller {
        Controller { replicas, prev_rps: None, periods }
    }

    /// At the start of the period at `t_ms` of the service's time: the
    /// replicas for it. The first period keeps the initial replicas.
    pub fn period(&mut self, case: &ServiceCase, mode: Scaling, t_ms: f64) -> Step {
        let first = self.periods == 0;
        self.periods += 1;
        if first {
            return Step { replicas: self.replicas, rps: 0.0, utilisation: 0.0 };
        }
        let period = case.scale.period_ms;
        let rps = case.offered_rps(t_ms - period, t_ms);
        let utilisation = (rps * case.service_ms / 1000.0 / f64::from(self.replicas.max(1))).min(1.0);
        self.replicas = decide(case, mode, self.replicas, utilisation, rps, self.prev_rps, self.periods - 1);
        self.prev_rps = Some(rps);
        Step { replicas: self.replicas, rps, utilisation }
    }
}

/// The replicas a service should have after a period, by `mode`:
/// `current` replicas wanted so far, `util` the utilisation observed over
/// the period, `rate_now` its arrival rate (requests/s) and `rate_prev` the
/// period's before (none at the first); `salt` varies the DES check's seed.
/// The one rule the service DES and the agents scale with.
pub fn decide(
    case: &ServiceCase,
    mode: Scaling,
    current: u32,
    util: f64,
    rate_now: f64,
    rate_prev: Option<f64>,
    salt: u64,
) -> u32 {
    let hi = case.scale.max.max(case.scale.min);
    match mode {
        Scaling::Fixed => case.scale.min,
        Scaling::Reactive => desired(current, util, &case.scale),
        Scaling::Predictive => {
            // The rate when a replica asked for now is ready and has served
            // a period: the last two periods' trend, never below the slower
            // of them.
            let period = case.scale.period_ms;
            let prev = rate_prev.unwrap_or(rate_now);
            let ahead = (case.cold_start_ms + period) / period;
            let rate = (rate_now + (rate_now - prev) * ahead).max(rate_now.min(prev)).max(0.0);
            let forecast = rate * case.service_ms / 1000.0 / f64::from(current.max(1));
            let mut n = desired(current, forecast, &case.scale);
            // First simulated: replicas are added until the DES says a
            // period at that rate meets the objective.
            while n < hi && !meets(case, rate, n, case.seed ^ salt) {
                n += 1;
            }
            n
        }
    }
}

/// Whether `n` replicas serve `rps` within the objective for all but one
/// percent more of a period's requests than service times alone would
/// miss (a short M/M/n run of the service DES, no scaling).
pub fn meets(case: &ServiceCase, rps: f64, n: u32, seed: u64) -> bool {
    if rps <= 0.0 {
        return true;
    }
    if rps * case.service_ms / 1000.0 >= f64::from(n) {
        return false;
    }
    let count = ((rps * case.scale.period_ms / 1000.0).ceil() as u64).max(50);
    let probe = ServiceCase {
        phases: vec![Phase { from_ms: 0.0, rps, count }],
        initial: n,
        scale: ScaleConfig { min: n, max: n, period_ms: f64::INFINITY, ..case.scale.clone() },
        seed: seed.wrapping_add(0x5eed),
        ..case.clone()
    };
    let r = simulate(&probe, Scaling::Fixed);
    // Service times alone (exponential) exceed the objective this often;
    // queueing may add one point more. A short run's own share of slow
    // requests varies by chance (three standard deviations allowed): without
    // that margin an unlucky sample fails at any n and the rule climbs to
    // the maximum on noise.
    let floor = (-case.objective_ms / case.service_ms.max(1e-9)).exp();
    let n_req = r.requests.max(1) as f64;
    let chance = 3.0 * (floor * (1.0 - floor) / n_req).sqrt();
    r.late as f64 <= (floor + 0.01 + chance) * n_req
}

#[cfg(test)]
mod tests;
