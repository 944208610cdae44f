//! Booking a stage when its inputs are (about to be) there: on its
//! reservation's key, or a key of its own; and what a finished stage
//! releases.

use super::{ExecAction, Execution, RunKey, StageState};
use crate::job::Job;
use crate::predict::Assignment;
use crate::view::FabricView;

impl Execution {
    /// When all of stage `s`'s inputs can be on node `to`.
    pub(super) fn inputs_ready(&self, job: &Job, view: &FabricView, s: usize, to: usize) -> f64 {
        let preds = &job.stages[s].predecessors;
        if preds.is_empty() {
            return self.submit + view.origin_latency(self.origin, to);
        }
        preds
            .iter()
            .map(|&p| self.stages[p].finish + view.transfer_ms(self.stages[p].at.node, to, job.stages[p].output_mb))
            .fold(f64::NEG_INFINITY, f64::max)
    }

    pub(super) fn book(
        &mut self,
        job: &Job,
        view: &FabricView,
        s: usize,
        at: Assignment,
        not_before: f64,
        out: &mut Vec<ExecAction>,
    ) {
        let ready = self.inputs_ready(job, view, s, at.node).max(not_before);
        let plan = self.plan;
        let st = &mut self.stages[s];
        st.attempt += 1;
        // The run booked against its reservation carries its key; a run
        // elsewhere gives the reservation back and takes a key of its own.
        st.run = match st.reservation.take() {
            Some((run, node)) if node == at.node => run,
            other => {
                if let Some((run, node)) = other {
                    out.push(ExecAction::Release {
                        key: RunKey { plan, stage: s as u16, attempt: run },
                        node,
                        at: ready,
                    });
                }
                st.issued += 1;
                st.issued
            }
        };
        let moved = st.at != at;
        st.at = at;
        st.tried.push(at.node);
        st.ready = ready;
        if moved || !st.dur.is_finite() {
            st.dur = view.compute_ms(at.node, &job.stages[s].compute, at.format);
        }
        st.state = StageState::Booking;
        st.start = f64::NAN;
        out.push(ExecAction::Book {
            key: RunKey { plan: self.plan, stage: s as u16, attempt: st.run },
            node: at.node,
            format: at.format,
            ready_at: ready,
        });
    }

    pub(super) fn release_successors(
        &mut self,
        job: &Job,
        view: &FabricView,
        s: usize,
        now: f64,
        out: &mut Vec<ExecAction>,
    ) {
        // Jobs are small (≤ 64 stages): a scan beats storing adjacency.
        for k in 0..job.stages.len() {
            if !job.stages[k].predecessors.contains(&s) {
                continue;
            }
            self.stages[k].pending -= 1;
            if self.stages[k].pending == 0 && self.stages[k].state == StageState::Waiting {
                let at = self.stages[k].at;
                self.book(job, view, k, at, now, out);
            }
        }
    }
}
