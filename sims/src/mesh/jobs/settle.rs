//! A peer lost and back: runs on its nodes failed over after the grace,
//! and the jobs planned on both sides settled (`common::lifecycle`'s
//! `owner_lost` and `Reconciling`, `common::reconcile`'s rule).

use twinmesh_common::execution::{ExecEvent, RunKey};
use twinmesh_common::lifecycle::{self, Decision, Hint, ReconcileInput, ReconcileOutput, Reconciling};
use twinmesh_common::liveness::{PeerState, Transition};
use twinmesh_common::reconcile::{self, PlannedCopy};

use super::{JobEv, Mesh};

impl Mesh {
    /// Agent `i`'s failure detector changed its mind about `t.peer`: runs
    /// it planned on that peer's nodes fail over once the grace has passed
    /// with the peer still unreachable.
    pub(in crate::mesh) fn peer_changed(&mut self, i: usize, t: &Transition, now: f64) {
        if t.to == PeerState::Alive || (self.args.jobs_per_s <= 0.0 && self.script.is_none()) {
            if t.to == PeerState::Alive && t.from != PeerState::Alive {
                self.reconcile(i, ReconcileInput::PeerBack { peer: t.peer.clone() }, now);
            }
            return;
        }
        let Some(&j) = self.index.get(&t.peer) else { return };
        self.schedule(now + self.lifecycle.failover_grace_ms, JobEv::Grace { agent: i as u32, peer: j });
    }

    pub(in crate::mesh) fn grace(&mut self, i: usize, j: usize, now: f64) {
        let Some(v) = self.replicas[i].liveness().view(&self.names[j]) else { return };
        if lifecycle::owner_lost(&self.lifecycle, v.state == PeerState::Alive, v.since, now).is_none() {
            return;
        }
        for k in 0..self.jobs.len() {
            if self.jobs[k].planner != Some(i as u32) || self.jobs[k].finals > 0 {
                continue;
            }
            let lost: Vec<RunKey> =
                self.jobs[k].running.iter().filter(|(_, o)| *o as usize == j).map(|(key, _)| *key).collect();
            for key in lost {
                self.jobs[k].running.retain(|(x, _)| *x != key);
                self.failed_over += 1;
                let (job, stage) = (self.jobs[k].id.clone(), self.jobs[k].job.stages[key.stage as usize].id.clone());
                self.decide(i, now, Decision::FailOver { job, stage, owner: self.names[j].clone() });
                self.exec_event(k, ExecEvent::Failed { key }, now);
            }
        }
    }

    /// Feeds agent `i`'s reconciliations and carries out what they decide.
    pub(in crate::mesh) fn reconcile(&mut self, i: usize, input: ReconcileInput, now: f64) {
        let mut out = Vec::new();
        let cfg = self.lifecycle.clone();
        self.reconciling.entry(i as u32).or_insert_with(|| Reconciling::new(&cfg)).handle(input, now, &mut out);
        for o in out {
            match o {
                ReconcileOutput::Timer { peer, at } => {
                    let Some(&j) = self.index.get(&peer) else { continue };
                    self.schedule(at, JobEv::ReconcileDue { agent: i as u32, peer: j });
                }
                ReconcileOutput::Exchange { peer, timeout_ms, hints, .. } => {
                    let Some(&j) = self.index.get(&peer) else { continue };
                    self.decide(i, now, Decision::Reconcile { peer: peer.clone() });
                    if self.planned[i] == 0 && hints.is_empty() {
                        // Nothing planned here: nothing to tell (the agent
                        // sends no message either).
                        self.schedule(now, JobEv::Exchanged { agent: i as u32, peer: j, answered: true, hints });
                        continue;
                    }
                    let back = self
                        .deliver(i, j as usize, now, 128, false)
                        .and_then(|at| self.deliver(j as usize, i, at, 128, false));
                    let (at, answered) = match back {
                        Some(b) if b <= now + timeout_ms => (b, true),
                        _ => (now + timeout_ms, false),
                    };
                    self.schedule(at, JobEv::Exchanged { agent: i as u32, peer: j, answered, hints });
                }
                ReconcileOutput::GaveUp { .. } => {}
            }
        }
    }

    /// Agent `j` was told `hints`: it settles at once with each planner of
    /// a job it planned too.
    pub(in crate::mesh) fn told(&mut self, j: usize, hints: &[Hint], now: f64) {
        for h in hints {
            let Some(&x) = self.index.get(&h.planner) else { continue };
            let mine =
                self.jobs.iter().any(|c| c.id == h.job && c.planner == Some(j as u32) && c.superseded_by.is_none());
            if x as usize != j && mine {
                self.reconcile(j, ReconcileInput::Told { peer: h.planner.clone() }, now);
            }
        }
    }

    /// Agents `i` and `j` exchanged what they planned: every job both
    /// planned keeps one copy (`common::reconcile`), the other stops.
    pub(in crate::mesh) fn settle(&mut self, i: usize, j: usize, now: f64) {
        let copy = |m: &Mesh, k: usize| -> Option<PlannedCopy> {
            let c = &m.jobs[k];
            let p = c.planner? as usize;
            let origin = m.latency.index_of(&c.job.origin.cluster)?;
            (c.superseded_by.is_none() && (p == i || p == j)).then(|| PlannedCopy {
                id: c.id.clone(),
                planner: m.names[p].clone(),
                origin_ms: m.latency.latency(m.cluster[p], origin),
                accepted_at_ms: c.planned_at.max(0.0) as u64,
            })
        };
        // Every job with a second copy: its live copies planned by `i` and
        // by `j`, if both have one.
        let mut originals: Vec<usize> = self.copies.iter().filter_map(|&c| self.jobs[c].copy_of).collect();
        originals.sort_unstable();
        originals.dedup();
        for k in originals {
            let group =
                std::iter::once(k).chain(self.copies.iter().copied().filter(|&c| self.jobs[c].copy_of == Some(k)));
            let live: Vec<(usize, PlannedCopy)> = group.filter_map(|g| copy(self, g).map(|p| (g, p))).collect();
            let (Some((x, a)), Some((y, b))) = (
                live.iter().find(|(_, p)| p.planner == self.names[i]).cloned(),
                live.iter().find(|(_, p)| p.planner == self.names[j]).cloned(),
            ) else {
                continue;
            };
            let (loser, winner) = if reconcile::keeps(&a, &b) { (y, &a) } else { (x, &b) };
            let by = self.index[&winner.planner];
            let l = &mut self.jobs[loser];
            l.superseded_by = Some(by);
            l.running.clear();
            l.asked.clear();
            self.superseded += 1;
            let (p, id) = (l.planner.expect("planned") as usize, l.id.clone());
            self.decide(p, now, Decision::Superseded { job: id, by: winner.planner.clone() });
        }
    }
}
