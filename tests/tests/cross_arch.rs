//! One mesh of three architectures: a native amd64 agent, an arm64 agent
//! under qemu-aarch64 and a riscv64 agent under qemu-riscv64, on loopback.
//! Skips (saying why) where QEMU user-mode emulation or the cross builds
//! are missing — a newcomer's `cargo test --workspace` passes; `.ci/run`
//! installs both and sets `TWINMESH_REQUIRE_ALL`, so there it must run.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use twinmesh_tests::{AgentProc, cross_bin, key_file, repo_root, skip, tempdir, wait_for, which};

const LIMIT: Duration = Duration::from_secs(180);

fn emulated(qemu: &str, sysroot: &str, triple: &str) -> Result<Command, String> {
    let q = which(qemu).ok_or(format!("{qemu} not installed (apt-get install qemu-user-static)"))?;
    let bin = cross_bin(triple).ok_or(format!(
        "twinmesh is not cross-built for {triple}: install the cross gcc, `rustup target add {triple}` and \
         `cargo build -p twinmesh-agent --target {triple}` (.ci/run does)"
    ))?;
    let mut c = Command::new(q);
    c.args(["-L", sysroot]).arg(bin);
    Ok(c)
}

fn job(name: &str, arch: &str, deadline_ms: u32, duration_ms: u32) -> String {
    format!(
        r#"{{"apiVersion":"twinmesh.io/v1","metadata":{{"name":"{name}","deadline_ms":{deadline_ms},"origin":{{"cluster":"x86","node":"x86-01"}}}},
        "spec":{{"stages":[{{"id":"work","compute":{{"cpu":1,"mem_gb":1,"duration_ms":{duration_ms}}},"constraints":{{"arch":["{arch}"]}}}}]}}}}"#
    )
}

fn record<'a>(twin: &'a Value, node: &str) -> Option<&'a Value> {
    twin["nodes"].as_array()?.iter().find(|r| r["node"]["name"] == node)
}

#[test]
fn amd64_arm64_and_riscv64_agents_form_one_mesh_and_place_by_architecture() {
    let (arm_cmd, rv_cmd) = match (
        emulated("qemu-aarch64-static", "/usr/aarch64-linux-gnu", "aarch64-unknown-linux-gnu"),
        emulated("qemu-riscv64-static", "/usr/riscv64-linux-gnu", "riscv64gc-unknown-linux-gnu"),
    ) {
        (Ok(a), Ok(r)) => (a, r),
        (Err(e), _) | (_, Err(e)) => return skip(&e),
    };
    let dir = tempdir();
    let key = key_file(dir.path(), "mesh.key", 0x77);
    let fabric = repo_root().join("tests/fixtures/cross-fabric.yaml");
    let common =
        ["--fabric", fabric.to_str().unwrap(), "--mesh-key-file", key.to_str().unwrap(), "--sync-interval", "1"];
    let x86 = AgentProc::start("x86-01", "x86", &dir.path().join("x86"), &common);
    let boot = ["--bootstrap", x86.mesh.as_str(), "--time-scale", "0.01"];
    let arm = AgentProc::start_with(arm_cmd, "arm-01", "arm", &dir.path().join("arm"), &[&common[..], &boot].concat());
    let rv = AgentProc::start_with(rv_cmd, "rv-01", "rv", &dir.path().join("rv"), &[&common[..], &boot].concat());

    // One mesh: every twin holds all three nodes, each at the architecture
    // its agent really runs as, and the native agent reaches both.
    let converged = wait_for(LIMIT, || {
        {
            [&x86, &arm, &rv].iter().all(|a| {
                let (_, t) = a.get("/v1/twin");
                record(&t, "arm-01").is_some_and(|r| r["node"]["hardware"]["arch"] == "arm64")
                    && record(&t, "rv-01").is_some_and(|r| r["node"]["hardware"]["arch"] == "riscv64")
                    && record(&t, "x86-01").is_some_and(|r| r["node"]["hardware"]["arch"] == "amd64")
            }) && x86.get("/v1/twin").1["peers"].as_array().is_some_and(|p| p.len() == 2)
        }
        .then_some(())
    });
    assert!(converged.is_some(), "no convergence; riscv64 agent log:\n{}\narm64 agent log:\n{}", rv.log(), arm.log());
    let (_, t) = x86.get("/v1/twin");
    let rv_formats = &record(&t, "rv-01").unwrap()["node"]["runtimes"];
    let rv_formats = rv_formats.as_array().unwrap();
    assert!(rv_formats.iter().any(|f| f == "native"), "{rv_formats:?}");
    assert!(
        !rv_formats.iter().any(|f| f == "wasm"),
        "the board has no Wasm runtime, whatever the fabric file says: {rv_formats:?}"
    );

    // riscv64-only code: natively on the board (1,000 / 0.7 = 1,429 ms)
    // beats qemu-riscv64 on the x86 box (1,000 × 1.8 = 1,800 ms).
    let (s, resp) = x86.post("/v1/jobs?policy=greedy", &job("rv-only", "riscv64", 60_000, 1000), None);
    assert_eq!(s, 202, "{resp}");
    let p = &resp["job"]["plan"]["placements"][0];
    assert_eq!((p["node"].as_str(), p["format"].as_str()), (Some("rv-01"), Some("native")), "{resp}");
    let id = resp["id"].as_str().unwrap().to_string();
    let v = wait_for(LIMIT, || {
        let (s, v) = x86.get(&format!("/v1/plans/{id}/verify"));
        (s == 200).then_some(v)
    })
    .unwrap_or_else(|| panic!("riscv64 stage never finished; riscv64 agent log:\n{}", rv.log()));
    assert_eq!(v["observations"][0]["node"], "rv-01");

    // arm64 code with a tight deadline: the native arm64 node (2,000 ms)
    // meets 2,600 ms; emulation on the x86 box (2,900 ms) would not.
    let (s, resp) = x86.post("/v1/jobs?policy=cvar", &job("arm-tight", "arm64", 2600, 2000), None);
    assert_eq!(s, 202, "{resp}");
    let p = &resp["job"]["plan"]["placements"][0];
    assert_eq!((p["node"].as_str(), p["format"].as_str()), (Some("arm-01"), Some("native")), "{resp}");
    assert_eq!(resp["job"]["plan"]["predicted"]["meets_deadline"], true);
}
