//! The owner's side of calibration: the agent that runs a node sees every
//! run on it, learns how far the model is off there, and publishes the
//! factors in the node's record for every planner; at start it measures its
//! nodes' speed with a few probe runs. Also what it publishes for the
//! nodes it owns, with their resiliency from the replicated failure
//! history.

use std::collections::BTreeSet;
use std::sync::Arc;

use twinmesh_common::failures::FailureEvent;
use twinmesh_common::model::Node;
use twinmesh_common::replica::{AGENT_LABEL, Output};
use twinmesh_common::twin::Twin;

use super::{Agent, MESH_LABEL, now_ms};

/// A run on an owned node, to learn from when it ends.
#[derive(Clone, Debug)]
pub(super) struct OwnedRun {
    pub(super) node: String,
    pub(super) format: twinmesh_common::model::Format,
    pub(super) model_ms: f64,
    pub(super) end: f64,
    pub(super) duration: f64,
    pub(super) released: bool,
}

impl Agent {
    /// Measures the nodes this agent stands for on the embedded fabric:
    /// a few short probe runs each (1 s of reference work) in every format
    /// the node offers, whose observed / modelled ratio seeds the owner's
    /// calibration — what a real agent's probes at start (its CPU, and
    /// each emulator it runs) tell it about its own machine that the
    /// fabric file does not. Published with the node records.
    pub async fn probe_own_speed(self: &Arc<Self>) {
        use twinmesh_common::truth;
        const PROBES: usize = 4;
        let view = self.view();
        let learned: BTreeSet<String> = {
            let mut st = self.lock();
            let mut nodes = BTreeSet::new();
            for node in &self.cfg.owned {
                let Some(n) = view.node_index(&node.name) else { continue };
                for f in node.runtimes.iter() {
                    let model = truth::model_ms(&view, n, 1000.0, f);
                    for i in 0..PROBES {
                        let t = truth::true_ms(&view, n, model, f, &format!("probe/{}/{f}/{i}", node.name));
                        st.owner_calibration.observe(&node.name, f, model, t);
                    }
                    nodes.insert(node.name.clone());
                }
            }
            nodes
        };
        self.publish_calibration(&learned).await;
    }

    async fn publish_calibration(self: &Arc<Self>, nodes: &BTreeSet<String>) {
        if nodes.is_empty() {
            return;
        }
        let factors: Vec<(String, twinmesh_common::model::Format, f64)> = {
            let st = self.lock();
            st.owner_calibration.factors().map(|(n, f, v)| (n.to_string(), f, (v.value * 1e4).round() / 1e4)).collect()
        };
        // The spread of run times, from the node's most observed format:
        // what planners draw prediction intervals with.
        let spread: std::collections::BTreeMap<String, f64> = {
            let st = self.lock();
            let mut best: std::collections::BTreeMap<String, (u64, f64)> = Default::default();
            for (n, _, v) in st.owner_calibration.factors() {
                if let Some(sg) = v.sigma() {
                    let e = best.entry(n.to_string()).or_insert((0, sg));
                    if v.samples > e.0 {
                        *e = (v.samples, (sg * 1e4).round() / 1e4);
                    }
                }
            }
            best.into_iter().map(|(n, (_, sg))| (n, sg)).collect()
        };
        self.publish_own(false, |n| {
            if nodes.contains(&n.name) {
                for (node, f, v) in &factors {
                    if node == &n.name {
                        n.calibration.insert(*f, *v);
                    }
                }
                if let Some(sg) = spread.get(&n.name) {
                    n.jitter_sigma = Some(*sg);
                }
            }
        })
        .await;
    }

    /// Gives back a run's booking on an owned node; a run cut short
    /// teaches calibration nothing.
    pub(super) fn release_owned(&self, job: &str, key: twinmesh_common::execution::RunKey, at: f64) -> bool {
        let mut st = self.lock();
        if let Some(r) = st.owned_runs.get_mut(&(job.to_string(), key)) {
            r.released = true;
        }
        st.replica.release(job, key, at)
    }

    /// The owner's side of calibration: every run on an owned node that
    /// has ended is folded into the node's factors, which its record then
    /// carries to every planner.
    pub async fn learn_from_finished_runs(self: &Arc<Self>) {
        let now = self.fabric_now();
        let learned: BTreeSet<String> = {
            let mut st = self.lock();
            let ended: Vec<_> = st.owned_runs.iter().filter(|(_, r)| r.end <= now).map(|(k, _)| k.clone()).collect();
            let mut nodes = BTreeSet::new();
            for k in ended {
                let r = st.owned_runs.remove(&k).expect("listed");
                if !r.released {
                    st.owner_calibration.observe(&r.node, r.format, r.model_ms, r.duration);
                    nodes.insert(r.node);
                }
            }
            nodes
        };
        self.publish_calibration(&learned).await;
    }
}

impl Agent {
    /// Another agent claimed a node this agent publishes: counted, logged,
    /// and placement re-read (the replica settled who keeps it).
    pub(super) fn on_conflict(&self, c: &twinmesh_common::replica::OwnershipConflict) {
        self.metrics.ownership_conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().view = None;
        if c.kept {
            tracing::warn!(node = %c.node, claimant = %c.claimant, "another agent claims a node this agent owns; kept it (a node's own agent, else the first name, keeps it)");
        } else {
            tracing::error!(node = %c.node, owner = %c.claimant, "another agent owns this node; stopped publishing it (check --own-cluster: one agent per cluster)");
        }
    }

    /// Nodes this agent gave up to another agent's claim, with the owner.
    pub fn yielded(&self) -> Vec<(String, String)> {
        self.lock().replica.yielded().map(|(n, a)| (n.to_string(), a.to_string())).collect()
    }
}

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
