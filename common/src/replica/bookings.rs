//! The bookings of the nodes this agent runs: the owner's discipline
//! ([`NodeSchedule::book`]), one booking per run, kept a while so a late or
//! repeated request finds it.

use super::Replica;
use crate::capacity::{Booking, NodeSchedule};
use crate::execution::{Refusal, RunKey};

impl Replica {
    /// Books a run on `node`, which this agent runs: `run_ms` from
    /// `ready_at` on, at the earliest start where it fits (the owner's
    /// discipline, [`NodeSchedule::book`]). A repeated request for the same
    /// run of the same job gets the same booking, never a second one.
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
        if let Some(owner) = self.yielded.get(node) {
            return Err(Refusal::Other(format!("node '{node}' is owned by agent '{owner}'")));
        }
        let k = (job.to_string(), key);
        if let Some((_, b)) = self.slots.get(&k) {
            return Ok(*b);
        }
        let history = self.cfg.booking_history_ms;
        let sched = self.schedules.entry(node.to_string()).or_insert_with(|| NodeSchedule::new(capacity.0, capacity.1));
        sched.cap_cpu = capacity.0;
        sched.cap_mem_gb = capacity.1;
        // Keep some history: a request may arrive after its ready time
        // (network delay), and must not be booked over a run that has
        // just ended in fabric time.
        sched.prune(now - history);
        let b = sched.book(ready_at, run_ms, demand.0, demand.1).ok_or(Refusal::DoesNotFit)?;
        if self.slots.len() > 4096 {
            self.slots.retain(|_, (_, b)| b.end > now - history);
        }
        self.slots.insert(k, (node.to_string(), b));
        Ok(b)
    }

    /// Gives back a run's booking from `at` on.
    pub fn release(&mut self, job: &str, key: RunKey, at: f64) -> bool {
        let Some((node, b)) = self.slots.get(&(job.to_string(), key)).cloned() else { return false };
        let released = self.schedules.get_mut(&node).is_some_and(|s| s.release(&b, at));
        if let Some(slot) = self.slots.get_mut(&(job.to_string(), key)) {
            slot.1.end = slot.1.end.min(at.max(b.start));
        }
        released
    }

    /// Cores and memory held on `node` at `now` and its backlog (ms).
    pub fn load(&self, node: &str, now: f64) -> (f64, f64, f64) {
        self.schedules.get(node).map_or((0.0, 0.0, 0.0), |s| {
            let (c, m) = s.allocated(now);
            (c, m, s.backlog(now))
        })
    }
}
