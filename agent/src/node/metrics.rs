//! The agent's counters for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters for `/metrics`.
#[derive(Default)]
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
    /// Stages moved ahead of a forecast failure.
    pub preemptive_migrations: AtomicU64,
    /// Plan latency histogram: bucket upper bounds in µs.
    pub plan_us_buckets: [AtomicU64; 10],
    /// Sum of plan latencies (µs).
    pub plan_us_sum: AtomicU64,
    /// Plans timed.
    pub plan_count: AtomicU64,
}

/// Upper bounds (µs) of the plan-latency buckets.
pub const PLAN_BUCKETS_US: [u64; 10] = [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, u64::MAX];

impl Metrics {
    pub(super) fn observe_plan(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let i = PLAN_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(PLAN_BUCKETS_US.len() - 1);
        self.plan_us_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.plan_us_sum.fetch_add(us, Ordering::Relaxed);
        self.plan_count.fetch_add(1, Ordering::Relaxed);
    }
}
