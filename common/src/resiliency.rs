//! Resiliency scores in [0, 1]: how likely a node is to finish what it is
//! given.
//!
//! The score starts from the cluster kind's baseline and is lowered by
//! recent failures (each weighted by kind and fading with a half-life),
//! by downtime, and by sustained high utilisation (hot machines throttle
//! and crash). With no information at all it is [`DEFAULT_RESILIENCY`].

use serde::{Deserialize, Serialize};

use crate::failures::{FailureEvent, FailureKind};

/// The score of a node nothing is known about.
pub const DEFAULT_RESILIENCY: f64 = 0.8;

/// Weights of the scorer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResiliencyConfig {
    /// A failure's weight halves every this many ms.
    pub half_life_ms: f64,
    /// Score lost per (fresh, weight-1) failure, multiplicatively:
    /// score × (1 − penalty)^weighted_failures.
    pub failure_penalty: f64,
    /// CPU % above which utilisation lowers the score.
    pub hot_cpu_pct: f64,
    /// Score lost at 100 % CPU (linear from `hot_cpu_pct`).
    pub hot_penalty: f64,
}

impl Default for ResiliencyConfig {
    fn default() -> Self {
        ResiliencyConfig { half_life_ms: 3_600_000.0, failure_penalty: 0.1, hot_cpu_pct: 80.0, hot_penalty: 0.1 }
    }
}

/// What the scorer knows about one node.
#[derive(Clone, Debug, Default)]
pub struct ResiliencyInputs<'a> {
    /// Baseline of the node's cluster kind, if known.
    pub baseline: Option<f64>,
    /// Failures of this node (any order).
    pub failures: &'a [&'a FailureEvent],
    /// Fraction of the observed window the node was up, if known.
    pub uptime: Option<f64>,
    /// Sustained CPU %, if known.
    pub sustained_cpu_pct: Option<f64>,
}

/// How much a failure of each kind counts.
pub const fn kind_weight(k: FailureKind) -> f64 {
    match k {
        FailureKind::NodeDown | FailureKind::SystemCrash => 1.0,
        FailureKind::ThermalThrottle => 0.4,
        FailureKind::NetworkDegradation => 0.5,
        FailureKind::Recovered => 0.0,
    }
}

/// Scores one node at `now_ms`.
pub fn score(inputs: &ResiliencyInputs<'_>, now_ms: u64, cfg: &ResiliencyConfig) -> f64 {
    let mut s = inputs.baseline.unwrap_or(DEFAULT_RESILIENCY);
    let weighted: f64 = inputs
        .failures
        .iter()
        .filter(|f| f.at_ms <= now_ms)
        .map(|f| kind_weight(f.kind) * 0.5f64.powf((now_ms - f.at_ms) as f64 / cfg.half_life_ms))
        .sum();
    s *= (1.0 - cfg.failure_penalty).powf(weighted);
    if let Some(u) = inputs.uptime {
        s *= 0.5 + 0.5 * u.clamp(0.0, 1.0);
    }
    if let Some(cpu) = inputs.sustained_cpu_pct {
        if cpu > cfg.hot_cpu_pct {
            let over = ((cpu - cfg.hot_cpu_pct) / (100.0 - cfg.hot_cpu_pct)).clamp(0.0, 1.0);
            s *= 1.0 - cfg.hot_penalty * over;
        }
    }
    s.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twin::FailureId;

    fn fail(at_ms: u64, kind: FailureKind) -> FailureEvent {
        FailureEvent {
            id: FailureId { reporter: "r".into(), seq: at_ms },
            node: "n".into(),
            kind,
            at_ms,
            duration_ms: 1,
        }
    }

    #[test]
    fn default_and_baseline() {
        let cfg = ResiliencyConfig::default();
        assert_eq!(score(&ResiliencyInputs::default(), 0, &cfg), DEFAULT_RESILIENCY);
        let i = ResiliencyInputs { baseline: Some(0.97), ..Default::default() };
        assert_eq!(score(&i, 0, &cfg), 0.97);
    }

    #[test]
    fn failures_lower_the_score_and_fade() {
        let cfg = ResiliencyConfig::default();
        let f = fail(0, FailureKind::NodeDown);
        let fs = [&f];
        let i = ResiliencyInputs { baseline: Some(0.9), failures: &fs, ..Default::default() };
        // Fresh: 0.9 × 0.9^1 = 0.81; one half-life later: 0.9 × 0.9^0.5.
        assert!((score(&i, 0, &cfg) - 0.81).abs() < 1e-12);
        assert!((score(&i, 3_600_000, &cfg) - 0.9 * 0.9f64.sqrt()).abs() < 1e-12);
        let t = fail(0, FailureKind::ThermalThrottle);
        let ts = [&t];
        let j = ResiliencyInputs { baseline: Some(0.9), failures: &ts, ..Default::default() };
        assert!(score(&j, 0, &cfg) > score(&i, 0, &cfg), "throttling counts less than a crash");
    }

    #[test]
    fn downtime_and_heat_lower_the_score_within_bounds() {
        let cfg = ResiliencyConfig::default();
        let i = ResiliencyInputs {
            baseline: Some(1.0),
            uptime: Some(0.5),
            sustained_cpu_pct: Some(100.0),
            ..Default::default()
        };
        assert!((score(&i, 0, &cfg) - 0.75 * 0.9).abs() < 1e-12);
        let many: Vec<FailureEvent> = (0..200).map(|k| fail(k, FailureKind::SystemCrash)).collect();
        let refs: Vec<&FailureEvent> = many.iter().collect();
        let s = score(&ResiliencyInputs { failures: &refs, ..Default::default() }, 1000, &cfg);
        assert!((0.0..0.01).contains(&s));
    }
}
