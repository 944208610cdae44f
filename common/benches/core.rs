//! Benchmarks of the core's hot paths. Figures and how to read them:
//! docs/benchmarks.md. Run: `cargo bench -p twinmesh-common --bench core`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use twinmesh_common::des::{SimConfig, Simulator, hold};
use twinmesh_common::fabric::{self, Fabric};
use twinmesh_common::job::Job;
use twinmesh_common::policy::{Policy, PolicyConfig};
use twinmesh_common::predict::Assignment;
use twinmesh_common::spec::parse_job;

/// The three-stage job every planning benchmark places: decode near the
/// phone, GPU detection, a small notification.
fn three_stage(f: &Fabric) -> Job {
    let origin = f.clusters.iter().find(|c| c.name.contains("phone-pan")).expect("a phone cluster");
    parse_job(&format!(
        r#"
apiVersion: twinmesh.io/v1
metadata: {{ name: bench, deadline_ms: 60000, origin: {{ cluster: {} }} }}
spec:
  stages:
    - {{ id: decode, compute: {{ cpu: 2, mem_gb: 1, duration_ms: 1500 }}, constraints: {{ arch: [arm64, amd64] }}, output_mb: 20 }}
    - {{ id: detect, compute: {{ cpu: 4, mem_gb: 8, duration_ms: 6000, gpu_vram_gb: 8 }}, predecessor: decode, output_mb: 1 }}
    - {{ id: notify, compute: {{ cpu: 0.5, mem_gb: 0.5, duration_ms: 200 }}, predecessor: detect }}
"#,
        origin.name
    ))
    .expect("bench job")
}

fn planning(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan");
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    let cfg = PolicyConfig::default();
    for n in [1_000usize, 10_000] {
        let f = fabric::synthetic(n, 42);
        let view = f.view();
        let job = three_stage(&f);
        for policy in Policy::ALL {
            if n == 10_000 && policy == Policy::Cvar {
                continue;
            }
            g.bench_with_input(BenchmarkId::new(policy.as_str(), n), &n, |b, _| {
                b.iter(|| black_box(policy.plan(&view, black_box(&job), &cfg).expect("plan")))
            });
        }
        g.bench_with_input(BenchmarkId::new("view-build", n), &n, |b, _| b.iter(|| black_box(f.view())));
    }
    g.finish();
}

fn simulation(c: &mut Criterion) {
    let mut g = c.benchmark_group("des");
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    for pending in [64usize, 1024] {
        let steps = 100_000u64;
        g.throughput(Throughput::Elements(steps));
        g.bench_with_input(BenchmarkId::new("hold", pending), &pending, |b, &p| {
            b.iter(|| black_box(hold(p, steps, 7)))
        });
    }
    // 10,000 noisy three-stage jobs with failures on a 1,000-node fabric,
    // arriving every 2 ms and spread over 50 greedy plans.
    let f = fabric::synthetic(1_000, 42);
    let view = f.view();
    let base = three_stage(&f);
    let phones: Vec<String> =
        f.clusters.iter().filter(|c| c.name.contains("phone-pan")).map(|c| c.name.clone()).collect();
    let jobs: Vec<Job> = (0..50)
        .map(|i| {
            let mut j = base.clone();
            j.origin.cluster = phones[i % phones.len()].clone();
            j
        })
        .collect();
    let plans: Vec<Vec<Assignment>> = jobs
        .iter()
        .map(|j| {
            let p = Policy::Greedy.plan(&view, j, &PolicyConfig::default()).expect("plan");
            p.placements
                .iter()
                .map(|pl| Assignment { node: view.node_index(&pl.node).expect("node"), format: pl.format })
                .collect()
        })
        .collect();
    let n_jobs = 10_000usize;
    g.throughput(Throughput::Elements(n_jobs as u64));
    g.bench_function("jobs-3stage-noisy", |b| {
        b.iter(|| {
            let mut sim = Simulator::new(&view, SimConfig::default());
            for k in 0..n_jobs {
                let j = &jobs[k % jobs.len()];
                sim.submit(j, view.origin(j).expect("origin"), &plans[k % plans.len()], &[], k as f64 * 2.0);
            }
            black_box(sim.run())
        })
    });
    g.finish();
}

criterion_group!(benches, planning, simulation);
criterion_main!(benches);
