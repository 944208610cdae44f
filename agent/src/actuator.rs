//! The virtual actuator: the embedded fabric that runs placed stages when
//! no Kubernetes cluster is configured.
//!
//! It executes on a **ground truth** that differs from the twin's model in
//! ways the twin cannot see: every node has a hidden speed factor, emulated
//! formats cost a little more or less than the twin assumes, and runs are
//! noisy. So predictions are genuinely tested, verification can fail, and
//! calibration has something to learn. Fabric time runs `1 / time_scale`
//! times faster than the wall clock.

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use tracing::{info, warn};
use twinmesh_common::model::Format;
use twinmesh_common::rng::SimRng;
use twinmesh_common::spec;
use twinmesh_common::verify::{Observed, Thresholds, verify};
use twinmesh_common::view::FabricView;

use crate::jobs::{JobState, StageObservation};
use crate::node::Agent;

/// True slowdown of each format (the twin assumes
/// `FormatOverheads::default()`).
const TRUE_OVERHEAD: [f64; 5] = [1.0, 1.7, 1.35, 1.95, 1.22];
/// Run-to-run noise of the ground truth (lognormal σ).
const TRUE_SIGMA: f64 = 0.05;

fn unit_hash(s: &str) -> f64 {
    let h = s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The hidden factor by which node `name` is slower (> 1) or faster than
/// the twin believes: 0.85–1.25.
pub fn hidden_factor(name: &str) -> f64 {
    0.85 + 0.4 * unit_hash(name)
}

/// The model's uncalibrated run time of a stage on a node.
fn model_ms(view: &FabricView, n: usize, duration_ms: f64, f: Format) -> f64 {
    duration_ms * view.nodes.inv_speed[n] * view.overheads.get(f)
}

/// Runs job `id`'s plan on the embedded fabric, records observations,
/// verifies and calibrates.
pub async fn run(agent: Arc<Agent>, id: String) {
    let Some(rec) = agent.job(&id) else { return };
    let Some(plan) = rec.plan.clone() else { return };
    let job = match spec::parse_job(&rec.document) {
        Ok(j) => j,
        Err(e) => {
            agent
                .update_job(&id, |r| {
                    r.state = JobState::Failed;
                    r.error = Some(format!("stored document no longer valid: {e}"));
                })
                .await;
            return;
        }
    };
    // A restarted job starts over: its earlier partial observations were
    // never verified.
    agent
        .update_job(&id, |r| {
            r.state = JobState::Running;
            r.observations.clear();
        })
        .await;
    let view = agent.view();
    let Some(origin) = view.origin(&job) else {
        agent
            .update_job(&id, |r| {
                r.state = JobState::Failed;
                r.error = Some(format!("origin cluster '{}' left the fabric", job.origin.cluster))
            })
            .await;
        return;
    };
    let scale = agent.cfg.time_scale.max(1e-6);
    let t0 = tokio::time::Instant::now();
    let mut rng = SimRng::seed_from_u64(id.bytes().fold(1u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b))));
    let mut finish = vec![0.0f64; job.stages.len()];
    let mut node_of = vec![0usize; job.stages.len()];
    let mut observations: Vec<Option<StageObservation>> = vec![None; job.stages.len()];
    let mut energy = 0.0;
    for &s in &job.topo {
        let st = &job.stages[s];
        let pl = &plan.placements[s];
        let mut target = view.node_index(&pl.node);
        let mut format = pl.format;
        let mut attempts = 1;
        // A node that went down since planning: take the shadow.
        if target.is_none_or(|n| !agent.view().nodes.ready[n]) {
            if let Some(sh) = plan.shadow[s].as_ref().and_then(|sh| view.node_index(&sh.node).map(|n| (n, sh.format))) {
                warn!(job = %id, stage = %st.id, from = %pl.node, to = %view.nodes.name[sh.0], "node down; using shadow");
                target = Some(sh.0);
                format = sh.1;
                attempts += 1;
            }
        }
        let Some(n) = target else {
            fail(&agent, &id, format!("stage '{}': node '{}' is not in the fabric", st.id, pl.node)).await;
            return;
        };
        let ready = if st.predecessors.is_empty() {
            view.origin_latency(origin, n)
        } else {
            st.predecessors
                .iter()
                .map(|&p| finish[p] + view.transfer_ms(node_of[p], n, job.stages[p].output_mb))
                .fold(0.0, f64::max)
        };
        let model = model_ms(&view, n, st.compute.duration_ms, format);
        let z: f64 = StandardNormal.sample(&mut rng);
        let truth = model * hidden_factor(&view.nodes.name[n]) * TRUE_OVERHEAD[format.index()]
            / view.overheads.get(format)
            * (TRUE_SIGMA * z - TRUE_SIGMA * TRUE_SIGMA / 2.0).exp();
        let start = ready;
        let done = start + truth;
        tokio::time::sleep_until(t0 + Duration::from_secs_f64(done / 1000.0 * scale)).await;
        if !agent.view().nodes.ready[n] {
            warn!(job = %id, stage = %st.id, node = %view.nodes.name[n], "node went down during the stage");
        }
        let e = view.energy_j(n, &st.compute, truth);
        energy += e;
        finish[s] = done;
        node_of[s] = n;
        let obs = StageObservation {
            stage: st.id.clone(),
            node: view.nodes.name[n].clone(),
            format,
            start_ms: start,
            finish_ms: done,
            compute_ms: truth,
            model_ms: model,
            energy_j: e,
            attempts,
        };
        agent.calibrate(&obs);
        observations[s] = Some(obs);
    }
    let latency = finish.iter().copied().fold(0.0, f64::max);
    let verification =
        verify(&plan.predicted, &Observed { latency_ms: latency, energy_j: energy }, &Thresholds::default());
    info!(
        job = %id,
        predicted_ms = plan.predicted.latency_ms,
        observed_ms = latency,
        accepted = verification.accepted,
        "job finished"
    );
    agent.metrics.jobs_succeeded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    agent
        .update_job(&id, |r| {
            r.state = JobState::Succeeded;
            r.observations = observations.into_iter().flatten().collect();
            r.verification = Some(verification);
        })
        .await;
}

async fn fail(agent: &Agent, id: &str, why: String) {
    agent.metrics.jobs_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    agent
        .update_job(id, |r| {
            r.state = JobState::Failed;
            r.error = Some(why);
        })
        .await;
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
    }
}
