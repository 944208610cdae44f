//! This agent's own Node: its object becomes the agent's twin record
//! (allocatable, labels, readiness, cordon), a Ready → NotReady change
//! becomes a failure event, injected failures past their time are
//! reverted, and the Metrics API, when the cluster has one, supplies the
//! node's CPU and memory use.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node as KNode;
use tracing::{info, warn};
use twinmesh_common::failures::FailureKind;
use twinmesh_common::model::{NodeStatus, Telemetry};
use twinmesh_common::scaling::Scaler;

use super::client::{INJECTED_ANNOTATION, Kube, REVERT_AT_ANNOTATION, THERMAL_TAINT};
use super::observe::NodeFacts;
use crate::node::{Agent, now_ms};

/// What to undo on a node whose injected failure has run its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revert {
    /// Uncordon.
    Cordon,
    /// Remove the thermal taint.
    Taint,
}

/// Whether node `n` carries an injection whose revert time has passed.
pub fn revert_due(n: &KNode, now_ms: u64) -> Option<Revert> {
    let ann = n.metadata.annotations.as_ref()?;
    let at: u64 = ann.get(REVERT_AT_ANNOTATION)?.parse().ok()?;
    if at > now_ms {
        return None;
    }
    match ann.get(INJECTED_ANNOTATION).map(String::as_str) {
        Some("cordon") => Some(Revert::Cordon),
        Some("taint") => Some(Revert::Taint),
        _ => None,
    }
}

/// What a change of a node's status means for its failure history.
pub fn status_event(before: Option<NodeStatus>, after: NodeStatus) -> Option<FailureKind> {
    match (before, after) {
        (Some(NodeStatus::Ready | NodeStatus::Cordoned), NodeStatus::NotReady) => Some(FailureKind::NodeDown),
        (Some(NodeStatus::NotReady), NodeStatus::Ready | NodeStatus::Cordoned) => Some(FailureKind::Recovered),
        _ => None,
    }
}

/// Applies one version of this agent's Node object.
pub async fn on_node(agent: &Arc<Agent>, kube: &Kube, n: &KNode, last: &mut Option<NodeStatus>) {
    let facts = match NodeFacts::from_node(n, &Scaler::default()) {
        Ok(f) => f,
        Err(e) => {
            warn!(error = %e, "ignoring a Node object the agent cannot read");
            return;
        }
    };
    if let Some(c) = &facts.cluster
        && c != &agent.cfg.cluster
    {
        warn!(node = %facts.name, label = %c, configured = %agent.cfg.cluster, "dt.cluster.name differs from the agent's cluster");
    }
    let status = facts.status();
    if let Some(kind) = status_event(*last, status) {
        info!(node = %facts.name, ?kind, "node status changed");
        agent.observe_failure(&facts.name, kind, 0).await;
    }
    *last = Some(status);
    agent.set_ready();
    agent
        .publish_own(false, |rec| {
            if rec.name == facts.name {
                facts.apply(rec);
            }
        })
        .await;
    match revert_due(n, now_ms()) {
        Some(Revert::Cordon) => {
            info!(node = %facts.name, "injected cordon expired; uncordoning");
            if let Err(e) = kube.cordon(&agent.cfg.cluster, &facts.name, false, None).await {
                warn!(error = %e, "uncordon failed");
            }
        }
        Some(Revert::Taint) => {
            info!(node = %facts.name, "injected taint expired; removing it");
            if let Err(e) = kube.taint(&agent.cfg.cluster, &facts.name, THERMAL_TAINT, false, None).await {
                warn!(error = %e, "untaint failed");
            }
        }
        None => {}
    }
}

/// Follows this agent's Node for as long as the agent runs.
pub async fn watch_own(agent: Arc<Agent>, kube: Arc<Kube>) {
    let mut last = None;
    let (cluster, name) = (agent.cfg.cluster.clone(), agent.cfg.name.clone());
    let stream = match kube.watch_node(&cluster, &name) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot watch this agent's Node; its record keeps the fabric's values");
            return;
        }
    };
    let mut stream = std::pin::pin!(stream);
    while let Some(n) = stream.next().await {
        on_node(&agent, &kube, &n, &mut last).await;
    }
}

/// Overrides sysinfo's CPU and memory figures with the Metrics API's,
/// relative to the node's real capacity.
pub fn metrics_telemetry(mut t: Telemetry, used: (f64, f64), capacity: (f64, f64)) -> Telemetry {
    if capacity.0 > 0.0 {
        t.cpu_pct = (used.0 / capacity.0 * 100.0).clamp(0.0, 100.0);
    }
    if capacity.1 > 0.0 {
        t.mem_pct = (used.1 / capacity.1 * 100.0).clamp(0.0, 100.0);
    }
    t
}
