//! The bookings of the nodes this agent runs: the owner's discipline
//! ([`NodeSchedule::reserve`] when a plan is committed,
//! [`NodeSchedule::book_run`] when a stage's inputs are there), one booking
//! per run, kept a while so a late or repeated request finds it.
//!
//! As in the DES, a run booked to start later stays movable until its
//! start (a late run ranked before it may push it, as it pushes
//! reservations); it is fixed once the owner's clock passes its start
//! ([`NodeSchedule::start_due`]). The planner asks again at the booked
//! start (a repeated request answers with the run's booking as it is
//! now), so it learns of a push before the run would have begun.

use super::Replica;
use crate::capacity::{Booking, NodeSchedule};
use crate::execution::{Refusal, RunKey};

/// The tag of a job's run in a node's schedule.
fn tag(job: &str, key: RunKey) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in job.bytes().chain(key.plan.to_le_bytes()).chain(key.stage.to_le_bytes()).chain(key.attempt.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h >> 1
}

impl Replica {
    /// Books a run on `node`, which this agent runs: `run_ms` from
    /// `ready_at` on, against its reservation if it has one, else at the
    /// earliest start where it fits (the owner's discipline,
    /// [`NodeSchedule::book_run`]). A repeated request for the same run of
    /// the same job gets the same booking, never a second one.
    #[allow(clippy::too_many_arguments)]
    pub fn book(
        &mut self,
        job: &str,
        key: RunKey,
        node: &str,
        capacity: (f64, f64),
        demand: (f64, f64),
        ready_at: f64,
        run_ms: f64,
        now: f64,
    ) -> Result<Booking, Refusal> {
        let k = (job.to_string(), key);
        if let Some(b) = self.confirm(job, key, now) {
            // Booked already: the same run, as it stands now (started, if
            // its start has come).
            return Ok(b);
        }
        self.schedule(node, capacity, now)?;
        self.settle(node, now);
        let sched = self.schedules.get_mut(node).expect("made by schedule");
        let t = tag(job, key);
        let r = sched.book_run(t, ready_at, run_ms, demand.0, demand.1).ok_or(Refusal::DoesNotFit)?;
        if r.booking.start <= now {
            sched.start(t);
        }
        // Reservations and runs not started that it pushed: the answers to
        // repeated requests follow.
        if !r.shifted.is_empty() {
            for ((j, key), slot) in self.slots.iter_mut().filter(|(_, s)| s.0 == node) {
                if let Some(x) = r.shifted.iter().find(|x| x.tag == tag(j, *key)) {
                    slot.1 = x.to;
                }
            }
        }
        self.remember(k, node, r.booking, false, now);
        Ok(r.booking)
    }

    /// Reserves a run on `node`, which this agent runs, for its predicted
    /// window: `run_ms` from the earliest fit at or after `ready_at`
    /// ([`NodeSchedule::reserve`]). A repeated request gets the same
    /// window; a run already booked answers with its booking.
    #[allow(clippy::too_many_arguments)]
    pub fn reserve(
        &mut self,
        job: &str,
        key: RunKey,
        node: &str,
        capacity: (f64, f64),
        demand: (f64, f64),
        ready_at: f64,
        run_ms: f64,
        now: f64,
    ) -> Result<Booking, Refusal> {
        let k = (job.to_string(), key);
        if let Some((_, b, _)) = self.slots.get(&k) {
            return Ok(*b);
        }
        self.schedule(node, capacity, now)?;
        self.settle(node, now);
        let sched = self.schedules.get_mut(node).expect("made by schedule");
        let b = sched.reserve(tag(job, key), ready_at, run_ms, demand.0, demand.1).ok_or(Refusal::DoesNotFit)?;
        self.remember(k, node, b, true, now);
        Ok(b)
    }

    /// The schedule of an owned node, sized as it is now, with old runs
    /// forgotten.
    fn schedule(&mut self, node: &str, capacity: (f64, f64), now: f64) -> Result<&mut NodeSchedule, Refusal> {
        if let Some(owner) = self.yielded.get(node) {
            return Err(Refusal::Other(format!("node '{node}' is owned by agent '{owner}'")));
        }
        let history = self.cfg.booking_history_ms;
        let sched = self.schedules.entry(node.to_string()).or_insert_with(|| NodeSchedule::new(capacity.0, capacity.1));
        sched.cap_cpu = capacity.0;
        sched.cap_mem_gb = capacity.1;
        // Keep some history: a request may arrive after its ready time
        // (network delay), and must not be booked over a run that has
        // just ended in fabric time. Reservations whose window ended that
        // long ago belong to jobs that are gone.
        sched.prune(now - history);
        sched.prune_reservations(now - history);
        Ok(sched)
    }

    /// Brings `node`'s schedule to `now`: reservations whose run is late
    /// slide with the clock, pushing what was planned after them
    /// ([`NodeSchedule::slide_overdue`]), and runs whose start has come
    /// start ([`NodeSchedule::start_due`]). The answers to repeated
    /// requests follow what moved.
    fn settle(&mut self, node: &str, now: f64) {
        let Some(sched) = self.schedules.get_mut(node) else { return };
        let moved = sched.slide_overdue(now);
        sched.start_due(now);
        if !moved.is_empty() {
            // Where each ended (one may move more than once).
            let last: std::collections::BTreeMap<u64, Booking> = moved.iter().map(|x| (x.tag, x.to)).collect();
            for ((j, key), slot) in self.slots.iter_mut().filter(|(_, s)| s.0 == node) {
                if let Some(to) = last.get(&tag(j, *key)) {
                    slot.1 = *to;
                }
            }
        }
    }

    fn remember(&mut self, k: (String, RunKey), node: &str, b: Booking, reserved: bool, now: f64) {
        let history = self.cfg.booking_history_ms;
        if self.slots.len() > 4096 {
            self.slots.retain(|_, (_, b, _)| b.end > now - history);
        }
        self.slots.insert(k, (node.to_string(), b, reserved));
    }

    /// A run's booking (or reservation) as it stands now.
    pub fn booking(&self, job: &str, key: RunKey) -> Option<Booking> {
        self.slots.get(&(job.to_string(), key)).map(|s| s.1)
    }

    /// A booked run's booking as it stands at `now`, its node's schedule
    /// brought to `now` first (started, if its start has come) — what a
    /// repeated booking request answers.
    pub fn confirm(&mut self, job: &str, key: RunKey, now: f64) -> Option<Booking> {
        let (node, _, reserved) = self.slots.get(&(job.to_string(), key)).cloned()?;
        if reserved {
            return None;
        }
        self.settle(&node, now);
        self.booking(job, key)
    }

    /// Gives back a run's booking (or reservation) from `at` on.
    pub fn release(&mut self, job: &str, key: RunKey, at: f64) -> bool {
        let Some((node, b, _)) = self.slots.get(&(job.to_string(), key)).cloned() else { return false };
        let released = self.schedules.get_mut(&node).is_some_and(|s| s.release_tag(tag(job, key), at));
        if let Some(slot) = self.slots.get_mut(&(job.to_string(), key)) {
            slot.1.end = slot.1.end.min(at.max(b.start));
        }
        released
    }

    /// Cores and memory held on `node` at `now` (reservations included)
    /// and its backlog (ms).
    pub fn load(&self, node: &str, now: f64) -> (f64, f64, f64) {
        self.schedules.get(node).map_or((0.0, 0.0, 0.0), |s| {
            let (c, m) = s.allocated(now);
            (c, m, s.backlog(now))
        })
    }
}
