//! Failures observed here, and the precursors of failure that the
//! preemptive rule acts on (`common::forecast`, `common::preempt`).

use std::sync::Arc;

use tracing::warn;
use twinmesh_common::failures::{FailureEvent, FailureKind};
use twinmesh_common::replica::Output;
use twinmesh_common::twin::{FailureId, NodeRecord};
use twinmesh_common::view::FabricView;

use super::{Agent, now_ms};

/// When each node of a view last showed a precursor (fabric ms).
pub type Precursors = Arc<Vec<Option<f64>>>;

impl Agent {
    /// Records a failure (or recovery) observed or injected here and
    /// spreads it.
    pub async fn observe_failure(self: &Arc<Self>, node: &str, kind: FailureKind, duration_ms: u64) -> FailureEvent {
        let (ev, outputs) = {
            let mut st = self.lock();
            st.failure_seq += 1;
            let ev = FailureEvent {
                id: FailureId { reporter: self.cfg.name.clone(), seq: st.failure_seq },
                node: node.to_string(),
                kind,
                at_ms: now_ms(),
                duration_ms,
            };
            let out = st.replica.report_failure(ev.clone());
            st.view = None;
            (ev, out)
        };
        // Our own failure reports are stored before they are spread.
        if let Err(e) = self.store.put_twin(&[], std::slice::from_ref(&ev)).await {
            warn!(error = %e, "storing failure");
        }
        self.note_precursors(&[], std::slice::from_ref(&ev));
        let gossip: Vec<Output> = outputs.into_iter().filter(|o| matches!(o, Output::Publish(_))).collect();
        self.carry_out(gossip).await;
        ev
    }

    /// When each node of `view` last showed a precursor of failure (fabric
    /// ms): a thermal-throttle or network-degradation event in the twin, or
    /// telemetry past the seed's thresholds (`common::forecast`). Read once
    /// per view: a new view comes with every change of the twin.
    pub fn precursors(&self, view: &Arc<FabricView>) -> Precursors {
        let now = self.fabric_now();
        let zero = self.wall_of(0.0);
        let scale = self.cfg.time_scale.max(1e-9);
        let mut out = vec![None; view.nodes.len()];
        let mut st = self.lock();
        if let Some((v, p)) = &st.precursors {
            if Arc::ptr_eq(v, view) {
                return p.clone();
            }
        }
        for f in st.replica.twin().failures() {
            if !matches!(f.kind, FailureKind::ThermalThrottle | FailureKind::NetworkDegradation) {
                continue;
            }
            if let Some(n) = view.node_index(&f.node) {
                let at = (f.at_ms as f64 - zero) / scale;
                if at <= now && out[n].is_none_or(|t: f64| at > t) {
                    out[n] = Some(at);
                }
            }
        }
        for r in st.replica.twin().records() {
            if twinmesh_common::forecast::precursor_in(&r.node.telemetry).is_some() {
                if let Some(n) = view.node_index(&r.node.name) {
                    out[n] = Some(now);
                }
            }
        }
        let out = Arc::new(out);
        st.precursors = Some((view.clone(), out.clone()));
        out
    }

    /// Wakes running executions when a precursor arrives (a thermal or
    /// network event, or a node record whose telemetry shows one).
    pub(super) fn note_precursors(&self, records: &[NodeRecord], failures: &[FailureEvent]) {
        let warned =
            failures.iter().any(|f| matches!(f.kind, FailureKind::ThermalThrottle | FailureKind::NetworkDegradation))
                || records.iter().any(|r| twinmesh_common::forecast::precursor_in(&r.node.telemetry).is_some());
        if warned {
            self.precursor_epoch.send_modify(|e| *e += 1);
        }
    }

    /// Changes whenever a precursor of failure arrives.
    pub fn precursor_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.precursor_epoch.subscribe()
    }
}
