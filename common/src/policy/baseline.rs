//! The kube-scheduler-like baseline: filter by fit, score by least
//! allocated (the default `NodeResourcesFit` strategy), ties to the first
//! node. No origin, no latency, no prediction, native format where the
//! architecture matches (Kubernetes' `kubernetes.io/arch` affinity), Wasm
//! only if the stage allows nothing else.

use super::{Decision, PlanError, infeasible};
use crate::job::Job;
use crate::model::Format;
use crate::predict::Assignment;
use crate::view::{FabricView, allowed_by_arch};

pub(crate) fn decide(view: &FabricView, job: &Job) -> Result<Decision, PlanError> {
    let t = &view.nodes;
    let mut assign = vec![Assignment { node: 0, format: Format::Native }; job.stages.len()];
    for &s in &job.topo {
        let st = &job.stages[s];
        let allowed = allowed_by_arch(&st.constraints);
        let c = &st.compute;
        let mut best: Option<(usize, Format, f64)> = None;
        // Like kube-scheduler: nodes with room now; if none, the pod stays
        // pending and lands on the least-allocated node that can ever hold
        // it.
        let any_fits = (0..t.len()).any(|n| view.fits(n, c) && format_for(view, n, &allowed).is_some());
        for n in 0..t.len() {
            if !(if any_fits { view.fits(n, c) } else { view.hosts(n, c) }) {
                continue;
            }
            let Some(format) = format_for(view, n, &allowed) else { continue };
            let cpu_left = (t.free_cpu[n] - c.cpu) / t.alloc_cpu[n].max(1e-9);
            let mem_left = if t.alloc_mem[n] > 0.0 { (t.free_mem[n] - c.mem_gb) / t.alloc_mem[n] } else { 0.0 };
            let score = (cpu_left + mem_left) * 50.0;
            if best.is_none_or(|(_, _, b)| score > b) {
                best = Some((n, format, score));
            }
        }
        let (node, format, _) = best.ok_or_else(|| infeasible(view, job, s))?;
        assign[s] = Assignment { node, format };
    }
    Ok(Decision { shadow: vec![None; assign.len()], assign, tail_latency_ms: None })
}

/// Native where the architecture matches, Wasm if allowed, never QEMU:
/// kube-scheduler knows nothing of emulation.
fn format_for(view: &FabricView, n: usize, allowed: &[crate::model::FormatSet; 3]) -> Option<Format> {
    let mask = allowed[view.nodes.arch[n].index()].and(view.nodes.runtimes[n]);
    if mask.contains(Format::Native) {
        Some(Format::Native)
    } else if mask.contains(Format::Wasm) {
        Some(Format::Wasm)
    } else {
        None
    }
}
