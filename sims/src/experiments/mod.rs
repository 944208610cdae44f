//! One framework for every experiment: `twinmesh-sims run <name>|all
//! [--runs 5] [--seed S] [--out DIR] [--quick] [--output json]`.
//!
//! An experiment is a function from a seed to rows (a group — policy,
//! load, … — and its figures). The runner runs the replications (seeds S,
//! S + 1, …) in parallel, one per thread, never inside one; writes the raw
//! rows (`<name>.csv`), the seed's statistics of every figure per group
//! over replications (`<name>-summary.csv`: n, mean, median, std, min, max,
//! Q25, Q75) and a plot (`<name>.svg`); prints the summary and the
//! experiment's verdict on its targets.

mod accuracy;
mod api;
mod formats;
mod oracle;
mod quality;
mod scale;
mod seed;
pub mod stats;
pub mod svg;
#[cfg(test)]
mod tests;
pub mod world;
mod wrapped;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;

use stats::Stats;
use svg::Chart;

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// An experiment's name (`v1-controller`), its short name (`v1`), or
    /// `all`; `list` names them.
    name: String,
    /// Replications, each with its own seed.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seed of the first replication (the others follow).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where CSVs and plots go.
    #[arg(long, default_value = "docs/results/experiments")]
    out: PathBuf,
    /// Small sizes (CI): same code, fewer jobs and agents.
    #[arg(long)]
    quick: bool,
    /// How results are printed.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Replications run at once (default: the cores available).
    #[arg(long)]
    threads: Option<usize>,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Tables and verdicts.
    Table,
    /// One JSON document per experiment, one per line.
    Json,
}

/// What an experiment may look at besides its seed.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    pub quick: bool,
}

/// One row of results: the group it belongs to and its figures.
#[derive(Clone, Debug)]
pub struct Row {
    pub group: Vec<(&'static str, String)>,
    pub figures: Vec<(&'static str, f64)>,
}

impl Row {
    pub fn new(group: Vec<(&'static str, String)>) -> Row {
        Row { group, figures: Vec::new() }
    }
    pub fn with(mut self, name: &'static str, v: f64) -> Row {
        self.figures.push((name, v));
        self
    }
}

/// One figure of one group over the replications.
#[derive(Clone, Debug, Serialize)]
pub struct SummaryRow {
    pub group: Vec<(String, String)>,
    pub metric: String,
    pub stats: Stats,
}

/// A registered experiment.
pub struct Experiment {
    pub name: &'static str,
    pub title: &'static str,
    pub run: fn(Ctx, u64) -> anyhow::Result<Vec<Row>>,
    pub charts: fn() -> Vec<Chart>,
    /// Lines saying how the summary stands against the experiment's
    /// targets (met or missed, with the figure).
    pub verdict: fn(&[SummaryRow]) -> Vec<String>,
}

/// Every experiment, in the order `all` runs them.
pub fn registry() -> Vec<Experiment> {
    let mut v = seed::experiments();
    v.insert(2, formats::experiments().remove(0));
    v.insert(4, api::experiments().remove(0));
    v.extend(quality::experiments());
    v.extend(oracle::experiments());
    v.extend(accuracy::experiments());
    v.extend(scale::experiments());
    v.extend(wrapped::experiments());
    v
}

fn select(name: &str) -> anyhow::Result<Vec<Experiment>> {
    let all = registry();
    if name == "all" {
        return Ok(all);
    }
    let picked: Vec<Experiment> =
        all.into_iter().filter(|e| e.name == name || e.name.split('-').next() == Some(name)).collect();
    if picked.is_empty() {
        let names: Vec<&str> = registry().iter().map(|e| e.name).collect();
        bail!("no experiment '{name}' (experiments: {}, or all)", names.join(", "));
    }
    Ok(picked)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.name == "list" {
        for e in registry() {
            println!("{:<16} {}", e.name, e.title);
        }
        return Ok(());
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let started = Instant::now();
    for e in select(&args.name)? {
        let t0 = Instant::now();
        let runs = replicate(&e, Ctx { quick: args.quick }, args.seed, args.runs, threads, args.output)?;
        let summary = summarise(&runs);
        let wall = t0.elapsed().as_secs_f64();
        write_outputs(&args.out, &e, args.seed, &runs, &summary)?;
        let verdict = (e.verdict)(&summary);
        match args.output {
            Output::Table => print_table(&e, &summary, &verdict, wall, args.runs),
            Output::Json => {
                let doc = serde_json::json!({
                    "name": e.name, "title": e.title, "runs": args.runs, "seed": args.seed,
                    "quick": args.quick, "wall_s": wall, "summary": summary, "verdict": verdict,
                });
                println!("{doc}");
            }
        }
    }
    if args.output == Output::Table {
        println!("all done in {:.1} s; results in {}", started.elapsed().as_secs_f64(), args.out.display());
    }
    Ok(())
}

/// Runs the replications of `e` on `threads` threads (seeds `seed`,
/// `seed + 1`, …); the rows of each, in seed order.
pub fn replicate(
    e: &Experiment,
    ctx: Ctx,
    seed: u64,
    runs: usize,
    threads: usize,
    output: Output,
) -> anyhow::Result<Vec<Vec<Row>>> {
    let bar = if output == Output::Table {
        let b = indicatif::ProgressBar::new(runs as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} runs {elapsed}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        b.set_prefix(e.name);
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<anyhow::Result<Vec<Row>>>>> = Mutex::new((0..runs).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.min(runs) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= runs {
                        break;
                    }
                    let r = (e.run)(ctx, seed + i as u64);
                    results.lock().expect("no replication panicked")[i] = Some(r);
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    results
        .into_inner()
        .expect("no replication panicked")
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.expect("every replication ran").with_context(|| format!("{} (seed {})", e.name, seed + i as u64))
        })
        .collect()
}

/// The statistics of every figure per group over the replications, in the
/// order the groups and figures first appear.
pub fn summarise(runs: &[Vec<Row>]) -> Vec<SummaryRow> {
    let mut order: Vec<(Vec<(&'static str, String)>, &'static str)> = Vec::new();
    for rows in runs {
        for r in rows {
            for (m, _) in &r.figures {
                if !order.iter().any(|(g, k)| *g == r.group && k == m) {
                    order.push((r.group.clone(), m));
                }
            }
        }
    }
    order
        .into_iter()
        .map(|(group, metric)| {
            let sample: Vec<f64> = runs
                .iter()
                .flatten()
                .filter(|r| r.group == group)
                .flat_map(|r| r.figures.iter().filter(|(m, _)| *m == metric).map(|(_, v)| *v))
                .collect();
            SummaryRow {
                group: group.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                metric: metric.to_string(),
                stats: Stats::of(&sample),
            }
        })
        .collect()
}

/// The summary row of `metric` in the group matching every `(key, value)`.
pub fn find<'a>(sum: &'a [SummaryRow], metric: &str, keys: &[(&str, &str)]) -> Option<&'a SummaryRow> {
    sum.iter()
        .find(|r| r.metric == metric && keys.iter().all(|(k, v)| r.group.iter().any(|(gk, gv)| gk == k && gv == v)))
}

/// "met" or "MISSED".
pub fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

fn write_outputs(
    out: &Path,
    e: &Experiment,
    seed: u64,
    runs: &[Vec<Row>],
    summary: &[SummaryRow],
) -> anyhow::Result<()> {
    let path = out.join(format!("{}.csv", e.name));
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?,
    );
    let mut header: Option<Vec<&str>> = None;
    for (i, rows) in runs.iter().enumerate() {
        for r in rows {
            let cols: Vec<&str> = r.group.iter().map(|(k, _)| *k).chain(r.figures.iter().map(|(m, _)| *m)).collect();
            if header.as_ref() != Some(&cols) {
                writeln!(f, "run,seed,{}", cols.join(","))?;
                header = Some(cols);
            }
            let vals: Vec<String> = r
                .group
                .iter()
                .map(|(_, v)| csv_field(v))
                .chain(r.figures.iter().map(|(_, v)| format!("{v}")))
                .collect();
            writeln!(f, "{},{},{}", i + 1, seed + i as u64, vals.join(","))?;
        }
    }
    f.flush()?;
    let path = out.join(format!("{}-summary.csv", e.name));
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?,
    );
    writeln!(f, "group,metric,n,mean,median,std,min,max,q25,q75")?;
    for r in summary {
        let g: Vec<String> = r.group.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let s = &r.stats;
        writeln!(
            f,
            "{},{},{},{},{},{},{},{},{},{}",
            csv_field(&g.join(" ")),
            r.metric,
            s.n,
            s.mean,
            s.median,
            s.std,
            s.min,
            s.max,
            s.q25,
            s.q75
        )?;
    }
    f.flush()?;
    let path = out.join(format!("{}.svg", e.name));
    std::fs::write(&path, svg::render(e.title, &(e.charts)(), summary))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn print_table(e: &Experiment, summary: &[SummaryRow], verdict: &[String], wall: f64, runs: usize) {
    println!("\n== {} — {} ({runs} runs, {wall:.1} s)", e.name, e.title);
    let mut groups: Vec<&Vec<(String, String)>> = Vec::new();
    let mut metrics: Vec<&str> = Vec::new();
    for r in summary {
        if !groups.contains(&&r.group) {
            groups.push(&r.group);
        }
        if !metrics.contains(&r.metric.as_str()) {
            metrics.push(&r.metric);
        }
    }
    let label = |g: &Vec<(String, String)>| g.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
    let width = groups.iter().map(|g| label(g).len()).max().unwrap_or(5).max(5);
    let cell = |m: &str| m.len().max(16);
    print!("{:<width$}", "group");
    for m in &metrics {
        print!("  {:>w$}", m, w = cell(m));
    }
    println!();
    for g in &groups {
        print!("{:<width$}", label(g));
        for m in &metrics {
            let v = summary.iter().find(|r| r.group == **g && r.metric == *m);
            let text = v.map_or(String::new(), |r| {
                if r.stats.n == 0 { "—".into() } else { format!("{} ± {}", num(r.stats.mean), num(r.stats.std)) }
            });
            print!("  {:>w$}", text, w = cell(m));
        }
        println!();
    }
    for v in verdict {
        println!("  → {v}");
    }
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        "—".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}
