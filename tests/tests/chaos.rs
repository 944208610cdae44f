//! The Chaos Mesh manifests of the partition demo (deploy/chaos/): every
//! document valid against the NetworkChaos schema (unknown fields are
//! errors), selecting the agents the DaemonSet really runs, and cutting
//! towards nodes the k3d clusters really have.

use std::collections::BTreeSet;

use serde_json::Value;
use twinmesh_tests::repo_root;

fn documents(path: &std::path::Path) -> Vec<Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn schema() -> jsonschema::Validator {
    let path = repo_root().join("tests/schemas/chaos-mesh/networkchaos.schema.json");
    let s: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::draft7::new(&s).expect("the schema compiles")
}

fn manifests() -> Vec<(String, Value)> {
    let dir = repo_root().join("deploy/chaos");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            for d in documents(&p) {
                out.push((p.file_name().unwrap().to_string_lossy().into_owned(), d));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_chaos_manifest_is_a_valid_network_partition() {
    let v = schema();
    let m = manifests();
    let names: Vec<&str> = m.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(names, ["edge-from-dc.yaml", "site-blackout.yaml"]);
    for (file, doc) in &m {
        let errors: Vec<String> = v.iter_errors(doc).map(|e| format!("{}: {e}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{file}: {errors:#?}");
        assert_eq!(doc["spec"]["action"], "partition", "{file}");
        assert_eq!(doc["spec"]["direction"], "both", "{file}");
    }
}

#[test]
fn the_schema_refuses_what_chaos_mesh_would() {
    // A check that could fail: an unknown field, a bad enum, a missing
    // selector are all errors.
    let v = schema();
    let (_, good) = manifests().remove(0);
    let mut unknown = good.clone();
    unknown["spec"]["partitionMode"] = "full".into();
    assert!(!v.is_valid(&unknown));
    let mut bad = good.clone();
    bad["spec"]["action"] = "cut".into();
    assert!(!v.is_valid(&bad));
    let mut missing = good;
    missing["spec"].as_object_mut().unwrap().remove("selector");
    assert!(!v.is_valid(&missing));
}

#[test]
fn the_cut_selects_the_agents_and_names_real_k3d_nodes() {
    // The DaemonSet's pod labels.
    let ds = documents(&repo_root().join("deploy/base/daemonset.yaml"));
    let labels = &ds.iter().find(|d| d["kind"] == "DaemonSet").unwrap()["spec"]["template"]["metadata"]["labels"];
    // Every k3d cluster has one server and one agent node: k3d-<pool>-server-0, k3d-<pool>-agent-0.
    let lib = std::fs::read_to_string(repo_root().join("k3d/lib.sh")).unwrap();
    let line = lib.lines().find(|l| l.starts_with("POOLS=(")).unwrap();
    let pools: Vec<&str> = line.trim_start_matches("POOLS=(").trim_end_matches(')').split_whitespace().collect();
    let nodes: BTreeSet<String> =
        pools.iter().flat_map(|p| [format!("k3d-{p}-server-0"), format!("k3d-{p}-agent-0")]).collect();
    for (file, doc) in manifests() {
        let sel = doc["spec"]["selector"]["labelSelectors"].as_object().unwrap();
        for (k, v) in sel {
            assert_eq!(&labels[k], v, "{file}: selector {k}={v} does not match the agents' pods");
        }
        assert_eq!(doc["metadata"]["namespace"], "twinmesh", "{file}");
        let targets: Vec<&str> =
            doc["spec"]["externalTargets"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        for t in &targets {
            assert!(nodes.contains(*t), "{file}: {t} is not a k3d node");
        }
        if file == "site-blackout.yaml" {
            // Every node of every other cluster, none of its own.
            let want: BTreeSet<String> = nodes.iter().filter(|n| !n.contains("edge-microdc")).cloned().collect();
            assert_eq!(targets.iter().map(|t| t.to_string()).collect::<BTreeSet<_>>(), want);
        }
    }
}

// Chaos Mesh refuses network chaos on hostNetwork pods unless its controller
// is installed with controllerManager.allowHostNetworkTesting (the env
// ALLOW_HOST_NETWORK_TESTING of chaos-controller-manager). The agents use
// the host network, so the demo's install must set it and check it.
#[test]
fn the_partition_demo_installs_chaos_mesh_that_may_cut_host_network_agents() {
    let ds = documents(&repo_root().join("deploy/base/daemonset.yaml"));
    let host_network = ds[0]["spec"]["template"]["spec"]["hostNetwork"].as_bool().unwrap_or(false);
    let values = documents(&repo_root().join("k3d/chaos-mesh-values.yaml"));
    let allowed = values[0]["controllerManager"]["allowHostNetworkTesting"].as_bool().unwrap_or(false);
    assert!(!host_network || allowed, "agents on hostNetwork, but Chaos Mesh's values do not allow chaos on them");
    assert_eq!(values[0]["chaosDaemon"]["socketPath"], "/run/k3s/containerd/containerd.sock", "k3s's containerd");
    let script = std::fs::read_to_string(repo_root().join("k3d/partition")).unwrap();
    let installs: Vec<&str> =
        script.lines().filter(|l| l.contains("helm") && l.contains("upgrade --install")).collect();
    assert!(!installs.is_empty(), "k3d/partition installs Chaos Mesh");
    // Every install passes the values file (the command continues on the
    // next line after a backslash).
    let joined = script.replace("\\\n", " ");
    for l in joined.lines().filter(|l| l.contains("upgrade --install")) {
        assert!(l.contains("-f \"$values\""), "an install without the values file: {l}");
    }
    assert!(script.contains("values=\"$REPO/k3d/chaos-mesh-values.yaml\""));
    // An existing install is checked, not trusted.
    assert!(script.contains("ALLOW_HOST_NETWORK_TESTING"), "the script checks the controller's setting");
}
