//! Running a planned job on Kubernetes: every stage becomes a pod on its
//! chosen node in its cluster, created once its predecessors have
//! succeeded and their output has crossed the (modelled) network; the pods
//! are followed to the end, and what they did is verified against the
//! prediction and fed to calibration.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tracing::{info, warn};
use twinmesh_common::job::Job;
use twinmesh_common::model::Format;
use twinmesh_common::plan::Plan;
use twinmesh_common::scaling::Scaler;
use twinmesh_common::spec;
use twinmesh_common::verify::{Observed, Thresholds, verify};
use twinmesh_common::view::FabricView;

use super::client::{Created, Kube, Outcome};
use super::manifest::{StagePod, plan_digest, pod_name, stage_pod};
use crate::jobs::{JobState, StageObservation};
use crate::node::{Agent, now_ms};

/// Most attempts per stage before the job fails.
const MAX_ATTEMPTS: u32 = 3;

/// Wall ms a stage's pod works: the model's run time on its node, scaled
/// by the agent's time scale (at least 1 ms).
pub fn cpu_ms(view: &FabricView, n: usize, duration_ms: f64, f: Format, time_scale: f64) -> u64 {
    (crate::actuator::model_ms(view, n, duration_ms, f) * time_scale).round().max(1.0) as u64
}

/// Runs job `id` on Kubernetes.
pub async fn run(agent: Arc<Agent>, kube: Arc<Kube>, id: String) {
    let Some(rec) = agent.job(&id) else { return };
    let Some(plan) = rec.plan.clone() else { return };
    let job = match spec::parse_job(&rec.document) {
        Ok(j) => j,
        Err(e) => return crate::actuator::fail(&agent, &id, format!("stored document no longer valid: {e}")).await,
    };
    agent
        .update_job(&id, |r| {
            r.state = JobState::Running;
            r.observations.clear();
        })
        .await;
    match execute(&agent, &kube, &id, &job, &plan).await {
        Ok((observations, latency, energy)) => {
            let verification =
                verify(&plan.predicted, &Observed { latency_ms: latency, energy_j: energy }, &Thresholds::default());
            info!(job = %id, predicted_ms = plan.predicted.latency_ms, observed_ms = latency, accepted = verification.accepted, "job finished on Kubernetes");
            agent.metrics.jobs_succeeded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            agent
                .update_job(&id, |r| {
                    r.state = JobState::Succeeded;
                    r.observations = observations;
                    r.verification = Some(verification);
                })
                .await;
        }
        Err(why) => crate::actuator::fail(&agent, &id, why).await,
    }
}

struct Done {
    stage: usize,
    obs: StageObservation,
    node: usize,
}

/// Runs the stages; returns their observations, the job's latency and
/// energy (fabric units).
async fn execute(
    agent: &Arc<Agent>,
    kube: &Arc<Kube>,
    id: &str,
    job: &Job,
    plan: &Plan,
) -> Result<(Vec<StageObservation>, f64, f64), String> {
    let view = agent.view();
    let origin = view.origin(job).ok_or_else(|| format!("origin cluster '{}' left the fabric", job.origin.cluster))?;
    let scale = agent.cfg.time_scale.max(1e-9);
    let digest = plan_digest(&plan.placements.iter().map(|p| (p.node.clone(), p.format)).collect::<Vec<_>>());
    let t0 = now_ms();
    let n_stages = job.stages.len();
    let mut done: Vec<Option<Done>> = (0..n_stages).map(|_| None).collect();
    let mut started = vec![false; n_stages];
    let mut running = FuturesUnordered::new();
    loop {
        // Start every stage whose predecessors are done.
        #[allow(clippy::needless_range_loop)] // `done` is read for other indices inside
        for s in 0..n_stages {
            if started[s] || !job.stages[s].predecessors.iter().all(|&p| done[p].is_some()) {
                continue;
            }
            started[s] = true;
            let preds: Vec<(usize, f64, f64)> = job.stages[s]
                .predecessors
                .iter()
                .filter_map(|&p| done[p].as_ref().map(|d| (d.node, d.obs.finish_ms, job.stages[p].output_mb)))
                .collect();
            let (agent, kube, id, job, plan, digest, view) =
                (agent.clone(), kube.clone(), id.to_string(), job.clone(), plan.clone(), digest.clone(), view.clone());
            running.push(async move {
                run_stage(&agent, &kube, &id, &job, &plan, &digest, &view, origin, s, &preds, t0, scale).await
            });
        }
        let Some(r) = running.next().await else { break };
        let d = r?;
        let s = d.stage;
        done[s] = Some(d);
    }
    let obs: Vec<StageObservation> = done.into_iter().flatten().map(|d| d.obs).collect();
    let latency = obs.iter().map(|o| o.finish_ms).fold(0.0, f64::max);
    let energy = obs.iter().map(|o| o.energy_j).sum();
    Ok((obs, latency, energy))
}

#[allow(clippy::too_many_arguments)]
async fn run_stage(
    agent: &Arc<Agent>,
    kube: &Kube,
    id: &str,
    job: &Job,
    plan: &Plan,
    digest: &str,
    view: &FabricView,
    origin: twinmesh_common::view::OriginIdx,
    s: usize,
    preds: &[(usize, f64, f64)],
    t0: u64,
    scale: f64,
) -> Result<Done, String> {
    let st = &job.stages[s];
    let mut candidates: Vec<(String, Format)> = vec![(plan.placements[s].node.clone(), plan.placements[s].format)];
    if let Some(sh) = &plan.shadow[s] {
        candidates.push((sh.node.clone(), sh.format));
    }
    let mut why_not = Vec::new();
    let mut tried: Vec<String> = Vec::new();
    for attempt in 1..=MAX_ATTEMPTS {
        let current = agent.view();
        // The planned node, then its shadow, then the greedy choice on the
        // current twin among nodes not yet tried.
        let pick = candidates
            .iter()
            .find(|(n, _)| current.node_index(n).is_some_and(|i| current.nodes.ready[i]))
            .cloned()
            .or_else(|| {
                let mut v = (*current).clone();
                for t in &tried {
                    if let Some(i) = v.node_index(t) {
                        v.nodes.ready[i] = false;
                    }
                }
                crate::actuator::next_best_for(&v, job, s, preds.first().map(|p| p.0), origin)
            });
        let Some((node, format)) = pick else { break };
        tried.push(node.clone());
        candidates.retain(|(c, _)| c != &node);
        let Some(n) = view.node_index(&node) else {
            why_not.push(format!("{node}: not in the fabric"));
            continue;
        };
        let cluster = view.latency.names()[view.nodes.cluster[n] as usize].clone();
        // Inputs arrive after the modelled transfer (the clusters of a test
        // fabric share one machine; the latency matrix stands in for the
        // network between them).
        let ready = if preds.is_empty() {
            view.origin_latency(origin, n)
        } else {
            preds.iter().map(|&(pn, fin, mb)| fin + view.transfer_ms(pn, n, mb)).fold(0.0, f64::max)
        };
        crate::actuator::sleep_until_fabric(t0 as f64 / scale + ready, scale).await;
        let work_ms = cpu_ms(view, n, st.compute.duration_ms, format, scale);
        let pod = stage_pod(&StagePod {
            job: id,
            plan: digest,
            stage: &st.id,
            attempt,
            node: &node,
            cluster: &cluster,
            format,
            compute: &st.compute,
            cpu_ms: work_ms,
            image: &kube.settings.image,
            namespace: &kube.settings.namespace,
            scaler: Scaler::default(),
        });
        let name = pod_name(id, &st.id, attempt);
        match kube.ensure_pod(&cluster, &pod).await {
            Ok(Created::New) => {
                info!(job = id, stage = %st.id, pod = %name, cluster = %cluster, node = %node, "pod created")
            }
            Ok(Created::Existed) => {
                info!(job = id, stage = %st.id, pod = %name, "pod already there (resumed or duplicate plan)")
            }
            Err(e) => {
                warn!(job = id, stage = %st.id, error = %e, "cannot create the stage's pod");
                why_not.push(format!("{node}: {e}"));
                continue;
            }
        }
        // Generous: ten times the work, plus image pull and scheduling.
        let limit = Duration::from_millis(work_ms.saturating_mul(10)) + Duration::from_secs(300);
        let outcome = kube
            .follow_pod(&cluster, &name, kube.settings.unschedulable_grace, limit, |p| {
                info!(job = id, stage = %st.id, pod = %p.pod, phase = ?p.phase, "pod progress");
            })
            .await;
        match outcome {
            Ok(Outcome::Succeeded { started_ms, finished_ms, measured_ms, scheduled_ms, .. }) => {
                let wall_ms = measured_ms.unwrap_or(finished_ms.saturating_sub(started_ms) as f64);
                let compute_ms = wall_ms / scale;
                let model = crate::actuator::model_ms(view, n, st.compute.duration_ms, format);
                // The stage ends when the pod's work ends: container start
                // plus its measured work (the timestamps have whole seconds).
                let finish_wall = (started_ms as f64 + wall_ms).max(t0 as f64);
                let start_wall = started_ms.max(t0) as f64;
                let e = view.energy_j(n, &st.compute, compute_ms);
                let obs = StageObservation {
                    stage: st.id.clone(),
                    node: node.clone(),
                    format,
                    start_ms: (start_wall - t0 as f64) / scale,
                    finish_ms: (finish_wall - t0 as f64) / scale,
                    compute_ms,
                    model_ms: model,
                    energy_j: e,
                    attempts: attempt,
                };
                agent.calibrate(&obs);
                let note = format!(
                    "stage {}: pod {name} in {cluster} on {node}: scheduled {}, started +{:.1} s, worked {:.0} ms",
                    st.id,
                    scheduled_ms.map_or("?".to_string(), |t| format!("+{:.1} s", (t as f64 - t0 as f64) / 1000.0)),
                    (started_ms as f64 - t0 as f64) / 1000.0,
                    wall_ms
                );
                agent.update_job(id, |r| r.notes.push(note)).await;
                if kube.settings.delete_finished
                    && let Err(e) = kube.delete_pod(&cluster, &name).await
                {
                    warn!(pod = %name, error = %e, "cannot delete a finished pod");
                }
                return Ok(Done { stage: s, obs, node: n });
            }
            Ok(other) => {
                let why = match other {
                    Outcome::Failed(r) => format!("failed: {r}"),
                    Outcome::Unschedulable(m) => format!("unschedulable: {m}"),
                    _ => "no result in time".to_string(),
                };
                warn!(job = id, stage = %st.id, pod = %name, %why, "stage attempt lost; trying elsewhere");
                why_not.push(format!("{node}: {why}"));
                // Free the node for others; the next attempt has its own name.
                let _ = kube.delete_pod(&cluster, &name).await;
            }
            Err(e) => {
                why_not.push(format!("{node}: {e}"));
            }
        }
    }
    Err(format!("stage '{}' could not run: {}", st.id, why_not.join("; ")))
}
