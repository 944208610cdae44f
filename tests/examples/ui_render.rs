//! Benchmark of the web view: time to first render of `/ui` with a large
//! twin, in headless Chromium, and the agent's resident memory before and
//! after the page has been open.
//!
//! ```sh
//! cargo build --release -p twinmesh-agent
//! TWINMESH_BIN=target/release/twinmesh cargo run --release -p twinmesh-tests --example ui_render -- 1000 5
//! ```
//!
//! Arguments: nodes of the synthetic fabric (default 1,000), page loads
//! (default 5). Prints one JSON line per load and a summary.

use std::time::{Duration, Instant};

use twinmesh_tests::browser::{self, Browser};
use twinmesh_tests::{AgentProc, tempdir, wait_for};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").to_string()))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nodes: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let (chromium, driver) =
        browser::installed().expect("chromium and chromedriver (apt-get install chromium chromium-driver)");
    let dir = tempdir();
    let n = nodes.to_string();
    let a =
        AgentProc::start("syn-000-datacenter-n00000", "syn-000-datacenter", dir.path(), &["--synthetic-fabric", &n]);
    let pid = a.pid();
    std::thread::sleep(Duration::from_secs(3));
    let before = rss_kib(pid);
    let web = Browser::start(&chromium, &driver, 1400, 1000).expect("browser");
    let mut times = Vec::new();
    for run in 0..runs {
        let t0 = Instant::now();
        web.goto(&format!("{}/ui", a.api)).expect("load");
        let rows = wait_for(Duration::from_secs(60), || {
            let v = web.script("return document.querySelectorAll('#nodes tr[data-node]').length", vec![]).ok()?;
            (v.as_u64()? as usize >= nodes).then_some(())
        });
        assert!(rows.is_some(), "the page did not draw {nodes} nodes");
        let first = web.script("return window.twinmeshFirstRender", vec![]).unwrap().as_f64().unwrap_or(f64::NAN);
        let wall = t0.elapsed().as_secs_f64() * 1e3;
        println!("{{\"run\":{run},\"nodes\":{nodes},\"first_render_ms\":{first:.1},\"client_wall_ms\":{wall:.1}}}");
        times.push(first);
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib(pid);
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"nodes\":{nodes},\"runs\":{runs},\"first_render_ms_median\":{:.1},\"first_render_ms_max\":{:.1},\"agent_rss_mib_before\":{:.1},\"agent_rss_mib_after_page\":{:.1}}}",
        times[times.len() / 2],
        times[times.len() - 1],
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );
}
