//! The Kubernetes actuator against an API double on loopback (there is no
//! API server on the test machine): the exact requests it makes, how it
//! treats AlreadyExists, 403, 409 and 500, how recorded watch events of real
//! pod and node objects become observations and twin facts, and a whole
//! agent running a two-cluster job as pods.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node as KNode, Pod};
use serde_json::{Value, json};
use twinmesh_agent::kube::client::{Created, Kube, KubeError, KubeSettings, Outcome, Retry, THERMAL_TAINT};
use twinmesh_agent::kube::manifest::{StagePod, stage_pod};
use twinmesh_agent::kube::node::{Revert, revert_due, status_event};
use twinmesh_agent::kube::observe::{NodeFacts, Phase, pod_progress};
use twinmesh_common::job::Compute;
use twinmesh_common::model::{Arch, Format, NodeStatus};
use twinmesh_common::scaling::Scaler;
use twinmesh_tests::kube_double::{ApiDouble, Fault, Kubelet, k3s_node, kubeconfig, kubeconfig_tls};
use twinmesh_tests::{AgentProc, repo_root, tempdir, wait_for};

const NS: &str = "twinmesh-jobs";

fn settings() -> KubeSettings {
    KubeSettings {
        kubeconfig: None,
        context_prefix: "k3d-".into(),
        in_cluster: false,
        namespace: NS.into(),
        image: "twinmesh:dev".into(),
        delete_finished: false,
        unschedulable_grace: Duration::from_secs(20),
    }
}

fn actuator(doubles: &[(&str, &ApiDouble)]) -> Kube {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let clients: BTreeMap<String, kube::Client> = doubles
        .iter()
        .map(|(c, d)| {
            let mut cfg = kube::Config::new(d.url().parse().expect("url"));
            cfg.default_retry = false;
            (c.to_string(), kube::Client::try_from(cfg).expect("client"))
        })
        .collect();
    let mut k = Kube::with_clients(clients, settings());
    k.retry = Retry { attempts: 3, backoff: Duration::from_millis(10) };
    k
}

fn compute() -> Compute {
    Compute { cpu: 4.0, mem_gb: 2.0, duration_ms: 2000.0, gpu_vram_gb: 0.0 }
}

fn encode_pod(c: &Compute) -> Pod {
    stage_pod(&StagePod {
        job: "video-3fa2b1c0",
        plan: "1c9e0d2f4a6b",
        stage: "encode",
        attempt: 1,
        node: "k3d-dc-core-agent-0",
        cluster: "dc-core",
        format: Format::Native,
        compute: c,
        cpu_ms: 2000,
        image: "twinmesh:dev",
        namespace: NS,
        scaler: Scaler::default(),
    })
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("tests/fixtures/kube").join(name)).expect("fixture")
}

#[tokio::test]
async fn create_sends_exactly_the_planned_pod_and_already_exists_is_success() {
    let d = ApiDouble::start(vec![k3s_node("k3d-dc-core-agent-0", "dc-core", "amd64")]).await;
    let k = actuator(&[("dc-core", &d)]);
    let c = compute();
    let pod = encode_pod(&c);
    assert_eq!(k.ensure_pod("dc-core", &pod).await.expect("create"), Created::New);
    // The same stage again (a retried or duplicated plan): no second pod.
    assert_eq!(k.ensure_pod("dc-core", &pod).await.expect("again"), Created::Existed);
    let posts = d.requests_to("POST", "/api/v1/namespaces/twinmesh-jobs/pods");
    assert_eq!(posts.len(), 2);
    assert_eq!(d.pod_names(), vec!["tm-video-3fa2b1c0-encode".to_string()]);
    let b = &posts[0].body;
    assert_eq!(b["metadata"]["name"], "tm-video-3fa2b1c0-encode");
    assert_eq!(b["metadata"]["namespace"], NS);
    assert_eq!(b["metadata"]["labels"]["twinmesh.io/job"], "video-3fa2b1c0");
    assert_eq!(b["metadata"]["labels"]["twinmesh.io/plan"], "1c9e0d2f4a6b");
    assert_eq!(b["metadata"]["labels"]["twinmesh.io/stage"], "encode");
    assert_eq!(b["metadata"]["labels"]["dt.cluster.name"], "dc-core");
    assert_eq!(b["spec"]["nodeSelector"]["kubernetes.io/hostname"], "k3d-dc-core-agent-0");
    assert_eq!(b["spec"]["restartPolicy"], "Never");
    let ctr = &b["spec"]["containers"][0];
    // 4 cores, 2 GB at 1:100 → 40 millicores, 21 MiB, requests = limits.
    assert_eq!(ctr["resources"]["requests"], json!({"cpu": "40m", "memory": "21Mi"}));
    assert_eq!(ctr["resources"]["limits"], json!({"cpu": "40m", "memory": "21Mi"}));
    assert_eq!(ctr["args"], json!(["work", "--cpu-ms", "2000"]));
    assert_eq!(ctr["image"], "twinmesh:dev");
}

#[tokio::test]
async fn forbidden_is_a_clear_error_and_not_retried() {
    let d = ApiDouble::start(vec![]).await;
    let k = actuator(&[("dc-core", &d)]);
    d.fail_next(Fault { method: "POST", path_prefix: "/api/v1/namespaces".into(), status: 403, reason: "Forbidden" });
    let c = compute();
    let e = k.ensure_pod("dc-core", &encode_pod(&c)).await.expect_err("403");
    assert!(matches!(e, KubeError::Forbidden { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("create pods in twinmesh-jobs") && msg.contains("dc-core") && msg.contains("rbac.yaml"),
        "{msg}"
    );
    assert_eq!(d.requests_to("POST", "/api/v1/namespaces").len(), 1, "a 403 is not retried");
    assert!(d.pod_names().is_empty());
    // A 409 that is not AlreadyExists (a conflicting write) is an error,
    // not a success, and not retried.
    d.fail_next(Fault { method: "POST", path_prefix: "/api/v1/".into(), status: 409, reason: "Conflict" });
    let e = k.ensure_pod("dc-core", &encode_pod(&c)).await.expect_err("409 Conflict");
    assert!(matches!(e, KubeError::Api { code: 409, .. }), "{e:?}");
    assert_eq!(d.requests_to("POST", "/api/v1/").len(), 2);
    // A cluster without a client names itself.
    let e = k.ensure_pod("gamer-pc", &encode_pod(&c)).await.expect_err("no client");
    assert!(e.to_string().contains("cluster 'gamer-pc'"), "{e}");
}

#[tokio::test]
async fn server_errors_are_retried_then_surfaced() {
    let d = ApiDouble::start(vec![]).await;
    let k = actuator(&[("dc-core", &d)]);
    let c = compute();
    for _ in 0..2 {
        d.fail_next(Fault { method: "POST", path_prefix: "/api/v1/".into(), status: 500, reason: "InternalError" });
    }
    assert_eq!(k.ensure_pod("dc-core", &encode_pod(&c)).await.expect("third try"), Created::New);
    assert_eq!(d.requests_to("POST", "/api/v1/").len(), 3);
    // Persistently failing: three tries, then the error with its code.
    for _ in 0..3 {
        d.fail_next(Fault {
            method: "DELETE",
            path_prefix: "/api/v1/".into(),
            status: 503,
            reason: "ServiceUnavailable",
        });
    }
    let e = k.delete_pod("dc-core", "tm-video-3fa2b1c0-encode").await.expect_err("503");
    assert!(matches!(e, KubeError::Api { code: 503, .. }), "{e:?}");
    assert!(e.to_string().contains("HTTP 503"), "{e}");
    assert_eq!(d.requests_to("DELETE", "/api/v1/").len(), 3);
    assert_eq!(d.pod_names().len(), 1, "the pod is still there");
    // A pod already gone is not an error.
    k.delete_pod("dc-core", "tm-video-3fa2b1c0-encode").await.expect("delete");
    k.delete_pod("dc-core", "tm-video-3fa2b1c0-encode").await.expect("delete again");
}

#[tokio::test]
async fn cordon_and_taint_patch_the_node_and_a_conflict_reads_again() {
    let d = ApiDouble::start(vec![k3s_node("k3d-gamer-pc-agent-0", "gamer-pc", "amd64")]).await;
    let k = actuator(&[("gamer-pc", &d)]);
    k.cordon("gamer-pc", "k3d-gamer-pc-agent-0", true, Some(1_900_000_000_000)).await.expect("cordon");
    let patch = &d.requests_to("PATCH", "/api/v1/nodes/k3d-gamer-pc-agent-0")[0];
    assert_eq!(patch.body["spec"]["unschedulable"], true);
    assert_eq!(patch.body["metadata"]["annotations"]["twinmesh.io/injected"], "cordon");
    assert_eq!(patch.body["metadata"]["annotations"]["twinmesh.io/revert-at"], "1900000000000");
    let n = d.node("k3d-gamer-pc-agent-0").expect("node");
    assert_eq!(n["spec"]["unschedulable"], true);
    k.cordon("gamer-pc", "k3d-gamer-pc-agent-0", false, None).await.expect("uncordon");
    let n = d.node("k3d-gamer-pc-agent-0").expect("node");
    assert!(n["spec"].get("unschedulable").is_none(), "{n}");
    assert!(n["metadata"]["annotations"].get("twinmesh.io/injected").is_none());

    // Taint: someone else changes the node between our read and write.
    d.fail_next(Fault { method: "PATCH", path_prefix: "/api/v1/nodes/".into(), status: 409, reason: "Conflict" });
    k.taint("gamer-pc", "k3d-gamer-pc-agent-0", THERMAL_TAINT, true, Some(5)).await.expect("taint");
    assert_eq!(d.requests_to("GET", "/api/v1/nodes/k3d-gamer-pc-agent-0").len(), 2, "read again after the 409");
    let n = d.node("k3d-gamer-pc-agent-0").expect("node");
    assert_eq!(n["spec"]["taints"], json!([{"key": THERMAL_TAINT, "value": "true", "effect": "NoSchedule"}]));
    // The patch carried the resourceVersion it read (optimistic concurrency).
    let last = d.requests_to("PATCH", "/api/v1/nodes/").pop().expect("patch");
    assert!(last.body["metadata"]["resourceVersion"].is_string(), "{}", last.body);
    // Revert: the taint goes, the annotations go.
    let node: KNode = serde_json::from_value(n).expect("Node");
    assert_eq!(revert_due(&node, 10), Some(Revert::Taint));
    assert_eq!(NodeFacts::from_node(&node, &Scaler::default()).expect("facts").status(), NodeStatus::Cordoned);
    k.taint("gamer-pc", "k3d-gamer-pc-agent-0", THERMAL_TAINT, false, None).await.expect("untaint");
    let n = d.node("k3d-gamer-pc-agent-0").expect("node");
    assert_eq!(n["spec"]["taints"], json!([]));
    let node: KNode = serde_json::from_value(n).expect("Node");
    assert_eq!(revert_due(&node, u64::MAX), None);

    // RBAC refusal on patch is named.
    d.fail_next(Fault { method: "PATCH", path_prefix: "/api/v1/nodes/".into(), status: 403, reason: "Forbidden" });
    let e = k.cordon("gamer-pc", "k3d-gamer-pc-agent-0", true, None).await.expect_err("403");
    assert!(e.to_string().contains("patch nodes"), "{e}");
}

#[tokio::test]
async fn recorded_watch_events_become_stage_progress() {
    let d = ApiDouble::start(vec![]).await;
    let k = actuator(&[("dc-core", &d)]);
    let events: Vec<Value> =
        fixture("pod-lifecycle.jsonl").lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let feeder = d.clone();
    tokio::spawn(async move {
        for e in events {
            tokio::time::sleep(Duration::from_millis(30)).await;
            feeder.put_pod(e["object"].clone());
        }
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let out = k
        .follow_pod("dc-core", "tm-video-3fa2b1c0-encode", Duration::from_secs(5), Duration::from_secs(20), |p| {
            s2.lock().unwrap().push(p.phase.clone())
        })
        .await
        .expect("follow");
    let Outcome::Succeeded { node, started_ms, finished_ms, measured_ms, scheduled_ms } = out else {
        panic!("not succeeded: {out:?}");
    };
    assert_eq!(node.as_deref(), Some("k3d-dc-core-agent-0"));
    // 2026-11-23T10:15:03Z and :05Z.
    assert_eq!(started_ms, 1_795_428_903_000);
    assert_eq!(finished_ms - started_ms, 2000);
    assert_eq!(measured_ms, Some(2003.5));
    assert_eq!(scheduled_ms, Some(1_795_428_902_000));
    let phases: Vec<&'static str> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|p| match p {
            Phase::Pending { .. } => "pending",
            Phase::Scheduled { .. } => "scheduled",
            Phase::Running { .. } => "running",
            Phase::Succeeded { .. } => "succeeded",
            Phase::Failed { .. } => "failed",
        })
        .collect();
    assert_eq!(phases, ["pending", "scheduled", "running", "succeeded"]);
    // The watch asked for this pod alone.
    let watches: Vec<_> = d.requests_to("GET", "/api/v1/namespaces/twinmesh-jobs/pods");
    assert!(watches.iter().any(|r| r.query.contains("watch=true")), "{watches:?}");
    assert!(
        watches.iter().all(|r| r.query.contains("fieldSelector=metadata.name%3Dtm-video-3fa2b1c0-encode")),
        "{watches:?}"
    );
}

#[tokio::test]
async fn unschedulable_and_failed_pods_end_the_attempt() {
    let d = ApiDouble::start(vec![]).await;
    let k = actuator(&[("dc-core", &d)]);
    d.put_pod(serde_json::from_str(&fixture("pod-unschedulable.json")).expect("json"));
    let out = k
        .follow_pod("dc-core", "tm-video-3fa2b1c0-detect", Duration::from_millis(300), Duration::from_secs(10), |_| {})
        .await
        .expect("follow");
    match out {
        Outcome::Unschedulable(m) => assert!(m.contains("were unschedulable"), "{m}"),
        o => panic!("{o:?}"),
    }
    d.put_pod(serde_json::from_str(&fixture("pod-oomkilled.json")).expect("json"));
    let out = k
        .follow_pod("dc-core", "tm-video-3fa2b1c0-notify", Duration::from_secs(5), Duration::from_secs(10), |_| {})
        .await
        .expect("follow");
    assert_eq!(out, Outcome::Failed("OOMKilled (exit code 137)".into()));
    // A pod that never shows up times out.
    let out = k
        .follow_pod("dc-core", "tm-nobody-x", Duration::from_secs(5), Duration::from_millis(300), |_| {})
        .await
        .expect("follow");
    assert_eq!(out, Outcome::TimedOut);
    // Pods that are not twinmesh's are ignored.
    let foreign: Pod = serde_json::from_str(&fixture("pod-foreign.json")).expect("Pod");
    assert_eq!(pod_progress(&foreign), None);
}

#[test]
fn node_objects_become_twin_facts() {
    let n: KNode = serde_json::from_value(k3s_node("k3d-campus-lab-agent-1", "campus-lab", "arm64")).expect("Node");
    let f = NodeFacts::from_node(&n, &Scaler::default()).expect("facts");
    assert_eq!(f.cluster.as_deref(), Some("campus-lab"));
    assert_eq!(f.arch, Some(Arch::Arm64));
    // 2 real cores at 1:100 are 200 fabric cores; 24529284 KiB → 2,511.8 GB.
    assert_eq!(f.cpu, 200.0);
    assert!((f.mem_gb - 24_529_284.0 * 1024.0 / 1e9 * 100.0).abs() < 1e-6, "{}", f.mem_gb);
    assert_eq!(f.status(), NodeStatus::Ready);
    let mut rec = twinmesh_common::fabric::reference().nodes[0].clone();
    f.apply(&mut rec);
    assert_eq!(rec.allocatable.cpu, 200.0);
    assert_eq!(rec.hardware.arch, Arch::Arm64);
    assert_eq!(rec.labels["dt.cluster.type"], "edge");
    assert_eq!(rec.labels["kubernetes.io/hostname"], "k3d-campus-lab-agent-1");

    // NotReady, cordoned, and a missing field named.
    let mut v = k3s_node("n", "campus-lab", "riscv64");
    v["status"]["conditions"][3]["status"] = json!("Unknown");
    let f = NodeFacts::from_node(&serde_json::from_value(v.clone()).expect("Node"), &Scaler::default()).expect("facts");
    assert_eq!(f.status(), NodeStatus::NotReady);
    assert_eq!(f.arch, Some(Arch::Riscv64));
    assert_eq!(
        status_event(Some(NodeStatus::Ready), f.status()),
        Some(twinmesh_common::failures::FailureKind::NodeDown)
    );
    assert_eq!(
        status_event(Some(NodeStatus::NotReady), NodeStatus::Ready),
        Some(twinmesh_common::failures::FailureKind::Recovered)
    );
    assert_eq!(status_event(None, NodeStatus::Ready), None);
    v["status"]["conditions"][3]["status"] = json!("True");
    v["spec"]["unschedulable"] = json!(true);
    let f = NodeFacts::from_node(&serde_json::from_value(v.clone()).expect("Node"), &Scaler::default()).expect("facts");
    assert_eq!(f.status(), NodeStatus::Cordoned);
    v["status"]["allocatable"].as_object_mut().expect("obj").remove("memory");
    v["status"].as_object_mut().expect("obj").remove("capacity");
    let e = NodeFacts::from_node(&serde_json::from_value(v).expect("Node"), &Scaler::default()).expect_err("no memory");
    assert!(e.contains("status.allocatable.memory missing"), "{e}");
}

#[tokio::test]
async fn metrics_api_when_present() {
    let d = ApiDouble::start(vec![k3s_node("k3d-dc-core-agent-0", "dc-core", "amd64")]).await;
    let k = actuator(&[("dc-core", &d)]);
    assert_eq!(k.node_metrics("dc-core", "k3d-dc-core-agent-0").await, None, "no metrics server: None");
    d.set_metrics("k3d-dc-core-agent-0", "523186n", "1048576Ki");
    let (cpu, mem) = k.node_metrics("dc-core", "k3d-dc-core-agent-0").await.expect("metrics");
    assert!((cpu - 0.000_523_186).abs() < 1e-12, "{cpu}");
    assert_eq!(mem, 1024.0 * 1024.0 * 1024.0);
    let t = twinmesh_agent::kube::node::metrics_telemetry(Default::default(), (0.5, 1e9), (2.0, 4e9));
    assert_eq!((t.cpu_pct, t.mem_pct), (25.0, 25.0));
}

/// An agent process with `--actuator kube` on the two-cluster test fabric,
/// reaching the clusters through `doubles` (pool, double).
fn kube_agent(name: &str, dir: &Path, doubles: &[(&str, &ApiDouble)], extra: &[&str]) -> AgentProc {
    let urls: Vec<(&str, String)> = doubles.iter().map(|(c, d)| (*c, d.url())).collect();
    kube_agent_with(name, dir, &kubeconfig("k3d-", &urls), extra)
}

/// The same with a kubeconfig of the caller's.
fn kube_agent_with(name: &str, dir: &Path, kubeconfig: &str, extra: &[&str]) -> AgentProc {
    let kc = dir.join("kubeconfig");
    std::fs::write(&kc, kubeconfig).expect("kubeconfig");
    let fabric = repo_root().join("tests/fixtures/kube-fabric.yaml");
    let mut args = vec![
        "--fabric",
        fabric.to_str().expect("path"),
        "--actuator",
        "kube",
        "--kubeconfig",
        kc.to_str().expect("path"),
        "--kube-in-cluster",
        "false",
        "--time-scale",
        "0.05",
    ];
    args.extend_from_slice(extra);
    AgentProc::start(name, "alpha", &dir.join("a"), &args)
}

/// A job of two stages, one in each of two clusters, through a whole agent
/// process with `--actuator kube`: pods appear in the right double, in
/// order, and the job is verified; the agent's own Node feeds its record;
/// an injected failure cordons the node and reverts.
#[test]
fn agent_runs_a_job_as_pods_across_two_clusters() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let kubelet = Kubelet { bind_ms: 30, start_ms: 30, slowdown: 1.0 };
    let (a, b) = rt.block_on(async {
        let a =
            ApiDouble::start(vec![k3s_node("kc-a-01", "alpha", "amd64"), k3s_node("kc-a-02", "alpha", "amd64")]).await;
        let b = ApiDouble::start(vec![k3s_node("kc-b-01", "beta", "arm64")]).await;
        a.with_kubelet(kubelet);
        b.with_kubelet(kubelet);
        (a, b)
    });
    let dir = tempdir();
    let agent = kube_agent("kc-a-01", dir.path(), &[("alpha", &a), ("beta", &b)], &["--kube-keep-pods"]);
    // The agent's record carries its Node's allocatable (2 cores → 200).
    let cpu = wait_for(Duration::from_secs(20), || {
        let (_, t) = agent.get("/v1/twin");
        t["nodes"].as_array()?.iter().find(|r| r["node"]["name"] == "kc-a-01").and_then(|r| {
            let c = r["node"]["allocatable"]["cpu"].as_f64()?;
            (c == 200.0).then_some(c)
        })
    });
    assert_eq!(cpu, Some(200.0), "log:\n{}", agent.log());
    // Ready once its own Node has arrived.
    let ready = wait_for(Duration::from_secs(10), || (agent.get("/readyz").0 == 200).then_some(()));
    assert!(ready.is_some(), "not ready after its Node arrived");
    let job = r#"{"apiVersion":"twinmesh.io/v1","metadata":{"name":"split","origin":{"cluster":"alpha"}},"spec":{"stages":[
        {"id":"ingest","compute":{"cpu":1,"mem_gb":1,"duration_ms":4000},"constraints":{"arch":["amd64"],"formats":["native"]},"output_mb":5},
        {"id":"infer","compute":{"cpu":1,"mem_gb":1,"duration_ms":6000},"constraints":{"arch":["arm64"],"formats":["native"]},"predecessor":"ingest"}]}}"#;
    let (code, r) = agent.post("/v1/jobs?policy=greedy", job, None);
    assert_eq!(code, 202, "{r}");
    let id = r["id"].as_str().expect("id").to_string();
    let done = wait_for(Duration::from_secs(40), || {
        let (_, j) = agent.get(&format!("/v1/jobs/{id}"));
        matches!(j["state"].as_str(), Some("succeeded" | "failed")).then_some(j)
    })
    .unwrap_or_else(|| panic!("job did not finish; log:\n{}", agent.log()));
    assert_eq!(done["state"], "succeeded", "{done}\nlog:\n{}", agent.log());
    let ingest = format!("tm-{id}-ingest");
    let infer = format!("tm-{id}-infer");
    assert_eq!(a.pod_names(), vec![ingest.clone()], "stage 1 in alpha");
    assert_eq!(b.pod_names(), vec![infer.clone()], "stage 2 in beta");
    // Nothing is reserved ahead on Kubernetes: the committed prediction is
    // the plan's windows, chained from the first pod's start.
    let committed = &done["committed"];
    assert_eq!(committed["windows"].as_array().map(Vec::len), Some(2), "{done}");
    assert_eq!(committed["revision"], 0, "{committed}");
    let (w0, w1) = (&committed["windows"][0], &committed["windows"][1]);
    assert!(w1["start_ms"].as_f64().unwrap() >= w0["end_ms"].as_f64().unwrap(), "{committed}");
    assert_eq!(committed["p50_ms"].as_f64(), w1["end_ms"].as_f64(), "{committed}");
    // Stage order: infer was created only after ingest succeeded.
    let pa = a.pod(&ingest).expect("pod");
    let pb = b.pod(&infer).expect("pod");
    let finished = pa["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"].as_str().expect("t");
    let created = pb["metadata"]["creationTimestamp"].as_str().expect("t");
    assert!(created >= finished, "infer created {created} before ingest finished {finished}");
    // Work = model time × time scale (reference-speed nodes: 4000 ms → 200 ms).
    assert_eq!(pa["spec"]["containers"][0]["args"], json!(["work", "--cpu-ms", "200"]));
    assert_eq!(pa["metadata"]["labels"]["twinmesh.io/job"], id.as_str());
    let obs = done["observations"].as_array().expect("observations");
    assert_eq!(obs.len(), 2);
    // Observed compute time comes back in fabric ms: 200 wall ms / 0.05.
    let ingest_obs = obs.iter().find(|o| o["stage"] == "ingest").expect("ingest");
    assert!((ingest_obs["compute_ms"].as_f64().expect("ms") - 4000.0).abs() < 1.0, "{ingest_obs}");
    assert!(done["verification"]["accepted"].is_boolean(), "{done}");
    assert!(done["notes"].as_array().expect("notes").iter().any(|n| n.as_str().is_some_and(|s| s.contains(&infer))));

    // Failure injection: cordon now, uncordon after the duration.
    let (code, r) = agent.post("/v1/inject", r#"{"kind":"node_down","node":"kc-b-01","duration_ms":600}"#, None);
    assert_eq!(code, 202, "{r}");
    assert!(r["action"].as_str().expect("action").starts_with("cordoned in cluster beta"), "{r}");
    assert_eq!(b.node("kc-b-01").expect("node")["spec"]["unschedulable"], true);
    let reverted = wait_for(Duration::from_secs(10), || {
        b.node("kc-b-01").expect("node")["spec"].get("unschedulable").is_none().then_some(())
    });
    assert!(reverted.is_some(), "not uncordoned");
    let (code, r) = agent.post("/v1/inject", r#"{"kind":"node_up","node":"kc-b-01"}"#, None);
    assert_eq!(code, 400, "{r}");
    assert_eq!(r["field"], "kind");
    // Everything the running agent asked of either cluster is granted.
    let granted = granted();
    for r in a.requests().iter().chain(b.requests().iter()) {
        assert!(granted.contains(&permission(r)), "{} {} needs {:?}", r.method, r.path, permission(r));
    }
}

/// The RBAC permission a request needs: (API group, resource, verb).
fn permission(r: &twinmesh_tests::kube_double::Recorded) -> (String, String, String) {
    let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => (String::new(), rest.to_vec()),
        ["apis", g, _v, rest @ ..] => (g.to_string(), rest.to_vec()),
        _ => panic!("unexpected path {}", r.path),
    };
    let rest = if rest.first() == Some(&"namespaces") { rest[2..].to_vec() } else { rest };
    let named = rest.len() > 1;
    let verb = match (r.method.as_str(), named) {
        ("GET", true) => "get",
        ("GET", false) if r.query.contains("watch=true") => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("DELETE", _) => "delete",
        (m, _) => panic!("unexpected method {m}"),
    };
    (group, rest[0].to_string(), verb.to_string())
}

/// What deploy/base/rbac.yaml grants.
fn granted() -> std::collections::BTreeSet<(String, String, String)> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(repo_root().join("deploy/base/rbac.yaml")).expect("rbac.yaml");
    let mut out = std::collections::BTreeSet::new();
    for d in serde_yaml_ng::Deserializer::from_str(&text) {
        let v = Value::deserialize(d).expect("yaml");
        for rule in v["rules"].as_array().into_iter().flatten() {
            for g in rule["apiGroups"].as_array().expect("groups") {
                for res in rule["resources"].as_array().expect("resources") {
                    for verb in rule["verbs"].as_array().expect("verbs") {
                        out.insert((
                            g.as_str().expect("g").to_string(),
                            res.as_str().expect("r").to_string(),
                            verb.as_str().expect("v").to_string(),
                        ));
                    }
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn rbac_grants_exactly_what_the_actuator_calls() {
    use futures::StreamExt;
    let d = ApiDouble::start(vec![k3s_node("k3d-dc-core-agent-0", "dc-core", "amd64")]).await;
    d.with_kubelet(Kubelet { bind_ms: 10, start_ms: 10, slowdown: 1.0 });
    d.set_metrics("k3d-dc-core-agent-0", "100m", "1Gi");
    let k = actuator(&[("dc-core", &d)]);
    // Every call the actuator has.
    let c = Compute { duration_ms: 10.0, ..compute() };
    let mut pod = encode_pod(&c);
    pod.spec.as_mut().expect("spec").containers[0].args = Some(vec!["work".into(), "--cpu-ms".into(), "10".into()]);
    k.ensure_pod("dc-core", &pod).await.expect("create");
    let out = k
        .follow_pod("dc-core", "tm-video-3fa2b1c0-encode", Duration::from_secs(5), Duration::from_secs(10), |_| {})
        .await
        .expect("follow");
    assert!(matches!(out, Outcome::Succeeded { .. }), "{out:?}");
    k.delete_pod("dc-core", "tm-video-3fa2b1c0-encode").await.expect("delete");
    k.cordon("dc-core", "k3d-dc-core-agent-0", true, None).await.expect("cordon");
    k.taint("dc-core", "k3d-dc-core-agent-0", THERMAL_TAINT, true, None).await.expect("taint");
    assert!(k.node_metrics("dc-core", "k3d-dc-core-agent-0").await.is_some());
    let mut nodes = Box::pin(k.watch_node("dc-core", "k3d-dc-core-agent-0").expect("watch"));
    let n = tokio::time::timeout(Duration::from_secs(5), nodes.next()).await.expect("a node").expect("node");
    assert_eq!(n.metadata.name.as_deref(), Some("k3d-dc-core-agent-0"));
    // Reading on starts the watch proper (after the initial list).
    let _ = tokio::time::timeout(Duration::from_millis(300), nodes.next()).await;
    drop(nodes);
    let used: std::collections::BTreeSet<_> = d.requests().iter().map(permission).collect();
    let granted = granted();
    let missing: Vec<_> = used.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(missing.is_empty(), "the actuator calls what rbac.yaml does not grant: {missing:?}");
    assert!(unused.is_empty(), "rbac.yaml grants what the actuator never calls: {unused:?}");
    // Pods only in the jobs namespace.
    for r in d.requests().iter().filter(|r| r.path.contains("/pods")) {
        assert!(r.path.starts_with("/api/v1/namespaces/twinmesh-jobs/"), "{}", r.path);
    }
}

/// A node the twin thinks schedulable but Kubernetes refuses (cordoned
/// behind the twin's back): the pod stays Pending/Unschedulable, is deleted
/// after the grace period, and the stage reruns as attempt 2 on another
/// node. The Metrics API feeds the agent's telemetry.
#[test]
fn unschedulable_stage_moves_to_another_node_and_metrics_feed_telemetry() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let a = rt.block_on(async {
        let mut cordoned = k3s_node("kc-a-01", "alpha", "amd64");
        cordoned["spec"]["unschedulable"] = json!(true);
        let a = ApiDouble::start(vec![cordoned, k3s_node("kc-a-02", "alpha", "amd64")]).await;
        a.with_kubelet(Kubelet { bind_ms: 20, start_ms: 20, slowdown: 1.0 });
        a.set_metrics("kc-a-02", "1", "12264642Ki");
        a
    });
    let dir = tempdir();
    let agent = kube_agent(
        "kc-a-02",
        dir.path(),
        &[("alpha", &a)],
        &["--kube-unschedulable-grace", "1", "--telemetry-interval", "0.3"],
    );
    // Metrics API: 1 of 2 cores, half the memory.
    let cpu = wait_for(Duration::from_secs(20), || {
        let (_, t) = agent.get("/v1/twin");
        let r = t["nodes"].as_array()?.iter().find(|r| r["node"]["name"] == "kc-a-02")?.clone();
        let c = r["node"]["telemetry"]["cpu_pct"].as_f64()?;
        ((c - 50.0).abs() < 1e-6).then_some(r)
    });
    let rec = cpu.unwrap_or_else(|| panic!("telemetry not from the Metrics API; log:\n{}", agent.log()));
    assert!((rec["node"]["telemetry"]["mem_pct"].as_f64().expect("mem") - 50.0).abs() < 0.5, "{rec}");
    let job = r#"{"apiVersion":"twinmesh.io/v1","metadata":{"name":"stuck","origin":{"cluster":"alpha","node":"kc-a-01"}},"spec":{"stages":[
        {"id":"only","compute":{"cpu":1,"mem_gb":1,"duration_ms":2000},"constraints":{"arch":["amd64"],"formats":["native"]}}]}}"#;
    let (code, r) = agent.post("/v1/jobs?policy=greedy", job, None);
    assert_eq!(code, 202, "{r}");
    assert_eq!(r["job"]["plan"]["placements"][0]["node"], "kc-a-01", "planned on the node the twin thinks free");
    let id = r["id"].as_str().expect("id").to_string();
    let done = wait_for(Duration::from_secs(40), || {
        let (_, j) = agent.get(&format!("/v1/jobs/{id}"));
        matches!(j["state"].as_str(), Some("succeeded" | "failed")).then_some(j)
    })
    .unwrap_or_else(|| panic!("job did not finish; log:\n{}", agent.log()));
    assert_eq!(done["state"], "succeeded", "{done}\nlog:\n{}", agent.log());
    let obs = &done["observations"][0];
    assert_eq!(obs["node"], "kc-a-02");
    assert_eq!(obs["attempts"], 2);
    // The refused pod was deleted; the rerun has its own name.
    let deleted = a.requests_to("DELETE", &format!("/api/v1/namespaces/{NS}/pods/tm-{id}-only"));
    assert!(!deleted.is_empty(), "the unschedulable pod is deleted");
    assert!(a.requests_to("POST", "/api/v1/").iter().any(|r| r.body["metadata"]["name"] == format!("tm-{id}-only-r2")));
    let bound = a.requests_to("POST", "/api/v1/");
    assert_eq!(bound[1].body["spec"]["nodeSelector"]["kubernetes.io/hostname"], "kc-a-02");
}

/// An agent whose Node the API server does not (yet) have is alive but not
/// ready: the DaemonSet's readiness probe keeps it out until it knows itself.
#[test]
fn agent_is_not_ready_until_its_node_arrives() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let a = rt.block_on(ApiDouble::start(vec![k3s_node("kc-a-02", "alpha", "amd64")]));
    let dir = tempdir();
    let agent = kube_agent("kc-a-01", dir.path(), &[("alpha", &a)], &[]);
    assert_eq!(agent.get("/healthz").0, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(agent.get("/readyz").0, 503);
    // The Node registers (a kubelet joining late): the agent becomes ready.
    a.put_node(k3s_node("kc-a-01", "alpha", "amd64"));
    let ready = wait_for(Duration::from_secs(10), || (agent.get("/readyz").0 == 200).then_some(()));
    assert!(ready.is_some(), "log:\n{}", agent.log());
}

/// Over HTTPS, as k3d/deploy configures it: the API server's certificate
/// names only `kubernetes`, the kubeconfig reaches it by IP, trusts its CA
/// and says `tls-server-name: kubernetes`. Without the server name the
/// handshake is refused and the agent stays not ready, naming nothing it
/// should not trust.
#[test]
fn agent_reaches_an_https_api_server_by_ip_with_tls_server_name() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (a, ca) = rt.block_on(ApiDouble::start_tls(vec![k3s_node("kc-a-01", "alpha", "amd64")], "kubernetes"));
    assert!(a.url().starts_with("https://127.0.0.1:"));
    let start = |dir: &Path, server_name: Option<&str>| {
        let kc = kubeconfig_tls("k3d-", &[("alpha", a.url())], Some(&ca), server_name);
        kube_agent_with("kc-a-01", dir, &kc, &[])
    };
    let good = tempdir();
    let agent = start(good.path(), Some("kubernetes"));
    let ready = wait_for(Duration::from_secs(20), || (agent.get("/readyz").0 == 200).then_some(()));
    assert!(ready.is_some(), "not ready over TLS; log:\n{}", agent.log());
    assert!(!a.requests_to("GET", "/api/v1/nodes").is_empty());
    drop(agent);
    // The same CA, but checking the certificate against the IP: refused.
    let before = a.requests().len();
    let bad = tempdir();
    let agent = start(bad.path(), None);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(agent.get("/readyz").0, 503, "must not trust a certificate that does not name the address");
    assert_eq!(a.requests().len(), before, "no request got through the failed handshake");
}

/// Preemptive actions on Kubernetes: a running stage's node shows a
/// precursor of failure (thermal throttling); the forecast acts on the
/// stage. A restart creates the new pod on the other node first, then
/// deletes the old one, and the job finishes there; a hot replica is a
/// second pod on the other node (the next attempt's deterministic name),
/// and whichever pod loses the race is deleted. Either way the action is
/// noted and recorded on the job.
#[test]
fn a_precursor_moves_or_replicates_a_running_pod() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let a = rt.block_on(two_alpha_nodes());
    let dir = tempdir();
    let agent = kube_agent("kc-a-02", dir.path(), &[("alpha", &a)], &[]);
    // 60 s of work at time scale 0.05: the pod runs 3 s.
    let job = r#"{"apiVersion":"twinmesh.io/v1","metadata":{"name":"warned","origin":{"cluster":"alpha"}},"spec":{"stages":[
        {"id":"only","compute":{"cpu":2,"mem_gb":1,"duration_ms":60000},"constraints":{"arch":["amd64"],"formats":["native"]}}]}}"#;
    let (code, r) = agent.post("/v1/jobs?policy=greedy", job, None);
    assert_eq!(code, 202, "{r}");
    let id = r["id"].as_str().expect("id").to_string();
    let first = r["job"]["plan"]["placements"][0]["node"].as_str().expect("node").to_string();
    let other = if first == "kc-a-01" { "kc-a-02" } else { "kc-a-01" };
    let old = format!("tm-{id}-only");
    let running = wait_for(Duration::from_secs(20), || a.pod(&old).filter(|p| p["status"]["phase"] == "Running"));
    assert!(running.is_some(), "the pod never ran; log:\n{}", agent.log());
    let (code, ev) = agent.post(
        "/v1/observe",
        &format!(r#"{{"kind":"thermal_throttle","node":"{first}","duration_ms":60000}}"#),
        None,
    );
    assert_eq!(code, 202, "{ev}");
    let done = wait_for(Duration::from_secs(40), || {
        let (_, j) = agent.get(&format!("/v1/jobs/{id}"));
        matches!(j["state"].as_str(), Some("succeeded" | "failed")).then_some(j)
    })
    .unwrap_or_else(|| panic!("job did not finish; log:\n{}", agent.log()));
    assert_eq!(done["state"], "succeeded", "{done}");
    let log: String = agent
        .log()
        .lines()
        .filter(|l| l.contains("preempt") || l.contains("progress") || l.contains("moved"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(done["notes"].to_string().contains("preemptive"), "{}", done["notes"]);
    let action = done["actions"][0]["action"].as_str().unwrap_or_default().to_string();
    let reqs = a.requests();
    let created = reqs.iter().position(|r| {
        r.method == "POST" && r.body["metadata"]["name"].as_str().is_some_and(|n| n.starts_with(&format!("{old}-r")))
    });
    let created = created.unwrap_or_else(|| panic!("a second pod; {action}\n{log}"));
    assert_eq!(reqs[created].body["spec"]["nodeSelector"]["kubernetes.io/hostname"], other);
    let ran_on = done["observations"][0]["node"].as_str().unwrap_or_default().to_string();
    let loser = if ran_on == other {
        old.clone()
    } else {
        reqs[created].body["metadata"]["name"].as_str().unwrap().to_string()
    };
    let deleted = reqs.iter().position(|r| r.method == "DELETE" && r.path.ends_with(&format!("/pods/{loser}")));
    match action.as_str() {
        "restart" => {
            // Order on the API server: the new pod was created before the
            // old one was deleted, and the job finished on the new node.
            assert_eq!(ran_on, other, "{}\n{log}", done["notes"]);
            let deleted = deleted.expect("the old pod deleted");
            assert!(created < deleted, "created at #{created}, deleted at #{deleted}");
        }
        "replicate" => {
            // The node did not fail: the first pod to finish won (either),
            // and the other was deleted.
            assert!(ran_on == first || ran_on == other, "{ran_on}");
            assert!(
                deleted.is_some_and(|d| d > created),
                "the losing pod {loser} deleted after the replica was created\n{log}"
            );
        }
        other => panic!("unexpected action {other}: {done}"),
    }
}

/// The double of cluster alpha with its two nodes and a quick kubelet.
async fn two_alpha_nodes() -> ApiDouble {
    let a = ApiDouble::start(vec![k3s_node("kc-a-01", "alpha", "amd64"), k3s_node("kc-a-02", "alpha", "amd64")]).await;
    a.with_kubelet(Kubelet { bind_ms: 20, start_ms: 20, slowdown: 1.0 });
    a
}

/// A service scaled by an agent with `--actuator kube`: each replica is a
/// pod with a deterministic name on its node; scaling out adds pods,
/// stopping the service deletes them.
#[test]
fn a_service_s_replicas_are_pods_added_and_removed() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let a = rt.block_on(two_alpha_nodes());
    let dir = tempdir();
    let agent = kube_agent("kc-a-01", dir.path(), &[("alpha", &a)], &[]);
    // 5 rps at 100 ms each is half a replica (the minimum, 2, holds), then
    // 30 rps: three replicas' worth at full load, more at the 0.6 target.
    let svc = "apiVersion: twinmesh.io/v1
kind: Service
metadata: { name: web, origin: { cluster: alpha } }
spec:
  replica: { cpu: 2, mem_gb: 1 }
  replicas: { min: 2, max: 5 }
  service_ms: 100
  objective_ms: 400
  period_s: 5
  scaling: reactive
  load:
    - { from_s: 0, rps: 5, requests: 100 }
    - { from_s: 20, rps: 30, requests: 6000 }
";
    let (code, r) = agent.post("/v1/services", svc, None);
    assert_eq!(code, 201, "{r}");
    let pods = |n: usize| (0..n).map(|i| format!("tm-svc-web-replica-{i}")).collect::<Vec<_>>();
    let two = wait_for(Duration::from_secs(20), || pods(2).iter().all(|p| a.pod(p).is_some()).then_some(()));
    assert!(two.is_some(), "no replica pods: {:?}; log:\n{}", a.pod_names(), agent.log());
    let p0 = a.pod("tm-svc-web-replica-0").unwrap();
    // The replica's size, scaled as a stage of the same size would be.
    let (cpu, _) =
        Scaler::default().to_pod(&Compute { cpu: 2.0, mem_gb: 1.0, duration_ms: 1.0, gpu_vram_gb: 0.0 }).quantities();
    assert_eq!(p0["spec"]["containers"][0]["resources"]["requests"]["cpu"], cpu.as_str(), "{p0}");
    assert!(p0["spec"]["nodeSelector"]["kubernetes.io/hostname"].as_str().unwrap().starts_with("kc-a-"));
    let grown = wait_for(Duration::from_secs(40), || pods(4).iter().all(|p| a.pod(p).is_some()).then_some(()));
    assert!(grown.is_some(), "never scaled out: {:?}; {}", a.pod_names(), agent.get("/v1/services/web").1);
    assert!(a.pod("tm-svc-web-replica-5").is_none(), "past the maximum: {:?}", a.pod_names());
    let (code, _) = agent.delete("/v1/services/web");
    assert_eq!(code, 200);
    let gone =
        wait_for(Duration::from_secs(20), || a.pod_names().iter().all(|p| !p.starts_with("tm-svc-web-")).then_some(()));
    assert!(gone.is_some(), "replica pods left after the stop: {:?}", a.pod_names());
}
