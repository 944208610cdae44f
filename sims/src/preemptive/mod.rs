//! `twinmesh-sims preemptive`: reactive failover against preemptive
//! actions, on the same arrivals and the same node failures.
//!
//! Every cell of the sweep (offered load × precursor reliability × seed)
//! builds one job stream and one failure timeline (failures at each node's
//! resiliency rate, `reliability` of them announced by a precursor
//! `lead_ms` before, false alarms besides) and runs it once per arm:
//! reactive (failover only), migrate (stages moved ahead of a forecast
//! failure, and queued stages of jobs forecast late, `common::preempt`),
//! migrate+replicate (hot replicas on idle capacity as well), and
//! preemptive+scaling (also the hosted service — `service` — scaled on the
//! twin's forecast instead of the HPA rule). Replications run in parallel,
//! each one deterministic for its seed.

mod plot;
mod service;
pub(crate) mod sim;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use twinmesh_common::fabric;

pub use sim::{Arm, Cell, Row, simulate};

/// Arguments of `preemptive`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Jobs per run.
    #[arg(long, default_value_t = 1500)]
    pub jobs: usize,
    /// Offered loads (nominal work over the fabric's capacity).
    #[arg(long, value_delimiter = ',', default_values_t = [0.3, 0.5, 0.7, 0.9])]
    pub loads: Vec<f64>,
    /// Precursor reliabilities (share of failures announced).
    #[arg(long, value_delimiter = ',', default_values_t = [0.5, 0.7, 0.9])]
    pub reliability: Vec<f64>,
    /// How long before its failure a precursor shows (ms).
    #[arg(long, default_value_t = 10_000.0)]
    pub lead_ms: f64,
    /// How long a failed node stays down (ms).
    #[arg(long, default_value_t = 20_000.0)]
    pub repair_ms: f64,
    /// False alarms per node per hour.
    #[arg(long, default_value_t = 2.0)]
    pub false_alarms_per_hour: f64,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seeds per cell.
    #[arg(long, default_value_t = 3)]
    pub runs: u64,
    /// One load (0.7), one reliability (0.7), 400 jobs, 2 seeds.
    #[arg(long)]
    pub quick: bool,
    /// Write raw rows (`preemptive.csv`), the summary
    /// (`preemptive-summary.csv`) and the plot (`preemptive.svg`) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// How results are printed: a table, or one JSON object (the
    /// parameters and one summary per load, reliability and arm).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// How `preemptive` prints its results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// An aligned table for people.
    #[default]
    Text,
    /// One JSON object on stdout.
    Json,
}

/// Mean over seeds of one (load, reliability, arm).
#[derive(Clone, Debug)]
pub struct Summary {
    pub load: f64,
    pub reliability: f64,
    pub arm: Arm,
    pub runs: usize,
    pub slo_violation_pct: f64,
    /// SLO violations fewer than reactive, same cells (%).
    pub fewer_violations_pct: f64,
    pub p99_latency_ms: f64,
    /// Core-seconds more than reactive, same cells (%).
    pub extra_cpu_pct: f64,
    pub wasted_core_s: f64,
    /// Runs cut short by node failures (mean per run).
    pub runs_lost: f64,
    pub actions: f64,
    pub false_alarm_actions: f64,
    pub utilisation: f64,
    /// The hosted service's requests later than its objective (%).
    pub service_late_pct: f64,
    /// Core-seconds its replicas leased (mean per run).
    pub service_core_s: f64,
}

pub fn run(mut args: Args) -> anyhow::Result<()> {
    if args.quick {
        args = Args { jobs: 400, loads: vec![0.7], reliability: vec![0.7], runs: 2, ..args };
    }
    let rows = sweep(&args)?;
    let sums = summarise(&rows);
    match args.output {
        Output::Text => print_table(&sums),
        Output::Json => println!("{}", json(&args, &sums)),
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        write_rows(&dir.join("preemptive.csv"), &rows)?;
        write_summary(&dir.join("preemptive-summary.csv"), &sums)?;
        let svg = dir.join("preemptive.svg");
        std::fs::write(&svg, plot::svg(&sums)).with_context(|| format!("cannot write {}", svg.display()))?;
        // stdout holds the JSON document alone when one is asked for.
        let note = format!("wrote {}/preemptive{{.csv,-summary.csv,.svg}}", dir.display());
        match args.output {
            Output::Text => println!("{note}"),
            Output::Json => eprintln!("{note}"),
        }
    }
    Ok(())
}

/// The results as one JSON object: the sweep's parameters and, per load,
/// reliability and arm, the summary the table prints (full precision).
pub fn json(args: &Args, sums: &[Summary]) -> serde_json::Value {
    let summary: Vec<serde_json::Value> = sums
        .iter()
        .map(|s| {
            serde_json::json!({
                "load": s.load,
                "reliability": s.reliability,
                "arm": s.arm.name(),
                "runs": s.runs,
                "slo_violation_pct": s.slo_violation_pct,
                "fewer_violations_pct": s.fewer_violations_pct,
                "p99_latency_ms": s.p99_latency_ms,
                "extra_cpu_pct": s.extra_cpu_pct,
                "wasted_core_s": s.wasted_core_s,
                "runs_lost": s.runs_lost,
                "actions": s.actions,
                "false_alarm_actions": s.false_alarm_actions,
                "utilisation": s.utilisation,
                "service_late_pct": s.service_late_pct,
                "service_core_s": s.service_core_s,
            })
        })
        .collect();
    serde_json::json!({
        "jobs": args.jobs,
        "loads": args.loads,
        "reliability": args.reliability,
        "lead_ms": args.lead_ms,
        "repair_ms": args.repair_ms,
        "false_alarms_per_hour": args.false_alarms_per_hour,
        "seed": args.seed,
        "runs": args.runs.max(1),
        "summary": summary,
    })
}

fn print_table(sums: &[Summary]) {
    println!(
        "{:>5} {:>5} {:<18} {:>5} {:>8} {:>8} {:>9} {:>8} {:>9} {:>6} {:>8} {:>8} {:>6}",
        "load",
        "rel.",
        "arm",
        "runs",
        "SLO %",
        "fewer",
        "p99 ms",
        "CPU +",
        "wasted s",
        "lost",
        "actions",
        "false",
        "util."
    );
    for s in sums {
        println!(
            "{:>5.2} {:>5.2} {:<18} {:>5} {:>7.2}% {:>7.1}% {:>9.0} {:>7.2}% {:>9.0} {:>6.1} {:>8.1} {:>8.1} {:>5.0}%",
            s.load,
            s.reliability,
            s.arm.name(),
            s.runs,
            s.slo_violation_pct,
            s.fewer_violations_pct,
            s.p99_latency_ms,
            s.extra_cpu_pct,
            s.wasted_core_s,
            s.runs_lost,
            s.actions,
            s.false_alarm_actions,
            100.0 * s.utilisation
        );
    }
}

/// Every cell × arm, replications spread over the machine's cores.
pub fn sweep(args: &Args) -> anyhow::Result<Vec<(Cell, Row)>> {
    let f = fabric::reference();
    let mut cells = Vec::new();
    for &load in &args.loads {
        for &reliability in &args.reliability {
            for k in 0..args.runs.max(1) {
                cells.push(Cell {
                    jobs: args.jobs,
                    load,
                    reliability,
                    lead_ms: args.lead_ms,
                    repair_ms: args.repair_ms,
                    false_alarms_per_hour: args.false_alarms_per_hour,
                    seed: args.seed + k,
                });
            }
        }
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(cells.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<anyhow::Result<Vec<Row>>>> = (0..cells.len()).map(|_| None).collect();
    let slots = std::sync::Mutex::new(&mut results);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(cell) = cells.get(i) else { break };
                    let r = Arm::ALL.iter().map(|&arm| simulate(&f, cell, arm)).collect();
                    slots.lock().expect("no worker panicked")[i] = Some(r);
                }
            });
        }
    });
    let mut out = Vec::new();
    for (cell, r) in cells.into_iter().zip(results) {
        for row in r.expect("every cell ran")? {
            out.push((cell.clone(), row));
        }
    }
    Ok(out)
}

/// Means over seeds, with each preemptive arm compared with reactive on
/// the same cells.
pub fn summarise(rows: &[(Cell, Row)]) -> Vec<Summary> {
    let mut keys: Vec<(f64, f64)> = Vec::new();
    for (c, _) in rows {
        if !keys.iter().any(|&(l, r)| l == c.load && r == c.reliability) {
            keys.push((c.load, c.reliability));
        }
    }
    let mut out = Vec::new();
    for (load, rel) in keys {
        let of = |arm: Arm| -> Vec<&Row> {
            rows.iter()
                .filter(|(c, r)| c.load == load && c.reliability == rel && r.arm == arm)
                .map(|(_, r)| r)
                .collect()
        };
        let base = of(Arm::Reactive);
        let base_v: usize = base.iter().map(|r| r.slo_violations).sum();
        let base_cpu: f64 = base.iter().map(|r| r.core_s).sum();
        for arm in Arm::ALL {
            let rs = of(arm);
            let n = rs.len().max(1) as f64;
            let v: usize = rs.iter().map(|r| r.slo_violations).sum();
            let jobs: usize = rs.iter().map(|r| r.jobs).sum();
            let cpu: f64 = rs.iter().map(|r| r.core_s).sum();
            out.push(Summary {
                load,
                reliability: rel,
                arm,
                runs: rs.len(),
                slo_violation_pct: 100.0 * v as f64 / jobs.max(1) as f64,
                fewer_violations_pct: if base_v == 0 { 0.0 } else { 100.0 * (1.0 - v as f64 / base_v as f64) },
                p99_latency_ms: rs.iter().map(|r| r.p99_latency_ms).sum::<f64>() / n,
                extra_cpu_pct: if base_cpu > 0.0 { 100.0 * (cpu / base_cpu - 1.0) } else { 0.0 },
                wasted_core_s: rs.iter().map(|r| r.wasted_core_s).sum::<f64>() / n,
                runs_lost: rs.iter().map(|r| r.stage_failures as f64).sum::<f64>() / n,
                actions: rs.iter().map(|r| (r.migrations + r.replicas) as f64).sum::<f64>() / n,
                false_alarm_actions: rs.iter().map(|r| r.false_alarm_actions as f64).sum::<f64>() / n,
                utilisation: rs.iter().map(|r| r.utilisation).sum::<f64>() / n,
                service_late_pct: rs.iter().map(|r| r.service_late_pct).sum::<f64>() / n,
                service_core_s: rs.iter().map(|r| r.service_core_s).sum::<f64>() / n,
            });
        }
    }
    out
}

fn write_rows(path: &std::path::Path, rows: &[(Cell, Row)]) -> anyhow::Result<()> {
    let mut f = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(
        f,
        "load,reliability,lead_ms,seed,arm,jobs,failed,slo_violations,mean_latency_ms,p99_latency_ms,core_s,wasted_core_s,stage_failures,migrations,replicas,false_alarm_actions,outages,utilisation,service_late_pct,service_core_s"
    )?;
    for (c, r) in rows {
        writeln!(
            f,
            "{},{},{},{},{},{},{},{},{:.1},{:.1},{:.1},{:.1},{},{},{},{},{},{:.4},{:.3},{:.1}",
            c.load,
            c.reliability,
            c.lead_ms,
            c.seed,
            r.arm.name(),
            r.jobs,
            r.failed,
            r.slo_violations,
            r.mean_latency_ms,
            r.p99_latency_ms,
            r.core_s,
            r.wasted_core_s,
            r.stage_failures,
            r.migrations,
            r.replicas,
            r.false_alarm_actions,
            r.outages,
            r.utilisation,
            r.service_late_pct,
            r.service_core_s
        )?;
    }
    Ok(())
}

fn write_summary(path: &std::path::Path, sums: &[Summary]) -> anyhow::Result<()> {
    let mut f = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(
        f,
        "load,reliability,arm,runs,slo_violation_pct,fewer_violations_pct,p99_latency_ms,extra_cpu_pct,wasted_core_s,runs_lost,actions,false_alarm_actions,utilisation,service_late_pct,service_core_s"
    )?;
    for s in sums {
        writeln!(
            f,
            "{},{},{},{},{:.3},{:.2},{:.1},{:.3},{:.1},{:.1},{:.1},{:.1},{:.4},{:.3},{:.1}",
            s.load,
            s.reliability,
            s.arm.name(),
            s.runs,
            s.slo_violation_pct,
            s.fewer_violations_pct,
            s.p99_latency_ms,
            s.extra_cpu_pct,
            s.wasted_core_s,
            s.runs_lost,
            s.actions,
            s.false_alarm_actions,
            s.utilisation,
            s.service_late_pct,
            s.service_core_s
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
