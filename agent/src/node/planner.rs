//! Accepting a job: validate the document, route it to the agent nearest
//! its origin (the replica decides, by liveness), forward it there or plan
//! it here, commit it, and start it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use twinmesh_common::lifecycle::{
    Decision, ForwardInput, ForwardOutput, Forwarding, Hint, Hop, ReconcileInput, plan_hold_until,
};
use twinmesh_common::policy::{Policy, PolicyConfig};
use twinmesh_common::routing::Route;
use twinmesh_common::spec::{self, SpecError};
use twinmesh_common::wire::{ForwardRefusal, JobHandoff, Message};

use super::{Agent, now_ms};
use crate::jobs::{JobRecord, JobState, job_id};

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The document is bad.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// No node can run it.
    #[error("{0}")]
    Unplaceable(String),
    /// Storing it failed: it was not accepted.
    #[error("not accepted: {0}")]
    Store(String),
    /// Too many jobs in flight here: not accepted; retry later.
    #[error("not accepted: {0} jobs are running or queued on this agent (--max-in-flight); retry later")]
    Overloaded(usize),
    /// What the document names exists already (a service of that name).
    #[error("{field}: {reason}")]
    Exists {
        /// The field that names it.
        field: &'static str,
        /// What exists.
        reason: String,
    },
    /// Bad query parameter.
    #[error("{field}: {reason}")]
    Param {
        /// Parameter.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// What a submission returns.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct SubmitResponse {
    /// Job id.
    pub id: String,
    /// Agent that planned it.
    pub planner: String,
    /// Whether this call created it (false: already known).
    pub created: bool,
    /// The job record.
    pub job: JobRecord,
}

impl Agent {
    /// Accepts a job document: validates, routes to the agent nearest its
    /// origin (forwarding over the mesh), plans, commits, and starts it.
    pub async fn submit(
        self: &Arc<Self>,
        text: &str,
        policy: Option<&str>,
        dry_run: bool,
        forwarded_from: Option<String>,
    ) -> Result<SubmitResponse, SubmitError> {
        let doc = spec::parse_document(text)?;
        let job = doc.validate()?;
        self.check_origin(&job.origin)?;
        let policy: Policy = match policy {
            Some(p) => p.parse().map_err(|reason| SubmitError::Param { field: "policy", reason })?,
            None => self.cfg.policy,
        };
        let canonical = serde_json::to_string(&doc).expect("documents serialise");
        let id = job_id(&job.name, &canonical);
        if let Some(existing) = self.job(&id) {
            return Ok(SubmitResponse { id, planner: existing.planner.clone(), created: false, job: existing });
        }
        // Route, unless another agent already routed it here: the job
        // protocol's `Forwarding` decides, this loop carries it out.
        // Routing skips agents the failure detector does not hold alive,
        // so a submission never waits on a silent one.
        let mut out = Vec::new();
        let mut fwd = Forwarding::new(&self.cfg.lifecycle, &self.cfg.name, forwarded_from.as_deref(), &mut out);
        let mut route: Option<Route> = None;
        let mut notes = Vec::new();
        while let Some(o) = (!out.is_empty()).then(|| out.remove(0)) {
            match o {
                ForwardOutput::Route { skip } => {
                    let next = self.lock().replica.route(&job.origin, &self.cfg.fabric.latency, &skip);
                    let hop = next.as_ref().map(|r| Hop {
                        agent: r.agent.clone(),
                        rtt_timeout_ms: self.lock().replica.timeout_for(&r.agent),
                    });
                    route = next;
                    fwd.handle(ForwardInput::Routed(hop), now_ms() as f64, &mut out);
                }
                ForwardOutput::Forward { to, timeout_ms } => {
                    self.decide(Decision::Forward { job: id.clone(), to: to.clone() });
                    let handoff = JobHandoff {
                        id: id.clone(),
                        document: canonical.clone(),
                        policy: policy.to_string(),
                        dry_run,
                        submitted_to: self.cfg.name.clone(),
                    };
                    let timeout = Duration::from_secs_f64(timeout_ms / 1000.0);
                    match self.request(&to, Message::Forward(handoff), timeout).await {
                        Ok(Message::ForwardResult { result: Ok(f), .. }) => {
                            let f = *f;
                            self.metrics.jobs_forwarded.fetch_add(1, Ordering::Relaxed);
                            // Agents silent before it may plan the job too:
                            // told later who did.
                            let mut after = Vec::new();
                            fwd.handle(ForwardInput::Answered, now_ms() as f64, &mut after);
                            for o in after {
                                if let ForwardOutput::LateForward { peer, planned_by } = o
                                    && !dry_run
                                {
                                    let hint = planned_by.map(|planner| Hint { job: id.clone(), planner });
                                    self.reconcile(ReconcileInput::LateForward { peer, hint });
                                }
                            }
                            return Ok(SubmitResponse {
                                id: f.job.id.clone(),
                                planner: f.planner,
                                created: f.created,
                                job: f.job,
                            });
                        }
                        Ok(Message::ForwardResult { result: Err(refusal), .. }) => {
                            // The planner refused the job itself: that is the
                            // answer (a failed commit there may be retried).
                            return Err(match refusal {
                                ForwardRefusal::NotAccepted(why) => SubmitError::Store(format!("at {to}: {why}")),
                                other => SubmitError::Unplaceable(other.to_string()),
                            });
                        }
                        other => {
                            let why = match other {
                                Err(e) => e,
                                Ok(m) => format!("unexpected answer {}", m.kind()),
                            };
                            self.decide(Decision::Unanswered { job: id.clone(), to: to.clone() });
                            fwd.handle(ForwardInput::Failed { why }, now_ms() as f64, &mut out);
                        }
                    }
                }
                // A forward that timed out may still arrive and be planned
                // there too: settle with those agents once it would have.
                ForwardOutput::LateForward { peer, planned_by } if !dry_run => {
                    let hint = planned_by.map(|planner| Hint { job: id.clone(), planner });
                    self.reconcile(ReconcileInput::LateForward { peer, hint });
                }
                ForwardOutput::LateForward { .. } | ForwardOutput::Forwarded { .. } => {}
                ForwardOutput::PlanHere { notes: n } => {
                    if !dry_run {
                        self.decide(Decision::PlanHere { job: id.clone(), from: forwarded_from.clone() });
                    }
                    notes = n;
                }
            }
        }
        if forwarded_from.is_some() {
            route = None;
        }
        self.plan_and_accept(id, canonical, job, policy, dry_run, forwarded_from, route, notes).await
    }

    /// The origin must name a cluster of the fabric and, when it names a
    /// node, a node the twin knows in that cluster.
    pub(super) fn check_origin(&self, origin: &twinmesh_common::job::Origin) -> Result<(), SubmitError> {
        let bad = |field: &str, reason: String| SubmitError::Spec(SpecError::Invalid { field: field.into(), reason });
        let view = self.view();
        let names = view.latency.names();
        if !names.contains(&origin.cluster) {
            return Err(bad(
                "metadata.origin.cluster",
                format!("unknown cluster '{}' (clusters: {})", origin.cluster, names.join(", ")),
            ));
        }
        if let Some(node) = &origin.node {
            match view.node_index(node) {
                None => return Err(bad("metadata.origin.node", format!("unknown node '{node}': not in the twin"))),
                Some(n) => {
                    let c = &names[view.nodes.cluster[n] as usize];
                    // Both names exist (the document lists them); they
                    // disagree: a rule between fields.
                    if *c != origin.cluster {
                        return Err(SubmitError::Spec(SpecError::Inconsistent {
                            field: "metadata.origin.node".into(),
                            reason: format!("node '{node}' is in cluster '{c}', not '{}'", origin.cluster),
                        }));
                    }
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn plan_and_accept(
        self: &Arc<Self>,
        id: String,
        canonical: String,
        job: twinmesh_common::job::Job,
        policy: Policy,
        dry_run: bool,
        forwarded_from: Option<String>,
        route: Option<Route>,
        notes: Vec<String>,
    ) -> Result<SubmitResponse, SubmitError> {
        let view = self.view();
        let t0 = Instant::now();
        let cfg = PolicyConfig {
            seed: id.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
            ..PolicyConfig::default()
        };
        // Placement is preemptive too: nothing new on a node whose
        // precursor's window is open, unless nothing else can take the job.
        let mut notes = notes;
        let plan = match self.avoiding_warned(&view) {
            Some((calm, warned)) => match policy.plan(&calm, &job, &cfg) {
                Ok(p) => {
                    let used: Vec<&String> =
                        warned.iter().filter(|w| p.placements.iter().any(|x| &x.node == *w)).collect();
                    if used.is_empty() {
                        notes.push(format!("avoided node(s) showing a precursor of failure: {}", warned.join(", ")));
                    }
                    Ok(p)
                }
                Err(_) => policy.plan(&view, &job, &cfg),
            },
            None => policy.plan(&view, &job, &cfg),
        }
        .map_err(|e| SubmitError::Unplaceable(e.to_string()))?;
        self.metrics.observe_plan(t0.elapsed());
        let submitted_to = forwarded_from.unwrap_or_else(|| self.cfg.name.clone());
        let mut rec = JobRecord::accepted(id.clone(), canonical, policy.to_string(), dry_run, submitted_to, now_ms());
        rec.planner = self.cfg.name.clone();
        rec.state = if dry_run { JobState::DryRun } else { JobState::Planned };
        rec.plan = Some(plan);
        rec.route = route;
        rec.notes = notes;
        if dry_run {
            // A dry run is an answer, not a job: never stored, never kept.
            return Ok(SubmitResponse { id, planner: self.cfg.name.clone(), created: true, job: rec });
        }
        // A job is visible (to GET, to duplicates, to planning) only once
        // it is durable. A duplicate arriving while the first copy commits
        // waits for that commit and gets the same answer.
        if self.lock().finished_ids.contains(&id) {
            if let Some(existing) = self.job(&id) {
                return Ok(SubmitResponse { id, planner: existing.planner.clone(), created: false, job: existing });
            }
        }
        let wait = {
            let mut st = self.lock();
            let in_flight = st.jobs.len() + st.committing.len();
            if in_flight >= self.cfg.retention.max_in_flight && !st.jobs.contains_key(&id) {
                // Back-pressure: a backlog the fabric cannot run would
                // only grow memory; the client retries later.
                return Err(SubmitError::Overloaded(in_flight));
            }
            if let Some(existing) = st.jobs.get(&id) {
                return Ok(SubmitResponse {
                    id,
                    planner: existing.planner.clone(),
                    created: false,
                    job: existing.clone(),
                });
            }
            match st.committing.get_mut(&id) {
                Some(waiters) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
                None => {
                    st.committing.insert(id.clone(), Vec::new());
                    None
                }
            }
        };
        if let Some(rx) = wait {
            return match rx.await {
                Ok(Ok(job)) => Ok(SubmitResponse { id, planner: job.planner.clone(), created: false, job }),
                Ok(Err(e)) => Err(SubmitError::Store(e)),
                Err(_) => Err(SubmitError::Store("the first submission of this job was dropped".into())),
            };
        }
        let committed = self.store.put_job(&rec).await.map_err(|e| e.to_string());
        let waiters = {
            let mut st = self.lock();
            if committed.is_ok() {
                st.jobs.insert(id.clone(), rec.clone());
                // Its placements count in this agent's view until their
                // owners have booked them (`common::inflight`).
                if let Some(plan) = &rec.plan {
                    let now = now_ms() as f64;
                    for (p, t) in plan.placements.iter().zip(&plan.predicted.stages) {
                        let c = job.stages.iter().find(|s| s.id == p.stage).map(|s| s.compute);
                        let (cpu, mem) = c.map_or((0.0, 0.0), |c| (c.cpu, c.mem_gb));
                        let until = plan_hold_until(&self.cfg.lifecycle, now, t.start_ms, self.cfg.time_scale);
                        st.inflight.reserve(&p.node, &format!("{id}/{}", p.stage), cpu, mem, until);
                    }
                    st.view = None;
                }
            }
            st.committing.remove(&id).unwrap_or_default()
        };
        for w in waiters {
            let _ = w.send(committed.clone().map(|()| rec.clone()));
        }
        if let Err(e) = committed {
            return Err(SubmitError::Store(e));
        }
        self.metrics.jobs_accepted.fetch_add(1, Ordering::Relaxed);
        self.metrics.jobs_planned.fetch_add(1, Ordering::Relaxed);
        if !dry_run {
            self.spawn_job(id.clone());
        }
        Ok(SubmitResponse { id, planner: self.cfg.name.clone(), created: true, job: rec })
    }
}
