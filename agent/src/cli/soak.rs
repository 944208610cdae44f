//! `twinmesh bench soak`: a default agent under a steady stream of
//! durable submissions for minutes; its resident memory and database size
//! are sampled and must level off (retention bounds what is kept). Writes
//! a CSV and an SVG plot a person can look at.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::bench::{BENCH_JOB, memory, spawn_agent, tempdir};

/// One sample: seconds since start, RSS (MiB), database (MB), accepted.
type Sample = (f64, f64, f64, u64);

pub(super) async fn run(rate: f64, seconds: f64, every: f64, plot: &Path) -> anyhow::Result<serde_json::Value> {
    let dir = tempdir()?;
    let data = dir.join("a");
    let args: Vec<String> = ["--node", "edge-srv-01", "--cluster", "edge-microdc", "--api", "127.0.0.1:0"]
        .iter()
        .map(ToString::to_string)
        .chain(["--listen".into(), "/ip4/127.0.0.1/tcp/0".into(), "--data-dir".into(), data.display().to_string()])
        .collect();
    let (agent, api, _) = spawn_agent(&args)?;
    let pid = agent.0.id();
    let client = reqwest::Client::new();
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let n = (rate * seconds).round() as u64;
    let (a, r, c, api2) = (accepted.clone(), refused.clone(), client.clone(), api.clone());
    let feeder = tokio::spawn(async move {
        for k in 0..n {
            let due = start + Duration::from_secs_f64(k as f64 / rate.max(1e-9));
            tokio::time::sleep_until(due.into()).await;
            let (a, r, c, api) = (a.clone(), r.clone(), c.clone(), api2.clone());
            tokio::spawn(async move {
                let body = BENCH_JOB.replace("NAME", &format!("soak-{k}"));
                let ok = c
                    .post(format!("{api}/v1/jobs?policy=greedy"))
                    .body(body)
                    .send()
                    .await
                    .is_ok_and(|x| x.status().as_u16() == 202);
                if ok {
                    a.fetch_add(1, Ordering::Relaxed)
                } else {
                    r.fetch_add(1, Ordering::Relaxed)
                };
            });
        }
    });
    let mut samples: Vec<Sample> = Vec::new();
    let db = data.join("twinmesh.redb");
    while start.elapsed().as_secs_f64() < seconds {
        tokio::time::sleep(Duration::from_secs_f64(every)).await;
        let (rss, _, _) = memory(pid)?;
        let size = std::fs::metadata(&db).map_or(0, |m| m.len());
        let s =
            (start.elapsed().as_secs_f64(), rss as f64 / 1024.0, size as f64 / 1e6, accepted.load(Ordering::Relaxed));
        eprintln!("t={:>5.0} s  RSS {:>6.1} MiB  database {:>6.1} MB  accepted {}", s.0, s.1, s.2, s.3);
        samples.push(s);
    }
    feeder.abort();
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
    let mut csv = String::from("seconds,rss_mib,database_mb,accepted\n");
    for s in &samples {
        let _ = writeln!(csv, "{:.1},{:.2},{:.2},{}", s.0, s.1, s.2, s.3);
    }
    std::fs::write(plot.with_extension("csv"), csv).context("writing the CSV")?;
    std::fs::write(plot, svg(&samples, rate)).with_context(|| format!("writing {}", plot.display()))?;
    let half = samples.len() / 2;
    let max = |v: &[Sample], f: fn(&Sample) -> f64| v.iter().map(f).fold(0.0, f64::max);
    Ok(json!({
        "benchmark": "soak",
        "rate_per_s": rate,
        "seconds": seconds,
        "accepted": accepted.load(Ordering::Relaxed),
        "refused": refused.load(Ordering::Relaxed),
        "rss_max_mib": max(&samples, |s| s.1),
        "rss_max_first_half_mib": max(&samples[..half], |s| s.1),
        "rss_max_second_half_mib": max(&samples[half..], |s| s.1),
        "database_max_mb": max(&samples, |s| s.2),
        "database_end_mb": samples.last().map_or(0.0, |s| s.2),
        "plot": plot.display().to_string(),
        "settings": "defaults (time scale 0.01, 2,000 finished jobs kept, at most 2,000 in flight)",
    }))
}

/// Two lines over time, each on its own scale: RSS (MiB) and database
/// size (MB).
fn svg(samples: &[Sample], rate: f64) -> String {
    let (w, h, pad) = (720.0, 360.0, 50.0);
    let t_max = samples.last().map_or(1.0, |s| s.0).max(1.0);
    let rss_max = samples.iter().map(|s| s.1).fold(1.0, f64::max) * 1.2;
    let db_max = samples.iter().map(|s| s.2).fold(1.0, f64::max) * 1.2;
    let x = |t: f64| pad + t / t_max * (w - 2.0 * pad);
    let y = |v: f64, m: f64| h - pad - v / m * (h - 2.0 * pad);
    let line = |f: &dyn Fn(&Sample) -> (f64, f64)| {
        samples.iter().map(f).map(|(a, b)| format!("{a:.1},{b:.1}")).collect::<Vec<_>>().join(" ")
    };
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{pad}" y="20" font-size="14">twinmesh agent offered {rate:.0} jobs/s (default settings: beyond 2,000 in flight, 503 retry-later)</text>
<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="black"/>
<text x="{r}" y="{lb}" text-anchor="end">{t_max:.0} s</text><text x="{pad}" y="{lb}">0</text>
"#,
        b = h - pad,
        r = w - pad,
        lb = h - pad + 16.0,
    );
    let _ = writeln!(
        out,
        r#"<polyline fill="none" stroke="steelblue" stroke-width="2" points="{}"/>"#,
        line(&|s| (x(s.0), y(s.1, rss_max)))
    );
    let _ = writeln!(
        out,
        r##"<polyline fill="none" stroke="darkorange" stroke-width="2" points="{}"/>"##,
        line(&|s| (x(s.0), y(s.2, db_max)))
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" fill="steelblue">RSS (MiB), top {rss_max:.0}</text><text x="{}" y="{}" fill="darkorange">database (MB), top {db_max:.0}</text></svg>"#,
        pad + 10.0,
        pad + 10.0,
        pad + 10.0,
        pad + 26.0
    );
    out
}
