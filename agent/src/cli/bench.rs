//! `twinmesh bench` — the agent-level benchmarks behind docs/benchmarks.md:
//! gossip delivery across many local agents, API plan latency and durable
//! submissions per second, idle footprint with a 1,000-node twin.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use twinmesh_common::fabric;
use twinmesh_common::failures::FailureKind;
use twinmesh_common::policy::Policy;

use super::Output;
use super::agent::{AgentArgs, Running, start};

/// Arguments of `twinmesh bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: What,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Text, global = true)]
    output: Output,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Time for a failure event to reach every agent of a local mesh.
    Gossip {
        /// Agents (in this process, on loopback).
        #[arg(long, default_value_t = 20)]
        agents: usize,
        /// Events to time.
        #[arg(long, default_value_t = 50)]
        rounds: usize,
    },
    /// API plan latency (sequential dry runs) and durable submissions/s
    /// (concurrent), against an agent process.
    Api {
        /// Sequential dry-run requests.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Durable submissions.
        #[arg(long, default_value_t = 5000)]
        jobs: usize,
        /// Concurrent clients for the durable phase.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Paced phase: submissions per second (open loop, each request on
        /// its own task), for `--paced-seconds`; its latency quantiles.
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        /// Length of the paced phase (s).
        #[arg(long, default_value_t = 10.0)]
        paced_seconds: f64,
    },
    /// The core's hot paths in this binary (for comparing architectures,
    /// e.g. under QEMU): plan latency and DES throughput.
    Core {
        /// Synthetic fabric size.
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
    },
    /// A default agent under sustained submissions: resident memory and
    /// database size over time (they must level off), with an SVG plot.
    Soak {
        /// Submissions per second.
        #[arg(long, default_value_t = 300.0)]
        rate: f64,
        /// Seconds.
        #[arg(long, default_value_t = 600.0)]
        seconds: f64,
        /// Sample every this many seconds.
        #[arg(long, default_value_t = 10.0)]
        every: f64,
        /// Where to write the SVG plot (and a CSV beside it).
        #[arg(long, default_value = "soak.svg")]
        plot: PathBuf,
    },
    /// From a precursor of failure to the preemptive action, against a
    /// default agent: the agent's own figure and the client's.
    Reaction {
        /// Rounds (one job and one precursor each).
        #[arg(long, default_value_t = 100)]
        rounds: usize,
    },
    /// Resident memory and CPU of an idle agent whose twin holds a
    /// synthetic fabric, with peers gossiping telemetry.
    Idle {
        /// Nodes in the synthetic fabric.
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// Agent processes (each owns one cluster's nodes).
        #[arg(long, default_value_t = 10)]
        agents: usize,
        /// Seconds to measure.
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
    },
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)]
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let result = match a.what {
        What::Gossip { agents, rounds } => gossip(agents, rounds).await?,
        What::Api { requests, jobs, concurrency, rate, paced_seconds } => {
            api(requests, jobs, concurrency, rate, paced_seconds).await?
        }
        What::Idle { nodes, agents, seconds } => idle(nodes, agents, seconds).await?,
        What::Soak { rate, seconds, every, plot } => super::soak::run(rate, seconds, every, &plot).await?,
        What::Core { nodes } => core(nodes)?,
        What::Reaction { rounds } => super::reaction::run(rounds).await?,
    };
    match a.output {
        Output::Json => println!("{}", serde_json::to_string(&result)?),
        Output::Text => {
            for (k, v) in result.as_object().into_iter().flatten() {
                println!("{k:<28} {v}");
            }
        }
    }
    Ok(())
}

fn key_file(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let p = dir.join("mesh.key");
    std::fs::write(&p, "ab".repeat(32))?;
    Ok(p)
}

fn agent_args(
    node: &str,
    cluster: &str,
    dir: &std::path::Path,
    key: &std::path::Path,
    boot: Vec<libp2p::Multiaddr>,
) -> AgentArgs {
    // Defaults, but for loopback addresses, a private data directory and
    // the mesh key; telemetry is off so only the measured traffic flows.
    let mut a = AgentArgs::new(node, cluster);
    a.api = "127.0.0.1:0".parse().expect("addr");
    a.listen = "/ip4/127.0.0.1/tcp/0".parse().expect("addr");
    a.bootstrap = boot;
    a.data_dir = dir.join(node);
    a.mesh_key_file = Some(key.to_path_buf());
    a.telemetry_interval = 3600.0;
    a.sync_interval = 1.0;
    a.policy = Policy::Greedy;
    a.virtual_hardware = true;
    a
}

async fn gossip(n: usize, rounds: usize) -> anyhow::Result<serde_json::Value> {
    let fab = fabric::reference();
    if n < 2 || n > fab.nodes.len() {
        bail!("--agents must be 2–{}", fab.nodes.len());
    }
    let dir = tempdir()?;
    let key = key_file(&dir)?;
    let mut agents: Vec<Running> = Vec::new();
    for node in fab.nodes.iter().take(n) {
        let boot = agents.first().map(|r| r.mesh.clone()).unwrap_or_default();
        agents.push(start(agent_args(&node.name, &node.cluster, &dir, &key, boot)).await?);
    }
    let t0 = Instant::now();
    while !agents.iter().all(|r| r.agent.peers().len() == n - 1 && r.agent.twin_len() == n) {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("mesh of {n} agents did not form in 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let formed = t0.elapsed();
    // Let gossipsub's mesh settle past its first heartbeats.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut delays = Vec::new();
    let mut lost = 0usize;
    for r in 0..rounds {
        let src = &agents[r % n];
        let ev = src.agent.observe_failure(&src.agent.cfg.name, FailureKind::ThermalThrottle, 1).await;
        let sent = Instant::now();
        let mut pending: Vec<&Arc<crate::node::Agent>> =
            agents.iter().filter(|x| x.agent.cfg.name != src.agent.cfg.name).map(|x| &x.agent).collect();
        while !pending.is_empty() && sent.elapsed() < Duration::from_secs(10) {
            pending.retain(|a| {
                if a.has_failure(&ev.id) {
                    delays.push(sent.elapsed().as_secs_f64() * 1000.0);
                    false
                } else {
                    true
                }
            });
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        lost += pending.len();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let deliveries = delays.len();
    Ok(json!({
        "benchmark": "gossip delivery",
        "agents": n,
        "events": rounds,
        "deliveries": deliveries,
        "undelivered_after_10s": lost,
        "mesh_formed_s": formed.as_secs_f64(),
        "delivery_p50_ms": quantile(&mut delays, 0.5),
        "delivery_p99_ms": quantile(&mut delays, 0.99),
        "delivery_max_ms": quantile(&mut delays, 1.0),
    }))
}

/// Median time per call of `f` over `reps` batches of `n` calls (µs).
fn time_us(reps: usize, n: usize, mut f: impl FnMut()) -> f64 {
    let mut per = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        per.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    quantile(&mut per, 0.5)
}

fn core(nodes: usize) -> anyhow::Result<serde_json::Value> {
    use twinmesh_common::des::{SimConfig, Simulator};
    use twinmesh_common::policy::PolicyConfig;
    use twinmesh_common::predict::Assignment;
    let f = fabric::synthetic(nodes, 42);
    let view = f.view();
    let origin = f.clusters.iter().find(|c| c.name.contains("phone-pan")).context("phone cluster")?;
    let job =
        twinmesh_common::spec::parse_job(&BENCH_JOB.replace("NAME", "core").replace("edge-microdc", &origin.name))?;
    let cfg = PolicyConfig::default();
    let greedy = time_us(7, 200, || {
        std::hint::black_box(Policy::Greedy.plan(&view, &job, &cfg).expect("plan"));
    });
    let cvar = time_us(5, 20, || {
        std::hint::black_box(Policy::Cvar.plan(&view, &job, &cfg).expect("plan"));
    });
    let plan = Policy::Greedy.plan(&view, &job, &cfg)?;
    let assign: Vec<Assignment> = plan
        .placements
        .iter()
        .map(|p| Assignment { node: view.node_index(&p.node).expect("node"), format: p.format })
        .collect();
    let o = view.origin(&job).context("origin")?;
    let jobs = 10_000usize;
    let des_us = time_us(5, 1, || {
        let mut sim = Simulator::new(&view, SimConfig::default());
        for k in 0..jobs {
            sim.submit(&job, o, &assign, &[], k as f64 * 2.0);
        }
        std::hint::black_box(sim.run());
    });
    Ok(json!({
        "benchmark": "core",
        "arch": std::env::consts::ARCH,
        "fabric_nodes": nodes,
        "greedy_plan_us": greedy,
        "cvar_plan_us": cvar,
        "des_jobs_per_s": jobs as f64 / (des_us / 1e6),
    }))
}

pub(super) struct Guard(pub(super) Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `twinmesh agent` as a child process; returns it and its API URL
/// and mesh address.
pub(super) fn spawn_agent(args: &[String]) -> anyhow::Result<(Guard, String, String)> {
    use std::io::BufRead;
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("agent")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .context("spawning an agent")?;
    let out = child.stdout.take().context("agent stdout")?;
    let guard = Guard(child);
    let mut lines = std::io::BufReader::new(out).lines();
    let (mut api, mut mesh) = (None, None);
    while api.is_none() || mesh.is_none() {
        let l = lines.next().context("agent exited before printing its addresses")??;
        if let Some(x) = l.strip_prefix("api ") {
            api = Some(x.to_string());
        } else if let Some(x) = l.strip_prefix("mesh ") {
            mesh = Some(x.to_string());
        }
    }
    // Keep draining stdout so the child never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    Ok((guard, api.unwrap_or_default(), mesh.unwrap_or_default()))
}

pub(super) fn tempdir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("twinmesh-bench-{}-{}", std::process::id(), crate::node::now_ms()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

pub(super) const BENCH_JOB: &str = r#"{"apiVersion":"twinmesh.io/v1","metadata":{"name":"NAME","deadline_ms":60000,"origin":{"cluster":"edge-microdc"}},"spec":{"stages":[
 {"id":"decode","compute":{"cpu":2,"mem_gb":1,"duration_ms":1500},"output_mb":20},
 {"id":"detect","compute":{"cpu":4,"mem_gb":8,"duration_ms":6000,"gpu_vram_gb":8},"predecessor":"decode","output_mb":1},
 {"id":"notify","compute":{"cpu":0.5,"mem_gb":0.25,"duration_ms":200},"predecessor":"detect"}]}}"#;

async fn api(
    requests: usize,
    jobs: usize,
    concurrency: usize,
    rate: f64,
    paced_seconds: f64,
) -> anyhow::Result<serde_json::Value> {
    let dir = tempdir()?;
    let args: Vec<String> = [
        "--node",
        "edge-srv-01",
        "--cluster",
        "edge-microdc",
        "--api",
        "127.0.0.1:0",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--policy",
        "greedy",
        "--data-dir",
    ]
    .iter()
    .map(ToString::to_string)
    .chain([dir.join("a").display().to_string()])
    .collect();
    let (_agent, api, _) = spawn_agent(&args)?;
    let client = reqwest::Client::new();
    // Phase 1: sequential dry-run plans (greedy).
    let mut lat = Vec::with_capacity(requests);
    for k in 0..requests {
        let body = BENCH_JOB.replace("NAME", &format!("dry-{k}"));
        let t = Instant::now();
        let r = client.post(format!("{api}/v1/jobs?dry_run=true&policy=greedy")).body(body).send().await?;
        if r.status().as_u16() != 202 {
            bail!("dry run answered {}", r.status());
        }
        r.bytes().await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    // Phase 2: durable submissions from concurrent clients.
    let t = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, api, next) = (client.clone(), api.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if k >= jobs {
                    return acked;
                }
                let body = BENCH_JOB.replace("NAME", &format!("durable-{k}"));
                let t = Instant::now();
                if let Ok(r) = client.post(format!("{api}/v1/jobs?policy=greedy")).body(body).send().await {
                    if r.status().as_u16() == 202 {
                        acked.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                }
            }
        }));
    }
    let mut durable_lat = Vec::new();
    for t in tasks {
        durable_lat.extend(t.await?);
    }
    let acked = durable_lat.len();
    let secs = t.elapsed().as_secs_f64();
    // Phase 3: an open-loop stream at `rate`, while phase 2's jobs run.
    let n = (rate * paced_seconds).round() as usize;
    let mut paced = Vec::with_capacity(n);
    let start = Instant::now();
    for k in 0..n {
        let due = start + Duration::from_secs_f64(k as f64 / rate.max(1e-9));
        tokio::time::sleep_until(due.into()).await;
        let (client, api) = (client.clone(), api.clone());
        paced.push(tokio::spawn(async move {
            let body = BENCH_JOB.replace("NAME", &format!("paced-{k}"));
            let t = Instant::now();
            let ok = client
                .post(format!("{api}/v1/jobs?policy=greedy"))
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status().as_u16() == 202);
            ok.then(|| t.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut paced_lat = Vec::new();
    for t in paced {
        paced_lat.extend(t.await?);
    }
    let paced_ok = paced_lat.len();
    drop(_agent);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "benchmark": "api",
        "dry_run_requests": requests,
        "plan_p50_ms": quantile(&mut lat, 0.5),
        "plan_p99_ms": quantile(&mut lat, 0.99),
        "durable_jobs": acked,
        "durable_seconds": secs,
        "durable_jobs_per_s": acked as f64 / secs,
        "durable_p50_ms": quantile(&mut durable_lat, 0.5),
        "durable_p99_ms": quantile(&mut durable_lat, 0.99),
        "concurrency": concurrency,
        "paced_rate_per_s": rate,
        "paced_accepted": paced_ok,
        "paced_of": n,
        "paced_p50_ms": quantile(&mut paced_lat, 0.5),
        "paced_p99_ms": quantile(&mut paced_lat, 0.99),
        "time_scale": "0.01 (the default)",
    }))
}

/// (VmRSS, RssAnon, RssFile) in KiB.
pub(super) fn memory(pid: u32) -> anyhow::Result<(u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .with_context(|| name.to_string())
    };
    Ok((field("VmRSS:")?, field("RssAnon:")?, field("RssFile:")?))
}

fn proc_stats(pid: u32) -> anyhow::Result<(u64, u64)> {
    let rss_kib = memory(pid)?.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after ")".
    let ticks = f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    Ok((rss_kib, ticks))
}

async fn idle(nodes: usize, n: usize, seconds: f64) -> anyhow::Result<serde_json::Value> {
    let fab = fabric::synthetic(nodes, 42);
    let dir = tempdir()?;
    let key = key_file(&dir)?;
    let mut procs: Vec<(Guard, String, String)> = Vec::new();
    for c in fab.clusters.iter().take(n) {
        let node = fab.nodes.iter().find(|x| x.cluster == c.name).context("empty cluster")?;
        let mut args: Vec<String> = vec![
            "--node".into(),
            node.name.clone(),
            "--cluster".into(),
            c.name.clone(),
            "--own-cluster".into(),
            "--synthetic-fabric".into(),
            nodes.to_string(),
            "--api".into(),
            "127.0.0.1:0".into(),
            "--listen".into(),
            "/ip4/127.0.0.1/tcp/0".into(),
            "--mesh-key-file".into(),
            key.display().to_string(),
            "--data-dir".into(),
            dir.join(&node.name).display().to_string(),
        ];
        if let Some((_, _, mesh)) = procs.first() {
            args.push("--bootstrap".into());
            args.push(mesh.clone());
        }
        procs.push(spawn_agent(&args)?);
    }
    let client = reqwest::Client::new();
    let api0 = procs[0].1.clone();
    let expected: usize =
        fab.clusters.iter().take(n).map(|c| fab.nodes.iter().filter(|x| x.cluster == c.name).count()).sum();
    let t0 = Instant::now();
    loop {
        let v: serde_json::Value = client.get(format!("{api0}/v1/twin")).send().await?.json().await?;
        if v["nodes"].as_array().map_or(0, Vec::len) >= expected {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("agent 0's twin did not reach {expected} records");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let converged = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = procs[0].0.0.id();
    let (_, ticks0) = proc_stats(pid)?;
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let (rss_kib, ticks1) = proc_stats(pid)?;
    let (_, anon_kib, file_kib) = memory(pid)?;
    // Proportional set size: shared pages (the binary) split among the
    // processes mapping them.
    let pss_kib: u64 = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Pss:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0);
    let wall = start.elapsed().as_secs_f64();
    let cpu_pct = (ticks1 - ticks0) as f64 / 100.0 / wall * 100.0;
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "benchmark": "idle agent",
        "fabric_nodes": nodes,
        "twin_records": expected,
        "agents": n,
        "twin_converged_s": converged.as_secs_f64(),
        "rss_mib": rss_kib as f64 / 1024.0,
        "rss_anon_mib": anon_kib as f64 / 1024.0,
        "rss_file_mib": file_kib as f64 / 1024.0,
        "pss_mib": pss_kib as f64 / 1024.0,
        "cpu_percent_of_a_core": cpu_pct,
        "measured_s": wall,
    }))
}
