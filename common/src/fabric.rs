//! Fabrics: the reference seven-pool fabric, fabrics loaded from YAML, and
//! synthetic fabrics of any size for benchmarks and simulations.
//!
//! A fabric document lists clusters, each with groups of identical nodes,
//! and the links between clusters. The reference fabric ships inside the
//! crate (`common/fabric/reference.yaml`) so `twinmesh` works with no files.

use std::collections::{BTreeMap, HashMap};

use rand::RngExt;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::latency::{LatencyError, LatencyMatrix};
use crate::model::{Arch, Cluster, ClusterKind, Format, FormatSet, Hardware, Node, NodeStatus, Resources, Telemetry};
use crate::rng::seeded;
use crate::view::{FabricView, FormatOverheads, ViewError};

/// The reference fabric document.
pub const REFERENCE_YAML: &str = include_str!("../fabric/reference.yaml");

/// A fabric that could not be loaded.
#[derive(Debug, Error)]
pub enum FabricError {
    /// The document is not valid YAML of the expected shape.
    #[error("{field}: {reason}")]
    Parse {
        /// Path of the offending field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Well-formed but inconsistent.
    #[error("{field}: {reason}")]
    Invalid {
        /// Path of the offending field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A latency entry is wrong.
    #[error(transparent)]
    Latency(#[from] LatencyError),
    /// The nodes do not fit the clusters.
    #[error(transparent)]
    View(#[from] ViewError),
}

/// A fabric document.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FabricDocument {
    /// `twinmesh.io/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// `Fabric`.
    pub kind: String,
    /// Bandwidth between clusters when a link does not say (Mbit/s).
    #[serde(default = "default_bandwidth")]
    pub default_bandwidth_mbps: f64,
    /// The clusters.
    pub clusters: Vec<ClusterDoc>,
    /// Latency/bandwidth between pairs of clusters (symmetric).
    pub links: Vec<LinkDoc>,
}

fn default_bandwidth() -> f64 {
    1000.0
}

/// One cluster of a fabric document.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterDoc {
    /// Name.
    pub name: String,
    /// Kind of site.
    pub kind: ClusterKind,
    /// Resiliency before history; defaults to the kind's.
    #[serde(default)]
    pub baseline_resiliency: Option<f64>,
    /// Latency between two nodes of this cluster (ms).
    pub intra_latency_ms: f64,
    /// Bandwidth between two nodes of this cluster (Mbit/s).
    pub intra_bandwidth_mbps: f64,
    /// Groups of identical nodes.
    pub groups: Vec<GroupDoc>,
}

/// A group of identical nodes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupDoc {
    /// Nodes are named `<prefix>-01`, `<prefix>-02`, … (unless `names`).
    #[serde(default)]
    pub prefix: String,
    /// How many (may be left out when `names` lists them).
    #[serde(default)]
    pub count: u32,
    /// Explicit node names, e.g. a Kubernetes cluster's (`k3d-dc-core-agent-0`).
    #[serde(default)]
    pub names: Vec<String>,
    /// Their hardware.
    pub hardware: Hardware,
    /// Formats they run.
    pub runtimes: FormatSet,
    /// Extra labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A link between two clusters.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkDoc {
    /// The two clusters.
    pub between: [String; 2],
    /// One-way latency (ms).
    pub latency_ms: f64,
    /// Bandwidth (Mbit/s); the document default otherwise.
    #[serde(default)]
    pub bandwidth_mbps: Option<f64>,
}

/// A loaded fabric: clusters, latency matrix and node records.
#[derive(Clone, Debug)]
pub struct Fabric {
    /// Clusters in matrix order.
    pub clusters: Vec<Cluster>,
    /// Latency and bandwidth between clusters.
    pub latency: LatencyMatrix,
    /// Every node.
    pub nodes: Vec<Node>,
}

impl Fabric {
    /// The planning view with default format overheads.
    pub fn view(&self) -> FabricView {
        FabricView::new(&self.clusters, self.latency.clone(), &self.nodes, FormatOverheads::default())
            .expect("a loaded fabric is consistent")
    }

    /// Loads a fabric document.
    pub fn from_yaml(text: &str) -> Result<Fabric, FabricError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let doc: FabricDocument = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            // serde_yaml_ng already prefixes its message with the path.
            let reason = e.into_inner().to_string();
            let reason = reason.strip_prefix(&format!("{field}: ")).map_or(reason.clone(), str::to_string);
            FabricError::Parse { field, reason }
        })?;
        Fabric::from_document(&doc)
    }

    /// Builds a fabric from a parsed document.
    pub fn from_document(doc: &FabricDocument) -> Result<Fabric, FabricError> {
        let invalid = |field: String, reason: String| FabricError::Invalid { field, reason };
        if doc.api_version != crate::spec::API_VERSION || doc.kind != "Fabric" {
            return Err(invalid(
                "apiVersion".into(),
                format!("expected {} / Fabric, got {} / {}", crate::spec::API_VERSION, doc.api_version, doc.kind),
            ));
        }
        if doc.clusters.is_empty() {
            return Err(invalid("clusters".into(), "a fabric needs at least one cluster".into()));
        }
        let names: Vec<String> = doc.clusters.iter().map(|c| c.name.clone()).collect();
        let mut index = HashMap::new();
        for (i, n) in names.iter().enumerate() {
            if index.insert(n.as_str(), i).is_some() {
                return Err(invalid(format!("clusters[{i}].name"), format!("duplicate cluster '{n}'")));
            }
        }
        let mut pairs: HashMap<(usize, usize), (f64, f64)> = HashMap::new();
        for (i, l) in doc.links.iter().enumerate() {
            let a = *index
                .get(l.between[0].as_str())
                .ok_or_else(|| invalid(format!("links[{i}].between"), format!("unknown cluster '{}'", l.between[0])))?;
            let b = *index
                .get(l.between[1].as_str())
                .ok_or_else(|| invalid(format!("links[{i}].between"), format!("unknown cluster '{}'", l.between[1])))?;
            let v = (l.latency_ms, l.bandwidth_mbps.unwrap_or(doc.default_bandwidth_mbps));
            pairs.insert((a, b), v);
            pairs.insert((b, a), v);
        }
        let n = names.len();
        for i in 0..n {
            for j in 0..n {
                if i != j && !pairs.contains_key(&(i, j)) {
                    return Err(LatencyError::Missing { from: names[i].clone(), to: names[j].clone() }.into());
                }
            }
        }
        let latency = LatencyMatrix::from_fn(names, |i, j| {
            if i == j {
                (doc.clusters[i].intra_latency_ms, doc.clusters[i].intra_bandwidth_mbps)
            } else {
                pairs[&(i, j)]
            }
        });
        latency.validate()?;
        let mut clusters = Vec::new();
        let mut nodes = Vec::new();
        for (ci, c) in doc.clusters.iter().enumerate() {
            let baseline = c.baseline_resiliency.unwrap_or_else(|| c.kind.baseline_resiliency());
            if !(0.0..=1.0).contains(&baseline) {
                return Err(invalid(
                    format!("clusters[{ci}].baseline_resiliency"),
                    format!("{baseline} is outside [0, 1]"),
                ));
            }
            clusters.push(Cluster { name: c.name.clone(), kind: c.kind, baseline_resiliency: baseline });
            for (gi, g) in c.groups.iter().enumerate() {
                let h = &g.hardware;
                if h.cores == 0 || h.speed <= 0.0 || h.mem_gb < 0.0 || h.tdp_w < 0.0 {
                    return Err(invalid(
                        format!("clusters[{ci}].groups[{gi}].hardware"),
                        "cores and speed must be positive, memory and TDP not negative".into(),
                    ));
                }
                let names: Vec<String> = if g.names.is_empty() {
                    if g.prefix.is_empty() || g.count == 0 {
                        return Err(invalid(
                            format!("clusters[{ci}].groups[{gi}]"),
                            "a group needs `names`, or a `prefix` and a `count` above 0".into(),
                        ));
                    }
                    (1..=g.count).map(|k| format!("{}-{k:02}", g.prefix)).collect()
                } else {
                    if g.count != 0 && g.count as usize != g.names.len() {
                        return Err(invalid(
                            format!("clusters[{ci}].groups[{gi}].count"),
                            format!("{} does not match the {} names listed", g.count, g.names.len()),
                        ));
                    }
                    g.names.clone()
                };
                for name in names {
                    nodes.push(make_node(name, &clusters[ci], h.clone(), g.runtimes, &g.labels));
                }
            }
        }
        let fabric = Fabric { clusters, latency, nodes };
        // Catches duplicate node names.
        FabricView::new(&fabric.clusters, fabric.latency.clone(), &fabric.nodes, FormatOverheads::default())?;
        Ok(fabric)
    }
}

fn make_node(
    name: String,
    cluster: &Cluster,
    hardware: Hardware,
    runtimes: FormatSet,
    extra: &BTreeMap<String, String>,
) -> Node {
    let mut labels = extra.clone();
    labels.insert("dt.cluster.name".into(), cluster.name.clone());
    labels.insert("dt.cluster.type".into(), serde_json::to_value(cluster.kind).unwrap().as_str().unwrap().into());
    labels.insert("kubernetes.io/arch".into(), hardware.arch.as_str().into());
    Node {
        name,
        cluster: cluster.name.clone(),
        allocatable: Resources {
            cpu: f64::from(hardware.cores),
            mem_gb: hardware.mem_gb,
            gpu_vram_gb: hardware.gpu_vram_gb,
        },
        hardware,
        runtimes,
        labels,
        allocated: Resources::default(),
        telemetry: Telemetry::default(),
        status: NodeStatus::Ready,
        resiliency: cluster.baseline_resiliency,
        jitter_sigma: None,
        backlog_ms: None,
        calibration: Default::default(),
    }
}

/// The reference seven-pool fabric.
pub fn reference() -> Fabric {
    Fabric::from_yaml(REFERENCE_YAML).expect("the embedded reference fabric is valid")
}

/// A synthetic fabric of `nodes` nodes in `max(7, nodes / 100)` clusters
/// placed on a plane (latency grows with distance), with the kinds and
/// hardware mix of the reference fabric and some spread. Deterministic in
/// `seed`.
pub fn synthetic(nodes: usize, seed: u64) -> Fabric {
    const KINDS: [ClusterKind; 7] = [
        ClusterKind::Datacenter,
        ClusterKind::Mining,
        ClusterKind::Lab,
        ClusterKind::Gamer,
        ClusterKind::PhonePan,
        ClusterKind::PhonePan,
        ClusterKind::EdgeMicrodc,
    ];
    let mut rng = seeded(seed);
    let nclusters = (nodes / 100).max(7);
    let mut clusters = Vec::with_capacity(nclusters);
    let mut pos = Vec::with_capacity(nclusters);
    for i in 0..nclusters {
        let kind = KINDS[i % KINDS.len()];
        clusters.push(Cluster {
            name: format!("syn-{i:03}-{}", serde_json::to_value(kind).unwrap().as_str().unwrap()),
            kind,
            baseline_resiliency: kind.baseline_resiliency(),
        });
        pos.push((rng.random_range(0.0..60.0), rng.random_range(0.0..60.0)));
    }
    let intra = |k: ClusterKind| match k {
        ClusterKind::Datacenter => (5.0, 10_000.0),
        ClusterKind::PhonePan => (8.0, 200.0),
        _ => (1.5, 1_000.0),
    };
    let latency = LatencyMatrix::from_fn(clusters.iter().map(|c| c.name.clone()).collect(), |i, j| {
        if i == j {
            intra(clusters[i].kind)
        } else {
            let (a, b) = (pos[i], pos[j]);
            let d: f64 = (a.0 - b.0) * (a.0 - b.0) + (a.1 - b.1) * (a.1 - b.1);
            let bw = intra(clusters[i].kind).1.min(intra(clusters[j].kind).1).min(1_000.0);
            (5.0 + d.sqrt(), bw)
        }
    });
    let mut out = Vec::with_capacity(nodes);
    let all_qemu =
        FormatSet::of(&[Format::Native, Format::QemuAmd64, Format::QemuArm64, Format::QemuRiscv64, Format::Wasm]);
    for k in 0..nodes {
        let c = &clusters[k % nclusters];
        let roll: f64 = rng.random();
        let spread: f64 = rng.random_range(0.8..1.2);
        let (arch, cores, speed, mem, vram, tdp) = match c.kind {
            ClusterKind::Datacenter if roll < 0.2 => (Arch::Arm64, 64, 1.0, 128.0, 0.0, 200.0),
            ClusterKind::Datacenter => (Arch::Amd64, 64, 1.2, 256.0, if roll > 0.8 { 80.0 } else { 0.0 }, 350.0),
            ClusterKind::Mining => (Arch::Amd64, 16, 1.0, 64.0, 24.0, 800.0),
            ClusterKind::Lab if roll < 0.15 => (Arch::Riscv64, 4, 0.25, 8.0, 0.0, 10.0),
            ClusterKind::Lab => (Arch::Amd64, 8, 0.9, 32.0, 0.0, 95.0),
            ClusterKind::Gamer => (Arch::Amd64, 16, 1.3, 64.0, 24.0, 450.0),
            ClusterKind::PhonePan => (Arch::Arm64, 8, 0.5, 8.0, 0.0, 8.0),
            ClusterKind::EdgeMicrodc | ClusterKind::Other => (Arch::Amd64, 32, 1.0, 128.0, 0.0, 250.0),
        };
        let hardware = Hardware {
            arch,
            cores,
            ghz: 3.0 * speed,
            speed: speed * spread,
            mem_gb: mem,
            gpu_vram_gb: vram,
            tdp_w: tdp,
        };
        let runtimes = match c.kind {
            ClusterKind::PhonePan => FormatSet::of(&[Format::Native, Format::Wasm]),
            _ => all_qemu.without(arch.qemu_format()),
        };
        let mut node = make_node(format!("{}-n{k:05}", c.name), c, hardware, runtimes, &BTreeMap::new());
        node.resiliency = (c.baseline_resiliency + rng.random_range(-0.05..0.05)).clamp(0.0, 1.0);
        out.push(node);
    }
    Fabric { clusters, latency, nodes: out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_has_seven_pools_and_the_agreed_latencies() {
        let f = reference();
        let names: Vec<&str> = f.clusters.iter().map(|c| c.name.as_str()).collect();
        for want in
            ["dc-core", "prosumer-mining", "campus-lab", "gamer-pc", "phone-pan-1", "phone-pan-2", "edge-microdc"]
        {
            assert!(names.contains(&want), "missing {want}");
        }
        let l = &f.latency;
        let i = |n: &str| l.index_of(n).unwrap();
        assert_eq!(l.latency(i("dc-core"), i("dc-core")), 5.0);
        assert_eq!(l.latency(i("dc-core"), i("edge-microdc")), 35.0);
        assert_eq!(l.latency(i("dc-core"), i("phone-pan-1")), 50.0);
        assert_eq!(l.latency(i("phone-pan-2"), i("dc-core")), 50.0);
        assert!(f.nodes.iter().any(|n| n.hardware.arch == Arch::Riscv64));
        let arm_phones =
            f.nodes.iter().filter(|n| n.cluster.starts_with("phone-pan") && n.hardware.arch == Arch::Arm64).count();
        assert!(arm_phones >= 10);
        let dc = f.nodes.iter().find(|n| n.cluster == "dc-core").unwrap();
        let gamer = f.nodes.iter().find(|n| n.cluster == "gamer-pc").unwrap();
        assert!(dc.resiliency > gamer.resiliency && gamer.hardware.gpu_vram_gb >= 16.0);
        assert_eq!(dc.labels["dt.cluster.name"], "dc-core");
        assert_eq!(dc.labels["dt.cluster.type"], "datacenter");
    }

    #[test]
    fn latency_matrix_is_symmetric_and_satisfies_triangles_loosely() {
        let f = reference();
        let l = &f.latency;
        for a in 0..l.len() {
            for b in 0..l.len() {
                assert_eq!(l.latency(a, b), l.latency(b, a));
                for c in 0..l.len() {
                    if a != b && b != c && a != c {
                        assert!(
                            l.latency(a, c) <= l.latency(a, b) + l.latency(b, c) + 1e-9,
                            "{} {} {}",
                            l.names()[a],
                            l.names()[b],
                            l.names()[c]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn synthetic_fabrics_are_deterministic_and_sized() {
        let a = synthetic(1000, 1);
        let b = synthetic(1000, 1);
        assert_eq!(a.nodes.len(), 1000);
        assert_eq!(a.clusters.len(), 10);
        assert_eq!(a.nodes, b.nodes);
        assert_eq!(synthetic(10_000, 1).clusters.len(), 100);
        let v = a.view();
        assert_eq!(v.nodes.len(), 1000);
    }

    #[test]
    fn bad_fabric_documents_name_the_field() {
        let missing_link =
            REFERENCE_YAML.replacen("between: [dc-core, edge-microdc]", "between: [dc-core, nowhere]", 1);
        let e = Fabric::from_yaml(&missing_link).unwrap_err();
        assert!(e.to_string().contains("nowhere"), "{e}");
        let bad_field = REFERENCE_YAML.replacen("intra_latency_ms: 5", "intra_latency: 5", 1);
        let e = Fabric::from_yaml(&bad_field).unwrap_err();
        assert!(e.to_string().contains("intra_latency"), "{e}");
        let bad_kind = REFERENCE_YAML.replacen("kind: mining", "kind: mine", 1);
        let e = Fabric::from_yaml(&bad_kind).unwrap_err().to_string();
        assert!(e.starts_with("clusters[1].kind: unknown variant `mine`"), "{e}");
        assert_eq!(e.matches("clusters[1].kind").count(), 1, "path said once: {e}");
    }

    #[test]
    fn groups_may_name_their_nodes() {
        let doc = |group: &str| {
            format!(
                "apiVersion: twinmesh.io/v1\nkind: Fabric\nclusters:\n  - name: dc-core\n    kind: datacenter\n    intra_latency_ms: 1\n    intra_bandwidth_mbps: 1000\n    groups:\n      - {group}\n        hardware: {{ arch: amd64, cores: 4, ghz: 3.0, speed: 1.0, mem_gb: 8, tdp_w: 50 }}\n        runtimes: [native]\nlinks: []\n"
            )
        };
        let f = Fabric::from_yaml(&doc("names: [k3d-dc-core-server-0, k3d-dc-core-agent-0]")).unwrap();
        let names: Vec<&str> = f.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["k3d-dc-core-server-0", "k3d-dc-core-agent-0"]);
        assert_eq!(f.nodes[0].labels["dt.cluster.name"], "dc-core");
        let e = Fabric::from_yaml(&doc("names: [a, b]\n        count: 3")).unwrap_err();
        assert!(e.to_string().contains("groups[0].count") && e.to_string().contains("2 names"), "{e}");
        let e = Fabric::from_yaml(&doc("prefix: x")).unwrap_err();
        assert!(e.to_string().contains("groups[0]") && e.to_string().contains("`names`"), "{e}");
    }
}
