//! Preemptive actions on a real agent (embedded fabric): a precursor on the
//! node a running stage is placed on moves the stage before the node
//! fails, and the job's record says why.

use std::time::Duration;

use twinmesh_tests::{AgentProc, tempdir, wait_for};

fn job(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"twinmesh.io/v1","metadata":{{"name":"{name}","origin":{{"cluster":"dc-core"}}}},"spec":{{"stages":[
        {{"id":"long","compute":{{"cpu":2,"mem_gb":2,"duration_ms":60000}}}}]}}}}"#
    )
}

fn metric(a: &AgentProc, name: &str) -> u64 {
    let text = reqwest::blocking::get(format!("{}/metrics", a.api)).unwrap().text().unwrap();
    // Summed over labels (`name{action="…"} v`).
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(' ') || r.starts_with('{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

// Rule: a running stage on a node that shows a precursor (thermal
// throttling) restarts elsewhere when the forecast says staying costs more
// (time scale 0.05: the 60 s stage runs 3 s of wall time); a job whose node
// shows nothing is left alone.
#[test]
fn a_precursor_moves_a_running_stage_before_its_node_fails() {
    let dir = tempdir();
    let a = AgentProc::start("dc-x86-01", "dc-core", dir.path(), &["--time-scale", "0.05"]);
    let (code, v) = a.post("/v1/jobs", &job("warned"), None);
    assert_eq!(code, 202, "{v}");
    let id = v["job"]["id"].as_str().unwrap().to_string();
    let node = v["job"]["plan"]["placements"][0]["node"].as_str().unwrap().to_string();
    let (code, v) = a.post("/v1/jobs", &job("calm"), None);
    assert_eq!(code, 202, "{v}");
    let calm = v["job"]["id"].as_str().unwrap().to_string();
    let running = wait_for(Duration::from_secs(30), || {
        let (_, r) = a.get(&format!("/v1/jobs/{id}"));
        (r["state"] == "running").then_some(())
    });
    assert!(running.is_some(), "job never ran");
    std::thread::sleep(Duration::from_millis(300));
    let (code, ev) = a.post("/v1/observe", &format!(r#"{{"kind":"thermal_throttle","node":"{node}"}}"#), None);
    assert_eq!(code, 202, "{ev}");
    let done = wait_for(Duration::from_secs(60), || {
        let (_, r) = a.get(&format!("/v1/jobs/{id}"));
        (r["state"] == "succeeded" || r["state"] == "failed").then_some(r)
    })
    .expect("job ends");
    assert_eq!(done["state"], "succeeded", "{done}");
    let notes = done["notes"].to_string();
    assert!(notes.contains("preemptive: restart running stage 'long'"), "{notes}");
    assert!(notes.contains(&format!("node '{node}' fails before the stage ends")), "{notes}");
    let ran_on = done["observations"][0]["node"].as_str().unwrap();
    assert_ne!(ran_on, node, "the stage finished elsewhere");
    assert!(metric(&a, "twinmesh_preemptive_actions_total") >= 1);
    let c = wait_for(Duration::from_secs(60), || {
        let (_, r) = a.get(&format!("/v1/jobs/{calm}"));
        (r["state"] == "succeeded").then_some(r)
    })
    .expect("calm job ends");
    if c["plan"]["placements"][0]["node"] != node.as_str() {
        assert!(!c["notes"].to_string().contains("preemptive"), "{c}");
    }
}
