//! A node's booked capacity over time: which stages hold how many cores
//! and how much memory, from when to when.
//!
//! The owner of a node books every stage placed on it here, so the node is
//! never given more than it has, whoever planned the stage. A stage starts
//! at the earliest time from its ready time at which its demand fits for
//! its whole run (earlier gaps are used when they fit: backfilling). Times
//! are absolute and in whatever unit the caller uses (fabric ms).

use serde::{Deserialize, Serialize};

/// One booked run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Booking {
    /// Start.
    pub start: f64,
    /// End.
    pub end: f64,
    /// Cores held.
    pub cpu: f64,
    /// Memory held (GB).
    pub mem_gb: f64,
}

/// The bookings of one node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeSchedule {
    /// Allocatable cores.
    pub cap_cpu: f64,
    /// Allocatable memory (GB).
    pub cap_mem_gb: f64,
    bookings: Vec<Booking>,
}

impl NodeSchedule {
    /// An empty schedule for a node of this size.
    pub fn new(cap_cpu: f64, cap_mem_gb: f64) -> Self {
        NodeSchedule { cap_cpu, cap_mem_gb, bookings: Vec::new() }
    }

    /// Cores and memory in use at instant `t`.
    fn usage_at(&self, t: f64) -> (f64, f64) {
        self.bookings
            .iter()
            .filter(|b| b.start <= t && t < b.end)
            .fold((0.0, 0.0), |(c, m), b| (c + b.cpu, m + b.mem_gb))
    }

    fn fits(&self, start: f64, end: f64, cpu: f64, mem: f64) -> bool {
        // Usage changes only at booking starts; check the window's start
        // and every booking start inside it.
        let ok = |t: f64| {
            let (c, m) = self.usage_at(t);
            c + cpu <= self.cap_cpu + 1e-9 && m + mem <= self.cap_mem_gb + 1e-9
        };
        ok(start) && self.bookings.iter().map(|b| b.start).filter(|&s| s > start && s < end).all(ok)
    }

    /// Books `duration` of `cpu`/`mem` at the earliest start ≥ `ready`
    /// where it fits; returns the booking. `None` if it can never fit.
    pub fn book(&mut self, ready: f64, duration: f64, cpu: f64, mem_gb: f64) -> Option<Booking> {
        if cpu > self.cap_cpu + 1e-9 || mem_gb > self.cap_mem_gb + 1e-9 {
            return None;
        }
        let mut candidates: Vec<f64> = vec![ready];
        candidates.extend(self.bookings.iter().map(|b| b.end).filter(|&e| e > ready));
        candidates.sort_by(f64::total_cmp);
        let start = candidates.into_iter().find(|&t| self.fits(t, t + duration, cpu, mem_gb))?;
        let b = Booking { start, end: start + duration, cpu, mem_gb };
        self.bookings.push(b);
        Some(b)
    }

    /// Gives back `b` from `at` on (a run that failed or was cancelled):
    /// its booking ends at `at`, or disappears if it had not started.
    /// Returns whether `b` was booked here.
    pub fn release(&mut self, b: &Booking, at: f64) -> bool {
        let Some(i) = self.bookings.iter().position(|x| x == b) else { return false };
        if at <= b.start {
            self.bookings.swap_remove(i);
        } else if at < b.end {
            self.bookings[i].end = at;
        }
        true
    }

    /// Highest cores in use at any instant within `[start, end)`.
    pub fn peak_cpu(&self, start: f64, end: f64) -> f64 {
        let mut peak = self.usage_at(start).0;
        for b in &self.bookings {
            if b.start > start && b.start < end {
                peak = peak.max(self.usage_at(b.start).0);
            }
        }
        peak
    }

    /// Cores and memory in use at `now` (running, not merely booked).
    pub fn used(&self, now: f64) -> (f64, f64) {
        self.usage_at(now)
    }

    /// Bookings that have not started by `now` (stages waiting for room or
    /// for their inputs).
    pub fn waiting(&self, now: f64) -> usize {
        self.bookings.iter().filter(|b| b.start > now).count()
    }

    /// Number of bookings held.
    pub fn len(&self) -> usize {
        self.bookings.len()
    }

    /// Whether nothing is booked.
    pub fn is_empty(&self) -> bool {
        self.bookings.is_empty()
    }

    /// Forgets bookings that ended before `now`.
    pub fn prune(&mut self, now: f64) {
        self.bookings.retain(|b| b.end > now);
    }

    /// Cores and memory held at `now`, counting bookings that have not
    /// started yet (placed work holds its node, as in Kubernetes).
    pub fn allocated(&self, now: f64) -> (f64, f64) {
        self.bookings.iter().filter(|b| b.end > now).fold((0.0, 0.0), |(c, m), b| (c + b.cpu, m + b.mem_gb))
    }

    /// Expected wait from `now` before the node has drained its booked
    /// work, treating its cores as one pool.
    pub fn backlog(&self, now: f64) -> f64 {
        let work: f64 = self.bookings.iter().filter(|b| b.end > now).map(|b| b.cpu * (b.end - b.start.max(now))).sum();
        work / self.cap_cpu.max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn waits_for_room_and_backfills_gaps() {
        let mut s = NodeSchedule::new(4.0, 16.0);
        assert_eq!(s.book(0.0, 100.0, 3.0, 1.0).unwrap().start, 0.0);
        // 2 more cores do not fit until the first run ends.
        assert_eq!(s.book(10.0, 50.0, 2.0, 1.0).unwrap().start, 100.0);
        // 1 core fits alongside right away.
        assert_eq!(s.book(20.0, 30.0, 1.0, 1.0).unwrap().start, 20.0);
        assert!(s.book(0.0, 1.0, 5.0, 1.0).is_none(), "bigger than the node");
        assert_eq!(s.allocated(30.0), (6.0, 3.0));
        // Remaining work at t = 50: 3×50 + 2×50 + 1×0 = 250 core-ms over 4 cores.
        assert!((s.backlog(50.0) - 62.5).abs() < 1e-9);
        s.prune(1000.0);
        assert_eq!(s.allocated(1000.0), (0.0, 0.0));
    }

    proptest! {
        #[test]
        fn never_overbooked(runs in proptest::collection::vec((0.0f64..100.0, 1.0f64..50.0, 0.5f64..4.0, 0.0f64..8.0), 1..30)) {
            let mut s = NodeSchedule::new(4.0, 8.0);
            let mut booked = Vec::new();
            for (ready, dur, cpu, mem) in runs {
                if let Some(b) = s.book(ready, dur, cpu, mem) {
                    prop_assert!(b.start >= ready);
                    booked.push(b);
                }
            }
            for b in &booked {
                let (c, m) = booked.iter().filter(|x| x.start <= b.start && b.start < x.end).fold((0.0, 0.0), |(c, m), x| (c + x.cpu, m + x.mem_gb));
                prop_assert!(c <= 4.0 + 1e-6 && m <= 8.0 + 1e-6, "overbooked at {}: {c} cores {m} GB", b.start);
            }
        }
    }
}
