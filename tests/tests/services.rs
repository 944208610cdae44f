//! Services on an agent, as a user runs them: a real process, its HTTP API.

use std::time::Duration;

use twinmesh_tests::{AgentProc, tempdir, wait_for};

const LIMIT: Duration = Duration::from_secs(60);

/// 5 rps for 20 s, then 40 rps for a minute; 100 ms per request: one
/// replica is half busy, then four replicas' worth of work arrives.
const WEB: &str = "apiVersion: twinmesh.io/v1
kind: Service
metadata: { name: web, origin: { cluster: dc-core } }
spec:
  replica: { cpu: 8, mem_gb: 4 }
  replicas: { min: 1, max: 6 }
  service_ms: 100
  objective_ms: 400
  period_s: 5
  scaling: reactive
  load:
    - { from_s: 0, rps: 5, requests: 100 }
    - { from_s: 20, rps: 40, requests: 2400 }
";

fn allocated_cpu(a: &AgentProc, node: &str) -> f64 {
    let (_, t) = a.get("/v1/twin");
    t["nodes"]
        .as_array()
        .and_then(|v| v.iter().find(|r| r["node"]["name"] == node))
        .and_then(|r| r["node"]["allocated"]["cpu"].as_f64())
        .unwrap_or(0.0)
}

// Rule: an agent scales a service it accepted, every period, by the HPA
// rule on the utilisation its offered load gives; each replica holds its
// node's capacity through the owner's bookings (visible in the twin), the
// service survives a restart, and stopping it frees the nodes.
#[test]
fn an_agent_scales_a_service_and_its_replicas_hold_capacity() {
    let dir = tempdir();
    let a = AgentProc::start("dc-x86-01", "dc-core", dir.path(), &["--own-cluster"]);
    let (code, r) = a.post("/v1/services", WEB, None);
    assert_eq!(code, 201, "{r}");
    assert_eq!((r["name"].as_str(), r["scaling"].as_str()), (Some("web"), Some("reactive HPA")));
    // Refused: the same name again (409); a document whose fields
    // contradict each other (422), naming the field.
    let (code, r) = a.post("/v1/services", WEB, None);
    assert_eq!((code, r["field"].as_str()), (409, Some("metadata.name")), "{r}");
    assert!(r["error"].as_str().unwrap().contains("runs already"), "{r}");
    let (code, r) = a.post("/v1/services", &WEB.replace("min: 1", "min: 9"), None);
    assert_eq!(code, 422, "{r}");
    assert!(r.to_string().contains("spec.replicas.min"), "{r}");
    // It scales out when the load rises, within its bounds.
    let grown = wait_for(LIMIT, || {
        let (_, s) = a.get("/v1/services/web");
        (s["replicas"].as_u64()? >= 4).then_some(s)
    })
    .unwrap_or_else(|| panic!("never scaled out: {}\nlog:\n{}", a.get("/v1/services/web").1, a.log()));
    let history = grown["history"].as_array().unwrap();
    assert_eq!(history[0]["replicas"], 1, "{grown}");
    assert!(history.iter().all(|h| (1..=6).contains(&h["replicas"].as_u64().unwrap())), "{grown}");
    assert!(history.iter().any(|h| h["utilisation"].as_f64().unwrap() >= 0.99), "saturated before it grew: {grown}");
    // The replicas hold their nodes: the twin shows the cores taken.
    let nodes: Vec<String> = grown["nodes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().into()).collect();
    let held = wait_for(Duration::from_secs(20), || {
        let total: f64 = {
            let mut uniq = nodes.clone();
            uniq.sort();
            uniq.dedup();
            uniq.iter().map(|n| allocated_cpu(&a, n)).sum()
        };
        (total >= 8.0 * 4.0).then_some(total)
    });
    assert!(held.is_some(), "replicas not visible in the twin: {nodes:?}");
    // And in the metrics.
    let text = reqwest::blocking::get(format!("{}/metrics", a.api)).unwrap().text().unwrap();
    let gauge =
        |series: &str| text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok()).unwrap_or(-1.0);
    assert!(gauge("twinmesh_service_replicas{service=\"web\"}") >= 4.0, "{text}");
    assert!(gauge("twinmesh_scaling_actions_total") >= 1.0, "{text}");
    let (_, list) = a.get("/v1/services");
    assert_eq!(list["services"].as_array().unwrap().len(), 1, "{list}");
    // A restart resumes it.
    let data = a.data.clone();
    assert!(a.terminate(Duration::from_secs(20)).is_some_and(|s| s.success()));
    let a = AgentProc::start("dc-x86-01", "dc-core", &data, &["--own-cluster"]);
    let before = grown["history"].as_array().unwrap().len();
    let resumed = wait_for(LIMIT, || {
        let (code, s) = a.get("/v1/services/web");
        (code == 200 && s["history"].as_array()?.len() > before + 1).then_some(s)
    });
    assert!(resumed.is_some(), "not resumed after a restart; log:\n{}", a.log());
    // Stopped: gone, and its leases end within a period.
    let (code, r) = a.delete("/v1/services/web");
    assert_eq!(code, 200, "{r}");
    assert_eq!(a.get("/v1/services/web").0, 404);
    assert_eq!(a.delete("/v1/services/web").0, 404);
    let freed = wait_for(Duration::from_secs(30), || {
        let total: f64 = nodes.iter().map(|n| allocated_cpu(&a, n)).sum();
        (total < 8.0).then_some(())
    });
    assert!(freed.is_some(), "replicas still hold their nodes after the stop");
}
