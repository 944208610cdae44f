//! A job's life around its execution, the same for every actuator: the
//! record goes to running, the actuator executes the plan, the outcome is
//! verified against the prediction, calibration learns from it, and the
//! final record is stored. The agent is the actuators' [`Host`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::future::BoxFuture;
use tracing::{info, warn};
use twinmesh_common::execution::{Refusal, RunKey};
use twinmesh_common::spec;
use twinmesh_common::verify::{Observed, Thresholds, verify};
use twinmesh_common::view::FabricView;
use twinmesh_common::wire::{StageRun, StageSlot};

use super::Agent;
use crate::actuator::{Actuator, Host};
use crate::jobs::JobState;

/// The agent as its actuators see it.
impl Host for Arc<Agent> {
    fn view(&self) -> Arc<FabricView> {
        Agent::view(self)
    }
    fn time_scale(&self) -> f64 {
        self.cfg.time_scale.max(1e-9)
    }
    fn fabric_now(&self) -> f64 {
        Agent::fabric_now(self)
    }
    fn wall_of(&self, t: f64) -> f64 {
        Agent::wall_of(self, t)
    }
    fn went_down(&self, node: &str, from_ms: u64, to_ms: u64) -> Option<u64> {
        Agent::went_down(self, node, from_ms, to_ms)
    }
    fn book(&self, run: StageRun) -> BoxFuture<'_, Result<StageSlot, Refusal>> {
        Box::pin(self.run_stage(run))
    }
    fn release<'a>(&'a self, job: &'a str, key: RunKey, node: &'a str, at: f64) -> BoxFuture<'a, ()> {
        Box::pin(self.release_stage(job, key, node, at))
    }
    fn owner_lost(&self, node: &str) -> Option<String> {
        Agent::owner_lost(self, node)
    }
    fn note<'a>(&'a self, job: &'a str, note: String) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.update_job(job, |r| r.notes.push(note)).await;
        })
    }
    fn precursors(&self, view: &Arc<FabricView>) -> Arc<Vec<Option<f64>>> {
        Agent::precursors(self, view)
    }
    fn precursor_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        Agent::precursor_changes(self)
    }
    fn admit_action(&self, job: &str, now: f64, cfg: &twinmesh_common::preempt::PreemptConfig) -> bool {
        self.preempt_guard.lock().unwrap_or_else(|e| e.into_inner()).admit(job, now, cfg).is_ok()
    }
    fn acted(&self, action: &str) {
        let i = super::metrics::PREEMPTIVE_ACTIONS.iter().position(|a| *a == action).unwrap_or(0);
        self.metrics.preemptive[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs job `id`'s plan on `actuator`, then verifies and calibrates: the
/// job's life around its execution, the same for every actuator.
pub(super) async fn run_job(agent: Arc<Agent>, actuator: Arc<dyn Actuator>, id: String) {
    let Some(rec) = agent.job(&id) else { return };
    let Some(plan) = rec.plan.clone() else { return };
    let job = match spec::parse_job(&rec.document) {
        Ok(j) => j,
        Err(e) => return fail(&agent, &id, format!("stored document no longer valid: {e}")).await,
    };
    // A restarted job starts over: its earlier partial observations were
    // never verified.
    agent
        .update_job(&id, |r| {
            r.state = JobState::Running;
            r.observations.clear();
        })
        .await;
    let host: Arc<dyn Host> = Arc::new(agent.clone());
    match actuator.execute(host, &id, &job, &plan).await {
        Ok(done) => {
            let verification = verify(
                &plan.predicted,
                &Observed { latency_ms: done.latency_ms, energy_j: done.energy_j },
                &Thresholds::default(),
            );
            info!(
                job = %id,
                predicted_ms = plan.predicted.latency_ms,
                observed_ms = done.latency_ms,
                accepted = verification.accepted,
                "job finished"
            );
            agent.metrics.job_error.observe(verification.latency.rel_error.abs());
            for o in &done.observations {
                if let Some(p) = plan.predicted.stages.iter().find(|p| p.stage == o.stage && p.compute_ms > 0.0) {
                    agent.metrics.stage_error.observe((o.compute_ms - p.compute_ms).abs() / p.compute_ms);
                }
                agent.calibrate(o);
            }
            agent.metrics.jobs_succeeded.fetch_add(1, Ordering::Relaxed);
            agent
                .update_job(&id, |r| {
                    r.state = JobState::Succeeded;
                    r.observations = done.observations;
                    r.verification = Some(verification);
                    if done.failures > 0 {
                        r.notes.push(format!("{} run(s) failed or were refused and were retried", done.failures));
                    }
                })
                .await;
        }
        Err(why) => fail(&agent, &id, why).await,
    }
}

async fn fail(agent: &Agent, id: &str, why: String) {
    warn!(job = id, error = %why, "job failed");
    agent.metrics.jobs_failed.fetch_add(1, Ordering::Relaxed);
    agent
        .update_job(id, |r| {
            r.state = JobState::Failed;
            r.error = Some(why);
        })
        .await;
}
