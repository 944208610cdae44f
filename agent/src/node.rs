//! The agent's core: its twin replica, its jobs, and the loop that ties the
//! mesh, the store, the API and the actuator together.
//!
//! State lives behind one mutex held only for short, non-blocking sections;
//! anything that waits (the store, the mesh, the actuator) happens outside
//! it.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};
use twinmesh_common::calibrate::Calibration;
use twinmesh_common::fabric::Fabric;
use twinmesh_common::failures::{FailureEvent, FailureKind};
use twinmesh_common::gossip;
use twinmesh_common::model::{Node, NodeStatus};
use twinmesh_common::policy::{Policy, PolicyConfig};
use twinmesh_common::routing::{self, AgentInfo, Route};
use twinmesh_common::spec::{self, SpecError};
use twinmesh_common::twin::{FailureId, NodeRecord, Twin};
use twinmesh_common::view::{FabricView, FormatOverheads};
use twinmesh_common::wire::{self, JobHandoff, Message, StageRun, StageSlot};

use crate::jobs::{JobRecord, JobState, job_id};
use crate::mesh;
use crate::store::Store;

/// Label on node records naming the agent that owns them.
pub const AGENT_LABEL: &str = "twinmesh.io/agent";
/// Label on an agent's own node record: its mesh addresses, space
/// separated, so every agent can dial every other (discovery through the
/// twin itself).
pub const MESH_LABEL: &str = "twinmesh.io/mesh";

/// How an agent is set up.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Agent name (its primary node's name).
    pub name: String,
    /// Its cluster.
    pub cluster: String,
    /// Clusters, latency matrix and the hardware of the nodes it stands for.
    pub fabric: Fabric,
    /// Node records this agent owns and publishes.
    pub owned: Vec<Node>,
    /// Wall seconds per fabric second for the virtual actuator.
    pub time_scale: f64,
    /// Default policy.
    pub policy: Policy,
    /// Anti-entropy period.
    pub sync_interval: Duration,
    /// This agent's mesh addresses (published for discovery).
    pub mesh_addrs: Vec<String>,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    /// Jobs accepted (committed).
    pub jobs_accepted: AtomicU64,
    /// Jobs planned here.
    pub jobs_planned: AtomicU64,
    /// Jobs forwarded to another planner.
    pub jobs_forwarded: AtomicU64,
    /// Jobs that failed.
    pub jobs_failed: AtomicU64,
    /// Jobs that succeeded.
    pub jobs_succeeded: AtomicU64,
    /// Gossip frames received.
    pub gossip_in: AtomicU64,
    /// Gossip frames sent.
    pub gossip_out: AtomicU64,
    /// Frames dropped as undecodable.
    pub gossip_dropped: AtomicU64,
    /// Plan latency histogram: bucket upper bounds in µs.
    pub plan_us_buckets: [AtomicU64; 10],
    /// Sum of plan latencies (µs).
    pub plan_us_sum: AtomicU64,
    /// Plans timed.
    pub plan_count: AtomicU64,
}

/// Upper bounds (µs) of the plan-latency buckets.
pub const PLAN_BUCKETS_US: [u64; 10] = [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, u64::MAX];

impl Metrics {
    fn observe_plan(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let i = PLAN_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(PLAN_BUCKETS_US.len() - 1);
        self.plan_us_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.plan_us_sum.fetch_add(us, Ordering::Relaxed);
        self.plan_count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The document is bad.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// No node can run it.
    #[error("{0}")]
    Unplaceable(String),
    /// Storing it failed: it was not accepted.
    #[error("not accepted: {0}")]
    Store(String),
    /// Bad query parameter.
    #[error("{field}: {reason}")]
    Param {
        /// Parameter.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// What a submission returns.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct SubmitResponse {
    /// Job id.
    pub id: String,
    /// Agent that planned it.
    pub planner: String,
    /// Whether this call created it (false: already known).
    pub created: bool,
    /// The job record.
    pub job: JobRecord,
}

struct State {
    /// Bookings of the nodes this agent runs stages on (virtual actuator).
    schedules: HashMap<String, twinmesh_common::capacity::NodeSchedule>,
    /// Slots already given, by (job, stage, attempt): a retried request
    /// gets the same slot, never a second booking.
    slots: HashMap<(String, String, u32), StageSlot>,
    twin: Twin,
    view: Option<Arc<FabricView>>,
    calibration: Calibration,
    jobs: HashMap<String, JobRecord>,
    peers: BTreeSet<String>,
    failure_seq: u64,
}

/// A running agent.
pub struct Agent {
    /// Configuration.
    pub cfg: AgentConfig,
    state: Mutex<State>,
    /// Durable state.
    pub store: Store,
    mesh: mpsc::Sender<mesh::Command>,
    /// Counters.
    pub metrics: Metrics,
    persist: mpsc::UnboundedSender<(Vec<NodeRecord>, Vec<FailureEvent>)>,
    /// The Kubernetes actuator, when the agent runs stages as pods.
    kube: std::sync::OnceLock<Arc<crate::kube::Kube>>,
    /// Set while the agent waits for something before it is ready.
    waiting_for: Mutex<Option<String>>,
}

/// Unix time in ms.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Agent {
    /// Builds the agent from its store (restoring twin and jobs) and a
    /// running mesh.
    pub fn new(cfg: AgentConfig, store: Store, mesh: mpsc::Sender<mesh::Command>) -> anyhow::Result<Arc<Agent>> {
        let mut twin = Twin::new();
        let (records, bad_r) = store.twin()?;
        let (failures, bad_f) = store.failures()?;
        let (jobs, bad_j) = store.jobs()?;
        for c in bad_r.iter().chain(&bad_f).chain(&bad_j) {
            warn!(table = c.table, key = %c.key, reason = %c.reason, "skipping undecodable stored entry");
        }
        for r in records {
            twin.merge_record(r);
        }
        let mut failure_seq = 0;
        for f in failures {
            if f.id.reporter == cfg.name {
                failure_seq = failure_seq.max(f.id.seq);
            }
            twin.add_failure(f);
        }
        let mut calibration = Calibration::default();
        for j in &jobs {
            for o in &j.observations {
                calibration.observe(&o.node, o.format, o.model_ms, o.compute_ms);
            }
        }
        let jobs: HashMap<String, JobRecord> = jobs.into_iter().map(|j| (j.id.clone(), j)).collect();
        info!(agent = %cfg.name, jobs = jobs.len(), records = twin.len(), "restored state");
        let (persist, mut queue) = mpsc::unbounded_channel::<(Vec<NodeRecord>, Vec<FailureEvent>)>();
        let st = store.clone();
        tokio::spawn(async move {
            while let Some((mut recs, mut fails)) = queue.recv().await {
                // Fold whatever else is queued into one write.
                while let Ok((r, f)) = queue.try_recv() {
                    recs.extend(r);
                    fails.extend(f);
                }
                if let Err(e) = st.put_twin(&recs, &fails).await {
                    warn!(error = %e, "storing twin changes");
                }
            }
        });
        Ok(Arc::new(Agent {
            cfg,
            state: Mutex::new(State {
                schedules: HashMap::new(),
                slots: HashMap::new(),
                twin,
                view: None,
                calibration,
                jobs,
                peers: BTreeSet::new(),
                failure_seq,
            }),
            store,
            mesh,
            metrics: Metrics::default(),
            persist,
            kube: std::sync::OnceLock::new(),
            waiting_for: Mutex::new(None),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes this agent's own records, stores and gossips them:
    /// every one when `force` (at start, so a restarted agent supersedes
    /// what it published before), otherwise only those `update` changed.
    pub async fn publish_own(&self, force: bool, update: impl Fn(&mut Node)) {
        let recs: Vec<NodeRecord> = {
            let mut st = self.lock();
            let mut out = Vec::new();
            for base in &self.cfg.owned {
                let current = st.twin.record(&base.name).map(|r| r.node.clone());
                let mut n = current.clone().unwrap_or_else(|| base.clone());
                n.labels.insert(AGENT_LABEL.into(), self.cfg.name.clone());
                if n.name == self.cfg.name && !self.cfg.mesh_addrs.is_empty() {
                    n.labels.insert(MESH_LABEL.into(), self.cfg.mesh_addrs.join(" "));
                }
                update(&mut n);
                n.resiliency = self.resiliency_of(&st.twin, &n);
                if force || current.as_ref() != Some(&n) {
                    out.push(st.twin.update_own(n));
                }
            }
            if !out.is_empty() {
                st.view = None;
            }
            out
        };
        // Own records are republished at every start, so they need no
        // synchronous durability either.
        if !recs.is_empty() {
            let _ = self.persist.send((recs.clone(), Vec::new()));
        }
        for r in recs {
            self.send_gossip(&Message::Record(r)).await;
        }
    }

    /// A node's resiliency from the replicated failure history, its
    /// cluster's baseline and its sustained CPU, to three decimals.
    fn resiliency_of(&self, twin: &Twin, n: &Node) -> f64 {
        use twinmesh_common::resiliency::{ResiliencyConfig, ResiliencyInputs, score};
        let failures: Vec<&FailureEvent> = twin.failures().filter(|f| f.node == n.name).collect();
        let baseline = self.cfg.fabric.clusters.iter().find(|c| c.name == n.cluster).map(|c| c.baseline_resiliency);
        let inputs = ResiliencyInputs {
            baseline,
            failures: &failures,
            uptime: None,
            sustained_cpu_pct: (n.telemetry.cpu_pct > 0.0).then_some(n.telemetry.cpu_pct),
        };
        (score(&inputs, now_ms(), &ResiliencyConfig::default()) * 1000.0).round() / 1000.0
    }

    async fn send_gossip(&self, msg: &Message) {
        self.metrics.gossip_out.fetch_add(1, Ordering::Relaxed);
        let _ = self.mesh.send(mesh::Command::Publish(wire::encode(msg))).await;
    }

    /// The planning view (cached until the twin changes).
    pub fn view(&self) -> Arc<FabricView> {
        let mut st = self.lock();
        if let Some(v) = &st.view {
            return v.clone();
        }
        let now = now_ms();
        let down: BTreeSet<String> =
            twinmesh_common::failures::down_nodes(st.twin.failures(), now).into_iter().collect();
        // Nodes the twin does not know yet come from the fabric file.
        let mut nodes: HashMap<String, Node> =
            self.cfg.fabric.nodes.iter().map(|n| (n.name.clone(), n.clone())).collect();
        for n in st.twin.nodes() {
            nodes.insert(n.name.clone(), n.clone());
        }
        let mut list: Vec<Node> = nodes.into_values().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        for n in &mut list {
            if down.contains(&n.name) {
                n.status = NodeStatus::NotReady;
            }
        }
        let mut view = match FabricView::new(
            &self.cfg.fabric.clusters,
            self.cfg.fabric.latency.clone(),
            &list,
            FormatOverheads::default(),
        ) {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "twin has nodes outside the fabric; planning on the fabric file alone");
                self.cfg.fabric.view()
            }
        };
        st.calibration.apply(&mut view);
        let v = Arc::new(view);
        st.view = Some(v.clone());
        v
    }

    /// Agents known from the twin, for routing.
    fn agents(&self) -> Vec<AgentInfo> {
        let st = self.lock();
        let mut by_agent: HashMap<String, AgentInfo> = HashMap::new();
        for n in st.twin.nodes() {
            let Some(agent) = n.labels.get(AGENT_LABEL) else { continue };
            let alive = agent == &self.cfg.name || st.peers.contains(agent);
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
        let mut v: Vec<AgentInfo> = by_agent.into_values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Connected peer agents.
    pub fn peers(&self) -> Vec<String> {
        self.lock().peers.iter().cloned().collect()
    }

    /// Whether the twin holds failure event `id`.
    pub fn has_failure(&self, id: &FailureId) -> bool {
        self.lock().twin.has_failure(id)
    }

    /// Number of node records in the twin.
    pub fn twin_len(&self) -> usize {
        self.lock().twin.len()
    }

    /// A snapshot of the twin.
    pub fn twin(&self) -> Twin {
        self.lock().twin.clone()
    }

    /// A job by id.
    pub fn job(&self, id: &str) -> Option<JobRecord> {
        self.lock().jobs.get(id).cloned()
    }

    /// Accepts a job document: validates, routes to the agent nearest its
    /// origin (forwarding over the mesh), plans, commits, and starts it.
    pub async fn submit(
        self: &Arc<Self>,
        text: &str,
        policy: Option<&str>,
        dry_run: bool,
        forwarded_from: Option<String>,
    ) -> Result<SubmitResponse, SubmitError> {
        let doc = spec::parse_document(text)?;
        let job = doc.validate()?;
        let policy: Policy = match policy {
            Some(p) => p.parse().map_err(|reason| SubmitError::Param { field: "policy", reason })?,
            None => self.cfg.policy,
        };
        let canonical = serde_json::to_string(&doc).expect("documents serialise");
        let id = job_id(&job.name, &canonical);
        if let Some(existing) = self.job(&id) {
            return Ok(SubmitResponse { id, planner: existing.planner.clone(), created: false, job: existing });
        }
        // Route, unless another agent already routed it here.
        let mut unreachable: Vec<String> = Vec::new();
        let mut notes = Vec::new();
        let mut route: Option<Route> = None;
        if forwarded_from.is_none() {
            let agents = self.agents();
            while let Some(r) = routing::route(&job.origin, &agents, &self.cfg.fabric.latency, &unreachable) {
                if r.agent == self.cfg.name {
                    route = Some(r);
                    break;
                }
                let handoff = JobHandoff {
                    id: id.clone(),
                    document: canonical.clone(),
                    policy: policy.to_string(),
                    dry_run,
                    submitted_to: self.cfg.name.clone(),
                };
                match self.request(&r.agent, Message::Forward(handoff), Duration::from_secs(5)).await {
                    Ok(Message::ForwardResult { result: Ok(json), .. }) => {
                        if let Ok(resp) = serde_json::from_str::<SubmitResponse>(&json) {
                            self.metrics.jobs_forwarded.fetch_add(1, Ordering::Relaxed);
                            return Ok(resp);
                        }
                        unreachable.push(r.agent.clone());
                    }
                    Ok(Message::ForwardResult { result: Err(reason), .. }) => {
                        // The planner refused the job itself (bad document,
                        // unplaceable): that is the answer.
                        return Err(SubmitError::Unplaceable(reason));
                    }
                    other => {
                        let why = match other {
                            Err(e) => e,
                            Ok(m) => format!("unexpected answer {}", m.kind()),
                        };
                        notes
                            .push(format!("agent {} nearest the origin is unreachable ({why}); planned here", r.agent));
                        unreachable.push(r.agent.clone());
                    }
                }
            }
        } else if let Some(from) = &forwarded_from {
            notes.push(format!("forwarded by {from}"));
        }
        self.plan_and_accept(id, canonical, job, policy, dry_run, forwarded_from, route, notes).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn plan_and_accept(
        self: &Arc<Self>,
        id: String,
        canonical: String,
        job: twinmesh_common::job::Job,
        policy: Policy,
        dry_run: bool,
        forwarded_from: Option<String>,
        route: Option<Route>,
        notes: Vec<String>,
    ) -> Result<SubmitResponse, SubmitError> {
        let view = self.view();
        let t0 = Instant::now();
        let cfg = PolicyConfig {
            seed: id.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
            ..PolicyConfig::default()
        };
        let plan = policy.plan(&view, &job, &cfg).map_err(|e| SubmitError::Unplaceable(e.to_string()))?;
        self.metrics.observe_plan(t0.elapsed());
        let submitted_to = forwarded_from.unwrap_or_else(|| self.cfg.name.clone());
        let mut rec = JobRecord::accepted(id.clone(), canonical, policy.to_string(), dry_run, submitted_to, now_ms());
        rec.planner = self.cfg.name.clone();
        rec.state = if dry_run { JobState::DryRun } else { JobState::Planned };
        rec.plan = Some(plan);
        rec.route = route;
        rec.notes = notes;
        {
            let mut st = self.lock();
            if let Some(existing) = st.jobs.get(&id) {
                // Raced with a duplicate: the first one stands.
                return Ok(SubmitResponse {
                    id,
                    planner: existing.planner.clone(),
                    created: false,
                    job: existing.clone(),
                });
            }
            st.jobs.insert(id.clone(), rec.clone());
        }
        if let Err(e) = self.store.put_job(&rec).await {
            self.lock().jobs.remove(&id);
            return Err(SubmitError::Store(e.to_string()));
        }
        self.metrics.jobs_accepted.fetch_add(1, Ordering::Relaxed);
        self.metrics.jobs_planned.fetch_add(1, Ordering::Relaxed);
        if !dry_run {
            self.spawn_job(id.clone());
        }
        Ok(SubmitResponse { id, planner: self.cfg.name.clone(), created: true, job: rec })
    }

    /// Makes this agent run stages as pods through `kube` (set once, at
    /// start, before any job runs).
    pub fn set_kube(&self, kube: Arc<crate::kube::Kube>) {
        let _ = self.kube.set(kube);
    }

    /// Marks the agent not ready until [`Agent::set_ready`], saying why.
    pub fn wait_for(&self, why: impl Into<String>) {
        *self.waiting_for.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.into());
    }

    /// Marks the agent ready.
    pub fn set_ready(&self) {
        *self.waiting_for.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Why the agent is not ready, if it is not.
    pub fn not_ready_reason(&self) -> Option<String> {
        self.waiting_for.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The Kubernetes actuator, if this agent has one.
    pub fn kube(&self) -> Option<Arc<crate::kube::Kube>> {
        self.kube.get().cloned()
    }

    /// Runs job `id` on this agent's actuator, in the background.
    pub fn spawn_job(self: &Arc<Self>, id: String) {
        let me = self.clone();
        match self.kube() {
            Some(k) => tokio::spawn(async move { crate::kube::run::run(me, k, id).await }),
            None => tokio::spawn(async move { crate::actuator::run(me, id).await }),
        };
    }

    /// Updates a job record in memory and in the store.
    pub async fn update_job(&self, id: &str, f: impl FnOnce(&mut JobRecord)) -> Option<JobRecord> {
        let rec = {
            let mut st = self.lock();
            let r = st.jobs.get_mut(id)?;
            f(r);
            r.clone()
        };
        if let Err(e) = self.store.put_job(&rec).await {
            warn!(job = id, error = %e, "storing job update");
        }
        Some(rec)
    }

    /// Folds an observed run into calibration.
    pub fn calibrate(&self, obs: &crate::jobs::StageObservation) {
        let mut st = self.lock();
        st.calibration.observe(&obs.node, obs.format, obs.model_ms, obs.compute_ms);
        st.view = None;
    }

    /// Records a failure (or recovery) observed or injected here and
    /// spreads it.
    pub async fn observe_failure(&self, node: &str, kind: FailureKind, duration_ms: u64) -> FailureEvent {
        let ev = {
            let mut st = self.lock();
            st.failure_seq += 1;
            let ev = FailureEvent {
                id: FailureId { reporter: self.cfg.name.clone(), seq: st.failure_seq },
                node: node.to_string(),
                kind,
                at_ms: now_ms(),
                duration_ms,
            };
            st.twin.add_failure(ev.clone());
            st.view = None;
            ev
        };
        if let Err(e) = self.store.put_twin(&[], std::slice::from_ref(&ev)).await {
            warn!(error = %e, "storing failure");
        }
        self.send_gossip(&Message::Failure(ev.clone())).await;
        ev
    }

    async fn request(&self, to: &str, msg: Message, timeout: Duration) -> Result<Message, String> {
        let (tx, rx) = oneshot::channel();
        self.mesh
            .send(mesh::Command::Request { to: to.to_string(), frame: wire::encode(&msg), reply: tx })
            .await
            .map_err(|_| "mesh stopped".to_string())?;
        let frame = tokio::time::timeout(timeout, rx)
            .await
            .map_err(|_| format!("no answer from {to} within {timeout:?}"))?
            .map_err(|_| "mesh stopped".to_string())??;
        wire::decode(&frame).map_err(|e| e.to_string())
    }

    /// Handles one mesh event.
    pub async fn on_mesh_event(self: &Arc<Self>, ev: mesh::Event) {
        match ev {
            mesh::Event::Gossip(frame) => {
                self.metrics.gossip_in.fetch_add(1, Ordering::Relaxed);
                match wire::decode(&frame) {
                    Ok(msg) => {
                        self.apply_twin_message(msg).await;
                    }
                    Err(e) => {
                        self.metrics.gossip_dropped.fetch_add(1, Ordering::Relaxed);
                        warn!(reason = e.metric_label(), "dropped gossip frame");
                    }
                }
            }
            mesh::Event::Request { from, id, frame } => {
                let reply = match wire::decode(&frame) {
                    Err(e) => {
                        self.metrics.gossip_dropped.fetch_add(1, Ordering::Relaxed);
                        warn!(peer = ?from, reason = e.metric_label(), "dropped request frame");
                        Message::Ack
                    }
                    Ok(Message::Forward(h)) => {
                        let me = self.clone();
                        let from2 = from.clone().unwrap_or(h.submitted_to.clone());
                        // Plan outside the mesh loop; answer when done.
                        let mesh_tx = self.mesh.clone();
                        tokio::spawn(async move {
                            let r = me.submit(&h.document, Some(&h.policy), h.dry_run, Some(from2)).await;
                            let result = match r {
                                Ok(resp) => Ok(serde_json::to_string(&resp).expect("serialises")),
                                Err(e) => Err(e.to_string()),
                            };
                            let msg = Message::ForwardResult { id: h.id, result };
                            let _ = mesh_tx.send(mesh::Command::Respond(id, wire::encode(&msg))).await;
                        });
                        return;
                    }
                    Ok(Message::RunStage(run)) => {
                        let node = run.node.clone();
                        let r = self.book_stage(&run);
                        if r.is_ok() {
                            self.publish_load(&node).await;
                        }
                        Message::StageScheduled(r)
                    }
                    Ok(msg) => self.apply_twin_message(msg).await.unwrap_or(Message::Ack),
                };
                let _ = self.mesh.send(mesh::Command::Respond(id, wire::encode(&reply))).await;
            }
            mesh::Event::PeerUp(name) => {
                self.lock().peers.insert(name.clone());
                // Catch up at once rather than waiting for fresh gossip.
                let me = self.clone();
                tokio::spawn(async move { me.sync_with(&name).await });
            }
            mesh::Event::PeerDown(name) => {
                self.lock().peers.remove(&name);
            }
        }
    }

    /// Applies a twin message; returns the reply, if any.
    async fn apply_twin_message(&self, msg: Message) -> Option<Message> {
        let (handled, changed_records, changed_failures) = {
            let mut st = self.lock();
            let before = st.twin.digest();
            let h = gossip::handle(&mut st.twin, msg);
            if h.changed > 0 {
                st.view = None;
            }
            let delta = if h.changed > 0 { st.twin.delta_for(&before) } else { Default::default() };
            (h, delta.records, delta.failures)
        };
        if !changed_records.is_empty() || !changed_failures.is_empty() {
            // Others' records need no synchronous durability (anti-entropy
            // restores them); persisting them in order, off the event
            // loop, keeps one slow fsync from delaying gossip.
            let _ = self.persist.send((changed_records, changed_failures));
        }
        handled.reply
    }

    /// One anti-entropy exchange with `peer`.
    pub async fn sync_with(&self, peer: &str) {
        let digest = self.lock().twin.digest();
        match self.request(peer, Message::SyncRequest(digest), Duration::from_secs(10)).await {
            Ok(resp) => {
                if let Some(push) = self.apply_twin_message(resp).await {
                    let _ = self.request(peer, push, Duration::from_secs(10)).await;
                }
            }
            Err(e) => warn!(peer, error = %e, "anti-entropy sync failed"),
        }
    }

    /// Periodic anti-entropy with one random peer.
    pub async fn sync_round(&self) {
        let peers = self.peers();
        if peers.is_empty() {
            return;
        }
        let pick = (now_ms() as usize) % peers.len();
        self.sync_with(&peers[pick]).await;
    }

    /// Dials agents the twin knows of that are not connected.
    pub async fn discover(&self) {
        let wanted: Vec<Vec<libp2p::Multiaddr>> = {
            let st = self.lock();
            st.twin
                .nodes()
                .filter(|n| n.name != self.cfg.name && !st.peers.contains(&n.name))
                .filter_map(|n| n.labels.get(MESH_LABEL))
                .map(|addrs| addrs.split_whitespace().filter_map(|a| a.parse().ok()).collect())
                .collect()
        };
        for addrs in wanted {
            let _ = self.mesh.send(mesh::Command::Dial(addrs)).await;
        }
    }

    /// Absolute fabric time now (ms): wall time divided by the time scale,
    /// the same on every agent that shares the scale.
    pub fn fabric_now(&self) -> f64 {
        now_ms() as f64 / self.cfg.time_scale.max(1e-9)
    }

    /// The agent that runs stages on `node`: its owner, or this agent
    /// when nobody owns it.
    pub fn owner_of(&self, node: &str) -> String {
        self.lock()
            .twin
            .record(node)
            .and_then(|r| r.node.labels.get(AGENT_LABEL).cloned())
            .unwrap_or_else(|| self.cfg.name.clone())
    }

    /// Books a stage on a node this agent runs: the virtual counterpart of
    /// the kubelet admitting a pod. The run time comes from the ground
    /// truth (see `actuator`), which only the executing side knows.
    pub fn book_stage(&self, run: &StageRun) -> Result<StageSlot, String> {
        let view = self.view();
        let n = view.node_index(&run.node).ok_or_else(|| format!("node '{}' is not in the twin", run.node))?;
        if !view.nodes.ready[n] {
            return Err(format!("node '{}' is down", run.node));
        }
        let model = crate::actuator::model_ms(&view, n, run.compute.duration_ms, run.format);
        let truth = crate::actuator::true_ms(
            &view,
            n,
            model,
            run.format,
            &format!("{}/{}/{}", run.job, run.stage, run.attempt),
        );
        let now = self.fabric_now();
        let mut st = self.lock();
        let key = (run.job.clone(), run.stage.clone(), run.attempt);
        if let Some(slot) = st.slots.get(&key) {
            return Ok(slot.clone());
        }
        let sched = st.schedules.entry(run.node.clone()).or_insert_with(|| {
            twinmesh_common::capacity::NodeSchedule::new(view.nodes.alloc_cpu[n], view.nodes.alloc_mem[n])
        });
        // Book at the ready time the planner computed, not at arrival: the
        // request's own network delay is not part of the fabric's time
        // (at a time scale of 1/500, one wall millisecond is half a fabric
        // second). Keep a wall second of history for such late requests.
        sched.prune(now - 1000.0 / self.cfg.time_scale.max(1e-9));
        let b = sched
            .book(run.ready_at, truth, run.compute.cpu, run.compute.mem_gb)
            .ok_or_else(|| format!("stage needs more than node '{}' has", run.node))?;
        let slot = StageSlot { start: b.start, end: b.end, model_ms: model };
        if st.slots.len() > 100_000 {
            st.slots.clear();
        }
        st.slots.insert(key, slot.clone());
        Ok(slot)
    }

    /// Publishes the load of an owned node (allocated resources, backlog).
    pub async fn publish_load(&self, node: &str) {
        if !self.cfg.owned.iter().any(|n| n.name == node) {
            return;
        }
        let now = self.fabric_now();
        let (cpu, mem, backlog) = {
            let st = self.lock();
            st.schedules.get(node).map_or((0.0, 0.0, 0.0), |s| {
                let (c, m) = s.allocated(now);
                (c, m, s.backlog(now))
            })
        };
        let node = node.to_string();
        self.publish_own(false, |n| {
            if n.name == node {
                n.allocated.cpu = cpu;
                n.allocated.mem_gb = mem;
                n.backlog_ms = Some(backlog.round());
            }
        })
        .await;
    }

    /// Asks `node`'s owner to run a stage; returns its slot.
    pub async fn run_stage(&self, run: StageRun) -> Result<StageSlot, String> {
        let owner = self.owner_of(&run.node);
        if owner == self.cfg.name {
            let node = run.node.clone();
            let r = self.book_stage(&run);
            if r.is_ok() {
                self.publish_load(&node).await;
            }
            return r;
        }
        match self.request(&owner, Message::RunStage(run), Duration::from_secs(10)).await? {
            Message::StageScheduled(r) => r,
            other => Err(format!("{owner} answered {}", other.kind())),
        }
    }

    /// Whether `node` was made unavailable between two wall times (ms).
    pub fn went_down(&self, node: &str, from_ms: u64, to_ms: u64) -> bool {
        self.lock()
            .twin
            .failures()
            .any(|f| f.node == node && f.kind.makes_unavailable() && f.at_ms >= from_ms && f.at_ms < to_ms)
    }

    /// Resumes jobs that were accepted but not finished before a restart.
    pub fn unfinished_jobs(&self) -> Vec<String> {
        self.lock()
            .jobs
            .values()
            .filter(|j| !j.state.is_final() && j.planner == self.cfg.name)
            .map(|j| j.id.clone())
            .collect()
    }
}
