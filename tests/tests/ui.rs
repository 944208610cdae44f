//! The web view (`/ui`) in a real headless Chromium against two agents:
//! the token gate, the fabric and mesh as the twin holds them, a job
//! submitted through the form appearing with its timeline, a refused
//! document's error next to the form, and a node going down live; the
//! accessibility of both pages (tests/a11y/checks.js, and axe-core where
//! `npm ci --prefix tests/a11y` installed it: no critical or serious
//! violation), the job rows by keyboard, and no Content-Security-Policy
//! violation. Skipped with a message where Chromium or ChromeDriver is
//! missing (`.ci/run` installs both). Screenshots go to
//! `target/ui-artifacts/`. Without a browser: the CSP header and the
//! served HTML without inline script or style.

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

/// What tests/a11y/checks.js finds wrong with the current page.
fn a11y_problems(b: &Browser) -> Vec<String> {
    let checks = std::fs::read_to_string(repo_root().join("tests/a11y/checks.js")).expect("tests/a11y/checks.js");
    let v = b.script(&checks, vec![]).expect("the checks run");
    v.as_array().expect("a list of problems").iter().map(|p| p.as_str().unwrap_or_default().to_string()).collect()
}

/// axe-core, where `npm ci --prefix tests/a11y` installed it.
fn axe_source() -> Option<String> {
    std::fs::read_to_string(repo_root().join("tests/a11y/node_modules/axe-core/axe.min.js")).ok()
}

/// axe-core's critical and serious violations on the current page.
fn axe_violations(b: &Browser, axe: &str) -> Vec<String> {
    let loaded = b.script(&format!("{axe}\n;return typeof window.axe;"), vec![]).expect("axe-core loads");
    assert_eq!(loaded, "object", "axe-core did not load");
    let run = "const done = arguments[arguments.length - 1];
        window.axe.run(document, { resultTypes: ['violations'] })
          .then((r) => done(r.violations.filter((v) => v.impact === 'critical' || v.impact === 'serious')
            .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`)))
          .catch((e) => done(['axe-core failed: ' + e]));";
    let v = b.script_async(run, vec![]).expect("axe-core runs");
    v.as_array().expect("a list").iter().map(|p| p.as_str().unwrap_or_default().to_string()).collect()
}

/// The page's accessibility: the checks, and axe-core where installed.
fn assert_accessible(b: &Browser, page: &str, axe: Option<&str>) {
    let problems = a11y_problems(b);
    assert!(problems.is_empty(), "{page}: {} accessibility problems:\n{}", problems.len(), problems.join("\n"));
    if let Some(axe) = axe {
        let v = axe_violations(b, axe);
        assert!(v.is_empty(), "{page}: axe-core finds {} critical or serious violations:\n{}", v.len(), v.join("\n"));
    }
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

    let axe = axe_source();
    if axe.is_none() {
        twinmesh_tests::skip(
            "axe-core is not installed (npm ci --prefix tests/a11y): the page is checked by tests/a11y/checks.js only",
        );
    }
    let axe = axe.as_deref();
    let web = Browser::start(&chromium, &driver, 1400, 1000).expect("browser");
    // Without the token: the gate, not the page.
    web.goto(&format!("{}/ui", a.api)).unwrap();
    let body = text_of(&web, "body").unwrap_or_default();
    assert!(body.contains("needs its API token"), "{body}");
    assert_eq!(count(&web, "#nodes"), 0);
    assert_accessible(&web, "the token page", axe);
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
    // From here on, anything the Content-Security-Policy blocks is noted.
    web.script(
        "window.__csp = []; document.addEventListener('securitypolicyviolation', \
         (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`)); return 1;",
        vec![],
    )
    .unwrap();

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

    // Everything on screen (fabric, jobs, the job's timeline, the
    // comparison, the form) is accessible.
    assert_accessible(&web, "the web view", axe);
    // The keyboard opens a job as a click does: Tab reaches its row,
    // Enter opens it.
    web.script(
        "document.getElementById('job').hidden = true; document.getElementById('job-id').textContent = ''; \
                document.activeElement.blur(); window.scrollTo(0, 0); return 1;",
        vec![],
    )
    .unwrap();
    let reached = (0..40).find_map(|_| {
        web.keys("\u{E004}").unwrap();
        let on = web
            .script(
                "const e = document.activeElement; return e && e.matches('#jobs tr.job') ? e.dataset.job : null;",
                vec![],
            )
            .unwrap();
        on.as_str().map(str::to_string)
    });
    let reached = reached.expect("Tab never reached a job row");
    web.keys("\u{E007}").unwrap();
    let opened = web.wait(LIMIT, |w| text_of(w, "#job-id").filter(|s| *s == reached));
    assert!(opened.is_some(), "Enter on the row of {reached} did not open it: {:?}", text_of(&web, "#job-id"));

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
    // Nothing the page did was blocked by its policy.
    let blocked = web.script("return window.__csp;", vec![]).unwrap();
    assert_eq!(blocked, serde_json::json!([]), "Content-Security-Policy violations");
    save(&web, "ui.png");
}

/// A response's header, or "".
fn header(r: &reqwest::blocking::Response, name: &str) -> String {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

// Rule: every response of the web view carries a Content-Security-Policy
// that allows scripts and styles from the agent alone and nothing inline,
// and the HTML it serves (the page and the token form) has a language and
// no inline script, style or event handler, only files the agent serves.
#[test]
fn the_web_view_has_a_content_security_policy_and_no_inline_code() {
    let dir = tempdir();
    let tok = dir.path().join("api.token");
    std::fs::write(&tok, TOKEN).unwrap();
    let a =
        AgentProc::start("dc-x86-01", "dc-core", &dir.path().join("a"), &["--api-token-file", tok.to_str().unwrap()]);
    let http = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let get = |path: &str, cookie: bool| {
        let mut r = http.get(format!("{}{path}", a.api));
        if cookie {
            r = r.header("cookie", format!("twinmesh_token={TOKEN}"));
        }
        r.send().unwrap()
    };
    let check_csp = |r: &reqwest::blocking::Response, what: &str| {
        let csp = header(r, "content-security-policy");
        let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
        for d in ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"] {
            assert!(directives.contains(&d), "{what}: the CSP lacks {d}: {csp:?}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{what}: {csp}");
        assert_eq!(header(r, "x-content-type-options"), "nosniff", "{what}");
    };
    let gate = get("/ui", false);
    assert_eq!(gate.status(), 401);
    check_csp(&gate, "the token page");
    let gate = gate.text().unwrap();
    let page = get("/ui", true);
    assert_eq!(page.status(), 200);
    check_csp(&page, "the page");
    let page = page.text().unwrap();
    for (what, html) in [("the token page", &gate), ("the page", &page)] {
        let lower = html.to_ascii_lowercase();
        assert!(lower.contains("<html lang=en") || lower.contains("<html lang=\"en\""), "{what} has no lang: {html}");
        assert!(!lower.contains("<style"), "{what} has an inline style sheet");
        assert!(!lower.contains(" style="), "{what} has inline style attributes");
        // Every <script> loads a file and has no body.
        for part in lower.split("<script").skip(1) {
            let (tag, rest) = part.split_once('>').expect("a closed tag");
            assert!(tag.contains("src="), "{what}: a <script> without src: <script{tag}>");
            let body = rest.split("</script>").next().unwrap_or_default();
            assert!(body.trim().is_empty(), "{what}: an inline script: {body}");
        }
        for handler in [" onclick=", " onload=", " onsubmit=", " onerror=", "javascript:"] {
            assert!(!lower.contains(handler), "{what} has inline code: {handler}");
        }
    }
    assert!(page.contains("src=\"/ui/app.js\"") && page.contains("href=\"/ui/app.css\""), "{page}");
    // The files it loads, served with the same policy, no token needed.
    for (path, kind, marker) in
        [("/ui/app.js", "text/javascript", "new EventSource"), ("/ui/app.css", "text/css", "--mute")]
    {
        let r = get(path, false);
        assert_eq!(r.status(), 200, "{path}");
        assert!(header(&r, "content-type").starts_with(kind), "{path}: {}", header(&r, "content-type"));
        check_csp(&r, path);
        assert!(r.text().unwrap().contains(marker), "{path} is not the page's file");
    }
}
