//! Stages on nodes this agent owns — booked with the replica's rule, timed
//! by the embedded fabric's ground truth — and the requests that reach the
//! owners of other nodes.

use std::sync::Arc;
use std::time::Duration;

use twinmesh_common::execution::Refusal;
use twinmesh_common::lifecycle::{Ask, Booking, BookingInput, BookingOutput, Decision};
use twinmesh_common::wire::{Message, StageRun, StageSlot};

use super::{Agent, FABRIC_EPOCH_MS, OwnedRun, now_ms};

impl Agent {
    /// Absolute fabric time now (ms since [`FABRIC_EPOCH_MS`]): wall time
    /// divided by the time scale, the same on every agent that shares the
    /// scale.
    pub fn fabric_now(&self) -> f64 {
        now_ms().saturating_sub(FABRIC_EPOCH_MS) as f64 / self.cfg.time_scale.max(1e-9)
    }

    /// Wall ms (Unix) of absolute fabric time `t`.
    pub fn wall_of(&self, t: f64) -> f64 {
        FABRIC_EPOCH_MS as f64 + t * self.cfg.time_scale.max(1e-9)
    }

    /// Books a stage on a node this agent runs: the virtual counterpart of
    /// the kubelet admitting a pod. The run time comes from the ground
    /// truth (`common::truth`), which only the executing side knows; the
    /// booking rule is the replica's.
    pub fn book_stage(&self, run: &StageRun) -> Result<StageSlot, Refusal> {
        use twinmesh_common::truth;
        let view = self.view();
        let n = view
            .node_index(&run.node)
            .ok_or_else(|| Refusal::Other(format!("node '{}' is not in the twin", run.node)))?;
        if !view.nodes.ready[n] {
            return Err(Refusal::NodeDown);
        }
        let (model, truth) =
            truth::run(&view, n, run.compute.duration_ms, run.format, &run.job, &run.stage, run.key.attempt);
        let now = self.fabric_now();
        let mut st = self.lock();
        let b = st.replica.book(
            &run.job,
            run.key,
            &run.node,
            (view.nodes.alloc_cpu[n], view.nodes.alloc_mem[n]),
            (run.compute.cpu, run.compute.mem_gb),
            run.ready_at,
            truth,
            now,
        )?;
        st.owned_runs.entry((run.job.clone(), run.key)).or_insert(OwnedRun {
            node: run.node.clone(),
            format: run.format,
            model_ms: model,
            end: b.end,
            duration: truth,
            released: false,
        });
        Ok(StageSlot { start: b.start, end: b.end, model_ms: model })
    }

    /// Publishes the load of an owned node (allocated resources, backlog).
    pub async fn publish_load(self: &Arc<Self>, node: &str) {
        if !self.cfg.owned.iter().any(|n| n.name == node) {
            return;
        }
        let now = self.fabric_now();
        let (cpu, mem, backlog) = self.lock().replica.load(node, now);
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

    /// Asks `node`'s owner to run a stage; returns its slot. The job
    /// protocol's `Booking` decides how often and how long to ask, and
    /// what this agent's view counts meanwhile.
    pub async fn run_stage(self: &Arc<Self>, run: StageRun) -> Result<StageSlot, Refusal> {
        self.ask_owner(Ask::Book, run, 0.0).await
    }

    /// Carries out one `Booking` (a booking or a reservation).
    pub(super) async fn ask_owner(
        self: &Arc<Self>,
        ask: Ask,
        run: StageRun,
        duration_ms: f64,
    ) -> Result<StageSlot, Refusal> {
        let owner = self.owner_of(&run.node);
        let local = owner == self.cfg.name;
        let health = || {
            let st = self.lock();
            (st.replica.given_up(&owner), st.replica.timeout_for(&owner))
        };
        let (given_up, rtt) = health();
        let mut out = Vec::new();
        let mut b = Booking::new(&self.cfg.lifecycle, ask, local, given_up, rtt, now_ms() as f64, &mut out);
        let mut result: Option<Result<StageSlot, Refusal>> = None;
        while let Some(o) = (!out.is_empty()).then(|| out.remove(0)) {
            let input = match o {
                BookingOutput::BookHere => {
                    let r = match ask {
                        Ask::Book | Ask::Confirm => self.book_stage(&run),
                        Ask::Reserve => self.reserve_owned(&run, duration_ms),
                    };
                    if r.is_ok() {
                        self.publish_load(&run.node).await;
                    }
                    let booked = r.is_ok();
                    result = Some(r);
                    BookingInput::Answered { booked }
                }
                BookingOutput::Send { timeout_ms, attempt } => {
                    if ask == Ask::Book {
                        let (job, stage) = (run.job.clone(), run.stage.clone());
                        self.decide(Decision::Book { job, stage, owner: owner.clone(), attempt });
                    }
                    let msg = match ask {
                        Ask::Book | Ask::Confirm => Message::RunStage(run.clone()),
                        Ask::Reserve => Message::ReserveStage { run: run.clone(), duration_ms },
                    };
                    let timeout = Duration::from_secs_f64(timeout_ms / 1000.0);
                    match self.request(&owner, msg, timeout).await {
                        Ok(Message::StageScheduled(r)) => {
                            let booked = r.is_ok();
                            result = Some(r);
                            BookingInput::Answered { booked }
                        }
                        Ok(other) => return Err(Refusal::Other(format!("{owner} answered {}", other.kind()))),
                        Err(_) => {
                            let (given_up, rtt_timeout_ms) = health();
                            BookingInput::Silent { given_up, rtt_timeout_ms }
                        }
                    }
                }
                BookingOutput::Hold { until } => {
                    self.hold(&run, Some(until));
                    continue;
                }
                BookingOutput::Unhold => {
                    self.hold(&run, None);
                    continue;
                }
                BookingOutput::Unreachable => {
                    if ask == Ask::Book {
                        let (job, stage) = (run.job.clone(), run.stage.clone());
                        self.decide(Decision::Unreachable { job, stage, owner: owner.clone() });
                    }
                    return Err(Refusal::Unreachable);
                }
                BookingOutput::Answer { .. } => {
                    return result.unwrap_or_else(|| Err(Refusal::Other("no answer recorded".into())));
                }
            };
            b.handle(input, now_ms() as f64, &mut out);
        }
        result.unwrap_or(Err(Refusal::Unreachable))
    }

    /// Placements in flight per node: (node, how many, cores).
    pub fn inflight(&self) -> Vec<(String, usize, f64)> {
        self.lock().inflight.nodes().map(|(n, k, c)| (n.to_string(), k, c)).collect()
    }

    /// `run`'s placement counts in this agent's view until `until` (wall
    /// ms) instead of what counted before (`None`: no longer).
    fn hold(&self, run: &StageRun, until: Option<f64>) {
        let key = format!("{}/{}", run.job, run.stage);
        let mut st = self.lock();
        let released = st.inflight.release(&run.node, &key);
        if let Some(until) = until {
            st.inflight.reserve(&run.node, &key, run.compute.cpu, run.compute.mem_gb, until);
        }
        // Every booking passes here: rebuild the view only if it changes.
        if released || until.is_some() {
            st.view = None;
        }
    }

    /// Asks `node`'s owner to give back a run's booking from `at` on.
    pub async fn release_stage(
        self: &Arc<Self>,
        job: &str,
        key: twinmesh_common::execution::RunKey,
        node: &str,
        at: f64,
    ) {
        let owner = self.owner_of(node);
        if owner == self.cfg.name {
            let released = self.release_owned(job, key, at);
            if released {
                self.publish_load(node).await;
            }
            return;
        }
        let msg = Message::ReleaseStage { job: job.to_string(), key, node: node.to_string(), at };
        let _ = self.request(&owner, msg, Duration::from_secs(2)).await;
    }

    /// The earliest time (Unix ms) in `[from_ms, to_ms)` at which `node`
    /// was made unavailable, if it was.
    pub fn went_down(&self, node: &str, from_ms: u64, to_ms: u64) -> Option<u64> {
        self.lock()
            .replica
            .twin()
            .failures()
            .filter(|f| f.node == node && f.kind.makes_unavailable() && f.at_ms >= from_ms && f.at_ms < to_ms)
            .map(|f| f.at_ms)
            .min()
    }
}
