//! A node's booked capacity over time: which stages hold how many cores
//! and how much memory, from when to when.
//!
//! The owner of a node books every stage placed on it here, so the node is
//! never given more than it has, whoever planned the stage. A stage starts
//! at the earliest time from its ready time at which its demand fits for
//! its whole run (earlier gaps are used when they fit: backfilling). Times
//! are absolute and in whatever unit the caller uses (fabric ms).

use std::collections::BTreeMap;

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
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSchedule {
    /// Allocatable cores.
    pub cap_cpu: f64,
    /// Allocatable memory (GB).
    pub cap_mem_gb: f64,
    bookings: Vec<Booking>,
    /// The usage profile: at each instant where usage changes, by how
    /// much (cores, GB) — kept in time order as bookings come and go, so
    /// finding room is one walk, not a sort per booking.
    profile: BTreeMap<u64, (f64, f64)>,
}

/// Orders f64 times as u64 keys (total order, negatives first).
fn key(t: f64) -> u64 {
    let b = t.to_bits();
    if b >> 63 == 0 { b | (1 << 63) } else { !b }
}

fn time_of(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

impl NodeSchedule {
    /// An empty schedule for a node of this size.
    pub fn new(cap_cpu: f64, cap_mem_gb: f64) -> Self {
        NodeSchedule { cap_cpu, cap_mem_gb, bookings: Vec::new(), profile: BTreeMap::new() }
    }

    fn change(&mut self, t: f64, cpu: f64, mem: f64) {
        let e = self.profile.entry(key(t)).or_insert((0.0, 0.0));
        e.0 += cpu;
        e.1 += mem;
        if e.0.abs() < 1e-12 && e.1.abs() < 1e-12 {
            self.profile.remove(&key(t));
        }
    }

    fn add(&mut self, b: &Booking) {
        self.change(b.start, b.cpu, b.mem_gb);
        self.change(b.end, -b.cpu, -b.mem_gb);
    }

    fn remove(&mut self, b: &Booking) {
        self.change(b.start, -b.cpu, -b.mem_gb);
        self.change(b.end, b.cpu, b.mem_gb);
    }

    /// Cores and memory in use at instant `t`.
    fn usage_at(&self, t: f64) -> (f64, f64) {
        self.bookings
            .iter()
            .filter(|b| b.start <= t && t < b.end)
            .fold((0.0, 0.0), |(c, m), b| (c + b.cpu, m + b.mem_gb))
    }

    /// Books `duration` of `cpu`/`mem` at the earliest start ≥ `ready`
    /// where it fits; returns the booking. `None` if it can never fit.
    ///
    /// One walk over the node's usage profile (a step function that
    /// changes at bookings' starts and ends, kept in order): linear in the
    /// changes up to the slot found, so an owner with thousands of queued
    /// stages still books in microseconds.
    pub fn book(&mut self, ready: f64, duration: f64, cpu: f64, mem_gb: f64) -> Option<Booking> {
        if cpu > self.cap_cpu + 1e-9 || mem_gb > self.cap_mem_gb + 1e-9 {
            return None;
        }
        self.book_with_peak(ready, duration, cpu, mem_gb).map(|(b, _)| b)
    }

    /// As [`NodeSchedule::book`], with the highest number of cores in use
    /// during the booked run, the run included (what the DES checks
    /// capacity with), found on the same walk.
    pub fn book_with_peak(&mut self, ready: f64, duration: f64, cpu: f64, mem_gb: f64) -> Option<(Booking, f64)> {
        if cpu > self.cap_cpu + 1e-9 || mem_gb > self.cap_mem_gb + 1e-9 {
            return None;
        }
        let (start, peak) = self.earliest_fit(ready, duration, cpu, mem_gb);
        let b = Booking { start, end: start + duration, cpu, mem_gb };
        self.bookings.push(b);
        self.add(&b);
        Some((b, peak + cpu))
    }

    /// The earliest `t ≥ ready` such that `cpu`/`mem` more fit at every
    /// instant of `[t, t + duration)`. Usage at an instant counts the
    /// bookings with `start ≤ t < end`. Also the highest cores in use
    /// (before this booking) within that window.
    fn earliest_fit(&self, ready: f64, duration: f64, cpu: f64, mem: f64) -> (f64, f64) {
        let fits = |c: f64, m: f64| c + cpu <= self.cap_cpu + 1e-9 && m + mem <= self.cap_mem_gb + 1e-9;
        let (mut used_cpu, mut used_mem) = (0.0, 0.0);
        // Usage at `ready`: every change at or before it.
        let mut later = self.profile.range(key(ready)..).peekable();
        for (_, (c, m)) in self.profile.range(..key(ready)) {
            used_cpu += c;
            used_mem += m;
        }
        if let Some(&(&k, &(c, m))) = later.peek()
            && time_of(k) == ready
        {
            used_cpu += c;
            used_mem += m;
            later.next();
        }
        // Walk the segments of constant usage; `run` is the start of the
        // current stretch where the demand fits.
        let mut run = fits(used_cpu, used_mem).then_some(ready);
        let mut peak = used_cpu;
        let mut last = ready;
        for (&k, &(c, m)) in later {
            let t = time_of(k);
            if let Some(r) = run
                && t - r >= duration
            {
                return (r, peak);
            }
            used_cpu += c;
            used_mem += m;
            last = t;
            if fits(used_cpu, used_mem) {
                if run.is_none() {
                    run = Some(t);
                    peak = used_cpu;
                } else {
                    peak = peak.max(used_cpu);
                }
            } else {
                run = None;
            }
        }
        // After the last change nothing is booked: it fits from there on.
        match run {
            Some(r) => (r, peak),
            None => (last, 0.0),
        }
    }

    /// Gives back `b` from `at` on (a run that failed or was cancelled):
    /// its booking ends at `at`, or disappears if it had not started.
    /// Returns whether `b` was booked here.
    pub fn release(&mut self, b: &Booking, at: f64) -> bool {
        let Some(i) = self.bookings.iter().position(|x| x == b) else { return false };
        if at <= b.start {
            self.bookings.swap_remove(i);
            self.remove(b);
        } else if at < b.end {
            self.remove(b);
            self.bookings[i].end = at;
            let shorter = self.bookings[i];
            self.add(&shorter);
        }
        true
    }

    /// Highest cores in use at any instant within `[start, end)` (the
    /// straightforward scan the tests check the booking walk's peak with).
    #[cfg(test)]
    fn peak_cpu(&self, start: f64, end: f64) -> f64 {
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
        let mut gone = Vec::new();
        self.bookings.retain(|b| {
            let keep = b.end > now;
            if !keep {
                gone.push(*b);
            }
            keep
        });
        for b in &gone {
            self.remove(b);
        }
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

    /// The rule as first written: try `ready` and every booking's end, in
    /// order; the first window where every instant fits wins.
    fn reference_start(s: &NodeSchedule, ready: f64, d: f64, cpu: f64, mem: f64) -> f64 {
        let ok = |t: f64| {
            let (c, m) = s.usage_at(t);
            c + cpu <= s.cap_cpu + 1e-9 && m + mem <= s.cap_mem_gb + 1e-9
        };
        let fits = |t: f64| ok(t) && s.bookings.iter().map(|b| b.start).filter(|&x| x > t && x < t + d).all(ok);
        let mut candidates: Vec<f64> = vec![ready];
        candidates.extend(s.bookings.iter().map(|b| b.end).filter(|&e| e > ready));
        candidates.sort_by(f64::total_cmp);
        candidates.into_iter().find(|&t| fits(t)).expect("fits once everything ended")
    }

    proptest! {
        // Rule: the sweep books exactly where the straightforward rule does
        // (whole-number times, so ties between starts and ends happen).
        #[test]
        fn sweep_equals_the_reference_rule(
            runs in proptest::collection::vec((0u32..60, 1u32..30, 1u32..5, 0u32..9, 0u8..6, 0u32..100), 1..40)
        ) {
            let mut s = NodeSchedule::new(4.0, 8.0);
            let mut held = Vec::new();
            for (ready, dur, cpu, mem, op, at) in runs {
                let (ready, dur, cpu, mem) = (f64::from(ready), f64::from(dur), f64::from(cpu), f64::from(mem));
                // Now and then a run is given back early, or old ones pruned:
                // the kept profile must follow.
                match op {
                    0 if !held.is_empty() => {
                        let b: Booking = held.swap_remove(at as usize % held.len());
                        prop_assert!(s.release(&b, f64::from(at)));
                        if f64::from(at) > b.start && f64::from(at) < b.end {
                            held.push(Booking { end: f64::from(at), ..b });
                        } else if f64::from(at) >= b.end {
                            held.push(b);
                        }
                    }
                    1 => {
                        s.prune(f64::from(at) / 2.0);
                        held.retain(|b| b.end > f64::from(at) / 2.0);
                    }
                    _ => {}
                }
                let want = reference_start(&s, ready, dur, cpu, mem);
                let (b, peak) = s.book_with_peak(ready, dur, cpu, mem).unwrap();
                prop_assert_eq!(b.start, want);
                prop_assert!((peak - s.peak_cpu(b.start, b.end)).abs() < 1e-9, "peak {} vs {}", peak, s.peak_cpu(b.start, b.end));
                held.push(b);
            }
        }

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
