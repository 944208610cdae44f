//! Reservations: every stage's window, reserved with its node's owner (or,
//! with reservations off, predicted) from its predecessors' windows — the
//! committed prediction of a plan.

use super::{ExecAction, Execution, RunKey, StageState};
use crate::job::Job;
use crate::view::FabricView;

impl Execution {
    /// Reserves every successor of `s` whose predecessors' windows are all
    /// known, from the latest of their predicted ends plus the transfer;
    /// with reservations off, only predicts their windows.
    pub(super) fn reserve_after(&mut self, job: &Job, view: &FabricView, s: usize, out: &mut Vec<ExecAction>) {
        'next: for k in 0..job.stages.len() {
            if !job.stages[k].predecessors.contains(&s) || self.stages[k].window.is_some() {
                continue;
            }
            let st = &self.stages[k];
            if st.state != StageState::Waiting || st.attempt > 0 || st.reservation.is_some() {
                continue;
            }
            let mut ready = f64::NEG_INFINITY;
            for &p in &job.stages[k].predecessors {
                let Some((_, end)) = self.stages[p].window else { continue 'next };
                ready = ready.max(end + view.transfer_ms(self.stages[p].at.node, st.at.node, job.stages[p].output_mb));
            }
            let st = &mut self.stages[k];
            st.reserve_from = ready;
            if self.cfg.reserve {
                st.issued += 1;
                st.reservation = Some((st.issued, st.at.node));
                out.push(ExecAction::Reserve {
                    key: RunKey { plan: self.plan, stage: k as u16, attempt: st.issued },
                    node: st.at.node,
                    format: st.at.format,
                    ready_at: ready,
                    duration_ms: st.dur,
                });
            } else {
                st.window = Some((ready, ready + st.dur));
                self.reserve_after(job, view, k, out);
            }
        }
    }

    /// The job's predicted finish by its reserved windows (ms), once every
    /// stage's window is known: the committed prediction of its plan.
    pub fn reserved_finish(&self) -> Option<f64> {
        self.stages.iter().try_fold(self.submit, |m, st| st.window.map(|(_, e)| m.max(e)))
    }

    /// The run time (ms) predicted for stage `s`'s current run: what its
    /// node's owner books it for.
    pub fn predicted_ms(&self, s: usize) -> f64 {
        self.stages.get(s).map_or(f64::NAN, |st| st.dur)
    }

    /// Stage `s`'s reserved (or predicted) window, once known.
    pub fn window(&self, s: usize) -> Option<(f64, f64)> {
        self.stages.get(s)?.window
    }

    /// Stage `s`'s window while its owner holds a reservation for it on
    /// the node it is placed on: the room set aside for it there, which
    /// its node's published wait already counts.
    pub fn held_window(&self, s: usize) -> Option<(f64, f64)> {
        let st = self.stages.get(s)?;
        match st.reservation {
            Some((_, node)) if node == st.at.node => st.window,
            _ => None,
        }
    }
}
