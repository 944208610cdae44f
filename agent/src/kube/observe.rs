//! What Kubernetes objects tell the twin. Pure: a Node becomes facts about
//! the agent's own record, a stage pod's status becomes the progress of its
//! stage. Tested on objects as the API server serves them
//! (tests/fixtures/kube/).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node as KNode, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Deserialize;
use twinmesh_common::model::{Arch, Node, NodeStatus};
use twinmesh_common::scaling::Scaler;

use super::manifest::{ARCH_LABEL, ATTEMPT_LABEL, CLUSTER_LABEL, JOB_LABEL, STAGE_LABEL};

/// Parses a Kubernetes quantity (`"2"`, `"1500m"`, `"16Gi"`, `"8023452Ki"`,
/// `"1e3"`, `"500M"`) into its plain value.
pub fn parse_quantity(q: &str) -> Result<f64, String> {
    let q = q.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    // Decimal exponent form: 1e3, 2E-2.
    if let Some(exp) = suffix.strip_prefix(['e', 'E'])
        && let (Ok(m), Ok(e)) = (num.parse::<f64>(), exp.parse::<i32>())
    {
        return Ok(m * 10f64.powi(e));
    }
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        _ => return Err(format!("'{q}' is not a Kubernetes quantity (unknown suffix '{suffix}')")),
    };
    num.parse::<f64>().map(|v| v * mult).map_err(|_| format!("'{q}' is not a Kubernetes quantity"))
}

/// What a Node object says about a twin node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeFacts {
    /// Node name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Cluster from `dt.cluster.name`, if labelled.
    pub cluster: Option<String>,
    /// Architecture from `kubernetes.io/arch`, if known to twinmesh.
    pub arch: Option<Arch>,
    /// Allocatable CPU in fabric cores (real cores × the scaling ratio).
    pub cpu: f64,
    /// Allocatable memory in fabric GB.
    pub mem_gb: f64,
    /// The Ready condition is True.
    pub ready: bool,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// Keys of NoSchedule/NoExecute taints.
    pub blocking_taints: Vec<String>,
}

impl NodeFacts {
    /// Reads a Node object. Errors name the field that is missing or bad.
    pub fn from_node(n: &KNode, scaler: &Scaler) -> Result<NodeFacts, String> {
        let name = n.metadata.name.clone().ok_or("node without metadata.name")?;
        let labels = n.metadata.labels.clone().unwrap_or_default();
        let status = n.status.as_ref().ok_or_else(|| format!("node {name}: no status"))?;
        let alloc = status
            .allocatable
            .as_ref()
            .or(status.capacity.as_ref())
            .ok_or_else(|| format!("node {name}: status.allocatable missing"))?;
        let get = |k: &str| -> Result<f64, String> {
            let q = alloc.get(k).ok_or_else(|| format!("node {name}: status.allocatable.{k} missing"))?;
            parse_quantity(&q.0).map_err(|e| format!("node {name}: status.allocatable.{k}: {e}"))
        };
        let cpu_cores = get("cpu")?;
        let mem_bytes = get("memory")?;
        let ready =
            status.conditions.as_deref().unwrap_or_default().iter().any(|c| c.type_ == "Ready" && c.status == "True");
        let spec = n.spec.as_ref();
        let unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let blocking_taints = spec
            .and_then(|s| s.taints.as_ref())
            .map(|ts| {
                ts.iter()
                    .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
                    // The kubelet's own taint for a cordoned node is covered
                    // by `unschedulable`.
                    .filter(|t| t.key != "node.kubernetes.io/unschedulable")
                    .map(|t| t.key.clone())
                    .collect()
            })
            .unwrap_or_default();
        Ok(NodeFacts {
            cluster: labels.get(CLUSTER_LABEL).cloned(),
            arch: labels.get(ARCH_LABEL).and_then(|a| a.parse().ok()),
            name,
            labels,
            cpu: scaler.cores_from_millis((cpu_cores * 1000.0).round() as u64),
            mem_gb: mem_bytes / 1e9 * scaler.ratio,
            ready,
            unschedulable,
            blocking_taints,
        })
    }

    /// The twin's status for these facts.
    pub fn status(&self) -> NodeStatus {
        if !self.ready {
            NodeStatus::NotReady
        } else if self.unschedulable || !self.blocking_taints.is_empty() {
            NodeStatus::Cordoned
        } else {
            NodeStatus::Ready
        }
    }

    /// Writes the facts into the twin's record of the node: allocatable,
    /// labels, architecture and status. Leaves what the Node object does not
    /// know (hardware speed, formats, telemetry) alone.
    pub fn apply(&self, n: &mut Node) {
        n.allocatable.cpu = self.cpu;
        n.allocatable.mem_gb = self.mem_gb;
        for (k, v) in &self.labels {
            n.labels.insert(k.clone(), v.clone());
        }
        if let Some(a) = self.arch {
            n.hardware.arch = a;
        }
        n.status = self.status();
    }
}

/// Where a stage pod is in its life.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    /// Not yet on a node. `unschedulable` carries the scheduler's message
    /// when it said the pod cannot be placed.
    Pending {
        /// The scheduler's reason, when it refused.
        unschedulable: Option<String>,
    },
    /// Bound to a node, container not started.
    Scheduled {
        /// When it was bound (ms since the epoch), if the condition says.
        at_ms: Option<u64>,
    },
    /// The container runs.
    Running {
        /// Container start (ms since the epoch).
        started_ms: u64,
    },
    /// Exit 0.
    Succeeded {
        /// Container start (ms since the epoch).
        started_ms: u64,
        /// Container end (ms since the epoch).
        finished_ms: u64,
        /// What the work command measured (from its termination message),
        /// more precise than the timestamps' whole seconds.
        measured_ms: Option<f64>,
    },
    /// Failed or evicted: the stage must run again.
    Failed {
        /// Why, as Kubernetes says it.
        reason: String,
    },
}

/// A stage pod's progress.
#[derive(Clone, Debug, PartialEq)]
pub struct PodProgress {
    /// Pod name.
    pub pod: String,
    /// Job id (from the annotation, else the label).
    pub job: String,
    /// Stage id.
    pub stage: String,
    /// Attempt.
    pub attempt: u32,
    /// Node it is bound to.
    pub node: Option<String>,
    /// Phase.
    pub phase: Phase,
}

fn ms(t: &Time) -> u64 {
    t.0.as_millisecond().max(0) as u64
}

/// The termination message the `work` command writes.
#[derive(Deserialize)]
struct WorkReport {
    wall_ms: f64,
}

/// Reads a pod's progress; `None` for pods that are not twinmesh stage
/// pods.
pub fn pod_progress(p: &Pod) -> Option<PodProgress> {
    let labels = p.metadata.labels.as_ref()?;
    let ann = p.metadata.annotations.clone().unwrap_or_default();
    let job = ann.get(JOB_LABEL).or_else(|| labels.get(JOB_LABEL))?.clone();
    let stage = ann.get(STAGE_LABEL).or_else(|| labels.get(STAGE_LABEL))?.clone();
    let attempt = labels.get(ATTEMPT_LABEL).and_then(|a| a.parse().ok()).unwrap_or(1);
    let status = p.status.clone().unwrap_or_default();
    let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
    let conditions = status.conditions.unwrap_or_default();
    let scheduled = conditions.iter().find(|c| c.type_ == "PodScheduled");
    let cs = status.container_statuses.unwrap_or_default();
    let state = cs.first().and_then(|c| c.state.clone());
    let phase = match status.phase.as_deref() {
        Some("Succeeded") => {
            let t = state.as_ref().and_then(|s| s.terminated.clone());
            match t {
                Some(t) if t.exit_code == 0 => Phase::Succeeded {
                    started_ms: t.started_at.as_ref().map_or(0, ms),
                    finished_ms: t.finished_at.as_ref().map_or(0, ms),
                    measured_ms: t
                        .message
                        .as_deref()
                        .and_then(|m| serde_json::from_str::<WorkReport>(m.trim()).ok())
                        .map(|r| r.wall_ms),
                },
                Some(t) => Phase::Failed { reason: format!("exit code {}", t.exit_code) },
                None => Phase::Failed { reason: "succeeded without a terminated container".into() },
            }
        }
        Some("Failed") => {
            let why = state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| {
                    format!("{} (exit code {})", t.reason.clone().unwrap_or_else(|| "terminated".into()), t.exit_code)
                })
                .or_else(|| {
                    status.reason.clone().map(|r| format!("{r}: {}", status.message.clone().unwrap_or_default()))
                })
                .unwrap_or_else(|| "failed".into());
            Phase::Failed { reason: why }
        }
        _ => {
            if let Some(r) = state.as_ref().and_then(|s| s.running.as_ref()) {
                Phase::Running { started_ms: r.started_at.as_ref().map_or(0, ms) }
            } else if let Some(w) = state.as_ref().and_then(|s| s.waiting.as_ref())
                && matches!(
                    w.reason.as_deref(),
                    Some("ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "CreateContainerConfigError")
                )
            {
                Phase::Failed {
                    reason: format!(
                        "{}: {}",
                        w.reason.clone().unwrap_or_default(),
                        w.message.clone().unwrap_or_default()
                    ),
                }
            } else {
                match scheduled {
                    Some(c) if c.status == "True" => {
                        Phase::Scheduled { at_ms: c.last_transition_time.as_ref().map(ms) }
                    }
                    Some(c) if c.reason.as_deref() == Some("Unschedulable") => Phase::Pending {
                        unschedulable: Some(c.message.clone().unwrap_or_else(|| "unschedulable".into())),
                    },
                    _ => Phase::Pending { unschedulable: None },
                }
            }
        }
    };
    Some(PodProgress { pod: p.metadata.name.clone().unwrap_or_default(), job, stage, attempt, node, phase })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("2").unwrap(), 2.0);
        assert_eq!(parse_quantity("1500m").unwrap(), 1.5);
        assert_eq!(parse_quantity("16Gi").unwrap(), 16.0 * 1024.0 * 1024.0 * 1024.0);
        assert_eq!(parse_quantity("8023452Ki").unwrap(), 8_023_452.0 * 1024.0);
        assert_eq!(parse_quantity("500M").unwrap(), 5e8);
        assert_eq!(parse_quantity("1e3").unwrap(), 1000.0);
        assert_eq!(parse_quantity("250u").unwrap(), 250e-6);
        let e = parse_quantity("12Qi").unwrap_err();
        assert!(e.contains("unknown suffix 'Qi'"), "{e}");
        assert!(parse_quantity("abc").is_err());
    }
}
