//! Rule: the embedded fabric and the DES run one set of execution rules
//! (`common::execution`) on one booking discipline, so for the same plan,
//! the same ground truth and the same run names, the agent's observed stage
//! timeline equals the simulator's — to the microsecond of fabric time.

use std::time::Duration;

use clap::Parser;
use twinmesh_agent::cli::agent::{AgentArgs, start};
use twinmesh_agent::jobs::JobState;
use twinmesh_common::des::{SimConfig, Simulator};
use twinmesh_common::spec;
use twinmesh_common::truth::GroundTruth;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    agent: AgentArgs,
}

const JOB: &str = r#"{"apiVersion":"twinmesh.io/v1","metadata":{"name":"fan","deadline_ms":60000,"origin":{"cluster":"dc-core","node":"dc-x86-02"}},"spec":{"stages":[
  {"id":"split","compute":{"cpu":1,"mem_gb":1,"duration_ms":300},"output_mb":40},
  {"id":"left","compute":{"cpu":4,"mem_gb":4,"duration_ms":900},"predecessor":"split","output_mb":5},
  {"id":"right","compute":{"cpu":4,"mem_gb":4,"duration_ms":700,"gpu_vram_gb":4},"predecessor":"split","output_mb":5},
  {"id":"merge","compute":{"cpu":1,"mem_gb":1,"duration_ms":200},"predecessor":["left","right"]}]}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_fabric_timeline_equals_the_des() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let args = Cli::parse_from([
        "agent",
        "--node",
        "dc-x86-01",
        "--cluster",
        "dc-core",
        "--own-cluster",
        "--api",
        "127.0.0.1:0",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--data-dir",
        &data,
        "--virtual-hardware",
        "--time-scale",
        "0.1",
    ])
    .agent;
    let running = start(args).await.expect("agent starts");
    let agent = running.agent.clone();
    let resp = agent.submit(JOB, Some("greedy"), false, None).await.expect("accepted");
    let id = resp.id.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let rec = loop {
        let r = agent.job(&id).expect("job known");
        if r.state.is_final() {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "job did not finish: {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(rec.state, JobState::Succeeded, "{rec:?}");
    let plan = rec.plan.clone().unwrap();
    // The same plan in the DES, runs timed by the same ground truth.
    let view = agent.view();
    let job = spec::parse_job(JOB).unwrap();
    let placed = twinmesh_common::execution::placed(&view, &id, &plan).unwrap();
    let (assign, shadow) = (placed.assign, placed.shadow);
    let truth = GroundTruth {
        jobs: vec![(id.clone(), job.stages.iter().map(|s| s.id.clone()).collect())],
        durations: vec![job.stages.iter().map(|s| s.compute.duration_ms).collect()],
    };
    let mut sim = Simulator::with_run_times(&view, SimConfig::exact(), truth);
    sim.submit(&job, view.origin(&job).unwrap(), &assign, &shadow, 0.0);
    sim.run();
    let des = sim.outcome(0);
    assert!(!des.failed);
    let obs = &rec.observations;
    assert_eq!(obs.len(), 4);
    for (o, d) in obs.iter().zip(&des.stages) {
        assert_eq!(o.node, view.nodes.name[d.node], "stage {}", o.stage);
        assert!(
            (o.start_ms - d.start_ms).abs() < 1e-3,
            "stage {} starts at {} (agent) vs {} (DES)",
            o.stage,
            o.start_ms,
            d.start_ms
        );
        assert!(
            (o.finish_ms - d.finish_ms).abs() < 1e-3,
            "stage {} ends at {} (agent) vs {} (DES)",
            o.stage,
            o.finish_ms,
            d.finish_ms
        );
    }
    // Observed latency is the last finish, as in the DES.
    let observed = rec.verification.as_ref().unwrap().latency.observed;
    assert!((observed - des.latency_ms).abs() < 1e-3, "{observed} vs {}", des.latency_ms);
}
