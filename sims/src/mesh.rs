//! Many agents in one process: N [`Replica`]s — the very protocol the
//! agent runs — on a virtual clock and a simulated network.
//!
//! * **time** — the DES's [`EventQueue`]; every replica ticks every
//!   250 ms (staggered), as the agent's protocol loop does;
//! * **network** — one-way latency between two agents is the latency
//!   matrix between their clusters; each message is lost with probability
//!   `--loss`; a `--partition` cuts a share of the agents off the rest for
//!   a while (both directions);
//! * **gossip** — stands in for gossipsub: each agent has `--degree` mesh
//!   peers (a random symmetric graph) and forwards a message it has not
//!   seen before (one that changed its twin) to them, eagerly;
//! * **requests** (anti-entropy, probes) — delivered after the latency,
//!   answered by the peer's replica, fed back as a response, or as a
//!   failure when the replica's timeout passes first.
//!
//! Owners publish a new version of their record now and then; for each
//! such update the simulator records when every agent first holds it, so
//! it reports the time to reach 99 %, 99.99 % and 100 % of the agents that
//! can be reached, messages and bytes per agent per second, liveness
//! (false suspicions) and routing outcomes.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use anyhow::bail;
use rand::{RngExt, SeedableRng};
use twinmesh_common::des::EventQueue;
use twinmesh_common::fabric;
use twinmesh_common::liveness::PeerState;
use twinmesh_common::replica::{AGENT_LABEL, Input, Output, Replica, ReplicaConfig};
use twinmesh_common::rng::{FnvBuild, SimRng};
use twinmesh_common::twin::Twin;
use twinmesh_common::wire::Message;

mod args;
pub use args::{Args, Output_};

pub use partition::Partition;

pub use report::Report;

#[derive(Clone, Copy, Debug)]
enum Ev {
    Tick(u32),
    /// A gossip frame (slot) arrives at an agent from another.
    Gossip {
        to: u32,
        from: u32,
        slot: u32,
    },
    /// A request (slot) arrives; `reply`: whether its answer will get
    /// through (drawn when it was sent).
    Request {
        to: u32,
        from: u32,
        token: u64,
        slot: u32,
        reply: bool,
    },
    /// An answer (slot) arrives back.
    Response {
        to: u32,
        token: u64,
        slot: u32,
    },
    /// A request's timeout passes.
    Timeout {
        at: u32,
        token: u64,
    },
    /// An owner publishes a new version of its record.
    Update(u32),
    /// A job is submitted to a random agent.
    Submit,
    /// A job's event (parked in `job_events`: kept out of the queue's
    /// entries, which stay small).
    Job(u32),
    /// A scripted scenario's next step.
    Step,
}

/// The simulation.
pub struct Mesh {
    args: Args,
    partition: Option<Partition>,
    replicas: Vec<Replica>,
    cluster: Vec<usize>,
    names: Vec<String>,
    index: HashMap<String, u32, FnvBuild>,
    latency: twinmesh_common::latency::LatencyMatrix,
    neighbours: Vec<Vec<u32>>,
    queue: EventQueue<Ev>,
    /// Messages in flight (a gossip frame is shared by its copies).
    slots: Vec<Option<(Rc<Message>, usize)>>,
    free: Vec<u32>,
    outstanding: HashSet<(u32, u64), FnvBuild>,
    rng: SimRng,
    net_rng: SimRng,
    owners: usize,
    /// Per followed update: (record name, version, published at, times
    /// when each agent got it).
    followed: Vec<(String, u64, f64, Vec<f64>)>,
    followed_by_name: HashMap<String, Vec<usize>, FnvBuild>,
    msgs: u64,
    bytes: u64,
    sync_bytes: u64,
    false_suspicions: u64,
    false_deaths: u64,
    cut_detect: Vec<f64>,
    events: u64,
    fabric: twinmesh_common::fabric::Fabric,
    jobs: Vec<jobs::SimJob>,
    job_events: Vec<Option<jobs::JobEv>>,
    free_job_events: Vec<u32>,
    /// The job protocol's settings (`common::lifecycle`).
    lifecycle: twinmesh_common::lifecycle::Config,
    /// Per agent: its placements in flight.
    inflight: Vec<twinmesh_common::inflight::InFlight>,
    /// Per agent that has any: its reconciliations.
    reconciling: HashMap<u32, twinmesh_common::lifecycle::Reconciling, FnvBuild>,
    /// Per agent: jobs it planned.
    planned: Vec<u32>,
    late_forwards: u64,
    forward_retries: u64,
    reconciliations: u64,
    failed_over: u64,
    booking_retries: u64,
    duplicates: u64,
    superseded: u64,
    /// Jobs that are second copies (indices).
    copies: Vec<usize>,
    /// A scripted scenario's state, if this is one.
    script: Option<scenario::Script>,
}

impl Mesh {
    /// Builds the mesh: every replica starts with the same twin (a mesh in
    /// steady state).
    pub fn new(args: Args) -> anyhow::Result<Self> {
        if args.agents < 2 {
            bail!("--agents must be at least 2");
        }
        let owners = args.nodes.unwrap_or(args.agents.min(1000)).min(args.agents).max(1);
        let fab = fabric::synthetic(owners, args.seed);
        // Each of the first `owners` agents owns one node, by its name;
        // the others are observers in random clusters.
        let mut rng = SimRng::seed_from_u64(args.seed);
        let mut names = Vec::with_capacity(args.agents);
        let mut clusters = Vec::with_capacity(args.agents);
        let mut owned = Vec::with_capacity(owners);
        for n in fab.nodes.iter().take(owners) {
            names.push(n.name.clone());
            clusters.push(n.cluster.clone());
            owned.push((n.clone(), Some(n.name.clone())));
        }
        for i in owners..args.agents {
            names.push(format!("observer-{i:05}"));
            clusters.push(fab.latency.names()[rng.random_range(0..fab.latency.len())].clone());
        }
        Mesh::build(args, fab, &names, &clusters, owned, owners, rng)
    }

    /// The mesh of agents `names` in `clusters` over fabric `fab`, whose
    /// twin holds the nodes `owned` (each labelled with its owner agent,
    /// if it has one), in steady state; the first `owners` agents publish
    /// updates.
    #[allow(clippy::too_many_arguments)]
    fn build(
        args: Args,
        fab: fabric::Fabric,
        names: &[String],
        clusters: &[String],
        owned: Vec<(twinmesh_common::model::Node, Option<String>)>,
        owners: usize,
        mut rng: SimRng,
    ) -> anyhow::Result<Self> {
        let partition = args.partition.as_deref().map(|p| Partition::parse(p, args.agents)).transpose()?;
        let latency = fab.latency.clone();
        let mut twin = Twin::new();
        for (mut n, owner) in owned {
            if let Some(o) = owner {
                n.labels.insert(AGENT_LABEL.into(), o);
            }
            twin.update_own(n);
        }
        let names = names.to_vec();
        let cluster: Vec<usize> = clusters.iter().map(|c| latency.index_of(c).unwrap_or(0)).collect();
        let index = names.iter().enumerate().map(|(i, n)| (n.clone(), i as u32)).collect();
        let replicas = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let c = latency.names()[cluster[i]].clone();
                Replica::new(ReplicaConfig::new(n.clone(), c), twin.clone())
            })
            .collect();
        // A random symmetric graph of the given degree, as gossipsub's
        // mesh: each agent picks `degree / 2` random others.
        let mut neighbours: Vec<Vec<u32>> = vec![Vec::new(); args.agents];
        let half = (args.degree / 2).max(1);
        for i in 0..args.agents {
            let mut picked = 0;
            while picked < half && neighbours[i].len() < args.agents - 1 {
                let j = rng.random_range(0..args.agents);
                if j != i && !neighbours[i].contains(&(j as u32)) {
                    neighbours[i].push(j as u32);
                    neighbours[j].push(i as u32);
                    picked += 1;
                }
            }
        }
        let mut queue = EventQueue::with_capacity(args.agents * 4);
        for i in 0..args.agents {
            queue.push(rng.random_range(0.0..250.0), Ev::Tick(i as u32));
        }
        if args.updates_per_s > 0.0 {
            queue.push(2_000.0, Ev::Update(rng.random_range(0..owners) as u32));
        }
        if args.jobs_per_s > 0.0 {
            queue.push(3_000.0, Ev::Submit);
        }
        let net_rng = SimRng::seed_from_u64(args.seed ^ 0x5eed);
        Ok(Mesh {
            partition,
            replicas,
            cluster,
            names,
            index,
            latency,
            neighbours,
            queue,
            slots: Vec::new(),
            free: Vec::new(),
            outstanding: HashSet::default(),
            rng,
            net_rng,
            owners,
            followed: Vec::new(),
            followed_by_name: HashMap::default(),
            msgs: 0,
            bytes: 0,
            sync_bytes: 0,
            false_suspicions: 0,
            false_deaths: 0,
            cut_detect: Vec::new(),
            events: 0,
            fabric: fab,
            jobs: Vec::new(),
            job_events: Vec::new(),
            free_job_events: Vec::new(),
            lifecycle: twinmesh_common::lifecycle::Config {
                failover_grace_ms: args.failover_grace.max(0.0) * 1000.0,
                ..Default::default()
            },
            inflight: vec![Default::default(); args.agents],
            reconciling: HashMap::default(),
            planned: vec![0; args.agents],
            late_forwards: 0,
            forward_retries: 0,
            reconciliations: 0,
            failed_over: 0,
            booking_retries: 0,
            duplicates: 0,
            superseded: 0,
            copies: Vec::new(),
            script: None,
            args,
        })
    }

    /// Runs to the end and reports.
    pub fn run(mut self) -> Report {
        self.simulate()
    }

    fn simulate(&mut self) -> Report {
        let t0 = std::time::Instant::now();
        let end = self.args.seconds * 1000.0;
        while let Some(t) = self.queue.peek_time() {
            if t > end {
                break;
            }
            let (now, ev) = self.queue.pop().expect("peeked");
            self.events += 1;
            self.handle(now, ev);
        }
        self.report(end, t0.elapsed().as_secs_f64())
    }

    /// As [`Mesh::run`], for a process that exits right after: the
    /// replicas are not freed one by one (a second at 1,000 agents).
    pub fn run_and_leak(mut self) -> Report {
        let r = self.simulate();
        std::mem::forget(self);
        r
    }

    fn handle(&mut self, now: f64, ev: Ev) {
        if self.hold_if_paused(ev) {
            return;
        }
        match ev {
            Ev::Step => self.step(now),
            Ev::Tick(i) => {
                self.input(i as usize, Input::Tick, now);
                self.queue.push(now + 250.0, Ev::Tick(i));
            }
            Ev::Update(i) => {
                let i = i as usize;
                let rec = self.replicas[i].twin().record(&self.names[i]).cloned();
                if let Some(rec) = rec {
                    let mut node = rec.node;
                    node.telemetry.cpu_pct = (node.telemetry.cpu_pct + 1.0) % 100.0;
                    let out = self.replicas[i].update_own(node);
                    let version = rec.version + 1;
                    let mut times = vec![f64::NAN; self.args.agents];
                    times[i] = now;
                    self.followed_by_name.entry(self.names[i].clone()).or_default().push(self.followed.len());
                    self.followed.push((self.names[i].clone(), version, now, times));
                    self.carry_out(i, out, now);
                }
                let next = now + 1000.0 / self.args.updates_per_s;
                let who = self.rng.random_range(0..self.owners) as u32;
                if next < (self.args.seconds - self.args.settle) * 1000.0 {
                    self.queue.push(next, Ev::Update(who));
                }
            }
            Ev::Submit => {
                self.submit_job(now);
                let next = now + 1000.0 / self.args.jobs_per_s;
                if next < (self.args.seconds - self.args.settle) * 1000.0 {
                    self.queue.push(next, Ev::Submit);
                }
            }
            Ev::Job(slot) => {
                let ev = self.job_events[slot as usize].take().expect("parked job event");
                self.free_job_events.push(slot);
                self.job_event(ev, now);
            }
            Ev::Gossip { to, from, slot } => {
                let (msg, bytes) = self.take(slot);
                let out = self.replicas[to as usize].handle(Input::Gossip((*msg).clone()), now, &mut self.rng);
                // New to this replica (it changed the twin): forward it to
                // the mesh peers, as gossipsub does with a first-seen message.
                let new = out.iter().any(|o| matches!(o, Output::Persist { .. }));
                self.carry_out(to as usize, out, now);
                if new {
                    self.fan_out_shared(to as usize, msg, bytes, now, Some(from as usize));
                }
            }
            Ev::Request { to, from, token, slot, reply } => {
                let (msg, _) = self.take(slot);
                let msg = Rc::try_unwrap(msg).unwrap_or_else(|m| (*m).clone());
                let input = Input::Request { from: Some(self.names[from as usize].clone()), id: token, msg };
                let out = self.replicas[to as usize].handle(input, now, &mut self.rng);
                // Answers go back to the requester; everything else is the
                // replier's own doing.
                let mut rest = Vec::new();
                for o in out {
                    match o {
                        Output::Reply { id, msg } => {
                            let bytes = frame_len(&msg);
                            let sync = matches!(
                                msg,
                                Message::SyncResponse { .. }
                                    | Message::SyncPush(_)
                                    | Message::InSync
                                    | Message::OutOfSync(_)
                            );
                            // Whether the answer gets through was drawn with
                            // the request (see `carry_out`).
                            self.count(bytes, sync);
                            if reply {
                                let at = now
                                    + self
                                        .latency
                                        .latency(self.cluster[to as usize], self.cluster[from as usize])
                                        .max(0.1);
                                let slot = self.park(Rc::new(msg), bytes);
                                self.queue.push(at, Ev::Response { to: from, token: id, slot });
                            }
                        }
                        other => rest.push(other),
                    }
                }
                self.carry_out(to as usize, rest, now);
            }
            Ev::Response { to, token, slot } => {
                let (msg, _) = self.take(slot);
                if self.outstanding.remove(&(to, token)) {
                    let msg = Rc::try_unwrap(msg).unwrap_or_else(|m| (*m).clone());
                    self.input(to as usize, Input::Response { token, msg }, now);
                }
            }
            Ev::Timeout { at, token } => {
                if self.outstanding.remove(&(at, token)) {
                    self.input(at as usize, Input::RequestFailed { token }, now);
                }
            }
        }
    }

    fn input(&mut self, i: usize, input: Input, now: f64) {
        let out = self.replicas[i].handle(input, now, &mut self.rng);
        self.carry_out(i, out, now);
    }

    fn carry_out(&mut self, i: usize, out: Vec<Output>, now: f64) {
        for o in out {
            match o {
                Output::Publish(msg) => self.fan_out(i, msg, now, None),
                Output::Request { to, token, msg, timeout_ms } => {
                    let Some(&j) = self.index.get(&to) else { continue };
                    let bytes = frame_len(&msg);
                    let sync = matches!(msg, Message::SyncRequest(_) | Message::SyncPush(_) | Message::SyncCheck(_));
                    self.outstanding.insert((i as u32, token));
                    let j = j as usize;
                    // The answer's fate is drawn now too, so a request
                    // answered in time needs no timeout event (a third of
                    // all events otherwise).
                    let mut answered_in_time = false;
                    if let Some(at) = self.deliver(i, j, now, bytes, sync) {
                        let back = at + self.latency.latency(self.cluster[j], self.cluster[i]).max(0.1);
                        let reply = self.gets_through(j, i, at);
                        answered_in_time = reply && back < now + timeout_ms && !self.paused(j);
                        let slot = self.park(Rc::new(msg), bytes);
                        self.queue.push(at, Ev::Request { to: j as u32, from: i as u32, token, slot, reply });
                    }
                    if !answered_in_time {
                        self.queue.push(now + timeout_ms, Ev::Timeout { at: i as u32, token });
                    }
                }
                Output::Persist { records, .. } => {
                    // Holding version v means holding every followed update
                    // of that record up to v (a later one can overtake an
                    // earlier one on the way).
                    for r in &records {
                        if let Some(ks) = self.followed_by_name.get(&r.node.name) {
                            for &k in ks {
                                if self.followed[k].1 <= r.version {
                                    let t = &mut self.followed[k].3[i];
                                    if t.is_nan() {
                                        *t = now;
                                    }
                                }
                            }
                        }
                    }
                }
                Output::Peer(t) => {
                    self.peer_changed(i, &t, now);
                    let j = self.index.get(&t.peer).copied().unwrap_or(0) as usize;
                    let across = self.partition.is_some_and(|p| (i < p.cut) != (j < p.cut) && now >= p.from);
                    if t.to == PeerState::Dead && !across {
                        self.false_deaths += 1;
                    }
                    if t.to == PeerState::Suspect {
                        // Across a cut, while it lasts (and until the
                        // detector has had time to hear again): expected.
                        match self.partition {
                            Some(p) if (i < p.cut) != (j < p.cut) && now >= p.from && now < p.to + 5_000.0 => {
                                if now < p.to {
                                    self.cut_detect.push(now - p.from);
                                }
                            }
                            _ => self.false_suspicions += 1,
                        }
                    }
                }
                Output::Reply { .. } | Output::Dial(_) | Output::Conflict(_) => {}
            }
        }
    }
}

/// `twinmesh-sims mesh`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let json = args.output == Output_::Json;
    let mesh = Mesh::new(args)?;
    let r = mesh.run_and_leak();
    if json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    r.print();
    Ok(())
}

mod jobs;
mod network;
use network::frame_len;
mod partition;
mod report;
pub mod scenario;
#[cfg(test)]
mod tests;
