//! `twinmesh plan` as a user runs it: a real process, real files.

use std::time::Duration;

use twinmesh_tests::run_twinmesh;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn plan_prints_one_json_object_with_placements_and_predictions() {
    let out = run_twinmesh(&["plan", "docs/examples/video-pipeline.yaml", "--output", "json"], None, LIMIT);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    assert_eq!(v["job"], "video-pipeline");
    assert_eq!(v["policy"], "greedy");
    let placements = v["placements"].as_array().unwrap();
    assert_eq!(placements.len(), 3);
    let stages: Vec<&str> = placements.iter().map(|p| p["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["decode", "detect", "notify"]);
    let latency = v["predicted"]["latency_ms"].as_f64().unwrap();
    let last_finish = v["predicted"]["stages"][2]["finish_ms"].as_f64().unwrap();
    assert!(latency > 0.0 && (latency - last_finish).abs() < 1e-9);
    assert_eq!(v["predicted"]["meets_deadline"], true);
    // The interval: the median near the plan's latency, the 90th
    // percentile above it by the run-time spread (σ 0.15 on a twin that
    // learned nothing: a few per cent to a few tens of per cent).
    let (p50, p90) = (v["interval"]["p50_ms"].as_f64().unwrap(), v["interval"]["p90_ms"].as_f64().unwrap());
    assert!((p50 / latency - 1.0).abs() < 0.05, "p50 {p50} against {latency}");
    assert!(p90 > p50 * 1.05 && p90 < p50 * 1.5, "p90 {p90}, p50 {p50}");
    assert!(v["interval"]["p90_j"].as_f64().unwrap() >= v["interval"]["p50_j"].as_f64().unwrap());
}

#[test]
fn every_policy_plans_and_cvar_reports_its_tail() {
    let out =
        run_twinmesh(&["plan", "docs/examples/video-pipeline.yaml", "--policy", "all", "-o", "json"], None, LIMIT);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let plans = v["plans"].as_array().unwrap();
    let names: Vec<&str> = plans.iter().map(|p| p["policy"].as_str().unwrap()).collect();
    assert_eq!(names, ["baseline", "greedy", "resilient", "cvar"]);
    let cvar = &plans[3]["predicted"];
    assert!(cvar["tail_latency_ms"].as_f64().unwrap() >= cvar["latency_ms"].as_f64().unwrap());
    let greedy = plans[1]["predicted"]["latency_ms"].as_f64().unwrap();
    let baseline = plans[0]["predicted"]["latency_ms"].as_f64().unwrap();
    assert!(greedy <= baseline, "greedy {greedy} should not be slower than the baseline {baseline}");
}

#[test]
fn bad_job_from_stdin_fails_naming_the_field() {
    let job = "apiVersion: twinmesh.io/v1\nmetadata: {name: x, origin: {cluster: dc-core}}\nspec: {stages: [{id: a, compute: {cpu: -1, duration_ms: 5}}]}\n";
    let out = run_twinmesh(&["plan", "-"], Some(job), LIMIT);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.stages[0].compute.cpu"), "{err}");
}

#[test]
fn unknown_origin_and_missing_file_are_clear_errors() {
    let job = "apiVersion: twinmesh.io/v1\nmetadata: {name: x, origin: {cluster: mars}}\nspec: {stages: [{id: a, compute: {cpu: 1, duration_ms: 5}}]}\n";
    let out = run_twinmesh(&["plan", "-"], Some(job), LIMIT);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster 'mars' is not in the fabric"));
    let out = run_twinmesh(&["plan", "no/such/job.yaml"], None, LIMIT);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

// Rule: `plan --what-if` runs the plan on the twin to the scenario's moment
// and shows what the twin would do: a precursor on the running stage's node
// (given in the scenario, or found in a twin snapshot) makes it act on
// that stage; without one it takes no action; a scenario naming a node the
// twin lacks is refused, naming it.
#[test]
fn what_if_shows_the_action_the_twin_would_take() {
    let dir = twinmesh_tests::tempdir();
    let job = dir.path().join("job.yaml");
    std::fs::write(
        &job,
        "apiVersion: twinmesh.io/v1\nmetadata: {name: long, origin: {cluster: dc-core}}\nspec: {stages: [{id: long, compute: {cpu: 2, mem_gb: 2, duration_ms: 60000}}]}\n",
    )
    .unwrap();
    let plan = run_twinmesh(&["plan", job.to_str().unwrap(), "-o", "json"], None, LIMIT);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let node = plan["placements"][0]["node"].as_str().unwrap().to_string();
    let ask = |scenario: &str| {
        let sc = dir.path().join("scenario.yaml");
        std::fs::write(&sc, scenario).unwrap();
        run_twinmesh(&["plan", job.to_str().unwrap(), "--what-if", sc.to_str().unwrap(), "-o", "json"], None, LIMIT)
    };
    let out = ask(&format!("at_ms: 5000\nprecursors: [{{node: {node}, at_ms: 4500}}]\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let w = &v["what_if"];
    assert_eq!(w["stages"][0]["state"], "running", "{w}");
    assert_eq!(w["action"]["from"], node.as_str(), "{w}");
    assert_eq!(w["action"]["stage"], "long", "{w}");
    assert!(w["action"]["gain_ms"].as_f64().unwrap() > w["action"]["cost_ms"].as_f64().unwrap(), "{w}");
    // The same precursor, from a twin snapshot (GET /v1/twin's shape).
    std::fs::write(
        dir.path().join("twin.json"),
        format!(
            r#"{{"nodes": [], "failures": [{{"id": {{"reporter": "a", "seq": 1}}, "node": "{node}", "kind": "thermal_throttle", "at_ms": 1000, "duration_ms": 30000}}]}}"#
        ),
    )
    .unwrap();
    let out = ask("at_ms: 5000\ntwin: twin.json\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["what_if"]["action"]["from"], node.as_str(), "{v}");
    let out = ask("at_ms: 5000\n");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["what_if"]["action"].is_null() && v["what_if"]["candidates"].as_array().unwrap().is_empty(), "{v}");
    let out = ask("at_ms: 5000\nprecursors: [{node: no-such-node, at_ms: 1}]\n");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-node") && err.contains("not in the twin"), "{err}");
}

// Rule: a service document is run through the twin's service DES under
// each scaling mode on its declared load: the mode it asks for is marked,
// scaling beats a fixed size on late requests, every mode stays within
// [min, max], and a replica's node is planned from the origin.
#[test]
fn a_service_is_simulated_under_each_scaling_mode() {
    let out = run_twinmesh(&["plan", "docs/examples/web-service.yaml", "-o", "json"], None, LIMIT);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["service"].as_str(), v["scaling"].as_str()), (Some("web"), Some("predictive (twin)")));
    assert_eq!(v["replica_cluster"], "edge-microdc");
    let modes = v["modes"].as_array().unwrap();
    let names: Vec<&str> = modes.iter().map(|m| m["mode"].as_str().unwrap()).collect();
    assert_eq!(names, ["fixed", "reactive HPA", "predictive (twin)"]);
    assert_eq!(modes.iter().filter(|m| m["chosen"] == true).count(), 1);
    for m in modes {
        assert_eq!(m["requests"], 5100, "{m}");
        for step in m["replicas"].as_array().unwrap() {
            let n = step[1].as_u64().unwrap();
            assert!((3..=12).contains(&n), "{m}");
        }
    }
    let late = |i: usize| modes[i]["late_pct"].as_f64().unwrap();
    assert!(late(1) < late(0) && late(2) < late(0), "scaling must beat a fixed size: {names:?}");
    assert_eq!(modes[0]["actions"], 0);
    // A bad service names its field; a service sent as a job says what it is.
    let bad = std::fs::read_to_string(twinmesh_tests::repo_root().join("docs/examples/web-service.yaml"))
        .unwrap()
        .replace("min: 3, max: 12", "min: 13, max: 12");
    let out = run_twinmesh(&["plan", "-"], Some(&bad), LIMIT);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.replicas.min"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
