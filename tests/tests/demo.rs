//! `twinmesh demo` as a user runs it: seven agents, a job stream, a
//! summary as one JSON object on the last line.

use std::time::Duration;

use twinmesh_tests::run_twinmesh;

#[test]
fn demo_runs_every_job_to_the_end_and_reports_json() {
    let out =
        run_twinmesh(&["demo", "--jobs", "24", "--seed", "7", "--output", "json"], None, Duration::from_secs(120));
    assert!(out.status.success(), "stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("output");
    let v: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    assert_eq!(v["agents"].as_array().unwrap().len(), 7);
    assert_eq!(v["jobs_submitted"], 24);
    assert_eq!(v["states"]["succeeded"], 24, "{v}");
    assert_eq!(v["planner_of_job"].as_object().unwrap().len(), 24);
    // Jobs are planned near their origin: most by an agent of the origin's cluster.
    assert!(v["planned_in_origin_cluster"].as_u64().unwrap() >= 18, "{v}");
    let rate = v["acceptance_rate"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&rate));
    assert_eq!(v["injected_failures"][0], "gamer-01");
}
