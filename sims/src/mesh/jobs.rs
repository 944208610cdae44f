//! Jobs in the many-agent simulator, through the agent's own code: a job
//! is submitted to a random agent, routed by that agent's replica
//! ([`Replica::route`]) and forwarded over the simulated network to the
//! planner (or planned where it was submitted when the forward is lost),
//! planned with the greedy policy on the planner's
//! [`Replica::planning_view`], and run by [`Execution`] — every booking a
//! request to the node's owner, whose replica books it
//! ([`Replica::book`]) with the ground truth's run time. Lost requests
//! time out and are refused as unreachable, so the execution fails over
//! exactly as the agents' does.

use std::sync::Arc;

use rand::RngExt;
use twinmesh_common::execution::{ExecAction, ExecConfig, ExecEvent, Execution, Placed, Refusal, RunKey, placed};
use twinmesh_common::job::{Job, Origin};
use twinmesh_common::policy::{Policy, PolicyConfig};
use twinmesh_common::truth;
use twinmesh_common::view::FabricView;
use twinmesh_common::wire::{self, JobHandoff, Message, StageRun};

use super::{Ev, Mesh};

/// How long a planner waits for a forward's or a booking's answer (ms).
const ANSWER_TIMEOUT_MS: f64 = 2_000.0;

/// What happens to a job, at a time of the event queue.
pub(super) enum JobEv {
    /// A forwarded job reaches its planner.
    Arrives { job: usize, at: usize },
    /// A forward's answer did not come in time.
    ForwardLost(usize),
    /// A booking request reaches the node's owner.
    BookAt { job: usize, key: RunKey, node: usize, owner: usize, ready_at: f64 },
    /// The owner's answer reaches the planner.
    Answer { job: usize, key: RunKey, booked: Result<(f64, f64), Refusal> },
    /// A booking's answer did not come in time.
    BookingLost { job: usize, key: RunKey },
    /// A run ends.
    RunEnds { job: usize, key: RunKey },
}

/// One simulated job.
pub(super) struct SimJob {
    id: String,
    job: Job,
    submitted_to: u32,
    planner: Option<u32>,
    exec: Option<Execution>,
    view: Option<Arc<FabricView>>,
    /// Bookings asked and not yet answered (or timed out).
    waiting: Vec<RunKey>,
    /// Final states reached (exactly one, or the run was cut short).
    pub finals: u8,
    pub failed: bool,
    pub latency_ms: f64,
    pub forwarded: bool,
    pub fell_back: bool,
}

/// A small three-stage pipeline from `cluster`.
fn document(name: &str, cluster: &str, node: Option<&str>) -> String {
    let node = node.map_or(String::new(), |n| format!(r#", "node": "{n}""#));
    format!(
        r#"{{"apiVersion":"twinmesh.io/v1","metadata":{{"name":"{name}","deadline_ms":60000,"origin":{{"cluster":"{cluster}"{node}}}}},"spec":{{"stages":[
        {{"id":"ingest","compute":{{"cpu":1,"mem_gb":0.5,"duration_ms":300}},"output_mb":5}},
        {{"id":"work","compute":{{"cpu":2,"mem_gb":1,"duration_ms":900}},"predecessor":"ingest","output_mb":1}},
        {{"id":"report","compute":{{"cpu":0.5,"mem_gb":0.25,"duration_ms":100}},"predecessor":"work"}}]}}}}"#
    )
}

impl Mesh {
    /// Queues a job event at `at`.
    fn schedule(&mut self, at: f64, ev: JobEv) {
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
            JobEv::ForwardLost(job) => self.forward_lost(job, now),
            JobEv::BookAt { job, key, node, owner, ready_at } => self.book_at(job, key, node, owner, ready_at, now),
            JobEv::Answer { job, key, booked: Ok((start, end)) } => self.booked(job, key, start, end, now),
            JobEv::Answer { job, key, booked: Err(reason) } => {
                self.exec_event(job, ExecEvent::Refused { key, reason }, now);
            }
            JobEv::BookingLost { job, key } => self.booking_lost(job, key, now),
            JobEv::RunEnds { job, key } => self.exec_event(job, ExecEvent::Finished { key }, now),
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
        let text = document(&format!("sim-{k:06}"), &cluster, node.as_deref());
        let job = twinmesh_common::spec::parse_job(&text).expect("the simulator's job document is valid");
        self.jobs.push(SimJob {
            id: format!("sim-{k:06}"),
            job,
            submitted_to: i as u32,
            planner: None,
            exec: None,
            view: None,
            waiting: Vec::new(),
            finals: 0,
            failed: false,
            latency_ms: f64::NAN,
            forwarded: false,
            fell_back: false,
        });
        let origin = Origin { cluster, node };
        let j = match self.replicas[i].route(&origin, &self.latency, &[]) {
            Some(r) => self.index.get(&r.agent).copied().unwrap_or(i as u32) as usize,
            None => i,
        };
        if j == i {
            return self.plan_job(k, i, now);
        }
        self.jobs[k].forwarded = true;
        let msg = Message::Forward(JobHandoff {
            id: self.jobs[k].id.clone(),
            document: text,
            policy: "greedy".into(),
            dry_run: false,
            submitted_to: self.names[i].clone(),
        });
        let bytes = wire::encode(&msg).len();
        // The planner answers with its record (about as large again).
        match self.deliver(i, j, now, bytes, false) {
            Some(at) => self.schedule(at, JobEv::Arrives { job: k, at: j }),
            None => self.schedule(now + ANSWER_TIMEOUT_MS, JobEv::ForwardLost(k)),
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
        let view = match self.replicas[p].planning_view(&self.fabric, now as u64) {
            Ok(v) => Arc::new(v),
            Err(_) => return self.finish(k, true),
        };
        let job = &self.jobs[k].job;
        let plan = match Policy::Greedy.plan(&view, job, &PolicyConfig::default()) {
            Ok(p) => p,
            Err(_) => return self.finish(k, true),
        };
        let Some(origin) = view.origin(job) else { return self.finish(k, true) };
        let Ok(Placed { assign, shadow, digest }) = placed(&view, &self.jobs[k].id, &plan) else {
            return self.finish(k, true);
        };
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
                ExecAction::Book { key, node, format, ready_at } => {
                    let name = &view.nodes.name[node];
                    let owner = self.index.get(name).copied().unwrap_or(p as u32) as usize;
                    let st = &self.jobs[k].job.stages[key.stage as usize];
                    let run = StageRun {
                        job: self.jobs[k].id.clone(),
                        stage: st.id.clone(),
                        key,
                        node: name.clone(),
                        format,
                        compute: st.compute,
                        ready_at,
                    };
                    let bytes = wire::encode(&Message::RunStage(run)).len();
                    self.jobs[k].waiting.push(key);
                    self.schedule(now + ANSWER_TIMEOUT_MS, JobEv::BookingLost { job: k, key });
                    if let Some(at) = self.deliver(p, owner, now, bytes, false) {
                        self.schedule(at, JobEv::BookAt { job: k, key, node, owner, ready_at });
                    }
                }
                ExecAction::Reserve { key, node, ready_at, duration_ms, .. } => {
                    // Asked of the owner like a booking; its answer is taken
                    // as it is given (a reservation only predicts).
                    let name = view.nodes.name[node].clone();
                    let owner = self.index.get(&name).copied().unwrap_or(p as u32) as usize;
                    let c = self.jobs[k].job.stages[key.stage as usize].compute;
                    let start = match self.deliver(p, owner, now, 96, false) {
                        Some(_) => {
                            let id = self.jobs[k].id.clone();
                            self.replicas[owner]
                                .reserve(
                                    &id,
                                    key,
                                    &name,
                                    (view.nodes.alloc_cpu[node], view.nodes.alloc_mem[node]),
                                    (c.cpu, c.mem_gb),
                                    ready_at,
                                    duration_ms,
                                    now,
                                )
                                .map(|b| b.start)
                        }
                        None => Err(Refusal::Unreachable),
                    };
                    self.exec_event(k, ExecEvent::Reserved { key, start }, now);
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

    /// The owner books a run on its node and answers the planner.
    pub(super) fn book_at(&mut self, k: usize, key: RunKey, node: usize, owner: usize, ready_at: f64, now: f64) {
        let view = self.jobs[k].view.clone().expect("planned");
        let st = &self.jobs[k].job.stages[key.stage as usize];
        let format = self.jobs[k].exec.as_ref().expect("running").stage(key.stage as usize).1.format;
        let (_, run_ms) =
            truth::run(&view, node, st.compute.duration_ms, format, &self.jobs[k].id, &st.id, key.attempt);
        let (id, name) = (self.jobs[k].id.clone(), view.nodes.name[node].clone());
        let booked = self.replicas[owner].book(
            &id,
            key,
            &name,
            (view.nodes.alloc_cpu[node], view.nodes.alloc_mem[node]),
            (st.compute.cpu, st.compute.mem_gb),
            ready_at,
            run_ms,
            now,
        );
        let p = self.jobs[k].planner.expect("planned") as usize;
        if let Some(at) = self.deliver(owner, p, now, 40, false) {
            self.schedule(at, JobEv::Answer { job: k, key, booked: booked.map(|b| (b.start, b.end)) });
        }
    }

    /// An execution event for job `k` (stale or late ones are ignored by
    /// the execution itself).
    pub(super) fn exec_event(&mut self, k: usize, ev: ExecEvent, now: f64) {
        if let ExecEvent::Booked { key, .. } | ExecEvent::Refused { key, .. } = &ev {
            let w = &mut self.jobs[k].waiting;
            let Some(pos) = w.iter().position(|x| x == key) else { return };
            w.swap_remove(pos);
        }
        let (Some(mut exec), Some(view)) = (self.jobs[k].exec.take(), self.jobs[k].view.clone()) else { return };
        let mut out = Vec::new();
        exec.handle(&self.jobs[k].job, &view, now, ev, &mut out);
        self.jobs[k].exec = Some(exec);
        self.exec_actions(k, out, now);
    }

    /// A booking answered: the run starts at `start` and ends at `end`.
    pub(super) fn booked(&mut self, k: usize, key: RunKey, start: f64, end: f64, now: f64) {
        if !self.jobs[k].waiting.contains(&key) {
            return; // answered after its timeout: already failed over
        }
        self.exec_event(k, ExecEvent::Booked { key, start }, now);
        self.schedule(end.max(now), JobEv::RunEnds { job: k, key });
    }

    /// A booking's answer did not come in time: unreachable.
    pub(super) fn booking_lost(&mut self, k: usize, key: RunKey, now: f64) {
        if self.jobs[k].waiting.contains(&key) {
            self.exec_event(k, ExecEvent::Refused { key, reason: Refusal::Unreachable }, now);
        }
    }

    /// The forward was lost: the agent it was submitted to plans it.
    pub(super) fn forward_lost(&mut self, k: usize, now: f64) {
        if self.jobs[k].planner.is_none() {
            self.jobs[k].fell_back = true;
            let i = self.jobs[k].submitted_to as usize;
            self.plan_job(k, i, now);
        }
    }

    fn finish(&mut self, k: usize, failed: bool) {
        let j = &mut self.jobs[k];
        j.finals += 1;
        j.failed = failed;
    }
}
