//! The embedded fabric's ground truth: how long a run *really* takes on a
//! node, in ways the twin cannot see.
//!
//! Every node has a hidden speed factor (0.85–1.25×, stable per name),
//! emulated formats cost a little more or less than the twin assumes, and
//! runs are noisy (lognormal σ = 0.05, seeded by the run's name, so asking
//! twice about the same run gives the same answer). The agent's embedded
//! fabric books runs with these times, and the DES can use them too
//! ([`GroundTruth`] is a [`crate::des::RunTimes`]), so the two can be
//! compared to the microsecond.

use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use crate::des::{RunQuery, RunTimes};
use crate::model::Format;
use crate::rng::SimRng;
use crate::view::FabricView;

/// True slowdown of each format (the twin assumes
/// [`crate::view::FormatOverheads::default`]).
pub const TRUE_OVERHEAD: [f64; 5] = [1.0, 1.7, 1.35, 1.95, 1.22];
/// Run-to-run noise of the ground truth (lognormal σ).
pub const TRUE_SIGMA: f64 = 0.05;

fn unit_hash(s: &str) -> f64 {
    let h = s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    // FNV's high bits hardly depend on the last bytes ("dc-x86-01" and
    // "dc-x86-02" would share a factor): finish with splitmix64's mixer.
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The hidden factor by which node `name` is slower (> 1) or faster than
/// the twin believes: 0.85–1.25.
pub fn hidden_factor(name: &str) -> f64 {
    0.85 + 0.4 * unit_hash(name)
}

/// The model's uncalibrated run time of `duration_ms` of reference work on
/// node `n` in format `f`.
pub fn model_ms(view: &FabricView, n: usize, duration_ms: f64, f: Format) -> f64 {
    duration_ms * view.nodes.inv_speed[n] * view.overheads.get(f)
}

/// The name of one run: `job/stage/attempt`; it seeds the run's noise.
pub fn run_name(job: &str, stage: &str, attempt: u16) -> String {
    format!("{job}/{stage}/{attempt}")
}

/// What a run really takes on node `n`: the model's time × the node's
/// hidden factor × the true/assumed format overhead × noise seeded by
/// `run` (see [`run_name`]).
pub fn true_ms(view: &FabricView, n: usize, model_ms: f64, f: Format, run: &str) -> f64 {
    let mut rng = SimRng::seed_from_u64(run.bytes().fold(1u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b))));
    let z: f64 = StandardNormal.sample(&mut rng);
    model_ms * hidden_factor(&view.nodes.name[n]) * TRUE_OVERHEAD[f.index()] / view.overheads.get(f)
        * (TRUE_SIGMA * z - TRUE_SIGMA * TRUE_SIGMA / 2.0).exp()
}

/// The ground truth as the DES's world: job `i` of the simulation is named
/// `jobs[i]` (its id), stages by their document ids.
#[derive(Clone, Debug)]
pub struct GroundTruth {
    /// Per submitted job: its id and its stage ids.
    pub jobs: Vec<(String, Vec<String>)>,
    /// Reference duration of each stage, per job.
    pub durations: Vec<Vec<f64>>,
}

/// One booked run as the ground truth has it: (what the uncalibrated
/// model predicts, how long it really takes), for run `attempt` of stage
/// `stage` of job `job` on node `n`. The one rule the owner's agent, the
/// DES and the many-agent simulator all time runs with.
pub fn run(
    view: &FabricView,
    n: usize,
    duration_ms: f64,
    f: Format,
    job: &str,
    stage: &str,
    attempt: u16,
) -> (f64, f64) {
    let model = model_ms(view, n, duration_ms, f);
    (model, true_ms(view, n, model, f, &run_name(job, stage, attempt)))
}

impl RunTimes for GroundTruth {
    fn run_ms(&mut self, view: &FabricView, q: RunQuery, _rng: &mut SimRng) -> f64 {
        let (id, stages) = &self.jobs[q.job];
        run(view, q.node, self.durations[q.job][q.stage], q.format, id, &stages[q.stage], q.attempt).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_factors_are_stable_and_bounded() {
        for n in ["dc-x86-01", "pan1-phone-03", "lab-rv-02"] {
            let f = hidden_factor(n);
            assert!((0.85..=1.25).contains(&f), "{n}: {f}");
            assert_eq!(f, hidden_factor(n));
        }
        assert_ne!(hidden_factor("a"), hidden_factor("b"));
        // Nodes of one group differ, and the spread covers the range.
        let fs: Vec<f64> = (1..=40).map(|i| hidden_factor(&format!("pan1-phone-{i:02}"))).collect();
        let distinct = fs.iter().map(|f| (f * 1000.0) as i64).collect::<std::collections::BTreeSet<_>>().len();
        assert!(distinct >= 35, "{distinct} distinct factors of 40");
        let mean = fs.iter().sum::<f64>() / fs.len() as f64;
        assert!((mean - 1.05).abs() < 0.06, "mean {mean}");
    }

    #[test]
    fn the_same_run_takes_the_same_time_and_attempts_differ() {
        let v = crate::fabric::reference().view();
        let a = true_ms(&v, 0, 1000.0, Format::Native, &run_name("j", "s", 1));
        assert_eq!(a, true_ms(&v, 0, 1000.0, Format::Native, &run_name("j", "s", 1)));
        assert_ne!(a, true_ms(&v, 0, 1000.0, Format::Native, &run_name("j", "s", 2)));
        let f = hidden_factor(&v.nodes.name[0]);
        assert!((a / (1000.0 * f) - 1.0).abs() < 0.25, "noise σ 0.05: {a} vs {}", 1000.0 * f);
    }
}
