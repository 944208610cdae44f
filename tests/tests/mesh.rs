//! Agents as real processes on loopback: convergence, routing to the
//! origin's agent, crash and restart, membership and authentication, bad
//! input. Every test is bounded in time and kills what it starts.

use std::time::{Duration, Instant};

use serde_json::Value;
use twinmesh_tests::{AgentProc, key_file, tempdir, wait_for};

const LIMIT: Duration = Duration::from_secs(60);

fn job(name: &str, cluster: &str, node: Option<&str>) -> String {
    let node = node.map_or(String::new(), |n| format!(r#", "node": "{n}""#));
    format!(
        r#"{{"apiVersion":"twinmesh.io/v1","metadata":{{"name":"{name}","deadline_ms":60000,"origin":{{"cluster":"{cluster}"{node}}}}},"spec":{{"stages":[
        {{"id":"decode","compute":{{"cpu":2,"mem_gb":1,"duration_ms":1500}},"output_mb":20}},
        {{"id":"detect","compute":{{"cpu":4,"mem_gb":8,"duration_ms":6000,"gpu_vram_gb":8}},"predecessor":"decode","output_mb":1}},
        {{"id":"notify","compute":{{"cpu":0.5,"mem_gb":0.25,"duration_ms":200}},"predecessor":"detect"}}]}}}}"#
    )
}

/// Node name → version, as an agent's `/v1/twin` lists them.
fn versions(a: &AgentProc) -> std::collections::BTreeMap<String, u64> {
    let (_, t) = a.get("/v1/twin");
    t["nodes"]
        .as_array()
        .map(|ns| {
            ns.iter()
                .map(|r| (r["node"]["name"].as_str().unwrap_or("").to_string(), r["version"].as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn five_agents_converge() {
    // Rule: every agent's twin lists every agent's node at the version its
    // owner last published.
    let dir = tempdir();
    let key = key_file(dir.path(), "mesh.key", 0x5a);
    let key = key.to_str().unwrap();
    let pools = [
        ("dc-x86-01", "dc-core"),
        ("edge-srv-01", "edge-microdc"),
        ("lab-pc-01", "campus-lab"),
        ("pan1-phone-01", "phone-pan-1"),
        ("gamer-01", "gamer-pc"),
    ];
    let t0 = Instant::now();
    let first = AgentProc::start(
        pools[0].0,
        pools[0].1,
        &dir.path().join(pools[0].0),
        &["--mesh-key-file", key, "--telemetry-interval", "3600"],
    );
    let mut agents = vec![first];
    for (name, cluster) in &pools[1..] {
        let boot = agents[0].mesh.clone();
        agents.push(AgentProc::start(
            name,
            cluster,
            &dir.path().join(name),
            &["--mesh-key-file", key, "--bootstrap", &boot, "--telemetry-interval", "3600", "--sync-interval", "1"],
        ));
    }
    let started = t0.elapsed();
    let done = wait_for(LIMIT, || {
        let own: Vec<u64> = agents.iter().map(|a| versions(a).get(&a.name).copied().unwrap_or(0)).collect();
        let all = agents.iter().all(|a| {
            let v = versions(a);
            agents.iter().zip(&own).all(|(b, ver)| *ver > 0 && v.get(&b.name) == Some(ver))
        });
        all.then(|| t0.elapsed())
    });
    let Some(took) = done else {
        panic!("no convergence within {LIMIT:?}; first agent log:\n{}", agents[0].log());
    };
    eprintln!("five agents converged {:?} after start ({:?} to start them)", took - started, started);
    // And they are connected to each other, found through the twin.
    let full = wait_for(LIMIT, || {
        agents.iter().all(|a| a.get("/v1/twin").1["peers"].as_array().map_or(0, Vec::len) == 4).then_some(())
    });
    assert!(full.is_some(), "agents did not form a full mesh");
}

#[test]
fn a_job_goes_to_the_agent_of_its_origin_and_is_verified() {
    let dir = tempdir();
    let key = key_file(dir.path(), "mesh.key", 0x11);
    let key = key.to_str().unwrap();
    let a = AgentProc::start("dc-x86-01", "dc-core", &dir.path().join("a"), &["--mesh-key-file", key]);
    let extra = ["--mesh-key-file", key, "--bootstrap", &a.mesh, "--sync-interval", "1", "--own-cluster"];
    let b = AgentProc::start("edge-srv-01", "edge-microdc", &dir.path().join("b"), &extra);
    let c = AgentProc::start("pan1-phone-01", "phone-pan-1", &dir.path().join("c"), &extra);
    // Wait until A knows C owns pan1-phone-05 and is connected to it.
    let ready = wait_for(LIMIT, || {
        let (_, t) = a.get("/v1/twin");
        let owns = t["nodes"].as_array()?.iter().any(|r| {
            r["node"]["name"] == "pan1-phone-05" && r["node"]["labels"]["twinmesh.io/agent"] == "pan1-phone-01"
        });
        let connected = t["peers"].as_array()?.iter().any(|p| p == "pan1-phone-01");
        (owns && connected).then_some(())
    });
    assert!(ready.is_some(), "A never learnt of C; A log:\n{}", a.log());
    let (status, resp) = a.post("/v1/jobs", &job("route-me", "phone-pan-1", Some("pan1-phone-05")), None);
    assert_eq!(status, 202, "{resp}");
    assert_eq!(resp["planner"], "pan1-phone-01", "{resp}");
    let id = resp["id"].as_str().unwrap().to_string();
    // Submitting the same document again is the same job, not a new one.
    // B must reach C too before it can route there.
    let b_ready =
        wait_for(LIMIT, || b.get("/v1/twin").1["peers"].as_array()?.iter().any(|p| p == "pan1-phone-01").then_some(()));
    assert!(b_ready.is_some());
    let (status2, again) = b.post("/v1/jobs", &job("route-me", "phone-pan-1", Some("pan1-phone-05")), None);
    assert_eq!(status2, 200, "{again}");
    assert_eq!(again["id"], id.as_str());
    let v = wait_for(LIMIT, || {
        let (s, v) = c.get(&format!("/v1/plans/{id}/verify"));
        (s == 200).then_some(v)
    })
    .unwrap_or_else(|| panic!("job never verified; C log:\n{}", c.log()));
    assert_eq!(v["observations"].as_array().unwrap().len(), 3);
    let lat = &v["verification"]["latency"];
    assert!(lat["observed"].as_f64().unwrap() > 0.0 && lat["predicted"].as_f64().unwrap() > 0.0);
    let (_, j) = c.get(&format!("/v1/jobs/{id}"));
    assert_eq!(j["state"], "succeeded");
    assert_eq!(j["submitted_to"], "dc-x86-01");
}

#[test]
fn acknowledged_jobs_survive_kill_9() {
    // Rule: every job the API acknowledged is there after a crash and
    // reaches a final state; the restarted twin catches up by anti-entropy.
    let dir = tempdir();
    let key = key_file(dir.path(), "mesh.key", 0x22);
    let key = key.to_str().unwrap();
    let a_dir = dir.path().join("a");
    let a = AgentProc::start("edge-srv-01", "edge-microdc", &a_dir, &["--mesh-key-file", key, "--time-scale", "0.05"]);
    let b = AgentProc::start(
        "dc-x86-01",
        "dc-core",
        &dir.path().join("b"),
        &["--mesh-key-file", key, "--bootstrap", &a.mesh, "--telemetry-interval", "0.3"],
    );
    let a_api = a.api.clone();
    let submitter = std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let mut acked = Vec::new();
        for k in 0..400 {
            let doc = job(&format!("crash-{k:03}"), "edge-microdc", None);
            match client.post(format!("{a_api}/v1/jobs")).body(doc).send() {
                Ok(r) if r.status().as_u16() == 202 => {
                    let v: Value = r.json().unwrap();
                    acked.push(v["id"].as_str().unwrap().to_string());
                }
                Ok(_) => {}
                Err(_) => break, // the agent is gone
            }
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(700));
    a.kill9();
    let acked = submitter.join().unwrap();
    assert!(!acked.is_empty(), "no job was acknowledged before the crash");
    // B keeps publishing while A is down.
    std::thread::sleep(Duration::from_millis(800));
    let a = AgentProc::start(
        "edge-srv-01",
        "edge-microdc",
        &a_dir,
        &["--mesh-key-file", key, "--bootstrap", &b.mesh, "--time-scale", "0.05", "--sync-interval", "1"],
    );
    for id in &acked {
        let (s, j) = a.get(&format!("/v1/jobs/{id}"));
        assert_eq!(s, 200, "acknowledged job {id} lost after kill -9");
        assert!(j["plan"].is_object());
    }
    let finals = wait_for(LIMIT, || {
        acked
            .iter()
            .all(|id| matches!(a.get(&format!("/v1/jobs/{id}")).1["state"].as_str(), Some("succeeded" | "failed")))
            .then_some(())
    });
    assert!(finals.is_some(), "not every acknowledged job reached a final state; log:\n{}", a.log());
    // A's replica of B catches up with B's own, newer record.
    let caught_up = wait_for(LIMIT, || {
        let theirs = versions(&b).get("dc-x86-01").copied()?;
        let ours = versions(&a).get("dc-x86-01").copied()?;
        (ours >= theirs.saturating_sub(3) && ours > 1).then_some(())
    });
    assert!(caught_up.is_some(), "restarted agent's twin did not catch up");
    eprintln!("{} jobs acknowledged before the crash, all recovered", acked.len());
}

#[test]
fn strangers_cannot_join_and_submissions_need_the_token() {
    let dir = tempdir();
    let k1 = key_file(dir.path(), "k1", 0x01);
    let k2 = key_file(dir.path(), "k2", 0x02);
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let a = AgentProc::start(
        "dc-x86-01",
        "dc-core",
        &dir.path().join("a"),
        &["--mesh-key-file", k1.to_str().unwrap(), "--api-token-file", token.to_str().unwrap()],
    );
    let friend = AgentProc::start(
        "edge-srv-01",
        "edge-microdc",
        &dir.path().join("f"),
        &["--mesh-key-file", k1.to_str().unwrap(), "--bootstrap", &a.mesh],
    );
    let stranger = AgentProc::start(
        "gamer-01",
        "gamer-pc",
        &dir.path().join("s"),
        &["--mesh-key-file", k2.to_str().unwrap(), "--bootstrap", &a.mesh],
    );
    // The friend joins (proves the wait is long enough); the stranger never does.
    let joined = wait_for(LIMIT, || {
        friend.get("/v1/twin").1["peers"].as_array()?.iter().any(|p| p == "dc-x86-01").then_some(())
    });
    assert!(joined.is_some());
    std::thread::sleep(Duration::from_secs(2));
    let (_, st) = stranger.get("/v1/twin");
    assert_eq!(st["peers"].as_array().unwrap().len(), 0, "a peer with another key joined: {st}");
    assert_eq!(st["nodes"].as_array().unwrap().len(), 1, "the stranger learnt the twin: {st}");
    // Token.
    let doc = job("auth", "dc-core", None);
    let (s, e) = a.post("/v1/jobs?dry_run=true", &doc, None);
    assert_eq!(s, 401, "{e}");
    assert!(e["error"].as_str().unwrap().contains("token"));
    let (s, _) = a.post("/v1/jobs?dry_run=true", &doc, Some("wrong"));
    assert_eq!(s, 401);
    let (s, ok) = a.post("/v1/jobs?dry_run=true", &doc, Some("s3cret"));
    assert_eq!(s, 202, "{ok}");
    assert_eq!(ok["job"]["state"], "dry_run");
    // Health stays open for probes.
    let r = reqwest::blocking::get(format!("{}/healthz", a.api)).unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn bad_input_gets_4xx_naming_the_problem_and_the_agent_keeps_serving() {
    let dir = tempdir();
    let a = AgentProc::start("dc-x86-01", "dc-core", &dir.path().join("a"), &[]);
    let good = job("fine", "dc-core", None);
    let cases: Vec<(String, &str, u16, &str)> = vec![
        ("{\"apiVersion\": ".to_string(), "/v1/jobs", 400, "EOF"),
        (good.replace("\"output_mb\":20", "\"output_mb\":20,\"colour\":1"), "/v1/jobs", 400, "spec.stages[0].colour"),
        // Each field is fine, together they are not: 422, as the
        // OpenAPI document says (its schema cannot state such rules).
        (good.replace("\"predecessor\":\"decode\"", "\"predecessor\":\"notify\""), "/v1/jobs", 422, "cycle"),
        (good.replace("\"cpu\":2,", "\"cpu\":-2,"), "/v1/jobs", 400, "spec.stages[0].compute.cpu"),
        (good.clone(), "/v1/jobs?policy=fastest", 400, "policy"),
        (good.clone(), "/v1/jobs?colour=red", 400, "colour"),
        (job("nowhere", "mars", None), "/v1/jobs", 400, "metadata.origin.cluster"),
        (good.replace("\"cpu\":4,", "\"cpu\":1000,"), "/v1/jobs", 422, "no feasible node"),
        ("x".repeat(2 * 1024 * 1024), "/v1/jobs", 413, ""),
        ("{\"kind\": \"melt\", \"node\": \"dc-x86-01\"}".to_string(), "/v1/observe", 400, "kind"),
        ("{\"kind\": \"node_down\", \"node\": \"atlantis\"}".to_string(), "/v1/observe", 400, "atlantis"),
    ];
    for (body, path, want, says) in &cases {
        let (s, e) = a.post(path, body, None);
        assert_eq!(s, *want, "{path} {}…: {e}", &body[..body.len().min(60)]);
        if !says.is_empty() {
            assert!(e.to_string().contains(says), "{path}: expected '{says}' in {e}");
        }
    }
    assert_eq!(a.get("/v1/jobs/missing").0, 404);
    // A list's limit is bounded: past it, a 400 that names it, not a cut.
    for q in ["/v1/jobs?limit=1001", "/v1/actions?limit=0", "/v1/jobs?limit=5000000"] {
        let (s, e) = a.get(q);
        assert_eq!((s, e["field"].as_str()), (400, Some("limit")), "{q}: {e}");
        assert!(e["error"].as_str().unwrap().contains("outside 1–1000"), "{q}: {e}");
    }
    assert_eq!(a.get("/v1/jobs?limit=1000").0, 200);
    let (s, ok) = a.post("/v1/jobs", &good, None);
    assert_eq!(s, 202, "agent stopped serving after bad input: {ok}");
    let (s, m) = (reqwest::blocking::get(format!("{}/metrics", a.api)).unwrap().status().as_u16(), ());
    assert_eq!((s, m), (200, ()));
}

#[test]
fn a_reported_failure_lowers_the_owners_resiliency_everywhere() {
    // Rule: failure events spread; the owner folds them into its nodes'
    // resiliency scores, and those spread back with the records.
    let dir = tempdir();
    let key = key_file(dir.path(), "mesh.key", 0x33);
    let key = key.to_str().unwrap();
    let a = AgentProc::start(
        "dc-x86-01",
        "dc-core",
        &dir.path().join("a"),
        &["--mesh-key-file", key, "--own-cluster", "--telemetry-interval", "0.3"],
    );
    let b = AgentProc::start(
        "edge-srv-01",
        "edge-microdc",
        &dir.path().join("b"),
        &["--mesh-key-file", key, "--bootstrap", &a.mesh],
    );
    let resiliency = |agent: &AgentProc, node: &str| -> Option<f64> {
        let (_, t) = agent.get("/v1/twin");
        t["nodes"].as_array()?.iter().find(|r| r["node"]["name"] == node)?["node"]["resiliency"].as_f64()
    };
    let before = wait_for(LIMIT, || resiliency(&b, "dc-x86-02")).expect("B learns A's nodes");
    assert!((before - 0.97).abs() < 1e-9, "baseline of a datacenter node: {before}");
    let (s, ev) = b.post("/v1/observe", r#"{"kind": "node_down", "node": "dc-x86-02", "duration_ms": 600000}"#, None);
    assert_eq!(s, 202, "{ev}");
    let after = wait_for(LIMIT, || resiliency(&b, "dc-x86-02").filter(|r| *r < before))
        .unwrap_or_else(|| panic!("resiliency never dropped; A log:\n{}", a.log()));
    // 0.97 × (1 − 0.1)^1 for one fresh node_down.
    assert!((after - 0.873).abs() < 0.002, "{after}");
    // And planners stop using the node: a dry run from dc-core avoids it.
    let (_, plan) = b.post("/v1/jobs?dry_run=true&policy=greedy", &job("avoid", "dc-core", Some("dc-x86-02")), None);
    let nodes: Vec<&str> =
        plan["job"]["plan"]["placements"].as_array().unwrap().iter().map(|p| p["node"].as_str().unwrap()).collect();
    assert!(!nodes.contains(&"dc-x86-02"), "{nodes:?}");
}

#[test]
fn a_killed_agent_is_suspected_and_routing_skips_it_without_waiting() {
    // Rule: liveness is decided by probes, not by open sockets: an agent
    // killed with -9 becomes suspect at its peers (target: within 3 s with
    // the defaults), and a job whose origin node is that agent's is planned
    // by another agent of its cluster at once — the dead one is not tried.
    let dir = tempdir();
    let key = key_file(dir.path(), "mesh.key", 0x3c);
    let key = key.to_str().unwrap();
    let a = AgentProc::start("dc-x86-01", "dc-core", &dir.path().join("a"), &["--mesh-key-file", key]);
    let boot = a.mesh.clone();
    let extra = ["--mesh-key-file", key, "--bootstrap", &boot];
    let b = AgentProc::start("edge-srv-01", "edge-microdc", &dir.path().join("b"), &extra);
    let c = AgentProc::start("edge-srv-02", "edge-microdc", &dir.path().join("c"), &extra);
    let alive_at_a = |name: &str| {
        let (_, t) = a.get("/v1/twin");
        t["liveness"].as_array().into_iter().flatten().find(|p| p["peer"] == name).map(|p| p["state"].clone())
    };
    let connected = wait_for(LIMIT, || {
        (alive_at_a("edge-srv-01") == Some("alive".into()) && alive_at_a("edge-srv-02") == Some("alive".into()))
            .then_some(())
    });
    assert!(connected.is_some(), "peers never alive; log:\n{}", a.log());
    let killed = Instant::now();
    b.kill9();
    let suspect = wait_for(LIMIT, || {
        let (_, t) = a.get("/v1/twin");
        let p = t["liveness"].as_array()?.iter().find(|p| p["peer"] == "edge-srv-01")?.clone();
        (p["state"] != "alive").then(|| (killed.elapsed(), p))
    });
    let (took, peer) = suspect.unwrap_or_else(|| panic!("the killed agent stayed alive; log:\n{}", a.log()));
    eprintln!("killed agent suspected after {took:?}: {peer}");
    assert!(peer["reason"].as_str().unwrap().contains("probe unanswered"), "{peer}");
    // Its cluster's other agent plans the job; the killed one is not tried.
    let (code, r) = a.post("/v1/jobs", &job("after-kill", "edge-microdc", Some("edge-srv-01")), None);
    assert!(code == 202 || code == 200, "{code} {r}");
    assert_eq!(r["planner"], "edge-srv-02", "{r}");
    let notes = r["job"]["notes"].to_string();
    assert!(!notes.contains("unreachable"), "routing tried the dead agent: {notes}");
    assert_eq!(r["job"]["notes"][0], "forwarded by dc-x86-01", "{r}");
    drop(c);
}

#[test]
fn sigterm_drains_leaves_the_mesh_and_keeps_what_was_accepted() {
    // Rule: on SIGTERM an agent finishes the requests in flight, tells its
    // peers it is leaving (they mark it dead at once, reason "left the
    // mesh", without waiting for probes to fail), flushes its store and
    // exits 0; what it accepted is there when it starts again.
    let dir = tempdir();
    let key = key_file(dir.path(), "mesh.key", 0x5d);
    let key = key.to_str().unwrap();
    let a = AgentProc::start("dc-x86-01", "dc-core", &dir.path().join("a"), &["--mesh-key-file", key]);
    let extra = ["--mesh-key-file", key, "--bootstrap", &a.mesh];
    let b_dir = dir.path().join("b");
    let b = AgentProc::start("edge-srv-01", "edge-microdc", &b_dir, &extra);
    let state_at_a = |name: &str| {
        let (_, t) = a.get("/v1/twin");
        t["liveness"].as_array().into_iter().flatten().find(|p| p["peer"] == name).cloned()
    };
    let up = wait_for(LIMIT, || state_at_a("edge-srv-01").filter(|p| p["state"] == "alive"));
    assert!(up.is_some(), "peer never alive; log:\n{}", a.log());
    let (code, r) = b.post("/v1/jobs", &job("before-term", "edge-microdc", Some("edge-srv-01")), None);
    assert!(code == 202 || code == 200, "{code} {r}");
    assert_eq!(r["planner"], "edge-srv-01", "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    let b_log = b_dir.join("agent.log");
    let sent = Instant::now();
    let status = b.terminate(Duration::from_secs(20)).expect("the agent did not exit within 20 s of SIGTERM");
    let log = std::fs::read_to_string(&b_log).unwrap_or_default();
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(log.contains("left the mesh; store flushed"), "log:\n{log}");
    // Peers learn it at once: well before probes (1 s silence + two misses)
    // would have made it even suspect.
    let dead = wait_for(Duration::from_secs(10), || state_at_a("edge-srv-01").filter(|p| p["state"] == "dead"));
    let peer = dead.unwrap_or_else(|| panic!("never dead at its peer; log:\n{}", a.log()));
    assert_eq!(peer["reason"], "left the mesh", "{peer}");
    eprintln!("left agent dead at its peer {:?} after SIGTERM", sent.elapsed());
    // Restarted on the same data: the job is there (and resumes).
    let b = AgentProc::start("edge-srv-01", "edge-microdc", &b_dir, &extra);
    let (code, j) = b.get(&format!("/v1/jobs/{id}"));
    assert_eq!(code, 200, "{j}");
    assert_eq!(j["id"], id.as_str());
    let back = wait_for(LIMIT, || state_at_a("edge-srv-01").filter(|p| p["state"] == "alive"));
    assert!(back.is_some(), "restarted agent not alive again at its peer");
}

// Rule: a forward that timed out and was planned by the forwarder, then
// delivered late and planned by its target too, is one job planned twice:
// the two settle it (`common::reconcile`) and the copy planned nearer the
// origin stays. The target is paused (SIGSTOP) so the forward waits in its
// socket past the forwarder's timeout.
#[test]
fn a_late_forward_planned_on_both_ends_is_reconciled() {
    let dir = tempdir();
    let key = key_file(dir.path(), "mesh.key", 0x5b);
    let key = key.to_str().unwrap();
    let a = AgentProc::start("dc-x86-01", "dc-core", &dir.path().join("a"), &["--mesh-key-file", key]);
    let b = AgentProc::start(
        "edge-srv-01",
        "edge-microdc",
        &dir.path().join("b"),
        &["--mesh-key-file", key, "--bootstrap", &a.mesh],
    );
    // B alive at A, and its record (it runs edge-srv-01) arrived: only then
    // does A route the job to B (the record may lag the connection).
    let alive = wait_for(LIMIT, || {
        let (_, t) = a.get("/v1/twin");
        let up = t["liveness"].as_array()?.iter().any(|p| p["peer"] == "edge-srv-01" && p["state"] == "alive");
        let owns = t["nodes"]
            .as_array()?
            .iter()
            .any(|r| r["node"]["name"] == "edge-srv-01" && r["node"]["labels"]["twinmesh.io/agent"] == "edge-srv-01");
        (up && owns).then_some(())
    });
    assert!(alive.is_some(), "no mesh; log:\n{}", a.log());
    let pid = b.pid().to_string();
    let signal = |s: &str| assert!(std::process::Command::new("kill").args([s, &pid]).status().unwrap().success());
    signal("-STOP");
    let (code, r) = a.post("/v1/jobs", &job("late", "edge-microdc", Some("edge-srv-01")), None);
    assert!(code == 202 || code == 200, "{code} {r}");
    assert_eq!(r["planner"], "dc-x86-01", "the forward timed out and it was planned here: {r}");
    let id = r["job"]["id"].as_str().unwrap().to_string();
    // Resumed at once: the forward is already late (its caller gave up),
    // and it must reach the target within the transport's cap.
    signal("-CONT");
    // The target plans the late forward; then the two settle: the target
    // is in the origin's cluster, so its copy stays.
    let planned_there = wait_for(LIMIT, || (b.get(&format!("/v1/jobs/{id}")).0 == 200).then_some(()));
    assert!(
        planned_there.is_some(),
        "the late forward was not planned by its target; answer {r}\ntarget's log:\n{}\nforwarder's log:\n{}",
        b.log(),
        a.log()
    );
    let superseded = wait_for(LIMIT, || {
        let (_, j) = a.get(&format!("/v1/jobs/{id}"));
        (j["state"] == "superseded").then_some(j)
    });
    let j = superseded.unwrap_or_else(|| panic!("not reconciled: {}", a.get(&format!("/v1/jobs/{id}")).1));
    assert!(j["notes"].to_string().contains("superseded by the plan of edge-srv-01"), "{j}");
    let (_, kept) = b.get(&format!("/v1/jobs/{id}"));
    assert_ne!(kept["state"], "superseded", "{kept}");
}

// Rule: a planned stage counts on its node in the planner's view until its
// owner books it (`common::inflight`), so plans made meanwhile do not pile
// onto the node from a stale estimate; once booked it no longer counts.
#[test]
fn planned_stages_count_in_flight_until_booked() {
    let dir = tempdir();
    let a = AgentProc::start("dc-x86-01", "dc-core", dir.path(), &["--time-scale", "1"]);
    let doc = r#"{"apiVersion":"twinmesh.io/v1","metadata":{"name":"later","origin":{"cluster":"dc-core"}},"spec":{"stages":[
        {"id":"first","compute":{"cpu":1,"mem_gb":1,"duration_ms":4000}},
        {"id":"second","compute":{"cpu":6,"mem_gb":2,"duration_ms":1000},"predecessor":"first"}]}}"#;
    let (code, r) = a.post("/v1/jobs?policy=greedy", doc, None);
    assert_eq!(code, 202, "{r}");
    let second = r["job"]["plan"]["placements"][1]["node"].as_str().unwrap().to_string();
    let inflight =
        |a: &AgentProc| -> Vec<Value> { a.get("/v1/twin").1["in_flight"].as_array().cloned().unwrap_or_default() };
    let held = inflight(&a);
    let entry = held.iter().find(|e| e["node"] == second.as_str());
    assert!(entry.is_some_and(|e| e["cpu"].as_f64().unwrap_or(0.0) >= 6.0), "{second} not held: {held:?}");
    // Booked when the first stage is done (4 s): then it counts no more.
    let released = wait_for(LIMIT, || {
        let held = inflight(&a);
        (!held.iter().any(|e| e["node"] == second.as_str())).then_some(())
    });
    assert!(released.is_some(), "still held: {:?}", inflight(&a));
    let (_, j) = a.get(&format!("/v1/jobs/{}", r["id"].as_str().unwrap()));
    assert_ne!(j["state"], "failed", "{j}");
}

// Rule: a running stage whose node's agent stops answering fails over once
// the agent has been unreachable past the grace (`--failover-grace`), and
// the job says the run may also finish there. Here the only nodes that can
// run the stage (riscv64, native) are the paused agent's, so the failover
// waits its backoff and books there again once the agent answers: two
// attempts, one note, the job succeeds.
#[test]
fn a_run_whose_owner_is_unreachable_fails_over_after_the_grace() {
    let dir = tempdir();
    let key = key_file(dir.path(), "mesh.key", 0x5c);
    let key = key.to_str().unwrap();
    let common = ["--mesh-key-file", key, "--time-scale", "1", "--failover-grace", "2"];
    let a = AgentProc::start("dc-x86-01", "dc-core", &dir.path().join("a"), &common);
    let mut lab_args = common.to_vec();
    lab_args.extend(["--own-cluster", "--bootstrap", &a.mesh]);
    let lab = AgentProc::start("lab-pc-01", "campus-lab", &dir.path().join("b"), &lab_args);
    let owned = wait_for(LIMIT, || {
        let (_, t) = a.get("/v1/twin");
        let alive = t["liveness"].as_array()?.iter().any(|p| p["peer"] == "lab-pc-01" && p["state"] == "alive");
        let owns = t["nodes"].as_array()?.iter().any(|r| {
            r["node"]["hardware"]["arch"] == "riscv64" && r["node"]["labels"]["twinmesh.io/agent"] == "lab-pc-01"
        });
        (alive && owns).then_some(())
    });
    assert!(owned.is_some(), "no mesh; log:\n{}", a.log());
    let doc = r#"{"apiVersion":"twinmesh.io/v1","metadata":{"name":"far-run","origin":{"cluster":"dc-core"}},"spec":{"stages":[
        {"id":"rv","compute":{"cpu":1,"mem_gb":0.5,"duration_ms":1500},"constraints":{"arch":["riscv64"],"formats":["native"]}}]}}"#;
    let (code, r) = a.post("/v1/jobs", doc, None);
    assert_eq!(code, 202, "{r}");
    assert_eq!(r["planner"], "dc-x86-01", "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(500));
    let pid = lab.pid().to_string();
    let signal = |s: &str| assert!(std::process::Command::new("kill").args([s, &pid]).status().unwrap().success());
    signal("-STOP");
    let paused = Instant::now();
    let noted = wait_for(LIMIT, || {
        let (_, j) = a.get(&format!("/v1/jobs/{id}"));
        j["notes"].as_array()?.iter().any(|n| n.as_str().is_some_and(|n| n.starts_with("failover:"))).then_some(j)
    });
    let after = paused.elapsed();
    signal("-CONT");
    let j = noted.unwrap_or_else(|| panic!("no failover; log:\n{}", a.log()));
    let note = j["notes"].to_string();
    assert!(note.contains("lab-pc-01") && note.contains("possible duplicate"), "{note}");
    assert!(after >= Duration::from_secs(2), "failed over after {after:?}, before the 2 s grace");
    let done = wait_for(LIMIT, || {
        let (_, j) = a.get(&format!("/v1/jobs/{id}"));
        matches!(j["state"].as_str(), Some("succeeded" | "failed")).then_some(j)
    })
    .unwrap_or_else(|| panic!("job did not finish; log:\n{}", a.log()));
    assert_eq!(done["state"], "succeeded", "{done}");
    assert!(done["observations"][0]["attempts"].as_u64().unwrap_or(0) >= 2, "{}", done["observations"]);
}
