//! `twinmesh-sims autoscale`: KubeTwin's autoscaling scenario on the
//! service DES (`common::autoscale`): a fixed minimum, the reactive HPA
//! rule, and predictive scaling (the twin's forecast of the arrival rate,
//! checked in the DES before it is applied).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use twinmesh_common::autoscale::{Scaling, ServiceCase, ServiceRun, simulate};

/// Arguments of `autoscale`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Seed of arrivals and service times.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write `autoscale.csv` (per mode), `autoscale-replicas.csv` and
    /// `autoscale.svg` here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let case = ServiceCase::kubetwin(args.seed);
    let mut runs: Vec<(Scaling, ServiceRun, f64)> = Vec::new();
    for mode in Scaling::ALL {
        let t = Instant::now();
        let r = simulate(&case, mode);
        runs.push((mode, r, t.elapsed().as_secs_f64()));
    }
    println!(
        "{:<18} {:>8} {:>7} {:>8} {:>8} {:>10} {:>8} {:>8} {:>12}",
        "mode", "requests", "late %", "p50 ms", "p99 ms", "replica-s", "actions", "peak", "requests/s"
    );
    let mut csv = String::from("mode,requests,late,late_pct,p50_ms,p99_ms,replica_s,actions,peak_replicas,wall_s\n");
    for (mode, r, wall) in &runs {
        let peak = r.replicas.iter().map(|x| x.1).max().unwrap_or(0);
        println!(
            "{:<18} {:>8} {:>6.2}% {:>8.0} {:>8.0} {:>10.0} {:>8} {:>8} {:>12.0}",
            mode.name(),
            r.requests,
            100.0 * r.late as f64 / r.requests.max(1) as f64,
            r.p50_ms,
            r.p99_ms,
            r.replica_s,
            r.actions,
            peak,
            r.requests as f64 / wall.max(1e-9)
        );
        let _ = writeln!(
            csv,
            "{},{},{},{:.3},{:.1},{:.1},{:.1},{},{},{:.4}",
            mode.name(),
            r.requests,
            r.late,
            100.0 * r.late as f64 / r.requests.max(1) as f64,
            r.p50_ms,
            r.p99_ms,
            r.replica_s,
            r.actions,
            peak,
            wall
        );
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(dir.join("autoscale.csv"), csv)?;
        let mut reps = String::from("mode,time_s,replicas\n");
        for (mode, r, _) in &runs {
            for (t, n) in &r.replicas {
                let _ = writeln!(reps, "{},{:.1},{}", mode.name(), t / 1000.0, n);
            }
        }
        std::fs::write(dir.join("autoscale-replicas.csv"), reps)?;
        std::fs::write(dir.join("autoscale.svg"), plot(&runs))?;
        println!("wrote {}/autoscale{{.csv,-replicas.csv,.svg}}", dir.display());
    }
    Ok(())
}

const COLOURS: [&str; 3] = ["#999999", "#e08a1e", "#2a6fdb"];

fn plot(runs: &[(Scaling, ServiceRun, f64)]) -> String {
    let (pw, ph, top, left) = (520.0, 220.0, 40.0, 60.0);
    let end = runs.iter().map(|r| r.1.end_ms).fold(1.0, f64::max) / 1000.0;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#,
        left * 2.0 + pw * 2.0 + 20.0,
        top + ph + 80.0
    );
    let panel = |s: &mut String, x0: f64, title: &str, ymax: f64, log: bool| {
        let _ =
            write!(s, r#"<text x="{}" y="20" text-anchor="middle" font-weight="bold">{title}</text>"#, x0 + pw / 2.0);
        let _ = write!(
            s,
            r#"<line x1="{x0}" y1="{b}" x2="{}" y2="{b}" stroke="black"/><line x1="{x0}" y1="{top}" x2="{x0}" y2="{b}" stroke="black"/>"#,
            x0 + pw,
            b = top + ph
        );
        for k in 0..=4 {
            let y = top + ph - ph * f64::from(k) / 4.0;
            let v = if log { 10f64.powf(ymax.log10() * f64::from(k) / 4.0) } else { ymax * f64::from(k) / 4.0 };
            let _ = write!(
                s,
                r#"<text x="{}" y="{:.1}" text-anchor="end" font-size="10">{v:.0}</text>"#,
                x0 - 4.0,
                y + 3.0
            );
        }
        for k in 0..=5 {
            let t = end * f64::from(k) / 5.0;
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle" font-size="10">{t:.0} s</text>"#,
                x0 + pw * f64::from(k) / 5.0,
                top + ph + 14.0
            );
        }
    };
    let ymax = runs.iter().flat_map(|r| r.1.replicas.iter().map(|x| x.1)).max().unwrap_or(1) as f64 * 1.1;
    panel(&mut s, left, "replicas asked for", ymax, false);
    for (k, (_, r, _)) in runs.iter().enumerate() {
        let mut pts = String::new();
        let mut last = r.replicas.first().map_or(0, |x| x.1);
        for (t, n) in &r.replicas {
            let x = left + pw * t / 1000.0 / end;
            let _ = write!(
                pts,
                "{x:.1},{:.1} {x:.1},{:.1} ",
                top + ph - ph * f64::from(last) / ymax,
                top + ph - ph * f64::from(*n) / ymax
            );
            last = *n;
        }
        let _ = write!(pts, "{:.1},{:.1}", left + pw, top + ph - ph * f64::from(last) / ymax);
        let _ = write!(s, r#"<polyline points="{pts}" fill="none" stroke="{}" stroke-width="2"/>"#, COLOURS[k]);
    }
    let x0 = left * 2.0 + pw;
    let pmax = runs.iter().flat_map(|r| r.1.p99_windows.iter().map(|x| x.1)).fold(10.0, f64::max) * 1.2;
    panel(&mut s, x0, "p99 latency per 5 s (ms, log scale)", pmax, true);
    for (k, (_, r, _)) in runs.iter().enumerate() {
        let pts: Vec<String> = r
            .p99_windows
            .iter()
            .map(|(t, v)| {
                let y = top + ph - ph * v.max(1.0).log10() / pmax.log10();
                format!("{:.1},{:.1}", x0 + pw * t / 1000.0 / end, y)
            })
            .collect();
        let _ =
            write!(s, r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#, pts.join(" "), COLOURS[k]);
    }
    for (k, (mode, _, _)) in runs.iter().enumerate() {
        let lx = left + k as f64 * 200.0;
        let y = top + ph + 40.0;
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="{y}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            COLOURS[k],
            lx + 18.0,
            y + 10.0,
            mode.name()
        );
    }
    s.push_str("</svg>");
    s
}
