//! `twinmesh plan JOB` — try the core without a mesh: load a fabric (the
//! reference one by default), plan the job with a policy, print the
//! placement and what the twin predicts.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use twinmesh_common::fabric::{self, Fabric};
use twinmesh_common::plan::Plan;
use twinmesh_common::policy::{Policy, PolicyConfig};
use twinmesh_common::spec;

use super::Output;

/// Arguments of `twinmesh plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Job document (YAML or JSON); `-` reads standard input. A service
    /// document (`kind: Service`) is run through the twin's service DES
    /// under each scaling mode instead.
    job: PathBuf,
    /// Placement policy: baseline, greedy, resilient, cvar, or `all` to
    /// compare them.
    #[arg(long, short, default_value = "greedy", env = "TWINMESH_POLICY")]
    policy: String,
    /// Fabric document; the built-in reference fabric when absent.
    #[arg(long, env = "TWINMESH_FABRIC")]
    fabric: Option<PathBuf>,
    /// Seed of the CVaR Monte Carlo draws.
    #[arg(long, default_value_t = PolicyConfig::default().seed, env = "TWINMESH_SEED")]
    seed: u64,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Text, env = "TWINMESH_OUTPUT")]
    output: Output,
    /// Also show the preemptive actions the twin would take on the plan at
    /// a moment of its run, given precursors of failure (and optionally a
    /// twin snapshot): a scenario file, described in docs/preemptive.md.
    #[arg(long, value_name = "SCENARIO")]
    what_if: Option<PathBuf>,
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let text = read_input(&args.job)?;
    let service = spec::document_kind(&text).is_some_and(|k| k == "Service");
    let job = if service {
        None
    } else {
        Some(spec::parse_job(&text).with_context(|| format!("invalid job document {}", args.job.display()))?)
    };
    let (fabric, fabric_name) = match &args.fabric {
        Some(path) => {
            let t = std::fs::read_to_string(path).with_context(|| format!("cannot read fabric {}", path.display()))?;
            (
                Fabric::from_yaml(&t).with_context(|| format!("invalid fabric {}", path.display()))?,
                path.display().to_string(),
            )
        }
        None => (fabric::reference(), "reference".to_string()),
    };
    let Some(job) = job else {
        return super::service::run(&text, &args.job.display().to_string(), &fabric, args.seed, args.output);
    };
    let view = fabric.view();
    let cfg = PolicyConfig { seed: args.seed, ..PolicyConfig::default() };
    let policies: Vec<Policy> = if args.policy == "all" {
        Policy::ALL.to_vec()
    } else {
        vec![args.policy.parse().map_err(anyhow::Error::msg)?]
    };
    let mut plans = Vec::new();
    for p in &policies {
        plans.push(p.plan(&view, &job, &cfg).with_context(|| format!("{p} cannot place job '{}'", job.name))?);
    }
    if let Some(sc) = &args.what_if {
        let w = super::whatif::run(sc, &fabric, &job, &plans[0])
            .with_context(|| format!("what-if scenario {}", sc.display()))?;
        match args.output {
            Output::Json => {
                println!("{}", serde_json::to_string(&serde_json::json!({ "plan": plans[0], "what_if": w }))?)
            }
            Output::Text => print!("{}{}", render(&plans[0]), super::whatif::render(&w)),
        }
        return Ok(());
    }
    let with_interval = |p: &Plan| -> anyhow::Result<serde_json::Value> {
        let mut v = serde_json::to_value(p)?;
        v["interval"] = serde_json::to_value(interval_of(&view, &job, p)?)?;
        Ok(v)
    };
    match args.output {
        Output::Json if plans.len() == 1 => println!("{}", serde_json::to_string(&with_interval(&plans[0])?)?),
        Output::Json => {
            let plans = plans.iter().map(with_interval).collect::<anyhow::Result<Vec<_>>>()?;
            println!("{}", serde_json::to_string(&serde_json::json!({ "plans": plans }))?)
        }
        Output::Text => {
            println!(
                "job {} · fabric {fabric_name} ({} nodes, {} clusters)",
                job.name,
                fabric.nodes.len(),
                fabric.clusters.len()
            );
            for p in &plans {
                print!("{}", render(p));
                let iv = interval_of(&view, &job, p)?;
                println!(
                    "  latency p50 {:.0} ms, p90 {:.0} ms · energy p50 {:.0} J, p90 {:.0} J (over each node's learned run-time spread)",
                    iv.p50_ms, iv.p90_ms, iv.p50_j, iv.p90_j
                );
            }
        }
    }
    Ok(())
}

/// The plan's prediction interval: its stages in their predicted windows,
/// each run time drawn over its node's learned spread (σ 0.15 where
/// nothing was learned), as a committed prediction's p90 is.
fn interval_of(
    view: &twinmesh_common::view::FabricView,
    job: &twinmesh_common::job::Job,
    plan: &Plan,
) -> anyhow::Result<twinmesh_common::predict::Interval> {
    let placed = twinmesh_common::execution::placed(view, &job.name, plan).map_err(anyhow::Error::msg)?;
    let windows: Vec<(f64, f64)> = plan.predicted.stages.iter().map(|t| (t.start_ms, t.finish_ms)).collect();
    Ok(twinmesh_common::predict::stated_interval(view, job, &placed.assign, &windows, 0.0))
}

fn read_input(path: &PathBuf) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("cannot read the job from standard input")?;
        return Ok(s);
    }
    if !path.exists() {
        bail!("job file {} does not exist", path.display());
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read job file {}", path.display()))
}

/// A plan as aligned text.
pub fn render(p: &Plan) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "\npolicy {}", p.policy);
    // Columns as wide as their longest entry (k3d node names are long).
    let w = |f: &dyn Fn(&twinmesh_common::plan::Placement) -> usize, min: usize| {
        p.placements.iter().map(f).max().unwrap_or(0).max(min)
    };
    let (ws, wn, wc) = (w(&|pl| pl.stage.len(), 20), w(&|pl| pl.node.len(), 20), w(&|pl| pl.cluster.len(), 16));
    let _ = writeln!(
        s,
        "  {:<ws$} {:<wn$} {:<wc$} {:<13} {:>10} {:>10} {:>10}",
        "STAGE", "NODE", "CLUSTER", "FORMAT", "READY ms", "FINISH ms", "ENERGY J"
    );
    for (pl, t) in p.placements.iter().zip(&p.predicted.stages) {
        let _ = writeln!(
            s,
            "  {:<ws$} {:<wn$} {:<wc$} {:<13} {:>10.1} {:>10.1} {:>10.1}",
            pl.stage,
            pl.node,
            pl.cluster,
            pl.format.as_str(),
            t.ready_ms,
            t.finish_ms,
            t.energy_j
        );
    }
    let pr = &p.predicted;
    let _ =
        write!(s, "  predicted latency {:.1} ms · energy {:.1} J · risk {:.4}", pr.latency_ms, pr.energy_j, pr.risk);
    if let Some(t) = pr.tail_latency_ms {
        let _ = write!(s, " · CVaR latency {t:.1} ms");
    }
    if let (Some(d), Some(slack)) = (pr.deadline_ms, pr.deadline_slack_ms) {
        let _ = write!(s, " · deadline {d:.0} ms (slack {slack:+.1} ms)");
    }
    let _ = writeln!(s);
    for (pl, sh) in p.placements.iter().zip(&p.shadow) {
        if let Some(sh) = sh {
            let _ = writeln!(s, "  shadow {} → {} ({}, {})", pl.stage, sh.node, sh.cluster, sh.format);
        }
    }
    for n in &p.notes {
        let _ = writeln!(s, "  note: {n}");
    }
    s
}
