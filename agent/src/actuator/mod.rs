//! Where stages run, behind one trait: the embedded fabric
//! ([`embedded::Embedded`]) and Kubernetes (`kube::run::KubeActuator`).
//!
//! An actuator is a driver of `common::execution`, the state machine the
//! DES drives too: it carries out the machine's bookings (on an owner's
//! schedule, or as pods) and feeds back when runs start, end, fail or are
//! refused. It sees the agent only through [`Host`] — the planning view,
//! the fabric clock, owner bookings, failures, notes on the job — never
//! the agent itself. The job's life around the execution (state,
//! verification, calibration, the final record) is the agent's
//! (`node::run`), the same for every actuator.

use std::sync::Arc;

use futures::future::BoxFuture;
use twinmesh_common::execution::{ExecAction, ExecConfig, Execution, Refusal, RunKey};
use twinmesh_common::failures::FailureKind;
use twinmesh_common::forecast::node_risk;
use twinmesh_common::job::Job;
use twinmesh_common::plan::Plan;
use twinmesh_common::preempt::{Action, ActionRecord, PreemptConfig, next_action};
use twinmesh_common::truth;
use twinmesh_common::view::FabricView;
use twinmesh_common::wire::{StageRun, StageSlot};

use crate::jobs::StageObservation;

pub mod embedded;

/// What an actuator may ask of the agent that runs it.
pub trait Host: Send + Sync {
    /// The planning view now (nodes down or given up are marked).
    fn view(&self) -> Arc<FabricView>;
    /// Wall seconds per fabric second.
    fn time_scale(&self) -> f64;
    /// Absolute fabric time now (ms).
    fn fabric_now(&self) -> f64;
    /// Wall ms (Unix) of absolute fabric time `t`.
    fn wall_of(&self, t: f64) -> f64;
    /// The earliest time (Unix ms) in `[from_ms, to_ms)` at which `node`
    /// was made unavailable, if it was.
    fn went_down(&self, node: &str, from_ms: u64, to_ms: u64) -> Option<u64>;
    /// Books a run with its node's owner (this agent or a peer).
    fn book(&self, run: StageRun) -> BoxFuture<'_, Result<StageSlot, Refusal>>;
    /// Asks the owner again, at a booked run's start, for its booking as
    /// it stands now (a late run ranked before it may have pushed it).
    fn confirm(&self, run: StageRun) -> BoxFuture<'_, Result<StageSlot, Refusal>>;
    /// Reserves a run with its node's owner for `duration_ms` from the
    /// earliest fit at or after its `ready_at`; returns the window.
    fn reserve(&self, run: StageRun, duration_ms: f64) -> BoxFuture<'_, Result<StageSlot, Refusal>>;
    /// Records the job's committed prediction (its reserved windows, p50
    /// and p90) once every stage is reserved.
    fn committed<'a>(&'a self, job: &'a str, c: twinmesh_common::record::Committed) -> BoxFuture<'a, ()>;
    /// Gives a run's booking back from `at` on.
    fn release<'a>(&'a self, job: &'a str, key: RunKey, node: &'a str, at: f64) -> BoxFuture<'a, ()>;
    /// Adds a note to the job's record.
    fn note<'a>(&'a self, job: &'a str, note: String) -> BoxFuture<'a, ()>;
    /// When each node of `view` last showed a precursor of failure (fabric
    /// ms), and the forecast's settings with the precision learned from the
    /// failure history: what preemptive actions act on.
    fn precursors(&self, view: &Arc<FabricView>) -> crate::node::Precursors;
    /// Whether this agent's guard rails let job `job` act at fabric time
    /// `now` (one budget for all its jobs); counts the action when they do.
    fn admit_action(&self, job: &str, now: f64, cfg: &twinmesh_common::preempt::PreemptConfig) -> bool;
    /// Why job `job`'s run of `stage` on `node` should fail over now: its
    /// owner has been unreachable for longer than the agent's failover
    /// grace (the caller then fails it over; the decision is logged).
    fn owner_lost(&self, job: &str, stage: &str, node: &str) -> Option<String>;
    /// A preemptive action was taken: recorded with the job (durably) and
    /// counted in the metrics by action (`migrate`, `restart`,
    /// `replicate`); `on_precursor` when it was taken on a precursor (its
    /// reaction time is measured), not for a job forecast late.
    fn acted(&self, record: ActionRecord, on_precursor: bool) -> BoxFuture<'_, ()>;
    /// Changes whenever a precursor of failure arrives.
    fn precursor_changes(&self) -> tokio::sync::watch::Receiver<crate::node::Warned>;
}

/// What an execution did, for verification and calibration.
#[derive(Clone, Debug)]
pub struct Executed {
    /// Each stage's successful run.
    pub observations: Vec<StageObservation>,
    /// Submit → last finish, every attempt and wait included (fabric ms).
    pub latency_ms: f64,
    /// Energy of every attempt (J).
    pub energy_j: f64,
    /// Runs that failed or were refused and were retried.
    pub failures: u32,
}

/// Runs stages somewhere.
pub trait Actuator: Send + Sync {
    /// Carries out `plan` for job `id` to its end.
    fn execute<'a>(
        &'a self,
        host: Arc<dyn Host>,
        id: &'a str,
        job: &'a Job,
        plan: &'a Plan,
    ) -> BoxFuture<'a, Result<Executed, String>>;

    /// Makes an injected failure real on `node` of `cluster` for
    /// `duration_ms` (reverting it afterwards); says what was done.
    fn inject<'a>(
        &'a self,
        cluster: &'a str,
        node: &'a str,
        kind: FailureKind,
        duration_ms: u64,
    ) -> BoxFuture<'a, Result<String, String>>;

    /// Makes a service's replicas real: replica `i` on `now[i]` (node,
    /// cluster), none beyond; `before` is where they were. The embedded
    /// fabric holds replicas as leases with their nodes' owners alone, so
    /// by default there is nothing more to do.
    fn scale<'a>(
        &'a self,
        _service: &'a str,
        _replica: &'a twinmesh_common::job::Compute,
        _now: &'a [(String, String)],
        _before: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

pub use twinmesh_common::execution::{Placed, placed};

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

/// The committed prediction of a job whose stages are all reserved (or
/// predicted): its windows from the execution, p50 their last end, p90
/// over each node's learned spread (`common::predict::interval`); `None`
/// until every window is known. Times from the job's start `t0`. After the
/// agent acted on the job (`revised_at`: when), it is committed again from
/// where its stages are now: runs done as they ran, the others as the
/// forecast the preemptive rules read has them.
pub(crate) fn committed(
    view: &FabricView,
    job: &Job,
    exec: &Execution,
    assign: &[twinmesh_common::predict::Assignment],
    t0: f64,
    revised_at: Option<f64>,
) -> Option<twinmesh_common::record::Committed> {
    use twinmesh_common::execution::StageState;
    let now_at: Vec<twinmesh_common::predict::Assignment>;
    let (windows, assign): (Vec<(f64, f64)>, &[twinmesh_common::predict::Assignment]) = match revised_at {
        None => ((0..job.stages.len()).map(|s| exec.window(s)).collect::<Option<_>>()?, assign),
        Some(now) => {
            let fin = twinmesh_common::preempt::predicted_finishes(job, exec, view, now);
            now_at = (0..job.stages.len()).map(|s| exec.stage(s).1).collect();
            let w = (0..job.stages.len())
                .map(|s| {
                    let t = exec.timing(s);
                    match t.state {
                        StageState::Done => Some((t.start, t.finish)),
                        _ if fin[s].is_finite() => {
                            Some((fin[s] - view.compute_ms(t.at.node, &job.stages[s].compute, t.at.format), fin[s]))
                        }
                        _ => None,
                    }
                })
                .collect::<Option<_>>()?;
            (w, &now_at)
        }
    };
    let finish = windows.iter().fold(t0, |m, w| m.max(w.1));
    let iv = twinmesh_common::predict::stated_interval(view, job, assign, &windows, t0);
    let p50 = finish - t0;
    Some(twinmesh_common::record::Committed {
        revision: 0,
        first_p50_ms: p50,
        p50_ms: p50,
        p90_ms: iv.p90_ms.max(p50),
        p50_j: iv.p50_j,
        p90_j: iv.p90_j,
        windows: job
            .stages
            .iter()
            .zip(&windows)
            .zip(assign)
            .map(|((st, w), a)| twinmesh_common::record::Window {
                stage: st.id.clone(),
                node: view.nodes.name[a.node].clone(),
                start_ms: w.0 - t0,
                end_ms: w.1 - t0,
            })
            .collect(),
    })
}

/// Reads the forecast for the job's nodes and carries out the rules'
/// decisions (`common::preempt`: move ahead of a forecast failure, race a
/// hot replica, move a queued stage of a job forecast to be late), each
/// noted on the job with its reason.
/// `now` is in the execution's time base (absolute fabric ms).
pub(crate) async fn preempt(
    host: &Arc<dyn Host>,
    id: &str,
    job: &Job,
    now: f64,
    exec: &mut Execution,
    out: &mut Vec<ExecAction>,
) -> bool {
    let view = host.view();
    let seen = host.precursors(&view);
    // Asked when a stage sits on a node that shows a precursor, or when the
    // job is forecast to miss its deadline (a stage queued behind work).
    if !(twinmesh_common::preempt::warned(exec, &seen.at, now, seen.forecast.lead_ms)
        || twinmesh_common::preempt::late(job, exec, &view, now))
    {
        return false;
    }
    let risk = node_risk(&view.nodes.resiliency, &seen.at, now, &seen.forecast);
    let pcfg = PreemptConfig::default();
    let mut admit = |t: f64| host.admit_action(id, t, &pcfg);
    let Some(d) = next_action(job, exec, &view, now, &risk, &ExecConfig::default(), &pcfg, &mut admit) else {
        return false;
    };
    let action = d.action.kind(exec, now);
    let done = match d.action {
        Action::Migrate { stage, to, .. } => exec.migrate(job, &view, now, stage, to, out),
        Action::Replicate { stage, on, .. } => exec.replicate(job, &view, now, stage, on, out),
    };
    if done {
        tracing::info!(job = id, action, reason = %d.reason, gain_ms = d.gain_ms, "preemptive action");
        // A reaction to a precursor when the node it leaves shows one; a
        // queued stage of a late job moves without any.
        let from = match d.action {
            Action::Migrate { from, .. } | Action::Replicate { from, .. } => from,
        };
        let on_precursor = seen.at.get(from).copied().flatten().is_some_and(|p| now < p + seen.forecast.lead_ms);
        host.acted(ActionRecord::of(job, id, &view, &d, action), on_precursor).await;
        host.note(id, format!("preemptive: {} (gain {:.0} ms, cost {:.0} ms)", d.reason, d.gain_ms, d.cost_ms)).await;
    }
    done
}
