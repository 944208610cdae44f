//! `twinmesh work` — what a stage pod runs: keep one CPU busy for the
//! stage's (scaled) duration, then report what was measured where the
//! kubelet picks it up (the container's termination message).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

/// Arguments of `twinmesh work`.
#[derive(Debug, Args)]
pub struct WorkArgs {
    /// Wall milliseconds to keep the CPU busy (the pod's CPU limit caps
    /// what it really burns to the stage's scaled share).
    #[arg(long)]
    pub cpu_ms: u64,
    /// Where to write `{"wall_ms": …}`; the kubelet reads
    /// /dev/termination-log into the pod's status. Skipped when the path
    /// does not exist.
    #[arg(long, default_value = "/dev/termination-log")]
    pub report: PathBuf,
}

/// Spins for `d`; returns the work done (so it is not optimised away).
pub fn burn(d: Duration) -> u64 {
    let t0 = Instant::now();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    while t0.elapsed() < d {
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        x = black_box(x);
    }
    x
}

/// Runs the work and writes the report.
pub fn run(args: WorkArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    black_box(burn(Duration::from_millis(args.cpu_ms)));
    let wall_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let report = serde_json::json!({ "wall_ms": (wall_ms * 10.0).round() / 10.0, "cpu_ms": args.cpu_ms }).to_string();
    println!("{report}");
    if args.report.exists() {
        std::fs::write(&args.report, &report).with_context(|| format!("cannot write {}", args.report.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_runs_as_long_as_asked_and_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("termination-log");
        std::fs::write(&report, "").unwrap();
        run(WorkArgs { cpu_ms: 30, report: report.clone() }).unwrap();
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        let wall = v["wall_ms"].as_f64().unwrap();
        assert!(wall >= 30.0, "{v}");
        assert_eq!(v["cpu_ms"], 30);
        // A missing report path is skipped, not created.
        let absent = dir.path().join("absent");
        run(WorkArgs { cpu_ms: 1, report: absent.clone() }).unwrap();
        assert!(!absent.exists());
    }
}
