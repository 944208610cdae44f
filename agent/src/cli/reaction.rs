//! `twinmesh bench reaction`: how fast an agent acts on a precursor of
//! failure. Against an agent process with default settings, each round submits a job
//! with one long stage, waits until it runs, reports a thermal throttle on
//! its node (`POST /v1/observe`) and waits for the preemptive action. Two
//! figures per round: the agent's own (from the precursor's arrival to the
//! decision, `reaction_ms` of the action) and the client's (from sending
//! the observation to the action showing in `GET /v1/jobs/{id}`).

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};

use super::bench::spawn_agent;

const JOB: &str = r#"{"apiVersion":"twinmesh.io/v1","metadata":{"name":"NAME","origin":{"cluster":"dc-core"}},"spec":{"stages":[{"id":"long","compute":{"cpu":1,"mem_gb":1,"duration_ms":600000}}]}}"#;

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)]
}

pub async fn run(rounds: usize) -> anyhow::Result<Value> {
    let dir = super::bench::tempdir()?;
    let args: Vec<String> = ["--node", "dc-x86-01", "--cluster", "dc-core", "--api", "127.0.0.1:0", "--listen"]
        .iter()
        .map(ToString::to_string)
        .chain(["/ip4/127.0.0.1/tcp/0".into(), "--data-dir".into(), dir.join("a").display().to_string()])
        .collect();
    let (_agent, api, _) = spawn_agent(&args)?;
    let client = reqwest::Client::new();
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    let mut missed = 0usize;
    for k in 0..rounds {
        let r = client.post(format!("{api}/v1/jobs")).body(JOB.replace("NAME", &format!("r{k:04}"))).send().await?;
        let v: Value = r.json().await?;
        let Some(id) = v["job"]["id"].as_str().map(str::to_string) else { bail!("submission refused: {v}") };
        let node = v["job"]["plan"]["placements"][0]["node"].as_str().unwrap_or_default().to_string();
        let t0 = Instant::now();
        loop {
            let j: Value = client.get(format!("{api}/v1/jobs/{id}")).send().await?.json().await?;
            if j["state"] == "running" {
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("job {id} did not start in 30 s: {j}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Let the run be booked as running before the precursor comes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sent = Instant::now();
        let r = client
            .post(format!("{api}/v1/observe"))
            .body(format!(r#"{{"kind":"thermal_throttle","node":"{node}","duration_ms":1000}}"#))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("observe answered {}", r.status());
        }
        let mut seen = false;
        while sent.elapsed() < Duration::from_secs(5) {
            let j: Value = client.get(format!("{api}/v1/jobs/{id}")).send().await?.json().await?;
            if let Some(a) = j["actions"].as_array().and_then(|a| a.first()) {
                outside.push(sent.elapsed().as_secs_f64() * 1000.0);
                if let Some(ms) = a["reaction_ms"].as_f64() {
                    inside.push(ms);
                }
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        missed += usize::from(!seen);
        // Past the precursor's window (10 fabric s: 100 ms of wall time at
        // the default time scale) before the next round.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(_agent);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "benchmark": "reaction to a precursor (default agent settings)",
        "rounds": rounds,
        "acted": inside.len(),
        "no_action_in_5s": missed,
        "agent_p50_ms": quantile(&mut inside, 0.5),
        "agent_p99_ms": quantile(&mut inside, 0.99),
        "agent_max_ms": quantile(&mut inside, 1.0),
        "client_p50_ms": quantile(&mut outside, 0.5),
        "client_p99_ms": quantile(&mut outside, 0.99),
    }))
}
