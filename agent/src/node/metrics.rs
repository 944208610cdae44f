//! The agent's counters and histograms for `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A Prometheus histogram: fixed upper bounds, lock-free counts.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    /// Sum of observations, in millionths of the unit (µs for seconds).
    sum_micro: AtomicU64,
}

impl Histogram {
    /// A histogram with these finite upper bounds (ascending); `+Inf` is
    /// added.
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds must ascend");
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
        }
    }

    /// Counts one observation.
    pub fn observe(&self, v: f64) {
        let v = if v.is_finite() { v.max(0.0) } else { f64::MAX };
        let i = self.bounds.iter().position(|&b| v <= b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micro.fetch_add((v * 1e6).min(u64::MAX as f64 / 2.0) as u64, Ordering::Relaxed);
    }

    /// Counts one duration, in seconds.
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Writes the histogram in the text exposition format.
    pub fn write(&self, s: &mut String, name: &str, help: &str) {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cum += c.load(Ordering::Relaxed);
            match self.bounds.get(i) {
                Some(b) => {
                    let _ = writeln!(s, "{name}_bucket{{le=\"{b}\"}} {cum}");
                }
                None => {
                    let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {cum}");
                }
            }
        }
        let _ = writeln!(s, "{name}_sum {}", self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(s, "{name}_count {cum}");
    }
}

/// Time to plan a job (s): 1 µs to 10 s, three buckets a decade (a greedy
/// plan on the reference fabric takes tens of µs, a CVaR plan on a
/// 1,000-node twin tens of ms).
pub const PLAN_SECONDS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// HTTP request handling (s): 25 µs to 10 s (a read is tens of µs, a
/// durable submission a commit, a forwarded one a mesh round trip).
pub const API_SECONDS: &[f64] =
    &[2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A request to a peer agent answered (s): loopback round trips are
/// ~100 µs, a WAN link tens of ms, a starved or distant agent seconds.
pub const PEER_SECONDS: &[f64] =
    &[1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// |observed − predicted| / predicted: 0.5 % to 250 % (the accuracy
/// target is 10 %; the buckets around it are the finest).
pub const ERROR_RATIO: &[f64] = &[0.005, 0.01, 0.02, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5];

/// Counters for `/metrics`.
pub struct Metrics {
    /// Jobs accepted (committed).
    pub jobs_accepted: AtomicU64,
    /// Jobs planned here.
    pub jobs_planned: AtomicU64,
    /// Jobs forwarded to another planner.
    pub jobs_forwarded: AtomicU64,
    /// Jobs that failed.
    pub jobs_failed: AtomicU64,
    /// Jobs that succeeded.
    pub jobs_succeeded: AtomicU64,
    /// Finished jobs forgotten by the retention policy.
    pub jobs_evicted: AtomicU64,
    /// Gossip frames received.
    pub gossip_in: AtomicU64,
    /// Gossip frames sent.
    pub gossip_out: AtomicU64,
    /// Frames dropped as undecodable.
    pub gossip_dropped: AtomicU64,
    /// Peer state changes, by the state entered: alive, suspect, dead.
    pub peer_transitions: [AtomicU64; 3],
    /// Liveness probes sent.
    pub probes: AtomicU64,
    /// Another agent claimed a node this agent publishes.
    pub ownership_conflicts: AtomicU64,
    /// Preemptive actions taken, by action: migrate (a stage not yet
    /// started), restart (a running stage moved), replicate (a hot replica
    /// started).
    pub preemptive: [AtomicU64; 3],
    /// Jobs that had preemptive actions, by action and how the job ended
    /// (on time, late, failed): one count per action.
    pub preemptive_outcomes: [[AtomicU64; 3]; 3],
    /// From a precursor's arrival to an action decided on it (wall s).
    pub reaction_seconds: Histogram,
    /// Periods in which a service's replicas changed.
    pub scaling_actions: AtomicU64,
    /// Jobs planned on both sides of a partition, settled: kept here,
    /// superseded here.
    pub reconciled: [AtomicU64; 2],
    /// Time to plan a job.
    pub plan_seconds: Histogram,
    /// HTTP request handling time.
    pub api_seconds: Histogram,
    /// Requests to peers, sent to answered.
    pub peer_seconds: Histogram,
    /// Per finished job: |observed − predicted| / predicted latency.
    pub job_error: Histogram,
    /// Per observed stage: |observed − predicted| / predicted run time.
    pub stage_error: Histogram,
}

/// Labels of [`Metrics::preemptive`].
pub const PREEMPTIVE_ACTIONS: [&str; 3] = ["migrate", "restart", "replicate"];

/// Outcome labels of [`Metrics::preemptive_outcomes`].
pub const ACTION_OUTCOMES: [&str; 3] = ["on_time", "late", "failed"];

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            jobs_accepted: AtomicU64::new(0),
            jobs_planned: AtomicU64::new(0),
            jobs_forwarded: AtomicU64::new(0),
            jobs_failed: AtomicU64::new(0),
            jobs_succeeded: AtomicU64::new(0),
            jobs_evicted: AtomicU64::new(0),
            gossip_in: AtomicU64::new(0),
            gossip_out: AtomicU64::new(0),
            gossip_dropped: AtomicU64::new(0),
            peer_transitions: Default::default(),
            probes: AtomicU64::new(0),
            ownership_conflicts: AtomicU64::new(0),
            preemptive: Default::default(),
            preemptive_outcomes: Default::default(),
            reaction_seconds: Histogram::new(PEER_SECONDS),
            scaling_actions: AtomicU64::new(0),
            reconciled: Default::default(),
            plan_seconds: Histogram::new(PLAN_SECONDS),
            api_seconds: Histogram::new(API_SECONDS),
            peer_seconds: Histogram::new(PEER_SECONDS),
            job_error: Histogram::new(ERROR_RATIO),
            stage_error: Histogram::new(ERROR_RATIO),
        }
    }
}

impl Metrics {
    pub(super) fn observe_plan(&self, d: Duration) {
        self.plan_seconds.observe_duration(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_fine_below_50_us() {
        let h = Histogram::new(PLAN_SECONDS);
        for us in [0.5, 2.0, 3.0, 20.0, 40.0, 70.0] {
            h.observe(us * 1e-6);
        }
        h.observe(100.0); // past the last bound
        let mut s = String::new();
        h.write(&mut s, "x_seconds", "help");
        let line = |le: &str| {
            s.lines()
                .find(|l| l.starts_with(&format!("x_seconds_bucket{{le=\"{le}\"}}")))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no bucket {le} in\n{s}"))
        };
        assert_eq!(line("0.000001"), 1);
        assert_eq!(line("0.0000025"), 2);
        assert_eq!(line("0.000005"), 3);
        assert_eq!(line("0.000025"), 4);
        assert_eq!(line("0.00005"), 5);
        assert_eq!(line("0.0001"), 6);
        assert_eq!(line("10"), 6);
        assert_eq!(line("+Inf"), 7);
        assert!(s.contains("x_seconds_count 7\n"), "{s}");
        let sum: f64 = s.lines().find_map(|l| l.strip_prefix("x_seconds_sum ")).unwrap().parse().unwrap();
        assert!((sum - 100.000_135_5).abs() < 1e-5, "sum {sum}");
        assert_eq!(h.count(), 7);
    }
}
