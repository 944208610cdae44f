//! V3 — what running in another format costs: the same stage natively, under
//! QEMU (arm64 and riscv64 code on an amd64 node) and as Wasm, in the
//! embedded fabric's ground truth (true emulation costs differ from what
//! the uncalibrated twin assumes); and when the planner emulates: arm64-only
//! jobs from dc-core at rising rates, emulated only once the native arm64
//! nodes are busy.

use twinmesh_common::des::{SimConfig, Simulator};
use twinmesh_common::fabric;
use twinmesh_common::job::Job;
use twinmesh_common::model::Format;
use twinmesh_common::policy::{Policy, PolicyConfig};
use twinmesh_common::predict::Assignment;
use twinmesh_common::spec::parse_job;
use twinmesh_common::truth;

use super::svg::Chart;
use super::world::{self, Luck, World};
use super::{Ctx, Experiment, Row, SummaryRow, find};

pub fn experiments() -> Vec<Experiment> {
    vec![Experiment {
        name: "v3-formats",
        title: "V3 format overhead: native, QEMU and Wasm; emulation only when native nodes are busy",
        run,
        charts: || {
            vec![
                Chart::bars("run time over native (×)", "format", None, "overhead_x"),
                Chart::lines("stages emulated (%)", "jobs_per_s", "part", "emulated_pct"),
                Chart::lines("deadlines met (%)", "jobs_per_s", "part", "on_time_pct"),
            ]
        },
        verdict,
    }]
}

fn stage_job(name: &str, arch: &str, formats: &str, cpu: f64, ms: f64, deadline: f64) -> anyhow::Result<Job> {
    let formats = if formats.is_empty() { String::new() } else { format!("\"{formats}\"") };
    Ok(parse_job(&format!(
        r#"{{"apiVersion":"twinmesh.io/v1","metadata":{{"name":"{name}","deadline_ms":{deadline},"origin":{{"cluster":"dc-core"}}}},"spec":{{"stages":[
          {{"id":"work","compute":{{"cpu":{cpu},"mem_gb":4,"duration_ms":{ms}}},"constraints":{{"arch":["{arch}"],"formats":[{formats}]}}}}]}}}}"#
    ))?)
}

fn run(ctx: Ctx, seed: u64) -> anyhow::Result<Vec<Row>> {
    let f = fabric::reference();
    let mut rows = Vec::new();
    // (a) One 1,000 ms stage on dc-x86-01 in each format.
    let cases = [
        (Format::Native, "amd64", "native"),
        (Format::QemuArm64, "arm64", "qemu-arm64"),
        (Format::QemuRiscv64, "riscv64", "qemu-riscv64"),
        (Format::Wasm, "amd64", "wasm"),
    ];
    let jobs: Vec<(Job, f64)> = cases
        .iter()
        .enumerate()
        .map(|(i, (_, arch, fmt))| {
            Ok((stage_job(&format!("v3-{i}"), arch, fmt, 1.0, 1000.0, 60_000.0)?, 10_000.0 * i as f64))
        })
        .collect::<anyhow::Result<_>>()?;
    let view = f.view();
    let node = view.node_index("dc-x86-01").ok_or_else(|| anyhow::anyhow!("dc-x86-01 not in the reference fabric"))?;
    let mut sim = Simulator::with_run_times(&view, SimConfig::exact(), Luck::Truth(world::ground_truth(&jobs, seed)));
    let hs: Vec<usize> = jobs
        .iter()
        .zip(&cases)
        .map(|((j, at), (format, _, _))| {
            sim.submit(j, view.origin(j).expect("origin"), &[Assignment { node, format: *format }], &[None], *at)
        })
        .collect();
    sim.run();
    let observed: Vec<f64> = hs.iter().map(|h| sim.outcome(*h).stages[0].compute_ms).collect();
    for (i, (format, _, _)) in cases.iter().enumerate() {
        rows.push(
            Row::new(vec![("part", "overhead".into()), ("format", format.to_string())])
                .with("observed_ms", observed[i])
                .with("predicted_ms", truth::model_ms(&view, node, 1000.0, *format))
                .with("overhead_x", observed[i] / observed[0])
                .with("assumed_overhead_x", view.overheads.get(*format)),
        );
    }
    // (b) arm64-only jobs (32 cores, 4 s) from dc-core: 128 native arm64
    // cores there; beyond that the planner emulates on amd64 or queues.
    let rates: &[f64] = if ctx.quick { &[0.5, 2.0] } else { &[0.25, 0.5, 1.0, 2.0, 4.0] };
    let n = if ctx.quick { 40 } else { 120 };
    for &rate in rates {
        let jobs: Vec<(Job, f64)> = (0..n)
            .map(|i| Ok((stage_job(&format!("v3b-{i}"), "arm64", "", 32.0, 4000.0, 9000.0)?, 1000.0 * i as f64 / rate)))
            .collect::<anyhow::Result<_>>()?;
        let mut w = World::new(&f, seed, false, 0.0);
        w.luck = Luck::Truth(world::ground_truth(&jobs, seed));
        let (placed, out) = world::run_policy(&w, &w.truth, &jobs, Policy::Greedy, &PolicyConfig::default())?;
        let emulated = placed.iter().filter(|p| p.assign[0].format != Format::Native).count();
        let on_time = jobs.iter().zip(&out).filter(|((j, _), o)| !world::violated(j, o)).count();
        rows.push(
            Row::new(vec![("part", "arm64 jobs".into()), ("jobs_per_s", format!("{rate}"))])
                .with("emulated_pct", 100.0 * emulated as f64 / n as f64)
                .with("on_time_pct", 100.0 * on_time as f64 / n as f64)
                .with("mean_latency_ms", world::mean_latency(&out)),
        );
    }
    Ok(rows)
}

fn verdict(sum: &[SummaryRow]) -> Vec<String> {
    let mut out = Vec::new();
    for f in ["qemu-arm64", "qemu-riscv64", "wasm"] {
        let get = |m: &str| find(sum, m, &[("format", f)]).map(|r| r.stats.mean);
        if let (Some(x), Some(a)) = (get("overhead_x"), get("assumed_overhead_x")) {
            out.push(format!("{f}: {x:.2}× native in the truth, {a:.2}× assumed by the uncalibrated twin"));
        }
    }
    out
}
