//! Stages on nodes this agent owns — booked with the replica's rule, timed
//! by the embedded fabric's ground truth — and the requests that reach the
//! owners of other nodes.

use std::sync::Arc;
use std::time::Duration;

use twinmesh_common::execution::Refusal;
use twinmesh_common::wire::{Message, StageRun, StageSlot};

use super::{Agent, FABRIC_EPOCH_MS, OwnedRun, now_ms};

/// Times an unanswered booking request is sent before the run is taken as
/// unreachable (each waiting twice as long as the one before).
const BOOKING_TRIES: usize = 3;

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

    /// Asks `node`'s owner to run a stage; returns its slot.
    pub async fn run_stage(self: &Arc<Self>, run: StageRun) -> Result<StageSlot, Refusal> {
        let owner = self.owner_of(&run.node);
        if owner == self.cfg.name {
            let node = run.node.clone();
            let r = self.book_stage(&run);
            if r.is_ok() {
                // Published at once: the booking no longer needs counting.
                self.settle_inflight(&run, 0.0);
                self.publish_load(&node).await;
            }
            return r;
        }
        // On its way to the owner: counted here until its answer and the
        // owner's record that shows it (a gossip hop) have arrived.
        self.settle_inflight(&run, 10_000.0);
        // A booking request is idempotent (the owner gives a repeated
        // request for the same run the same booking), so an unanswered one
        // is asked again, waiting twice as long, until the failure detector
        // gives the owner up: a slow or starved owner is not taken for a
        // lost one.
        let mut wait = 1.0;
        for _ in 0..BOOKING_TRIES {
            let (given_up, rtt_timeout) = {
                let st = self.lock();
                (st.replica.given_up(&owner), st.replica.timeout_for(&owner))
            };
            if given_up {
                break;
            }
            let timeout = Duration::from_secs_f64((rtt_timeout / 1000.0).clamp(wait, 5.0 * wait));
            match self.request(&owner, Message::RunStage(run.clone()), timeout).await {
                Ok(Message::StageScheduled(r)) => {
                    self.settle_inflight(&run, if r.is_ok() { 2_000.0 } else { 0.0 });
                    return r;
                }
                Ok(other) => return Err(Refusal::Other(format!("{owner} answered {}", other.kind()))),
                Err(_) => wait *= 2.0,
            }
        }
        Err(Refusal::Unreachable)
    }

    /// Placements in flight per node: (node, how many, cores).
    pub fn inflight(&self) -> Vec<(String, usize, f64)> {
        self.lock().inflight.nodes().map(|(n, k, c)| (n.to_string(), k, c)).collect()
    }

    /// `run`'s placement counts in this agent's view for `for_ms` more
    /// (wall) instead of what its plan reserved (0: no longer).
    fn settle_inflight(&self, run: &StageRun, for_ms: f64) {
        let key = format!("{}/{}", run.job, run.stage);
        let mut st = self.lock();
        let released = st.inflight.release(&run.node, &key);
        if for_ms > 0.0 {
            let until = now_ms() as f64 + for_ms;
            st.inflight.reserve(&run.node, &key, run.compute.cpu, run.compute.mem_gb, until);
        }
        // Every booking passes here: rebuild the view only if it changes.
        if released || for_ms > 0.0 {
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
