//! Preemptive actions on a real agent (embedded fabric): a precursor on the
//! node a running stage is placed on moves the stage before the node
//! fails, and the job's record says why.

use std::time::Duration;

use twinmesh_tests::{AgentProc, tempdir, wait_for};

fn job(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"twinmesh.io/v1","metadata":{{"name":"{name}","deadline_ms":150000,"origin":{{"cluster":"dc-core"}}}},"spec":{{"stages":[
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
// throttling) is moved (restarted elsewhere) or replicated when the
// forecast says staying costs more (time scale 0.05: the 60 s stage runs 3
// s of wall time); the node then fails under it and the job still meets its
// deadline, on another node; the action is in the job's record, in
// /v1/actions and in the metrics; a job whose node shows nothing is left
// alone, and nothing is lost.
#[test]
fn a_precursor_moves_a_running_stage_before_its_node_fails() {
    let dir = tempdir();
    let a = AgentProc::start("dc-x86-01", "dc-core", dir.path(), &["--time-scale", "0.1"]);
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
    let acted = wait_for(Duration::from_secs(30), || {
        let (_, r) = a.get(&format!("/v1/jobs/{id}"));
        r["notes"].to_string().contains("preemptive:").then_some(r)
    })
    .expect("an action on the precursor");
    let notes = acted["notes"].to_string();
    assert!(
        notes.contains("preemptive: restart running stage 'long'")
            || notes.contains("preemptive: replicate running stage 'long'"),
        "{notes}"
    );
    assert!(notes.contains(&format!("node '{node}' fails before the stage ends")), "{notes}");
    // The forecast was right: the node goes down under the stage.
    let (code, ev) = a.post("/v1/observe", &format!(r#"{{"kind":"node_down","node":"{node}"}}"#), None);
    assert_eq!(code, 202, "{ev}");
    let done = wait_for(Duration::from_secs(60), || {
        let (_, r) = a.get(&format!("/v1/jobs/{id}"));
        (r["state"] == "succeeded" || r["state"] == "failed").then_some(r)
    })
    .expect("job ends");
    assert_eq!(done["state"], "succeeded", "{done}");
    let ran_on = done["observations"][0]["node"].as_str().unwrap();
    assert_ne!(ran_on, node, "the stage finished elsewhere");
    assert!(done["verification"]["latency"]["observed"].as_f64().unwrap() <= 150_000.0, "{done}");
    assert!(metric(&a, "twinmesh_preemptive_actions_total") >= 1);
    // The action is in the job's record with its numbers and outcome, and
    // in the agent's list of actions.
    let acts = done["actions"].as_array().expect("actions in the job record");
    let act = &acts[0];
    assert!(act["action"] == "restart" || act["action"] == "replicate", "{act}");
    assert_eq!((act["stage"].as_str(), act["from"].as_str()), (Some("long"), Some(node.as_str())), "{act}");
    assert_eq!(act["to"].as_str(), Some(ran_on), "{act}");
    assert!(act["gain_ms"].as_f64().unwrap() >= act["cost_ms"].as_f64().unwrap(), "{act}");
    assert!(act["risk_before"].as_f64().unwrap() > act["risk_after"].as_f64().unwrap(), "{act}");
    assert_eq!(act["outcome"], "on_time", "{act}");
    // Recorded when the action came within the precursor's lead time (10
    // fabric s = 1 wall s at this time scale: room for a busy machine).
    let reaction = act["reaction_ms"].as_f64().unwrap_or_else(|| panic!("decided on the precursor: {act}"));
    assert!(reaction < 5_000.0, "{reaction}");
    let (code, list) = a.get("/v1/actions?limit=10");
    assert_eq!(code, 200, "{list}");
    assert!(list["actions"].as_array().unwrap().iter().any(|x| x["job"] == id.as_str()), "{list}");
    assert!(metric(&a, "twinmesh_preemptive_outcomes_total") >= 1);
    assert!(metric(&a, "twinmesh_preempt_reaction_seconds_count") >= 1);
    // Acting on the job changed where its stage runs: its prediction was
    // committed again (the first median kept), and the job says so.
    let committed = &done["committed"];
    assert!(committed["revision"].as_u64().unwrap() >= 1, "{committed}");
    assert!(committed["first_p50_ms"].as_f64().unwrap() > 0.0, "{committed}");
    assert!(done["notes"].to_string().contains("prediction committed again"), "{}", done["notes"]);
    // Nothing is lost: the calm job (failed over if it was on that node)
    // succeeds too.
    let c = wait_for(Duration::from_secs(60), || {
        let (_, r) = a.get(&format!("/v1/jobs/{calm}"));
        (r["state"] == "succeeded" || r["state"] == "failed").then_some(r)
    })
    .expect("calm job ends");
    assert_eq!(c["state"], "succeeded", "{c}");
    if c["plan"]["placements"][0]["node"] != node.as_str() {
        assert!(!c["notes"].to_string().contains("preemptive"), "{c}");
    }
}

// Rule: with --chaos the embedded fabric's ground truth fails the agent's
// own node by itself, and (precursor probability 1) every failure that
// takes it down is announced by a thermal throttle the lead time before;
// the agent learns the precursors' precision from that history (the
// rule itself is unit-tested in common::forecast).
#[test]
fn chaos_failures_are_announced_and_precision_is_learned() {
    let dir = tempdir();
    // Time scale 0.1: the 2 s lead is 200 ms of wall time; a failure of
    // dc-x86-01 every few fabric seconds.
    let a = AgentProc::start(
        "dc-x86-01",
        "dc-core",
        dir.path(),
        &["--time-scale", "0.1", "--chaos", "--chaos-mtbf", "0.2", "--precursor-prob", "1", "--precursor-lead", "2"],
    );
    let twin = wait_for(Duration::from_secs(90), || {
        let (_, t) = a.get("/v1/twin");
        let downs = t["failures"]
            .as_array()?
            .iter()
            .filter(|f| f["kind"] == "node_down" || f["kind"] == "system_crash")
            .count();
        (downs >= 2).then_some(t)
    })
    .expect("the ground truth fails the node by itself");
    let failures = twin["failures"].as_array().unwrap();
    for f in failures.iter().filter(|f| f["kind"] == "node_down" || f["kind"] == "system_crash") {
        let at = f["at_ms"].as_u64().unwrap();
        let announced = failures.iter().any(|p| {
            p["kind"] == "thermal_throttle"
                && p["node"] == f["node"]
                && p["at_ms"].as_u64().is_some_and(|t| t + 100 <= at && at <= t + 1_500)
        });
        assert!(announced, "{f} without a precursor ~200 ms before in {failures:?}");
    }
    let learned = wait_for(Duration::from_secs(30), || {
        let text = reqwest::blocking::get(format!("{}/metrics", a.api)).ok()?.text().ok()?;
        let value = |name: &str| {
            text.lines().find_map(|l| l.strip_prefix(&format!("{name} ")).and_then(|v| v.parse::<f64>().ok()))
        };
        (value("twinmesh_precursors_judged")? >= 4.0).then(|| value("twinmesh_precursor_precision"))?
    })
    .expect("precursors judged");
    // Failures that take the node down are all announced; throttles and
    // network trouble drawn on their own are false alarms: the precision
    // moves off the 0.6 prior towards what this history shows.
    assert!((learned - 0.6).abs() > 1e-6 && (0.2..=1.0).contains(&learned), "precision {learned}");
}
