//! The 1:100 scaler between simulated and real resources.
//!
//! Job documents speak of the fabric's resources (a stage wants 4 cores of
//! a datacenter server). A test fabric — k3d clusters on one machine —
//! cannot give that, so pods request the demand divided by the ratio
//! (4 cores → 40 millicores at 1:100) and the results are scaled back up
//! for comparison.

use serde::{Deserialize, Serialize};

use crate::job::Compute;

/// Real (Kubernetes) resource quantities for a stage's pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodResources {
    /// CPU in millicores (≥ 1).
    pub cpu_millis: u64,
    /// Memory in MiB (≥ 1).
    pub mem_mib: u64,
}

impl PodResources {
    /// Kubernetes quantity strings (`"40m"`, `"41Mi"`).
    pub fn quantities(&self) -> (String, String) {
        (format!("{}m", self.cpu_millis), format!("{}Mi", self.mem_mib))
    }
}

/// Scales between simulated and real resources.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    /// Simulated units per real unit (100 = 1:100).
    pub ratio: f64,
}

impl Default for Scaler {
    fn default() -> Self {
        Scaler { ratio: 100.0 }
    }
}

impl Scaler {
    /// The pod resources for a stage's demand (rounded up, never 0).
    pub fn to_pod(&self, c: &Compute) -> PodResources {
        let cpu_millis = (c.cpu * 1000.0 / self.ratio).ceil().max(1.0) as u64;
        let mem_mib = (c.mem_gb * 1024.0 / self.ratio).ceil().max(1.0) as u64;
        PodResources { cpu_millis, mem_mib }
    }

    /// Simulated cores from real millicores.
    pub fn cores_from_millis(&self, millis: u64) -> f64 {
        millis as f64 * self.ratio / 1000.0
    }

    /// Simulated GB from real MiB.
    pub fn gb_from_mib(&self, mib: u64) -> f64 {
        mib as f64 * self.ratio / 1024.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_to_one_hundred() {
        let s = Scaler::default();
        let c = Compute { cpu: 4.0, mem_gb: 4.0, duration_ms: 1.0, gpu_vram_gb: 0.0 };
        let p = s.to_pod(&c);
        assert_eq!(p, PodResources { cpu_millis: 40, mem_mib: 41 });
        assert_eq!(p.quantities(), ("40m".to_string(), "41Mi".to_string()));
        assert_eq!(s.cores_from_millis(40), 4.0);
        let tiny = Compute { cpu: 0.01, mem_gb: 0.0, duration_ms: 1.0, gpu_vram_gb: 0.0 };
        assert_eq!(s.to_pod(&tiny), PodResources { cpu_millis: 1, mem_mib: 1 });
    }
}
