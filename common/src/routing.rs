//! Which agent plans a job: the one nearest the job's origin.
//!
//! In order: the agent that owns the origin node (if alive), else the
//! healthiest live agent in the origin cluster, else the live agent whose
//! cluster is closest to the origin by the latency matrix. Agents the
//! caller found unreachable are skipped, and the route says why it ended
//! where it did.

use serde::{Deserialize, Serialize};

use crate::job::Origin;
use crate::latency::LatencyMatrix;

/// What routing knows of one agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Agent name (its node's name).
    pub name: String,
    /// Its cluster.
    pub cluster: String,
    /// Node names whose records it owns.
    pub owns: Vec<String>,
    /// Whether it is believed alive.
    pub alive: bool,
    /// Resiliency of its node.
    pub resiliency: f64,
    /// CPU % of its node.
    pub cpu_pct: f64,
}

/// Why a route was chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
// Externally tagged (serde's default): routes are stored with postcard,
// which cannot read internally tagged enums.
#[serde(rename_all = "snake_case")]
pub enum RouteReason {
    /// The agent owns the origin node.
    OriginNode,
    /// The healthiest agent of the origin cluster.
    OriginCluster,
    /// No agent in the origin cluster could take it: nearest by latency.
    Nearest {
        /// Latency from the origin cluster (ms).
        latency_ms: f64,
    },
}

/// The routing decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// Agent that should plan the job.
    pub agent: String,
    /// Why.
    pub reason: RouteReason,
    /// Agents skipped because the caller could not reach them.
    pub skipped: Vec<String>,
}

fn health(a: &AgentInfo) -> (f64, f64) {
    (a.resiliency, -a.cpu_pct)
}

/// Routes a job from `origin` among `agents`, skipping `unreachable`.
pub fn route(origin: &Origin, agents: &[AgentInfo], latency: &LatencyMatrix, unreachable: &[String]) -> Option<Route> {
    let usable = |a: &&AgentInfo| a.alive && !unreachable.contains(&a.name);
    let skipped: Vec<String> =
        agents.iter().filter(|a| unreachable.contains(&a.name)).map(|a| a.name.clone()).collect();
    let done = |a: &AgentInfo, reason| Some(Route { agent: a.name.clone(), reason, skipped: skipped.clone() });
    if let Some(node) = &origin.node {
        if let Some(a) = agents.iter().filter(usable).find(|a| &a.name == node || a.owns.contains(node)) {
            return done(a, RouteReason::OriginNode);
        }
    }
    let best_in_cluster = agents.iter().filter(usable).filter(|a| a.cluster == origin.cluster).max_by(|a, b| {
        health(a).partial_cmp(&health(b)).unwrap_or(std::cmp::Ordering::Equal).then(b.name.cmp(&a.name))
    });
    if let Some(a) = best_in_cluster {
        return done(a, RouteReason::OriginCluster);
    }
    let oc = latency.index_of(&origin.cluster);
    let lat = |a: &AgentInfo| match (oc, latency.index_of(&a.cluster)) {
        (Some(o), Some(c)) => latency.latency(o, c),
        _ => f64::INFINITY,
    };
    let a = agents.iter().filter(usable).min_by(|a, b| {
        lat(a)
            .total_cmp(&lat(b))
            .then(health(b).partial_cmp(&health(a)).unwrap_or(std::cmp::Ordering::Equal))
            .then(a.name.cmp(&b.name))
    })?;
    done(a, RouteReason::Nearest { latency_ms: lat(a) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, cluster: &str, r: f64) -> AgentInfo {
        AgentInfo {
            name: name.into(),
            cluster: cluster.into(),
            owns: vec![],
            alive: true,
            resiliency: r,
            cpu_pct: 10.0,
        }
    }

    fn origin(cluster: &str, node: Option<&str>) -> Origin {
        Origin { cluster: cluster.into(), node: node.map(String::from) }
    }

    #[test]
    fn origin_node_then_cluster_then_nearest() {
        let f = crate::fabric::reference();
        let mut agents = vec![
            agent("pan1-phone-01", "phone-pan-1", 0.6),
            agent("pan1-phone-02", "phone-pan-1", 0.7),
            agent("edge-srv-01", "edge-microdc", 0.9),
            agent("dc-x86-01", "dc-core", 0.97),
        ];
        agents[0].owns.push("pan1-phone-09".into());
        let r = route(&origin("phone-pan-1", Some("pan1-phone-09")), &agents, &f.latency, &[]).unwrap();
        assert_eq!((r.agent.as_str(), &r.reason), ("pan1-phone-01", &RouteReason::OriginNode));
        // Origin node's agent unreachable: the healthiest in the cluster.
        let r = route(&origin("phone-pan-1", Some("pan1-phone-09")), &agents, &f.latency, &["pan1-phone-01".into()])
            .unwrap();
        assert_eq!((r.agent.as_str(), &r.reason), ("pan1-phone-02", &RouteReason::OriginCluster));
        assert_eq!(r.skipped, vec!["pan1-phone-01".to_string()]);
        // Whole cluster down: edge-microdc is 15 ms from phone-pan-1, dc-core 50.
        agents[1].alive = false;
        let r = route(&origin("phone-pan-1", None), &agents, &f.latency, &["pan1-phone-01".into()]).unwrap();
        assert_eq!(r.agent, "edge-srv-01");
        assert_eq!(r.reason, RouteReason::Nearest { latency_ms: 15.0 });
        assert!(route(&origin("x", None), &[], &f.latency, &[]).is_none());
    }
}
