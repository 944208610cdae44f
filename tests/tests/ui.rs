//! The web view (`/ui`) in a real headless Chromium against two agents:
//! the token gate, the fabric and mesh as the twin holds them, a job
//! submitted through the form appearing with its timeline, a refused
//! document's error next to the form, and a node going down live. Skipped
//! with a message where Chromium or ChromeDriver is missing (`.ci/run`
//! installs both). Screenshots go to `target/ui-artifacts/`.

use std::time::Duration;

use serde_json::Value;
use twinmesh_tests::browser::{self, Browser};
use twinmesh_tests::{AgentProc, key_file, repo_root, tempdir, wait_for};

const LIMIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "ui-test-token";

const DOC: &str = "apiVersion: twinmesh.io/v1
kind: Job
metadata:
  name: from-the-form
  deadline_ms: 20000
  origin: { cluster: dc-core }
spec:
  stages:
    - id: ingest
      compute: { cpu: 1, mem_gb: 0.5, duration_ms: 300 }
      output_mb: 5
    - id: analyse
      compute: { cpu: 2, mem_gb: 1, duration_ms: 900 }
      predecessor: ingest
";

fn text_of(b: &Browser, css: &str) -> Option<String> {
    b.find(css).ok().and_then(|e| b.text(&e).ok())
}

fn count(b: &Browser, css: &str) -> usize {
    b.find_all(css).map(|v| v.len()).unwrap_or(0)
}

fn save(b: &Browser, name: &str) {
    let dir = repo_root().join("target/ui-artifacts");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(png) = b.screenshot() {
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        let _ = std::fs::write(dir.join(name), &png);
        if std::env::var_os("TWINMESH_WRITE_SCREENSHOT").is_some() {
            let _ = std::fs::write(repo_root().join("docs/img").join(name), &png);
        }
    }
}

#[test]
fn the_web_view_shows_the_twin_jobs_and_failures_live() {
    let Some((chromium, driver)) = browser::installed() else {
        return twinmesh_tests::skip(
            "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
        );
    };
    let dir = tempdir();
    let key = key_file(dir.path(), "mesh.key", 0x3c);
    let key = key.to_str().unwrap();
    let tok = dir.path().join("api.token");
    std::fs::write(&tok, TOKEN).unwrap();
    let a = AgentProc::start(
        "dc-x86-01",
        "dc-core",
        &dir.path().join("a"),
        &["--mesh-key-file", key, "--api-token-file", tok.to_str().unwrap(), "--sync-interval", "1"],
    );
    let b = AgentProc::start(
        "edge-srv-01",
        "edge-microdc",
        &dir.path().join("b"),
        &["--mesh-key-file", key, "--bootstrap", &a.mesh, "--sync-interval", "1"],
    );
    let twin = |p: &AgentProc| {
        let r = reqwest::blocking::Client::new().get(format!("{}/v1/twin", p.api)).bearer_auth(TOKEN).send().unwrap();
        r.json::<Value>().unwrap()
    };
    // The mesh first: both agents see each other alive.
    wait_for(LIMIT, || {
        let t = twin(&a);
        t["liveness"].as_array()?.iter().any(|p| p["peer"] == "edge-srv-01" && p["state"] == "alive").then_some(())
    })
    .unwrap_or_else(|| panic!("agents did not meet; log:\n{}", a.log()));

    let web = Browser::start(&chromium, &driver, 1400, 1000).expect("browser");
    // Without the token: the gate, not the page.
    web.goto(&format!("{}/ui", a.api)).unwrap();
    let body = text_of(&web, "body").unwrap_or_default();
    assert!(body.contains("needs its API token"), "{body}");
    assert_eq!(count(&web, "#nodes"), 0);
    // With it: a cookie, and the address bar loses the token.
    web.goto(&format!("{}/ui?token={TOKEN}", a.api)).unwrap();
    assert!(web.url().unwrap().ends_with("/ui"), "{}", web.url().unwrap());

    // The fabric: one row per node of the twin, and the peer alive.
    let nodes = twin(&a)["nodes"].as_array().unwrap().len();
    assert!(nodes >= 2);
    let shown = web.wait(LIMIT, |w| {
        let n = count(w, "#nodes tr[data-node]");
        (n >= nodes).then_some(n)
    });
    assert!(shown.is_some(), "the page drew {} of {nodes} nodes", count(&web, "#nodes tr[data-node]"));
    assert_eq!(text_of(&web, "#agent").as_deref(), Some("dc-x86-01"));
    let peer = web.wait(LIMIT, |w| text_of(w, "#peers tr[data-peer=\"edge-srv-01\"] .st").filter(|s| s == "alive"));
    assert!(peer.is_some(), "peer row: {:?}", text_of(&web, "#peers"));
    assert!(text_of(&web, "#live").is_some_and(|s| s == "live"), "the event stream is open");

    // A refused document: the API's error, next to the form.
    let bad = DOC.replace("output_mb: 5", "output_mb: 5\n      colour: blue");
    let (code, err) = a.post("/v1/jobs?dry_run=true", &bad, Some(TOKEN));
    assert_eq!(code, 400, "{err}");
    let doc = web.find("#doc").unwrap();
    web.script("document.getElementById('doc').value = arguments[0];", vec![Value::from(bad)]).unwrap();
    web.click(&web.find("#submit-btn").unwrap()).unwrap();
    let shown = web.wait(LIMIT, |w| text_of(w, "#field-error").filter(|s| !s.is_empty()));
    let shown = shown.expect("an error next to the form");
    assert!(shown.contains(err["error"].as_str().unwrap()), "page: {shown}; API: {err}");
    assert!(shown.contains("colour"), "{shown}");

    // A job through the form: it appears in the list, runs, and its
    // timeline shows a predicted and an observed bar per stage.
    web.clear(&doc).unwrap();
    web.type_into(&doc, DOC).unwrap();
    web.click(&web.find("#submit-btn").unwrap()).unwrap();
    let id = web.wait(LIMIT, |w| text_of(w, "#submitted-job").filter(|s| !s.is_empty())).expect("submitted");
    assert_eq!(text_of(&web, "#field-error").unwrap_or_default(), "");
    let row = format!("#jobs tr[data-job=\"{id}\"]");
    let done = web.wait(LIMIT, |w| text_of(w, &format!("{row} .st")).filter(|s| s == "succeeded"));
    assert!(done.is_some(), "job row: {:?}; log:\n{}", text_of(&web, &row), a.log());
    web.click(&web.find(&row).unwrap()).unwrap();
    let bars = web.wait(LIMIT, |w| {
        let (p, o) = (count(w, "#timeline rect.pred"), count(w, "#timeline rect.obs"));
        (p == 2 && o == 2).then_some((p, o))
    });
    assert!(bars.is_some(), "timeline: {:?}", text_of(&web, "#job"));
    assert_eq!(text_of(&web, "#job-id").as_deref(), Some(id.as_str()));
    let rec: Value = reqwest::blocking::Client::new()
        .get(format!("{}/v1/jobs/{id}", a.api))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    // The committed prediction on the timeline: each stage's reserved
    // window, the p50–p90 band and when the job finished.
    let committed = &rec["committed"];
    assert_eq!(committed["windows"].as_array().map(Vec::len), Some(2), "{rec}");
    assert!(committed["p90_ms"].as_f64().unwrap() >= committed["p50_ms"].as_f64().unwrap(), "{rec}");
    assert_eq!(count(&web, "#timeline rect.resv"), 2, "{:?}", text_of(&web, "#job"));
    assert_eq!(count(&web, "#timeline rect.band"), 1);
    assert_eq!(count(&web, "#timeline line.done"), 1);
    let first = rec["plan"]["placements"][0]["node"].as_str().unwrap().to_string();
    let placements = text_of(&web, "#placements").unwrap_or_default();
    assert!(placements.contains(&first), "{placements} lacks {first}");
    // Every node the plan uses is on the page, published or not.
    assert_eq!(count(&web, &format!("#nodes tr[data-node=\"{first}\"]")), 1, "{first} has no row");

    // What each policy would do: four dry runs side by side.
    web.click(&web.find("#compare-btn").unwrap()).unwrap();
    let rows = web.wait(LIMIT, |w| (count(w, "#compare tr[data-policy]") == 4).then_some(()));
    assert!(rows.is_some(), "compare: {:?}", text_of(&web, "#compare"));

    // A node goes down: its row turns Down without a reload.
    let victim = twin(&a)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"]["name"].as_str().unwrap().to_string())
        .find(|n| n != "dc-x86-01" && n != "edge-srv-01")
        .unwrap_or_else(|| "edge-srv-01".into());
    let marker = web.script("window.__same_page = 42; return 1;", vec![]).unwrap();
    assert_eq!(marker, 1);
    let (code, v) =
        b.post("/v1/observe", &format!(r#"{{"kind":"node_down","node":"{victim}","duration_ms":600000}}"#), None);
    assert_eq!(code, 202, "{v}");
    let down =
        web.wait(LIMIT, |w| text_of(w, &format!("#nodes tr[data-node=\"{victim}\"] .st")).filter(|s| s == "Down"));
    assert!(down.is_some(), "{victim} row: {:?}", text_of(&web, &format!("#nodes tr[data-node=\"{victim}\"]")));
    assert_eq!(web.script("return window.__same_page;", vec![]).unwrap(), 42, "no reload");
    let failures = text_of(&web, "#failures").unwrap_or_default();
    assert!(failures.contains(&victim) && failures.contains("node_down"), "{failures}");
    save(&web, "ui.png");
}
