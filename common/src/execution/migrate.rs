//! Moving a stage before trouble — the preemptive counterpart of failover,
//! driven by [`crate::preempt`]'s decisions.

use super::{ExecAction, Execution, StageState};
use crate::job::Job;
use crate::predict::Assignment;
use crate::view::{FabricView, OriginIdx};

/// Where one stage stands, for forecasts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StageProgress {
    /// Its state.
    pub state: StageState,
    /// Its current placement.
    pub at: Assignment,
    /// When its inputs are on its node (ms; meaningful once booked).
    pub ready: f64,
    /// Booked start (ms; NaN until booked).
    pub start: f64,
    /// Finish (ms; NaN until it finished).
    pub finish: f64,
}

impl Execution {
    /// Stage `s`'s placement and times.
    pub fn timing(&self, s: usize) -> StageProgress {
        let st = &self.stages[s];
        StageProgress { state: st.state, at: st.at, ready: st.ready, start: st.start, finish: st.finish }
    }

    /// Stage `s`'s shadow placement, if the plan gave it one.
    pub fn shadow_of(&self, s: usize) -> Option<Assignment> {
        self.stages.get(s)?.shadow
    }

    /// Stages of the job.
    pub fn stage_count(&self) -> usize {
        self.stages.len()
    }

    /// When the job was submitted (ms).
    pub fn submitted(&self) -> f64 {
        self.submit
    }

    /// Where its inputs come from.
    pub fn origin(&self) -> OriginIdx {
        self.origin
    }

    /// When stage `s`'s inputs could be on node `to` (ms; for a stage whose
    /// predecessors have not all finished, from their placements' predicted
    /// finishes is the caller's business — this is NaN then).
    pub fn inputs_ready_on(&self, job: &Job, view: &FabricView, s: usize, to: usize) -> f64 {
        if job.stages[s].predecessors.iter().any(|&p| self.stages[p].state != StageState::Done) {
            return f64::NAN;
        }
        self.inputs_ready(job, view, s, to)
    }

    /// Moves stage `s` to `to` ahead of a forecast failure of its node.
    /// A stage waiting for its predecessors gets a new placement; a booked
    /// one gives its booking back and asks `to` for one — when it was
    /// already running, that is a restart: the work done so far is lost
    /// (its energy counted). A move is an attempt but not a failure: it
    /// does not count against `max_attempts`. A stage being booked, done
    /// or abandoned, or one with a replica running, does not move. Returns whether the stage moved.
    pub fn migrate(
        &mut self,
        job: &Job,
        view: &FabricView,
        now: f64,
        s: usize,
        to: Assignment,
        out: &mut Vec<ExecAction>,
    ) -> bool {
        if self.done || s >= self.stages.len() || self.stages[s].at.node == to.node || self.stages[s].replica.is_some()
        {
            return false;
        }
        if !view.hosts(to.node, &job.stages[s].compute) || !view.nodes.runtimes[to.node].contains(to.format) {
            return false;
        }
        let key = self.key(s);
        let st = &mut self.stages[s];
        match st.state {
            StageState::Waiting => {
                st.at = to;
                st.moves += 1;
                let dur = view.compute_ms(to.node, &job.stages[s].compute, to.format);
                st.dur = dur;
                // Its reservation moves with it (ranked as new there).
                if let Some((run, node)) = st.reservation.take() {
                    let from = st.reserve_from;
                    out.push(ExecAction::Release { key: super::RunKey { attempt: run, ..key }, node, at: now });
                    st.issued += 1;
                    st.reservation = Some((st.issued, to.node));
                    out.push(ExecAction::Reserve {
                        key: super::RunKey { attempt: st.issued, ..key },
                        node: to.node,
                        format: to.format,
                        ready_at: from,
                        duration_ms: dur,
                    });
                }
                true
            }
            StageState::Booked => {
                let (from, start) = (st.at.node, st.start);
                self.spent(job, view, s, from, start, now);
                let st = &mut self.stages[s];
                out.push(ExecAction::Release { key, node: from, at: now });
                st.state = StageState::Waiting;
                st.moves += 1;
                st.migrations += 1;
                self.book(job, view, s, to, now, out);
                true
            }
            _ => false,
        }
    }

    fn key(&self, s: usize) -> super::RunKey {
        super::RunKey { plan: self.plan, stage: s as u16, attempt: self.stages[s].run }
    }
}
