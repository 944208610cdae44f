//! Jobs in the many-agent simulator, through the agent's own code: the
//! job protocol is `common::lifecycle` — the machines the agent drives —
//! and only the network and the clock are the simulator's.
//!
//! A job is submitted to a random agent, whose [`Forwarding`] routes it
//! ([`Replica::route`]) and forwards it over the simulated network to the
//! planner, trying the next agent when one is silent past its timeout and
//! planning it where it was submitted when none answers. The planner plans
//! with the greedy policy on its [`Replica::planning_view`] (with its own
//! holds counted, `common::inflight`) and runs it with [`Execution`]; every
//! booking is a [`Booking`] with the node's owner — asked again while the
//! owner is silent, each wait twice the last — whose replica books it
//! ([`Replica::book`]) with the ground truth's run time. A run whose
//! owner the planner has held unreachable for the failover grace fails
//! over ([`lifecycle::owner_lost`]); a forward that went unanswered is
//! settled later by [`Reconciling`] exchanges.
//!
//! Not modelled: a forward that arrived but whose answer was lost is
//! planned by the submitter only (the agents would plan it on both sides
//! and reconciliation would stop one copy); the simulator counts those
//! (`late_forwards`) and the exchanges that settle them.
//!
//! [`Replica::route`]: twinmesh_common::replica::Replica::route
//! [`Replica::planning_view`]: twinmesh_common::replica::Replica::planning_view
//! [`Replica::book`]: twinmesh_common::replica::Replica::book

use std::sync::Arc;

use rand::RngExt;
use twinmesh_common::execution::{ExecAction, ExecConfig, ExecEvent, Execution, Placed, Refusal, RunKey, placed};
use twinmesh_common::job::Job;
use twinmesh_common::lifecycle::{
    self, Booking, ForwardInput, ForwardOutput, Forwarding, Hop, ReconcileInput, ReconcileOutput, Reconciling,
};
use twinmesh_common::liveness::{PeerState, Transition};
use twinmesh_common::policy::{Policy, PolicyConfig};
use twinmesh_common::view::FabricView;
use twinmesh_common::wire::{self, JobHandoff, Message};

use super::{Ev, Mesh};

mod booking;

/// What happens to a job, at a time of the event queue.
pub(super) enum JobEv {
    /// A forwarded job reaches its planner.
    Arrives { job: usize, at: usize },
    /// The planner's answer to a forward reaches the submitter.
    ForwardAnswered(usize),
    /// A forward's answer did not come in time.
    ForwardSilent(usize),
    /// A booking request reaches the node's owner.
    BookAt { job: usize, key: RunKey, node: usize, owner: usize, ready_at: f64 },
    /// The owner's answer reaches the planner.
    Answer { job: usize, key: RunKey, attempt: u32, booked: Result<(f64, f64), Refusal> },
    /// A booking's answer did not come in time.
    BookingSilent { job: usize, key: RunKey, attempt: u32 },
    /// A run booked to start later reaches its start: the planner asks
    /// its owner again (it may have been pushed).
    Confirm { job: usize, key: RunKey },
    /// A run ends.
    RunEnds { job: usize, key: RunKey },
    /// The failover grace after `agent` held `peer` unreachable.
    Grace { agent: u32, peer: u32 },
    /// A reconciliation timer of `agent` for `peer`.
    ReconcileDue { agent: u32, peer: u32 },
    /// A reconciliation exchange of `agent` with `peer` ended.
    Exchanged { agent: u32, peer: u32, answered: bool },
}

/// One booking request in flight.
pub(super) struct Asked {
    key: RunKey,
    machine: Booking,
    attempt: u32,
    node: usize,
    owner: usize,
    ready_at: f64,
    /// The owner's answer, once it came.
    answer: Option<Result<(f64, f64), Refusal>>,
}

/// One simulated job.
pub(super) struct SimJob {
    id: String,
    job: Job,
    submitted_to: u32,
    forwarding: Option<Forwarding>,
    planner: Option<u32>,
    exec: Option<Execution>,
    view: Option<Arc<FabricView>>,
    /// Bookings asked and not yet answered (or given up).
    asked: Vec<Asked>,
    /// Runs booked and not ended: (run, owner agent).
    running: Vec<(RunKey, u32)>,
    /// Final states reached (exactly one, or the run was cut short).
    pub finals: u8,
    pub failed: bool,
    pub latency_ms: f64,
    pub forwarded: bool,
    pub fell_back: bool,
}

/// A small three-stage pipeline from `cluster`, its run times `scale`
/// times 0.3 s, 0.9 s and 0.1 s.
fn document(name: &str, cluster: &str, node: Option<&str>, scale: f64) -> String {
    let node = node.map_or(String::new(), |n| format!(r#", "node": "{n}""#));
    let (a, b, c) = (300.0 * scale, 900.0 * scale, 100.0 * scale);
    let deadline = 60_000.0 * scale.max(1.0);
    format!(
        r#"{{"apiVersion":"twinmesh.io/v1","metadata":{{"name":"{name}","deadline_ms":{deadline},"origin":{{"cluster":"{cluster}"{node}}}}},"spec":{{"stages":[
        {{"id":"ingest","compute":{{"cpu":1,"mem_gb":0.5,"duration_ms":{a}}},"output_mb":5}},
        {{"id":"work","compute":{{"cpu":2,"mem_gb":1,"duration_ms":{b}}},"predecessor":"ingest","output_mb":1}},
        {{"id":"report","compute":{{"cpu":0.5,"mem_gb":0.25,"duration_ms":{c}}},"predecessor":"work"}}]}}}}"#
    )
}

impl Mesh {
    /// Queues a job event at `at`.
    pub(super) fn schedule(&mut self, at: f64, ev: JobEv) {
        let slot = match self.free_job_events.pop() {
            Some(i) => {
                self.job_events[i as usize] = Some(ev);
                i
            }
            None => {
                self.job_events.push(Some(ev));
                (self.job_events.len() - 1) as u32
            }
        };
        self.queue.push(at, Ev::Job(slot));
    }

    /// Carries out a job event.
    pub(super) fn job_event(&mut self, ev: JobEv, now: f64) {
        match ev {
            JobEv::Arrives { job, at } => self.plan_job(job, at, now),
            JobEv::ForwardAnswered(job) => self.forward_input(job, ForwardInput::Answered, now),
            JobEv::ForwardSilent(job) => {
                self.forward_input(job, ForwardInput::Failed { why: "no answer in time".into() }, now);
            }
            JobEv::BookAt { job, key, node, owner, ready_at } => self.book_at(job, key, node, owner, ready_at, now),
            JobEv::Answer { job, key, attempt, booked } => self.answered(job, key, attempt, booked, now),
            JobEv::BookingSilent { job, key, attempt } => self.silent(job, key, attempt, now),
            JobEv::Confirm { job, key } => self.confirm(job, key, now),
            JobEv::RunEnds { job, key } => {
                if !self.jobs[job].running.iter().any(|(k, _)| *k == key) {
                    return; // failed over meanwhile
                }
                self.jobs[job].running.retain(|(k, _)| *k != key);
                self.exec_event(job, ExecEvent::Finished { key }, now);
            }
            JobEv::Grace { agent, peer } => self.grace(agent as usize, peer as usize, now),
            JobEv::ReconcileDue { agent, peer } => {
                let peer = self.names[peer as usize].clone();
                self.reconcile(agent as usize, ReconcileInput::Due { peer }, now);
            }
            JobEv::Exchanged { agent, peer, answered } => {
                let peer = self.names[peer as usize].clone();
                let input = if answered { ReconcileInput::Answered { peer } } else { ReconcileInput::Failed { peer } };
                if answered && self.planned[agent as usize] > 0 {
                    self.reconciliations += 1;
                }
                self.reconcile(agent as usize, input, now);
            }
        }
    }

    /// A job arrives at a random agent, which routes it.
    pub(super) fn submit_job(&mut self, now: f64) {
        let n = self.args.agents;
        let k = self.jobs.len();
        let i = self.rng.random_range(0..n);
        let c = self.rng.random_range(0..self.latency.len());
        let cluster = self.latency.names()[c].clone();
        let node = self.owner_in(c);
        let text = document(&format!("sim-{k:06}"), &cluster, node.as_deref(), self.args.job_scale);
        let job = twinmesh_common::spec::parse_job(&text).expect("the simulator's job document is valid");
        let mut out = Vec::new();
        let forwarding = Forwarding::new(&self.lifecycle, &self.names[i], None, &mut out);
        self.jobs.push(SimJob {
            id: format!("sim-{k:06}"),
            job,
            submitted_to: i as u32,
            forwarding: Some(forwarding),
            planner: None,
            exec: None,
            view: None,
            asked: Vec::new(),
            running: Vec::new(),
            finals: 0,
            failed: false,
            latency_ms: f64::NAN,
            forwarded: false,
            fell_back: false,
        });
        self.forward_outputs(k, out, now);
    }

    fn forward_input(&mut self, k: usize, input: ForwardInput, now: f64) {
        let mut out = Vec::new();
        let Some(f) = self.jobs[k].forwarding.as_mut() else { return };
        f.handle(input, now, &mut out);
        self.forward_outputs(k, out, now);
    }

    /// Carries out what job `k`'s forwarding decided, at the agent it was
    /// submitted to.
    fn forward_outputs(&mut self, k: usize, out: Vec<ForwardOutput>, now: f64) {
        let i = self.jobs[k].submitted_to as usize;
        for o in out {
            match o {
                ForwardOutput::Route { skip } => {
                    let origin = self.jobs[k].job.origin.clone();
                    let hop = self.replicas[i]
                        .route(&origin, &self.latency, &skip)
                        .map(|r| Hop { rtt_timeout_ms: self.replicas[i].timeout_for(&r.agent), agent: r.agent });
                    self.forward_input(k, ForwardInput::Routed(hop), now);
                }
                ForwardOutput::Forward { to, timeout_ms } => self.forward(k, i, &to, timeout_ms, now),
                ForwardOutput::PlanHere { .. } => {
                    self.jobs[k].fell_back = self.jobs[k].forwarded;
                    self.plan_job(k, i, now);
                }
                ForwardOutput::LateForward { peer } => self.reconcile(i, ReconcileInput::LateForward { peer }, now),
                ForwardOutput::Forwarded { .. } => {}
            }
        }
    }

    /// Sends job `k` from agent `i` to `to`: planned there if it arrives
    /// and its answer comes back within `timeout_ms`.
    fn forward(&mut self, k: usize, i: usize, to: &str, timeout_ms: f64, now: f64) {
        let Some(&j) = self.index.get(to) else {
            return self.schedule(now, JobEv::ForwardSilent(k));
        };
        let j = j as usize;
        if self.jobs[k].forwarded {
            self.forward_retries += 1;
        }
        self.jobs[k].forwarded = true;
        let msg = Message::Forward(JobHandoff {
            id: self.jobs[k].id.clone(),
            document: document(
                &self.jobs[k].id,
                &self.jobs[k].job.origin.cluster,
                self.jobs[k].job.origin.node.as_deref(),
                self.args.job_scale,
            ),
            policy: "greedy".into(),
            dry_run: false,
            submitted_to: self.names[i].clone(),
        });
        let bytes = wire::encode(&msg).len();
        let arrives = self.deliver(i, j, now, bytes, false);
        // The planner answers with its record (about as large again).
        let back = arrives.and_then(|at| self.deliver(j, i, at, bytes, false));
        match (arrives, back) {
            (Some(at), Some(back)) if back <= now + timeout_ms => {
                self.schedule(at, JobEv::Arrives { job: k, at: j });
                self.schedule(back, JobEv::ForwardAnswered(k));
            }
            (arrived, _) => {
                if arrived.is_some() {
                    self.late_forwards += 1;
                }
                self.schedule(now + timeout_ms, JobEv::ForwardSilent(k));
            }
        }
    }

    /// An owner agent with a node in cluster `c`, if any (the origin node).
    fn owner_in(&mut self, c: usize) -> Option<String> {
        let owners: Vec<usize> = (0..self.owners).filter(|&o| self.cluster[o] == c).collect();
        (!owners.is_empty()).then(|| self.names[owners[self.rng.random_range(0..owners.len())]].clone())
    }

    /// Agent `p` plans job `k` on its replica's view and starts it.
    pub(super) fn plan_job(&mut self, k: usize, p: usize, now: f64) {
        if self.jobs[k].planner.is_some() {
            return;
        }
        self.jobs[k].planner = Some(p as u32);
        self.planned[p] += 1;
        let mut view = match self.replicas[p].planning_view(&self.fabric, now as u64) {
            Ok(v) => v,
            Err(_) => return self.finish(k, true),
        };
        self.inflight[p].expire(now);
        self.inflight[p].apply(&mut view, now);
        let view = Arc::new(view);
        let job = &self.jobs[k].job;
        let plan = match Policy::Greedy.plan(&view, job, &PolicyConfig::default()) {
            Ok(p) => p,
            Err(_) => return self.finish(k, true),
        };
        let Some(origin) = view.origin(job) else { return self.finish(k, true) };
        let Ok(Placed { assign, shadow, digest }) = placed(&view, &self.jobs[k].id, &plan) else {
            return self.finish(k, true);
        };
        // Held in the planner's view until their owners show them.
        for (pl, t) in plan.placements.iter().zip(&plan.predicted.stages) {
            let c =
                job.stages.iter().find(|s| s.id == pl.stage).map_or((0.0, 0.0), |s| (s.compute.cpu, s.compute.mem_gb));
            let until = lifecycle::plan_hold_until(&self.lifecycle, now, t.start_ms, 1.0);
            self.inflight[p].reserve(&pl.node, &format!("{}/{}", self.jobs[k].id, pl.stage), c.0, c.1, until);
        }
        let mut exec = Execution::new(job, origin, &assign, &shadow, digest, now, ExecConfig::default());
        let mut out = Vec::new();
        exec.start(job, &view, &mut out);
        self.jobs[k].exec = Some(exec);
        self.jobs[k].view = Some(view);
        self.exec_actions(k, out, now);
    }

    /// Carries out what job `k`'s execution decided.
    fn exec_actions(&mut self, k: usize, out: Vec<ExecAction>, now: f64) {
        let Some(p) = self.jobs[k].planner.map(|p| p as usize) else { return };
        let view = self.jobs[k].view.clone().expect("planned");
        for a in out {
            match a {
                ExecAction::Book { key, node, ready_at, .. } => self.ask_booking(k, p, &view, key, node, ready_at, now),
                ExecAction::Reserve { key, node, ready_at, duration_ms, .. } => {
                    self.reserve(k, p, &view, key, node, ready_at, duration_ms, now);
                }
                ExecAction::Release { key, node, at } => {
                    let owner = self.index.get(&view.nodes.name[node]).copied().unwrap_or(p as u32) as usize;
                    if self.deliver(p, owner, now, 64, false).is_some() {
                        let id = self.jobs[k].id.clone();
                        self.replicas[owner].release(&id, key, at);
                    }
                }
                ExecAction::Done => {
                    let o = self.jobs[k].exec.as_ref().expect("running").outcome();
                    self.jobs[k].latency_ms = o.latency_ms;
                    self.finish(k, o.failed);
                }
            }
        }
    }

    /// An execution event for job `k` (stale or late ones are ignored by
    /// the execution itself).
    pub(super) fn exec_event(&mut self, k: usize, ev: ExecEvent, now: f64) {
        let (Some(mut exec), Some(view)) = (self.jobs[k].exec.take(), self.jobs[k].view.clone()) else { return };
        let mut out = Vec::new();
        exec.handle(&self.jobs[k].job, &view, now, ev, &mut out);
        self.jobs[k].exec = Some(exec);
        self.exec_actions(k, out, now);
    }

    /// Agent `i`'s failure detector changed its mind about `t.peer`: runs
    /// it planned on that peer's nodes fail over once the grace has passed
    /// with the peer still unreachable.
    pub(super) fn peer_changed(&mut self, i: usize, t: &Transition, now: f64) {
        if t.to == PeerState::Alive || self.args.jobs_per_s <= 0.0 {
            if t.to == PeerState::Alive && t.from != PeerState::Alive {
                self.reconcile(i, ReconcileInput::PeerBack { peer: t.peer.clone() }, now);
            }
            return;
        }
        let Some(&j) = self.index.get(&t.peer) else { return };
        self.schedule(now + self.lifecycle.failover_grace_ms, JobEv::Grace { agent: i as u32, peer: j });
    }

    fn grace(&mut self, i: usize, j: usize, now: f64) {
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
                self.exec_event(k, ExecEvent::Failed { key }, now);
            }
        }
    }

    /// Feeds agent `i`'s reconciliations and carries out what they decide.
    fn reconcile(&mut self, i: usize, input: ReconcileInput, now: f64) {
        let mut out = Vec::new();
        let cfg = self.lifecycle.clone();
        self.reconciling.entry(i as u32).or_insert_with(|| Reconciling::new(&cfg)).handle(input, now, &mut out);
        for o in out {
            match o {
                ReconcileOutput::Timer { peer, at } => {
                    let Some(&j) = self.index.get(&peer) else { continue };
                    self.schedule(at, JobEv::ReconcileDue { agent: i as u32, peer: j });
                }
                ReconcileOutput::Exchange { peer, timeout_ms, .. } => {
                    let Some(&j) = self.index.get(&peer) else { continue };
                    if self.planned[i] == 0 {
                        // Nothing planned here: nothing to tell (the agent
                        // sends no message either).
                        self.schedule(now, JobEv::Exchanged { agent: i as u32, peer: j, answered: true });
                        continue;
                    }
                    let back = self
                        .deliver(i, j as usize, now, 128, false)
                        .and_then(|at| self.deliver(j as usize, i, at, 128, false));
                    let (at, answered) = match back {
                        Some(b) if b <= now + timeout_ms => (b, true),
                        _ => (now + timeout_ms, false),
                    };
                    self.schedule(at, JobEv::Exchanged { agent: i as u32, peer: j, answered });
                }
                ReconcileOutput::GaveUp { .. } => {}
            }
        }
    }

    fn finish(&mut self, k: usize, failed: bool) {
        let j = &mut self.jobs[k];
        j.finals += 1;
        j.failed = failed;
    }
}
