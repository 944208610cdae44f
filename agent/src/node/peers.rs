//! Peers as this agent sees them, and reconciling the jobs planned on both
//! sides of a partition when a peer comes back (`common::reconcile`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{info, warn};
use twinmesh_common::liveness::PeerView;
use twinmesh_common::reconcile::{PlannedCopy, verdicts};
use twinmesh_common::record::{JobRecord, JobState};
use twinmesh_common::spec;
use twinmesh_common::wire::Message;

use super::{Agent, now_ms};

/// Jobs accepted this long ago or less are offered for reconciliation when
/// a peer comes back (a partition longer than this leaves older duplicates
/// as they are).
pub const RECONCILE_WINDOW: Duration = Duration::from_secs(3600);

/// How long after a forward timed out the agents settle: the forward's
/// own timeout (≤ 5 s) and planning there, with room to spare.
pub const LATE_FORWARD: Duration = Duration::from_secs(15);

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

    /// Why a run on `node` should fail over: its owner (another agent)
    /// has been suspect or dead for longer than the failover grace.
    pub fn owner_lost(&self, node: &str) -> Option<String> {
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
        let gone = now_ms() as f64 - v.since;
        (v.state.as_str() != "alive" && gone >= self.cfg.failover_grace.as_secs_f64() * 1000.0).then(|| {
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
        let since = now_ms().saturating_sub(RECONCILE_WINDOW.as_millis() as u64);
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

    /// `peer` is reachable again: tell it which jobs this agent planned,
    /// and settle every job both planned.
    pub(super) async fn reconcile_with(self: Arc<Self>, peer: String) {
        let mine = self.planned_copies();
        if mine.is_empty() {
            return;
        }
        // A peer is heard from again (through others) before its own
        // connection is back: asked again a few times, waiting longer.
        let mut wait = Duration::from_millis(250);
        for attempt in 1..=6 {
            match self.request(&peer, Message::Planned(mine.clone()), Duration::from_secs(10)).await {
                Ok(Message::PlannedToo(theirs)) => return self.settle(&mine, &theirs).await,
                Ok(other) => return warn!(peer = %peer, answer = other.kind(), "reconciliation: unexpected answer"),
                Err(e) if attempt == 6 => {
                    return warn!(peer = %peer, error = %e, "reconciliation: no answer (tried again when the peer next returns)");
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }

    /// Reconciles with `peer` in [`LATE_FORWARD`] (once, however many
    /// jobs asked): a forward to it that timed out may have been planned
    /// there as well as here.
    pub(super) fn reconcile_later(self: &Arc<Self>, peer: &str) {
        if !self.reconcile_due.lock().unwrap_or_else(|e| e.into_inner()).insert(peer.to_string()) {
            return;
        }
        let (me, peer) = (self.clone(), peer.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(LATE_FORWARD).await;
            me.reconcile_due.lock().unwrap_or_else(|e| e.into_inner()).remove(&peer);
            me.reconcile_with(peer).await;
        });
    }

    /// A peer told what it planned: answers with this agent's copies of
    /// the same ids and settles them (the peer applies the same rule to
    /// its own copies).
    pub(super) fn on_planned(self: &Arc<Self>, theirs: Vec<PlannedCopy>) -> Vec<PlannedCopy> {
        let mine: Vec<PlannedCopy> =
            self.planned_copies().into_iter().filter(|m| theirs.iter().any(|t| t.id == m.id)).collect();
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
            let stopped = self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&m.id);
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
            }
        }
    }
}
