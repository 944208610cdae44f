//! A Kubernetes API double on loopback: the parts of the API server the
//! twinmesh actuator uses (pods in a namespace, nodes, node metrics),
//! speaking the API's JSON, with list + watch (including replay from a
//! resourceVersion), merge patches with optimistic concurrency, one-shot
//! injected faults, a request log for assertions, and optionally a
//! simulated scheduler + kubelet that binds pods by their hostname selector,
//! refuses cordoned or tainted nodes, and runs `work --cpu-ms N`.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// One request as the double saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query string.
    pub query: String,
    /// JSON body (Null when none).
    pub body: Value,
}

/// A canned failure for the next request matching method and path prefix.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Method to match.
    pub method: &'static str,
    /// Path prefix to match.
    pub path_prefix: String,
    /// Status to answer.
    pub status: u16,
    /// Kubernetes reason.
    pub reason: &'static str,
}

struct Watch {
    kind: &'static str,
    name: Option<String>,
    tx: mpsc::UnboundedSender<Result<Bytes, std::io::Error>>,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    pods: BTreeMap<String, Value>,
    nodes: BTreeMap<String, Value>,
    metrics: BTreeMap<String, Value>,
    rv: u64,
    /// (rv, kind, event) for watch replay.
    log: Vec<(u64, &'static str, Value)>,
    watches: Vec<Watch>,
    faults: VecDeque<Fault>,
    kubelet: Option<Kubelet>,
}

/// The simulated scheduler + kubelet.
#[derive(Clone, Copy, Debug)]
pub struct Kubelet {
    /// Delay from creation to binding.
    pub bind_ms: u64,
    /// Delay from binding to container start.
    pub start_ms: u64,
    /// Real work time / asked work time (a node slower than the twin
    /// thinks has > 1).
    pub slowdown: f64,
}

/// A running double.
#[derive(Clone)]
pub struct ApiDouble {
    /// Where it listens.
    pub addr: SocketAddr,
    scheme: &'static str,
    inner: Arc<Mutex<Inner>>,
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body)).into_response()
}

fn now_rfc3339(offset_ms: i64) -> String {
    // Whole seconds, as the API server writes them.
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let ms = t.as_millis() as i64 + offset_ms;
    rfc3339(ms)
}

/// RFC 3339 UTC time with whole seconds for ms since the epoch.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn field_name(q: &BTreeMap<String, String>) -> Option<String> {
    q.get("fieldSelector").and_then(|f| f.strip_prefix("metadata.name=")).map(str::to_string)
}

impl Inner {
    fn bump(&mut self, kind: &'static str, event: &str, obj: &mut Value) {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let ev = json!({"type": event, "object": obj});
        self.log.push((self.rv, kind, ev.clone()));
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let line = format!("{ev}\n");
        self.watches.retain(|w| {
            if w.kind != kind || w.name.as_ref().is_some_and(|n| n != &name) {
                return !w.tx.is_closed();
            }
            w.tx.send(Ok(Bytes::from(line.clone()))).is_ok()
        });
    }

    fn take_fault(&mut self, method: &Method, path: &str) -> Option<Fault> {
        let i = self.faults.iter().position(|f| f.method == method.as_str() && path.starts_with(&f.path_prefix))?;
        self.faults.remove(i)
    }
}

impl ApiDouble {
    /// Starts a double on 127.0.0.1 with the given nodes (Node objects).
    pub async fn start(nodes: Vec<Value>) -> ApiDouble {
        let (d, app, listener) = ApiDouble::bind(nodes, "http").await;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        d
    }

    /// Starts a double speaking HTTPS with a self-signed certificate for
    /// `server_name` alone (as a k3s server's certificate names
    /// `kubernetes`, not the address it is reached at). Returns the
    /// certificate in PEM, the CA a kubeconfig must trust.
    pub async fn start_tls(nodes: Vec<Value>, server_name: &str) -> (ApiDouble, String) {
        let cert = rcgen::generate_simple_self_signed(vec![server_name.to_string()]).expect("certificate");
        let pem = cert.cert.pem();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (d, app, listener) = ApiDouble::bind(nodes, "https").await;
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    // A failed handshake (a client that does not trust us) just ends.
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        (d, pem)
    }

    async fn bind(nodes: Vec<Value>, scheme: &'static str) -> (ApiDouble, Router, tokio::net::TcpListener) {
        let inner = Arc::new(Mutex::new(Inner::default()));
        {
            let mut i = inner.lock().unwrap();
            for mut n in nodes {
                let name = n["metadata"]["name"].as_str().expect("node name").to_string();
                i.bump("node", "ADDED", &mut n);
                i.nodes.insert(name, n);
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let d = ApiDouble { addr, scheme, inner };
        let app = Router::new()
            .route("/api/v1/namespaces/{ns}/pods", get(list_pods).post(create_pod))
            .route("/api/v1/namespaces/{ns}/pods/{name}", get(get_pod).delete(delete_pod))
            .route("/api/v1/nodes", get(list_nodes))
            .route("/api/v1/nodes/{name}", get(get_node).patch(patch_node))
            .route("/apis/metrics.k8s.io/v1beta1/nodes/{name}", get(node_metrics))
            .layer(axum::middleware::from_fn_with_state(d.clone(), record))
            .with_state(d.clone());
        (d, app, listener)
    }

    /// The URL clients use.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Turns on the simulated scheduler + kubelet.
    pub fn with_kubelet(&self, k: Kubelet) -> &Self {
        self.inner.lock().unwrap().kubelet = Some(k);
        self
    }

    /// Queues a one-shot fault.
    pub fn fail_next(&self, f: Fault) {
        self.inner.lock().unwrap().faults.push_back(f);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Requests with this method whose path starts with `prefix`.
    pub fn requests_to(&self, method: &str, prefix: &str) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.method == method && r.path.starts_with(prefix)).collect()
    }

    /// A pod as stored.
    pub fn pod(&self, name: &str) -> Option<Value> {
        self.inner.lock().unwrap().pods.get(name).cloned()
    }

    /// Names of stored pods.
    pub fn pod_names(&self) -> Vec<String> {
        self.inner.lock().unwrap().pods.keys().cloned().collect()
    }

    /// A node as stored.
    pub fn node(&self, name: &str) -> Option<Value> {
        self.inner.lock().unwrap().nodes.get(name).cloned()
    }

    /// Sets a node's metrics (NodeMetrics object).
    pub fn set_metrics(&self, node: &str, cpu: &str, memory: &str) {
        let m = json!({"kind": "NodeMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {"name": node}, "timestamp": now_rfc3339(0), "window": "10s",
            "usage": {"cpu": cpu, "memory": memory}});
        self.inner.lock().unwrap().metrics.insert(node.to_string(), m);
    }

    /// Stores `pod` (creating or replacing it) and tells watchers, as the
    /// kubelet's status updates do.
    pub fn put_pod(&self, mut pod: Value) {
        let name = pod["metadata"]["name"].as_str().expect("pod name").to_string();
        let mut i = self.inner.lock().unwrap();
        let ev = if i.pods.contains_key(&name) { "MODIFIED" } else { "ADDED" };
        i.bump("pod", ev, &mut pod);
        i.pods.insert(name, pod);
    }

    /// Replaces a node and tells watchers.
    pub fn put_node(&self, mut node: Value) {
        let name = node["metadata"]["name"].as_str().expect("node name").to_string();
        let mut i = self.inner.lock().unwrap();
        i.bump("node", "MODIFIED", &mut node);
        i.nodes.insert(name, node);
    }

    fn kubelet_run(&self, name: String, k: Kubelet) {
        let d = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(k.bind_ms)).await;
            // Schedule: the hostname selector must name a schedulable,
            // untainted node; otherwise the pod stays Pending, unschedulable.
            let Some(mut pod) = d.pod(&name) else { return };
            let host = pod["spec"]["nodeSelector"]["kubernetes.io/hostname"].as_str().unwrap_or("").to_string();
            let node = d.node(&host);
            let blocked = node.as_ref().is_none_or(|n| {
                n["spec"]["unschedulable"].as_bool() == Some(true)
                    || n["spec"]["taints"].as_array().is_some_and(|ts| ts.iter().any(|t| t["effect"] == "NoSchedule"))
            });
            if blocked {
                pod["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                    "reason": "Unschedulable", "lastTransitionTime": now_rfc3339(0),
                    "message": "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."}]});
                d.put_pod(pod);
                return;
            }
            pod["spec"]["nodeName"] = json!(host);
            pod["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True",
                "lastTransitionTime": now_rfc3339(0)}], "hostIP": "172.18.0.3"});
            d.put_pod(pod.clone());
            tokio::time::sleep(Duration::from_millis(k.start_ms)).await;
            let cpu_ms: f64 =
                pod["spec"]["containers"][0]["args"][2].as_str().and_then(|s| s.parse().ok()).unwrap_or(0.0);
            let image = pod["spec"]["containers"][0]["image"].clone();
            let started = now_rfc3339(0);
            let started_ms =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis()
                    as i64;
            pod["status"]["phase"] = json!("Running");
            pod["status"]["startTime"] = json!(started);
            pod["status"]["containerStatuses"] = json!([{"name": "stage", "image": image, "imageID": "", "ready": true,
                "restartCount": 0, "started": true, "state": {"running": {"startedAt": started}}}]);
            d.put_pod(pod.clone());
            let wall = cpu_ms * k.slowdown;
            tokio::time::sleep(Duration::from_secs_f64(wall / 1000.0)).await;
            pod["status"]["phase"] = json!("Succeeded");
            pod["status"]["containerStatuses"][0]["ready"] = json!(false);
            pod["status"]["containerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 0, "reason": "Completed",
                "startedAt": rfc3339(started_ms), "finishedAt": rfc3339(started_ms + wall as i64),
                "message": format!("{{\"wall_ms\":{wall:.1},\"cpu_ms\":{cpu_ms}}}")}});
            d.put_pod(pod);
        });
    }
}

async fn record(State(d): State<ApiDouble>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let body_json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let fault = {
        let mut i = d.inner.lock().unwrap();
        i.requests.push(Recorded {
            method: method.to_string(),
            path: path.clone(),
            query: parts.uri.query().unwrap_or("").to_string(),
            body: body_json,
        });
        i.take_fault(&method, &path)
    };
    if let Some(f) = fault {
        return status(f.status, f.reason, &format!("injected {} for {} {}", f.status, method, path));
    }
    next.run(axum::extract::Request::from_parts(parts, Body::from(bytes))).await
}

fn list_or_watch(d: &ApiDouble, kind: &'static str, q: &BTreeMap<String, String>, list_kind: &str) -> Response {
    let name = field_name(q);
    let mut i = d.inner.lock().unwrap();
    if q.get("watch").map(String::as_str) == Some("true") || q.get("watch").map(String::as_str) == Some("1") {
        let from: u64 = q.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
        let (tx, rx) = mpsc::unbounded_channel();
        for (rv, k, ev) in &i.log {
            if *rv > from && *k == kind && name.as_ref().is_none_or(|n| ev["object"]["metadata"]["name"] == *n) {
                let _ = tx.send(Ok(Bytes::from(format!("{ev}\n"))));
            }
        }
        i.watches.push(Watch { kind, name, tx });
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(stream))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let store = if kind == "pod" { &i.pods } else { &i.nodes };
    let items: Vec<Value> =
        store.values().filter(|o| name.as_ref().is_none_or(|n| o["metadata"]["name"] == *n)).cloned().collect();
    axum::Json(json!({"kind": list_kind, "apiVersion": "v1", "metadata": {"resourceVersion": i.rv.to_string()}, "items": items}))
        .into_response()
}

async fn list_pods(
    State(d): State<ApiDouble>,
    Path(_ns): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    list_or_watch(&d, "pod", &q, "PodList")
}

async fn list_nodes(State(d): State<ApiDouble>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    list_or_watch(&d, "node", &q, "NodeList")
}

async fn create_pod(State(d): State<ApiDouble>, Path(ns): Path<String>, body: Bytes) -> Response {
    let Ok(mut pod) = serde_json::from_slice::<Value>(&body) else {
        return status(400, "BadRequest", "body is not a Pod");
    };
    let Some(name) = pod["metadata"]["name"].as_str().map(str::to_string) else {
        return status(422, "Invalid", "Pod \"\" is invalid: metadata.name: Required value");
    };
    let kubelet = {
        let mut i = d.inner.lock().unwrap();
        if i.pods.contains_key(&name) {
            return status(409, "AlreadyExists", &format!("pods \"{name}\" already exists"));
        }
        pod["metadata"]["namespace"] = json!(ns);
        pod["metadata"]["uid"] = json!(format!("uid-{}", i.rv + 1));
        pod["metadata"]["creationTimestamp"] = json!(now_rfc3339(0));
        pod["status"] = json!({"phase": "Pending", "qosClass": "Guaranteed"});
        i.bump("pod", "ADDED", &mut pod);
        i.pods.insert(name.clone(), pod.clone());
        i.kubelet
    };
    if let Some(k) = kubelet {
        d.kubelet_run(name, k);
    }
    (StatusCode::CREATED, axum::Json(pod)).into_response()
}

async fn get_pod(State(d): State<ApiDouble>, Path((_ns, name)): Path<(String, String)>) -> Response {
    match d.pod(&name) {
        Some(p) => axum::Json(p).into_response(),
        None => status(404, "NotFound", &format!("pods \"{name}\" not found")),
    }
}

async fn delete_pod(State(d): State<ApiDouble>, Path((_ns, name)): Path<(String, String)>) -> Response {
    let mut i = d.inner.lock().unwrap();
    match i.pods.remove(&name) {
        Some(mut p) => {
            i.bump("pod", "DELETED", &mut p);
            axum::Json(p).into_response()
        }
        None => status(404, "NotFound", &format!("pods \"{name}\" not found")),
    }
}

async fn get_node(State(d): State<ApiDouble>, Path(name): Path<String>) -> Response {
    match d.node(&name) {
        Some(n) => axum::Json(n).into_response(),
        None => status(404, "NotFound", &format!("nodes \"{name}\" not found")),
    }
}

async fn patch_node(State(d): State<ApiDouble>, Path(name): Path<String>, body: Bytes) -> Response {
    let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
        return status(400, "BadRequest", "patch is not JSON");
    };
    let mut i = d.inner.lock().unwrap();
    let Some(mut node) = i.nodes.get(&name).cloned() else {
        return status(404, "NotFound", &format!("nodes \"{name}\" not found"));
    };
    if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
        && node["metadata"]["resourceVersion"].as_str() != Some(rv)
    {
        return status(
            409,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on nodes \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        );
    }
    let mut p = patch.clone();
    if let Some(m) = p.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    merge(&mut node, &p);
    i.bump("node", "MODIFIED", &mut node);
    i.nodes.insert(name, node.clone());
    axum::Json(node).into_response()
}

async fn node_metrics(State(d): State<ApiDouble>, Path(name): Path<String>) -> Response {
    match d.inner.lock().unwrap().metrics.get(&name) {
        Some(m) => axum::Json(m.clone()).into_response(),
        None => status(404, "NotFound", "the server could not find the requested resource"),
    }
}

/// A Node object as k3s serves it, for cluster `cluster`.
pub fn k3s_node(name: &str, cluster: &str, arch: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name, "uid": format!("uid-{name}"),
            "creationTimestamp": "2026-11-20T09:12:44Z",
            "labels": {
                "beta.kubernetes.io/arch": arch, "beta.kubernetes.io/instance-type": "k3s",
                "beta.kubernetes.io/os": "linux", "dt.cluster.name": cluster, "dt.cluster.type": "edge",
                "kubernetes.io/arch": arch, "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "node.kubernetes.io/instance-type": "k3s"
            },
            "annotations": {"k3s.io/node-args": "[\"agent\"]", "node.alpha.kubernetes.io/ttl": "0"}
        },
        "spec": {"podCIDR": "10.42.1.0/24", "podCIDRs": ["10.42.1.0/24"], "providerID": format!("k3s://{name}")},
        "status": {
            "addresses": [{"address": "172.18.0.3", "type": "InternalIP"}, {"address": name, "type": "Hostname"}],
            "allocatable": {"cpu": "2", "ephemeral-storage": "95500736271", "hugepages-2Mi": "0", "memory": "24529284Ki", "pods": "110"},
            "capacity": {"cpu": "2", "ephemeral-storage": "98169772Ki", "hugepages-2Mi": "0", "memory": "24529284Ki", "pods": "110"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available", "lastHeartbeatTime": "2026-11-23T10:00:00Z", "lastTransitionTime": "2026-11-20T09:12:44Z"},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure", "lastHeartbeatTime": "2026-11-23T10:00:00Z", "lastTransitionTime": "2026-11-20T09:12:44Z"},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available", "lastHeartbeatTime": "2026-11-23T10:00:00Z", "lastTransitionTime": "2026-11-20T09:12:44Z"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": "2026-11-23T10:00:00Z", "lastTransitionTime": "2026-11-20T09:12:54Z"}
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"architecture": arch, "bootID": "b3c1", "containerRuntimeVersion": "containerd://2.0.5-k3s1", "kernelVersion": "6.12.48", "kubeProxyVersion": "v1.33.5+k3s1", "kubeletVersion": "v1.33.5+k3s1", "machineID": "", "operatingSystem": "linux", "osImage": "K3s v1.33.5+k3s1", "systemUUID": "5e0c"}
        }
    })
}

/// A kubeconfig with context `<prefix><cluster>` for each (cluster, URL).
pub fn kubeconfig(prefix: &str, clusters: &[(&str, String)]) -> String {
    kubeconfig_tls(prefix, clusters, None, Some("kubernetes"))
}

/// A kubeconfig as k3d/deploy writes it: optionally the CA (PEM) every
/// server's certificate is checked against, and the server name to check
/// (`tls-server-name`).
pub fn kubeconfig_tls(
    prefix: &str,
    clusters: &[(&str, String)],
    ca_pem: Option<&str>,
    server_name: Option<&str>,
) -> String {
    use base64::Engine;
    let mut s = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
    for (c, url) in clusters {
        s.push_str(&format!("- name: {prefix}{c}\n  cluster:\n    server: {url}\n"));
        if let Some(n) = server_name {
            s.push_str(&format!("    tls-server-name: {n}\n"));
        }
        if let Some(ca) = ca_pem {
            let b64 = base64::engine::general_purpose::STANDARD.encode(ca);
            s.push_str(&format!("    certificate-authority-data: {b64}\n"));
        }
    }
    s.push_str("users:\n- name: twinmesh\n  user:\n    token: test-token\ncontexts:\n");
    for (c, _) in clusters {
        s.push_str(&format!("- name: {prefix}{c}\n  context:\n    cluster: {prefix}{c}\n    user: twinmesh\n"));
    }
    s.push_str(&format!("current-context: {prefix}{}\n", clusters[0].0));
    s
}
