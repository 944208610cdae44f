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
//! A forward that arrives late, or whose answer is lost, is planned on
//! both ends, as with the agents: a second copy ([`SimJob::copy_of`]),
//! settled by reconciliation (the copy farther from the origin stops; a
//! silent agent is told who planned the job instead, [`lifecycle::Hint`]).
//! A job's outcome is its copy that stays.
//!
//! A scripted scenario (`super::scenario`) lists the decisions made, as
//! the agents log them.
//!
//! [`Replica::route`]: twinmesh_common::replica::Replica::route
//! [`Replica::planning_view`]: twinmesh_common::replica::Replica::planning_view
//! [`Replica::book`]: twinmesh_common::replica::Replica::book

use std::sync::Arc;

use rand::RngExt;
use twinmesh_common::execution::{ExecAction, ExecConfig, ExecEvent, Execution, Placed, Refusal, RunKey, placed};
use twinmesh_common::job::Job;
use twinmesh_common::lifecycle::{
    self, Booking, Decision, ForwardInput, ForwardOutput, Forwarding, Hint, Hop, ReconcileInput,
};
use twinmesh_common::policy::{Policy, PolicyConfig};
use twinmesh_common::view::FabricView;
use twinmesh_common::wire::{self, JobHandoff, Message};

use super::{Ev, Mesh};

mod booking;
mod settle;

/// What happens to a job, at a time of the event queue.
pub(super) enum JobEv {
    /// A forwarded job reaches its planner.
    Arrives { job: usize, at: usize },
    /// The answer of agent `from` to a forward reaches the submitter.
    ForwardAnswered { job: usize, from: u32 },
    /// A forward's timeout passed (answered or not).
    ForwardSilent { job: usize, to: u32 },
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
    /// A reconciliation exchange of `agent` with `peer` ended (`hints`:
    /// what it told of other agents' copies).
    Exchanged { agent: u32, peer: u32, answered: bool, hints: Vec<Hint> },
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
    pub(super) forwarding: Option<Forwarding>,
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
    /// A second plan of a job (a forward planned on both ends): the
    /// job's index.
    pub copy_of: Option<usize>,
    /// Stopped by reconciliation: the planner whose copy stays.
    pub superseded_by: Option<u32>,
    /// When it was planned (ms).
    planned_at: f64,
}

impl SimJob {
    fn new(id: String, job: Job, submitted_to: u32, forwarding: Option<Forwarding>) -> Self {
        SimJob {
            id,
            job,
            submitted_to,
            forwarding,
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
            copy_of: None,
            superseded_by: None,
            planned_at: f64::NAN,
        }
    }
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

    /// The agent that handles `ev` (a paused one holds it).
    pub(super) fn actor(&self, ev: &Ev) -> Option<usize> {
        let job_actor = |e: &JobEv| -> Option<usize> {
            let planner = |k: usize| self.jobs[k].planner.map(|p| p as usize);
            match *e {
                JobEv::Arrives { at, .. } => Some(at),
                JobEv::ForwardAnswered { job, .. } | JobEv::ForwardSilent { job, .. } => {
                    Some(self.jobs[job].submitted_to as usize)
                }
                JobEv::BookAt { owner, .. } => Some(owner),
                JobEv::Answer { job, .. }
                | JobEv::BookingSilent { job, .. }
                | JobEv::Confirm { job, .. }
                | JobEv::RunEnds { job, .. } => planner(job),
                JobEv::Grace { agent, .. } | JobEv::ReconcileDue { agent, .. } | JobEv::Exchanged { agent, .. } => {
                    Some(agent as usize)
                }
            }
        };
        match *ev {
            Ev::Tick(i) | Ev::Update(i) => Some(i as usize),
            Ev::Gossip { to, .. } | Ev::Request { to, .. } | Ev::Response { to, .. } => Some(to as usize),
            Ev::Timeout { at, .. } => Some(at as usize),
            Ev::Job(slot) => self.job_events[slot as usize].as_ref().and_then(job_actor),
            Ev::Submit | Ev::Step => None,
        }
    }

    /// Carries out a job event.
    pub(super) fn job_event(&mut self, ev: JobEv, now: f64) {
        match ev {
            JobEv::Arrives { job, at } => self.arrives(job, at, now),
            JobEv::ForwardAnswered { job, from } => {
                if self.waits_on(job, from) {
                    self.forward_input(job, ForwardInput::Answered, now);
                }
            }
            JobEv::ForwardSilent { job, to } => {
                if self.waits_on(job, to) {
                    if self.jobs[job].planner == Some(to) {
                        self.late_forwards += 1; // planned there, its answer lost
                    }
                    let i = self.jobs[job].submitted_to as usize;
                    let (id, to) = (self.jobs[job].id.clone(), self.names[to as usize].clone());
                    self.decide(i, now, Decision::Unanswered { job: id, to });
                    self.forward_input(job, ForwardInput::Failed { why: "no answer in time".into() }, now);
                }
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
            JobEv::Exchanged { agent, peer, answered, hints } => {
                if answered && self.planned[agent as usize] > 0 {
                    self.reconciliations += 1;
                    self.settle(agent as usize, peer as usize, now);
                }
                if answered {
                    self.told(peer as usize, &hints, now);
                }
                let peer = self.names[peer as usize].clone();
                let input = if answered { ReconcileInput::Answered { peer } } else { ReconcileInput::Failed { peer } };
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
        self.jobs.push(SimJob::new(format!("sim-{k:06}"), job, i as u32, Some(forwarding)));
        self.forward_outputs(k, out, now);
    }

    /// A scripted job document submitted to agent `i` (its id: its name);
    /// its index.
    pub(super) fn submit_scripted(&mut self, i: usize, text: &str, now: f64) -> usize {
        let k = self.jobs.len();
        let job = match twinmesh_common::spec::parse_job(text) {
            Ok(j) => j,
            Err(e) => panic!("a scenario's job document is invalid: {e}"),
        };
        let mut out = Vec::new();
        let forwarding = Forwarding::new(&self.lifecycle, &self.names[i], None, &mut out);
        self.jobs.push(SimJob::new(job.name.clone(), job, i as u32, Some(forwarding)));
        self.forward_outputs(k, out, now);
        k
    }

    /// Whether job `k`'s submitter still waits on agent `j`'s answer.
    fn waits_on(&self, k: usize, j: u32) -> bool {
        self.jobs[k].forwarding.as_ref().and_then(|f| f.waiting_on()) == Some(self.names[j as usize].as_str())
    }

    /// A forwarded job reaches agent `j`, which plans it (a second copy if
    /// the submitter gave up on the forward and planned it itself) and
    /// answers.
    fn arrives(&mut self, k: usize, j: usize, now: f64) {
        let i = self.jobs[k].submitted_to as usize;
        let (id, from) = (self.jobs[k].id.clone(), self.names[i].clone());
        if !self.waits_on(k, j as u32) {
            self.late_forwards += 1;
        }
        self.decide(j, now, Decision::PlanHere { job: id, from: Some(from) });
        self.plan_copy(k, j, now);
        if let Some(at) = self.deliver(j, i, now, 1024, false) {
            self.schedule(at, JobEv::ForwardAnswered { job: k, from: j as u32 });
        }
    }

    /// Agent `p` plans job `k`: the job itself if nobody planned it yet,
    /// else a copy of its own (settled later by reconciliation).
    fn plan_copy(&mut self, k: usize, p: usize, now: f64) {
        match self.jobs[k].planner {
            None => self.plan_job(k, p, now),
            Some(q) if q as usize == p => {}
            Some(_) => {
                if self
                    .copies
                    .iter()
                    .any(|&c| self.jobs[c].copy_of == Some(k) && self.jobs[c].planner == Some(p as u32))
                {
                    return;
                }
                let (id, job, at) = (self.jobs[k].id.clone(), self.jobs[k].job.clone(), self.jobs[k].submitted_to);
                let mut copy = SimJob::new(id, job, at, None);
                copy.copy_of = Some(k);
                self.jobs.push(copy);
                self.copies.push(self.jobs.len() - 1);
                self.duplicates += 1;
                self.plan_job(self.jobs.len() - 1, p, now);
            }
        }
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
                ForwardOutput::Forward { to, timeout_ms } => {
                    self.decide(i, now, Decision::Forward { job: self.jobs[k].id.clone(), to: to.clone() });
                    self.forward(k, i, &to, timeout_ms, now);
                }
                ForwardOutput::PlanHere { .. } => {
                    self.jobs[k].fell_back = self.jobs[k].forwarded;
                    self.decide(i, now, Decision::PlanHere { job: self.jobs[k].id.clone(), from: None });
                    self.plan_copy(k, i, now);
                    self.submission_answered(k, now);
                }
                ForwardOutput::LateForward { peer, planned_by } => {
                    let hint = planned_by.map(|planner| Hint { job: self.jobs[k].id.clone(), planner });
                    self.reconcile(i, ReconcileInput::LateForward { peer, hint }, now);
                }
                ForwardOutput::Forwarded { .. } => self.submission_answered(k, now),
            }
        }
    }

    /// Sends job `k` from agent `i` to `to`: planned there if it arrives
    /// (answered if its answer comes back within `timeout_ms`; planned on
    /// both ends if not, until reconciled).
    fn forward(&mut self, k: usize, i: usize, to: &str, timeout_ms: f64, now: f64) {
        let Some(&j) = self.index.get(to) else {
            return self.forward_input(k, ForwardInput::Failed { why: format!("{to} is unknown") }, now);
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
        if let Some(at) = self.deliver(i, j, now, bytes, false) {
            self.schedule(at, JobEv::Arrives { job: k, at: j });
        }
        self.schedule(now + timeout_ms, JobEv::ForwardSilent { job: k, to: j as u32 });
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
        self.jobs[k].planned_at = now;
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
                    let owner = self.owner_of(&view, node, p);
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
        let (Some(mut exec), Some(planned)) = (self.jobs[k].exec.take(), self.jobs[k].view.clone()) else { return };
        // Read in the planner's view as it is now (as the agent's driver
        // does): a node whose owner is out of reach is not moved to.
        let view = self.jobs[k].planner.and_then(|p| self.current_view(p as usize, now)).unwrap_or(planned);
        let mut out = Vec::new();
        exec.handle(&self.jobs[k].job, &view, now, ev, &mut out);
        self.jobs[k].exec = Some(exec);
        self.exec_actions(k, out, now);
    }

    /// Agent `p`'s planning view now, its own placements in flight counted.
    fn current_view(&mut self, p: usize, now: f64) -> Option<Arc<FabricView>> {
        let mut view = self.replicas[p].planning_view(&self.fabric, now as u64).ok()?;
        self.inflight[p].expire(now);
        self.inflight[p].apply(&mut view, now);
        Some(Arc::new(view))
    }

    /// Job `k`'s outcome: the copy of it that stays (`None` for a copy).
    pub(super) fn outcome(&self, k: usize) -> Option<&SimJob> {
        let j = &self.jobs[k];
        if j.copy_of.is_some() {
            return None;
        }
        let Some(w) = j.superseded_by else { return Some(j) };
        let copy = self.copies.iter().map(|&c| &self.jobs[c]).find(|c| c.copy_of == Some(k) && c.planner == Some(w));
        Some(copy.unwrap_or(j))
    }

    fn finish(&mut self, k: usize, failed: bool) {
        let j = &mut self.jobs[k];
        j.finals += 1;
        j.failed = failed;
    }
}
