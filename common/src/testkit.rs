//! Small fabrics and jobs with hand-checkable numbers, for unit tests.

use crate::fabric::Fabric;
use crate::job::Job;
use crate::view::FabricView;

/// Two clusters: `a` (intra 1 ms) and `b` (intra 2 ms), 20 ms and
/// 100 Mbit/s apart. Nodes:
/// * `a-one-01`: 1 core, speed 1, 10 W (10 J per core-second);
/// * `a-slow-01`: 4 cores, speed 0.5, 40 W;
/// * `b-fast-01`: 8 cores, speed 2, 160 W;
/// * `b-rv-01`: riscv64, 4 cores, speed 0.25, 4 W.
pub(crate) const TINY: &str = r#"
apiVersion: twinmesh.io/v1
kind: Fabric
clusters:
  - name: a
    kind: lab
    baseline_resiliency: 0.9
    intra_latency_ms: 1
    intra_bandwidth_mbps: 1000
    groups:
      - prefix: a-one
        count: 1
        hardware: { arch: amd64, cores: 1, ghz: 3, speed: 1.0, mem_gb: 4, tdp_w: 10 }
        runtimes: [native, qemu-riscv64, wasm]
      - prefix: a-slow
        count: 1
        hardware: { arch: amd64, cores: 4, ghz: 1.5, speed: 0.5, mem_gb: 8, tdp_w: 40 }
        runtimes: [native, wasm]
  - name: b
    kind: datacenter
    baseline_resiliency: 0.9
    intra_latency_ms: 2
    intra_bandwidth_mbps: 1000
    groups:
      - prefix: b-fast
        count: 1
        hardware: { arch: amd64, cores: 8, ghz: 4, speed: 2.0, mem_gb: 32, tdp_w: 160 }
        runtimes: [native, qemu-riscv64, wasm]
      - prefix: b-rv
        count: 1
        hardware: { arch: riscv64, cores: 4, ghz: 1, speed: 0.25, mem_gb: 4, tdp_w: 4 }
        runtimes: [native]
links:
  - { between: [a, b], latency_ms: 20, bandwidth_mbps: 100 }
"#;

pub(crate) fn tiny() -> Fabric {
    Fabric::from_yaml(TINY).expect("tiny fabric")
}

pub(crate) fn view_of(f: &Fabric) -> FabricView {
    f.view()
}

pub(crate) fn job(yaml: &str) -> Job {
    crate::spec::parse_job(yaml).unwrap_or_else(|e| panic!("test job: {e}"))
}

/// A one-stage job from `origin` (cluster[/node]).
pub(crate) fn one_stage(origin: &str, cpu: f64, duration_ms: f64) -> Job {
    let (cluster, node) = match origin.split_once('/') {
        Some((c, n)) => (c, format!(", node: {n}")),
        None => (origin, String::new()),
    };
    job(&format!(
        "apiVersion: twinmesh.io/v1\nmetadata: {{name: one, origin: {{cluster: {cluster}{node}}}}}\nspec: {{stages: [{{id: s, compute: {{cpu: {cpu}, mem_gb: 1, duration_ms: {duration_ms}}}}}]}}"
    ))
}
