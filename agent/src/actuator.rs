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
use twinmesh_common::wire::StageRun;

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
pub(crate) fn model_ms(view: &FabricView, n: usize, duration_ms: f64, f: Format) -> f64 {
    duration_ms * view.nodes.inv_speed[n] * view.overheads.get(f)
}

/// What the stage really takes on node `n`: the model's time × the node's
/// hidden factor × the true/assumed format overhead × noise seeded by
/// `run_key` (so a repeated booking of the same run gives the same time).
pub(crate) fn true_ms(view: &FabricView, n: usize, model_ms: f64, f: Format, run_key: &str) -> f64 {
    let mut rng =
        SimRng::seed_from_u64(run_key.bytes().fold(1u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b))));
    let z: f64 = StandardNormal.sample(&mut rng);
    model_ms * hidden_factor(&view.nodes.name[n]) * TRUE_OVERHEAD[f.index()] / view.overheads.get(f)
        * (TRUE_SIGMA * z - TRUE_SIGMA * TRUE_SIGMA / 2.0).exp()
}

/// Most attempts per stage before the job fails.
const MAX_ATTEMPTS: u32 = 3;

/// Runs job `id`'s plan on the embedded fabric: each stage, when its inputs
/// are ready, is booked with the owner of its node (who knows the truth and
/// the node's load), and the job waits for it; a stage whose node went down
/// meanwhile reruns on its shadow or the next-best node. Then verifies and
/// calibrates.
pub async fn run(agent: Arc<Agent>, id: String) {
    let Some(rec) = agent.job(&id) else { return };
    let Some(plan) = rec.plan.clone() else { return };
    let job = match spec::parse_job(&rec.document) {
        Ok(j) => j,
        Err(e) => {
            fail(&agent, &id, format!("stored document no longer valid: {e}")).await;
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
        fail(&agent, &id, format!("origin cluster '{}' left the fabric", job.origin.cluster)).await;
        return;
    };
    let scale = agent.cfg.time_scale.max(1e-9);
    let t0 = agent.fabric_now();
    let mut finish = vec![0.0f64; job.stages.len()];
    let mut node_of = vec![0usize; job.stages.len()];
    let mut observations: Vec<Option<StageObservation>> = vec![None; job.stages.len()];
    let mut energy = 0.0;
    for &s in &job.topo {
        let st = &job.stages[s];
        let pl = &plan.placements[s];
        let mut candidates: Vec<(String, Format)> = vec![(pl.node.clone(), pl.format)];
        if let Some(sh) = &plan.shadow[s] {
            candidates.push((sh.node.clone(), sh.format));
        }
        let mut attempt = 0u32;
        let done = loop {
            attempt += 1;
            if attempt > MAX_ATTEMPTS {
                fail(&agent, &id, format!("stage '{}' failed {MAX_ATTEMPTS} times", st.id)).await;
                return;
            }
            let current = agent.view();
            let pick = candidates
                .iter()
                .find(|(n, _)| current.node_index(n).is_some_and(|i| current.nodes.ready[i]))
                .cloned()
                .or_else(|| next_best(&current, &job, s, &node_of, &finish, origin));
            let Some((node, format)) = pick else {
                fail(&agent, &id, format!("stage '{}': no node left to run it", st.id)).await;
                return;
            };
            let Some(n) = view.node_index(&node) else {
                fail(&agent, &id, format!("stage '{}': node '{node}' is not in the fabric", st.id)).await;
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
            sleep_until_fabric(t0 + ready, scale).await;
            let run = StageRun {
                job: id.clone(),
                stage: st.id.clone(),
                attempt,
                node: node.clone(),
                format,
                compute: st.compute,
                ready_at: t0 + ready,
            };
            let slot = match agent.run_stage(run).await {
                Ok(slot) => slot,
                Err(e) => {
                    warn!(job = %id, stage = %st.id, node = %node, error = %e, "stage refused; trying elsewhere");
                    candidates.retain(|(c, _)| c != &node);
                    continue;
                }
            };
            sleep_until_fabric(slot.end, scale).await;
            let (from_wall, to_wall) = ((slot.start * scale) as u64, (slot.end * scale) as u64 + 1);
            if agent.went_down(&node, from_wall, to_wall) {
                warn!(job = %id, stage = %st.id, node = %node, "node went down during the stage; rerunning");
                candidates.retain(|(c, _)| c != &node);
                continue;
            }
            break (n, format, slot, attempt);
        };
        let (n, format, slot, attempts) = done;
        let truth = slot.end - slot.start;
        let e = view.energy_j(n, &st.compute, truth);
        energy += e;
        finish[s] = slot.end - t0;
        node_of[s] = n;
        let obs = StageObservation {
            stage: st.id.clone(),
            node: view.nodes.name[n].clone(),
            format,
            start_ms: slot.start - t0,
            finish_ms: slot.end - t0,
            compute_ms: truth,
            model_ms: slot.model_ms,
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

/// Sleeps until absolute fabric time `t` (ms).
pub(crate) async fn sleep_until_fabric(t: f64, scale: f64) {
    let wall_ms = t * scale;
    let now = crate::node::now_ms() as f64;
    if wall_ms > now {
        tokio::time::sleep(Duration::from_secs_f64((wall_ms - now) / 1000.0)).await;
    }
}

/// The greedy choice for stage `s` alone, on the current view (used when
/// its planned node and shadow are both gone).
fn next_best(
    view: &FabricView,
    job: &twinmesh_common::job::Job,
    s: usize,
    node_of: &[usize],
    _finish: &[f64],
    origin: twinmesh_common::view::OriginIdx,
) -> Option<(String, Format)> {
    // Inputs come from the first predecessor's node, or the origin.
    let from = job.stages[s].predecessors.first().map(|&p| node_of[p]);
    next_best_for(view, job, s, from, origin)
}

/// The greedy choice for stage `s` alone, its inputs coming from node
/// `from` (or the job's origin).
pub(crate) fn next_best_for(
    view: &FabricView,
    job: &twinmesh_common::job::Job,
    s: usize,
    from: Option<usize>,
    origin: twinmesh_common::view::OriginIdx,
) -> Option<(String, Format)> {
    let st = &job.stages[s];
    let from_cluster = from.map_or(origin.cluster, |n| view.nodes.cluster[n] as usize);
    let single = twinmesh_common::job::Job {
        name: job.name.clone(),
        deadline_ms: None,
        origin: twinmesh_common::job::Origin { cluster: view.latency.names()[from_cluster].clone(), node: None },
        stages: vec![twinmesh_common::job::Stage { predecessors: vec![], ..st.clone() }],
        topo: vec![0],
    };
    let plan = twinmesh_common::policy::Policy::Greedy
        .plan(view, &single, &twinmesh_common::policy::PolicyConfig::default())
        .ok()?;
    plan.placements.first().map(|p| (p.node.clone(), p.format))
}

pub(crate) async fn fail(agent: &Agent, id: &str, why: String) {
    warn!(job = id, error = %why, "job failed");
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
