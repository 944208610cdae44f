//! E9 — the mesh at sizes no laptop runs as processes: N agents' protocol
//! (`common::replica`, the agent's code) on a simulated network; how long
//! an update takes to reach 99 % / 99.99 % / 100 % of the agents and what
//! each agent sends, against O(log N).

use super::svg::Chart;
use super::{Ctx, Experiment, Row, SummaryRow, find, met};
use crate::mesh::{Args, Mesh, Output_};

pub fn experiments() -> Vec<Experiment> {
    vec![experiment(), partition()]
}

fn partition() -> Experiment {
    Experiment {
        name: "e10-partition",
        title: "E10 partition cost: 30 % of the agents cut off for 30 s, jobs submitted throughout",
        run: partition_run,
        charts: || {
            vec![
                Chart::bars("after the heal: every replica has it (ms)", "agents", Some("cut"), "heal_converge_max_ms"),
                Chart::bars("jobs succeeded (%)", "agents", Some("cut"), "succeeded_pct"),
                Chart::bars("mean job latency (ms)", "agents", Some("cut"), "job_latency_ms"),
            ]
        },
        verdict: partition_verdict,
    }
}

fn partition_run(ctx: Ctx, seed: u64) -> anyhow::Result<Vec<Row>> {
    let sizes: &[usize] = if ctx.quick { &[100] } else { &[100, 1000] };
    let mut rows = Vec::new();
    for &agents in sizes {
        for cut in [None, Some("0.3@10-40")] {
            let args = Args {
                agents,
                nodes: None,
                seconds: 60.0,
                loss: 0.0,
                partition: cut.map(str::to_string),
                degree: 6,
                updates_per_s: 2.0,
                jobs_per_s: 3.0,
                settle: 15.0,
                failover_grace: 10.0,
                job_scale: 1.0,
                seed,
                output: Output_::Text,
            };
            let r = Mesh::new(args)?.run();
            let submitted = r.jobs_submitted.max(1) as f64;
            rows.push(
                Row::new(vec![("agents", agents.to_string()), ("cut", cut.map_or("none", |_| "30 % for 30 s").into())])
                    .with("cut_detect_ms", r.cut_detect_ms)
                    .with("heal_converge_mean_ms", r.heal_converge_mean_ms)
                    .with("heal_converge_max_ms", r.heal_converge_max_ms)
                    .with("heal_unconverged", r.heal_unconverged as f64)
                    .with("succeeded_pct", 100.0 * r.jobs_succeeded as f64 / submitted)
                    .with("jobs_final_twice", r.jobs_final_twice as f64)
                    .with("planned_locally_after_lost_forward", r.jobs_fell_back as f64)
                    .with("forward_retries", r.forward_retries as f64)
                    .with("booking_retries", r.booking_retries as f64)
                    .with("runs_failed_over", r.runs_failed_over as f64)
                    .with("reconciliations", r.reconciliations as f64)
                    .with("job_latency_ms", r.job_latency_ms)
                    .with("false_deaths", r.false_deaths as f64),
            );
        }
    }
    Ok(rows)
}

fn partition_verdict(sum: &[SummaryRow]) -> Vec<String> {
    let mut out = Vec::new();
    for r in sum.iter().filter(|r| r.metric == "heal_converge_max_ms" && r.stats.n > 0) {
        let agents = &r.group.iter().find(|(k, _)| k == "agents").expect("grouped by agents").1;
        let get = |m: &str, cut: &str| find(sum, m, &[("agents", agents), ("cut", cut)]).map(|x| x.stats.mean);
        out.push(format!(
            "{agents} agents: updates made during the cut reached every replica {:.0} ms mean / {:.0} ms worst after the heal (≤ 5 s: {}); jobs succeeded {:.1} % with the cut, {:.1} % without; {:.0} ended twice",
            get("heal_converge_mean_ms", "30 % for 30 s").unwrap_or(f64::NAN),
            r.stats.max,
            met(r.stats.max <= 5000.0),
            get("succeeded_pct", "30 % for 30 s").unwrap_or(f64::NAN),
            get("succeeded_pct", "none").unwrap_or(f64::NAN),
            get("jobs_final_twice", "30 % for 30 s").unwrap_or(f64::NAN),
        ));
    }
    out
}

fn experiment() -> Experiment {
    Experiment {
        name: "e9-mesh-scale",
        title: "E9 mesh scale: update dissemination and traffic per agent",
        run,
        charts: || {
            vec![
                Chart::lines("update reaches 100 % (ms)", "agents", "figure", "reach_100_ms").log_x(),
                Chart::lines("reach 100 % / log2 N (ms)", "agents", "figure", "reach_100_per_log2n_ms").log_x(),
                Chart::lines("kbit/s sent per agent", "agents", "figure", "kbit_per_agent_s").log_x(),
            ]
        },
        verdict,
    }
}

pub fn sizes(quick: bool) -> &'static [usize] {
    if quick { &[10, 100] } else { &[10, 100, 1000, 10_000] }
}

fn run(ctx: Ctx, seed: u64) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &agents in sizes(ctx.quick) {
        let args = Args {
            agents,
            nodes: None,
            seconds: if ctx.quick { 8.0 } else { 20.0 },
            loss: 0.0,
            partition: None,
            degree: 6,
            updates_per_s: 2.0,
            jobs_per_s: 0.0,
            settle: 4.0,
            failover_grace: 10.0,
            job_scale: 1.0,
            seed,
            output: Output_::Text,
        };
        let r = Mesh::new(args)?.run();
        let log2n = (agents as f64).log2();
        rows.push(
            Row::new(vec![("agents", agents.to_string()), ("figure", "mesh".into())])
                .with("reach_99_ms", r.reach_99_ms)
                .with("reach_9999_ms", r.reach_9999_ms)
                .with("reach_100_ms", r.reach_100_ms)
                .with("reach_100_max_ms", r.reach_100_max_ms)
                .with("reach_100_per_log2n_ms", r.reach_100_ms / log2n)
                .with("kbit_per_agent_s", r.kbit_per_agent_s)
                .with("incomplete", r.incomplete as f64)
                .with("converged_pct", 100.0 * r.converged as f64 / agents as f64)
                .with("wall_s", r.wall_s),
        );
    }
    Ok(rows)
}

fn verdict(sum: &[SummaryRow]) -> Vec<String> {
    let mut out = Vec::new();
    let per: Vec<(usize, f64, f64)> = sum
        .iter()
        .filter(|r| r.metric == "reach_100_ms")
        .filter_map(|r| {
            let n: usize = r.group.iter().find(|(k, _)| k == "agents")?.1.parse().ok()?;
            let max = find(sum, "reach_100_max_ms", &[("agents", &n.to_string())])?.stats.max;
            Some((n, r.stats.mean, max))
        })
        .collect();
    for (n, mean, max) in &per {
        out.push(format!("{n} agents: an update reaches every agent in {mean:.0} ms on average, {max:.0} ms at worst"));
    }
    if let (Some(first), Some(last)) = (per.first(), per.last())
        && last.0 > first.0
    {
        let grew = last.1 / first.1;
        let log_grew = (last.0 as f64).log2() / (first.0 as f64).log2();
        out.push(format!(
            "from {} to {} agents the time grew {grew:.2}× (log2 N grew {log_grew:.2}×: {})",
            first.0,
            last.0,
            if grew <= 1.5 * log_grew { "O(log N)" } else { "faster than log N" }
        ));
        if last.0 >= 10_000 {
            out.push(format!("10,000 agents converge in ≤ 2 s: {}", met(last.2 <= 2000.0)));
        }
    }
    out
}
