//! The agent's shell around its protocol: it feeds the mesh's events, the
//! API's submissions and a ticking clock into [`Replica`] (the decisions:
//! who is alive, whom to sync with, where a job is routed, what an owned
//! node can book) and carries out what the replica returns — publish,
//! send, answer, persist, dial. Jobs are planned with `common::policy` and
//! run by an actuator driving `common::execution`.
//!
//! State lives behind one mutex held only for short, non-blocking sections;
//! anything that waits (the store, the mesh, the actuator) happens outside
//! it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};
use twinmesh_common::calibrate::Calibration;
use twinmesh_common::fabric::Fabric;
use twinmesh_common::failures::FailureEvent;
use twinmesh_common::liveness::PeerState;
use twinmesh_common::model::Node;
use twinmesh_common::policy::Policy;
use twinmesh_common::replica::{Input, Output, Replica, ReplicaConfig};
use twinmesh_common::rng::SimRng;
use twinmesh_common::twin::{FailureId, NodeRecord, Twin};
use twinmesh_common::view::FabricView;
use twinmesh_common::wire::{self, Message};

use crate::jobs::JobRecord;

mod failures;
pub use failures::{Precursors, Signs, Warned};
mod metrics;
mod owner;
mod peers;
mod planner;
mod records;
mod reserve;
mod run;
pub mod services;
mod stages;
use crate::mesh;
use crate::store::Store;
use owner::OwnedRun;

pub use twinmesh_common::replica::{AGENT_LABEL, MESH_LABEL};

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
    /// How many finished jobs are kept, and for how long.
    pub retention: Retention,
    /// The job protocol's settings (`common::lifecycle`): forward and
    /// booking timeouts and tries, holds, failover grace, reconciliation.
    pub lifecycle: twinmesh_common::lifecycle::Config,
}

pub use records::Retention;

pub use metrics::{ACTION_OUTCOMES, Histogram, Metrics, PREEMPTIVE_ACTIONS};

pub use planner::{SubmitError, SubmitResponse};

struct State {
    /// The protocol: twin, liveness, sync schedule, routing, bookings.
    replica: Replica,
    /// Seeds the replica's choices (anti-entropy peers).
    rng: SimRng,
    view: Option<Arc<FabricView>>,
    /// Precursors per node of a view (`stages::precursors`), with it.
    precursors: Option<(Arc<FabricView>, failures::Precursors)>,
    /// The planning view without warned nodes, for a view and its warned set.
    calm: Option<(Arc<FabricView>, Vec<usize>, Arc<FabricView>)>,
    calibration: Calibration,
    /// Placements made here that owners' records do not show yet.
    inflight: twinmesh_common::inflight::InFlight,
    /// Jobs not finished (finished ones are read from the store).
    jobs: HashMap<String, JobRecord>,
    /// Finished jobs, oldest first, for the retention policy, and their ids.
    finished: std::collections::VecDeque<(u64, String)>,
    finished_ids: std::collections::HashSet<String>,
    /// Jobs whose first commit is in flight, with the duplicates waiting
    /// for its outcome.
    committing: HashMap<String, Vec<oneshot::Sender<Result<JobRecord, String>>>>,
    failure_seq: u64,
    /// What the owner learns from the runs on its own nodes, published in
    /// their records for every planner.
    owner_calibration: Calibration,
    /// Runs booked on owned nodes, learned from once they end.
    owned_runs: std::collections::BTreeMap<(String, twinmesh_common::execution::RunKey), OwnedRun>,
}

/// Twin changes on their way to the store; `flushed` is answered once
/// everything queued before it is durable.
type Persist = (Vec<NodeRecord>, Vec<FailureEvent>, Option<oneshot::Sender<()>>);

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
    persist: mpsc::UnboundedSender<Persist>,
    /// Answers to the protocol's requests, fed back in order.
    loopback: mpsc::UnboundedSender<Input>,
    loopback_rx: Mutex<Option<mpsc::UnboundedReceiver<Input>>>,
    /// Where stages run (the embedded fabric unless set at start).
    actuator: std::sync::OnceLock<Arc<dyn crate::actuator::Actuator>>,
    /// Serialises the updates of each running job.
    job_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Services scaled here, by name (`services`).
    services: Mutex<std::collections::BTreeMap<String, services::ServiceRecord>>,
    /// Jobs running here, to stop one that lost a reconciliation.
    running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    /// Peers a reconciliation is scheduled with (after a forward to them
    /// timed out and the job was planned here).
    /// Reconciliations with peers (`common::lifecycle::Reconciling`).
    reconciling: Mutex<twinmesh_common::lifecycle::Reconciling>,
    /// Set while the agent waits for something before it is ready.
    waiting_for: Mutex<Option<String>>,
    /// Bumped when a precursor of failure arrives (`failures.rs`).
    precursor_epoch: tokio::sync::watch::Sender<failures::Warned>,
    /// Guard rails of preemptive actions, one budget for all jobs here.
    preempt_guard: Mutex<twinmesh_common::preempt::Guard>,
}

pub use crate::clock::{FABRIC_EPOCH_MS, now_ms};

impl Agent {
    /// Builds the agent from its store (restoring twin and jobs) and a
    /// running mesh.
    pub fn new(
        cfg: AgentConfig,
        store: Store,
        mesh: mpsc::Sender<mesh::Command>,
    ) -> Result<Arc<Agent>, crate::store::StoreError> {
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
        let mut finished: Vec<(u64, String)> =
            jobs.iter().filter(|j| j.state.is_final()).map(|j| (j.accepted_at_ms, j.id.clone())).collect();
        finished.sort();
        let finished_ids = finished.iter().map(|(_, id)| id.clone()).collect();
        let jobs: HashMap<String, JobRecord> =
            jobs.into_iter().filter(|j| !j.state.is_final()).map(|j| (j.id.clone(), j)).collect();
        info!(agent = %cfg.name, jobs = jobs.len(), records = twin.len(), "restored state");
        let (persist, mut queue) = mpsc::unbounded_channel::<Persist>();
        let st = store.clone();
        tokio::spawn(async move {
            while let Some((mut recs, mut fails, done)) = queue.recv().await {
                let mut flushed: Vec<oneshot::Sender<()>> = done.into_iter().collect();
                // Fold whatever else is queued into one write.
                while let Ok((r, f, d)) = queue.try_recv() {
                    recs.extend(r);
                    fails.extend(f);
                    flushed.extend(d);
                }
                if let Err(e) = st.put_twin(&recs, &fails).await {
                    warn!(error = %e, "storing twin changes");
                }
                for d in flushed {
                    let _ = d.send(());
                }
            }
        });
        let (loopback, loopback_rx) = mpsc::unbounded_channel();
        let mut rcfg = ReplicaConfig::new(cfg.name.clone(), cfg.cluster.clone());
        rcfg.sync_interval_ms = cfg.sync_interval.as_secs_f64() * 1000.0;
        let seed = cfg.name.bytes().fold(now_ms(), |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        Ok(Arc::new(Agent {
            state: Mutex::new(State {
                replica: Replica::new(rcfg, twin),
                rng: SimRng::seed_from_u64(seed),
                view: None,
                inflight: Default::default(),
                precursors: None,
                calm: None,
                calibration,
                jobs,
                finished: finished.into(),
                finished_ids,
                committing: HashMap::new(),
                failure_seq,
                owner_calibration: Calibration::default(),
                owned_runs: Default::default(),
            }),
            reconciling: Mutex::new(twinmesh_common::lifecycle::Reconciling::new(&cfg.lifecycle)),
            cfg,
            store,
            mesh,
            metrics: Metrics::default(),
            persist,
            loopback,
            loopback_rx: Mutex::new(Some(loopback_rx)),
            actuator: std::sync::OnceLock::new(),
            job_locks: Mutex::new(HashMap::new()),
            services: Mutex::new(Default::default()),
            running: Mutex::new(HashMap::new()),
            waiting_for: Mutex::new(None),
            precursor_epoch: tokio::sync::watch::Sender::new(Default::default()),
            preempt_guard: Mutex::new(Default::default()),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Runs the protocol loop: ticks every `tick` and feeds back answers to
    /// the requests the protocol sent. Call once, at start; `None` if it
    /// already runs.
    pub fn start_protocol(self: &Arc<Self>, tick: Duration) -> Option<tokio::task::JoinHandle<()>> {
        let mut rx = lock(&self.loopback_rx).take()?;
        let me = self.clone();
        Some(tokio::spawn(async move {
            let mut t = tokio::time::interval(tick);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    Some(i) = rx.recv() => me.input(i).await,
                    _ = t.tick() => {
                        me.input(Input::Tick).await;
                        me.learn_from_finished_runs().await;
                        me.enforce_retention().await;
                    }
                }
            }
        }))
    }

    /// Leaves the mesh gracefully: tells the peers (they mark this agent
    /// dead at once, reason "left the mesh"), gives the word a moment to
    /// go out, closes every connection, and makes every queued twin change
    /// durable. Job records are durable at every step already; jobs still
    /// running resume at the next start.
    pub async fn leave(self: &Arc<Self>) {
        let outputs = self.lock().replica.leave();
        self.carry_out(outputs).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (done, stopped) = oneshot::channel();
        if self.mesh.send(mesh::Command::Stop(done)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), stopped).await;
        }
        let (done, flushed) = oneshot::channel();
        if self.persist.send((Vec::new(), Vec::new(), Some(done))).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), flushed).await;
        }
        info!(agent = %self.cfg.name, "left the mesh; store flushed");
    }

    /// Feeds one input to the protocol and carries out what it decides.
    pub async fn input(self: &Arc<Self>, input: Input) {
        let outputs = {
            let mut st = self.lock();
            let now = now_ms() as f64;
            let State { replica, rng, .. } = &mut *st;
            replica.handle(input, now, rng)
        };
        self.carry_out(outputs).await;
    }

    /// Carries out the protocol's outputs: the only place the agent acts
    /// on a protocol decision.
    pub async fn carry_out(self: &Arc<Self>, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Publish(msg) => self.send_gossip(&msg).await,
                Output::Request { to, token, msg, timeout_ms } => {
                    if matches!(msg, Message::Ping(_)) {
                        self.metrics.probes.fetch_add(1, Ordering::Relaxed);
                    }
                    let me = self.clone();
                    tokio::spawn(async move {
                        let timeout = Duration::from_secs_f64(timeout_ms.max(1.0) / 1000.0);
                        let input = match me.request(&to, msg, timeout).await {
                            Ok(msg) => Input::Response { token, msg },
                            Err(_) => Input::RequestFailed { token },
                        };
                        // Back through the protocol loop, in order.
                        let _ = me.loopback.send(input);
                    });
                }
                Output::Reply { id, msg } => {
                    let _ = self.mesh.send(mesh::Command::Respond(id, wire::encode(&msg))).await;
                }
                Output::Persist { records, failures } => {
                    {
                        let mut st = self.lock();
                        st.view = None;
                    }
                    self.note_precursors(&records, &failures);
                    // Others' records need no synchronous durability
                    // (anti-entropy restores them); persisting them in
                    // order, off the event loop, keeps one slow fsync from
                    // delaying gossip.
                    let _ = self.persist.send((records, failures, None));
                }
                Output::Peer(t) => {
                    let i = match t.to {
                        PeerState::Alive => 0,
                        PeerState::Suspect => 1,
                        PeerState::Dead => 2,
                    };
                    self.metrics.peer_transitions[i].fetch_add(1, Ordering::Relaxed);
                    // Placement depends on who is reachable.
                    self.lock().view = None;
                    match t.to {
                        PeerState::Alive => info!(peer = %t.peer, reason = %t.reason, "peer alive"),
                        _ => warn!(peer = %t.peer, state = t.to.as_str(), reason = %t.reason, "peer unreachable"),
                    }
                    if t.to == PeerState::Dead {
                        let _ = self.mesh.send(mesh::Command::Disconnect(t.peer.clone())).await;
                    } else if t.to == PeerState::Alive && t.from != PeerState::Alive {
                        self.reconcile(twinmesh_common::lifecycle::ReconcileInput::PeerBack { peer: t.peer.clone() });
                    }
                }
                Output::Conflict(c) => self.on_conflict(&c),
                Output::Dial(agent) => {
                    let addrs: Vec<libp2p::Multiaddr> = {
                        let st = self.lock();
                        st.replica
                            .twin()
                            .record(&agent)
                            .and_then(|r| r.node.labels.get(MESH_LABEL).cloned())
                            .map(|a| a.split_whitespace().filter_map(|a| a.parse().ok()).collect())
                            .unwrap_or_default()
                    };
                    if !addrs.is_empty() {
                        let _ = self.mesh.send(mesh::Command::Dial(addrs)).await;
                    }
                }
            }
        }
    }

    async fn send_gossip(&self, msg: &Message) {
        self.metrics.gossip_out.fetch_add(1, Ordering::Relaxed);
        let _ = self.mesh.send(mesh::Command::Publish(wire::encode(msg))).await;
    }

    /// The planning view (cached until the twin or a peer's state
    /// changes): the replica's ([`Replica::planning_view`]) under this
    /// agent's calibration.
    pub fn view(&self) -> Arc<FabricView> {
        let mut st = self.lock();
        let now = now_ms() as f64;
        if st.inflight.expire(now) {
            st.view = None;
        }
        if let Some(v) = &st.view {
            return v.clone();
        }
        let mut view = match st.replica.planning_view(&self.cfg.fabric, now_ms()) {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "twin has nodes outside the fabric; planning on the fabric file alone");
                self.cfg.fabric.view()
            }
        };
        st.calibration.apply_under_owners(&mut view);
        st.inflight.apply(&mut view, now);
        let v = Arc::new(view);
        st.view = Some(v.clone());
        v
    }

    /// Whether the twin holds failure event `id`.
    pub fn has_failure(&self, id: &FailureId) -> bool {
        self.lock().replica.twin().has_failure(id)
    }

    /// Number of node records in the twin.
    pub fn twin_len(&self) -> usize {
        self.lock().replica.twin().len()
    }

    /// A snapshot of the twin.
    pub fn twin(&self) -> Twin {
        self.lock().replica.twin().clone()
    }

    /// Makes this agent run stages with `actuator` (set once, at start,
    /// before any job runs; the embedded fabric otherwise).
    pub fn set_actuator(&self, actuator: Arc<dyn crate::actuator::Actuator>) {
        let _ = self.actuator.set(actuator);
    }

    /// Marks the agent not ready until [`Agent::set_ready`], saying why.
    pub fn wait_for(&self, why: impl Into<String>) {
        *lock(&self.waiting_for) = Some(why.into());
    }

    /// Marks the agent ready.
    pub fn set_ready(&self) {
        *lock(&self.waiting_for) = None;
    }

    /// Why the agent is not ready, if it is not.
    pub fn not_ready_reason(&self) -> Option<String> {
        lock(&self.waiting_for).clone()
    }

    /// Where this agent's stages run.
    pub fn actuator(&self) -> Arc<dyn crate::actuator::Actuator> {
        self.actuator.get_or_init(|| Arc::new(crate::actuator::embedded::Embedded)).clone()
    }

    /// Runs job `id` on this agent's actuator, in the background.
    pub fn spawn_job(self: &Arc<Self>, id: String) {
        let key = id.clone();
        let (me, actuator) = (self.clone(), self.actuator());
        let task = tokio::spawn(async move {
            run::run_job(me.clone(), actuator, id.clone()).await;
            lock(&me.running).remove(&id);
        });
        let mut running = lock(&self.running);
        running.insert(key.clone(), task.abort_handle());
        if task.is_finished() {
            running.remove(&key);
        }
    }

    /// Folds an observed run into calibration.
    pub fn calibrate(&self, obs: &crate::jobs::StageObservation) {
        let mut st = self.lock();
        st.calibration.observe(&obs.node, obs.format, obs.model_ms, obs.compute_ms);
        st.view = None;
    }

    async fn request(&self, to: &str, msg: Message, timeout: Duration) -> Result<Message, String> {
        let (tx, rx) = oneshot::channel();
        let t0 = std::time::Instant::now();
        self.mesh
            .send(mesh::Command::Request { to: to.to_string(), frame: wire::encode(&msg), reply: tx })
            .await
            .map_err(|_| "mesh stopped".to_string())?;
        let frame = tokio::time::timeout(timeout, rx)
            .await
            .map_err(|_| format!("no answer from {to} within {timeout:?}"))?
            .map_err(|_| "mesh stopped".to_string())??;
        self.metrics.peer_seconds.observe_duration(t0.elapsed());
        wire::decode(&frame).map_err(|e| e.to_string())
    }

    /// Handles one mesh event.
    pub async fn on_mesh_event(self: &Arc<Self>, ev: mesh::Event) {
        match ev {
            mesh::Event::Gossip(frame) => {
                self.metrics.gossip_in.fetch_add(1, Ordering::Relaxed);
                match wire::decode(&frame) {
                    Ok(msg) => self.input(Input::Gossip(msg)).await,
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
                            let result = r.map(|resp| {
                                Box::new(wire::Forwarded {
                                    planner: resp.planner,
                                    created: resp.created,
                                    job: resp.job,
                                })
                            });
                            let result = result.map_err(|e| match e {
                                SubmitError::Spec(e) => wire::ForwardRefusal::Invalid(e.to_string()),
                                SubmitError::Store(e) => wire::ForwardRefusal::NotAccepted(e),
                                e @ SubmitError::Overloaded(_) => wire::ForwardRefusal::NotAccepted(e.to_string()),
                                other => wire::ForwardRefusal::Unplaceable(other.to_string()),
                            });
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
                    Ok(Message::ReserveStage { run, duration_ms }) => {
                        let node = run.node.clone();
                        let r = self.reserve_owned(&run, duration_ms);
                        if r.is_ok() {
                            self.publish_load(&node).await;
                        }
                        Message::StageScheduled(r)
                    }
                    Ok(Message::ReleaseStage { job, key, node, at }) => {
                        let released = self.release_owned(&job, key, at);
                        if released {
                            self.publish_load(&node).await;
                        }
                        Message::Ack
                    }
                    Ok(Message::Planned(theirs)) => Message::PlannedToo(self.on_planned(from.as_deref(), theirs)),
                    Ok(msg) => return self.input(Input::Request { from, id, msg }).await,
                };
                let _ = self.mesh.send(mesh::Command::Respond(id, wire::encode(&reply))).await;
            }
            mesh::Event::PeerUp(name) => self.input(Input::Connected(name)).await,
            mesh::Event::PeerDown(name) => self.input(Input::Disconnected(name)).await,
        }
    }

    /// The agent that runs stages on `node`: its owner, or this agent
    /// when nobody owns it.
    pub fn owner_of(&self, node: &str) -> String {
        self.lock().replica.owner_of(node)
    }

    /// Logs a decision of the job protocol it carried out (target
    /// `twinmesh::decision`, debug: `TWINMESH_LOG=twinmesh::decision=debug`
    /// shows them), one JSON object per line.
    pub(crate) fn decide(&self, d: twinmesh_common::lifecycle::Decision) {
        tracing::debug!(target: "twinmesh::decision", "{}", twinmesh_common::lifecycle::decision::log_line(&self.cfg.name, &d));
    }
}

/// Locks a mutex of the agent's; a panic elsewhere while it was held
/// leaves the data as it was, which is still the best there is.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
