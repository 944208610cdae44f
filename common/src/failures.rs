//! Failure events and the failure generator used for injection and
//! simulation.
//!
//! Two triggers, both weighted by resiliency and throttled by a minimum
//! interval per node:
//! * **time-based** — each node fails as a Poisson process whose rate grows
//!   as its resiliency falls (a node of resiliency 1 never fails);
//! * **threshold** — sustained CPU at or above a threshold, or a
//!   temperature above one, triggers a `thermal_throttle`.
//!
//! A node heading for a failure that takes it down (`node_down`,
//! `system_crash`) shows it first with probability `precursor_prob`: it
//! throttles (a `thermal_throttle` event) `precursor_lead_ms` before it
//! goes down — what forecasts (`crate::forecast`) catch. Throttling and
//! network trouble also come on their own, with no failure after them:
//! the false alarms.
//!
//! The generator is sans-IO: the caller passes `now` and the node states,
//! and gets events back.

use std::collections::HashMap;

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use crate::twin::FailureId;

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The node is down.
    NodeDown,
    /// The node runs slower (heat).
    ThermalThrottle,
    /// The node's network is lossy or slow.
    NetworkDegradation,
    /// The OS crashed; the node reboots.
    SystemCrash,
    /// The node is back: ends every failure of it that began earlier.
    Recovered,
}

impl FailureKind {
    /// Every kind.
    pub const ALL: [FailureKind; 4] = [
        FailureKind::NodeDown,
        FailureKind::ThermalThrottle,
        FailureKind::NetworkDegradation,
        FailureKind::SystemCrash,
    ];

    /// Whether the node stops taking work while the failure lasts.
    pub const fn makes_unavailable(self) -> bool {
        matches!(self, FailureKind::NodeDown | FailureKind::SystemCrash)
    }

    /// Run-time slowdown while the failure lasts (1 = none).
    pub const fn slowdown(self) -> f64 {
        match self {
            FailureKind::ThermalThrottle => 1.5,
            FailureKind::NetworkDegradation => 1.2,
            FailureKind::NodeDown | FailureKind::SystemCrash | FailureKind::Recovered => 1.0,
        }
    }
}

/// A failure that happened (or was injected).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailureEvent {
    /// Who reported it, and its sequence there.
    pub id: FailureId,
    /// The failed node.
    pub node: String,
    /// What kind.
    pub kind: FailureKind,
    /// When it started (ms, reporter's clock or virtual time).
    pub at_ms: u64,
    /// How long it lasts (ms).
    pub duration_ms: u64,
}

impl FailureEvent {
    /// Whether the failure is in force at `now_ms` (ignoring recoveries;
    /// see [`down_nodes`]).
    pub fn active_at(&self, now_ms: u64) -> bool {
        now_ms >= self.at_ms && now_ms < self.at_ms.saturating_add(self.duration_ms)
    }
}

/// Nodes made unavailable at `now_ms` by `events`: an active `node_down`
/// or `system_crash` not followed by a `recovered` of the same node.
pub fn down_nodes<'a>(events: impl IntoIterator<Item = &'a FailureEvent>, now_ms: u64) -> Vec<String> {
    let mut last_recovery: HashMap<&str, u64> = HashMap::new();
    let mut candidates: Vec<&FailureEvent> = Vec::new();
    for e in events {
        if e.kind == FailureKind::Recovered {
            let t = last_recovery.entry(&e.node).or_insert(0);
            *t = (*t).max(e.at_ms);
        } else if e.kind.makes_unavailable() && e.active_at(now_ms) {
            candidates.push(e);
        }
    }
    let mut out: Vec<String> = candidates
        .into_iter()
        .filter(|e| last_recovery.get(e.node.as_str()).is_none_or(|&r| r < e.at_ms))
        .map(|e| e.node.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Generator settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailureConfig {
    /// Mean time between failures of a node with resiliency 0.5 (ms); the
    /// rate scales with (1 − resiliency).
    pub mtbf_at_half_ms: f64,
    /// No two generated failures of one node closer than this (ms).
    pub min_interval_ms: u64,
    /// How long a generated failure lasts (ms).
    pub duration_ms: u64,
    /// CPU % at or above which (sustained) a node throttles.
    pub cpu_threshold_pct: f64,
    /// Temperature at or above which a node throttles (°C).
    pub temperature_threshold_c: f64,
    /// How long the CPU must stay above threshold (ms).
    pub sustain_ms: u64,
    /// Share of failures that take a node down announced by a precursor.
    pub precursor_prob: f64,
    /// How long before such a failure its precursor shows (ms).
    pub precursor_lead_ms: u64,
}

impl Default for FailureConfig {
    fn default() -> Self {
        FailureConfig {
            mtbf_at_half_ms: 600_000.0,
            min_interval_ms: 60_000,
            duration_ms: 30_000,
            cpu_threshold_pct: 95.0,
            temperature_threshold_c: 90.0,
            sustain_ms: 30_000,
            precursor_prob: 0.7,
            precursor_lead_ms: 10_000,
        }
    }
}

/// What the generator needs to know about one node at a step.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSample<'a> {
    /// Node name.
    pub name: &'a str,
    /// Resiliency score.
    pub resiliency: f64,
    /// CPU %.
    pub cpu_pct: f64,
    /// Temperature, if known.
    pub temperature_c: Option<f64>,
}

/// Draws failure events over time.
#[derive(Clone, Debug)]
pub struct FailureGenerator {
    cfg: FailureConfig,
    reporter: String,
    seq: u64,
    last_step_ms: Option<u64>,
    last_failure_ms: HashMap<String, u64>,
    hot_since_ms: HashMap<String, u64>,
    /// Announced failures still to come: (node, kind, when).
    pending: Vec<(String, FailureKind, u64)>,
}

impl FailureGenerator {
    /// A generator reporting as `reporter`.
    pub fn new(reporter: impl Into<String>, cfg: FailureConfig) -> Self {
        FailureGenerator {
            cfg,
            reporter: reporter.into(),
            seq: 0,
            last_step_ms: None,
            last_failure_ms: HashMap::new(),
            hot_since_ms: HashMap::new(),
            pending: Vec::new(),
        }
    }

    /// Advances to `now_ms` and returns the failures that began since the
    /// previous step.
    pub fn step<R: Rng + ?Sized>(&mut self, now_ms: u64, nodes: &[NodeSample<'_>], rng: &mut R) -> Vec<FailureEvent> {
        let dt = self.last_step_ms.map_or(0, |t| now_ms.saturating_sub(t)) as f64;
        self.last_step_ms = Some(now_ms);
        let mut out = Vec::new();
        // Announced failures whose time has come.
        let mut k = 0;
        while k < self.pending.len() {
            if self.pending[k].2 <= now_ms {
                let (node, kind, at) = self.pending.swap_remove(k);
                self.last_failure_ms.insert(node.clone(), at);
                out.push(self.event(node, kind, at, self.cfg.duration_ms));
            } else {
                k += 1;
            }
        }
        for n in nodes {
            if self.pending.iter().any(|p| p.0 == n.name) {
                continue;
            }
            if let Some(&last) = self.last_failure_ms.get(n.name) {
                if now_ms < last + self.cfg.min_interval_ms {
                    continue;
                }
            }
            let hot = n.cpu_pct >= self.cfg.cpu_threshold_pct;
            if hot {
                self.hot_since_ms.entry(n.name.to_string()).or_insert(now_ms);
            } else {
                self.hot_since_ms.remove(n.name);
            }
            let sustained = self.hot_since_ms.get(n.name).is_some_and(|&t| now_ms - t >= self.cfg.sustain_ms);
            let too_warm = n.temperature_c.is_some_and(|t| t >= self.cfg.temperature_threshold_c);
            let kind = if sustained || too_warm {
                Some(FailureKind::ThermalThrottle)
            } else {
                let rate = 2.0 * (1.0 - n.resiliency.clamp(0.0, 1.0)) / self.cfg.mtbf_at_half_ms;
                let p = 1.0 - (-rate * dt).exp();
                if p > 0.0 && rng.random::<f64>() < p {
                    Some(match rng.random_range(0..10u8) {
                        0..=4 => FailureKind::NodeDown,
                        5..=6 => FailureKind::NetworkDegradation,
                        7..=8 => FailureKind::SystemCrash,
                        _ => FailureKind::ThermalThrottle,
                    })
                } else {
                    None
                }
            };
            if let Some(kind) = kind {
                self.last_failure_ms.insert(n.name.to_string(), now_ms);
                self.hot_since_ms.remove(n.name);
                if kind.makes_unavailable() && rng.random::<f64>() < self.cfg.precursor_prob {
                    // It heats up first; the failure follows after the lead.
                    let lead = self.cfg.precursor_lead_ms;
                    self.pending.push((n.name.to_string(), kind, now_ms + lead));
                    out.push(self.event(n.name.to_string(), FailureKind::ThermalThrottle, now_ms, lead));
                } else {
                    out.push(self.event(n.name.to_string(), kind, now_ms, self.cfg.duration_ms));
                }
            }
        }
        out
    }

    fn event(&mut self, node: String, kind: FailureKind, at_ms: u64, duration_ms: u64) -> FailureEvent {
        self.seq += 1;
        FailureEvent {
            id: FailureId { reporter: self.reporter.clone(), seq: self.seq },
            node,
            kind,
            at_ms,
            duration_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::seeded;

    fn sample(name: &str, r: f64) -> NodeSample<'_> {
        NodeSample { name, resiliency: r, cpu_pct: 10.0, temperature_c: None }
    }

    #[test]
    fn flaky_nodes_fail_more_and_perfect_nodes_never() {
        let mut g = FailureGenerator::new(
            "me",
            FailureConfig { min_interval_ms: 0, precursor_prob: 0.0, ..Default::default() },
        );
        let mut rng = seeded(3);
        let mut counts = HashMap::new();
        for step in 0..2_000u64 {
            let nodes = [sample("flaky", 0.5), sample("solid", 0.95), sample("perfect", 1.0)];
            for e in g.step(step * 10_000, &nodes, &mut rng) {
                *counts.entry(e.node).or_insert(0) += 1;
            }
        }
        let flaky = counts.get("flaky").copied().unwrap_or(0);
        let solid = counts.get("solid").copied().unwrap_or(0);
        assert!(!counts.contains_key("perfect"));
        // 20,000 s at MTBF 600 s ⇒ ~33 failures; resiliency 0.95 ⇒ ~3.
        assert!((20..=50).contains(&flaky), "flaky {flaky}");
        assert!(solid < flaky / 3, "solid {solid} flaky {flaky}");
    }

    #[test]
    fn minimum_interval_is_honoured_and_sequences_grow() {
        let mut g = FailureGenerator::new(
            "me",
            FailureConfig { mtbf_at_half_ms: 1.0, precursor_prob: 0.0, ..Default::default() },
        );
        let mut rng = seeded(1);
        let mut times = Vec::new();
        let mut seqs = Vec::new();
        for step in 0..100u64 {
            for e in g.step(step * 1_000, &[sample("n", 0.1)], &mut rng) {
                times.push(e.at_ms);
                seqs.push(e.id.seq);
            }
        }
        assert!(times.len() >= 2);
        assert!(times.windows(2).all(|w| w[1] - w[0] >= 60_000), "{times:?}");
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    }

    // Rule: with precursor_prob 1 every failure that takes a node down is
    // announced by a thermal throttle exactly the lead before it, on the
    // same node; with 0 none is; throttles with no failure after them (false
    // alarms) happen either way.
    #[test]
    fn failures_are_announced_by_precursors() {
        let run = |prob: f64| {
            let cfg = FailureConfig {
                min_interval_ms: 0,
                precursor_prob: prob,
                precursor_lead_ms: 10_000,
                ..FailureConfig::default()
            };
            let mut g = FailureGenerator::new("me", cfg);
            let mut rng = seeded(7);
            let mut all = Vec::new();
            for step in 0..20_000u64 {
                all.extend(g.step(step * 1_000, &[sample("flaky", 0.3), sample("other", 0.6)], &mut rng));
            }
            all
        };
        let announced = |ev: &[FailureEvent], f: &FailureEvent| {
            ev.iter().any(|p| p.node == f.node && p.kind == FailureKind::ThermalThrottle && p.at_ms + 10_000 == f.at_ms)
        };
        let always = run(1.0);
        let downs: Vec<&FailureEvent> = always.iter().filter(|e| e.kind.makes_unavailable()).collect();
        assert!(downs.len() >= 20, "{}", downs.len());
        assert!(downs.iter().all(|f| announced(&always, f)));
        let never = run(0.0);
        let downs: Vec<&FailureEvent> = never.iter().filter(|e| e.kind.makes_unavailable()).collect();
        assert!(downs.len() >= 20 && !downs.iter().any(|f| announced(&never, f)));
        let false_alarms = always
            .iter()
            .filter(|p| p.kind == FailureKind::ThermalThrottle)
            .filter(|p| {
                !always.iter().any(|f| f.kind.makes_unavailable() && f.node == p.node && f.at_ms == p.at_ms + 10_000)
            })
            .count();
        assert!(false_alarms > 0);
        // Sequences stay unique.
        let mut seqs: Vec<u64> = always.iter().map(|e| e.id.seq).collect();
        seqs.dedup();
        assert_eq!(seqs.len(), always.len());
    }

    #[test]
    fn recovery_ends_earlier_failures_only() {
        let ev = |seq: u64, node: &str, kind, at_ms| FailureEvent {
            id: FailureId { reporter: "r".into(), seq },
            node: node.into(),
            kind,
            at_ms,
            duration_ms: 10_000,
        };
        let events = [
            ev(1, "a", FailureKind::NodeDown, 100),
            ev(2, "b", FailureKind::SystemCrash, 100),
            ev(3, "a", FailureKind::Recovered, 200),
            ev(4, "c", FailureKind::ThermalThrottle, 100),
        ];
        assert_eq!(down_nodes(&events, 300), vec!["b".to_string()]);
        let later = [ev(5, "a", FailureKind::NodeDown, 250)];
        assert_eq!(down_nodes(events.iter().chain(&later), 300), vec!["a".to_string(), "b".to_string()]);
        assert!(down_nodes(&events, 20_000).is_empty(), "expired");
    }

    #[test]
    fn sustained_heat_throttles() {
        let mut g = FailureGenerator::new("me", FailureConfig::default());
        let mut rng = seeded(1);
        let hot = NodeSample { name: "gpu", resiliency: 1.0, cpu_pct: 99.0, temperature_c: Some(70.0) };
        assert!(g.step(0, std::slice::from_ref(&hot), &mut rng).is_empty());
        assert!(g.step(20_000, std::slice::from_ref(&hot), &mut rng).is_empty(), "not yet sustained");
        let ev = g.step(30_000, std::slice::from_ref(&hot), &mut rng);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, FailureKind::ThermalThrottle);
        assert!(ev[0].active_at(30_000) && !ev[0].active_at(60_000));
        let warm = NodeSample { name: "pc", resiliency: 1.0, cpu_pct: 1.0, temperature_c: Some(95.0) };
        assert_eq!(g.step(31_000, &[warm], &mut rng).len(), 1);
    }
}
