//! The virtual actuator: the embedded fabric that runs placed stages when
//! no Kubernetes cluster is configured.
//!
//! It is a driver of `common::execution`, the same state machine the DES
//! drives: each `Book` it is told to do becomes a booking with the owner of
//! the node (who knows the node's load and the ground truth of
//! `common::truth`: hidden per-node speed, true emulation costs, noise), the
//! run's end is awaited in wall time (fabric time × the time scale), and a
//! node that went down under it is reported as a failure at the moment it
//! went down. The execution machine decides everything else — readiness,
//! failover, attempts, accounting — so the twin's DES predicts exactly this.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tracing::{info, warn};
use twinmesh_common::execution::{ExecAction, ExecConfig, ExecEvent, Execution, RunKey, plan_digest};
use twinmesh_common::job::Job;
use twinmesh_common::model::Format;
use twinmesh_common::plan::Plan;
use twinmesh_common::predict::Assignment;
use twinmesh_common::spec;
use twinmesh_common::truth;
use twinmesh_common::verify::{Observed, Thresholds, verify};
use twinmesh_common::view::FabricView;
use twinmesh_common::wire::StageRun;

use crate::jobs::{JobState, StageObservation};
use crate::node::Agent;

/// A plan as the execution machine takes it.
pub struct Placed {
    /// Primary placement of each stage (indices of the view).
    pub assign: Vec<Assignment>,
    /// Shadow of each stage.
    pub shadow: Vec<Option<Assignment>>,
    /// The digest that names the plan in every booking.
    pub digest: u64,
}

/// A plan's placements as indices of `view`, with the digest that names the
/// plan in every booking.
pub fn assignments(view: &FabricView, id: &str, plan: &Plan) -> Result<Placed, String> {
    let idx = |node: &str, format: Format| {
        view.node_index(node)
            .map(|n| Assignment { node: n, format })
            .ok_or_else(|| format!("node '{node}' of the plan is not in the fabric"))
    };
    let assign = plan.placements.iter().map(|p| idx(&p.node, p.format)).collect::<Result<Vec<_>, _>>()?;
    let shadow = plan.shadow.iter().map(|s| s.as_ref().and_then(|p| idx(&p.node, p.format).ok())).collect::<Vec<_>>();
    let digest = plan_digest(id, plan.placements.iter().map(|p| (p.node.as_str(), p.format)));
    Ok(Placed { assign, shadow, digest })
}

/// Runs job `id`'s plan on the embedded fabric, then verifies and
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
    match execute(&agent, &id, &job, &plan).await {
        Ok((observations, latency, energy, failures)) => {
            let verification =
                verify(&plan.predicted, &Observed { latency_ms: latency, energy_j: energy }, &Thresholds::default());
            info!(
                job = %id,
                predicted_ms = plan.predicted.latency_ms,
                observed_ms = latency,
                accepted = verification.accepted,
                "job finished"
            );
            for o in &observations {
                agent.calibrate(o);
            }
            agent.metrics.jobs_succeeded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            agent
                .update_job(&id, |r| {
                    r.state = JobState::Succeeded;
                    r.observations = observations;
                    r.verification = Some(verification);
                    if failures > 0 {
                        r.notes.push(format!("{failures} run(s) failed or were refused and were retried"));
                    }
                })
                .await;
        }
        Err(why) => fail(&agent, &id, why).await,
    }
}

/// Drives the execution machine; returns the final observations, the
/// job's latency and energy (every attempt), and the failed runs.
async fn execute(
    agent: &Arc<Agent>,
    id: &str,
    job: &Job,
    plan: &Plan,
) -> Result<(Vec<StageObservation>, f64, f64, u32), String> {
    let view = agent.view();
    let origin = view.origin(job).ok_or_else(|| format!("origin cluster '{}' left the fabric", job.origin.cluster))?;
    let Placed { assign, shadow, digest } = assignments(&view, id, plan)?;
    let t0 = agent.fabric_now();
    let mut exec = Execution::new(job, origin, &assign, &shadow, digest, t0, ExecConfig::default());
    let mut out = Vec::new();
    exec.start(job, &view, &mut out);
    let mut running = FuturesUnordered::new();
    loop {
        for a in out.drain(..) {
            match a {
                ExecAction::Book { key, node, format, ready_at } => {
                    let st = &job.stages[key.stage as usize];
                    let run = StageRun {
                        job: id.to_string(),
                        stage: st.id.clone(),
                        key,
                        node: view.nodes.name[node].clone(),
                        format,
                        compute: st.compute,
                        ready_at,
                    };
                    running.push(book_and_run(agent.clone(), run));
                }
                ExecAction::Release { key, node, at } => {
                    let (agent, id, node) = (agent.clone(), id.to_string(), view.nodes.name[node].clone());
                    tokio::spawn(async move { agent.release_stage(&id, key, &node, at).await });
                }
                ExecAction::Done => {}
            }
        }
        if exec.is_done() {
            break;
        }
        let Some(events) = running.next().await else {
            return Err("execution stalled: no run in flight and the job is not done".into());
        };
        let current = agent.view();
        for (at, ev) in events {
            exec.handle(job, &current, at, ev, &mut out);
        }
    }
    let o = exec.outcome();
    if o.failed {
        return Err(o.error.unwrap_or_else(|| "job failed".into()));
    }
    let observations = observations(&view, job, &o, t0);
    Ok((observations, o.latency_ms, o.energy_j, o.failures))
}

/// What each stage's last (successful) run did, in job time (`t0` = the
/// job's start in the execution's clock): what verification reports and
/// calibration learns from. Shared by both actuators.
pub(crate) fn observations(
    view: &FabricView,
    job: &Job,
    o: &twinmesh_common::execution::JobOutcome,
    t0: f64,
) -> Vec<StageObservation> {
    o.stages
        .iter()
        .zip(&job.stages)
        .map(|(so, st)| StageObservation {
            stage: st.id.clone(),
            node: view.nodes.name[so.node].clone(),
            format: so.format,
            start_ms: so.start_ms - t0,
            finish_ms: so.finish_ms - t0,
            compute_ms: so.compute_ms,
            model_ms: truth::model_ms(view, so.node, st.compute.duration_ms, so.format),
            energy_j: view.energy_j(so.node, &st.compute, so.compute_ms),
            attempts: u32::from(so.attempts),
        })
        .collect()
}

/// One run: booked with the node's owner, then awaited to its end; what
/// happened, as execution events with their fabric times.
async fn book_and_run(agent: Arc<Agent>, run: StageRun) -> Vec<(f64, ExecEvent)> {
    let key: RunKey = run.key;
    let node = run.node.clone();
    let slot = match agent.run_stage(run).await {
        Ok(slot) => slot,
        Err(reason) => {
            warn!(node = %node, error = %reason, "stage refused; the execution moves it");
            return vec![(agent.fabric_now(), ExecEvent::Refused { key, reason })];
        }
    };
    let booked = (slot.start, ExecEvent::Booked { key, start: slot.start });
    // Wait for the end, checking now and then whether the node went down
    // under the run (the failure is dated when it happened).
    let (from, to) = (agent.wall_of(slot.start) as u64, agent.wall_of(slot.end) as u64 + 1);
    loop {
        if let Some(at) = agent.went_down(&node, from, to) {
            let at = ((at as f64 - agent.wall_of(0.0)) / agent.cfg.time_scale.max(1e-9)).max(slot.start);
            warn!(node = %node, "node went down during the stage");
            return vec![booked, (at, ExecEvent::Failed { key })];
        }
        let left = agent.wall_of(slot.end) - crate::node::now_ms() as f64;
        if left <= 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs_f64(left.min(200.0) / 1000.0)).await;
    }
    vec![booked, (slot.end, ExecEvent::Finished { key })]
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
