//! Hot replicas — the second preemptive action: a copy of a booked stage
//! run on another node while the first goes on, asked for by
//! [`crate::preempt`] when the stage's node is forecast to fail and idle
//! capacity can take the copy. The first run to finish wins and the other
//! is given back; if one fails, the other carries on with no failover
//! delay. A replica is booked with its node's owner like any run, so it is
//! in the twin and nobody else books its capacity.

use super::{ExecAction, ExecEvent, Execution, RunKey, StageState};
use crate::job::Job;
use crate::predict::Assignment;
use crate::view::FabricView;

/// A replica running beside a stage's current run.
#[derive(Clone, Copy, Debug)]
pub(super) struct Replica {
    pub(super) at: Assignment,
    /// Its key number (`RunKey::attempt`).
    pub(super) run: u16,
    pub(super) state: StageState,
    pub(super) ready: f64,
    pub(super) start: f64,
}

impl Execution {
    /// Starts a hot replica of stage `s` on `to` now. Only a booked stage
    /// (running or about to) without a replica gets one, on another node
    /// that can host it. Returns whether the replica was asked for.
    pub fn replicate(
        &mut self,
        job: &Job,
        view: &FabricView,
        now: f64,
        s: usize,
        to: Assignment,
        out: &mut Vec<ExecAction>,
    ) -> bool {
        if self.done || s >= self.stages.len() {
            return false;
        }
        let st = &self.stages[s];
        if st.state != StageState::Booked || st.replica.is_some() || st.at.node == to.node {
            return false;
        }
        if !view.hosts(to.node, &job.stages[s].compute) || !view.nodes.runtimes[to.node].contains(to.format) {
            return false;
        }
        let ready = self.inputs_ready(job, view, s, to.node).max(now);
        let st = &mut self.stages[s];
        st.issued += 1;
        st.replicas += 1;
        st.replica = Some(Replica { at: to, run: st.issued, state: StageState::Booking, ready, start: f64::NAN });
        let key = RunKey { plan: self.plan, stage: s as u16, attempt: st.issued };
        out.push(ExecAction::Book { key, node: to.node, format: to.format, ready_at: ready });
        true
    }

    /// Where stage `s`'s replica is, if it has one.
    pub fn replica_of(&self, s: usize) -> Option<Assignment> {
        self.stages.get(s)?.replica.map(|r| r.at)
    }

    /// Energy and wasted core-ms of a run of stage `s` on `node` cut short
    /// at `now` (nothing if it had not started).
    pub(super) fn spent(&mut self, job: &Job, view: &FabricView, s: usize, node: usize, start: f64, now: f64) {
        let ran = (now - start).max(0.0);
        if ran.is_finite() && ran > 0.0 {
            let c = &job.stages[s].compute;
            self.energy += view.energy_j(node, c, ran);
            self.wasted += c.cpu * ran;
        }
    }

    /// Handles an event about a replica run; returns whether it was one
    /// and nothing more is to be done. A replica that finishes becomes the
    /// stage's run (the other is given back) and its finish goes on as the
    /// stage's.
    pub(super) fn replica_event(
        &mut self,
        job: &Job,
        view: &FabricView,
        now: f64,
        ev: &ExecEvent,
        out: &mut Vec<ExecAction>,
    ) -> bool {
        let key = match ev {
            ExecEvent::Booked { key, .. }
            | ExecEvent::Refused { key, .. }
            | ExecEvent::Finished { key }
            | ExecEvent::Failed { key } => *key,
            ExecEvent::Cancel | ExecEvent::Reserved { .. } => return false,
        };
        let s = key.stage as usize;
        let Some(r) = self.stages.get(s).and_then(|st| st.replica) else { return false };
        if key.plan != self.plan || key.attempt != r.run {
            return false;
        }
        match ev {
            ExecEvent::Booked { start, .. } => {
                let r = self.stages[s].replica.as_mut().expect("checked");
                r.state = StageState::Booked;
                r.start = *start;
            }
            // The current run goes on alone.
            ExecEvent::Refused { .. } => self.stages[s].replica = None,
            ExecEvent::Failed { .. } => {
                self.spent(job, view, s, r.at.node, r.start, now);
                out.push(ExecAction::Release { key, node: r.at.node, at: now });
                self.stages[s].replica = None;
            }
            ExecEvent::Finished { .. } => {
                // The replica won: the other run is given back, and the
                // replica's finish is the stage's.
                let st = &self.stages[s];
                if matches!(st.state, StageState::Booked | StageState::Booking) {
                    let (node, start) = (st.at.node, st.start);
                    out.push(ExecAction::Release {
                        key: RunKey { plan: self.plan, stage: s as u16, attempt: st.run },
                        node,
                        at: now,
                    });
                    self.spent(job, view, s, node, start, now);
                }
                self.adopt(s);
                return false;
            }
            ExecEvent::Cancel | ExecEvent::Reserved { .. } => unreachable!("returned above"),
        }
        true
    }

    /// The stage's run finished first: its replica is given back.
    pub(super) fn drop_replica(&mut self, job: &Job, view: &FabricView, s: usize, now: f64, out: &mut Vec<ExecAction>) {
        if let Some(r) = self.stages[s].replica {
            self.spent(job, view, s, r.at.node, r.start, now);
        }
        self.drop_replica_quietly(s, now, out);
    }

    /// Gives stage `s`'s replica back (the job ended), if it has one.
    pub(super) fn drop_replica_quietly(&mut self, s: usize, now: f64, out: &mut Vec<ExecAction>) {
        if let Some(r) = self.stages[s].replica.take() {
            let key = RunKey { plan: self.plan, stage: s as u16, attempt: r.run };
            out.push(ExecAction::Release { key, node: r.at.node, at: now });
        }
    }

    /// The stage's run failed or was refused: its replica, if any, becomes
    /// its run — no failover delay. Returns whether there was one.
    pub(super) fn promote_replica(&mut self, s: usize) -> bool {
        if self.stages[s].replica.is_none() {
            return false;
        }
        self.adopt(s);
        true
    }

    fn adopt(&mut self, s: usize) {
        let st = &mut self.stages[s];
        let r = st.replica.take().expect("a replica to adopt");
        st.at = r.at;
        st.run = r.run;
        st.state = r.state;
        st.ready = r.ready;
        st.start = r.start;
        st.tried.push(r.at.node);
    }
}
