//! Calibration: learn, per node and format, how far the twin's run-time
//! model is off, from what was observed, so later predictions are closer.
//!
//! Each (node, format) keeps a correction factor = observed / predicted run
//! time, a mean in log space (errors are multiplicative), clamped to a sane
//! range: the plain mean of the first runs, then exponentially weighted
//! with weight `alpha`, so a steady node's factor settles to within a
//! fraction of its run-to-run noise; a run further than four learned
//! spreads from the factor is taken for a change of the node (a drift) and
//! restarts the mean from it, so a node that became slower is re-learned
//! after one run. Per-format factors
//! aggregated over all nodes give the measured slowdown of emulation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::Format;
use crate::view::FabricView;

/// One learned factor.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    /// Current estimate of observed / predicted.
    pub value: f64,
    /// Observations folded in.
    pub samples: u64,
    /// Exponentially weighted variance of ln(observed / predicted) around
    /// the factor: how much runs vary there (σ² of a lognormal).
    #[serde(default)]
    pub var: f64,
}

impl Factor {
    /// The learned spread of run times (lognormal σ), once two runs have
    /// been seen.
    pub fn sigma(&self) -> Option<f64> {
        (self.samples >= 2).then(|| self.var.sqrt())
    }
}

/// Learned correction factors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Weight of a new observation (0–1).
    pub alpha: f64,
    /// (node, format) → factor.
    factors: BTreeMap<(String, Format), Factor>,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration { alpha: 0.05, factors: BTreeMap::new() }
    }
}

/// The least spread (lognormal σ) a drift is measured against, so a node
/// that has been steady so far does not take ordinary noise for a drift.
const MIN_DRIFT_SIGMA: f64 = 0.03;

/// Factors are kept within [1/MAX_FACTOR, MAX_FACTOR].
pub const MAX_FACTOR: f64 = 5.0;

impl Calibration {
    /// An empty calibration with smoothing `alpha`.
    pub fn new(alpha: f64) -> Self {
        Calibration { alpha: alpha.clamp(0.01, 1.0), factors: BTreeMap::new() }
    }

    /// Folds in one run: the *uncalibrated* model predicted
    /// `model_ms`, the node took `observed_ms`.
    pub fn observe(&mut self, node: &str, format: Format, model_ms: f64, observed_ms: f64) {
        if !(model_ms > 0.0 && observed_ms > 0.0 && model_ms.is_finite() && observed_ms.is_finite()) {
            return;
        }
        let ratio = (observed_ms / model_ms).clamp(1.0 / MAX_FACTOR, MAX_FACTOR);
        let f = self.factors.entry((node.to_string(), format)).or_insert(Factor { value: 1.0, samples: 0, var: 0.0 });
        let dev = ratio.ln() - f.value.ln();
        // The first observation is taken whole, the next ones averaged,
        // later ones smoothed; a drift starts over.
        let drift = f.samples >= 3 && dev.abs() > 4.0 * f.var.sqrt().max(MIN_DRIFT_SIGMA);
        if drift {
            f.samples = 0;
            f.var = 0.0;
        }
        let a = if f.samples == 0 { 1.0 } else { (1.0 / (f.samples + 1) as f64).max(self.alpha) };
        // West's weighted update: the spread around the mean before it
        // moves, so one run teaches no spread and a steady node none.
        if f.samples > 0 {
            f.var = (1.0 - a) * (f.var + a * dev * dev);
        }
        f.value = ((1.0 - a) * f.value.ln() + a * ratio.ln()).exp();
        f.samples += 1;
    }

    /// The factor for a node and format (1 when unknown).
    pub fn factor(&self, node: &str, format: Format) -> f64 {
        self.factors.get(&(node.to_string(), format)).map_or(1.0, |f| f.value)
    }

    /// Geometric mean of a format's factors across nodes, weighted by
    /// samples (1 when none).
    pub fn format_factor(&self, format: Format) -> f64 {
        let (mut sum, mut n) = (0.0, 0u64);
        for ((_, f), v) in &self.factors {
            if *f == format {
                sum += v.value.ln() * v.samples as f64;
                n += v.samples;
            }
        }
        if n == 0 { 1.0 } else { (sum / n as f64).exp() }
    }

    /// Writes the factors into a planning view. A node with observations
    /// in a format gets its own factor; for emulated formats (QEMU, Wasm)
    /// every other node gets the format's factor measured across the fabric,
    /// so once emulation has been observed anywhere the predictor uses the
    /// measured slowdown instead of the assumed constant.
    pub fn apply(&self, view: &mut FabricView) {
        for f in Format::ALL.into_iter().filter(|f| *f != Format::Native) {
            if self.factors.keys().any(|(_, g)| *g == f) {
                let measured = self.format_factor(f);
                for n in 0..view.nodes.len() {
                    view.set_calibration(n, f, measured);
                }
            }
        }
        for ((node, format), f) in &self.factors {
            if let Some(n) = view.node_index(node) {
                view.set_calibration(n, *format, f.value);
            }
        }
    }

    /// Writes into a view what is known of every node and format, best
    /// source first: the factor the node's owner published in the twin (a
    /// view factor other than 1 — the owner sees every run on its node), else
    /// this planner's own observations. Gaps are filled from the fleet,
    /// since a node's factor is mostly its own speed and a format's mostly
    /// its emulation cost: a node without a native factor gets the
    /// geometric mean of the known ones; a (node, format) never seen gets
    /// the node's native factor × the format's measured ratio to native on
    /// nodes where both are known.
    pub fn apply_under_owners(&self, view: &mut FabricView) {
        let n_nodes = view.nodes.len();
        let mut known: Vec<[Option<f64>; 5]> = vec![[None; 5]; n_nodes];
        for (n, k) in known.iter_mut().enumerate() {
            for f in Format::ALL {
                let published = view.nodes.calib[n][f.index()];
                if (published - 1.0).abs() > 1e-12 {
                    k[f.index()] = Some(published);
                } else if let Some(v) = self.factors.get(&(view.nodes.name[n].clone(), f)) {
                    k[f.index()] = Some(v.value);
                }
            }
        }
        let geomean =
            |v: &[f64]| (!v.is_empty()).then(|| (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp());
        let native = Format::Native.index();
        let natives: Vec<f64> = known.iter().filter_map(|k| k[native]).collect();
        let fleet_native = geomean(&natives).unwrap_or(1.0);
        for f in Format::ALL.into_iter().filter(|f| *f != Format::Native) {
            let i = f.index();
            let ratios: Vec<f64> = known.iter().filter_map(|k| Some(k[i]? / k[native]?)).collect();
            let ratio = geomean(&ratios).unwrap_or_else(|| {
                // Seen only where native was not: relative to the fleet.
                let seen: Vec<f64> = known.iter().filter_map(|k| k[i]).collect();
                geomean(&seen).map_or(1.0, |g| g / fleet_native)
            });
            for (n, k) in known.iter().enumerate() {
                view.nodes.calib[n][i] = k[i].unwrap_or(k[native].unwrap_or(fleet_native) * ratio);
            }
        }
        for (n, k) in known.iter().enumerate() {
            view.nodes.calib[n][native] = k[native].unwrap_or(fleet_native);
        }
    }

    /// The learned run-time spread (lognormal σ) of a node in a format,
    /// if it has been seen at least twice there.
    pub fn sigma(&self, node: &str, format: Format) -> Option<f64> {
        self.factors.get(&(node.to_string(), format)).and_then(Factor::sigma)
    }

    /// Writes the learned spread of each node (its most observed format's)
    /// into a view's `jitter_sigma`, where the view has none of its own —
    /// what the DES and the prediction intervals draw run times with.
    pub fn apply_spread(&self, view: &mut FabricView) {
        let mut best: std::collections::HashMap<&str, (u64, f64)> = std::collections::HashMap::new();
        for ((node, _), f) in &self.factors {
            if let Some(sg) = f.sigma() {
                let e = best.entry(node.as_str()).or_insert((0, sg));
                if f.samples > e.0 {
                    *e = (f.samples, sg);
                }
            }
        }
        for (n, j) in view.nodes.jitter_sigma.iter_mut().enumerate() {
            if *j < 0.0
                && let Some((_, sg)) = best.get(view.nodes.name[n].as_str())
            {
                *j = *sg;
            }
        }
    }

    /// Every learned factor.
    pub fn factors(&self) -> impl Iterator<Item = (&str, Format, Factor)> {
        self.factors.iter().map(|((n, f), v)| (n.as_str(), *f, *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_to_the_true_ratio() {
        let mut c = Calibration::new(0.3);
        for _ in 0..30 {
            c.observe("n", Format::Native, 1000.0, 1300.0);
        }
        assert!((c.factor("n", Format::Native) - 1.3).abs() < 1e-9);
        assert_eq!(c.factor("n", Format::Wasm), 1.0);
        assert_eq!(c.factor("other", Format::Native), 1.0);
    }

    #[test]
    fn a_drift_is_relearned_after_one_run_and_noise_is_averaged_away() {
        // Rule: 200 runs of a node with ±5 % noise (alternating) settle the
        // factor within 1 % of the truth; the node then becomes 1.5× slower
        // (far beyond four spreads): the next run is taken whole.
        let mut c = Calibration::default();
        for i in 0..200 {
            let t = if i % 2 == 0 { 1050.0 } else { 1000.0 / 1.05 };
            c.observe("n", Format::Native, 1000.0, t);
        }
        assert!((c.factor("n", Format::Native) - 1.0).abs() < 0.01);
        c.observe("n", Format::Native, 1000.0, 1500.0);
        assert!((c.factor("n", Format::Native) - 1.5).abs() < 1e-9);
    }

    #[test]
    fn learns_the_spread_of_run_times() {
        // Rule: runs alternating 10 % above and below the model teach a
        // factor near 1 and a spread near ln(1.1) ≈ 0.095; a node that
        // always takes the same time teaches none.
        let mut c = Calibration::new(0.1);
        for i in 0..400 {
            let t = if i % 2 == 0 { 1100.0 } else { 1000.0 / 1.1 };
            c.observe("n", Format::Native, 1000.0, t);
            c.observe("steady", Format::Native, 1000.0, 1200.0);
        }
        let sg = c.sigma("n", Format::Native).unwrap();
        assert!((sg - 1.1f64.ln()).abs() < 0.01, "{sg}");
        assert!(c.sigma("steady", Format::Native).unwrap() < 1e-9);
        assert_eq!(c.sigma("never", Format::Native), None);
        let fabric = crate::fabric::reference();
        let mut view = fabric.view();
        view.nodes.name[0] = "n".into();
        c.apply_spread(&mut view);
        assert!((view.nodes.jitter_sigma[0] - sg).abs() < 1e-12);
        assert!(view.nodes.jitter_sigma[1] < 0.0, "unobserved nodes keep the default");
    }

    #[test]
    fn smoothing_damps_outliers_and_bad_input_is_ignored() {
        // Rule: the first runs are averaged (in log space); once three
        // were seen, one outlier moves the factor by `alpha` of its way.
        let mut c = Calibration::new(0.2);
        c.observe("n", Format::QemuArm64, 100.0, 100.0);
        c.observe("n", Format::QemuArm64, 100.0, 400.0);
        let f = c.factor("n", Format::QemuArm64);
        assert!((f - 2.0).abs() < 1e-12, "mean of 1 and 4 in log space: {f}");
        let mut c = Calibration::new(0.2);
        for t in [100.0, 104.0, 98.0, 100.0, 102.0] {
            c.observe("n", Format::QemuArm64, 100.0, t);
        }
        let before = c.factor("n", Format::QemuArm64);
        c.observe("n", Format::QemuArm64, 100.0, 110.0);
        let f = c.factor("n", Format::QemuArm64);
        assert!((f.ln() - (0.8 * before.ln() + 0.2 * 1.1f64.ln())).abs() < 1e-12, "{f}");
        c.observe("n", Format::QemuArm64, 0.0, 5.0);
        c.observe("n", Format::QemuArm64, f64::NAN, 5.0);
        assert_eq!(c.factor("n", Format::QemuArm64), f);
        c.observe("m", Format::Native, 1.0, 1e9);
        assert!((c.factor("m", Format::Native) - MAX_FACTOR).abs() < 1e-9);
    }

    #[test]
    fn measured_emulation_slowdown_reaches_unobserved_nodes() {
        // Rule: qemu-riscv64 observed 20 % slower than assumed on one node
        // makes every node's qemu-riscv64 prediction 20 % slower; native
        // predictions elsewhere are untouched.
        let fabric = crate::fabric::reference();
        let mut view = fabric.view();
        let seen = view.nodes.name[0].clone();
        let mut c = Calibration::default();
        c.observe(&seen, Format::QemuRiscv64, 1000.0, 1200.0);
        c.apply(&mut view);
        let other = 5;
        let job = crate::spec::parse_job(
            "apiVersion: twinmesh.io/v1\nmetadata: {name: a, origin: {cluster: dc-core}}\nspec: {stages: [{id: s, compute: {cpu: 1, duration_ms: 1000}}]}",
        )
        .unwrap();
        let cmp = &job.stages[0].compute;
        let base = crate::fabric::reference().view();
        let ratio = view.compute_ms(other, cmp, Format::QemuRiscv64) / base.compute_ms(other, cmp, Format::QemuRiscv64);
        assert!((ratio - 1.2).abs() < 1e-9, "{ratio}");
        assert_eq!(view.compute_ms(other, cmp, Format::Native), base.compute_ms(other, cmp, Format::Native));
    }

    #[test]
    fn applies_to_a_view() {
        let fabric = crate::fabric::reference();
        let mut view = fabric.view();
        let name = view.nodes.name[3].clone();
        let mut c = Calibration::default();
        c.observe(&name, Format::Native, 100.0, 150.0);
        let job = crate::spec::parse_job(
            "apiVersion: twinmesh.io/v1\nmetadata: {name: a, origin: {cluster: dc-core}}\nspec: {stages: [{id: s, compute: {cpu: 1, duration_ms: 1000}}]}",
        )
        .unwrap();
        let before = view.compute_ms(3, &job.stages[0].compute, Format::Native);
        c.apply(&mut view);
        let after = view.compute_ms(3, &job.stages[0].compute, Format::Native);
        assert!((after / before - 1.5).abs() < 1e-12);
    }
}
