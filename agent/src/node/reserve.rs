//! Reservations: when a plan starts, every later stage is reserved with
//! its node's owner for its predicted window (`common::capacity`'s rules),
//! so work planned afterwards goes around the whole plan, and the windows
//! the owners answer are the plan's committed prediction.

use std::sync::Arc;

use twinmesh_common::execution::Refusal;
use twinmesh_common::wire::{StageRun, StageSlot};

use super::Agent;

impl Agent {
    /// Reserves a stage on a node this agent runs, for `duration_ms` from
    /// the earliest fit at or after its predicted ready time.
    pub(super) fn reserve_owned(&self, run: &StageRun, duration_ms: f64) -> Result<StageSlot, Refusal> {
        let view = self.view();
        let n = view
            .node_index(&run.node)
            .ok_or_else(|| Refusal::Other(format!("node '{}' is not in the twin", run.node)))?;
        if !view.nodes.ready[n] {
            return Err(Refusal::NodeDown);
        }
        if !(duration_ms.is_finite() && duration_ms >= 0.0 && run.ready_at.is_finite()) {
            return Err(Refusal::Other(format!(
                "reservation of '{}' on '{}': run time {duration_ms} ms from {} is not a window",
                run.stage, run.node, run.ready_at
            )));
        }
        let now = self.fabric_now();
        let b = self.lock().replica.reserve(
            &run.job,
            run.key,
            &run.node,
            (view.nodes.alloc_cpu[n], view.nodes.alloc_mem[n]),
            (run.compute.cpu, run.compute.mem_gb),
            run.ready_at,
            duration_ms,
            now,
        )?;
        Ok(StageSlot { start: b.start, end: b.end, model_ms: duration_ms })
    }

    /// Asks `run.node`'s owner to reserve the stage (`Ask::Reserve`: one
    /// try by default; a lost reservation only leaves the stage to be
    /// booked when it is ready).
    pub async fn reserve_stage(self: &Arc<Self>, run: StageRun, duration_ms: f64) -> Result<StageSlot, Refusal> {
        self.ask_owner(twinmesh_common::lifecycle::Ask::Reserve, run, duration_ms).await
    }
}
