//! The `twinmesh-sims` binary as a user runs it.

use std::process::Command;

use serde_json::Value;

fn sims(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_twinmesh-sims")).args(args).output().expect("run twinmesh-sims")
}

// Rule: `preemptive --output json` prints one JSON object and nothing
// else on stdout: the sweep's parameters and one summary per load,
// reliability and arm, reactive first in each cell, with figures that
// agree with one another; the table is not printed.
#[test]
fn preemptive_prints_one_json_object() {
    let dir = tempfile_dir();
    let out = sims(&[
        "preemptive",
        "--jobs",
        "120",
        "--loads",
        "0.5,0.7",
        "--reliability",
        "0.7",
        "--runs",
        "1",
        "--output",
        "json",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let doc: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{stdout}"));
    assert_eq!(doc["jobs"], 120);
    assert_eq!(doc["loads"], serde_json::json!([0.5, 0.7]));
    assert_eq!(doc["runs"], 1);
    let summary = doc["summary"].as_array().expect("a summary array");
    let arms = ["reactive", "migrate", "migrate+replicate", "preemptive+scaling", "no failures"];
    assert_eq!(summary.len(), 2 * arms.len(), "{doc}");
    for (i, s) in summary.iter().enumerate() {
        assert_eq!(s["arm"], arms[i % arms.len()], "{s}");
        assert_eq!(s["load"], if i < arms.len() { 0.5 } else { 0.7 }, "{s}");
        assert_eq!(s["runs"], 1);
        let v = s["slo_violation_pct"].as_f64().expect("a number");
        assert!((0.0..=100.0).contains(&v), "{s}");
        assert!(s["p99_latency_ms"].as_f64().expect("a number") > 0.0, "{s}");
        if s["arm"] == "reactive" {
            // Compared with itself.
            assert_eq!(s["fewer_violations_pct"], 0.0, "{s}");
            assert_eq!(s["extra_cpu_pct"], 0.0, "{s}");
            assert_eq!(s["actions"], 0.0, "reactive takes no action ahead: {s}");
        }
    }
    // The files are still written; the note about them is on stderr.
    assert!(dir.join("preemptive-summary.csv").is_file());
    assert!(stderr.contains("wrote"), "{stderr}");
    // The text table is the default.
    let text = sims(&["preemptive", "--jobs", "60", "--loads", "0.7", "--reliability", "0.7", "--runs", "1"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.starts_with(" load"), "{text}");
    assert!(serde_json::from_str::<Value>(&text).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("twinmesh-sims-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
