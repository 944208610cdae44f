//! `twinmesh demo` as a user runs it: seven agents, a job stream, a
//! summary as one JSON object on the last line.

use std::time::Duration;

use twinmesh_tests::{run_twinmesh, twinmesh_bin};

/// Far above what the demo needs (3 s in release, about a minute for a
/// debug build on a loaded machine): a limit, not a measurement.
const LIMIT: Duration = Duration::from_secs(600);

#[test]
fn demo_runs_every_job_to_the_end_and_reports_json() {
    let out =
        run_twinmesh(&["demo", "--jobs", "24", "--seed", "7", "--duration", "500", "--output", "json"], None, LIMIT);
    assert!(out.status.success(), "stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("output");
    let v: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    assert_eq!(v["agents"].as_array().unwrap().len(), 7);
    assert_eq!(v["jobs_submitted"], 24);
    assert_eq!(v["states"]["succeeded"], 24, "{v}");
    assert_eq!(v["planner_of_job"].as_object().unwrap().len(), 24);
    // Jobs are planned near their origin: most by an agent of the origin's cluster.
    assert!(v["planned_in_origin_cluster"].as_u64().unwrap() >= 18, "{v}");
    let rate = v["acceptance_rate"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&rate));
    assert!(v["injected_failures"][0].as_str().is_some_and(|n| !n.is_empty()), "{v}");
    assert!(v["preemptive_moves"].as_u64().is_some(), "{v}");
}

/// A cgroup holding `quota` of a core, removed on drop: the v1 `cpu`
/// controller (`cpu.cfs_quota_us`), or on a cgroup v2 host `cpu.max` in a
/// child of the root (the `cpu` controller enabled for it).
struct CpuQuota(std::path::PathBuf);

impl CpuQuota {
    fn new(name: &str, quota: f64) -> Result<CpuQuota, String> {
        let quota_us = (quota * 100_000.0) as u64;
        let v1 = std::path::Path::new("/sys/fs/cgroup/cpu");
        let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers");
        let (dir, files): (std::path::PathBuf, Vec<(&str, String)>) = if v1.is_dir() {
            (v1.join(name), vec![("cpu.cfs_period_us", "100000".into()), ("cpu.cfs_quota_us", quota_us.to_string())])
        } else if v2.is_file() {
            // Controllers are given to children by the parent's subtree
            // control; a host that already delegates cpu keeps it.
            let _ = std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", "+cpu");
            (std::path::PathBuf::from("/sys/fs/cgroup").join(name), vec![("cpu.max", format!("{quota_us} 100000"))])
        } else {
            return Err("neither cgroup v1 cpu nor cgroup v2 is mounted at /sys/fs/cgroup".into());
        };
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let g = CpuQuota(dir);
        for (f, v) in files {
            std::fs::write(g.0.join(f), v).map_err(|e| format!("{}: {e}", g.0.join(f).display()))?;
        }
        Ok(g)
    }

    fn add(&self, pid: u32) -> std::io::Result<()> {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string())
    }

    fn throttled(&self) -> u64 {
        let stat = std::fs::read_to_string(self.0.join("cpu.stat")).unwrap_or_default();
        stat.lines().find_map(|l| l.strip_prefix("nr_throttled ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

// Rule: a slow agent must not fail jobs: timeouts follow measured round
// trips and the agent's own pace. The whole demo — seven agents and the
// job stream — in one cgroup with 0.3 of a core (the debug build, itself
// several times slower than release): every job succeeds and each is
// planned in its origin's cluster. The quota is above what the idle mesh
// needs and not far above it: seven idle debug agents with the demo's
// clocks (probes every 250 ms, anti-entropy every second) take 0.22 of a
// core here (release: 0.05). Measured with this test's command: 0.3 core
// 15 s, 0.2 core 38 s, all jobs succeeded; at 0.15 core — below the idle
// need — the mesh falls behind for good (a tenth of a core was this
// test's quota while the idle mesh fitted in it).
const QUOTA: f64 = 0.3;

#[test]
fn the_demo_on_a_third_of_a_core_runs_every_job_near_its_origin() {
    let g = match CpuQuota::new(&format!("twinmesh-test-{}", std::process::id()), QUOTA) {
        Ok(g) => g,
        Err(e) => {
            return twinmesh_tests::skip(&format!("no cgroup cpu controller to throttle with ({e})"));
        }
    };
    let jobs = "10";
    let child = std::process::Command::new(twinmesh_bin())
        .args(["demo", "--jobs", jobs, "--seed", "2", "--duration", "500", "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn demo");
    g.add(child.id()).expect("into the cgroup");
    let start = std::time::Instant::now();
    let out = child.wait_with_output().expect("demo output");
    eprintln!("demo on {QUOTA} core took {:?}, throttled in {} periods", start.elapsed(), g.throttled());
    assert!(out.status.success(), "stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(g.throttled() > 10, "the quota really throttled the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().expect("output")).expect("JSON");
    assert_eq!(v["states"]["succeeded"], 10, "{v}");
    assert_eq!(v["planned_in_origin_cluster"], 10, "{v}");
}
