//! This agent's own node records: what it publishes for the nodes it
//! owns, with their resiliency from the replicated failure history.

use std::sync::Arc;

use twinmesh_common::failures::FailureEvent;
use twinmesh_common::model::Node;
use twinmesh_common::replica::{AGENT_LABEL, Output};
use twinmesh_common::twin::Twin;

use super::{Agent, MESH_LABEL, now_ms};

impl Agent {
    /// Publishes this agent's own records, stores and gossips them:
    /// every one when `force` (at start, so a restarted agent supersedes
    /// what it published before), otherwise only those `update` changed.
    pub async fn publish_own(self: &Arc<Self>, force: bool, update: impl Fn(&mut Node)) {
        let outputs: Vec<Output> = {
            let mut st = self.lock();
            let mut out = Vec::new();
            for base in &self.cfg.owned {
                let current = st.replica.twin().record(&base.name).map(|r| r.node.clone());
                let mut n = current.clone().unwrap_or_else(|| base.clone());
                n.labels.insert(AGENT_LABEL.into(), self.cfg.name.clone());
                if n.name == self.cfg.name && !self.cfg.mesh_addrs.is_empty() {
                    n.labels.insert(MESH_LABEL.into(), self.cfg.mesh_addrs.join(" "));
                }
                update(&mut n);
                n.resiliency = self.resiliency_of(st.replica.twin(), &n);
                if force || current.as_ref() != Some(&n) {
                    out.extend(st.replica.update_own(n));
                }
            }
            out
        };
        self.carry_out(outputs).await;
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
}
