//! Peers as this agent sees them, and reconciling the jobs planned on both
//! sides of a partition when a peer comes back (`common::reconcile`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{info, warn};
use twinmesh_common::lifecycle::{self, ReconcileInput, ReconcileOutput};
use twinmesh_common::liveness::PeerView;
use twinmesh_common::reconcile::{PlannedCopy, verdicts};
use twinmesh_common::record::{JobRecord, JobState};
use twinmesh_common::spec;
use twinmesh_common::wire::Message;

use super::{Agent, lock, now_ms};

impl Agent {
    /// Connected peer agents.
    pub fn peers(&self) -> Vec<String> {
        self.lock().replica.connected().map(String::from).collect()
    }

    /// What the failure detector believes of every peer.
    pub fn liveness(&self) -> Vec<(String, PeerView)> {
        self.lock().replica.liveness().peers().map(|(n, v)| (n.to_string(), v.clone())).collect()
    }

    /// Per peer: did its twin match this one at the last check, and when.
    pub fn sync_checks(&self) -> Vec<(String, bool, f64)> {
        self.lock().replica.checks().map(|(p, same, at)| (p.to_string(), same, at)).collect()
    }

    /// The partition epoch: changes of the set of reachable peers.
    pub fn partition_epoch(&self) -> u64 {
        self.lock().replica.liveness().epoch()
    }

    /// Why job `job`'s run of `stage` on `node` should fail over: its
    /// owner (another agent) has been suspect or dead for longer than the
    /// failover grace. `Some` is the decision to fail it over (logged).
    pub fn owner_lost(&self, job: &str, stage: &str, node: &str) -> Option<String> {
        // Checked every 200 ms per running stage: one look-up, no copies.
        let (owner, v) = {
            let st = self.lock();
            let owner = st.replica.owner_of(node);
            if owner == self.cfg.name {
                return None;
            }
            let v = st.replica.liveness().view(&owner)?.clone();
            (owner, v)
        };
        let alive = v.state == twinmesh_common::liveness::PeerState::Alive;
        lifecycle::owner_lost(&self.cfg.lifecycle, alive, v.since, now_ms() as f64).map(|gone| {
            self.decide(lifecycle::Decision::FailOver { job: job.into(), stage: stage.into(), owner: owner.clone() });
            format!(
                "the agent of node {node} ({owner}) has been {} for {:.1} s ({})",
                v.state.as_str(),
                gone / 1000.0,
                v.reason
            )
        })
    }

    /// Latency (ms) from this agent's cluster to the origin cluster of a
    /// job; infinite when either is unknown.
    fn origin_ms(&self, j: &JobRecord) -> f64 {
        let lat = &self.cfg.fabric.latency;
        let origin = spec::parse_job(&j.document).ok().map(|job| job.origin.cluster);
        match (lat.index_of(&self.cfg.cluster), origin.and_then(|o| lat.index_of(&o))) {
            (Some(a), Some(b)) => lat.latency(a, b),
            _ => f64::INFINITY,
        }
    }

    /// The jobs this agent planned lately (not dry runs, not superseded).
    fn planned_copies(&self) -> Vec<PlannedCopy> {
        // Older duplicates (a partition longer than the window) are left
        // as they are.
        let since = now_ms().saturating_sub(self.cfg.lifecycle.reconcile_window_ms as u64);
        self.recent_jobs(self.cfg.retention.max_finished + self.cfg.retention.max_in_flight)
            .into_iter()
            .filter(|j| j.planner == self.cfg.name && !j.dry_run && j.state != JobState::Superseded)
            .filter(|j| j.accepted_at_ms >= since)
            .map(|j| PlannedCopy {
                origin_ms: self.origin_ms(&j),
                id: j.id,
                planner: j.planner,
                accepted_at_ms: j.accepted_at_ms,
            })
            .collect()
    }

    /// Feeds the reconciliation machine (`common::lifecycle::Reconciling`)
    /// and carries out what it decides: timers, exchanges, give-ups.
    pub(super) fn reconcile(self: &Arc<Self>, input: ReconcileInput) {
        let mut out = Vec::new();
        lock(&self.reconciling).handle(input, now_ms() as f64, &mut out);
        for o in out {
            let me = self.clone();
            match o {
                ReconcileOutput::Timer { peer, at } => {
                    tokio::spawn(async move {
                        let wait = (at - now_ms() as f64).max(0.0);
                        tokio::time::sleep(Duration::from_secs_f64(wait / 1000.0)).await;
                        me.reconcile(ReconcileInput::Due { peer });
                    });
                }
                ReconcileOutput::Exchange { peer, timeout_ms, attempt, hints } => {
                    self.decide(lifecycle::Decision::Reconcile { peer: peer.clone() });
                    tokio::spawn(async move {
                        let answered = me.exchange(&peer, timeout_ms, attempt, &hints).await;
                        me.reconcile(if answered {
                            ReconcileInput::Answered { peer }
                        } else {
                            ReconcileInput::Failed { peer }
                        });
                    });
                }
                ReconcileOutput::GaveUp { peer } => {
                    warn!(peer = %peer, "reconciliation: no answer (tried again when the peer next returns)");
                }
            }
        }
    }

    /// One exchange with `peer`: tell it which jobs this agent planned
    /// (and, as hints, which other agents planned jobs forwarded to it),
    /// and settle every job both planned. Whether it was answered.
    async fn exchange(self: &Arc<Self>, peer: &str, timeout_ms: f64, attempt: u32, hints: &[lifecycle::Hint]) -> bool {
        let mine = self.planned_copies();
        if mine.is_empty() && hints.is_empty() {
            return true;
        }
        // A hint is only a pointer (the peer settles with that planner
        // itself, copy against copy): no distance, no time.
        let told = hints.iter().map(|h| PlannedCopy {
            id: h.job.clone(),
            planner: h.planner.clone(),
            origin_ms: f64::INFINITY,
            accepted_at_ms: 0,
        });
        let sent: Vec<PlannedCopy> = mine.iter().cloned().chain(told).collect();
        let timeout = Duration::from_secs_f64(timeout_ms / 1000.0);
        match self.request(peer, Message::Planned(sent), timeout).await {
            Ok(Message::PlannedToo(theirs)) => {
                self.settle(&mine, &theirs).await;
                true
            }
            Ok(other) => {
                warn!(peer = %peer, answer = other.kind(), "reconciliation: unexpected answer");
                true
            }
            Err(e) => {
                tracing::debug!(peer = %peer, attempt, error = %e, "reconciliation: no answer yet");
                false
            }
        }
    }

    /// A peer told what it planned: answers with this agent's copies of
    /// the same ids and settles them (the peer applies the same rule to
    /// its own copies). Copies it names another planner for are hints:
    /// this agent settles with that planner, if it planned the job too.
    pub(super) fn on_planned(self: &Arc<Self>, from: Option<&str>, theirs: Vec<PlannedCopy>) -> Vec<PlannedCopy> {
        let (theirs, hints): (Vec<PlannedCopy>, Vec<PlannedCopy>) =
            theirs.into_iter().partition(|t| from.is_none_or(|f| t.planner == f));
        let planned = self.planned_copies();
        for h in &hints {
            if h.planner != self.cfg.name && planned.iter().any(|m| m.id == h.id) {
                self.reconcile(ReconcileInput::Told { peer: h.planner.clone() });
            }
        }
        let mine: Vec<PlannedCopy> = planned.into_iter().filter(|m| theirs.iter().any(|t| t.id == m.id)).collect();
        if !mine.is_empty() {
            let (me, shared) = (self.clone(), mine.clone());
            tokio::spawn(async move { me.settle(&shared, &theirs).await });
        }
        mine
    }

    /// Applies the rule to every job both sides planned: the winner notes
    /// it; the loser stops its run and marks its copy superseded.
    async fn settle(self: &Arc<Self>, mine: &[PlannedCopy], theirs: &[PlannedCopy]) {
        for (m, t, keep) in verdicts(mine, theirs) {
            if keep {
                let note = format!(
                    "reconciled after a partition: this plan stays; the copy {} planned ({:.0} ms from the origin, against {:.0} here) was stopped",
                    t.planner, t.origin_ms, m.origin_ms
                );
                // Both sides may start the exchange: settle once.
                let mut first = false;
                self.update_job(&m.id, |r| {
                    if !r.notes.contains(&note) {
                        r.notes.push(note);
                        first = true;
                    }
                })
                .await;
                if first {
                    self.metrics.reconciled[0].fetch_add(1, Ordering::Relaxed);
                    info!(job = %m.id, other = %t.planner, "reconciliation: this plan stays");
                }
                continue;
            }
            if self.job(&m.id).is_none_or(|r| r.state == JobState::Superseded) {
                continue;
            }
            let stopped = lock(&self.running).remove(&m.id);
            if let Some(task) = &stopped {
                task.abort();
            }
            warn!(job = %m.id, winner = %t.planner, stopped = stopped.is_some(), "reconciliation: superseded");
            let (winner, theirs_ms, mine_ms) = (t.planner.clone(), t.origin_ms, m.origin_ms);
            let mut first = false;
            self.update_job(&m.id, |r| {
                if r.state == JobState::Superseded {
                    return;
                }
                first = true;
                let what = match (stopped.is_some(), r.state) {
                    (true, _) => "its stages not yet finished here were stopped".to_string(),
                    (false, JobState::Succeeded) => "it had already run to the end here: a duplicate run".to_string(),
                    (false, s) => format!("it was {s:?} here"),
                };
                r.state = JobState::Superseded;
                r.notes.push(format!(
                    "reconciled after a partition: superseded by the plan of {winner} ({theirs_ms:.0} ms from the origin, against {mine_ms:.0} here); {what}"
                ));
            })
            .await;
            if first {
                self.metrics.reconciled[1].fetch_add(1, Ordering::Relaxed);
                self.decide(lifecycle::Decision::Superseded { job: m.id.clone(), by: t.planner.clone() });
            }
        }
    }
}
