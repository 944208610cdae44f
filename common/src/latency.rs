//! The inter-cluster network: one-way latency and link bandwidth between
//! every pair of clusters, dense and indexed by cluster position.
//!
//! Latencies come from measurement or configuration; the planner only ever
//! asks "how long until data produced in cluster A is usable in cluster B",
//! which is [`LatencyMatrix::transfer_ms`].

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a latency matrix could not be built.
#[derive(Debug, Error, PartialEq)]
pub enum LatencyError {
    /// A value is negative, zero where it must not be, or not a number.
    #[error("latency_ms.{from}.{to}: {reason}")]
    BadValue {
        /// Row cluster.
        from: String,
        /// Column cluster.
        to: String,
        /// What is wrong.
        reason: String,
    },
    /// A pair has no value in either direction.
    #[error("latency_ms: no latency between '{from}' and '{to}'")]
    Missing {
        /// One cluster.
        from: String,
        /// The other.
        to: String,
    },
    /// A name that is not one of the clusters.
    #[error("latency_ms: unknown cluster '{0}'")]
    UnknownCluster(String),
}

/// Latency (ms) and bandwidth (Mbit/s) between clusters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyMatrix {
    names: Vec<String>,
    latency_ms: Vec<f64>,
    bandwidth_mbps: Vec<f64>,
}

impl LatencyMatrix {
    /// A matrix over `names` from a closure giving (latency ms, bandwidth
    /// Mbit/s) for each ordered pair.
    pub fn from_fn(names: Vec<String>, mut f: impl FnMut(usize, usize) -> (f64, f64)) -> Self {
        let n = names.len();
        let mut latency_ms = vec![0.0; n * n];
        let mut bandwidth_mbps = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let (l, b) = f(i, j);
                latency_ms[i * n + j] = l;
                bandwidth_mbps[i * n + j] = b;
            }
        }
        LatencyMatrix { names, latency_ms, bandwidth_mbps }
    }

    /// Validates every entry: finite, latency ≥ 0, bandwidth > 0.
    pub fn validate(&self) -> Result<(), LatencyError> {
        let n = self.names.len();
        for i in 0..n {
            for j in 0..n {
                let (l, b) = (self.latency_ms[i * n + j], self.bandwidth_mbps[i * n + j]);
                let bad = |reason: &str| LatencyError::BadValue {
                    from: self.names[i].clone(),
                    to: self.names[j].clone(),
                    reason: reason.to_string(),
                };
                if !l.is_finite() || l < 0.0 {
                    return Err(bad(&format!("latency {l} must be a finite number ≥ 0")));
                }
                if !b.is_finite() || b <= 0.0 {
                    return Err(bad(&format!("bandwidth {b} must be a finite number > 0")));
                }
            }
        }
        Ok(())
    }

    /// Cluster names in index order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of clusters.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no clusters.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Index of a cluster by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// One-way latency in ms between cluster indices.
    #[inline]
    pub fn latency(&self, from: usize, to: usize) -> f64 {
        self.latency_ms[from * self.names.len() + to]
    }

    /// Bandwidth in Mbit/s between cluster indices.
    #[inline]
    pub fn bandwidth(&self, from: usize, to: usize) -> f64 {
        self.bandwidth_mbps[from * self.names.len() + to]
    }

    /// Time to move `data_mb` megabytes from `from` to `to`: latency plus
    /// serialisation at the link's bandwidth.
    #[inline]
    pub fn transfer_ms(&self, from: usize, to: usize, data_mb: f64) -> f64 {
        let i = from * self.names.len() + to;
        self.latency_ms[i] + data_mb * 8.0 * 1000.0 / self.bandwidth_mbps[i]
    }

    /// Sets latency between two named clusters in both directions.
    pub fn set_latency(&mut self, a: &str, b: &str, ms: f64) -> Result<(), LatencyError> {
        let i = self.index_of(a).ok_or_else(|| LatencyError::UnknownCluster(a.into()))?;
        let j = self.index_of(b).ok_or_else(|| LatencyError::UnknownCluster(b.into()))?;
        let n = self.names.len();
        self.latency_ms[i * n + j] = ms;
        self.latency_ms[j * n + i] = ms;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> LatencyMatrix {
        LatencyMatrix::from_fn(
            vec!["a".into(), "b".into()],
            |i, j| {
                if i == j { (1.0, 10_000.0) } else { (20.0, 100.0) }
            },
        )
    }

    #[test]
    fn transfer_adds_serialisation_time() {
        let m = two();
        // 10 MB over 100 Mbit/s = 800 ms, plus 20 ms latency.
        assert!((m.transfer_ms(0, 1, 10.0) - 820.0).abs() < 1e-9);
        assert_eq!(m.transfer_ms(1, 1, 0.0), 1.0);
        assert!(m.validate().is_ok());
    }

    #[test]
    fn rejects_negative_and_unknown() {
        let mut m = two();
        m.set_latency("a", "b", -1.0).unwrap();
        let e = m.validate().unwrap_err();
        assert!(e.to_string().contains("latency_ms.a.b"), "{e}");
        assert_eq!(m.set_latency("a", "zz", 1.0).unwrap_err(), LatencyError::UnknownCluster("zz".into()));
    }
}
