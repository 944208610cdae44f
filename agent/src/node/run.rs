//! A job's life around its execution, the same for every actuator: the
//! record goes to running, the actuator executes the plan, the outcome is
//! verified against the prediction, calibration learns from it, and the
//! final record is stored. The agent is the actuators' [`Host`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::future::BoxFuture;
use tracing::{info, warn};
use twinmesh_common::execution::{Refusal, RunKey};
use twinmesh_common::forecast::ForecastConfig;
use twinmesh_common::preempt::ActionRecord;
use twinmesh_common::spec;
use twinmesh_common::verify::{Observed, Thresholds, verify};
use twinmesh_common::view::FabricView;
use twinmesh_common::wire::{StageRun, StageSlot};

use super::{Agent, lock, now_ms};
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
    fn confirm(&self, run: StageRun) -> BoxFuture<'_, Result<StageSlot, Refusal>> {
        Box::pin(self.ask_owner(twinmesh_common::lifecycle::Ask::Confirm, run, 0.0))
    }
    fn reserve(&self, run: StageRun, duration_ms: f64) -> BoxFuture<'_, Result<StageSlot, Refusal>> {
        Box::pin(self.reserve_stage(run, duration_ms))
    }
    fn committed<'a>(&'a self, job: &'a str, c: twinmesh_common::record::Committed) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // A second commitment revises the first (the agent acted on the
            // job); the first median is kept, and the change noted.
            let mut c = c;
            let mut note = None;
            self.update_job(job, |r| {
                if let Some(old) = &r.committed {
                    c.revision = old.revision + 1;
                    c.first_p50_ms = old.first_p50_ms;
                    note = Some(format!(
                        "prediction committed again after acting on the job: p50 {:.0} → {:.0} ms, p90 {:.0} → {:.0} ms",
                        old.p50_ms, c.p50_ms, old.p90_ms, c.p90_ms
                    ));
                } else {
                    c.revision = 0;
                    c.first_p50_ms = c.p50_ms;
                }
                r.committed = Some(c);
            })
            .await;
            if let Some(n) = note {
                self.note(job, n).await;
            }
        })
    }
    fn release<'a>(&'a self, job: &'a str, key: RunKey, node: &'a str, at: f64) -> BoxFuture<'a, ()> {
        Box::pin(self.release_stage(job, key, node, at))
    }
    fn owner_lost(&self, job: &str, stage: &str, node: &str) -> Option<String> {
        Agent::owner_lost(self, job, stage, node)
    }
    fn note<'a>(&'a self, job: &'a str, note: String) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.update_job(job, |r| r.notes.push(note)).await;
        })
    }
    fn precursors(&self, view: &Arc<FabricView>) -> super::failures::Precursors {
        Agent::precursors(self, view)
    }
    fn precursor_changes(&self) -> tokio::sync::watch::Receiver<super::Warned> {
        Agent::precursor_changes(self)
    }
    fn admit_action(&self, job: &str, now: f64, cfg: &twinmesh_common::preempt::PreemptConfig) -> bool {
        lock(&self.preempt_guard).admit(job, now, cfg).is_ok()
    }
    fn acted(&self, mut record: ActionRecord, on_precursor: bool) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let i = super::metrics::PREEMPTIVE_ACTIONS.iter().position(|a| *a == record.action).unwrap_or(0);
            self.metrics.preemptive[i].fetch_add(1, Ordering::Relaxed);
            // A reaction to the latest precursor when the action was taken
            // on one and it came within its lead time.
            let lead = std::time::Duration::from_secs_f64(
                ForecastConfig::default().lead_ms / 1000.0 * self.cfg.time_scale.max(1e-9),
            );
            if let Some(at) = self.precursor_epoch.borrow().at.filter(|_| on_precursor) {
                let d = at.elapsed();
                if d <= lead {
                    self.metrics.reaction_seconds.observe_duration(d);
                    record.reaction_ms = Some(d.as_secs_f64() * 1000.0);
                }
            }
            record.at_ms = now_ms();
            record.seq = self.store.actions_of(&record.job).map_or(0, |a| a.len() as u32) + 1;
            if let Err(e) = self.store.put_action(&record).await {
                warn!(job = %record.job, error = %e, "storing a preemptive action");
            }
        })
    }
}

/// Once job `id` ended: how each of its preemptive actions turned out
/// (`on_time`, `late`, `failed`), stored and counted.
async fn settle_actions(agent: &Agent, id: &str, outcome: &str) {
    let Ok(actions) = agent.store.actions_of(id) else { return };
    let k = super::ACTION_OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(2);
    for mut a in actions.into_iter().filter(|a| a.outcome.is_none()) {
        let i = super::PREEMPTIVE_ACTIONS.iter().position(|x| *x == a.action).unwrap_or(0);
        agent.metrics.preemptive_outcomes[i][k].fetch_add(1, Ordering::Relaxed);
        a.outcome = Some(outcome.to_string());
        if let Err(e) = agent.store.put_action(&a).await {
            warn!(job = id, error = %e, "storing a preemptive action's outcome");
        }
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
            r.committed = None;
        })
        .await;
    let host: Arc<dyn Host> = Arc::new(agent.clone());
    match actuator.execute(host, &id, &job, &plan).await {
        Ok(done) => {
            // Verified against the committed prediction (the reserved
            // windows) when there is one; else the plan's own.
            let mut predicted = plan.predicted.clone();
            if let Some(c) = agent.job(&id).and_then(|r| r.committed) {
                predicted.latency_ms = c.p50_ms;
            }
            let verification = verify(
                &predicted,
                &Observed { latency_ms: done.latency_ms, energy_j: done.energy_j },
                &Thresholds::default(),
            );
            info!(
                job = %id,
                predicted_ms = predicted.latency_ms,
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
            let late = job.deadline_ms.is_some_and(|d| done.latency_ms > d);
            settle_actions(&agent, &id, if late { "late" } else { "on_time" }).await;
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
    settle_actions(agent, id, "failed").await;
    agent.metrics.jobs_failed.fetch_add(1, Ordering::Relaxed);
    agent
        .update_job(id, |r| {
            r.state = JobState::Failed;
            r.error = Some(why);
        })
        .await;
}
