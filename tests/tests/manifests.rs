//! Every manifest in deploy/ and k3d/ parsed into its type, with the checks
//! that matter: the kustomize output of each pool's overlay (rendered by
//! `kubectl kustomize` where kubectl is installed) as k8s-openapi objects
//! that lose no field, containers with resources and probes, a DaemonSet
//! that tolerates every taint and speaks the agent's real flags, labels and
//! names that agree across the fabric, the overlays and the k3d clusters.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::Value;
use twinmesh_agent::kube::manifest::{CLUSTER_LABEL, CLUSTER_TYPE_LABEL};
use twinmesh_common::fabric::Fabric;
use twinmesh_tests::{repo_root, run_twinmesh, which};

fn pools() -> Vec<String> {
    let lib = std::fs::read_to_string(repo_root().join("k3d/lib.sh")).expect("lib.sh");
    let line = lib.lines().find(|l| l.starts_with("POOLS=(")).expect("POOLS line");
    line.trim_start_matches("POOLS=(").trim_end_matches(')').split_whitespace().map(str::to_string).collect()
}

fn fabric() -> Fabric {
    Fabric::from_yaml(&std::fs::read_to_string(repo_root().join("deploy/base/fabric.yaml")).expect("fabric"))
        .expect("deploy/base/fabric.yaml is a valid fabric")
}

/// YAML documents as JSON values.
fn documents(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Fails when `typed` (the object after a round trip through its
/// k8s-openapi type) lost a field of `raw`: a misspelt or misplaced key.
fn assert_no_field_lost(raw: &Value, typed: &Value, path: &str) {
    match (raw, typed) {
        (Value::Object(r), Value::Object(t)) => {
            for (k, v) in r {
                let p = format!("{path}.{k}");
                let tv = t.get(k).unwrap_or_else(|| panic!("{p}: not a field of the type (misspelt or misplaced?)"));
                assert_no_field_lost(v, tv, &p);
            }
        }
        (Value::Array(r), Value::Array(t)) => {
            assert_eq!(r.len(), t.len(), "{path}");
            for (i, (a, b)) in r.iter().zip(t).enumerate() {
                assert_no_field_lost(a, b, &format!("{path}[{i}]"));
            }
        }
        _ => {}
    }
}

fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> T {
    let name = format!("{}/{}", v["kind"].as_str().unwrap_or("?"), v["metadata"]["name"].as_str().unwrap_or("?"));
    let t: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_no_field_lost(v, &serde_json::to_value(&t).expect("serialize"), &name);
    t
}

/// The objects of one overlay, rendered by kustomize when it is installed.
fn render(overlay: &Path) -> Option<Vec<Value>> {
    which("kubectl")?;
    let out = Command::new("kubectl").arg("kustomize").arg(overlay).output().expect("kubectl");
    assert!(out.status.success(), "kustomize {}: {}", overlay.display(), String::from_utf8_lossy(&out.stderr));
    Some(documents(&String::from_utf8(out.stdout).expect("utf8")))
}

/// The base's files as they are (without kustomize's generators).
fn base_files() -> Vec<Value> {
    let dir = repo_root().join("deploy/base");
    let mut out = Vec::new();
    for f in ["namespace.yaml", "serviceaccount.yaml", "rbac.yaml", "daemonset.yaml", "service.yaml"] {
        out.extend(documents(&std::fs::read_to_string(dir.join(f)).expect("file")));
    }
    out
}

#[derive(Default)]
struct Objects {
    namespaces: Vec<Namespace>,
    accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_bindings: Vec<ClusterRoleBinding>,
    roles: Vec<Role>,
    bindings: Vec<RoleBinding>,
    daemonsets: Vec<DaemonSet>,
    services: Vec<Service>,
    configmaps: Vec<ConfigMap>,
}

fn classify(docs: &[Value]) -> Objects {
    let mut o = Objects::default();
    for d in docs {
        match d["kind"].as_str().expect("kind") {
            "Namespace" => o.namespaces.push(typed(d)),
            "ServiceAccount" => o.accounts.push(typed(d)),
            "ClusterRole" => o.cluster_roles.push(typed(d)),
            "ClusterRoleBinding" => o.cluster_bindings.push(typed(d)),
            "Role" => o.roles.push(typed(d)),
            "RoleBinding" => o.bindings.push(typed(d)),
            "DaemonSet" => o.daemonsets.push(typed(d)),
            "Service" => o.services.push(typed(d)),
            "ConfigMap" => o.configmaps.push(typed(d)),
            k => panic!("unexpected kind {k}"),
        }
    }
    o
}

fn env_of(c: &Container) -> BTreeMap<String, Value> {
    c.env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let v = match (e.value, e.value_from) {
                (Some(v), _) => Value::String(v),
                (None, Some(f)) => serde_json::to_value(f).expect("json"),
                _ => Value::Null,
            };
            (e.name, v)
        })
        .collect()
}

fn check_containers(ds: &DaemonSet) {
    let spec = ds.spec.as_ref().expect("spec").template.spec.as_ref().expect("pod spec");
    let all: Vec<&Container> = spec.init_containers.iter().flatten().chain(spec.containers.iter()).collect();
    for c in &all {
        let r = c.resources.as_ref().unwrap_or_else(|| panic!("container {} has no resources", c.name));
        for part in [&r.requests, &r.limits] {
            let q = part.as_ref().unwrap_or_else(|| panic!("container {}: requests and limits", c.name));
            assert!(q.contains_key("cpu") && q.contains_key("memory"), "container {}: cpu and memory", c.name);
        }
    }
    for c in &spec.containers {
        let api_port: i32 = env_of(c)["TWINMESH_API"]
            .as_str()
            .expect("TWINMESH_API")
            .rsplit(':')
            .next()
            .expect("port")
            .parse()
            .expect("port");
        for (probe, path) in [(&c.liveness_probe, "/healthz"), (&c.readiness_probe, "/readyz")] {
            let g =
                probe.as_ref().and_then(|p| p.http_get.as_ref()).unwrap_or_else(|| panic!("{}: {path} probe", c.name));
            assert_eq!(g.path.as_deref(), Some(path));
            assert_eq!(serde_json::to_value(&g.port).expect("port"), api_port, "probe on the API port");
        }
    }
}

#[test]
fn every_overlay_renders_to_valid_objects_that_agree() {
    let fab = fabric();
    let pools = pools();
    let cluster_names: Vec<String> = fab.clusters.iter().map(|c| c.name.clone()).collect();
    assert_eq!(pools, cluster_names, "k3d/lib.sh POOLS = the clusters of deploy/base/fabric.yaml, in order");
    let overlays: BTreeSet<String> = std::fs::read_dir(repo_root().join("deploy/overlays"))
        .expect("overlays")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(overlays, pools.iter().cloned().collect(), "one overlay per pool");
    // The agent's real flags: every TWINMESH_* the manifests set must be one.
    let help = run_twinmesh(&["agent", "--help"], None, std::time::Duration::from_secs(30));
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let mut rendered_any = false;
    for pool in &pools {
        let docs = match render(&repo_root().join("deploy/overlays").join(pool)) {
            Some(d) => {
                rendered_any = true;
                d
            }
            None => base_files(),
        };
        let o = classify(&docs);
        let names: BTreeSet<_> = o.namespaces.iter().filter_map(|n| n.metadata.name.clone()).collect();
        assert_eq!(names, ["twinmesh", "twinmesh-jobs"].map(String::from).into_iter().collect());
        assert_eq!(o.daemonsets.len(), 1);
        let ds = &o.daemonsets[0];
        check_containers(ds);
        for volume in ["secrets", "fabric"] {
            agent_reads_volume(ds, volume).unwrap_or_else(|e| panic!("{pool}: the agent cannot read {volume}: {e}"));
        }
        agent_owns_host_path(ds, "data").unwrap_or_else(|e| panic!("{pool}: {e}"));
        let spec = ds.spec.as_ref().expect("spec");
        let pod = spec.template.spec.as_ref().expect("pod spec");
        // Tolerates every taint: a bare `operator: Exists`.
        assert!(
            pod.tolerations
                .iter()
                .flatten()
                .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none() && t.effect.is_none()),
            "{pool}: DaemonSet must tolerate all taints"
        );
        assert_eq!(pod.host_network, Some(true));
        assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
        // Service account and bindings agree.
        let sa = pod.service_account_name.clone().expect("serviceAccountName");
        assert!(o.accounts.iter().any(|a| a.metadata.name.as_deref() == Some(&sa)));
        for subj in o
            .bindings
            .iter()
            .flat_map(|b| b.subjects.iter().flatten())
            .chain(o.cluster_bindings.iter().flat_map(|b| b.subjects.iter().flatten()))
        {
            assert_eq!((subj.name.as_str(), subj.namespace.as_deref()), (sa.as_str(), Some("twinmesh")));
        }
        let role = &o.roles[0];
        assert_eq!(role.metadata.namespace.as_deref(), Some("twinmesh-jobs"), "pods only in the jobs namespace");
        // Selector, template labels and the headless Service agree.
        let sel = spec.selector.match_labels.clone().expect("matchLabels");
        let tl = spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).expect("template labels");
        assert!(sel.iter().all(|(k, v)| tl.get(k) == Some(v)), "selector ⊆ template labels");
        let svc = &o.services[0];
        let ss = svc.spec.as_ref().expect("service spec");
        assert_eq!(ss.cluster_ip.as_deref(), Some("None"), "headless");
        assert_eq!(ss.selector.as_ref(), Some(&sel));
        // The agent container: env are real flags, values agree.
        let c = pod.containers.iter().find(|c| c.name == "agent").expect("agent container");
        let env = env_of(c);
        for k in env.keys() {
            assert!(help.contains(&format!("env: {k}")), "{pool}: {k} is not a flag of `twinmesh agent`");
        }
        assert_eq!(env["TWINMESH_NODE"]["fieldRef"]["fieldPath"], "spec.nodeName");
        assert_eq!(env["TWINMESH_ACTUATOR"], "kube");
        let listen_port =
            env["TWINMESH_LISTEN"].as_str().expect("listen").rsplit('/').next().expect("port").to_string();
        assert!(ss.ports.iter().flatten().any(|p| p.port.to_string() == listen_port), "service exposes the mesh port");
        let mounts: BTreeMap<String, String> =
            c.volume_mounts.iter().flatten().map(|m| (m.name.clone(), m.mount_path.clone())).collect();
        for (var, vol) in [
            ("TWINMESH_FABRIC", "fabric"),
            ("TWINMESH_MESH_KEY_FILE", "secrets"),
            ("TWINMESH_API_TOKEN_FILE", "secrets"),
            ("TWINMESH_KUBECONFIG", "secrets"),
            ("TWINMESH_DATA_DIR", "data"),
        ] {
            let path = env[var].as_str().expect(var);
            assert!(path.starts_with(&mounts[vol]), "{pool}: {var}={path} is outside volume {vol}");
        }
        let secret_name = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "secrets")
            .and_then(|v| v.secret.as_ref())
            .and_then(|s| s.secret_name.clone())
            .expect("secret volume");
        assert_eq!(secret_name, secrets_name());
        if !o.configmaps.is_empty() {
            // Rendered: the pool, its label, and the fabric it carries.
            assert_eq!(env["TWINMESH_CLUSTER"], pool.as_str(), "overlay sets the pool");
            assert_eq!(
                ds.metadata.labels.as_ref().and_then(|l| l.get(CLUSTER_LABEL)).map(String::as_str),
                Some(pool.as_str())
            );
            let cm_name = pod
                .volumes
                .iter()
                .flatten()
                .find(|v| v.name == "fabric")
                .and_then(|v| v.config_map.as_ref())
                .map(|c| c.name.clone())
                .expect("fabric volume");
            let cm = o.configmaps.iter().find(|c| c.metadata.name.as_deref() == Some(&cm_name)).expect("configmap");
            let key = env["TWINMESH_FABRIC"].as_str().expect("path").rsplit('/').next().expect("file").to_string();
            let text = cm.data.as_ref().and_then(|d| d.get(&key)).expect("fabric key");
            let f = Fabric::from_yaml(text).expect("fabric in the ConfigMap");
            assert!(f.latency.index_of(pool).is_some());
            let phone = pool.starts_with("phone-pan");
            let limit = &c.resources.as_ref().expect("r").limits.as_ref().expect("l")["memory"].0;
            assert_eq!(limit, if phone { "64Mi" } else { "128Mi" }, "{pool}");
        }
    }
    if !rendered_any {
        eprintln!("kubectl not installed: checked deploy/base files without kustomize rendering");
    }
}

fn secrets_name() -> String {
    let k = documents(&std::fs::read_to_string(repo_root().join("deploy/secrets/kustomization.yaml")).expect("file"));
    k[0]["secretGenerator"][0]["name"].as_str().expect("name").to_string()
}

#[test]
fn secrets_kustomization_makes_the_secret_the_daemonset_mounts() {
    let k = documents(&std::fs::read_to_string(repo_root().join("deploy/secrets/kustomization.yaml")).expect("file"));
    let files: BTreeSet<String> = k[0]["secretGenerator"][0]["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f.as_str().expect("f").to_string())
        .collect();
    assert_eq!(files, ["api.token", "kubeconfig", "mesh.key"].map(String::from).into_iter().collect());
    // The DaemonSet reads exactly these files.
    let ds = documents(&std::fs::read_to_string(repo_root().join("deploy/base/daemonset.yaml")).expect("ds"));
    let text = serde_json::to_string(&ds).expect("json");
    for f in &files {
        assert!(text.contains(&format!("/etc/twinmesh/secrets/{f}")), "{f} not read by the DaemonSet");
    }
    // Rendered with stand-in files, it is one Secret with those keys.
    if which("kubectl").is_none() {
        eprintln!("kubectl not installed: secret rendering not checked");
        return;
    }
    let dir = twinmesh_tests::tempdir();
    std::fs::copy(repo_root().join("deploy/secrets/kustomization.yaml"), dir.path().join("kustomization.yaml"))
        .expect("copy");
    for f in &files {
        std::fs::write(dir.path().join(f), "x").expect("write");
    }
    let out = Command::new("kubectl").arg("kustomize").arg(dir.path()).output().expect("kubectl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs = documents(&String::from_utf8(out.stdout).expect("utf8"));
    assert_eq!(docs.len(), 1);
    let s: Secret = typed(&docs[0]);
    assert_eq!(s.metadata.name.as_deref(), Some(secrets_name().as_str()));
    assert_eq!(s.metadata.namespace.as_deref(), Some("twinmesh"));
    let keys: BTreeSet<String> = s.data.expect("data").into_keys().collect();
    assert_eq!(keys, files);
}

#[test]
fn k3d_clusters_match_the_fabric_and_label_what_the_agent_reads() {
    let fab = fabric();
    let dir = repo_root().join("k3d/clusters");
    let mut ports = BTreeSet::new();
    let mut networks = BTreeSet::new();
    let mut seen = Vec::new();
    for c in &fab.clusters {
        let path: PathBuf = dir.join(format!("{}.yaml", c.name));
        let doc = &documents(&std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{}", path.display())))[0];
        assert_eq!(doc["apiVersion"], "k3d.io/v1alpha5");
        assert_eq!(doc["kind"], "Simple");
        assert_eq!(doc["metadata"]["name"], c.name.as_str());
        networks.insert(doc["network"].as_str().expect("network").to_string());
        assert!(ports.insert(doc["kubeAPI"]["hostPort"].as_str().expect("hostPort").to_string()), "unique API ports");
        // Its nodes are the fabric's nodes of this cluster, as k3d names them.
        let (servers, agents) = (doc["servers"].as_u64().expect("servers"), doc["agents"].as_u64().expect("agents"));
        let mut expect: Vec<String> = (0..servers).map(|i| format!("k3d-{}-server-{i}", c.name)).collect();
        expect.extend((0..agents).map(|i| format!("k3d-{}-agent-{i}", c.name)));
        let mut fabric_nodes: Vec<String> =
            fab.nodes.iter().filter(|n| n.cluster == c.name).map(|n| n.name.clone()).collect();
        fabric_nodes.sort();
        expect.sort();
        assert_eq!(fabric_nodes, expect, "{}", c.name);
        // Node labels: the keys the agent reads, the values the fabric has.
        let labels: BTreeMap<String, Vec<String>> = doc["options"]["k3s"]["nodeLabels"]
            .as_array()
            .expect("nodeLabels")
            .iter()
            .map(|l| {
                let filters = l["nodeFilters"]
                    .as_array()
                    .expect("filters")
                    .iter()
                    .map(|f| f.as_str().expect("f").to_string())
                    .collect();
                (l["label"].as_str().expect("label").to_string(), filters)
            })
            .collect();
        let kind = fab.nodes.iter().find(|n| n.cluster == c.name).expect("node").labels[CLUSTER_TYPE_LABEL].clone();
        for want in [format!("{CLUSTER_LABEL}={}", c.name), format!("{CLUSTER_TYPE_LABEL}={kind}")] {
            let f = labels.get(&want).unwrap_or_else(|| panic!("{}: missing node label {want}", c.name));
            assert_eq!(f, &["server:*", "agent:*"], "{}: {want} on every node", c.name);
        }
        seen.push(c.name.clone());
    }
    assert_eq!(networks.len(), 1, "one Docker network for all clusters");
    let files = std::fs::read_dir(&dir).expect("dir").count();
    assert_eq!(files, seen.len(), "no k3d config without a fabric cluster");
}

#[test]
fn demo_jobs_plan_on_the_k3d_fabric() {
    let fab = fabric();
    let view = fab.view();
    for e in std::fs::read_dir(repo_root().join("k3d/jobs")).expect("jobs") {
        let p = e.expect("entry").path();
        let job = twinmesh_common::spec::parse_job(&std::fs::read_to_string(&p).expect("job"))
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let plan = twinmesh_common::policy::Policy::Cvar
            .plan(&view, &job, &twinmesh_common::policy::PolicyConfig::default())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(plan.placements.iter().all(|pl| pl.node.starts_with("k3d-")), "{}", p.display());
    }
}

/// Whether the DaemonSet's agent container can read the files the kubelet
/// writes for `volume` (a Secret or ConfigMap volume), by the kubelet's
/// rule: the files belong to root, their group is the pod's `fsGroup`
/// (root without one), their mode is the volume's `defaultMode` (0644
/// unless set) — and with an `fsGroup`, the kubelet adds group read. The
/// process reads as its `runAsUser`, with its `runAsGroup`, the pod's
/// `fsGroup` and `supplementalGroups` as groups.
fn agent_reads_volume(ds: &DaemonSet, volume: &str) -> Result<(), String> {
    let spec = ds.spec.as_ref().expect("spec").template.spec.as_ref().expect("pod spec");
    let pod = spec.security_context.clone().unwrap_or_default();
    let c = spec.containers.iter().find(|c| c.name == "agent").expect("agent container");
    let sc = c.security_context.clone().unwrap_or_default();
    let uid = sc.run_as_user.or(pod.run_as_user).unwrap_or(0);
    let gid = sc.run_as_group.or(pod.run_as_group).unwrap_or(0);
    if !c.volume_mounts.iter().flatten().any(|m| m.name == volume) {
        return Err(format!("{volume} is not mounted in the agent container"));
    }
    let v = spec.volumes.iter().flatten().find(|v| v.name == volume).ok_or(format!("no volume {volume}"))?;
    let (mode, items) = if let Some(s) = &v.secret {
        (s.default_mode.unwrap_or(0o644), s.items.clone().unwrap_or_default())
    } else if let Some(m) = &v.config_map {
        (m.default_mode.unwrap_or(0o644), m.items.clone().unwrap_or_default())
    } else {
        return Err(format!("{volume} is neither a Secret nor a ConfigMap volume"));
    };
    let modes: Vec<i32> =
        if items.is_empty() { vec![mode] } else { items.iter().map(|i| i.mode.unwrap_or(mode)).collect() };
    let mut groups: BTreeSet<i64> = [gid].into();
    groups.extend(pod.fs_group);
    groups.extend(pod.supplemental_groups.iter().flatten());
    let file_gid = pod.fs_group.unwrap_or(0);
    for m in modes {
        let m = if pod.fs_group.is_some() { m | 0o040 } else { m };
        let ok = uid == 0 || (groups.contains(&file_gid) && m & 0o040 != 0) || m & 0o004 != 0;
        if !ok {
            return Err(format!(
                "{volume}: files root:{file_gid} mode {m:04o}, agent runs as {uid}:{gid} with groups {groups:?}"
            ));
        }
    }
    Ok(())
}

/// A hostPath volume is created root-owned by the kubelet (fsGroup does
/// not apply to it): the agent writes it only if it runs as root, or an
/// init container running as root with CAP_CHOWN gives the mount to the
/// agent's uid:gid first.
fn agent_owns_host_path(ds: &DaemonSet, volume: &str) -> Result<(), String> {
    let spec = ds.spec.as_ref().expect("spec").template.spec.as_ref().expect("pod spec");
    let pod = spec.security_context.clone().unwrap_or_default();
    let c = spec.containers.iter().find(|c| c.name == "agent").expect("agent container");
    let sc = c.security_context.clone().unwrap_or_default();
    let (uid, gid) =
        (sc.run_as_user.or(pod.run_as_user).unwrap_or(0), sc.run_as_group.or(pod.run_as_group).unwrap_or(0));
    let v = spec.volumes.iter().flatten().find(|v| v.name == volume).ok_or(format!("no volume {volume}"))?;
    if v.host_path.is_none() {
        return Err(format!("{volume} is not a hostPath volume"));
    }
    if uid == 0 {
        return Ok(());
    }
    let owner = format!("{uid}:{gid}");
    let chowned = spec.init_containers.iter().flatten().any(|i| {
        let isc = i.security_context.clone().unwrap_or_default();
        let root = isc.run_as_user.or(pod.run_as_user).unwrap_or(0) == 0;
        let may_chown = isc.capabilities.as_ref().is_none_or(|caps| {
            let dropped_all = caps.drop.iter().flatten().any(|d| d == "ALL" || d == "CHOWN");
            !dropped_all || caps.add.iter().flatten().any(|a| a == "CHOWN")
        });
        let mount = i.volume_mounts.iter().flatten().find(|m| m.name == volume).map(|m| m.mount_path.clone());
        let cmd = i.command.iter().flatten().chain(i.args.iter().flatten()).cloned().collect::<Vec<_>>();
        root && may_chown
            && mount
                .is_some_and(|m| cmd.first().is_some_and(|c| c == "chown") && cmd.contains(&owner) && cmd.contains(&m))
    });
    if chowned { Ok(()) } else { Err(format!("hostPath {volume} stays root-owned; the agent runs as {owner}")) }
}

// On a real node the kubelet writes secret files as root; the agent runs as
// 65532. Without the pod's fsGroup, mode 0440 made mesh.key, the API token
// and the kubeconfig unreadable — no schema check sees it.
#[test]
fn the_agent_can_read_its_secrets_and_its_fabric() {
    let ds: DaemonSet =
        typed(&documents(&std::fs::read_to_string(repo_root().join("deploy/base/daemonset.yaml")).expect("ds"))[0]);
    for volume in ["secrets", "fabric"] {
        agent_reads_volume(&ds, volume).unwrap_or_else(|e| panic!("the agent cannot read {volume}: {e}"));
    }
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap().security_context.clone().unwrap();
    assert_eq!(pod.fs_group, Some(65532));
    // Only re-own the volumes when their root is wrong, not on every start.
    assert_eq!(pod.fs_group_change_policy.as_deref(), Some("OnRootMismatch"));
    // The rule catches the defect it is for: no fsGroup, secrets unreadable.
    let mut without = ds.clone();
    without.spec.as_mut().unwrap().template.spec.as_mut().unwrap().security_context.as_mut().unwrap().fs_group = None;
    let e = agent_reads_volume(&without, "secrets").expect_err("root:root 0440 is unreadable to 65532");
    assert!(e.contains("root:0 mode 0440"), "{e}");
    // The data directory: given to the agent by the init container; the
    // rule fails without it.
    agent_owns_host_path(&ds, "data").unwrap_or_else(|e| panic!("{e}"));
    let mut no_init = ds.clone();
    no_init.spec.as_mut().unwrap().template.spec.as_mut().unwrap().init_containers = None;
    assert!(agent_owns_host_path(&no_init, "data").is_err());
}
