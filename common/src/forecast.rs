//! Forecasts: how likely a node is to fail before a given time, from its
//! resiliency and its precursors, and the ground truth that gives forecasts
//! something real to catch.
//!
//! **The forecast.** A node's resiliency r is its probability of surviving
//! the risk horizon H, so without other signs its failure rate is
//! λ = −ln r / H and P(fail before t) = 1 − e^(−λ (t − now)). A *precursor*
//! — thermal throttling, temperature above 85 °C, CPU above 90 % (the
//! thresholds of the seed's controller), network degradation — says more:
//! a node that shows one fails within the lead time L after it with
//! probability `precision` (learned from how often precursors came true;
//! configured until then), at a uniformly unknown moment in that window.
//! Both risks combine as independent causes.
//!
//! **The ground truth** ([`Outages`]): every node fails at its rate λ,
//! stays down for a repair time, and `precursor_prob` of its failures are
//! announced by a precursor `lead_ms` before; false alarms (precursors not
//! followed by a failure) come at their own rate. So forecasts can be right
//! and wrong in both directions, as on real machines.

use rand::RngExt;
use rand_distr::{Distribution, Exp1};
use serde::{Deserialize, Serialize};

use crate::model::Telemetry;
use crate::rng::SimRng;
use crate::view::FabricView;

/// CPU % above which a node counts as saturated (a precursor).
pub const HOT_CPU_PCT: f64 = 90.0;
/// Temperature (°C) above which a node counts as overheating (a precursor).
pub const HOT_TEMP_C: f64 = 85.0;

/// How forecasts read signals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForecastConfig {
    /// Resiliency r = probability of surviving this long (ms).
    pub risk_horizon_ms: f64,
    /// Probability that a node showing a precursor fails within
    /// `lead_ms` of it.
    pub precursor_precision: f64,
    /// How long after a precursor the failure it announces may come (ms).
    pub lead_ms: f64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig { risk_horizon_ms: 60_000.0, precursor_precision: 0.6, lead_ms: 10_000.0 }
    }
}

/// Whether telemetry shows a precursor of failure, and which.
pub fn precursor_in(t: &Telemetry) -> Option<&'static str> {
    if t.temperature_c.is_some_and(|c| c > HOT_TEMP_C) {
        Some("temperature above 85 °C")
    } else if t.cpu_pct > HOT_CPU_PCT {
        Some("CPU above 90 %")
    } else {
        None
    }
}

/// What is known about one node when forecasting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeSigns {
    /// Its resiliency (survival over the risk horizon).
    pub resiliency: f64,
    /// When its latest precursor was seen (ms), if any.
    pub precursor_at: Option<f64>,
}

/// P(the node fails between `now` and `until`), given it is up at `now`.
pub fn p_fail(signs: NodeSigns, now: f64, until: f64, cfg: &ForecastConfig) -> f64 {
    let span = (until - now).max(0.0);
    let rate = -signs.resiliency.clamp(1e-12, 1.0).ln() / cfg.risk_horizon_ms.max(1e-9);
    let base = 1.0 - (-rate * span).exp();
    let warned = match signs.precursor_at {
        Some(t) if now < t + cfg.lead_ms && span > 0.0 => {
            // Uniform over what is left of the window, given no failure yet.
            let left = t + cfg.lead_ms - now.max(t);
            cfg.precursor_precision * (span / left).min(1.0)
        }
        _ => 0.0,
    };
    1.0 - (1.0 - base) * (1.0 - warned)
}

/// The forecast for every node of a view at `now`: `risk(node, until)` =
/// [`p_fail`] from the node's resiliency and the time its latest precursor
/// was seen — what the preemptive rule ([`crate::preempt`]) takes.
pub fn node_risk<'a>(
    resiliency: &'a [f64],
    precursor_at: &'a [Option<f64>],
    now: f64,
    cfg: &'a ForecastConfig,
) -> impl Fn(usize, f64) -> f64 + 'a {
    move |n, until| p_fail(NodeSigns { resiliency: resiliency[n], precursor_at: precursor_at[n] }, now, until, cfg)
}

/// How often precursors came true, from the failure history: of the
/// precursors (thermal throttling, network degradation) whose window of
/// `lead_ms` has passed by `now_ms`, how many a failure that took the node
/// down followed within the window. Returns (judged, came true).
pub fn precursor_record<'a>(
    events: impl IntoIterator<Item = &'a crate::failures::FailureEvent>,
    lead_ms: u64,
    now_ms: u64,
) -> (usize, usize) {
    use crate::failures::FailureKind;
    let events: Vec<&crate::failures::FailureEvent> = events.into_iter().collect();
    let mut downs: Vec<(&str, u64)> =
        events.iter().filter(|e| e.kind.makes_unavailable()).map(|e| (e.node.as_str(), e.at_ms)).collect();
    downs.sort_unstable();
    let (mut judged, mut came_true) = (0, 0);
    for p in &events {
        if !matches!(p.kind, FailureKind::ThermalThrottle | FailureKind::NetworkDegradation)
            || p.at_ms.saturating_add(lead_ms) >= now_ms
        {
            continue;
        }
        judged += 1;
        let from = downs.partition_point(|&(n, t)| (n, t) < (p.node.as_str(), p.at_ms));
        came_true += usize::from(
            downs[from..].first().is_some_and(|&(n, t)| n == p.node && t <= p.at_ms.saturating_add(lead_ms)),
        );
    }
    (judged, came_true)
}

/// The precision to forecast with: what the record says, starting from
/// `prior` as if two precursors had been judged at that rate (so one
/// alarm does not swing it to 0 or 1).
pub fn learned_precision(judged: usize, came_true: usize, prior: f64) -> f64 {
    (2.0 * prior.clamp(0.0, 1.0) + came_true as f64) / (2.0 + judged as f64)
}

/// Settings of the ground truth's failures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutageConfig {
    /// Resiliency r = probability of surviving this long (ms).
    pub risk_horizon_ms: f64,
    /// How long a failed node stays down (ms).
    pub repair_ms: f64,
    /// Fraction of failures announced by a precursor.
    pub precursor_prob: f64,
    /// How long before its failure a precursor shows (ms).
    pub lead_ms: f64,
    /// False alarms per node per hour (precursors with no failure).
    pub false_alarms_per_hour: f64,
}

impl Default for OutageConfig {
    fn default() -> Self {
        OutageConfig {
            risk_horizon_ms: 60_000.0,
            repair_ms: 20_000.0,
            precursor_prob: 0.8,
            lead_ms: 8_000.0,
            false_alarms_per_hour: 2.0,
        }
    }
}

/// A precursor shown by a node.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// Node index.
    pub node: usize,
    /// When (ms).
    pub at: f64,
    /// Whether a failure follows (known to the ground truth only).
    pub true_alarm: bool,
}

/// When every node of a fabric fails, and the precursors it shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outages {
    /// Per node: (down from, up again), in order.
    down: Vec<Vec<(f64, f64)>>,
    /// Every precursor, in time order.
    signals: Vec<Signal>,
}

impl Outages {
    /// Samples failures and precursors of every node of `view` over
    /// `[0, until_ms)`.
    pub fn sample(view: &FabricView, until_ms: f64, cfg: &OutageConfig, rng: &mut SimRng) -> Self {
        let mut down = Vec::with_capacity(view.nodes.len());
        let mut signals = Vec::new();
        for n in 0..view.nodes.len() {
            let r = view.nodes.resiliency[n].clamp(1e-12, 1.0);
            let rate = -r.ln() / cfg.risk_horizon_ms.max(1e-9);
            let mut spans = Vec::new();
            let mut t = 0.0;
            if rate > 0.0 {
                loop {
                    let e: f64 = Exp1.sample(rng);
                    t += e / rate;
                    if t >= until_ms {
                        break;
                    }
                    spans.push((t, t + cfg.repair_ms));
                    if rng.random::<f64>() < cfg.precursor_prob {
                        signals.push(Signal { node: n, at: (t - cfg.lead_ms).max(0.0), true_alarm: true });
                    }
                    t += cfg.repair_ms;
                }
            }
            let false_rate = cfg.false_alarms_per_hour / 3_600_000.0;
            let mut f = 0.0;
            while false_rate > 0.0 && f < until_ms {
                let e: f64 = Exp1.sample(rng);
                f += e / false_rate;
                if f >= until_ms {
                    break;
                }
                // Not a warning of a failure that comes anyway.
                let near = spans.iter().any(|&(a, _)| f <= a && a - f <= cfg.lead_ms);
                if !near {
                    signals.push(Signal { node: n, at: f, true_alarm: false });
                }
            }
            down.push(spans);
        }
        signals.sort_by(|a, b| a.at.total_cmp(&b.at).then(a.node.cmp(&b.node)));
        Outages { down, signals }
    }

    /// Given outages, without precursors: per node, (down from, up again)
    /// spans (sorted here); for experiments that fail chosen nodes.
    pub fn from_spans(mut down: Vec<Vec<(f64, f64)>>) -> Self {
        for d in &mut down {
            d.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        Outages { down, signals: Vec::new() }
    }

    /// Every precursor, in time order.
    pub fn signals(&self) -> &[Signal] {
        &self.signals
    }

    /// When `node` fails during a run on it over `[from, to)`: the start of
    /// the first outage that overlaps it (`from` when it is down already).
    pub fn fails_during(&self, node: usize, from: f64, to: f64) -> Option<f64> {
        self.down.get(node)?.iter().find(|&&(a, b)| a < to && b > from).map(|&(a, _)| a.max(from))
    }

    /// Whether `node` is down at `t`.
    pub fn down_at(&self, node: usize, t: f64) -> bool {
        self.down.get(node).is_some_and(|d| d.iter().any(|&(a, b)| a <= t && t < b))
    }

    /// Outages of every node, counted.
    pub fn count(&self) -> usize {
        self.down.iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Rule: a precursor counts as come true when a failure that took its
    // node down followed within the lead; precursors whose window is still
    // open are not judged; the learned precision starts at the prior.
    #[test]
    fn precision_is_learned_from_the_failure_history() {
        use crate::failures::{FailureEvent, FailureKind};
        let ev = |seq: u64, node: &str, kind, at_ms| FailureEvent {
            id: crate::twin::FailureId { reporter: "r".into(), seq },
            node: node.into(),
            kind,
            at_ms,
            duration_ms: 1_000,
        };
        let events = [
            ev(1, "a", FailureKind::ThermalThrottle, 1_000),
            ev(2, "a", FailureKind::NodeDown, 9_000), // within 10 s: came true
            ev(3, "b", FailureKind::NetworkDegradation, 2_000),
            ev(4, "b", FailureKind::NodeDown, 30_000), // too late: a false alarm
            ev(5, "c", FailureKind::ThermalThrottle, 3_000), // nothing after it
            ev(6, "a", FailureKind::SystemCrash, 50_000),
            ev(7, "d", FailureKind::ThermalThrottle, 55_000), // window still open
            ev(8, "c", FailureKind::NodeDown, 1_000),         // before its precursor
        ];
        assert_eq!(precursor_record(&events, 10_000, 60_000), (3, 1));
        assert_eq!(precursor_record(&events, 10_000, 66_000), (4, 1));
        assert!((learned_precision(0, 0, 0.6) - 0.6).abs() < 1e-12);
        assert!((learned_precision(3, 1, 0.6) - 2.2 / 5.0).abs() < 1e-12);
        assert!((learned_precision(1_000, 900, 0.6) - 0.8992).abs() < 1e-3);
    }
    use crate::rng::seeded;

    fn cfg() -> ForecastConfig {
        ForecastConfig { risk_horizon_ms: 60_000.0, precursor_precision: 0.6, lead_ms: 10_000.0 }
    }

    // Rule: without a precursor the forecast is the resiliency's own
    // rate: r itself is the survival over the horizon.
    #[test]
    fn without_precursors_the_forecast_is_the_resiliency() {
        let s = NodeSigns { resiliency: 0.9, precursor_at: None };
        assert!((p_fail(s, 0.0, 60_000.0, &cfg()) - 0.1).abs() < 1e-12);
        assert_eq!(p_fail(s, 5.0, 5.0, &cfg()), 0.0);
        let sure = NodeSigns { resiliency: 1.0, precursor_at: None };
        assert_eq!(p_fail(sure, 0.0, 1e9, &cfg()), 0.0);
    }

    // Rule: a precursor raises the risk of the window it announces, by its
    // precision, spread evenly over the lead time; once the window has
    // passed without a failure it no longer counts.
    #[test]
    fn a_precursor_raises_the_risk_of_its_window_only() {
        let c = cfg();
        let s = NodeSigns { resiliency: 1.0, precursor_at: Some(1_000.0) };
        assert!((p_fail(s, 1_000.0, 11_000.0, &c) - 0.6).abs() < 1e-12, "the whole window");
        assert!((p_fail(s, 1_000.0, 6_000.0, &c) - 0.3).abs() < 1e-12, "half of it");
        assert!((p_fail(s, 6_000.0, 11_000.0, &c) - 0.6).abs() < 1e-12, "what is left of it");
        assert_eq!(p_fail(s, 11_000.0, 20_000.0, &c), 0.0, "passed");
        let both = NodeSigns { resiliency: 0.9, precursor_at: Some(0.0) };
        let p = p_fail(both, 0.0, 10_000.0, &c);
        let base = 1.0 - 0.9f64.powf(10.0 / 60.0);
        assert!((p - (1.0 - (1.0 - base) * 0.4)).abs() < 1e-12);
    }

    #[test]
    fn telemetry_precursors_use_the_seed_thresholds() {
        let mut t = Telemetry::default();
        assert_eq!(precursor_in(&t), None);
        t.cpu_pct = 95.0;
        assert_eq!(precursor_in(&t), Some("CPU above 90 %"));
        t.temperature_c = Some(90.0);
        assert_eq!(precursor_in(&t), Some("temperature above 85 °C"));
    }

    // Rule: the ground truth fails nodes at their resiliency's rate and
    // announces the configured share of failures a lead time before.
    #[test]
    fn sampled_outages_follow_resiliency_and_announce_most_failures() {
        let mut view = crate::fabric::reference().view();
        for r in view.nodes.resiliency.iter_mut() {
            *r = 0.9;
        }
        let c = OutageConfig { repair_ms: 1_000.0, false_alarms_per_hour: 0.0, ..OutageConfig::default() };
        let until = 3_600_000.0;
        let o = Outages::sample(&view, until, &c, &mut seeded(5));
        // Expected failures per node: until / (mean ttf + repair).
        let ttf = 60_000.0 / -(0.9f64.ln());
        let expected = view.nodes.len() as f64 * until / (ttf + c.repair_ms);
        let got = o.count() as f64;
        assert!((got - expected).abs() < 0.15 * expected, "{got} vs {expected}");
        let announced = o.signals().iter().filter(|s| s.true_alarm).count() as f64;
        assert!((announced / got - 0.8).abs() < 0.05, "{announced} of {got}");
        for s in o.signals() {
            let announced = o.down[s.node].iter().any(|&(a, _)| (a - (s.at + c.lead_ms)).abs() < 1e-6);
            assert!(announced || s.at == 0.0, "a true alarm comes lead_ms before its failure");
        }
        assert!(o.signals().windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn a_run_on_a_down_node_fails_at_once() {
        let o = Outages { down: vec![vec![(100.0, 200.0)]], signals: vec![] };
        assert_eq!(o.fails_during(0, 0.0, 50.0), None);
        assert_eq!(o.fails_during(0, 0.0, 150.0), Some(100.0));
        assert_eq!(o.fails_during(0, 150.0, 300.0), Some(150.0));
        assert_eq!(o.fails_during(0, 200.0, 300.0), None);
    }
}
