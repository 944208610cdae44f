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

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tracing::warn;
use twinmesh_common::execution::{ExecAction, ExecConfig, ExecEvent, Execution, RunKey};
use twinmesh_common::failures::FailureKind;
use twinmesh_common::job::Job;
use twinmesh_common::plan::Plan;
use twinmesh_common::wire::{StageRun, StageSlot};

use super::{Actuator, Executed, Host, Placed, observations, placed};

/// The embedded fabric.
#[derive(Clone, Copy, Debug, Default)]
pub struct Embedded;

impl Actuator for Embedded {
    fn execute<'a>(
        &'a self,
        host: Arc<dyn Host>,
        id: &'a str,
        job: &'a Job,
        plan: &'a Plan,
    ) -> BoxFuture<'a, Result<Executed, String>> {
        Box::pin(execute(host, id, job, plan))
    }

    fn inject<'a>(
        &'a self,
        _cluster: &'a str,
        _node: &'a str,
        _kind: FailureKind,
        _duration_ms: u64,
    ) -> BoxFuture<'a, Result<String, String>> {
        // The twin's failure record is the embedded fabric's truth: owners
        // refuse bookings on a node that is down and runs on it fail.
        Box::pin(async { Ok("recorded in the twin (virtual fabric)".to_string()) })
    }
}

/// Drives the execution machine; returns the final observations, the
/// job's latency and energy (every attempt), and the failed runs.
async fn execute(host: Arc<dyn Host>, id: &str, job: &Job, plan: &Plan) -> Result<Executed, String> {
    let view = host.view();
    let origin = view.origin(job).ok_or_else(|| format!("origin cluster '{}' left the fabric", job.origin.cluster))?;
    let Placed { assign, shadow, digest } = placed(&view, id, plan)?;
    let t0 = host.fabric_now();
    // Each stage is reserved for the run time its plan predicted.
    let durations: Vec<f64> = plan.predicted.stages.iter().map(|t| t.compute_ms).collect();
    let mut exec =
        Execution::new(job, origin, &assign, &shadow, digest, t0, ExecConfig::default()).with_durations(&durations);
    let mut out = Vec::new();
    exec.start(job, &view, &mut out);
    let mut running = FuturesUnordered::new();
    let mut warnings = host.precursor_changes();
    let mut told = false;
    // When the agent last acted on the job: its prediction is committed
    // again from there.
    let mut revised: Option<f64> = None;
    // A fabric second, within [10 ms, 250 ms] of wall time.
    let tick = Duration::from_secs_f64((host.time_scale()).clamp(0.01, 0.25));
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
                    running.push(book(host.clone(), run).boxed());
                }
                ExecAction::Reserve { key, node, format, ready_at, duration_ms } => {
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
                    running.push(reserve(host.clone(), run, duration_ms).boxed());
                }
                ExecAction::Release { key, node, at } => {
                    let (host, id, node) = (host.clone(), id.to_string(), view.nodes.name[node].clone());
                    tokio::spawn(async move { host.release(&id, key, &node, at).await });
                }
                ExecAction::Done => {}
            }
        }
        if exec.is_done() {
            break;
        }
        // Runs end, or — now and then — the forecast is read and stages
        // move off nodes heading for failure.
        let events = tokio::select! {
            e = running.next() => e,
            _ = warnings.changed() => {
                if super::preempt(&host, id, job, host.fabric_now(), &mut exec, &mut out).await {
                    // Where and when its stages run changed: commit again.
                    told = false;
                    revised = Some(host.fabric_now());
                }
                continue;
            }
            _ = tokio::time::sleep(tick) => {
                if super::preempt(&host, id, job, host.fabric_now(), &mut exec, &mut out).await {
                    // Where and when its stages run changed: commit again.
                    told = false;
                    revised = Some(host.fabric_now());
                }
                continue;
            }
        };
        let Some((events, then)) = events else {
            return Err("execution stalled: no run in flight and the job is not done".into());
        };
        if let Some((run, slot)) = then {
            running.push(run_to_end(host.clone(), id.to_string(), run, slot).boxed());
        }
        let current = host.view();
        for (at, ev) in events {
            exec.handle(job, &current, at, ev, &mut out);
        }
        if !told && let Some(c) = super::committed(&view, job, &exec, &assign, t0, revised) {
            told = true;
            host.committed(id, c).await;
        }
        // A stage just booked or released may sit on a warned node.
        if out.is_empty() && super::preempt(&host, id, job, host.fabric_now(), &mut exec, &mut out).await {
            // Where and when its stages run changed: commit again.
            told = false;
            revised = Some(host.fabric_now());
        }
    }
    let o = exec.outcome();
    if o.failed {
        return Err(o.error.unwrap_or_else(|| "job failed".into()));
    }
    Ok(Executed {
        observations: observations(&view, job, &o, t0),
        latency_ms: o.latency_ms,
        energy_j: o.energy_j,
        failures: o.failures,
    })
}

/// What a run's step reports: events with their fabric times, and, once
/// booked, the run to await.
type Step = (Vec<(f64, ExecEvent)>, Option<(StageRun, StageSlot)>);

/// Books a run with the node's owner; reported at once, so the forecast
/// sees the run as booked (and running) while it runs.
async fn book(host: Arc<dyn Host>, run: StageRun) -> Step {
    let key: RunKey = run.key;
    let node = run.node.clone();
    match host.book(run.clone()).await {
        Ok(slot) => (vec![(slot.start, ExecEvent::Booked { key, start: slot.start })], Some((run, slot))),
        Err(reason) => {
            warn!(node = %node, error = %reason, "stage refused; the execution moves it");
            (vec![(host.fabric_now(), ExecEvent::Refused { key, reason })], None)
        }
    }
}

/// Reserves a run with the node's owner; its window (or why not) is
/// reported at once.
async fn reserve(host: Arc<dyn Host>, run: StageRun, duration_ms: f64) -> Step {
    let key: RunKey = run.key;
    let start = host.reserve(run, duration_ms).await.map(|slot| slot.start);
    (vec![(host.fabric_now(), ExecEvent::Reserved { key, start })], None)
}

/// Awaits a booked run's end, checking now and then whether the node went
/// down under it (the failure is dated when it happened). A run booked to
/// start later is asked for again at its start: a late run ranked before
/// it may have pushed it (`common::replica` bookings), and then it starts
/// and ends later.
async fn run_to_end(host: Arc<dyn Host>, id: String, run: StageRun, slot: StageSlot) -> Step {
    let (node, key) = (run.node.clone(), run.key);
    let mut slot = slot;
    let mut events = Vec::new();
    // Booked to start now: fixed already.
    let mut confirmed = slot.start <= host.fabric_now() + 1.0;
    loop {
        let now = crate::clock::now_ms() as f64;
        if !confirmed && now >= host.wall_of(slot.start) {
            confirmed = true;
            if let Ok(s) = host.confirm(run.clone()).await
                && (s.start - slot.start).abs() > 1e-6
            {
                events.push((s.start, ExecEvent::Booked { key, start: s.start }));
                // Pushed: asked again at its new start.
                confirmed = s.start <= slot.start;
                slot = s;
                continue;
            }
        }
        let (from, to) = (host.wall_of(slot.start) as u64, host.wall_of(slot.end) as u64 + 1);
        if let Some(at) = host.went_down(&node, from, to) {
            let at = ((at as f64 - host.wall_of(0.0)) / host.time_scale()).max(slot.start);
            warn!(node = %node, "node went down during the stage");
            events.push((at, ExecEvent::Failed { key }));
            return (events, None);
        }
        // Its owner out of reach past the grace (a cut, a crash): the run
        // moves; it may still finish over there, which the job says.
        if let Some(why) = host.owner_lost(&id, &run.stage, &node) {
            warn!(job = %id, node = %node, reason = %why, "failing over a run whose node cannot be reached");
            let note = format!(
                "failover: attempt {} on {node} given up: {why}; the run may also finish there (a possible duplicate)",
                key.attempt
            );
            host.note(&id, note).await;
            events.push((host.fabric_now().max(slot.start), ExecEvent::Failed { key }));
            return (events, None);
        }
        let until = if confirmed { host.wall_of(slot.end) } else { host.wall_of(slot.start) };
        let left = until - crate::clock::now_ms() as f64;
        if left <= 0.0 && confirmed {
            break;
        }
        tokio::time::sleep(Duration::from_secs_f64(left.clamp(0.0, 200.0) / 1000.0)).await;
    }
    events.push((slot.end, ExecEvent::Finished { key }));
    (events, None)
}
