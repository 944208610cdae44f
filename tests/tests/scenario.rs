//! One scripted scenario — a lost forward, a paused owner, a cut and a
//! heal (tests/fixtures/scenario.json) — run by real agents in network
//! namespaces and by the simulator (`twinmesh-sims scenario`): both drive
//! `common::lifecycle`, and this test checks that they decide the same.
//!
//! Compared: for each agent and job, the sequence of the job protocol's
//! decisions (forwards, unanswered forwards, where it is planned, booking
//! requests and their tries, failovers, superseded copies); for each
//! agent, the peers it reconciled with. Not compared: times (the real
//! agents' clocks and detector run in wall time beside other work) and
//! how often one reconciliation is repeated.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use twinmesh_common::lifecycle::Decision;
use twinmesh_common::lifecycle::decision::from_log;
use twinmesh_tests::netns::Net;
use twinmesh_tests::*;

type Trace = Vec<(String, Decision)>;
/// Per (agent, job): its decisions in order.
type JobDecisions = BTreeMap<(String, String), Vec<Decision>>;
/// Per agent: the peers it reconciled with.
type Reconciled = BTreeMap<String, BTreeSet<String>>;

/// Per (agent, job): its decisions in order; per agent: the peers it
/// reconciled with.
fn digest(trace: &Trace) -> (JobDecisions, Reconciled) {
    let mut jobs = JobDecisions::new();
    let mut peers = Reconciled::new();
    for (agent, d) in trace {
        match (d, d.job()) {
            (Decision::Reconcile { peer }, _) => {
                peers.entry(agent.clone()).or_default().insert(peer.clone());
            }
            (_, Some(job)) => jobs.entry((agent.clone(), job.to_string())).or_default().push(d.clone()),
            (_, None) => {}
        }
    }
    (jobs, peers)
}

/// The decision with its job id replaced by the job's name.
fn named(d: &Decision, names: &BTreeMap<String, String>) -> Decision {
    let n = |id: &String| names.get(id).cloned().unwrap_or_else(|| id.clone());
    match d.clone() {
        Decision::Forward { job, to } => Decision::Forward { job: n(&job), to },
        Decision::Unanswered { job, to } => Decision::Unanswered { job: n(&job), to },
        Decision::PlanHere { job, from } => Decision::PlanHere { job: n(&job), from },
        Decision::Book { job, stage, owner, attempt } => Decision::Book { job: n(&job), stage, owner, attempt },
        Decision::Unreachable { job, stage, owner } => Decision::Unreachable { job: n(&job), stage, owner },
        Decision::FailOver { job, stage, owner } => Decision::FailOver { job: n(&job), stage, owner },
        Decision::Superseded { job, by } => Decision::Superseded { job: n(&job), by },
        r @ Decision::Reconcile { .. } => r,
    }
}

fn show(trace: &Trace) -> String {
    trace.iter().map(|(a, d)| format!("  {a:<12} {}", serde_json::to_string(d).unwrap())).collect::<Vec<_>>().join("\n")
}

/// The simulator's decisions for the scenario.
fn simulated(file: &std::path::Path) -> Trace {
    let out = Command::new(sims_bin()).arg("scenario").arg(file).args(["--output", "json"]).output().unwrap();
    assert!(out.status.success(), "twinmesh-sims scenario failed: {}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON decisions");
    rows.into_iter()
        .map(|mut r| {
            let o = r.as_object_mut().unwrap();
            let agent = o.remove("agent").unwrap().as_str().unwrap().to_string();
            o.remove("at_ms");
            (agent, serde_json::from_value(r).expect("a decision"))
        })
        .collect()
}

#[test]
fn agents_and_simulator_decide_the_same_in_a_scripted_scenario() {
    let file = repo_root().join("tests/fixtures/scenario.json");
    let scenario: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let sim = simulated(&file);
    let net = match Net::new(scenario["agents"].as_array().unwrap().len()) {
        Ok(n) => n,
        Err(e) => return skip(&format!("cannot make network namespaces here ({e})")),
    };
    let dir = tempdir();
    let key = key_file(dir.path(), "mesh.key", 0x5d);
    let key = key.to_str().unwrap().to_string();
    let grace = scenario["failover_grace_s"].as_f64().unwrap().to_string();
    let mut agents: Vec<AgentProc> = Vec::new();
    for (i, a) in scenario["agents"].as_array().unwrap().iter().enumerate() {
        let (name, cluster) = (a["name"].as_str().unwrap(), a["cluster"].as_str().unwrap());
        let mut extra = vec!["--mesh-key-file", key.as_str(), "--time-scale", "1", "--failover-grace", grace.as_str()];
        if a["own_cluster"].as_bool() == Some(true) {
            extra.push("--own-cluster");
        }
        let boot = agents.first().map(|b| b.mesh.clone());
        if let Some(b) = &boot {
            extra.extend(["--bootstrap", b.as_str()]);
        }
        let mut cmd = net.hosts[i].command(&twinmesh_bin());
        cmd.env("TWINMESH_LOG", "info,twinmesh::decision=debug");
        let data = dir.path().join(name);
        agents.push(AgentProc::start_at(cmd, name, cluster, &data, &data.join("agent.log"), &net.hosts[i].ip, &extra));
    }
    // Every agent alive at every other, and every node's owner known.
    let names: Vec<String> = agents.iter().map(|a| a.name.clone()).collect();
    let settled = wait_for(Duration::from_secs(90), || {
        agents
            .iter()
            .all(|a| {
                let (_, t) = a.get("/v1/twin");
                let alive = |p: &String| {
                    t["liveness"]
                        .as_array()
                        .is_some_and(|l| l.iter().any(|v| v["peer"] == p.as_str() && v["state"] == "alive"))
                };
                let owners: BTreeSet<&str> = t["nodes"]
                    .as_array()
                    .map(|n| n.iter().filter_map(|r| r["node"]["labels"]["twinmesh.io/agent"].as_str()).collect())
                    .unwrap_or_default();
                names.iter().filter(|p| **p != a.name).all(alive) && names.iter().all(|p| owners.contains(p.as_str()))
            })
            .then_some(())
    });
    assert!(settled.is_some(), "the mesh never formed; log:\n{}", agents[0].log());
    // Only what the steps cause is compared (joining is not a step).
    let offsets: Vec<usize> = agents.iter().map(|a| a.log().len()).collect();
    let index = |n: &str| names.iter().position(|x| x == n).unwrap_or_else(|| panic!("unknown agent {n}"));
    let signal = |i: usize, s: &str| {
        let pid = agents[i].pid().to_string();
        assert!(Command::new("kill").args([s, &pid]).status().unwrap().success());
    };
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let t0 = Instant::now();
    for step in scenario["steps"].as_array().unwrap() {
        let (what, arg) = match step {
            Value::String(s) => (s.as_str(), &Value::Null),
            Value::Object(o) => o.iter().next().map(|(k, v)| (k.as_str(), v)).unwrap(),
            other => panic!("bad step {other}"),
        };
        eprintln!("{:>7.3} s  {what} {arg}", t0.elapsed().as_secs_f64());
        match what {
            "pause" => signal(index(arg.as_str().unwrap()), "-STOP"),
            "resume" => signal(index(arg.as_str().unwrap()), "-CONT"),
            "wait_s" => std::thread::sleep(Duration::from_secs_f64(arg.as_f64().unwrap())),
            "submit" => {
                let to = &agents[index(arg["to"].as_str().unwrap())];
                let (code, r) = to.post("/v1/jobs", &arg["job"].to_string(), None);
                assert!(code == 202 || code == 200, "{code} {r}");
                let name = arg["job"]["metadata"]["name"].as_str().unwrap().to_string();
                ids.insert(r["id"].as_str().unwrap().to_string(), name);
            }
            "cut" => {
                let side: Vec<usize> = arg.as_array().unwrap().iter().map(|a| index(a.as_str().unwrap())).collect();
                let rest: Vec<usize> = (0..agents.len()).filter(|i| !side.contains(i)).collect();
                net.cut(&side, &rest);
            }
            "heal" => net.heal(),
            other => panic!("unknown step {other}"),
        }
    }
    std::thread::sleep(Duration::from_secs_f64(scenario["settle_s"].as_f64().unwrap()));
    let mut real: Trace = Vec::new();
    for (a, from) in agents.iter().zip(&offsets) {
        let log = a.log();

        real.extend(from_log(&log[*from..]).into_iter().map(|(who, d)| (who, named(&d, &ids))));
    }
    let (sim_jobs, sim_peers) = digest(&sim);
    let (real_jobs, real_peers) = digest(&real);
    let both = format!("simulator:\n{}\nagents:\n{}", show(&sim), show(&real));
    // The scenario exercises every rule it is meant to.
    for kind in ["forward", "unanswered", "plan_here", "book", "fail_over", "superseded", "reconcile"] {
        assert!(
            sim.iter().any(|(_, d)| serde_json::to_value(d).unwrap()["decision"] == kind),
            "the scenario makes no '{kind}' decision in the simulator\n{both}"
        );
    }
    assert!(
        sim.iter().any(|(_, d)| matches!(d, Decision::Book { attempt: 3, .. })),
        "no booking asked three times\n{both}"
    );
    for (key, want) in &sim_jobs {
        assert_eq!(real_jobs.get(key), Some(want), "agent {} on job {}\n{both}", key.0, key.1);
    }
    let extra: Vec<_> = real_jobs.keys().filter(|k| !sim_jobs.contains_key(*k)).collect();
    assert!(extra.is_empty(), "decisions the simulator did not make: {extra:?}\n{both}");
    assert_eq!(real_peers, sim_peers, "reconciliations\n{both}");
}
