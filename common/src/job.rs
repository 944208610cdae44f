//! A job: a DAG of stages with compute demands, constraints, an origin and a
//! deadline. Values of [`Job`] are always valid — they come out of
//! [`crate::spec`]'s validation — so planners never re-check structure.

use serde::{Deserialize, Serialize};

use crate::model::{Arch, Format, FormatSet};

/// Where a job comes from: results and inputs live there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// Cluster of origin.
    pub cluster: String,
    /// Node of origin, when known.
    pub node: Option<String>,
}

/// What a stage needs to run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Compute {
    /// CPU cores held while running.
    pub cpu: f64,
    /// Memory in GB.
    pub mem_gb: f64,
    /// Run time on one reference core, natively, in ms.
    pub duration_ms: f64,
    /// GPU memory in GB (0 = no GPU needed).
    pub gpu_vram_gb: f64,
}

/// Where a stage may run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Constraints {
    /// Architectures the stage's code is built for; empty = any.
    pub arch: Vec<Arch>,
    /// Allowed execution formats; empty = native or QEMU (no Wasm).
    pub formats: Vec<Format>,
}

impl Constraints {
    /// The formats this stage may use on a node of architecture `node_arch`,
    /// before looking at what the node offers.
    pub fn formats_on(&self, node_arch: Arch) -> FormatSet {
        let allowed =
            if self.formats.is_empty() { FormatSet::ALL.without(Format::Wasm) } else { FormatSet::of(&self.formats) };
        let mut s = FormatSet::EMPTY;
        if self.arch.is_empty() || self.arch.contains(&node_arch) {
            s = s.with(Format::Native);
        }
        for a in &self.arch {
            if *a != node_arch {
                s = s.with(a.qemu_format());
            }
        }
        s = s.with(Format::Wasm);
        s.and(allowed)
    }
}

/// One stage of a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// Unique id within the job.
    pub id: String,
    /// Resource demand.
    pub compute: Compute,
    /// Placement constraints.
    pub constraints: Constraints,
    /// Indices (into [`Job::stages`]) of the stages this one waits for.
    pub predecessors: Vec<usize>,
    /// Megabytes of output sent to each successor.
    pub output_mb: f64,
}

/// A validated job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Job name (unique per submitter; the agent derives the id from it).
    pub name: String,
    /// Deadline in ms from submission, if any.
    pub deadline_ms: Option<f64>,
    /// Where the job comes from.
    pub origin: Origin,
    /// Stages, in document order.
    pub stages: Vec<Stage>,
    /// Stage indices in a topological order (predecessors first).
    pub topo: Vec<usize>,
}

impl Job {
    /// Reference work of the whole job: cores × reference duration summed
    /// over its stages (core-ms) — what an offered load is counted in.
    pub fn work(&self) -> f64 {
        self.stages.iter().map(|s| s.compute.cpu * s.compute.duration_ms).sum()
    }

    /// Index of a stage by id.
    pub fn stage_index(&self, id: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.id == id)
    }

    /// Successors of every stage (inverse of `predecessors`).
    pub fn successors(&self) -> Vec<Vec<usize>> {
        let mut succ = vec![Vec::new(); self.stages.len()];
        for (i, s) in self.stages.iter().enumerate() {
            for &p in &s.predecessors {
                succ[p].push(i);
            }
        }
        succ
    }
}

/// A topological order of `preds` (Kahn), or the index of a stage on or
/// behind a cycle.
pub fn topological_order(preds: &[Vec<usize>]) -> Result<Vec<usize>, usize> {
    let order = kahn(preds);
    if order.len() == preds.len() {
        return Ok(order);
    }
    let mut placed = vec![false; preds.len()];
    for &i in &order {
        placed[i] = true;
    }
    Err(placed.iter().position(|p| !p).unwrap_or(0))
}

/// Kahn's algorithm: the stages that can be ordered, predecessors first
/// (all of them unless there is a cycle).
pub fn kahn(preds: &[Vec<usize>]) -> Vec<usize> {
    let n = preds.len();
    let mut indegree: Vec<usize> = preds.iter().map(Vec::len).collect();
    let mut succ = vec![Vec::new(); n];
    for (i, ps) in preds.iter().enumerate() {
        for &p in ps {
            succ[p].push(i);
        }
    }
    let mut ready: Vec<usize> = (0..n).rev().filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop() {
        order.push(i);
        for &s in succ[i].iter().rev() {
            indegree[s] -= 1;
            if indegree[s] == 0 {
                ready.push(s);
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topo_orders_a_diamond_and_finds_cycles() {
        // 0 -> 1, 0 -> 2, {1,2} -> 3
        let order = topological_order(&[vec![], vec![0], vec![0], vec![1, 2]]).unwrap();
        assert_eq!(order, vec![0, 1, 2, 3]);
        // 0 -> 1 -> 2 -> 1 : cycle through 1 and 2
        let bad = topological_order(&[vec![], vec![0, 2], vec![1]]).unwrap_err();
        assert!(bad == 1 || bad == 2);
    }

    #[test]
    fn formats_follow_arch_and_allow_list() {
        let any = Constraints::default();
        assert_eq!(any.formats_on(Arch::Arm64), FormatSet::of(&[Format::Native]));
        let riscv = Constraints { arch: vec![Arch::Riscv64], formats: vec![] };
        assert_eq!(riscv.formats_on(Arch::Amd64), FormatSet::of(&[Format::QemuRiscv64]));
        assert_eq!(riscv.formats_on(Arch::Riscv64), FormatSet::of(&[Format::Native]));
        let wasm_too = Constraints { arch: vec![Arch::Arm64], formats: vec![Format::Native, Format::Wasm] };
        assert_eq!(
            wasm_too.formats_on(Arch::Amd64),
            FormatSet::of(&[Format::Wasm]),
            "qemu-arm64 is not in the allow list"
        );
    }
}
