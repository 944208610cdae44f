//! Running a planned job on Kubernetes: a driver of `common::execution`,
//! the same state machine the DES and the embedded fabric drive. Every run
//! the execution books becomes a pod `tm-<job>-<stage>[-r<attempt>]` on its
//! node in its cluster, created once its inputs are there (predecessors
//! done plus the modelled transfer); the pod is followed to its end and
//! its start and end go back to the execution, which decides failover and
//! attempts. What the pods did is verified against the prediction and fed
//! to calibration.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tracing::{info, warn};
use twinmesh_common::execution::{ExecAction, ExecConfig, ExecEvent, Execution, Refusal, RunKey};
use twinmesh_common::failures::FailureKind;
use twinmesh_common::job::Job;
use twinmesh_common::model::Format;
use twinmesh_common::plan::Plan;
use twinmesh_common::scaling::Scaler;
use twinmesh_common::truth;
use twinmesh_common::view::FabricView;

use super::client::{Created, Kube, Outcome};
use super::manifest::{StagePod, plan_digest, pod_name, stage_pod};
use super::observe::Phase;
use crate::actuator::{Actuator, Executed, Host, Placed, observations, placed};
use crate::clock::now_ms;

/// Wall ms a stage's pod works: the model's run time on its node, scaled
/// by the agent's time scale (at least 1 ms).
pub fn cpu_ms(view: &FabricView, n: usize, duration_ms: f64, f: Format, time_scale: f64) -> u64 {
    (truth::model_ms(view, n, duration_ms, f) * time_scale).round().max(1.0) as u64
}

/// Stages as pods on the planned nodes of every cluster.
pub struct KubeActuator {
    /// The clusters' clients.
    pub kube: Arc<Kube>,
}

impl Actuator for KubeActuator {
    fn execute<'a>(
        &'a self,
        host: Arc<dyn Host>,
        id: &'a str,
        job: &'a Job,
        plan: &'a Plan,
    ) -> BoxFuture<'a, Result<Executed, String>> {
        Box::pin(execute(host, &self.kube, id, job, plan))
    }

    /// A service's replicas as pods `tm-svc-<name>-replica-<i>` on their
    /// nodes (deterministic names: one pod per replica index), holding the
    /// replica's scaled resources; replicas scaled away are deleted, and a
    /// replica moved to another node is recreated there.
    fn scale<'a>(
        &'a self,
        service: &'a str,
        replica: &'a twinmesh_common::job::Compute,
        now: &'a [(String, String)],
        before: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let k = &self.kube;
            let job = format!("svc-{service}");
            for (i, (node, cluster)) in before.iter().enumerate() {
                if now.get(i) != Some(&(node.clone(), cluster.clone())) {
                    let name = pod_name(&job, &format!("replica-{i}"), 1);
                    k.delete_pod(cluster, &name).await.map_err(|e| e.to_string())?;
                }
            }
            for (i, (node, cluster)) in now.iter().enumerate() {
                let stage = format!("replica-{i}");
                let pod = stage_pod(&StagePod {
                    job: &job,
                    plan: "service",
                    stage: &stage,
                    attempt: 1,
                    node,
                    cluster,
                    format: Format::Native,
                    compute: replica,
                    // Serves until scaled away (a day at a time): the pod
                    // holds its replica's share of the node.
                    cpu_ms: 86_400_000,
                    image: &k.settings.image,
                    namespace: &k.settings.namespace,
                    scaler: Scaler::default(),
                });
                k.ensure_pod(cluster, &pod).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }

    /// Node down / crash: cordon; thermal throttling: a NoSchedule taint;
    /// both reverted after the duration (and by the node's agent from the
    /// annotation, should this one be gone by then).
    fn inject<'a>(
        &'a self,
        cluster: &'a str,
        node: &'a str,
        kind: FailureKind,
        duration_ms: u64,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let k = &self.kube;
            let revert_at = now_ms() + duration_ms;
            let done = match kind {
                FailureKind::NodeDown | FailureKind::SystemCrash => {
                    k.cordon(cluster, node, true, Some(revert_at)).await.map(|()| "cordoned")
                }
                FailureKind::ThermalThrottle => k
                    .taint(cluster, node, super::client::THERMAL_TAINT, true, Some(revert_at))
                    .await
                    .map(|()| "tainted twinmesh.io/thermal-throttle:NoSchedule"),
                _ => return Ok("recorded in the twin (no Kubernetes action for this kind)".to_string()),
            }
            .map_err(|e| e.to_string())?;
            let (k, cluster_, node_) = (k.clone(), cluster.to_string(), node.to_string());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(duration_ms)).await;
                let r = if kind == FailureKind::ThermalThrottle {
                    k.taint(&cluster_, &node_, super::client::THERMAL_TAINT, false, None).await
                } else {
                    k.cordon(&cluster_, &node_, false, None).await
                };
                if let Err(e) = r {
                    warn!(node = %node_, error = %e, "reverting an injected failure failed; the node's agent reverts it from the annotation");
                }
            });
            Ok(format!("{done} in cluster {cluster}"))
        })
    }
}

/// What a pod's task reports: events with their fabric times, and whether
/// it is the task's last word.
type PodNews = (Vec<(f64, ExecEvent)>, bool);

/// Drives the execution; returns the observations, the job's latency and
/// energy (fabric units, every attempt). A pod reports its run as booked
/// once its container runs, so the forecast (`common::preempt`) can move a
/// running stage: the new pod is created first, then the old one deleted.
async fn execute(host: Arc<dyn Host>, kube: &Arc<Kube>, id: &str, job: &Job, plan: &Plan) -> Result<Executed, String> {
    let view = host.view();
    let origin = view.origin(job).ok_or_else(|| format!("origin cluster '{}' left the fabric", job.origin.cluster))?;
    let scale = host.time_scale();
    let digest = plan_digest(&plan.placements.iter().map(|p| (p.node.clone(), p.format)).collect::<Vec<_>>());
    let Placed { assign, shadow, digest: key_digest } = placed(&view, id, plan)?;
    // Absolute fabric time, as the forecast reads it (`Host::fabric_now`);
    // observations are reported from the job's start.
    let t0 = now_ms();
    let start = host.fabric_now();
    // Pods hold nothing before they exist: no reservation is made ahead on
    // Kubernetes; each stage's window is its predicted run, chained from
    // the first pods' starts, and that is the committed prediction.
    let exec_cfg = ExecConfig { reserve: false, ..ExecConfig::default() };
    let mut exec = Execution::new(job, origin, &assign, &shadow, key_digest, start, exec_cfg);
    let mut out = Vec::new();
    exec.start(job, &view, &mut out);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PodNews>();
    let mut pods = 0usize;
    let mut warnings = host.precursor_changes();
    let mut told = false;
    // When the agent last acted on the job: its prediction is committed
    // again from there.
    let mut revised: Option<f64> = None;
    let tick = Duration::from_secs_f64(scale.clamp(0.01, 0.25));
    let ctx = Arc::new(PodCtx { host: host.clone(), kube: kube.clone(), id: id.to_string(), digest, t0, scale });
    let now = || host.fabric_now();
    let cluster_of = |node: usize| view.latency.names()[view.nodes.cluster[node] as usize].clone();
    let pod_of = |stage: usize, node: usize, attempt: u16| {
        (cluster_of(node), pod_name(id, &job.stages[stage].id, u32::from(attempt)))
    };
    loop {
        // A stage moved in this batch: its new pod first, then the old one
        // goes (`replaces`); other released runs go at once.
        let moved: Vec<usize> = out
            .iter()
            .filter_map(|a| match a {
                ExecAction::Book { key, .. } => Some(key.stage as usize),
                _ => None,
            })
            .collect();
        let mut replaces: Vec<(usize, (String, String))> = Vec::new();
        for a in &out {
            if let ExecAction::Release { key, node, .. } = a {
                let old = pod_of(key.stage as usize, *node, key.attempt);
                if moved.contains(&(key.stage as usize)) {
                    replaces.push((key.stage as usize, old));
                } else {
                    let kube = kube.clone();
                    tokio::spawn(async move {
                        let _ = kube.delete_pod(&old.0, &old.1).await;
                    });
                }
            }
        }
        for a in out.drain(..) {
            if let ExecAction::Book { key, node, format, ready_at } = a {
                let st = job.stages[key.stage as usize].clone();
                let node_name = view.nodes.name[node].clone();
                let cluster = cluster_of(node);
                let work_ms = cpu_ms(&view, node, st.compute.duration_ms, format, scale);
                let old = replaces.iter().find(|(s, _)| *s == key.stage as usize).map(|(_, o)| o.clone());
                let pod = PodRun { st, key, node: node_name, cluster, format, work_ms, ready_at, replaces: old };
                pods += 1;
                tokio::spawn(run_pod(ctx.clone(), pod, tx.clone()));
            }
        }
        if exec.is_done() {
            break;
        }
        if pods == 0 {
            return Err("execution stalled: no pod in flight and the job is not done".into());
        }
        let news = tokio::select! {
            n = rx.recv() => n,
            _ = warnings.changed() => {
                if crate::actuator::preempt(&host, id, job, now(), &mut exec, &mut out).await {
                    // Where and when its stages run changed: commit again.
                    told = false;
                    revised = Some(now());
                }
                continue;
            }
            _ = tokio::time::sleep(tick) => {
                if crate::actuator::preempt(&host, id, job, now(), &mut exec, &mut out).await {
                    // Where and when its stages run changed: commit again.
                    told = false;
                    revised = Some(now());
                }
                continue;
            }
        };
        let Some((events, last)) = news else { return Err("pod tasks ended".into()) };
        if last {
            pods -= 1;
        }
        let current = host.view();
        for (at, ev) in events {
            exec.handle(job, &current, at, ev, &mut out);
        }
        if !told && let Some(c) = crate::actuator::committed(&view, job, &exec, &assign, start, revised) {
            told = true;
            host.committed(id, c).await;
        }
        if out.is_empty() && crate::actuator::preempt(&host, id, job, now(), &mut exec, &mut out).await {
            // Where and when its stages run changed: commit again.
            told = false;
            revised = Some(now());
        }
    }
    let o = exec.outcome();
    if o.failed {
        return Err(o.error.unwrap_or_else(|| "job failed".into()));
    }
    Ok(Executed {
        observations: observations(&view, job, &o, start),
        latency_ms: o.latency_ms,
        energy_j: o.energy_j,
        failures: o.failures,
    })
}

/// One run to carry out as a pod.
struct PodRun {
    st: twinmesh_common::job::Stage,
    key: RunKey,
    node: String,
    cluster: String,
    format: Format,
    work_ms: u64,
    ready_at: f64,
    /// The pod (cluster, name) of the run this one replaces, deleted once
    /// this one's pod exists.
    replaces: Option<(String, String)>,
}

/// What every pod of one job shares.
struct PodCtx {
    host: Arc<dyn Host>,
    kube: Arc<Kube>,
    id: String,
    digest: String,
    t0: u64,
    scale: f64,
}

impl PodCtx {
    /// Fabric ms of the job at wall time `wall_ms`.
    fn fabric(&self, wall_ms: f64) -> f64 {
        self.host.fabric_now() - (now_ms() as f64 - wall_ms) / self.scale
    }
}

/// One run as a pod: created when its inputs are there, followed to its
/// end; reports its start when the container runs, then how it ended, as
/// execution events with their fabric times.
async fn run_pod(ctx: Arc<PodCtx>, run: PodRun, tx: tokio::sync::mpsc::UnboundedSender<PodNews>) {
    let events = follow_run(&ctx, run, &tx).await;
    let _ = tx.send((events, true));
}

async fn follow_run(
    ctx: &Arc<PodCtx>,
    run: PodRun,
    tx: &tokio::sync::mpsc::UnboundedSender<PodNews>,
) -> Vec<(f64, ExecEvent)> {
    let PodRun { st, key, node, cluster, format, work_ms, ready_at, replaces } = run;
    let (host, kube, id) = (&ctx.host, &ctx.kube, ctx.id.as_str());
    // Inputs arrive after the modelled transfer (the clusters of a test
    // fabric share one machine; the latency matrix stands in for the
    // network between them).
    let ready_wall = ctx.host.wall_of(ready_at);
    let now = now_ms() as f64;
    if ready_wall > now {
        tokio::time::sleep(Duration::from_secs_f64((ready_wall - now) / 1000.0)).await;
    }
    let attempt = u32::from(key.attempt);
    let pod = stage_pod(&StagePod {
        job: id,
        plan: &ctx.digest,
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
    let refused = |reason: String| {
        vec![(ctx.fabric(now_ms() as f64), ExecEvent::Refused { key, reason: Refusal::Other(reason) })]
    };
    let created_at = now_ms();
    match kube.ensure_pod(&cluster, &pod).await {
        Ok(Created::New) => {
            info!(job = id, stage = %st.id, pod = %name, cluster = %cluster, node = %node, "pod created")
        }
        Ok(Created::Existed) => {
            info!(job = id, stage = %st.id, pod = %name, "pod already there (resumed or duplicate plan)")
        }
        Err(e) => {
            warn!(job = id, stage = %st.id, error = %e, "cannot create the stage's pod");
            return refused(format!("{node}: {e}"));
        }
    }
    // A move: the new pod exists, so the old one goes now.
    if let Some((old_cluster, old)) = replaces {
        info!(job = id, stage = %st.id, old = %old, new = %name, "moved: deleting the pod it replaces");
        if let Err(e) = kube.delete_pod(&old_cluster, &old).await {
            warn!(pod = %old, error = %e, "cannot delete the replaced pod");
        }
    }
    // Generous: ten times the work, plus image pull and scheduling.
    let limit = Duration::from_millis(work_ms.saturating_mul(10)) + Duration::from_secs(300);
    let follow = kube.follow_pod(&cluster, &name, kube.settings.unschedulable_grace, limit, |p| {
        info!(job = id, stage = %st.id, pod = %p.pod, phase = ?p.phase, "pod progress");
        // Running: the run holds its node from now (what the forecast and
        // a move act on).
        if let Phase::Running { started_ms } = p.phase {
            let start = ctx.fabric(started_ms.max(created_at).max(ctx.t0) as f64);
            let _ = tx.send((vec![(start, ExecEvent::Booked { key, start })], false));
        }
    });
    tokio::pin!(follow);
    // The failover grace (`common::lifecycle::owner_lost`), as the
    // embedded fabric applies it: a run whose node's agent has been
    // unreachable that long moves.
    let outcome = loop {
        tokio::select! {
            o = &mut follow => break o,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                let Some(why) = host.owner_lost(id, &st.id, &node) else { continue };
                warn!(job = id, node = %node, pod = %name, reason = %why, "failing over a pod whose node's agent cannot be reached");
                host.note(id, format!(
                    "failover: attempt {attempt} on {node} (pod {name}) given up: {why}; the pod may also finish there (a possible duplicate)"
                ))
                .await;
                // Best effort: the cluster may be out of reach too.
                let _ = kube.delete_pod(&cluster, &name).await;
                let now = ctx.fabric(now_ms() as f64);
                return vec![(now, ExecEvent::Booked { key, start: now }), (now, ExecEvent::Failed { key })];
            }
        }
    };
    match outcome {
        Ok(Outcome::Succeeded { started_ms, finished_ms, measured_ms, scheduled_ms, .. }) => {
            let wall_ms = measured_ms.unwrap_or(finished_ms.saturating_sub(started_ms) as f64);
            // The stage ends when the pod's work ends: container start plus
            // its measured work. The timestamps have whole seconds, so the
            // start is no earlier than the pod's creation.
            let start_wall = started_ms.max(created_at).max(ctx.t0) as f64;
            let finish_wall = start_wall + wall_ms;
            let note = format!(
                "stage {}: pod {name} in {cluster} on {node}: scheduled {}, started +{:.1} s, worked {:.0} ms",
                st.id,
                scheduled_ms.map_or("?".to_string(), |t| format!("+{:.1} s", (t as f64 - ctx.t0 as f64) / 1000.0)),
                (started_ms as f64 - ctx.t0 as f64) / 1000.0,
                wall_ms
            );
            host.note(id, note).await;
            if kube.settings.delete_finished
                && let Err(e) = kube.delete_pod(&cluster, &name).await
            {
                warn!(pod = %name, error = %e, "cannot delete a finished pod");
            }
            let start = ctx.fabric(start_wall);
            vec![(start, ExecEvent::Booked { key, start }), (ctx.fabric(finish_wall), ExecEvent::Finished { key })]
        }
        Ok(Outcome::Unschedulable(m)) => {
            warn!(job = id, stage = %st.id, pod = %name, reason = %m, "stage refused by the scheduler; the execution moves it");
            let _ = kube.delete_pod(&cluster, &name).await;
            refused(format!("{node}: unschedulable: {m}"))
        }
        Ok(other) => {
            let why = match other {
                Outcome::Failed(r) => format!("failed: {r}"),
                _ => "no result in time".to_string(),
            };
            warn!(job = id, stage = %st.id, pod = %name, %why, "stage attempt lost; the execution moves it");
            // Free the node for others; the next attempt has its own name.
            let _ = kube.delete_pod(&cluster, &name).await;
            let now = ctx.fabric(now_ms() as f64);
            vec![(now, ExecEvent::Booked { key, start: now }), (now, ExecEvent::Failed { key })]
        }
        Err(e) => refused(format!("{node}: {e}")),
    }
}
