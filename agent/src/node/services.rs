//! Services on the agent: a service document (`kind: Service`) is accepted
//! durably and scaled by the agent that took it, once per period, with the
//! rule the service DES uses (`common::autoscale::decide`: fixed, the
//! reactive HPA rule, or the twin's forecast checked in the DES).
//!
//! Each replica holds capacity on its node as a **lease**: a booking with
//! the node's owner for one period at a time (the replica's cores and
//! memory; the same owner bookings stages use, so planners see replicas in
//! the nodes' published load and nobody double-books them). Scaling up
//! places new replicas as one-stage jobs from the service's origin (greedy,
//! on the twin's view); scaling down stops renewing the last ones; a
//! replica whose node refuses (down) is placed again. On the embedded
//! fabric the offered load is the document's (`spec.load`), from which the
//! utilisation of each period is computed — the ground truth a metrics
//! pipeline would give on a real cluster.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use twinmesh_common::autoscale::{Controller, Scaling, ServiceCase};
use twinmesh_common::execution::RunKey;
use twinmesh_common::job::{Compute, Origin};
use twinmesh_common::policy::{Policy, PolicyConfig};
use twinmesh_common::spec::{self, ServiceDocument};
use twinmesh_common::wire::StageRun;

use super::{Agent, SubmitError, lock};

/// One period of a service, as the agent scaled it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleStep {
    /// Seconds since the service started (fabric time).
    pub at_s: f64,
    /// Offered requests per second over the period that ended.
    pub rps: f64,
    /// Utilisation of the replicas over it (0–1).
    pub utilisation: f64,
    /// Replicas for the next period.
    pub replicas: u32,
}

/// A service as stored and shown (`GET /v1/services/{name}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// Its name.
    pub name: String,
    /// The document as submitted.
    pub document: String,
    /// Scaling mode.
    pub scaling: String,
    /// When it started (absolute fabric ms).
    pub started_ms: f64,
    /// Replicas now.
    pub replicas: u32,
    /// The node of each replica.
    pub nodes: Vec<String>,
    /// Every period so far.
    pub history: Vec<ScaleStep>,
}

fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The document, its DES case (arrivals seeded by the service's name) and
/// its scaling mode.
fn parse(text: &str) -> Result<(ServiceDocument, ServiceCase, Scaling), SubmitError> {
    let (doc, mut case, mode) = spec::parse_service(text, 0)?;
    case.seed = seed_of(&doc.metadata.name);
    Ok((doc, case, mode))
}

impl Agent {
    /// Accepts a service: checked, stored durably, then scaled every
    /// period. A second service of the same name is refused.
    pub async fn submit_service(self: &Arc<Self>, text: &str) -> Result<ServiceRecord, SubmitError> {
        let (doc, _, mode) = parse(text)?;
        let origin = &doc.metadata.origin;
        self.check_origin(&Origin { cluster: origin.cluster.clone(), node: origin.node.clone() })?;
        let name = doc.metadata.name.clone();
        if lock(&self.services).contains_key(&name) {
            return Err(SubmitError::Exists {
                field: "metadata.name",
                reason: format!("a service '{name}' runs already on this agent; DELETE /v1/services/{name} first"),
            });
        }
        let record = ServiceRecord {
            name: name.clone(),
            document: text.to_string(),
            scaling: mode.name().to_string(),
            started_ms: self.fabric_now(),
            replicas: 0,
            nodes: Vec::new(),
            history: Vec::new(),
        };
        self.store.put_service(&name, &record).await.map_err(|e| SubmitError::Store(e.to_string()))?;
        lock(&self.services).insert(name.clone(), record.clone());
        info!(service = %name, scaling = mode.name(), "service accepted");
        tokio::spawn(self.clone().scale_loop(name));
        Ok(record)
    }

    /// Services stored before a restart go on being scaled.
    pub fn resume_services(self: &Arc<Self>) {
        let (records, corrupt) = match self.store.services::<ServiceRecord>() {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "reading stored services");
                return;
            }
        };
        for c in corrupt {
            warn!(key = %c.key, reason = %c.reason, "a stored service does not decode; skipped");
        }
        for r in records {
            let name = r.name.clone();
            lock(&self.services).insert(name.clone(), r);
            info!(service = %name, "service resumed");
            tokio::spawn(self.clone().scale_loop(name));
        }
    }

    /// Every service of this agent.
    pub fn service_list(&self) -> Vec<ServiceRecord> {
        lock(&self.services).values().cloned().collect()
    }

    /// One service.
    pub fn service(&self, name: &str) -> Option<ServiceRecord> {
        lock(&self.services).get(name).cloned()
    }

    /// Stops a service: it is forgotten durably, and its leases are given
    /// back within a period. `false` if there is none.
    pub async fn stop_service(&self, name: &str) -> Result<bool, SubmitError> {
        if !lock(&self.services).contains_key(name) {
            return Ok(false);
        }
        self.store.delete_service(name).await.map_err(|e| SubmitError::Store(e.to_string()))?;
        lock(&self.services).remove(name);
        info!(service = %name, "service stopped");
        Ok(true)
    }

    async fn scale_loop(self: Arc<Self>, name: String) {
        let Some(first) = self.service(&name) else { return };
        let Ok((doc, case, mode)) = parse(&first.document) else {
            warn!(service = %name, "stored service no longer parses; not scaled");
            return;
        };
        let period = case.scale.period_ms;
        let wall = Duration::from_secs_f64((period * self.cfg.time_scale / 1000.0).max(0.001));
        let mut k = first.history.len() as u64;
        let mut scaler =
            if first.history.is_empty() { Controller::new(&case) } else { Controller::resume(first.replicas, k) };
        // The leases of the period under way: given back when the next
        // ones are taken, or when the service stops.
        let mut held: Vec<(String, RunKey)> = Vec::new();
        let job = format!("svc-{name}");
        // One replica's lease: its cores and memory for a period.
        let replica = Compute {
            cpu: doc.spec.replica.cpu,
            mem_gb: doc.spec.replica.mem_gb,
            duration_ms: period,
            gpu_vram_gb: 0.0,
        };
        let mut placed: Vec<(String, String)> = Vec::new();
        loop {
            let now = self.fabric_now();
            for (node, key) in std::mem::take(&mut held) {
                self.release_stage(&job, key, &node, now).await;
            }
            let Some(mut rec) = self.service(&name) else {
                self.actuate(&name, &replica, &[], &placed).await;
                return;
            };
            let t = now - rec.started_ms;
            let step = scaler.period(&case, mode, t);
            let before = rec.replicas;
            held = self.lease(&doc, &replica, step.replicas, &rec.nodes, now, k).await;
            rec.nodes = held.iter().map(|(n, _)| n.clone()).collect();
            rec.replicas = rec.nodes.len() as u32;
            // What runs is what the rule scales from next period.
            scaler.replicas = rec.replicas;
            if !rec.history.is_empty() && rec.replicas != before {
                self.metrics.scaling_actions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let view = self.view();
            let now_placed: Vec<(String, String)> = rec
                .nodes
                .iter()
                .map(|n| {
                    let c = view
                        .node_index(n)
                        .map_or(String::new(), |ix| view.latency.names()[view.nodes.cluster[ix] as usize].to_string());
                    (n.clone(), c)
                })
                .collect();
            self.actuate(&name, &replica, &now_placed, &placed).await;
            placed = now_placed;
            rec.history.push(ScaleStep {
                at_s: t / 1000.0,
                rps: step.rps,
                utilisation: step.utilisation,
                replicas: rec.replicas,
            });
            k += 1;
            {
                let mut all = lock(&self.services);
                match all.get_mut(&name) {
                    Some(r) => *r = rec.clone(),
                    None => return,
                }
            }
            if let Err(e) = self.store.put_service(&name, &rec).await {
                warn!(service = %name, error = %e, "storing the service's period");
            }
            tokio::time::sleep(wall).await;
        }
    }

    /// The actuator's part (pods on Kubernetes; nothing more on the
    /// embedded fabric), logged when it fails (retried next period).
    async fn actuate(&self, name: &str, replica: &Compute, now: &[(String, String)], before: &[(String, String)]) {
        if let Some(act) = self.actuator.get()
            && let Err(e) = act.scale(name, replica, now, before).await
        {
            warn!(service = %name, error = %e, "replicas not carried out; tried again next period");
        }
    }

    /// Leases `n` replicas for the next period: the first ones on the
    /// nodes they had, new ones where a one-stage job of the replica's
    /// size from the origin would go; the leases taken (node, run).
    async fn lease(
        self: &Arc<Self>,
        doc: &ServiceDocument,
        compute: &Compute,
        n: u32,
        had: &[String],
        now: f64,
        k: u64,
    ) -> Vec<(String, RunKey)> {
        let name = &doc.metadata.name;
        let mut nodes = Vec::with_capacity(n as usize);
        for i in 0..n {
            let mut node = had.get(i as usize).cloned();
            for _ in 0..3 {
                let target = match node.take() {
                    Some(x) => x,
                    None => match self.place_replica(doc) {
                        Some(x) => x,
                        None => break,
                    },
                };
                let view = self.view();
                let format = view
                    .node_index(&target)
                    .and_then(|ix| view.best_format(ix, &twinmesh_common::view::allowed_by_arch(&Default::default())))
                    .map_or(twinmesh_common::model::Format::Native, |(f, _)| f);
                let key = RunKey { plan: seed_of(name), stage: i as u16, attempt: (k % 65_535) as u16 + 1 };
                let run = StageRun {
                    job: format!("svc-{name}"),
                    stage: format!("replica-{i}"),
                    key,
                    node: target.clone(),
                    format,
                    compute: *compute,
                    ready_at: now,
                };
                match self.run_stage(run).await {
                    Ok(_) => {
                        nodes.push((target, key));
                        break;
                    }
                    Err(why) => warn!(service = %name, node = %target, reason = %why, "replica lease refused"),
                }
            }
        }
        nodes
    }

    /// Where a new replica goes: where a greedy plan of the service's
    /// replica job (`spec::replica_job`) goes, on the twin's current view.
    fn place_replica(&self, doc: &ServiceDocument) -> Option<String> {
        let job = doc.replica_job().ok()?;
        let view = self.view();
        let plan = Policy::Greedy.plan(&view, &job, &PolicyConfig::default()).ok()?;
        Some(plan.placements[0].node.clone())
    }
}
