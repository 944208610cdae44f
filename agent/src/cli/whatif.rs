//! `twinmesh plan JOB --what-if SCENARIO`: the preemptive actions the twin
//! would take on the job's plan at a moment of its run, given precursors
//! (and, optionally, a twin snapshot as `GET /v1/twin` returns it).
//!
//! The scenario (YAML or JSON):
//!
//! ```yaml
//! at_ms: 4000                  # job time to look at (submitted at 0)
//! precursors:                  # precursors of failure, in job time
//!   - { node: gamer-01, at_ms: 3500 }
//! twin: twin.json              # optional: GET /v1/twin saved to a file
//! precision: 0.6               # optional: the precursors' precision
//! ```
//!
//! With `twin`, its node records replace the fabric file's, nodes down in
//! its failure history are down, and its thermal-throttle and
//! network-degradation events are precursors too (placed in job time so
//! that the snapshot's latest event is at `at_ms`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use twinmesh_common::fabric::Fabric;
use twinmesh_common::failures::{FailureEvent, FailureKind, down_nodes};
use twinmesh_common::forecast::ForecastConfig;
use twinmesh_common::job::Job;
use twinmesh_common::model::{Node, NodeStatus};
use twinmesh_common::plan::Plan;
use twinmesh_common::preempt::{PreemptConfig, WhatIf, what_if};
use twinmesh_common::twin::NodeRecord;
use twinmesh_common::view::{FabricView, FormatOverheads};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    at_ms: f64,
    #[serde(default)]
    precursors: Vec<Precursor>,
    twin: Option<std::path::PathBuf>,
    precision: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Precursor {
    node: String,
    at_ms: f64,
}

#[derive(Debug, Deserialize)]
struct Snapshot {
    nodes: Vec<NodeRecord>,
    #[serde(default)]
    failures: Vec<FailureEvent>,
}

/// Reads the scenario at `path`, applies it to `fabric`, and asks the
/// rules what they would do with `plan`.
pub fn run(path: &Path, fabric: &Fabric, job: &Job, plan: &Plan) -> anyhow::Result<WhatIf> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read scenario {}", path.display()))?;
    let sc: Scenario = serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(&text))
        .map_err(|e| anyhow::anyhow!("{}: {}", e.path(), e.inner()))?;
    if !(sc.at_ms.is_finite() && sc.at_ms >= 0.0) {
        bail!("at_ms: must be a time ≥ 0 (job ms)");
    }
    let mut nodes: BTreeMap<String, Node> = fabric.nodes.iter().map(|n| (n.name.clone(), n.clone())).collect();
    let mut precursors: Vec<(String, f64)> = sc.precursors.iter().map(|p| (p.node.clone(), p.at_ms)).collect();
    if let Some(t) = &sc.twin {
        let base = path.parent().unwrap_or(Path::new("."));
        let file = if t.is_absolute() { t.clone() } else { base.join(t) };
        let text =
            std::fs::read_to_string(&file).with_context(|| format!("cannot read twin snapshot {}", file.display()))?;
        let snap: Snapshot = serde_json::from_str(&text)
            .with_context(|| format!("twin snapshot {}: not what GET /v1/twin returns", file.display()))?;
        for r in snap.nodes {
            nodes.insert(r.node.name.clone(), r.node);
        }
        let now = snap.failures.iter().map(|f| f.at_ms).max().unwrap_or(0);
        for n in down_nodes(&snap.failures, now) {
            if let Some(node) = nodes.get_mut(&n) {
                node.status = NodeStatus::NotReady;
            }
        }
        for f in &snap.failures {
            if matches!(f.kind, FailureKind::ThermalThrottle | FailureKind::NetworkDegradation) {
                precursors.push((f.node.clone(), sc.at_ms - (now - f.at_ms) as f64));
            }
        }
    }
    let view = FabricView::new(&fabric.clusters, fabric.latency.clone(), nodes.values(), FormatOverheads::default())
        .context("building the twin's view")?;
    let mut seen = vec![None; view.nodes.len()];
    for (node, at) in precursors {
        let n =
            view.node_index(&node).with_context(|| format!("precursor on node '{node}', which is not in the twin"))?;
        if seen[n].is_none_or(|t: f64| at > t) {
            seen[n] = Some(at);
        }
    }
    let mut forecast = ForecastConfig::default();
    if let Some(p) = sc.precision {
        if !(0.0..=1.0).contains(&p) {
            bail!("precision: must be within [0, 1]");
        }
        forecast.precursor_precision = p;
    }
    what_if(job, &view, plan, sc.at_ms, &seen, &forecast, &PreemptConfig::default()).map_err(anyhow::Error::msg)
}

/// The report as text.
pub fn render(w: &WhatIf) -> String {
    use std::fmt::Write;
    let mut s = format!("\nwhat if, at {:.0} ms of the job:\n", w.at_ms);
    let _ = writeln!(s, "  {:<20} {:<9} {:<24} {:>8}", "STAGE", "STATE", "NODE", "P(FAIL)");
    for st in &w.stages {
        let _ = writeln!(s, "  {:<20} {:<9} {:<24} {:>8.3}", st.stage, st.state, st.node, st.risk);
    }
    if w.candidates.is_empty() {
        let _ = writeln!(s, "  no action is worth it");
    }
    for c in &w.candidates {
        let _ = writeln!(
            s,
            "  candidate {} {} {} → {}: gain {:.0} ms, cost {:.0} ms, work {:.0} core-ms",
            c.action, c.stage, c.from, c.to, c.gain_ms, c.cost_ms, c.work_core_ms
        );
    }
    match &w.action {
        Some(a) => {
            let _ = writeln!(s, "  the twin would {} stage '{}': {}", a.action, a.stage, a.reason);
        }
        None => {
            let _ = writeln!(s, "  the twin would take no action");
        }
    }
    s
}
