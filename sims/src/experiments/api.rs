//! V5 — planning throughput through the agent's HTTP API, as the seed
//! measured it (200 jobs; the prototype: 10.8 jobs/s, 92.7 ms per job): a
//! `twinmesh agent` process with default settings, 200 durable submissions
//! one after another (time per job) and then 200 from 8 clients at once
//! (jobs/s). Needs the `twinmesh` binary beside `twinmesh-sims` (`cargo
//! build --release -p twinmesh-agent`) or named by `TWINMESH_BIN`; without
//! it the experiment says so and gives no rows.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::stats::quantile;
use super::svg::Chart;
use super::{Ctx, Experiment, Row, SummaryRow, find};

pub fn experiments() -> Vec<Experiment> {
    vec![Experiment {
        name: "v5-api",
        title: "V5 planning throughput through the agent's HTTP API (200 durable jobs)",
        run,
        charts: || {
            vec![
                Chart::bars("jobs/s", "phase", None, "jobs_per_s"),
                Chart::bars("ms per job (p50)", "phase", None, "p50_ms"),
            ]
        },
        verdict,
    }]
}

/// One agent at a time: replications would otherwise share the cores.
static ONE_AGENT: Mutex<()> = Mutex::new(());

fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TWINMESH_BIN") {
        return Some(PathBuf::from(p));
    }
    let p = std::env::current_exe().ok()?.with_file_name("twinmesh");
    p.exists().then_some(p)
}

struct Agent {
    child: std::process::Child,
    addr: String,
    dir: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(bin: &PathBuf, seed: u64) -> anyhow::Result<Agent> {
    let dir = std::env::temp_dir().join(format!("twinmesh-v5-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut child = Command::new(bin)
        .args(["agent", "--node", "dc-x86-01", "--cluster", "dc-core", "--api", "127.0.0.1:0"])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir"])
        .arg(&dir)
        .env("TWINMESH_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let out = child.stdout.take().expect("piped");
    let mut agent = Agent { child, addr: String::new(), dir };
    let mut lines = BufReader::new(out).lines();
    for line in lines.by_ref() {
        let line = line?;
        if let Some(a) = line.strip_prefix("api http://") {
            agent.addr = a.trim_end_matches('/').to_string();
            // Keep reading: an agent whose stdout is closed dies on its
            // next line.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok(agent);
        }
    }
    bail!("{} exited before printing its API address", bin.display())
}

/// One POST on a kept-alive connection: the status.
fn post(conn: &mut BufReader<TcpStream>, path: &str, body: &str) -> anyhow::Result<u16> {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.get_mut().write_all(req.as_bytes())?;
    let mut status = String::new();
    conn.read_line(&mut status)?;
    let code: u16 = status.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("no HTTP status")?;
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        conn.read_line(&mut h)?;
        if h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse()?;
        }
    }
    let mut body = vec![0; len];
    conn.read_exact(&mut body)?;
    Ok(code)
}

fn connect(addr: &str) -> anyhow::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_nodelay(true)?;
    Ok(BufReader::new(s))
}

const CLUSTERS: [&str; 7] =
    ["dc-core", "prosumer-mining", "campus-lab", "gamer-pc", "phone-pan-1", "phone-pan-2", "edge-microdc"];

fn doc(seed: u64, phase: &str, i: usize) -> String {
    format!(
        r#"{{"apiVersion":"twinmesh.io/v1","metadata":{{"name":"v5-{phase}-{seed}-{i}","deadline_ms":5000,"origin":{{"cluster":"{}"}}}},"spec":{{"stages":[
          {{"id":"ingest","compute":{{"cpu":1,"mem_gb":0.5,"duration_ms":150}},"output_mb":4}},
          {{"id":"work","compute":{{"cpu":2,"mem_gb":2,"duration_ms":{}}},"predecessor":"ingest"}}]}}}}"#,
        CLUSTERS[i % CLUSTERS.len()],
        800 + 4 * i
    )
}

fn run(_ctx: Ctx, seed: u64) -> anyhow::Result<Vec<Row>> {
    let Some(bin) = binary() else {
        eprintln!(
            "v5-api: no twinmesh binary beside twinmesh-sims; build it (cargo build --release -p twinmesh-agent) or set TWINMESH_BIN"
        );
        return Ok(Vec::new());
    };
    let _one = ONE_AGENT.lock().unwrap_or_else(|e| e.into_inner());
    let agent = start(&bin, seed)?;
    const JOBS: usize = 200;
    // Sequential: the time of each durable submission (planned, stored).
    let mut conn = connect(&agent.addr)?;
    let mut ms = Vec::with_capacity(JOBS);
    let t0 = Instant::now();
    for i in 0..JOBS {
        let t = Instant::now();
        let code = post(&mut conn, "/v1/jobs", &doc(seed, "seq", i))?;
        if code != 202 && code != 200 {
            bail!("submission {i} answered {code}");
        }
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let seq_s = t0.elapsed().as_secs_f64();
    ms.sort_by(f64::total_cmp);
    let mut rows = vec![
        Row::new(vec![("phase", "sequential".into())])
            .with("jobs_per_s", JOBS as f64 / seq_s)
            .with("mean_ms", ms.iter().sum::<f64>() / JOBS as f64)
            .with("p50_ms", quantile(&ms, 0.5))
            .with("p99_ms", quantile(&ms, 0.99)),
    ];
    // Eight clients at once.
    let t0 = Instant::now();
    let lat: Vec<f64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|c| {
                let addr = agent.addr.clone();
                s.spawn(move || -> anyhow::Result<Vec<f64>> {
                    let mut conn = connect(&addr)?;
                    let mut v = Vec::new();
                    for i in (c..JOBS).step_by(8) {
                        let t = Instant::now();
                        let code = post(&mut conn, "/v1/jobs", &doc(seed, "par", i))?;
                        if code != 202 && code != 200 {
                            bail!("submission {i} answered {code}");
                        }
                        v.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    Ok(v)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("client thread")).collect::<anyhow::Result<Vec<_>>>()
    })?
    .into_iter()
    .flatten()
    .collect();
    let par_s = t0.elapsed().as_secs_f64();
    let mut lat = lat;
    lat.sort_by(f64::total_cmp);
    rows.push(
        Row::new(vec![("phase", "8 clients".into())])
            .with("jobs_per_s", JOBS as f64 / par_s)
            .with("mean_ms", lat.iter().sum::<f64>() / JOBS as f64)
            .with("p50_ms", quantile(&lat, 0.5))
            .with("p99_ms", quantile(&lat, 0.99)),
    );
    Ok(rows)
}

fn verdict(sum: &[SummaryRow]) -> Vec<String> {
    let get = |p: &str, m: &str| find(sum, m, &[("phase", p)]).map(|r| r.stats.mean);
    match (get("sequential", "mean_ms"), get("sequential", "jobs_per_s"), get("8 clients", "jobs_per_s")) {
        (Some(ms), Some(seq), Some(par)) => vec![format!(
            "{ms:.2} ms per durable job one at a time ({seq:.0} jobs/s), {par:.0} jobs/s from 8 clients — the prototype: 92.7 ms per job, 10.8 jobs/s"
        )],
        _ => vec!["not run: no twinmesh binary beside twinmesh-sims (cargo build --release -p twinmesh-agent, or set TWINMESH_BIN)".into()],
    }
}
