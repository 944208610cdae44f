//! A screenshot of a running agent's web view with one job opened (the
//! picture in docs/ui.md comes from `twinmesh demo --stay`):
//!
//! ```sh
//! cargo run --release -p twinmesh-agent -- demo --stay &
//! cargo run --release -p twinmesh-tests --example ui_screenshot -- http://127.0.0.1:PORT docs/img/ui.png
//! ```
//!
//! Opens the job with the most stages among the finished ones that took a
//! preemptive action, or else the first finished one.

use std::time::Duration;

use twinmesh_tests::browser::{self, Browser};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let base = args.first().expect("usage: ui_screenshot <agent API URL> <out.png>");
    let out = args.get(1).map_or("ui.png", String::as_str);
    let (chromium, driver) = browser::installed().expect("chromium and chromedriver");
    let web = Browser::start(&chromium, &driver, 1400, 1500).expect("browser");
    web.goto(&format!("{base}/ui")).expect("load");
    let rows = web.wait(Duration::from_secs(30), |w| {
        let v = w.script("return document.querySelectorAll('#jobs tr.job.succeeded').length", vec![]).ok()?;
        (v.as_u64()? > 0).then_some(())
    });
    rows.expect("no finished job on the page");
    let pick = "const rows = [...document.querySelectorAll('#jobs tr.job.succeeded')];
        const acted = rows.find((r) => r.cells[8].textContent.trim() !== '');
        return (acted || rows.find((r) => r.dataset.job.startsWith('batch')) || rows[0]).dataset.job;";
    let id = web.script(pick, vec![]).expect("pick").as_str().unwrap_or_default().to_string();
    let row = web.find(&format!("#jobs tr[data-job=\"{id}\"]")).expect("row");
    web.click(&row).expect("click");
    web.wait(Duration::from_secs(10), |w| (!w.find_all("#timeline rect.obs").ok()?.is_empty()).then_some(()))
        .expect("timeline");
    std::thread::sleep(Duration::from_millis(500));
    web.script(
        "window.scrollTo(0, 0); for (const s of document.querySelectorAll('.scroll')) s.scrollLeft = 0;",
        vec![],
    )
    .ok();
    std::fs::write(out, web.screenshot().expect("screenshot")).expect("write");
    println!("{out}: job {id}");
}
