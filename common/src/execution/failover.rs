//! The one failover rule (shadow → best untried node → backoff on a node
//! already tried), and giving a job up.

use super::{ExecAction, Execution, RunKey, StageState};
use crate::job::Job;
use crate::predict::Assignment;
use crate::view::{FabricView, allowed_by_arch};

impl Execution {
    /// The one failover rule: shadow, then the best untried node, then a
    /// backoff on a node already tried; out of attempts ⇒ the job fails.
    pub(super) fn fail_over(
        &mut self,
        job: &Job,
        view: &FabricView,
        s: usize,
        now: f64,
        why: String,
        out: &mut Vec<ExecAction>,
    ) {
        if self.stages[s].attempt - self.stages[s].migrations >= self.cfg.max_attempts {
            let why = format!("{why}; gave up after {} attempts", self.stages[s].attempt);
            self.abandon(now, why, out);
            return;
        }
        match self.next_node(job, view, s) {
            Some(at) => self.book(job, view, s, at, now + self.cfg.failover_delay_ms, out),
            None => {
                // Nothing untried can host it: wait, then the node tried
                // longest ago (it may be back).
                let node = self.stages[s].tried[0];
                let allowed = allowed_by_arch(&job.stages[s].constraints);
                let format = view.best_format(node, &allowed).map_or(self.stages[s].at.format, |(f, _)| f);
                self.stages[s].tried.rotate_left(1);
                self.stages[s].tried.pop();
                self.book(job, view, s, Assignment { node, format }, now + self.cfg.retry_backoff_ms, out);
            }
        }
    }

    /// The shadow if untried and usable, else the untried node where the
    /// stage would finish earliest (inputs, published wait, run time).
    pub fn next_node(&self, job: &Job, view: &FabricView, s: usize) -> Option<Assignment> {
        let st = &self.stages[s];
        let c = &job.stages[s].compute;
        if let Some(sh) = st.shadow {
            if !st.tried.contains(&sh.node) && view.hosts(sh.node, c) {
                return Some(sh);
            }
        }
        let allowed = allowed_by_arch(&job.stages[s].constraints);
        let mut best: Option<(Assignment, f64)> = None;
        for n in 0..view.nodes.len() {
            if st.tried.contains(&n) || !view.hosts(n, c) {
                continue;
            }
            let Some((format, _)) = view.best_format(n, &allowed) else { continue };
            let done = self.inputs_ready(job, view, s, n).max(view.wait_ms(n, c)) + view.compute_ms(n, c, format);
            if done.is_finite() && best.is_none_or(|(_, b)| done < b) {
                best = Some((Assignment { node: n, format }, done));
            }
        }
        best.map(|(a, _)| a)
    }

    pub(super) fn abandon(&mut self, now: f64, why: String, out: &mut Vec<ExecAction>) {
        if self.done {
            return;
        }
        for s in 0..self.stages.len() {
            self.drop_replica_quietly(s, now, out);
        }
        for (s, st) in self.stages.iter_mut().enumerate() {
            match st.state {
                StageState::Booked | StageState::Booking => {
                    out.push(ExecAction::Release {
                        key: RunKey { plan: self.plan, stage: s as u16, attempt: st.run },
                        node: st.at.node,
                        at: now,
                    });
                    st.state = StageState::Abandoned;
                }
                StageState::Waiting => {
                    if let Some((run, node)) = st.reservation.take() {
                        out.push(ExecAction::Release {
                            key: RunKey { plan: self.plan, stage: s as u16, attempt: run },
                            node,
                            at: now,
                        });
                    }
                    st.state = StageState::Abandoned
                }
                StageState::Done | StageState::Abandoned => {}
            }
        }
        self.error = Some(why);
        self.finish = now;
        self.done = true;
        out.push(ExecAction::Done);
    }
}
