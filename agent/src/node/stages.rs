//! Stages on nodes this agent owns — booked with the replica's rule, timed
//! by the embedded fabric's ground truth — and the requests that reach the
//! owners of other nodes.

use std::sync::Arc;
use std::time::Duration;

use twinmesh_common::execution::Refusal;
use twinmesh_common::wire::{Message, StageRun, StageSlot};

use super::{Agent, OwnedRun};

/// Times an unanswered booking request is sent before the run is taken as
/// unreachable (each waiting twice as long as the one before).
const BOOKING_TRIES: usize = 3;

impl Agent {
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
                self.publish_load(&node).await;
            }
            return r;
        }
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
                Ok(Message::StageScheduled(r)) => return r,
                Ok(other) => return Err(Refusal::Other(format!("{owner} answered {}", other.kind()))),
                Err(_) => wait *= 2.0,
            }
        }
        Err(Refusal::Unreachable)
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
