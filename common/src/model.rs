//! Nodes and clusters: what the twin knows about each machine of the fabric.
//!
//! A [`Node`] carries its static hardware profile, the execution formats it
//! can run (native, QEMU user-mode emulation of another ISA, Wasm), what it
//! can allocate, its latest telemetry and its status. A [`Cluster`] is a
//! failure and latency domain (one Kubernetes cluster, one device pool).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A CPU instruction-set architecture, named as Kubernetes names it
/// (`kubernetes.io/arch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// x86-64.
    #[serde(alias = "x86_64", alias = "x86-64")]
    Amd64,
    /// 64-bit ARM.
    #[serde(alias = "aarch64")]
    Arm64,
    /// 64-bit RISC-V (RV64GC).
    #[serde(alias = "riscv64gc")]
    Riscv64,
}

impl Arch {
    /// Every architecture, in index order.
    pub const ALL: [Arch; 3] = [Arch::Amd64, Arch::Arm64, Arch::Riscv64];

    /// Dense index, for tables.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The Kubernetes name (`amd64`, `arm64`, `riscv64`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
            Arch::Riscv64 => "riscv64",
        }
    }

    /// The QEMU format that runs code of this architecture elsewhere.
    pub const fn qemu_format(self) -> Format {
        match self {
            Arch::Amd64 => Format::QemuAmd64,
            Arch::Arm64 => Format::QemuArm64,
            Arch::Riscv64 => Format::QemuRiscv64,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "amd64" | "x86_64" | "x86-64" => Ok(Arch::Amd64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            "riscv64" | "riscv64gc" => Ok(Arch::Riscv64),
            other => Err(format!("unknown architecture '{other}' (expected amd64, arm64 or riscv64)")),
        }
    }
}

/// How a stage's code is executed on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// The node's own ISA, no emulation.
    Native,
    /// amd64 code under QEMU user-mode emulation.
    QemuAmd64,
    /// arm64 code under QEMU user-mode emulation.
    QemuArm64,
    /// riscv64 code under QEMU user-mode emulation.
    QemuRiscv64,
    /// A WebAssembly module, ISA-independent.
    Wasm,
}

impl Format {
    /// Every format, in index order.
    pub const ALL: [Format; 5] =
        [Format::Native, Format::QemuAmd64, Format::QemuArm64, Format::QemuRiscv64, Format::Wasm];

    /// Dense index, for tables.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The architecture a QEMU format emulates.
    pub const fn emulated_arch(self) -> Option<Arch> {
        match self {
            Format::QemuAmd64 => Some(Arch::Amd64),
            Format::QemuArm64 => Some(Arch::Arm64),
            Format::QemuRiscv64 => Some(Arch::Riscv64),
            Format::Native | Format::Wasm => None,
        }
    }

    /// The document name (`native`, `qemu-arm64`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::QemuAmd64 => "qemu-amd64",
            Format::QemuArm64 => "qemu-arm64",
            Format::QemuRiscv64 => "qemu-riscv64",
            Format::Wasm => "wasm",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`Format`]s as a bit mask; serialised as a list of names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FormatSet(u8);

impl FormatSet {
    /// No format.
    pub const EMPTY: FormatSet = FormatSet(0);
    /// Every format.
    pub const ALL: FormatSet = FormatSet(0b1_1111);

    /// The set holding exactly `formats`.
    pub fn of(formats: &[Format]) -> FormatSet {
        formats.iter().fold(FormatSet::EMPTY, |s, f| s.with(*f))
    }
    /// This set plus `f`.
    pub const fn with(self, f: Format) -> FormatSet {
        FormatSet(self.0 | (1 << f.index()))
    }
    /// This set less `f`.
    pub const fn without(self, f: Format) -> FormatSet {
        FormatSet(self.0 & !(1 << f.index()))
    }
    /// Whether `f` is in the set.
    pub const fn contains(self, f: Format) -> bool {
        self.0 & (1 << f.index()) != 0
    }
    /// Intersection.
    pub const fn and(self, other: FormatSet) -> FormatSet {
        FormatSet(self.0 & other.0)
    }
    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The raw mask (bit i = `Format::ALL[i]`).
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// The formats in the set, in index order.
    pub fn iter(self) -> impl Iterator<Item = Format> {
        Format::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

impl Serialize for FormatSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // A sized sequence: postcard needs the length up front.
        s.collect_seq(self.iter().collect::<Vec<_>>())
    }
}

impl<'de> Deserialize<'de> for FormatSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<Format>::deserialize(d)?;
        Ok(FormatSet::of(&v))
    }
}

/// Whether a node takes work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum NodeStatus {
    /// Healthy and schedulable.
    #[default]
    Ready,
    /// Down or unreachable.
    NotReady,
    /// Up but not schedulable (failure injection, maintenance).
    Cordoned,
}

/// Compute resources: cores, memory and GPU memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU cores.
    pub cpu: f64,
    /// Memory in GB.
    pub mem_gb: f64,
    /// GPU memory in GB (0 = no GPU).
    #[serde(default)]
    pub gpu_vram_gb: f64,
}

/// The static hardware profile of a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    /// Instruction-set architecture.
    pub arch: Arch,
    /// Physical cores.
    pub cores: u32,
    /// Nominal clock in GHz (informative).
    pub ghz: f64,
    /// Per-core speed relative to the reference core: a stage of
    /// `duration_ms` takes `duration_ms / speed` here, natively.
    pub speed: f64,
    /// Memory in GB.
    pub mem_gb: f64,
    /// GPU memory in GB (0 = no GPU).
    #[serde(default)]
    pub gpu_vram_gb: f64,
    /// Thermal design power of the whole node, in watts.
    pub tdp_w: f64,
}

impl Hardware {
    /// Energy per core-second at full load, in joules (TDP spread evenly
    /// over cores).
    pub fn joules_per_core_second(&self) -> f64 {
        self.tdp_w / f64::from(self.cores.max(1))
    }
}

/// The latest sampled telemetry of a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    /// CPU utilisation, 0–100.
    pub cpu_pct: f64,
    /// Memory utilisation, 0–100.
    pub mem_pct: f64,
    /// Received bytes per second.
    pub net_rx_bps: f64,
    /// Transmitted bytes per second.
    pub net_tx_bps: f64,
    /// Temperature in °C where a sensor exists.
    pub temperature_c: Option<f64>,
}

/// One machine of the fabric as the twin knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Unique node name (the Kubernetes node name).
    pub name: String,
    /// The cluster (pool) it belongs to.
    pub cluster: String,
    /// Static hardware profile.
    pub hardware: Hardware,
    /// Execution formats available on the node.
    pub runtimes: FormatSet,
    /// Labels (`dt.cluster.name`, `kubernetes.io/arch`, …).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What the node offers to workloads.
    pub allocatable: Resources,
    /// What placed work already holds.
    #[serde(default)]
    pub allocated: Resources,
    /// Latest telemetry.
    #[serde(default)]
    pub telemetry: Telemetry,
    /// Ready / NotReady / Cordoned.
    #[serde(default)]
    pub status: NodeStatus,
    /// Resiliency score in [0, 1] (see [`crate::resiliency`]).
    pub resiliency: f64,
    /// Spread (lognormal σ) of this node's run times as learned from
    /// observations; `None` means the policy default.
    #[serde(default)]
    pub jitter_sigma: Option<f64>,
    /// Expected wait (ms) before new work that does not fit the free
    /// resources can start, as estimated by the node's owner from its
    /// queue; `None` when unknown (a full node is then not a candidate).
    #[serde(default)]
    pub backlog_ms: Option<f64>,
    /// Observed / modelled run time per format, learned by the node's
    /// owner from every run on the node (empty until it has seen one).
    #[serde(default)]
    pub calibration: BTreeMap<Format, f64>,
}

impl Node {
    /// Resources still free for new work.
    pub fn free(&self) -> Resources {
        Resources {
            cpu: (self.allocatable.cpu - self.allocated.cpu).max(0.0),
            mem_gb: (self.allocatable.mem_gb - self.allocated.mem_gb).max(0.0),
            gpu_vram_gb: (self.allocatable.gpu_vram_gb - self.allocated.gpu_vram_gb).max(0.0),
        }
    }

    /// Whether the node takes new work.
    pub fn schedulable(&self) -> bool {
        self.status == NodeStatus::Ready
    }
}

/// What kind of site a cluster is; sets its baseline resiliency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterKind {
    /// A datacenter: redundant power and network.
    Datacenter,
    /// An edge micro-datacenter.
    EdgeMicrodc,
    /// A campus or lab.
    Lab,
    /// Prosumer mining rigs.
    Mining,
    /// Gaming PCs, owned by people who also play on them.
    Gamer,
    /// A personal-area network of phones.
    PhonePan,
    /// Anything else.
    Other,
}

impl ClusterKind {
    /// The resiliency a node of this kind starts from before any history.
    pub const fn baseline_resiliency(self) -> f64 {
        match self {
            ClusterKind::Datacenter => 0.97,
            ClusterKind::EdgeMicrodc => 0.9,
            ClusterKind::Lab => 0.85,
            ClusterKind::Mining => 0.75,
            ClusterKind::Gamer => 0.65,
            ClusterKind::PhonePan => 0.6,
            ClusterKind::Other => 0.8,
        }
    }
}

/// A cluster: one latency and failure domain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Unique name (`dc-core`, `phone-pan-1`, …).
    pub name: String,
    /// What kind of site it is.
    pub kind: ClusterKind,
    /// Resiliency of its nodes before any history.
    pub baseline_resiliency: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_set_round_trips_through_json() {
        let s = FormatSet::of(&[Format::Native, Format::Wasm]);
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(j, r#"["native","wasm"]"#);
        let back: FormatSet = serde_json::from_str(&j).unwrap();
        assert_eq!(back, s);
        assert!(back.contains(Format::Wasm) && !back.contains(Format::QemuArm64));
        assert_eq!(back.without(Format::Wasm), FormatSet::of(&[Format::Native]));
    }

    #[test]
    fn arch_accepts_kernel_names() {
        assert_eq!("aarch64".parse::<Arch>().unwrap(), Arch::Arm64);
        assert_eq!("riscv64gc".parse::<Arch>().unwrap(), Arch::Riscv64);
        let e = "mips".parse::<Arch>().unwrap_err();
        assert!(e.contains("mips"), "{e}");
        let a: Arch = serde_json::from_str("\"x86_64\"").unwrap();
        assert_eq!(a, Arch::Amd64);
    }

    #[test]
    fn free_never_negative() {
        let n = Node {
            name: "n".into(),
            cluster: "c".into(),
            hardware: Hardware {
                arch: Arch::Amd64,
                cores: 4,
                ghz: 3.0,
                speed: 1.0,
                mem_gb: 8.0,
                gpu_vram_gb: 0.0,
                tdp_w: 40.0,
            },
            runtimes: FormatSet::of(&[Format::Native]),
            labels: BTreeMap::new(),
            allocatable: Resources { cpu: 4.0, mem_gb: 8.0, gpu_vram_gb: 0.0 },
            allocated: Resources { cpu: 5.0, mem_gb: 2.0, gpu_vram_gb: 0.0 },
            telemetry: Telemetry::default(),
            status: NodeStatus::Ready,
            resiliency: 0.8,
            jitter_sigma: None,
            backlog_ms: None,
            calibration: Default::default(),
        };
        assert_eq!(n.free().cpu, 0.0);
        assert_eq!(n.free().mem_gb, 6.0);
        assert_eq!(n.hardware.joules_per_core_second(), 10.0);
    }
}
