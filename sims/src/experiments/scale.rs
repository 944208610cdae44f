//! E9 — the mesh at sizes no laptop runs as processes: N agents' protocol
//! (`common::replica`, the agent's code) on a simulated network; how long
//! an update takes to reach 99 % / 99.99 % / 100 % of the agents and what
//! each agent sends, against O(log N).

use super::svg::Chart;
use super::{Ctx, Experiment, Row, SummaryRow, find, met};
use crate::mesh::{Args, Mesh, Output_};

pub fn experiments() -> Vec<Experiment> {
    vec![Experiment {
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
    }]
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
