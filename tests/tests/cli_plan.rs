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
