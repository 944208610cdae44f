//! `twinmesh demo` — a local mesh of seven agents, one per reference pool,
//! on loopback in this process: they converge, take a stream of jobs from
//! varied origins through their HTTP APIs, forward each to the agent
//! nearest its origin, run them on the embedded fabric, verify and
//! calibrate; a failure is injected on the way.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use twinmesh_common::fabric;
use twinmesh_common::rng::SimRng;

use super::Output;
use super::agent::{AgentArgs, Running, start};

/// Arguments of `twinmesh demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Jobs to submit (default 40; 200 with --load).
    #[arg(long, env = "TWINMESH_DEMO_JOBS")]
    jobs: Option<usize>,
    /// Offered load: jobs arrive as a Poisson stream whose reference work
    /// is this share of the whole fabric's capacity (0.7 = 70 %), so the
    /// twin is seen busy. Without it jobs come one every 20 ms, a light
    /// load.
    #[arg(long, value_parser = parse_load)]
    load: Option<f64>,
    /// Give up waiting for jobs after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Seed for origins, targets and the injected failure.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output: a live text view, or the summary as one JSON object on the
    /// last line.
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Wall seconds per fabric second (default 0.002; 1 — real time — with
    /// --load, so that the agents' own pauses under a stream of jobs, a
    /// few wall ms, stay small against the jobs' run times).
    #[arg(long)]
    time_scale: Option<f64>,
    /// Keep the mesh running after the summary until Ctrl-C, to look at it
    /// (each agent's web view is at `<api>/ui`).
    #[arg(long)]
    stay: bool,
}

const TEMPLATES: [&str; 3] = [
    r#"{"apiVersion":"twinmesh.io/v1","metadata":{"name":"video-NAME","deadline_ms":15000,"origin":{"cluster":"CLUSTER","node":"NODE"}},"spec":{"stages":[
      {"id":"decode","compute":{"cpu":2,"mem_gb":1,"duration_ms":1500},"output_mb":20},
      {"id":"detect","compute":{"cpu":4,"mem_gb":8,"duration_ms":6000,"gpu_vram_gb":8},"predecessor":"decode","output_mb":1},
      {"id":"notify","compute":{"cpu":0.5,"mem_gb":0.25,"duration_ms":200},"predecessor":"detect"}]}}"#,
    r#"{"apiVersion":"twinmesh.io/v1","metadata":{"name":"sensor-NAME","deadline_ms":8000,"origin":{"cluster":"CLUSTER","node":"NODE"}},"spec":{"stages":[
      {"id":"ingest","compute":{"cpu":1,"mem_gb":0.5,"duration_ms":400},"output_mb":5},
      {"id":"analyse","compute":{"cpu":2,"mem_gb":1,"duration_ms":2500},"constraints":{"arch":["riscv64","arm64"]},"predecessor":"ingest"}]}}"#,
    r#"{"apiVersion":"twinmesh.io/v1","metadata":{"name":"batch-NAME","deadline_ms":40000,"origin":{"cluster":"CLUSTER","node":"NODE"}},"spec":{"stages":[
      {"id":"split","compute":{"cpu":1,"mem_gb":2,"duration_ms":800},"output_mb":100},
      {"id":"left","compute":{"cpu":8,"mem_gb":16,"duration_ms":12000},"predecessor":"split","output_mb":10},
      {"id":"right","compute":{"cpu":8,"mem_gb":16,"duration_ms":12000},"predecessor":"split","output_mb":10},
      {"id":"merge","compute":{"cpu":2,"mem_gb":4,"duration_ms":1000},"predecessor":["left","right"]}]}}"#,
];

struct Submitted {
    id: String,
    api: String,
    origin_cluster: String,
}

fn parse_load(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if v > 0.0 && v <= 2.0 { Ok(v) } else { Err(format!("{v} is outside (0, 2] (0.7 = 70 % of the fabric)")) }
}

/// The demo's job kind: its name's prefix (video, sensor, batch).
fn kind_of(id: &str) -> &str {
    id.split('-').next().unwrap_or(id)
}

/// How the committed predictions of finished jobs held, per kind and over
/// all: the share within ±10 % of the committed median (p50), the share
/// that finished by the 90th percentile (p90), the mean signed error.
#[derive(Default)]
struct Held {
    jobs: usize,
    within: usize,
    by_p90: usize,
    err_sum: f64,
}

impl Held {
    fn add(&mut self, observed: f64, p50: f64, p90: f64) {
        let e = (observed - p50) / p50;
        self.jobs += 1;
        self.within += usize::from(e.abs() <= 0.10);
        self.by_p90 += usize::from(observed <= p90 * (1.0 + 1e-9));
        self.err_sum += e;
    }

    fn json(&self) -> serde_json::Value {
        let n = self.jobs.max(1) as f64;
        json!({
            "jobs": self.jobs,
            "within_10_pct": 100.0 * self.within as f64 / n,
            "p90_coverage_pct": 100.0 * self.by_p90 as f64 / n,
            "bias_pct": 100.0 * self.err_sum / n,
        })
    }
}

/// A finished job's observed latency and its committed p50 and p90 (the
/// plan's own prediction where nothing was committed).
fn held_of(j: &serde_json::Value) -> Option<(f64, f64, f64)> {
    let observed = j["verification"]["latency"]["observed"].as_f64()?;
    let p50 = j["committed"]["p50_ms"].as_f64().or_else(|| j["verification"]["latency"]["predicted"].as_f64())?;
    let p90 = j["committed"]["p90_ms"].as_f64().unwrap_or(p50);
    (p50 > 0.0).then_some((observed, p50, p90))
}

pub async fn run(a: DemoArgs) -> anyhow::Result<()> {
    let text = a.output == Output::Text;
    let say = |s: String| {
        if text {
            println!("{s}");
        }
    };
    let fab = fabric::reference();
    let jobs = a.jobs.unwrap_or(if a.load.is_some() { 200 } else { 40 });
    let time_scale = a.time_scale.unwrap_or(if a.load.is_some() { 1.0 } else { 0.002 });
    if !(time_scale > 0.0 && time_scale.is_finite()) {
        bail!("--time-scale must be above 0 (got {time_scale})");
    }
    // Mean gap between arrivals (wall s) for the offered load: the
    // templates' mean reference work over the load's share of the fabric's
    // capacity (core-ms of reference work per fabric ms).
    let gap_s = match a.load {
        Some(load) => {
            let mut work = 0.0;
            for t in TEMPLATES {
                let doc = t
                    .replace("NAME", "0")
                    .replace("CLUSTER", &fab.nodes[0].cluster)
                    .replace("NODE", &fab.nodes[0].name);
                work += twinmesh_common::spec::parse_job(&doc).context("a demo template")?.work();
            }
            let mean_work = work / TEMPLATES.len() as f64;
            Some(mean_work / (load * fab.view().capacity()) / 1000.0 * time_scale)
        }
        None => None,
    };
    let dir = std::env::temp_dir().join(format!("twinmesh-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut rng = SimRng::seed_from_u64(a.seed);
    let key: String = (0..64).map(|_| char::from_digit(rng.random_range(0..16u32), 16).expect("hex")).collect();
    let key_file = dir.join("mesh.key");
    std::fs::write(&key_file, &key)?;

    // One agent per pool; the first node of each pool is the agent's node.
    let t_start = Instant::now();
    let mut agents: Vec<Running> = Vec::new();
    for c in &fab.clusters {
        let node = fab.nodes.iter().find(|n| n.cluster == c.name).context("empty pool")?;
        // What a user gets, on loopback, owning the pool's nodes, with the
        // demo's clocks (faster telemetry and anti-entropy, its time scale).
        let mut args = AgentArgs::new(&node.name, &c.name);
        args.own_cluster = true;
        args.api = "127.0.0.1:0".parse()?;
        args.listen = "/ip4/127.0.0.1/tcp/0".parse()?;
        args.bootstrap = agents.first().map(|r| r.mesh.clone()).unwrap_or_default();
        args.data_dir = dir.join(&node.name);
        args.mesh_key_file = Some(key_file.clone());
        args.telemetry_interval = 2.0;
        args.sync_interval = 1.0;
        args.time_scale = time_scale;
        args.virtual_hardware = true;
        agents.push(start(args).await.with_context(|| format!("starting the agent for {}", c.name))?);
    }
    say(format!("started {} agents on loopback (data in {})", agents.len(), dir.display()));
    for r in &agents {
        say(format!(
            "  {:<16} {:<16} api http://{}  web view http://{}/ui",
            r.agent.cfg.name, r.agent.cfg.cluster, r.api, r.api
        ));
    }

    // Convergence: every twin holds every node, and every agent is
    // connected to every other (discovered through the twin), so jobs can be
    // forwarded to the agent nearest their origin. A slow machine (a tenth
    // of a core) converges slowly but steadily: give up only when nothing
    // has progressed for STALL, or after the run's whole duration.
    const STALL: Duration = Duration::from_secs(30);
    let total = fab.nodes.len();
    let give_up = Instant::now() + Duration::from_secs_f64(a.duration.max(STALL.as_secs_f64()));
    let mut last = (Vec::new(), Instant::now());
    let mut converged = None;
    loop {
        let sizes: Vec<usize> = agents.iter().map(|r| r.agent.twin().len()).collect();
        let peers: Vec<usize> = agents.iter().map(|r| r.agent.peers().len()).collect();
        if sizes.iter().all(|&s| s == total) {
            converged.get_or_insert_with(|| t_start.elapsed());
            if peers.iter().all(|&p| p == agents.len() - 1) {
                break;
            }
        }
        let progress: Vec<usize> = sizes.iter().chain(&peers).copied().collect();
        if progress != last.0 {
            last = (progress, Instant::now());
        }
        if last.1.elapsed() > STALL || Instant::now() > give_up {
            let why = if last.1.elapsed() > STALL { "no progress for 30 s" } else { "out of --duration" };
            bail!(
                "the mesh did not converge ({why}): twins hold {sizes:?} of {total} nodes, agents see {peers:?} of {} peers",
                agents.len() - 1
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let converged = converged.unwrap_or_else(|| t_start.elapsed());
    say(format!("twins converged: {total} nodes on every agent after {:.2} s", converged.as_secs_f64()));

    // Submit through the HTTP API of random agents.
    let client = reqwest::Client::new();
    let mut submitted: Vec<Submitted> = Vec::new();
    let mut injected = Vec::new();
    let mut rejected = 0usize;
    // The node that fails in the middle of the stream: where the last job
    // before it placed its last stage, so the failure meets work.
    let mut victim = "gamer-01".to_string();
    if let (Some(load), Some(gap)) = (a.load, gap_s) {
        say(format!(
            "offered load {:.0} % of the fabric: {jobs} jobs, Poisson arrivals every {:.0} ms on average ({:.2} fabric s; time scale {time_scale})",
            load * 100.0,
            gap * 1000.0,
            gap / time_scale
        ));
    }
    let last_node = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let mut pending = Vec::new();
    let mut next_at = Instant::now();
    for k in 0..jobs {
        if k + 3 == jobs / 3 {
            if let Some(n) = last_node.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                victim = n;
            }
            // The failure announces itself: the box throttles first (a
            // precursor), so stages can move before it goes down.
            let api = &agents[rng.random_range(0..agents.len())].api;
            let r = client
                .post(format!("http://{api}/v1/observe"))
                .json(&json!({"kind": "thermal_throttle", "node": victim, "duration_ms": 30_000}))
                .send()
                .await?;
            if r.status().is_success() {
                say(format!("precursor: {victim} throttles (thermal)"));
            }
        }
        if k == jobs / 3 {
            let victim = victim.as_str();
            let api = &agents[rng.random_range(0..agents.len())].api;
            let r = client
                .post(format!("http://{api}/v1/observe"))
                .json(&json!({"kind": "node_down", "node": victim, "duration_ms": 600_000}))
                .send()
                .await?;
            if r.status().is_success() {
                injected.push(victim.to_string());
                say(format!("injected node_down on {victim}"));
            }
        }
        let origin = &fab.nodes[rng.random_range(0..fab.nodes.len())];
        let doc = TEMPLATES[rng.random_range(0..TEMPLATES.len())]
            .replace("NAME", &format!("{k:03}"))
            .replace("CLUSTER", &origin.cluster)
            .replace("NODE", &origin.name);
        let target = &agents[rng.random_range(0..agents.len())];
        let by_name: BTreeMap<String, String> =
            agents.iter().map(|r| (r.agent.cfg.name.clone(), r.api.to_string())).collect();
        let (client, url, target_api) =
            (client.clone(), format!("http://{}/v1/jobs", target.api), target.api.to_string());
        let (origin_cluster, last_node) = (origin.cluster.clone(), last_node.clone());
        let submit = async move {
            let resp = client.post(url).body(doc).send().await?;
            let status = resp.status();
            let body: serde_json::Value = resp.json().await?;
            if !status.is_success() {
                return Ok::<_, anyhow::Error>(Err(format!("job {k}: {status} {}", body["error"])));
            }
            if k + 3 < jobs / 3 {
                if let Some(n) =
                    body["job"]["plan"]["placements"].as_array().and_then(|p| p.last()).and_then(|p| p["node"].as_str())
                {
                    *last_node.lock().unwrap_or_else(|e| e.into_inner()) = Some(n.to_string());
                }
            }
            let planner = body["planner"].as_str().unwrap_or_default();
            let api = by_name.get(planner).cloned().unwrap_or(target_api);
            Ok(Ok(Submitted { id: body["id"].as_str().unwrap_or_default().to_string(), api, origin_cluster }))
        };
        match gap_s {
            // Loaded: each job goes at its arrival time, whatever the
            // answers to the ones before.
            Some(gap) => {
                pending.push(tokio::spawn(submit));
                let u: f64 = rng.random_range(f64::EPSILON..1.0);
                next_at += Duration::from_secs_f64(-u.ln() * gap);
                tokio::time::sleep_until(next_at.into()).await;
            }
            None => {
                pending.push(tokio::spawn(std::future::ready(submit.await)));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    for p in pending {
        match p.await.context("a submission task")?? {
            Ok(s) => submitted.push(s),
            Err(e) => {
                rejected += 1;
                say(e);
            }
        }
    }

    // Live view until everything is final.
    let until = Instant::now() + Duration::from_secs_f64(a.duration);
    let mut finals: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    loop {
        for s in &submitted {
            if finals.contains_key(&s.id) {
                continue;
            }
            let j: serde_json::Value =
                client.get(format!("http://{}/v1/jobs/{}", s.api, s.id)).send().await?.json().await?;
            if matches!(j["state"].as_str(), Some("succeeded" | "failed")) {
                let lat = &j["verification"]["latency"];
                let clusters: std::collections::BTreeSet<&str> = j["plan"]["placements"]
                    .as_array()
                    .map(|ps| ps.iter().filter_map(|p| p["cluster"].as_str()).collect())
                    .unwrap_or_default();
                say(format!(
                    "  {} {:<24} planner {:<14} on {:<26} p50 {:>6.0} ms p90 {:>6.0} ms observed {:>6.0} ms ({:+.1}%)",
                    if j["verification"]["accepted"] == true { "✓" } else { "·" },
                    s.id,
                    j["planner"].as_str().unwrap_or("?"),
                    clusters.into_iter().collect::<Vec<_>>().join(","),
                    lat["predicted"].as_f64().unwrap_or(f64::NAN),
                    j["committed"]["p90_ms"].as_f64().unwrap_or(f64::NAN),
                    lat["observed"].as_f64().unwrap_or(f64::NAN),
                    lat["rel_error"].as_f64().unwrap_or(f64::NAN) * 100.0
                ));
                finals.insert(s.id.clone(), j);
            }
        }
        let accepted = finals.values().filter(|j| j["verification"]["accepted"] == true).count();
        say(format!(
            "progress {}/{} final · acceptance {:.0}% (✓ = within ±10% latency and ±20% energy)",
            finals.len(),
            submitted.len(),
            if finals.is_empty() { 0.0 } else { 100.0 * accepted as f64 / finals.len() as f64 }
        ));
        if finals.len() == submitted.len() || Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Summary.
    let mut per_cluster: BTreeMap<String, usize> = BTreeMap::new();
    let mut planners: BTreeMap<String, String> = BTreeMap::new();
    let mut errs: Vec<f64> = Vec::new();
    let mut near_origin = 0usize;
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let mut held: BTreeMap<String, Held> = BTreeMap::new();
    for s in &submitted {
        let Some(j) = finals.get(&s.id) else {
            *states.entry("unfinished".into()).or_default() += 1;
            continue;
        };
        *states.entry(j["state"].as_str().unwrap_or("?").to_string()).or_default() += 1;
        let planner = j["planner"].as_str().unwrap_or_default().to_string();
        let planner_cluster = agents.iter().find(|r| r.agent.cfg.name == planner).map(|r| r.agent.cfg.cluster.clone());
        if planner_cluster.as_deref() == Some(s.origin_cluster.as_str()) {
            near_origin += 1;
        }
        planners.insert(s.id.clone(), planner);
        if let Some(ps) = j["plan"]["placements"].as_array() {
            for p in ps {
                *per_cluster.entry(p["cluster"].as_str().unwrap_or("?").to_string()).or_default() += 1;
            }
        }
        if let Some(e) = j["verification"]["latency"]["rel_error"].as_f64() {
            errs.push(e.abs());
        }
        if let (Some("succeeded"), Some((observed, p50, p90))) = (j["state"].as_str(), held_of(j)) {
            held.entry("all".into()).or_default().add(observed, p50, p90);
            held.entry(kind_of(&s.id).to_string()).or_default().add(observed, p50, p90);
            // Jobs the agent acted on after committing (moved, restarted,
            // replicated ahead of a failure or a missed deadline): their
            // committed prediction no longer describes their run.
            let acted = j["actions"].as_array().is_some_and(|a| !a.is_empty());
            held.entry(if acted { "acted on" } else { "untouched" }.into()).or_default().add(observed, p50, p90);
        }
    }
    let half = errs.len() / 2;
    let mean = |v: &[f64]| if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
    let accepted = finals.values().filter(|j| j["verification"]["accepted"] == true).count();
    let actions: Vec<serde_json::Value> =
        finals.values().flat_map(|j| j["actions"].as_array().cloned().unwrap_or_default()).collect();
    let preemptive = actions.len();
    let by_kind = |k: &str| actions.iter().filter(|a| a["action"] == k).count();
    let kinds =
        format!("{} moved, {} restarted, {} replicated", by_kind("migrate"), by_kind("restart"), by_kind("replicate"));
    let acceptance = if finals.is_empty() { 0.0 } else { accepted as f64 / finals.len() as f64 };
    let summary = json!({
        "agents": agents.iter().map(|r| json!({"name": r.agent.cfg.name, "cluster": r.agent.cfg.cluster, "api": format!("http://{}", r.api)})).collect::<Vec<_>>(),
        "converged_s": converged.as_secs_f64(),
        "jobs_submitted": submitted.len(),
        "jobs_rejected": rejected,
        "states": states,
        "planner_of_job": planners,
        "planned_in_origin_cluster": near_origin,
        "stage_placements_per_cluster": per_cluster,
        "acceptance_rate": acceptance,
        "latency_error_first_half": mean(&errs[..half]),
        "latency_error_second_half": mean(&errs[half..]),
        "injected_failures": injected,
        "offered_load": a.load,
        "time_scale": time_scale,
        "predictions": held.iter().map(|(k, h)| (k.clone(), h.json())).collect::<BTreeMap<_, _>>(),
        "preemptive_moves": preemptive,
        "preemptive_actions": {"migrate": by_kind("migrate"), "restart": by_kind("restart"), "replicate": by_kind("replicate")},
        "errors": finals.iter().filter(|(_, j)| j["state"] == "failed").map(|(id, j)| (id.clone(), j["error"].clone())).collect::<BTreeMap<_, _>>(),
    });
    if text {
        println!("\nsummary");
        println!("  jobs            {} submitted, {} rejected, states {:?}", submitted.len(), rejected, states);
        println!("  routing         {near_origin} of {} planned by an agent in the origin's cluster", finals.len());
        println!("  placements      {per_cluster:?}");
        println!("  verification    {:.0}% within ±10% latency and ±20% energy", acceptance * 100.0);
        for (k, h) in &held {
            let v = h.json();
            println!(
                "  predictions     {k:<9} {:>3} jobs: {:5.1}% within ±10% of p50, {:5.1}% by p90, bias {:+.1}%",
                h.jobs,
                v["within_10_pct"].as_f64().unwrap_or(f64::NAN),
                v["p90_coverage_pct"].as_f64().unwrap_or(f64::NAN),
                v["bias_pct"].as_f64().unwrap_or(f64::NAN)
            );
        }
        println!("  preemptive      {preemptive} action(s) ahead of a forecast failure or missed deadline ({kinds})");
        for (id, j) in finals.iter().filter(|(_, j)| j["state"] == "failed") {
            println!("  failed          {id}: {}", j["error"].as_str().unwrap_or("?"));
        }
        println!(
            "  calibration     mean |latency error| {:.1}% (first half) → {:.1}% (second half)",
            mean(&errs[..half]) * 100.0,
            mean(&errs[half..]) * 100.0
        );
    } else {
        println!("{}", serde_json::to_string(&summary)?);
    }
    if a.stay {
        if text {
            println!("\nthe mesh keeps running; web views:");
            for r in &agents {
                println!("  http://{}/ui", r.api);
            }
            println!("Ctrl-C to stop");
        }
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    }
    // Every agent stops the way `twinmesh agent` does on SIGTERM.
    futures::future::join_all(agents.into_iter().map(Running::shutdown)).await;
    let _ = std::fs::remove_dir_all(&dir);
    if finals.len() < submitted.len() {
        bail!("{} jobs did not finish within {} s", submitted.len() - finals.len(), a.duration);
    }
    Ok(())
}
