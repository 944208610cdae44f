//! A real partition: four agents in their own network namespaces, two
//! sites (dc-core and edge-microdc), one cut between them with nftables
//! (packets dropped both ways, no resets), then healed. Skipped with a
//! message where namespaces cannot be made (not root).

use std::time::{Duration, Instant};

use serde_json::Value;
use twinmesh_tests::netns::Net;
use twinmesh_tests::{AgentProc, key_file, tempdir, twinmesh_bin, wait_for};

fn state_at(a: &AgentProc, peer: &str) -> Option<String> {
    let (_, t) = a.get("/v1/twin");
    t["liveness"].as_array()?.iter().find(|p| p["peer"] == peer).map(|p| p["state"].as_str().unwrap_or("").to_string())
}

fn has_failure(a: &AgentProc, reporter: &str, seq: u64) -> bool {
    let (_, t) = a.get("/v1/twin");
    t["failures"]
        .as_array()
        .is_some_and(|fs| fs.iter().any(|f| f["id"]["reporter"] == reporter && f["id"]["seq"] == seq))
}

fn doc(name: &str, cluster: &str, node: &str) -> String {
    format!(
        r#"{{"apiVersion":"twinmesh.io/v1","metadata":{{"name":"{name}","origin":{{"cluster":"{cluster}","node":"{node}"}}}},"spec":{{"stages":[
        {{"id":"s","compute":{{"cpu":1,"mem_gb":1,"duration_ms":500}}}}]}}}}"#
    )
}

// Rule: during a cut both sides keep accepting and planning (a job whose
// origin is across the cut is planned on this side); the other side's
// agents become suspect, then dead; after the heal they are alive again
// and a record made on one side during the cut reaches the other; nothing
// acknowledged is lost. The times are printed (targets: suspect ≤ 3 s,
// alive and converged ≤ 5 s after the heal) and held only to generous
// bounds.
#[test]
fn both_sides_keep_working_through_a_cut_and_heal_fast() {
    let net = match Net::new(6) {
        Ok(n) => n,
        Err(e) => {
            return twinmesh_tests::skip(&format!("cannot make network namespaces here ({e})"));
        }
    };
    let dir = tempdir();
    let key = key_file(dir.path(), "mesh.key", 0x42);
    let key = key.to_str().unwrap().to_string();
    let names = [
        ("dc-x86-01", "dc-core"),
        ("dc-x86-02", "dc-core"),
        ("edge-srv-01", "edge-microdc"),
        ("edge-srv-02", "edge-microdc"),
        ("edge-srv-03", "edge-microdc"),
        ("pan1-phone-01", "phone-pan-1"),
    ];
    let start = |i: usize, boot: Option<&str>| {
        let (name, cluster) = names[i];
        let h = &net.hosts[i];
        let mut extra = vec!["--mesh-key-file", key.as_str()];
        if let Some(b) = boot {
            extra.extend(["--bootstrap", b]);
        }
        let data = dir.path().join(name);
        AgentProc::start_at(h.command(&twinmesh_bin()), name, cluster, &data, &data.join("agent.log"), &h.ip, &extra)
    };
    let a = start(0, None);
    let boot = a.mesh.clone();
    let agents: Vec<AgentProc> = (1..4).map(|i| start(i, Some(&boot))).collect();
    // Killed during the cut, restarted after the heal.
    let e = start(4, Some(&boot));
    // A third site, on dc-core's side of the cut.
    let phone = start(5, Some(&boot));
    let (c, d) = (&agents[1], &agents[2]);
    let all_alive = wait_for(Duration::from_secs(60), || {
        ["dc-x86-02", "edge-srv-01", "edge-srv-02", "edge-srv-03", "pan1-phone-01"]
            .iter()
            .all(|p| state_at(&a, p).as_deref() == Some("alive"))
            .then_some(())
    });
    assert!(all_alive.is_some(), "mesh never formed; log:\n{}", a.log());

    // The cut.
    let cut_at = Instant::now();
    // edge-microdc cut off from dc-core and phone-pan-1.
    net.cut(&[0, 1, 5], &[2, 3, 4]);
    let suspect = wait_for(Duration::from_secs(30), || {
        ["edge-srv-01", "edge-srv-02"]
            .iter()
            .all(|p| state_at(&a, p).as_deref() != Some("alive"))
            .then(|| cut_at.elapsed())
    });
    let detected = suspect.unwrap_or_else(|| panic!("the cut was never noticed; log:\n{}", a.log()));
    eprintln!("cut detected after {detected:?}");
    // Figures are reported (docs/partition.md), not held to their targets
    // here: a test beside other work must not measure speed.
    assert!(detected <= Duration::from_secs(20), "suspected after {detected:?} (target 3 s)");
    assert_eq!(state_at(&a, "dc-x86-02").as_deref(), Some("alive"), "its own side stays alive");
    assert_eq!(state_at(&a, "pan1-phone-01").as_deref(), Some("alive"), "so does the third site");
    assert_ne!(state_at(&phone, "edge-srv-01").as_deref(), Some("alive"), "the third site sees the cut too");

    // Both sides accept and plan; a job from across the cut is planned here.
    let (code, r) = a.post("/v1/jobs", &doc("across", "edge-microdc", "edge-srv-01"), None);
    assert!(code == 202 || code == 200, "{code} {r}");
    let planner = r["planner"].as_str().unwrap_or_default().to_string();
    assert!(
        ["dc-x86-01", "dc-x86-02", "pan1-phone-01"].contains(&planner.as_str()),
        "planned on the reachable side: {r}"
    );
    let across = r["job"]["id"].as_str().unwrap().to_string();
    let (code, r) = c.post("/v1/jobs", &doc("edge-side", "edge-microdc", "edge-srv-01"), None);
    assert!(code == 202 || code == 200, "{code} {r}");
    let edge_job = r["job"]["id"].as_str().unwrap().to_string();
    let edge_api = if r["planner"] == "edge-srv-02" { d } else { c };
    // The same document on both sides: one job id, planned twice (its
    // second stage lasts 30 s of wall time: still running at the heal).
    let twice = doc("twice", "edge-microdc", "edge-srv-01").replace(
        r#"}}]}}"#,
        r#"}},{"id":"long","compute":{"cpu":1,"mem_gb":1,"duration_ms":3000000},"predecessor":"s"}]}}"#,
    );
    let (code, far) = a.post("/v1/jobs", &twice, None);
    assert!(code == 202 || code == 200, "{code} {far}");
    let (code, near) = c.post("/v1/jobs", &twice, None);
    assert!(code == 202 || code == 200, "{code} {near}");
    let twice_id = far["job"]["id"].as_str().unwrap().to_string();
    assert_eq!(near["job"]["id"].as_str(), Some(twice_id.as_str()), "one document, one id");
    let by_name = |n: &str| -> &AgentProc { [&a, &agents[0], c, d, &phone].into_iter().find(|p| p.name == n).unwrap() };
    let far_api = by_name(far["planner"].as_str().unwrap());
    let near_api = by_name(near["planner"].as_str().unwrap());
    assert!(!far_api.name.starts_with("edge-") && near_api.name.starts_with("edge-"), "{far} {near}");
    // An agent that acknowledged a job is killed during the cut; it comes
    // back after the heal (below) with nothing lost.
    let (code, r) = e.post("/v1/jobs", &doc("before-crash", "edge-microdc", "edge-srv-03"), None);
    assert!(code == 202 || code == 200, "{code} {r}");
    assert_eq!(r["planner"], "edge-srv-03", "{r}");
    let crash_job = r["job"]["id"].as_str().unwrap().to_string();
    e.kill9();
    // A record only one side sees.
    let (code, ev) =
        c.post("/v1/observe", r#"{"kind":"thermal_throttle","node":"edge-srv-02","duration_ms":60000}"#, None);
    assert_eq!(code, 202, "{ev}");
    let seq = ev["id"]["seq"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(!has_failure(&a, "edge-srv-01", seq), "crossed the cut");
    // Long enough for the other side to be given up.
    let dead =
        wait_for(Duration::from_secs(40), || (state_at(&a, "edge-srv-01").as_deref() == Some("dead")).then_some(()));
    assert!(dead.is_some(), "never given up: {:?}", state_at(&a, "edge-srv-01"));

    // The heal.
    let healed_at = Instant::now();
    net.heal();
    let back = wait_for(Duration::from_secs(60), || {
        ["edge-srv-01", "edge-srv-02"]
            .iter()
            .all(|p| state_at(&a, p).as_deref() == Some("alive"))
            .then(|| healed_at.elapsed())
    });
    let rejoined = back.unwrap_or_else(|| panic!("never rejoined; log:\n{}", a.log()));
    let converged =
        wait_for(Duration::from_secs(60), || has_failure(&a, "edge-srv-01", seq).then(|| healed_at.elapsed()))
            .expect("the record made during the cut arrives");
    eprintln!("after the heal: alive again in {rejoined:?}, replicas converged in {converged:?}");
    assert!(rejoined <= Duration::from_secs(30), "rejoined after {rejoined:?} (target 5 s)");
    assert!(converged <= Duration::from_secs(30), "converged after {converged:?} (target 5 s)");

    // The killed agent restarts after the heal, with its data and the
    // same bootstrap: it rejoins by itself and finishes what it accepted.
    let e = start(4, Some(&boot));
    let back =
        wait_for(Duration::from_secs(60), || (state_at(&a, "edge-srv-03").as_deref() == Some("alive")).then_some(()));
    assert!(back.is_some(), "the restarted agent never rejoined; its log:\n{}", e.log());
    let (code, j) = e.get(&format!("/v1/jobs/{crash_job}"));
    assert_eq!(code, 200, "acknowledged before the crash, lost after it: {j}");
    let done = wait_for(Duration::from_secs(60), || {
        let (_, j) = e.get(&format!("/v1/jobs/{crash_job}"));
        (j["state"] == "succeeded").then_some(())
    });
    assert!(done.is_some(), "{}", e.get(&format!("/v1/jobs/{crash_job}")).1);

    // Nothing acknowledged was lost, on either side.
    for (api, id) in [(by_name(&planner), &across), (edge_api, &edge_job)] {
        let j: Value = wait_for(Duration::from_secs(30), || {
            let (code, j) = api.get(&format!("/v1/jobs/{id}"));
            (code == 200 && (j["state"] == "succeeded" || j["state"] == "failed")).then_some(j)
        })
        .unwrap_or_else(|| panic!("job {id} lost or stuck"));
        assert_eq!(j["state"], "succeeded", "{j}");
    }

    // Reconciled: the copy planned nearer the origin (the edge side) stays
    // and finishes; the other is stopped and says by whom it was
    // superseded. One live copy in the mesh.
    let lost = wait_for(Duration::from_secs(30), || {
        let (_, j) = far_api.get(&format!("/v1/jobs/{twice_id}"));
        (j["state"] == "superseded").then_some(j)
    })
    .unwrap_or_else(|| {
        let logs: String = [far_api, near_api]
            .iter()
            .flat_map(|p| {
                p.log()
                    .lines()
                    .filter(|l| l.contains("reconcil") || l.contains("peer") || l.contains("dial"))
                    .map(|l| format!("{}: {l}\n", p.name))
                    .collect::<Vec<_>>()
            })
            .collect();
        panic!("the far copy was not superseded: {}\n{logs}", far_api.get(&format!("/v1/jobs/{twice_id}")).1["notes"])
    });
    let note = lost["notes"].to_string();
    assert!(note.contains("superseded by the plan of") && note.contains(&near_api.name), "{note}");
    assert!(note.contains("were stopped"), "it was still running at the heal: {note}");
    let kept = wait_for(Duration::from_secs(90), || {
        let (_, j) = near_api.get(&format!("/v1/jobs/{twice_id}"));
        (j["state"] == "succeeded" || j["state"] == "failed").then_some(j)
    })
    .expect("the kept copy finishes");
    assert_eq!(kept["state"], "succeeded", "{kept}");
    let kept_notes = kept["notes"].to_string();
    assert_eq!(kept_notes.matches("this plan stays").count(), 1, "{kept_notes}");
    let metric = |p: &AgentProc, outcome: &str| -> f64 {
        let text = reqwest::blocking::get(format!("{}/metrics", p.api)).unwrap().text().unwrap();
        let series = format!("twinmesh_jobs_reconciled_total{{outcome=\"{outcome}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(series.as_str())?.parse().ok()).unwrap_or(-1.0)
    };
    assert_eq!(metric(far_api, "superseded"), 1.0);
    assert_eq!(metric(near_api, "kept"), 1.0);
}

// Rule: a lossy network is not a partition. With 30 % of the packets
// between every pair of agents dropped at random (each way), for 60 s, no
// agent gives up a live peer (suspicion comes and goes; death does not).
#[test]
fn thirty_percent_loss_marks_no_live_agent_dead() {
    let net = match Net::new(4) {
        Ok(n) => n,
        Err(e) => {
            return twinmesh_tests::skip(&format!("cannot make network namespaces here ({e})"));
        }
    };
    let dir = tempdir();
    let key = key_file(dir.path(), "mesh.key", 0x43);
    let key = key.to_str().unwrap().to_string();
    let names = [
        ("dc-x86-01", "dc-core"),
        ("dc-x86-02", "dc-core"),
        ("edge-srv-01", "edge-microdc"),
        ("lab-pc-01", "campus-lab"),
    ];
    let start = |i: usize, boot: Option<&str>| {
        let (name, cluster) = names[i];
        let h = &net.hosts[i];
        let mut extra = vec!["--mesh-key-file", key.as_str()];
        if let Some(b) = boot {
            extra.extend(["--bootstrap", b]);
        }
        let data = dir.path().join(name);
        AgentProc::start_at(h.command(&twinmesh_bin()), name, cluster, &data, &data.join("agent.log"), &h.ip, &extra)
    };
    let first = start(0, None);
    let boot = first.mesh.clone();
    let mut agents = vec![first];
    agents.extend((1..4).map(|i| start(i, Some(&boot))));
    let formed = wait_for(Duration::from_secs(60), || {
        agents
            .iter()
            .all(|a| {
                names.iter().filter(|(n, _)| *n != a.name).all(|(p, _)| state_at(a, p).as_deref() == Some("alive"))
            })
            .then_some(())
    });
    assert!(formed.is_some(), "mesh never formed; log:\n{}", agents[0].log());
    // Once per pair: each direction then drops 30 % of its packets.
    for i in 0..4 {
        let later: Vec<usize> = (i + 1..4).collect();
        net.lossy(&[i], &later, 30);
    }
    let t0 = Instant::now();
    let mut suspected = 0;
    while t0.elapsed() < Duration::from_secs(60) {
        for a in &agents {
            let (_, t) = a.get("/v1/twin");
            for p in t["liveness"].as_array().into_iter().flatten() {
                assert_ne!(p["state"], "dead", "{} gave up {} under 30 % loss: {p}", a.name, p["peer"]);
                suspected += usize::from(p["state"] == "suspect");
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("60 s at 30 % loss: no peer dead; {suspected} suspect observations (polled every 0.5 s)");
}

// Rule: a one-way cut (packets from one agent to the other dropped, the
// other way flowing) is noticed at both ends: probes go unanswered one way,
// answers are lost the other way.
#[test]
fn a_one_way_cut_is_noticed_at_both_ends() {
    let net = match Net::new(2) {
        Ok(n) => n,
        Err(e) => {
            return twinmesh_tests::skip(&format!("cannot make network namespaces here ({e})"));
        }
    };
    let dir = tempdir();
    let key = key_file(dir.path(), "mesh.key", 0x44);
    let key = key.to_str().unwrap().to_string();
    let start = |i: usize, name: &str, cluster: &str, boot: Option<&str>| {
        let h = &net.hosts[i];
        let mut extra = vec!["--mesh-key-file", key.as_str()];
        if let Some(b) = boot {
            extra.extend(["--bootstrap", b]);
        }
        let data = dir.path().join(name);
        AgentProc::start_at(h.command(&twinmesh_bin()), name, cluster, &data, &data.join("agent.log"), &h.ip, &extra)
    };
    let a = start(0, "dc-x86-01", "dc-core", None);
    let b = start(1, "edge-srv-01", "edge-microdc", Some(&a.mesh));
    let met = wait_for(Duration::from_secs(60), || {
        (state_at(&a, "edge-srv-01").as_deref() == Some("alive")
            && state_at(&b, "dc-x86-01").as_deref() == Some("alive"))
        .then_some(())
    });
    assert!(met.is_some(), "mesh never formed; log:\n{}", a.log());
    net.cut_one_way(&[0], &[1]);
    let t0 = Instant::now();
    let both = wait_for(Duration::from_secs(30), || {
        (state_at(&a, "edge-srv-01").as_deref() != Some("alive")
            && state_at(&b, "dc-x86-01").as_deref() != Some("alive"))
        .then(|| t0.elapsed())
    });
    let took =
        both.unwrap_or_else(|| panic!("a: {:?}, b: {:?}", state_at(&a, "edge-srv-01"), state_at(&b, "dc-x86-01")));
    eprintln!("one-way cut noticed at both ends after {took:?}");
    net.heal();
    let back = wait_for(Duration::from_secs(60), || {
        (state_at(&a, "edge-srv-01").as_deref() == Some("alive")
            && state_at(&b, "dc-x86-01").as_deref() == Some("alive"))
        .then_some(())
    });
    assert!(back.is_some(), "not alive again after the heal");
}
