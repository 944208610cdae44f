//! What Prometheus and Grafana read: the exposition passes `promtool check
//! metrics` (Debian's `prometheus` package; `.ci/run` installs it), the
//! histograms are fine enough to read small plan times, every series the
//! Grafana dashboard and the DaemonSet's scrape annotations name exists,
//! every metric family is on a dashboard panel or listed in docs/agent.md
//! as left off on purpose, and the Prometheus Operator's PodMonitor
//! (deploy/monitoring) scrapes the agents' metrics port.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use twinmesh_tests::{AgentProc, repo_root, tempdir, wait_for, which};

const DOC: &str = r#"{"apiVersion":"twinmesh.io/v1","metadata":{"name":"NAME","deadline_ms":20000,"origin":{"cluster":"dc-core"}},
"spec":{"stages":[{"id":"a","compute":{"cpu":1,"mem_gb":0.5,"duration_ms":300},"output_mb":1},
{"id":"b","compute":{"cpu":1,"mem_gb":0.5,"duration_ms":400},"predecessor":"a"}]}}"#;

/// The value of the series `line_prefix` (name with labels) in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The metric families the dashboard's queries read (a histogram's
/// `_bucket`, `_count` and `_sum` series count for its family).
fn dashboard_families(dash: &Value, families: &std::collections::BTreeMap<&str, &str>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("twinmesh_") {
                let series: String = expr[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                let family = ["_bucket", "_count", "_sum"]
                    .iter()
                    .filter_map(|s| series.strip_suffix(s))
                    .find(|f| families.get(f) == Some(&"histogram"))
                    .map_or(series.clone(), str::to_string);
                out.insert(family);
            }
        }
    }
    out
}

/// The families docs/agent.md lists as left off the dashboard on purpose:
/// the names in its paragraph that starts "Left off the dashboard".
fn left_off_the_dashboard() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(repo_root().join("docs/agent.md")).unwrap();
    let start = doc.find("Left off the dashboard").expect("docs/agent.md says which metrics the dashboard leaves off");
    let para = doc[start..].split("\n\n").next().unwrap();
    para.match_indices("`twinmesh_")
        .map(|(i, _)| para[i + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect())
        .collect()
}

#[test]
fn the_exposition_passes_promtool_and_feeds_the_dashboard() {
    let dir = tempdir();
    let a = AgentProc::start("dc-x86-01", "dc-core", dir.path(), &["--time-scale", "0.2"]);
    let mut ids = Vec::new();
    for i in 0..3 {
        let (code, v) = a.post("/v1/jobs", &DOC.replace("NAME", &format!("obs-{i}")), None);
        assert_eq!(code, 202, "{v}");
        ids.push(v["job"]["id"].as_str().unwrap().to_string());
    }
    let done = wait_for(Duration::from_secs(60), || {
        ids.iter().all(|id| a.get(&format!("/v1/jobs/{id}")).1["state"] == "succeeded").then_some(())
    });
    assert!(done.is_some(), "jobs did not finish; log:\n{}", a.log());
    let text = reqwest::blocking::get(format!("{}/metrics", a.api)).unwrap().text().unwrap();

    // Histograms: plan time from 1 µs, and one error observation per job
    // and per stage.
    assert!(value(&text, "twinmesh_plan_seconds_bucket{le=\"0.000001\"}").is_some(), "{text}");
    assert_eq!(value(&text, "twinmesh_plan_seconds_count"), Some(3.0));
    let below_50us = value(&text, "twinmesh_plan_seconds_bucket{le=\"0.00005\"}").unwrap();
    let below_1us = value(&text, "twinmesh_plan_seconds_bucket{le=\"0.000001\"}").unwrap();
    assert!(below_1us <= below_50us);
    assert_eq!(value(&text, "twinmesh_prediction_error_ratio_count"), Some(3.0));
    assert_eq!(value(&text, "twinmesh_stage_error_ratio_count"), Some(6.0));
    assert!(value(&text, "twinmesh_api_request_seconds_count").unwrap() >= 6.0, "{text}");
    assert_eq!(value(&text, "twinmesh_preemptive_actions_total{action=\"migrate\"}"), Some(0.0));
    assert_eq!(value(&text, "twinmesh_peer_state{state=\"alive\"}"), Some(0.0));

    // promtool: the format and its naming conventions.
    match which("promtool") {
        None => twinmesh_tests::skip("promtool not installed (apt-get install prometheus): format check not run"),
        Some(promtool) => {
            let mut child = Command::new(promtool)
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "promtool: {said}");
            assert_eq!(said.trim(), "", "promtool found lint problems");
        }
    }

    // Every series the dashboard queries is exposed (a family with no
    // series yet, as replicas before any service, by its TYPE line).
    let families: std::collections::BTreeMap<&str, &str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' ')).collect();
    let names: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .chain(families.keys().copied())
        .collect();
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("deploy/grafana/twinmesh.json")).unwrap())
            .unwrap();
    let mut queried = 0;
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("twinmesh_") {
                let name: String = expr[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                assert!(names.contains(name.as_str()), "panel '{}' queries {name}, not exposed", p["title"]);
                queried += 1;
            }
        }
    }
    assert!(queried >= 20, "{queried}");

    // Every family the agent exports is on a panel, or left off on purpose
    // and said so in docs/agent.md.
    assert!(families.len() >= 30, "{families:?}");
    let on_panels = dashboard_families(&dash, &families);
    let left_off = left_off_the_dashboard();
    for f in &left_off {
        assert!(families.contains_key(f.as_str()), "docs/agent.md leaves off {f}, which the agent does not export");
        assert!(!on_panels.contains(f), "docs/agent.md leaves off {f}, which a panel shows");
    }
    let missing: Vec<&&str> = families.keys().filter(|f| !on_panels.contains(**f) && !left_off.contains(**f)).collect();
    assert!(
        missing.is_empty(),
        "on no panel of deploy/grafana/twinmesh.json and not listed as left off in docs/agent.md: {missing:?}"
    );

    // Every operation of the OpenAPI document is served (schemathesis,
    // tests/api-contract, checks the answers against the document).
    let api: Value = reqwest::blocking::get(format!("{}/v1/openapi.json", a.api)).unwrap().json().unwrap();
    let client = reqwest::blocking::Client::new();
    let mut operations = 0;
    for (path, ops) in api["paths"].as_object().unwrap() {
        if path == "/v1/events" {
            continue; // an endless stream: tests/tests/ui.rs reads it
        }
        let url = format!("{}{}", a.api, path.replace("{id}", "no-such-job").replace("{name}", "no-such-service"));
        for method in ops.as_object().unwrap().keys() {
            let r = match method.as_str() {
                "get" => client.get(&url).send().unwrap(),
                "post" => client.post(&url).body("{}").send().unwrap(),
                "delete" => client.delete(&url).send().unwrap(),
                // The path's own parameters, not an operation.
                "parameters" => continue,
                other => panic!("undocumented method {other}"),
            };
            let status = r.status().as_u16();
            let body = r.text().unwrap_or_default();
            assert!(status != 405 && !body.contains("no such endpoint"), "{method} {path}: {status} {body}");
            assert!(
                ops[method]["responses"].get(status.to_string()).is_some(),
                "{method} {path} answered {status}, which the document does not list"
            );
            operations += 1;
        }
    }
    assert!(operations >= 12, "{operations}");

    // The scrape annotations point at the port that serves /metrics.
    let ds = std::fs::read_to_string(repo_root().join("deploy/base/daemonset.yaml")).unwrap();
    assert!(ds.contains("prometheus.io/scrape: \"true\""));
    assert!(ds.contains("prometheus.io/port: \"7400\"") && ds.contains("httpGet: { path: /healthz, port: 7400 }"));
}

// Rule: deploy/monitoring is a kustomization of its own (deploy/base
// applies without the Prometheus Operator's CRDs) with a PodMonitor that
// selects the DaemonSet's pods in its namespace and scrapes /metrics on
// the container port that serves the API.
#[test]
fn the_pod_monitor_scrapes_the_agents_metrics_port() {
    let read = |p: &str| -> serde_yaml_ng::Value {
        serde_yaml_ng::from_str(&std::fs::read_to_string(repo_root().join(p)).unwrap()).unwrap()
    };
    let base = std::fs::read_to_string(repo_root().join("deploy/base/kustomization.yaml")).unwrap();
    assert!(!base.contains("monitoring") && !base.contains("PodMonitor"), "deploy/base must apply without the CRDs");
    let k = read("deploy/monitoring/kustomization.yaml");
    let resources: Vec<&str> = k["resources"].as_sequence().unwrap().iter().filter_map(|r| r.as_str()).collect();
    assert!(resources.contains(&"podmonitor.yaml"), "{resources:?}");
    let pm = read("deploy/monitoring/podmonitor.yaml");
    let ds = read("deploy/base/daemonset.yaml");
    assert_eq!(pm["apiVersion"].as_str(), Some("monitoring.coreos.com/v1"));
    assert_eq!(pm["kind"].as_str(), Some("PodMonitor"));
    let ns = ds["metadata"]["namespace"].as_str().unwrap();
    assert_eq!(pm["metadata"]["namespace"].as_str(), Some(ns));
    let names = pm["spec"]["namespaceSelector"]["matchNames"].as_sequence().unwrap();
    assert!(names.iter().any(|n| n.as_str() == Some(ns)), "{names:?}");
    // The selector matches the pods' labels.
    let pod_labels = ds["spec"]["template"]["metadata"]["labels"].as_mapping().unwrap();
    let wanted = pm["spec"]["selector"]["matchLabels"].as_mapping().unwrap();
    assert!(!wanted.is_empty());
    for (k, v) in wanted {
        assert_eq!(pod_labels.get(k), Some(v), "the PodMonitor selects {k:?}={v:?}, which the agents' pods lack");
    }
    // The endpoint: a named port of the agent's container, the one the
    // scrape annotations name, and /metrics.
    let ep = &pm["spec"]["podMetricsEndpoints"][0];
    assert_eq!(ep["path"].as_str(), Some("/metrics"));
    let port = ep["port"].as_str().expect("a port name");
    let container = &ds["spec"]["template"]["spec"]["containers"][0];
    let number = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some(port))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("the agent's container has no port named {port}"));
    let annotated = ds["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"].as_str().unwrap();
    assert_eq!(number.to_string(), annotated, "the PodMonitor and the annotations scrape different ports");
}
