//! One Kubernetes client per cluster and the calls the actuator makes:
//! create a stage pod (idempotently), follow it, delete it, cordon or taint
//! a node for failure injection, read node metrics.
//!
//! Every call the actuator makes is listed in `deploy/base/rbac.yaml`, and
//! a test keeps the two in step.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node as KNode, Pod, Taint};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config};
use serde_json::json;
use tracing::{debug, info, warn};

use super::observe::{Phase, PodProgress, parse_quantity, pod_progress};

/// Annotation on an injected node: what was injected.
pub const INJECTED_ANNOTATION: &str = "twinmesh.io/injected";
/// Annotation on an injected node: when (ms since the epoch) to revert.
pub const REVERT_AT_ANNOTATION: &str = "twinmesh.io/revert-at";
/// Taint put on a thermally throttled node.
pub const THERMAL_TAINT: &str = "twinmesh.io/thermal-throttle";

/// How the agent reaches its clusters.
#[derive(Clone, Debug)]
pub struct KubeSettings {
    /// Kubeconfig with a context per cluster (mounted from a Secret).
    pub kubeconfig: Option<PathBuf>,
    /// Context name of cluster `c` is `<prefix><c>` (k3d names its
    /// contexts `k3d-<cluster>`).
    pub context_prefix: String,
    /// Use the in-cluster service account for this agent's own cluster.
    pub in_cluster: bool,
    /// Namespace for stage pods.
    pub namespace: String,
    /// Image with the `twinmesh` binary, for stage pods.
    pub image: String,
    /// Delete a stage's pod once its result is recorded.
    pub delete_finished: bool,
    /// How long a stage pod may stay unschedulable before the stage moves
    /// to another node.
    pub unschedulable_grace: Duration,
}

/// Why a Kubernetes call failed, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The kubeconfig file could not be read.
    #[error("kubeconfig {path}: {why}")]
    Kubeconfig {
        /// Its path.
        path: std::path::PathBuf,
        /// Why.
        why: String,
    },
    /// Not one cluster has a client.
    #[error("no Kubernetes cluster reachable: {0}")]
    NoneReachable(String),
    /// No client for the cluster.
    #[error("no Kubernetes client for cluster '{cluster}': {why}")]
    NoCluster {
        /// Cluster.
        cluster: String,
        /// Why.
        why: String,
    },
    /// RBAC refused the call.
    #[error(
        "forbidden: {action} in cluster '{cluster}' — the agent's ServiceAccount lacks this permission \
         (see deploy/base/rbac.yaml): {message}"
    )]
    Forbidden {
        /// Cluster.
        cluster: String,
        /// What was attempted, e.g. `create pods in twinmesh-jobs`.
        action: String,
        /// The API server's message.
        message: String,
    },
    /// The API server refused the call.
    #[error("{action} in cluster '{cluster}' failed: HTTP {code} {reason}: {message}")]
    Api {
        /// Cluster.
        cluster: String,
        /// What was attempted.
        action: String,
        /// HTTP status.
        code: u16,
        /// Kubernetes reason (Conflict, Invalid, InternalError, …).
        reason: String,
        /// The API server's message.
        message: String,
    },
    /// The API server could not be reached (after retries).
    #[error("{action} in cluster '{cluster}': cannot reach the API server: {message}")]
    Unreachable {
        /// Cluster.
        cluster: String,
        /// What was attempted.
        action: String,
        /// Transport error.
        message: String,
    },
}

/// Retries of calls that are safe to repeat (every call here is: creates
/// use deterministic names, patches are absolute).
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Attempts in all.
    pub attempts: u32,
    /// Wait before the second attempt; doubles after each.
    pub backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: 5, backoff: Duration::from_millis(200) }
    }
}

/// Whether a pod was created by this call or was there already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// 201.
    New,
    /// 409 AlreadyExists: a duplicate or retried plan; counts as success.
    Existed,
}

/// How a stage pod ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Ran to exit 0.
    Succeeded {
        /// Node it ran on.
        node: Option<String>,
        /// Container start (ms since the epoch).
        started_ms: u64,
        /// Container end.
        finished_ms: u64,
        /// The work command's own measurement.
        measured_ms: Option<f64>,
        /// When it was bound to its node.
        scheduled_ms: Option<u64>,
    },
    /// Failed, was evicted, or vanished.
    Failed(String),
    /// The scheduler would not place it within the grace period.
    Unschedulable(String),
    /// No result within the time limit.
    TimedOut,
}

/// Clients for every reachable cluster.
pub struct Kube {
    clients: BTreeMap<String, Client>,
    /// Why clusters without a client have none.
    missing: BTreeMap<String, String>,
    /// Settings.
    pub settings: KubeSettings,
    /// Retry policy.
    pub retry: Retry,
}

impl std::fmt::Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kube").field("clusters", &self.clients.keys()).field("missing", &self.missing).finish()
    }
}

fn classify(cluster: &str, action: &str, e: kube::Error) -> KubeError {
    match e {
        kube::Error::Api(s) if s.code == 403 => {
            KubeError::Forbidden { cluster: cluster.into(), action: action.into(), message: s.message }
        }
        kube::Error::Api(s) => KubeError::Api {
            cluster: cluster.into(),
            action: action.into(),
            code: s.code,
            reason: s.reason,
            message: s.message,
        },
        other => KubeError::Unreachable { cluster: cluster.into(), action: action.into(), message: other.to_string() },
    }
}

fn retryable(e: &KubeError) -> bool {
    match e {
        KubeError::Api { code, .. } => *code == 429 || *code >= 500,
        KubeError::Unreachable { .. } => true,
        _ => false,
    }
}

impl Kube {
    /// Clients for the given clusters: in-cluster for `own` when
    /// `settings.in_cluster`, kubeconfig contexts `<prefix><cluster>` for
    /// the rest. A cluster without a context is recorded as missing, not an
    /// error: stages placed there fail with the reason.
    pub async fn connect(settings: KubeSettings, own: &str, clusters: &[String]) -> Result<Kube, KubeError> {
        let kc = match &settings.kubeconfig {
            Some(p) => Some(
                Kubeconfig::read_from(p).map_err(|e| KubeError::Kubeconfig { path: p.clone(), why: e.to_string() })?,
            ),
            None => None,
        };
        let mut clients = BTreeMap::new();
        let mut missing = BTreeMap::new();
        for c in clusters {
            let ctx = format!("{}{c}", settings.context_prefix);
            let config = if settings.in_cluster && c == own {
                Config::incluster().map_err(|e| e.to_string())
            } else if let Some(kc) = &kc {
                if kc.contexts.iter().any(|n| n.name == ctx) {
                    let opts = KubeConfigOptions { context: Some(ctx.clone()), ..KubeConfigOptions::default() };
                    Config::from_custom_kubeconfig(kc.clone(), &opts).await.map_err(|e| format!("context {ctx}: {e}"))
                } else {
                    Err(format!("no context '{ctx}' in the kubeconfig"))
                }
            } else {
                Err(format!("no kubeconfig given (--kubeconfig) for context '{ctx}'"))
            };
            // Our own retry (below) covers 429, every 5xx and transport
            // errors with one documented policy; kube's would repeat 429,
            // 503 and 504 up to 15 times underneath it.
            let config = config.map(|mut c| {
                c.default_retry = false;
                c
            });
            match config.and_then(|cfg| Client::try_from(cfg).map_err(|e| e.to_string())) {
                Ok(client) => {
                    clients.insert(c.clone(), client);
                }
                Err(why) => {
                    missing.insert(c.clone(), why);
                }
            }
        }
        if clients.is_empty() {
            return Err(KubeError::NoneReachable(
                missing.iter().map(|(c, w)| format!("{c}: {w}")).collect::<Vec<_>>().join("; "),
            ));
        }
        info!(clusters = ?clients.keys().collect::<Vec<_>>(), missing = ?missing.keys().collect::<Vec<_>>(), "Kubernetes clients");
        Ok(Kube { clients, missing, settings, retry: Retry::default() })
    }

    /// From ready-made clients (tests, or a caller with its own config).
    pub fn with_clients(clients: BTreeMap<String, Client>, settings: KubeSettings) -> Kube {
        Kube { clients, missing: BTreeMap::new(), settings, retry: Retry::default() }
    }

    /// Clusters with a client.
    pub fn clusters(&self) -> impl Iterator<Item = &String> {
        self.clients.keys()
    }

    fn client(&self, cluster: &str) -> Result<&Client, KubeError> {
        self.clients.get(cluster).ok_or_else(|| KubeError::NoCluster {
            cluster: cluster.into(),
            why: self.missing.get(cluster).cloned().unwrap_or_else(|| "not configured".into()),
        })
    }

    fn pods(&self, cluster: &str) -> Result<Api<Pod>, KubeError> {
        Ok(Api::namespaced(self.client(cluster)?.clone(), &self.settings.namespace))
    }

    fn nodes(&self, cluster: &str) -> Result<Api<KNode>, KubeError> {
        Ok(Api::all(self.client(cluster)?.clone()))
    }

    /// Runs `call` with retries on 429, 5xx and transport errors.
    async fn retrying<T, F, Fut>(&self, cluster: &str, action: &str, mut call: F) -> Result<T, KubeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut wait = self.retry.backoff;
        let mut attempt = 1;
        loop {
            match call().await.map_err(|e| classify(cluster, action, e)) {
                Ok(v) => return Ok(v),
                Err(e) if retryable(&e) && attempt < self.retry.attempts => {
                    warn!(cluster, action, attempt, error = %e, "retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates a stage pod. AlreadyExists is success: the deterministic
    /// name means the same stage attempt is already there.
    pub async fn ensure_pod(&self, cluster: &str, pod: &Pod) -> Result<Created, KubeError> {
        let api = self.pods(cluster)?;
        let action = format!("create pods in {}", self.settings.namespace);
        let pp = PostParams::default();
        let r = self.retrying(cluster, &action, || api.create(&pp, pod)).await;
        match r {
            Ok(_) => Ok(Created::New),
            Err(KubeError::Api { code: 409, reason, .. }) if reason == "AlreadyExists" => Ok(Created::Existed),
            Err(e) => Err(e),
        }
    }

    /// Deletes a pod; a pod already gone is fine.
    pub async fn delete_pod(&self, cluster: &str, name: &str) -> Result<(), KubeError> {
        let api = self.pods(cluster)?;
        let action = format!("delete pods in {}", self.settings.namespace);
        let dp = DeleteParams::default();
        match self.retrying(cluster, &action, || api.delete(name, &dp)).await {
            Ok(_) | Err(KubeError::Api { code: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Follows pod `name` until it succeeds or fails. `progress` sees every
    /// change. A pod the scheduler keeps refusing for `unschedulable_grace`
    /// ends as [`Outcome::Unschedulable`]; none of that within `limit`
    /// ends as [`Outcome::TimedOut`].
    pub async fn follow_pod(
        &self,
        cluster: &str,
        name: &str,
        unschedulable_grace: Duration,
        limit: Duration,
        mut progress: impl FnMut(&PodProgress),
    ) -> Result<Outcome, KubeError> {
        let api = self.pods(cluster)?;
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = watcher(api, cfg).default_backoff().boxed();
        let deadline = tokio::time::Instant::now() + limit;
        let mut refused_since: Option<tokio::time::Instant> = None;
        let mut last: Option<Phase> = None;
        let mut scheduled_ms = None;
        let mut node = None;
        let mut errors = 0u32;
        loop {
            let wake = match refused_since {
                Some(t) => (t + unschedulable_grace).min(deadline),
                None => deadline,
            };
            let ev = match tokio::time::timeout_at(wake, stream.next()).await {
                Err(_) => {
                    return Ok(match (refused_since, &last) {
                        (Some(_), Some(Phase::Pending { unschedulable: Some(m) })) => Outcome::Unschedulable(m.clone()),
                        _ => Outcome::TimedOut,
                    });
                }
                Ok(None) => return Ok(Outcome::Failed("watch ended".into())),
                Ok(Some(ev)) => ev,
            };
            let pod = match ev {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
                Ok(watcher::Event::Delete(_)) => return Ok(Outcome::Failed(format!("pod {name} was deleted"))),
                Ok(_) => continue,
                Err(e) => {
                    errors += 1;
                    let (status, message) = (watch_status(&e), e.to_string());
                    let action = format!("watch pods in {}", self.settings.namespace);
                    let cluster = cluster.to_string();
                    match watch_verdict(status, errors) {
                        WatchVerdict::Retry => {
                            debug!(cluster, pod = name, error = %message, "watch error; the watcher retries");
                            continue;
                        }
                        WatchVerdict::Forbidden => return Err(KubeError::Forbidden { cluster, action, message }),
                        WatchVerdict::GiveUp => {
                            let message = format!("{errors} watch errors in a row, the last: {message}");
                            return Err(match status {
                                Some(code) => KubeError::Api { cluster, action, code, reason: String::new(), message },
                                None => KubeError::Unreachable { cluster, action, message },
                            });
                        }
                    }
                }
            };
            errors = 0;
            let Some(p) = pod_progress(&pod) else { continue };
            if p.node.is_some() {
                node.clone_from(&p.node);
            }
            if let Phase::Scheduled { at_ms } = &p.phase {
                scheduled_ms = scheduled_ms.or(*at_ms);
            }
            if last.as_ref() != Some(&p.phase) {
                progress(&p);
                last = Some(p.phase.clone());
            }
            match p.phase {
                Phase::Succeeded { started_ms, finished_ms, measured_ms } => {
                    return Ok(Outcome::Succeeded { node, started_ms, finished_ms, measured_ms, scheduled_ms });
                }
                Phase::Failed { reason } => return Ok(Outcome::Failed(reason)),
                Phase::Pending { unschedulable: Some(_) } => {
                    refused_since.get_or_insert_with(tokio::time::Instant::now);
                }
                _ => refused_since = None,
            }
        }
    }

    /// Cordons (`on`) or uncordons a node, recording what was injected and
    /// when to revert in annotations, so the node's own agent can revert it
    /// after a restart.
    pub async fn cordon(
        &self,
        cluster: &str,
        node: &str,
        on: bool,
        revert_at_ms: Option<u64>,
    ) -> Result<(), KubeError> {
        let api = self.nodes(cluster)?;
        let patch = if on {
            json!({
                "metadata": {"annotations": {
                    INJECTED_ANNOTATION: "cordon",
                    REVERT_AT_ANNOTATION: revert_at_ms.map(|t| t.to_string()),
                }},
                "spec": {"unschedulable": true}
            })
        } else {
            json!({
                "metadata": {"annotations": {INJECTED_ANNOTATION: null, REVERT_AT_ANNOTATION: null}},
                "spec": {"unschedulable": null}
            })
        };
        let (pp, patch) = (PatchParams::default(), Patch::Merge(&patch));
        self.retrying(cluster, "patch nodes", || api.patch(node, &pp, &patch)).await?;
        Ok(())
    }

    /// Adds (`on`) or removes the taint `key` (NoSchedule). Reads the node
    /// and writes its whole taint list with the resourceVersion it read, so
    /// a concurrent change is never overwritten: a 409 Conflict reads again.
    pub async fn taint(
        &self,
        cluster: &str,
        node: &str,
        key: &str,
        on: bool,
        revert_at_ms: Option<u64>,
    ) -> Result<(), KubeError> {
        let api = self.nodes(cluster)?;
        for _ in 0..self.retry.attempts.max(1) {
            let n = self.retrying(cluster, "get nodes", || api.get(node)).await?;
            let mut taints: Vec<Taint> = n.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
            let had = taints.iter().any(|t| t.key == key);
            taints.retain(|t| t.key != key);
            if on {
                taints.push(Taint {
                    key: key.into(),
                    value: Some("true".into()),
                    effect: "NoSchedule".into(),
                    ..Taint::default()
                });
            } else if !had {
                return Ok(());
            }
            let annotations = if on {
                json!({INJECTED_ANNOTATION: "taint", REVERT_AT_ANNOTATION: revert_at_ms.map(|t| t.to_string())})
            } else {
                json!({INJECTED_ANNOTATION: null, REVERT_AT_ANNOTATION: null})
            };
            let patch = json!({
                "metadata": {"resourceVersion": n.metadata.resource_version, "annotations": annotations},
                "spec": {"taints": taints}
            });
            let (pp, patch) = (PatchParams::default(), Patch::Merge(&patch));
            match self.retrying(cluster, "patch nodes", || api.patch(node, &pp, &patch)).await {
                Ok(_) => return Ok(()),
                Err(KubeError::Api { code: 409, .. }) => {
                    debug!(cluster, node, "node changed under the taint patch; reading again");
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(KubeError::Api {
            cluster: cluster.into(),
            action: "patch nodes".into(),
            code: 409,
            reason: "Conflict".into(),
            message: format!("node {node} kept changing; taint not applied"),
        })
    }

    /// Reads a node's CPU (cores) and memory (bytes) use from the Metrics
    /// API; `None` when the cluster has no metrics server.
    pub async fn node_metrics(&self, cluster: &str, node: &str) -> Option<(f64, f64)> {
        let client = self.client(cluster).ok()?;
        let req = http::Request::get(format!("/apis/metrics.k8s.io/v1beta1/nodes/{node}")).body(Vec::new()).ok()?;
        let v: serde_json::Value = match client.request(req).await {
            Ok(v) => v,
            Err(e) => {
                debug!(cluster, node, error = %e, "no node metrics");
                return None;
            }
        };
        let usage = v.get("usage")?;
        let cpu = parse_quantity(usage.get("cpu")?.as_str()?).ok()?;
        let mem = parse_quantity(usage.get("memory")?.as_str()?).ok()?;
        Some((cpu, mem))
    }

    /// Every new version of one node, for as long as the caller reads
    /// (the watcher relists and reconnects by itself).
    pub fn watch_node(
        &self,
        cluster: &str,
        node: &str,
    ) -> Result<impl futures::Stream<Item = KNode> + Send + 'static, KubeError> {
        let api = self.nodes(cluster)?;
        let cfg = watcher::Config::default().fields(&format!("metadata.name={node}"));
        let (cluster, node) = (cluster.to_string(), node.to_string());
        Ok(watcher(api, cfg).default_backoff().filter_map(move |ev| {
            let r = match ev {
                Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => Some(n),
                Ok(_) => None,
                Err(e) => {
                    warn!(cluster = %cluster, node = %node, error = %e, "node watch error; retrying");
                    None
                }
            };
            std::future::ready(r)
        }))
    }
}
/// Consecutive failed watch attempts (each after the watcher's backoff)
/// before a pod's watch is given up.
const WATCH_ERRORS_MAX: u32 = 20;

/// The API server's status code in a watch error, when it answered.
fn watch_status(e: &watcher::Error) -> Option<u16> {
    match e {
        watcher::Error::InitialListFailed(k) | watcher::Error::WatchStartFailed(k) | watcher::Error::WatchFailed(k) => {
            match k {
                kube::Error::Api(s) => Some(s.code),
                _ => None,
            }
        }
        watcher::Error::WatchError(s) => Some(s.code),
        watcher::Error::NoResourceVersion => None,
    }
}

/// What to do about a watch error.
#[derive(Debug, PartialEq, Eq)]
enum WatchVerdict {
    /// The watcher tries again (after its backoff).
    Retry,
    /// RBAC refused it: a permission is missing; retrying will not help.
    Forbidden,
    /// Too many errors in a row: given up, as what they are.
    GiveUp,
}

/// A 403 is a missing permission at once; any other error is retried,
/// and after [`WATCH_ERRORS_MAX`] in a row the watch is given up — as a
/// server or transport error, never as a permission it is not.
fn watch_verdict(status: Option<u16>, consecutive: u32) -> WatchVerdict {
    match status {
        Some(403) => WatchVerdict::Forbidden,
        _ if consecutive >= WATCH_ERRORS_MAX => WatchVerdict::GiveUp,
        _ => WatchVerdict::Retry,
    }
}

#[cfg(test)]
mod watch_tests {
    use super::*;

    #[test]
    fn only_a_403_is_a_permission_and_many_errors_are_what_they_are() {
        assert_eq!(watch_verdict(Some(403), 1), WatchVerdict::Forbidden);
        assert_eq!(watch_verdict(Some(500), 1), WatchVerdict::Retry);
        assert_eq!(watch_verdict(None, WATCH_ERRORS_MAX - 1), WatchVerdict::Retry);
        // Before, 20 transient errors were reported as an RBAC error.
        assert_eq!(watch_verdict(Some(503), WATCH_ERRORS_MAX), WatchVerdict::GiveUp);
        assert_eq!(watch_verdict(None, WATCH_ERRORS_MAX), WatchVerdict::GiveUp);
        // A message that merely contains "403" is no status.
        let e =
            watcher::Error::WatchError(Box::new(kube::core::Status::failure("pod 4030 gone", "Gone").with_code(410)));
        assert_eq!(watch_status(&e), Some(410));
        assert_eq!(watch_status(&watcher::Error::NoResourceVersion), None);
    }
}
