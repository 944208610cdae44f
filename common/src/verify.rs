//! Verification: what was predicted against what happened.
//!
//! A plan is *accepted* when its observed latency is within ±10 % of the
//! prediction and its energy within ±20 % (both configurable). Summaries
//! give the acceptance rate and error statistics over many plans, which is
//! how twinmesh reports whether its twin can be trusted.

use serde::{Deserialize, Serialize};

use crate::plan::Prediction;

/// Acceptance thresholds, as relative errors.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Latency: |observed − predicted| / predicted ≤ this.
    pub latency_rel: f64,
    /// Energy: |observed − predicted| / predicted ≤ this.
    pub energy_rel: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { latency_rel: 0.10, energy_rel: 0.20 }
    }
}

/// What actually happened to a job.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// End-to-end latency (ms).
    pub latency_ms: f64,
    /// Energy (J).
    pub energy_j: f64,
}

/// One metric compared.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Predicted value.
    pub predicted: f64,
    /// Observed value.
    pub observed: f64,
    /// observed − predicted.
    pub abs_error: f64,
    /// (observed − predicted) / predicted (0 when both are 0).
    pub rel_error: f64,
    /// Whether |rel_error| is within the threshold.
    pub within: bool,
}

impl Comparison {
    /// Compares one metric against a relative threshold.
    pub fn new(predicted: f64, observed: f64, threshold: f64) -> Self {
        let abs_error = observed - predicted;
        let rel_error = if predicted.abs() > f64::EPSILON {
            abs_error / predicted
        } else if observed.abs() > f64::EPSILON {
            f64::INFINITY
        } else {
            0.0
        };
        Comparison { predicted, observed, abs_error, rel_error, within: rel_error.abs() <= threshold }
    }
}

/// The verdict on one plan.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// Latency comparison.
    pub latency: Comparison,
    /// Energy comparison.
    pub energy: Comparison,
    /// Both within their thresholds.
    pub accepted: bool,
}

/// Verifies one plan's prediction against its observation.
pub fn verify(predicted: &Prediction, observed: &Observed, t: &Thresholds) -> Verification {
    let latency = Comparison::new(predicted.latency_ms, observed.latency_ms, t.latency_rel);
    let energy = Comparison::new(predicted.energy_j, observed.energy_j, t.energy_rel);
    Verification { latency, energy, accepted: latency.within && energy.within }
}

/// Distribution of absolute relative errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorStats {
    /// Mean |relative error|.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Largest.
    pub max: f64,
}

impl ErrorStats {
    /// Statistics of |v|.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().map(f64::abs).filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return ErrorStats::default();
        }
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((p * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
        ErrorStats { mean: v.iter().sum::<f64>() / v.len() as f64, p50: q(0.5), p90: q(0.9), max: v[v.len() - 1] }
    }
}

/// Summary over many verifications.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Plans verified.
    pub count: usize,
    /// Plans accepted.
    pub accepted: usize,
    /// accepted / count (0 when none).
    pub acceptance_rate: f64,
    /// Latency relative errors.
    pub latency: ErrorStats,
    /// Energy relative errors.
    pub energy: ErrorStats,
}

impl Summary {
    /// Summarises verifications.
    pub fn of<'a>(vs: impl IntoIterator<Item = &'a Verification> + Clone) -> Self {
        let count = vs.clone().into_iter().count();
        let accepted = vs.clone().into_iter().filter(|v| v.accepted).count();
        Summary {
            count,
            accepted,
            acceptance_rate: if count == 0 { 0.0 } else { accepted as f64 / count as f64 },
            latency: ErrorStats::of(vs.clone().into_iter().map(|v| v.latency.rel_error)),
            energy: ErrorStats::of(vs.into_iter().map(|v| v.energy.rel_error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pred(latency: f64, energy: f64) -> Prediction {
        Prediction {
            latency_ms: latency,
            energy_j: energy,
            risk: 0.0,
            deadline_ms: None,
            deadline_slack_ms: None,
            meets_deadline: true,
            tail_latency_ms: None,
            stages: vec![],
        }
    }

    #[test]
    fn thresholds_are_inclusive_and_per_metric() {
        let t = Thresholds::default();
        let v = verify(&pred(1000.0, 100.0), &Observed { latency_ms: 1100.0, energy_j: 120.0 }, &t);
        assert!(v.latency.within && v.energy.within && v.accepted);
        assert!((v.latency.rel_error - 0.1).abs() < 1e-12);
        let v = verify(&pred(1000.0, 100.0), &Observed { latency_ms: 1101.0, energy_j: 100.0 }, &t);
        assert!(!v.latency.within && !v.accepted);
        let v = verify(&pred(1000.0, 100.0), &Observed { latency_ms: 950.0, energy_j: 79.0 }, &t);
        assert!(v.latency.within && !v.energy.within && !v.accepted);
        assert_eq!(v.latency.abs_error, -50.0);
    }

    #[test]
    fn summary_counts_and_percentiles() {
        let t = Thresholds::default();
        let vs: Vec<Verification> = [1000.0, 1050.0, 1200.0, 900.0]
            .iter()
            .map(|o| verify(&pred(1000.0, 10.0), &Observed { latency_ms: *o, energy_j: 10.0 }, &t))
            .collect();
        let s = Summary::of(&vs);
        assert_eq!((s.count, s.accepted), (4, 3));
        assert_eq!(s.acceptance_rate, 0.75);
        assert!((s.latency.max - 0.2).abs() < 1e-12);
        assert!((s.latency.mean - (0.0 + 0.05 + 0.2 + 0.1) / 4.0).abs() < 1e-12);
        assert_eq!(Summary::of(&[]).acceptance_rate, 0.0);
    }
}
