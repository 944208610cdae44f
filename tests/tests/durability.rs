//! An agent whose disk fills up: it never acknowledges a job it then
//! loses, answers 503 while it cannot commit, recovers by itself when
//! space is freed, and after a restart runs no finished job again.
//!
//! Needs root (a small tmpfs is mounted for the data directory); skipped
//! with a message elsewhere.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use twinmesh_tests::{AgentProc, tempdir, twinmesh_bin, wait_for};

fn doc(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"twinmesh.io/v1","metadata":{{"name":"{name}","origin":{{"cluster":"edge-microdc"}}}},"spec":{{"stages":[
        {{"id":"s","compute":{{"cpu":1,"mem_gb":1,"duration_ms":50}},"output_mb":1}},
        {{"id":"t","compute":{{"cpu":1,"mem_gb":1,"duration_ms":50}},"predecessor":"s"}}]}}}}"#
    )
}

/// Unmounts on drop.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> Option<Tmpfs> {
    std::fs::create_dir_all(dir).ok()?;
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Tmpfs(dir.to_path_buf()))
}

/// Fills the filesystem of `dir` with one file; returns its path.
fn fill(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).expect("filler");
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    p
}

fn post(api: &str, body: &str) -> (u16, serde_json::Value) {
    let r =
        reqwest::blocking::Client::new().post(format!("{api}/v1/jobs")).body(body.to_string()).send().expect("POST");
    (r.status().as_u16(), r.json().unwrap_or(serde_json::Value::Null))
}

#[test]
fn a_full_disk_never_loses_an_acknowledged_job_and_heals_without_a_restart() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let Some(_mount) = mount_tmpfs(&data, "3m") else {
        return twinmesh_tests::skip("cannot mount a tmpfs here (needs root); the full-disk test did not run");
    };
    let args = ["--time-scale", "0.001"];
    // The log on the full disk too: logging must not take the agent down.
    let log = data.join("agent.log");
    let start =
        || AgentProc::start_logged(Command::new(twinmesh_bin()), "edge-srv-01", "edge-microdc", &data, &log, &args);
    let a = start();
    let mut acked = Vec::new();
    for k in 0..10 {
        let (s, r) = post(&a.api, &doc(&format!("before-{k}")));
        assert_eq!(s, 202, "{r}");
        acked.push(r["id"].as_str().unwrap().to_string());
    }
    let filler = fill(&data);
    // Pairs of identical concurrent submissions until the store refuses.
    let mut refused = 0;
    for k in 0..300 {
        let body = doc(&format!("full-{k}"));
        let (api1, api2, b1, b2) = (a.api.clone(), a.api.clone(), body.clone(), body.clone());
        let t1 = std::thread::spawn(move || post(&api1, &b1));
        let t2 = std::thread::spawn(move || post(&api2, &b2));
        let ((s1, r1), (s2, r2)) = (t1.join().unwrap(), t2.join().unwrap());
        let ok = |s: u16| s == 200 || s == 202;
        assert_eq!(ok(s1), ok(s2), "identical submissions answered differently: {s1} {r1} / {s2} {r2}");
        if ok(s1) {
            let id = r1["id"].as_str().unwrap().to_string();
            assert_eq!(a.get(&format!("/v1/jobs/{id}")).0, 200, "acknowledged, then not found");
            acked.push(id);
        } else {
            assert_eq!(s1, 503, "{r1}");
            refused += 1;
            if refused >= 3 {
                break;
            }
        }
    }
    assert!(refused > 0, "the disk never filled ({} jobs acknowledged)", acked.len());
    assert_eq!(a.get("/readyz").0, 503, "readyz must follow the store");
    // Space back: accepted again without a restart, readyz back to 200.
    std::fs::remove_file(&filler).unwrap();
    let ready = wait_for(Duration::from_secs(30), || (a.get("/readyz").0 == 200).then_some(()));
    assert!(ready.is_some(), "readyz stayed 503 after space was freed; log:\n{}", a.log());
    let (s, r) = post(&a.api, &doc("after-space"));
    assert_eq!(s, 202, "{r}");
    acked.push(r["id"].as_str().unwrap().to_string());
    // Every acknowledged job runs to the end.
    let all_done = wait_for(Duration::from_secs(60), || {
        acked.iter().all(|id| a.get(&format!("/v1/jobs/{id}")).1["state"] == "succeeded").then_some(())
    });
    assert!(all_done.is_some(), "not every acknowledged job finished; log:\n{}", a.log());
    // A restart: every job is there, finished, and none runs again.
    let log_before = a.log().len();
    a.kill9();
    let a = start();
    for id in &acked {
        let (code, j) = a.get(&format!("/v1/jobs/{id}"));
        assert_eq!(code, 200, "{id} lost over the restart");
        assert_eq!(j["state"], "succeeded", "{j}");
    }
    let log = a.log();
    assert!(!log[log_before..].contains("resuming job"), "a finished job ran again:\n{}", &log[log_before..]);
    eprintln!("{} acknowledged, {refused} refused while full, none lost", acked.len());
}

fn metric(a: &AgentProc, name: &str) -> Option<f64> {
    let text = reqwest::blocking::get(format!("{}/metrics", a.api)).ok()?.text().ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

// Rule: finished jobs are kept up to the retention's count (oldest go
// first), in memory and on disk; what is running is never evicted.
#[test]
fn retention_bounds_what_is_kept_of_finished_jobs() {
    let dir = tempdir();
    let args = ["--time-scale", "0.001", "--keep-finished", "5"];
    let a = AgentProc::start("edge-srv-01", "edge-microdc", dir.path(), &args);
    let mut ids = Vec::new();
    for k in 0..12 {
        let (s, r) = post(&a.api, &doc(&format!("kept-{k}")));
        assert_eq!(s, 202, "{r}");
        ids.push(r["id"].as_str().unwrap().to_string());
        std::thread::sleep(Duration::from_millis(20));
    }
    let settled =
        wait_for(Duration::from_secs(60), || (metric(&a, "twinmesh_jobs_succeeded_total")? >= 12.0).then_some(()));
    assert!(settled.is_some(), "jobs did not finish; log:\n{}", a.log());
    let held = wait_for(Duration::from_secs(10), || (metric(&a, "twinmesh_jobs_held")? <= 5.0).then_some(()));
    assert!(held.is_some(), "held {:?}", metric(&a, "twinmesh_jobs_held"));
    assert_eq!(metric(&a, "twinmesh_jobs_evicted_total"), Some(7.0));
    assert_eq!(a.get(&format!("/v1/jobs/{}", ids[0])).0, 404, "the oldest went");
    assert_eq!(a.get(&format!("/v1/jobs/{}", ids[11])).0, 200, "the newest stays");
    let bytes = metric(&a, "twinmesh_store_bytes").unwrap_or(0.0);
    assert!(bytes > 0.0, "the database size is exported");
    // Also on disk: a restart holds the same five.
    let data = a.data.clone();
    a.kill9();
    let a = AgentProc::start("edge-srv-01", "edge-microdc", &data, &args);
    assert_eq!(metric(&a, "twinmesh_jobs_held"), Some(5.0));
}

// Rule: beyond --max-in-flight accepted-but-unfinished jobs, submissions
// are refused with 503 (retry later) instead of growing a backlog.
#[test]
fn back_pressure_beyond_the_in_flight_bound() {
    let dir = tempdir();
    let args = ["--time-scale", "1", "--max-in-flight", "3"];
    let a = AgentProc::start("edge-srv-01", "edge-microdc", dir.path(), &args);
    for k in 0..3 {
        let (s, r) = post(&a.api, &doc(&format!("slow-{k}")));
        assert_eq!(s, 202, "{r}");
    }
    let (s, r) = post(&a.api, &doc("one-too-many"));
    assert_eq!(s, 503, "{r}");
    assert!(r["error"].as_str().unwrap_or_default().contains("retry later"), "{r}");
    // A duplicate of an accepted job is still answered (it adds nothing).
    let (s, _) = post(&a.api, &doc("slow-0"));
    assert_eq!(s, 200);
}
