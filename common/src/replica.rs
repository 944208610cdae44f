//! One agent's protocol, as a state machine: its replica of the twin, who
//! it believes alive, when it syncs and with whom, where a job is routed,
//! and the bookings of the nodes it owns.
//!
//! In the manner of iroh-gossip's `proto::State`: the agent feeds
//! [`Replica::handle`] an [`Input`] (a gossiped frame, a request, an answer,
//! a connection hint, a tick) with the time, and carries out the
//! [`Output`]s (publish, send a request, answer, persist, dial); `sims/`
//! feeds thousands of replicas the same inputs on a virtual clock and a
//! simulated network. Randomness (the anti-entropy peer) comes from the
//! caller's seeded RNG, so a run is reproducible.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::capacity::{Booking, NodeSchedule};
use crate::execution::RunKey;
use crate::failures::FailureEvent;
use crate::gossip;
use crate::job::Origin;
use crate::latency::LatencyMatrix;
use crate::liveness::{Liveness, LivenessConfig, PeerState, Transition};
use crate::model::Node;
use crate::rng::SimRng;
use crate::routing::{self, AgentInfo, Route};
use crate::twin::{NodeRecord, Twin};
use crate::view::{FabricView, FormatOverheads, ViewError};
use crate::wire::Message;

/// Label on node records naming the agent that owns them.
pub const AGENT_LABEL: &str = "twinmesh.io/agent";
/// Label on an agent's own node record: its mesh addresses, space
/// separated, so every agent can dial every other (discovery through the
/// twin itself).
pub const MESH_LABEL: &str = "twinmesh.io/mesh";

/// Agents dialled per dial round, at most.
pub const MAX_DIALS_PER_ROUND: usize = 16;

/// How a replica behaves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplicaConfig {
    /// The agent's name (its node's name).
    pub name: String,
    /// Its cluster.
    pub cluster: String,
    /// Anti-entropy period (ms): one sync with a random alive peer.
    pub sync_interval_ms: f64,
    /// How often peers the twin knows but that are not connected are
    /// dialled (ms).
    pub dial_interval_ms: f64,
    /// The failure detector.
    pub liveness: LivenessConfig,
    /// How long an owner keeps a finished booking, so a late or repeated
    /// request for the same run finds it (ms of fabric time).
    pub booking_history_ms: f64,
}

impl ReplicaConfig {
    /// The defaults for agent `name` of `cluster`.
    pub fn new(name: impl Into<String>, cluster: impl Into<String>) -> Self {
        ReplicaConfig {
            name: name.into(),
            cluster: cluster.into(),
            sync_interval_ms: 1_000.0,
            dial_interval_ms: 2_000.0,
            liveness: LivenessConfig::default(),
            booking_history_ms: 600_000.0,
        }
    }
}

/// What happened, as far as the protocol is concerned.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A frame arrived by gossip (relayed; its first sender is unknown).
    Gossip(Message),
    /// A peer's request; answer with [`Output::Reply`] and `id`.
    Request {
        /// The sender, when identified.
        from: Option<String>,
        /// Echoed in the reply.
        id: u64,
        /// The request.
        msg: Message,
    },
    /// The answer to [`Output::Request`] `token`.
    Response {
        /// The request's token.
        token: u64,
        /// The answer.
        msg: Message,
    },
    /// [`Output::Request`] `token` got no answer (timeout, no connection).
    RequestFailed {
        /// The request's token.
        token: u64,
    },
    /// A connection to `peer` opened and it identified itself.
    Connected(String),
    /// The last connection to `peer` closed (a hint only).
    Disconnected(String),
    /// Time passed.
    Tick,
}

/// What the caller must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Gossip to every peer.
    Publish(Message),
    /// Send a request to `to`; feed the answer back as [`Input::Response`]
    /// (or [`Input::RequestFailed`]) with `token`.
    Request {
        /// Agent name.
        to: String,
        /// Names the request.
        token: u64,
        /// The request.
        msg: Message,
        /// Give up after this long (ms).
        timeout_ms: f64,
    },
    /// Answer request `id`.
    Reply {
        /// The request's id.
        id: u64,
        /// The answer.
        msg: Message,
    },
    /// Twin entries that changed here: store them.
    Persist {
        /// Records.
        records: Vec<NodeRecord>,
        /// Failures.
        failures: Vec<FailureEvent>,
    },
    /// A peer's state changed.
    Peer(Transition),
    /// Dial this agent (its addresses are in its record's [`MESH_LABEL`]).
    Dial(String),
    /// Another agent claimed a node this agent publishes; settled by
    /// [`claims::claim_beats`].
    Conflict(OwnershipConflict),
}

#[derive(Clone, Debug)]
enum Pending {
    Probe { peer: String, nonce: u64 },
    Check { peer: String },
    Sync { peer: String },
    Push,
}

/// Counters a replica keeps about itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStats {
    /// Twin entries changed by what arrived.
    pub changes_in: u64,
    /// Anti-entropy exchanges started.
    pub syncs: u64,
    /// Probes sent.
    pub probes: u64,
}

/// One agent's protocol state.
#[derive(Clone, Debug)]
pub struct Replica {
    cfg: ReplicaConfig,
    twin: Twin,
    liveness: Liveness,
    connected: BTreeSet<String>,
    pending: HashMap<u64, Pending>,
    next_token: u64,
    next_sync: f64,
    next_dial: f64,
    schedules: BTreeMap<String, NodeSchedule>,
    /// Runs booked or reserved on owned nodes: (node, booking, still
    /// only reserved).
    slots: HashMap<(String, RunKey), (String, Booking, bool)>,
    stats: ReplicaStats,
    /// Agents the twin names, and (twin size, time) they were listed at.
    agents: Vec<String>,
    agents_from: (usize, f64),
    dial_cursor: usize,
    /// What routing reads ([`Replica::agents`]), built once per change of
    /// the twin or of a peer's state, not once per job.
    routing: std::cell::OnceCell<Vec<AgentInfo>>,
    /// Nodes this agent publishes, as last published.
    claims: BTreeMap<String, Node>,
    /// Nodes it gave up to another agent's claim, with the winner.
    yielded: BTreeMap<String, String>,
    /// Per peer, its last answer to a summary check: same twin, and when.
    checks: BTreeMap<String, (bool, f64)>,
}

impl Replica {
    /// A replica holding `twin` (restored from the store, or empty).
    pub fn new(cfg: ReplicaConfig, twin: Twin) -> Self {
        let liveness = Liveness::new(cfg.liveness.clone());
        Replica {
            cfg,
            twin,
            liveness,
            connected: BTreeSet::new(),
            pending: HashMap::new(),
            next_token: 1,
            next_sync: 0.0,
            next_dial: 0.0,
            schedules: BTreeMap::new(),
            slots: HashMap::new(),
            stats: ReplicaStats::default(),
            routing: std::cell::OnceCell::new(),
            agents: Vec::new(),
            agents_from: (usize::MAX, 0.0),
            dial_cursor: 0,
            claims: BTreeMap::new(),
            yielded: BTreeMap::new(),
            checks: BTreeMap::new(),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &ReplicaConfig {
        &self.cfg
    }

    /// The twin replica.
    pub fn twin(&self) -> &Twin {
        &self.twin
    }

    /// The failure detector.
    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    /// Per peer, whether its twin matched this one at the last summary
    /// check, and when (ms): the mesh's convergence as this agent sees it.
    pub fn checks(&self) -> impl Iterator<Item = (&str, bool, f64)> {
        self.checks.iter().map(|(p, &(same, at))| (p.as_str(), same, at))
    }

    /// Counters.
    pub fn stats(&self) -> &ReplicaStats {
        &self.stats
    }

    /// Peers with an open connection.
    pub fn connected(&self) -> impl Iterator<Item = &str> {
        self.connected.iter().map(String::as_str)
    }

    /// Handles one input at `now` (ms); returns what to do.
    pub fn handle(&mut self, input: Input, now: f64, rng: &mut SimRng) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Gossip(msg) => self.apply(msg, now, &mut out).into_iter().for_each(drop),
            Input::Request { from, id, msg } => {
                if let Some(peer) = &from {
                    self.heard(peer, now, &mut out);
                }
                let reply = match msg {
                    Message::Ping(n) => Some(Message::Pong(n)),
                    other => self.apply(other, now, &mut out),
                };
                out.push(Output::Reply { id, msg: reply.unwrap_or(Message::Ack) });
            }
            Input::Response { token, msg } => match self.pending.remove(&token) {
                Some(Pending::Probe { peer, nonce }) => {
                    if msg == Message::Pong(nonce) {
                        out.extend(self.liveness.probe_answered(&peer, nonce, now).map(Output::Peer));
                    }
                }
                Some(Pending::Check { peer }) => {
                    self.heard(&peer, now, &mut out);
                    self.checks.insert(peer.clone(), (msg == Message::InSync, now));
                    if let Message::OutOfSync(theirs) = msg {
                        let mask = self.twin.differing_buckets(&theirs);
                        self.sync_scoped(peer, Some(mask), &mut out);
                    }
                }
                Some(Pending::Sync { peer }) => {
                    self.heard(&peer, now, &mut out);
                    if let Some(push) = self.apply(msg, now, &mut out) {
                        let token = self.token(Pending::Push);
                        let timeout_ms = self.timeout_for(&peer);
                        out.push(Output::Request { to: peer, token, msg: push, timeout_ms });
                    }
                }
                Some(Pending::Push) | None => {}
            },
            Input::RequestFailed { token } => {
                if let Some(Pending::Probe { peer, nonce }) = self.pending.remove(&token) {
                    out.extend(self.liveness.probe_failed(&peer, nonce, now).map(Output::Peer));
                }
            }
            Input::Connected(peer) => {
                if peer != self.cfg.name {
                    self.connected.insert(peer.clone());
                    self.heard(&peer, now, &mut out);
                    // Catch up at once rather than wait for fresh gossip.
                    self.sync_with(peer, &mut out);
                }
            }
            Input::Disconnected(peer) => {
                self.connected.remove(&peer);
                self.liveness.connection_closed(&peer);
            }
            Input::Tick => self.tick(now, rng, &mut out),
        }
        if out.iter().any(|o| matches!(o, Output::Persist { .. } | Output::Peer(_))) {
            self.routing.take();
        }
        out
    }

    /// What a planner on this replica places on: every node of `fabric`,
    /// as the twin last heard of it (a node the twin does not know yet as
    /// the fabric describes it). Nodes down at `now_ms` (Unix ms, for the
    /// failure history) and nodes whose owner the failure detector holds
    /// suspect or has given up take no work: a cut is not planned across,
    /// and a failover does not go back to the far side of it.
    pub fn planning_view(&self, fabric: &crate::fabric::Fabric, now_ms: u64) -> Result<FabricView, ViewError> {
        let down: BTreeSet<String> = crate::failures::down_nodes(self.twin.failures(), now_ms).into_iter().collect();
        let mut nodes: BTreeMap<&str, Node> = fabric.nodes.iter().map(|n| (n.name.as_str(), n.clone())).collect();
        for n in self.twin.nodes() {
            nodes.insert(n.name.as_str(), n.clone());
        }
        for n in nodes.values_mut() {
            let owner_gone = n.labels.get(AGENT_LABEL).is_some_and(|a| {
                *a != self.cfg.name && matches!(self.liveness.state(a), Some(PeerState::Suspect | PeerState::Dead))
            });
            if down.contains(&n.name) || owner_gone {
                n.status = crate::model::NodeStatus::NotReady;
            }
        }
        FabricView::new(&fabric.clusters, fabric.latency.clone(), nodes.values(), FormatOverheads::default())
    }

    /// This agent is shutting down: tells its peers, so they mark it dead
    /// at once (reason: left) instead of after their probes fail.
    pub fn leave(&self) -> Vec<Output> {
        vec![Output::Publish(Message::Leave(self.cfg.name.clone()))]
    }

    /// Records a failure observed or injected here and spreads it.
    pub fn report_failure(&mut self, ev: FailureEvent) -> Vec<Output> {
        if !self.twin.add_failure(ev.clone()) {
            return Vec::new();
        }
        vec![Output::Persist { records: vec![], failures: vec![ev.clone()] }, Output::Publish(Message::Failure(ev))]
    }

    /// Agents the twin knows, with what routing needs; alive = this agent,
    /// or a peer the failure detector holds alive.
    pub fn agents(&self) -> Vec<AgentInfo> {
        let mut by_agent: BTreeMap<String, AgentInfo> = BTreeMap::new();
        for n in self.twin.nodes() {
            let Some(agent) = n.labels.get(AGENT_LABEL) else { continue };
            let alive = agent == &self.cfg.name || self.liveness.is_alive(agent);
            let e = by_agent.entry(agent.clone()).or_insert_with(|| AgentInfo {
                name: agent.clone(),
                cluster: n.cluster.clone(),
                owns: Vec::new(),
                alive,
                resiliency: n.resiliency,
                cpu_pct: n.telemetry.cpu_pct,
            });
            e.owns.push(n.name.clone());
            if &n.name == agent {
                e.cluster = n.cluster.clone();
                e.resiliency = n.resiliency;
                e.cpu_pct = n.telemetry.cpu_pct;
            }
        }
        by_agent.into_values().collect()
    }

    /// Which agent should plan a job from `origin`: the origin node's
    /// agent, else the healthiest alive agent of its cluster, else the
    /// nearest alive agent; agents in `unreachable` (the caller tried them)
    /// and agents the detector does not hold alive are skipped.
    pub fn route(&self, origin: &Origin, latency: &LatencyMatrix, unreachable: &[String]) -> Option<Route> {
        routing::route(origin, self.routing.get_or_init(|| self.agents()), latency, unreachable)
    }

    /// Whether `agent` can be relied on now (this agent, or alive).
    pub fn reachable(&self, agent: &str) -> bool {
        agent == self.cfg.name || self.liveness.is_alive(agent)
    }

    /// Whether the failure detector has given `agent` up (dead): its nodes
    /// take no new work until it is heard from again.
    pub fn given_up(&self, agent: &str) -> bool {
        agent != self.cfg.name && self.liveness.state(agent) == Some(PeerState::Dead)
    }

    /// How long to wait for `peer` to answer a request (ms): the failure
    /// detector's timeout, derived from measured round trips.
    pub fn timeout_for(&self, peer: &str) -> f64 {
        self.liveness.timeout_for(peer)
    }

    /// The agent that runs stages on `node`: its owner, or this agent when
    /// nobody owns it.
    pub fn owner_of(&self, node: &str) -> String {
        self.twin
            .record(node)
            .and_then(|r| r.node.labels.get(AGENT_LABEL).cloned())
            .unwrap_or_else(|| self.cfg.name.clone())
    }

    fn token(&mut self, p: Pending) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        self.pending.insert(t, p);
        t
    }

    fn heard(&mut self, peer: &str, now: f64, out: &mut Vec<Output>) {
        if peer != self.cfg.name {
            let back = self.liveness.heard(peer, now);
            // Back from suspect or dead (a healed cut): catch up with it at
            // once rather than wait for a random anti-entropy pick.
            let rejoined = back
                .as_ref()
                .is_some_and(|t| t.to == PeerState::Alive && matches!(t.from, PeerState::Suspect | PeerState::Dead));
            out.extend(back.map(Output::Peer));
            if rejoined {
                self.sync_with(peer.to_string(), out);
            }
        }
    }

    fn sync_with(&mut self, peer: String, out: &mut Vec<Output>) {
        self.sync_scoped(peer, None, out);
    }

    /// A digest exchange limited to the buckets in `scope` (all if None).
    fn sync_scoped(&mut self, peer: String, scope: Option<u64>, out: &mut Vec<Output>) {
        let token = self.token(Pending::Sync { peer: peer.clone() });
        let timeout_ms = self.timeout_for(&peer);
        let digest = self.twin.digest_scoped(scope);
        out.push(Output::Request { to: peer, token, msg: Message::SyncRequest(digest), timeout_ms });
    }

    /// Applies a twin message; returns the reply, if any.
    fn apply(&mut self, msg: Message, now: f64, out: &mut Vec<Output>) -> Option<Message> {
        if let Message::Leave(agent) = &msg {
            if *agent != self.cfg.name {
                out.extend(self.liveness.left(agent, now).map(Output::Peer));
            }
            return None;
        }
        let h = gossip::handle(&mut self.twin, msg);
        if h.changed > 0 {
            self.stats.changes_in += h.changed as u64;
            let delta = h.changes;
            // An agent not seen before is a peer to watch from now on.
            for r in &delta.records {
                // (Kept sorted; a peer heard over a connection before its
                // record arrived is listed too, so it is redialled.)
                if let Some(a) = r.node.labels.get(AGENT_LABEL).filter(|a| **a != self.cfg.name) {
                    if let Err(at) = self.agents.binary_search(a) {
                        if self.liveness.state(a).is_none() {
                            self.liveness.discover(a, now);
                        }
                        self.agents.insert(at, a.clone());
                    }
                }
            }
            // A fresh version of a record an agent owns about itself is
            // word from that agent, however it travelled.
            let owners: Vec<String> = delta
                .records
                .iter()
                .filter(|r| r.node.labels.get(AGENT_LABEL) == Some(&r.node.name))
                .map(|r| r.node.name.clone())
                .collect();
            for o in owners {
                self.heard(&o, now, out);
            }
            // Claims settled after the merged records are stored, so a
            // record republished over a claimant's is stored last.
            let mut settled = Vec::new();
            if !self.claims.is_empty() {
                self.settle_claims(&delta.records, &mut settled);
            }
            out.push(Output::Persist { records: delta.records, failures: delta.failures });
            out.append(&mut settled);
        }
        h.reply
    }

    fn tick(&mut self, now: f64, rng: &mut SimRng, out: &mut Vec<Output>) {
        // Everyone the twin names as an agent is a peer to watch: listed
        // once from the twin, then kept up by what arrives (`apply`).
        if self.agents_from.0 == usize::MAX {
            self.agents = self
                .twin
                .nodes()
                .filter_map(|n| n.labels.get(AGENT_LABEL))
                .filter(|a| **a != self.cfg.name)
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            self.agents_from = (self.twin.len(), now + 5_000.0);
            for a in &self.agents {
                self.liveness.discover(a, now);
            }
            self.routing.take();
        }
        let (probes, changes) = self.liveness.tick(now);
        out.extend(changes.into_iter().map(Output::Peer));
        for p in probes {
            self.stats.probes += 1;
            let token = self.token(Pending::Probe { peer: p.peer.clone(), nonce: p.nonce });
            out.push(Output::Request { to: p.peer, token, msg: Message::Ping(p.nonce), timeout_ms: p.timeout_ms });
        }
        if now >= self.next_sync {
            self.next_sync = now + self.cfg.sync_interval_ms;
            // A random alive peer: drawn from the agents the twin names
            // (a few tries), else from whoever is alive (peers that made
            // themselves known without a record).
            let mut pick = None;
            for _ in 0..8.min(self.agents.len()) {
                let a = &self.agents[rng.random_range(0..self.agents.len())];
                if self.liveness.is_alive(a) {
                    pick = Some(a.clone());
                    break;
                }
            }
            if pick.is_none() {
                let alive: Vec<&str> = self.liveness.in_state(PeerState::Alive).collect();
                if !alive.is_empty() {
                    pick = Some(alive[rng.random_range(0..alive.len())].to_string());
                }
            }
            if let Some(peer) = pick {
                // Eight bytes first; digests only when the replicas differ.
                self.stats.syncs += 1;
                let token = self.token(Pending::Check { peer: peer.clone() });
                let timeout_ms = self.timeout_for(&peer);
                out.push(Output::Request { to: peer, token, msg: Message::SyncCheck(self.twin.summary()), timeout_ms });
            }
        }
        if now >= self.next_dial {
            // A few not-connected agents per round, in turn: enough to heal
            // a small mesh in one round, bounded in a large one.
            self.next_dial = now + self.cfg.dial_interval_ms;
            let n = self.agents.len();
            let mut dialled = 0;
            for k in 0..n {
                if dialled >= MAX_DIALS_PER_ROUND {
                    break;
                }
                let a = &self.agents[(self.dial_cursor + k) % n];
                // A peer given up is dialled afresh even if a connection
                // to it still looks open (a cut leaves TCP half-dead).
                if !self.connected.contains(a) || self.liveness.state(a) == Some(PeerState::Dead) {
                    out.push(Output::Dial(a.clone()));
                    dialled += 1;
                }
                if k + 1 == n || dialled >= MAX_DIALS_PER_ROUND {
                    self.dial_cursor = (self.dial_cursor + k + 1) % n;
                }
            }
        }
        // Requests whose answer never came are the caller's to fail; keep
        // the table bounded if a caller forgets.
        if self.pending.len() > 65_536 {
            let oldest = self.next_token.saturating_sub(32_768);
            self.pending.retain(|t, _| *t >= oldest);
        }
    }
}

mod bookings;
mod claims;
pub use claims::{OwnershipConflict, claim_beats};

#[cfg(test)]
mod tests;
