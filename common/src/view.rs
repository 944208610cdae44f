//! A dense snapshot of the twin that planning and simulation run on.
//!
//! The twin is keyed by names and built for merging; planners need the
//! opposite: nodes as small integers, columns of numbers, no hashing in the
//! inner loop. [`FabricView`] is that form. Building one costs O(nodes); an
//! agent rebuilds it when its twin changes, not per plan.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::job::{Compute, Job};
use crate::latency::LatencyMatrix;
use crate::model::{Arch, Cluster, Format, FormatSet, Node};

/// Slowdown of each format relative to native execution.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FormatOverheads {
    /// Factor per format, indexed by [`Format::index`]; native is 1.0.
    pub factor: [f64; 5],
}

impl Default for FormatOverheads {
    /// QEMU user-mode emulation costs 25–80 % depending on the guest ISA
    /// (riscv64 is the slowest to translate), Wasm about 30 %.
    fn default() -> Self {
        FormatOverheads { factor: [1.0, 1.6, 1.45, 1.8, 1.3] }
    }
}

impl FormatOverheads {
    /// The factor for one format.
    #[inline]
    pub fn get(&self, f: Format) -> f64 {
        self.factor[f.index()]
    }
}

/// Why a view could not be built.
#[derive(Debug, Error, PartialEq)]
pub enum ViewError {
    /// A node names a cluster the latency matrix lacks.
    #[error("node '{node}': cluster '{cluster}' is not in the latency matrix")]
    UnknownCluster {
        /// Node name.
        node: String,
        /// Cluster it names.
        cluster: String,
    },
    /// Two nodes share a name.
    #[error("node '{0}' appears twice")]
    DuplicateNode(String),
}

/// Column-wise node data, indexed by dense node id.
#[derive(Clone, Debug, Default)]
pub struct NodeTable {
    /// Names.
    pub name: Vec<String>,
    /// Cluster index (into the latency matrix).
    pub cluster: Vec<u32>,
    /// Architecture.
    pub arch: Vec<Arch>,
    /// Formats the node runs.
    pub runtimes: Vec<FormatSet>,
    /// 1 / speed: reference ms per ms of run time.
    pub inv_speed: Vec<f64>,
    /// Free CPU cores.
    pub free_cpu: Vec<f64>,
    /// Free memory, GB.
    pub free_mem: Vec<f64>,
    /// Free GPU memory, GB.
    pub free_vram: Vec<f64>,
    /// Allocatable CPU cores.
    pub alloc_cpu: Vec<f64>,
    /// Allocatable memory, GB.
    pub alloc_mem: Vec<f64>,
    /// Joules per core-second.
    pub joules_per_core_s: Vec<f64>,
    /// Resiliency score.
    pub resiliency: Vec<f64>,
    /// Ready and schedulable.
    pub ready: Vec<bool>,
    /// Learned lognormal σ of run time; negative = use the default.
    pub jitter_sigma: Vec<f64>,
    /// Per-format calibration factors (observed / predicted run time).
    pub calib: Vec<[f64; 5]>,
    /// Allocatable GPU memory, GB.
    pub alloc_vram: Vec<f64>,
    /// Expected wait (ms) for work that does not fit the free resources;
    /// infinite when unknown.
    pub backlog_ms: Vec<f64>,
}

impl NodeTable {
    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.name.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.name.is_empty()
    }
}

/// The dense planning view of a fabric.
#[derive(Clone, Debug)]
pub struct FabricView {
    /// Latency and bandwidth between clusters.
    pub latency: LatencyMatrix,
    /// Clusters, aligned with the latency matrix (missing ones get kind
    /// `other`).
    pub clusters: Vec<Cluster>,
    /// Nodes.
    pub nodes: NodeTable,
    /// Format slowdowns.
    pub overheads: FormatOverheads,
    node_index: HashMap<String, usize>,
}

/// Where a job's inputs come from, as indices.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OriginIdx {
    /// Cluster index.
    pub cluster: usize,
    /// Node index, when the origin node is in the view.
    pub node: Option<usize>,
}

impl FabricView {
    /// Builds a view from clusters, the latency matrix and node records.
    pub fn new<'a>(
        clusters: &[Cluster],
        latency: LatencyMatrix,
        nodes: impl IntoIterator<Item = &'a Node>,
        overheads: FormatOverheads,
    ) -> Result<Self, ViewError> {
        let cluster_idx: HashMap<&str, usize> =
            latency.names().iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
        let aligned: Vec<Cluster> = latency
            .names()
            .iter()
            .map(|name| {
                clusters.iter().find(|c| &c.name == name).cloned().unwrap_or(Cluster {
                    name: name.clone(),
                    kind: crate::model::ClusterKind::Other,
                    baseline_resiliency: crate::model::ClusterKind::Other.baseline_resiliency(),
                })
            })
            .collect();
        let mut t = NodeTable::default();
        let mut node_index = HashMap::new();
        for n in nodes {
            let c = *cluster_idx
                .get(n.cluster.as_str())
                .ok_or_else(|| ViewError::UnknownCluster { node: n.name.clone(), cluster: n.cluster.clone() })?;
            if node_index.insert(n.name.clone(), t.len()).is_some() {
                return Err(ViewError::DuplicateNode(n.name.clone()));
            }
            let free = n.free();
            t.name.push(n.name.clone());
            t.cluster.push(c as u32);
            t.arch.push(n.hardware.arch);
            t.runtimes.push(n.runtimes);
            t.inv_speed.push(1.0 / n.hardware.speed.max(1e-6));
            t.free_cpu.push(free.cpu);
            t.free_mem.push(free.mem_gb);
            t.free_vram.push(free.gpu_vram_gb);
            t.alloc_cpu.push(n.allocatable.cpu);
            t.alloc_mem.push(n.allocatable.mem_gb);
            t.joules_per_core_s.push(n.hardware.joules_per_core_second());
            t.resiliency.push(n.resiliency.clamp(0.0, 1.0));
            t.ready.push(n.schedulable());
            t.jitter_sigma.push(n.jitter_sigma.unwrap_or(-1.0));
            let mut calib = [1.0; 5];
            for (f, v) in &n.calibration {
                if v.is_finite() && *v > 0.0 {
                    calib[f.index()] = *v;
                }
            }
            t.calib.push(calib);
            t.alloc_vram.push(n.allocatable.gpu_vram_gb);
            t.backlog_ms.push(n.backlog_ms.unwrap_or(f64::INFINITY).max(0.0));
        }
        Ok(FabricView { latency, clusters: aligned, nodes: t, overheads, node_index })
    }

    /// Dense id of a node.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.node_index.get(name).copied()
    }

    /// Index of a cluster.
    pub fn cluster_index(&self, name: &str) -> Option<usize> {
        self.latency.index_of(name)
    }

    /// Cluster name of a node.
    pub fn cluster_name(&self, node: usize) -> &str {
        &self.latency.names()[self.nodes.cluster[node] as usize]
    }

    /// The job's origin as indices, if its cluster is known.
    pub fn origin(&self, job: &Job) -> Option<OriginIdx> {
        let cluster = self.cluster_index(&job.origin.cluster)?;
        let node = job.origin.node.as_deref().and_then(|n| self.node_index(n));
        Some(OriginIdx { cluster, node })
    }

    /// Sets calibration factors for a node and format.
    pub fn set_calibration(&mut self, node: usize, format: Format, factor: f64) {
        self.nodes.calib[node][format.index()] = factor;
    }

    /// Whether a stage's demand fits the node's free resources now and the
    /// node takes work.
    #[inline]
    pub fn fits(&self, n: usize, c: &Compute) -> bool {
        let t = &self.nodes;
        t.ready[n] && t.free_cpu[n] >= c.cpu && t.free_mem[n] >= c.mem_gb && t.free_vram[n] >= c.gpu_vram_gb
    }

    /// Whether the node takes work and could ever hold the stage (its
    /// allocatable resources suffice, busy or not).
    #[inline]
    pub fn hosts(&self, n: usize, c: &Compute) -> bool {
        let t = &self.nodes;
        t.ready[n] && t.alloc_cpu[n] >= c.cpu && t.alloc_mem[n] >= c.mem_gb && t.alloc_vram[n] >= c.gpu_vram_gb
    }

    /// How long (ms from now) the stage would wait for room on node `n`:
    /// 0 if it fits the free resources, else the node's backlog (infinite
    /// when unknown).
    #[inline]
    pub fn wait_ms(&self, n: usize, c: &Compute) -> f64 {
        if self.fits(n, c) { 0.0 } else { self.nodes.backlog_ms[n] }
    }

    /// The fastest format for a stage on node `n`, with its factor
    /// (overhead × calibration), given the stage's per-arch allowed formats.
    #[inline]
    pub fn best_format(&self, n: usize, allowed_by_arch: &[FormatSet; 3]) -> Option<(Format, f64)> {
        let mask = allowed_by_arch[self.nodes.arch[n].index()].and(self.nodes.runtimes[n]);
        if mask.is_empty() {
            return None;
        }
        let calib = &self.nodes.calib[n];
        let mut best: Option<(Format, f64)> = None;
        for f in mask.iter() {
            let factor = self.overheads.factor[f.index()] * calib[f.index()];
            if best.is_none_or(|(_, b)| factor < b) {
                best = Some((f, factor));
            }
        }
        best
    }

    /// Nominal core-ms of reference work per ms the whole fabric can do:
    /// an offered load of 1 keeps every core of every node busy.
    pub fn capacity(&self) -> f64 {
        (0..self.nodes.len()).map(|n| self.nodes.alloc_cpu[n] / self.nodes.inv_speed[n]).sum()
    }

    /// Run time of a stage on node `n` in format `f`, in ms.
    #[inline]
    pub fn compute_ms(&self, n: usize, c: &Compute, f: Format) -> f64 {
        c.duration_ms * self.nodes.inv_speed[n] * self.overheads.factor[f.index()] * self.nodes.calib[n][f.index()]
    }

    /// Energy of running `c` for `ms` on node `n`, in joules.
    #[inline]
    pub fn energy_j(&self, n: usize, c: &Compute, ms: f64) -> f64 {
        c.cpu * ms / 1000.0 * self.nodes.joules_per_core_s[n]
    }

    /// Latency from the job's origin to node `n` (0 on the origin node
    /// itself).
    #[inline]
    pub fn origin_latency(&self, origin: OriginIdx, n: usize) -> f64 {
        if origin.node == Some(n) { 0.0 } else { self.latency.latency(origin.cluster, self.nodes.cluster[n] as usize) }
    }

    /// Time for `data_mb` of output to go from node `from` to node `to` (0
    /// on the same node).
    #[inline]
    pub fn transfer_ms(&self, from: usize, to: usize, data_mb: f64) -> f64 {
        if from == to {
            0.0
        } else {
            self.latency.transfer_ms(self.nodes.cluster[from] as usize, self.nodes.cluster[to] as usize, data_mb)
        }
    }

    /// Probability that node `n` fails during `ms` of work, with resiliency
    /// read as survival probability over `horizon_ms`.
    #[inline]
    pub fn failure_probability(&self, n: usize, ms: f64, horizon_ms: f64) -> f64 {
        1.0 - self.nodes.resiliency[n].max(1e-9).powf(ms / horizon_ms)
    }
}

/// For each architecture, the formats a stage may use there.
pub fn allowed_by_arch(c: &crate::job::Constraints) -> [FormatSet; 3] {
    [c.formats_on(Arch::Amd64), c.formats_on(Arch::Arm64), c.formats_on(Arch::Riscv64)]
}
