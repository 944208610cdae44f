//! What Prometheus and Grafana read: the exposition passes `promtool check
//! metrics` (Debian's `prometheus` package; `.ci/run` installs it), the
//! histograms are fine enough to read small plan times, and every series
//! the Grafana dashboard and the DaemonSet's scrape annotations name exists.

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

    // Every series the dashboard queries is exposed.
    let names: std::collections::BTreeSet<&str> =
        text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).collect();
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
