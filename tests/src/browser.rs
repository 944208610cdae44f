//! A headless Chromium driven through ChromeDriver's W3C WebDriver API
//! (JSON over HTTP): enough to load a page, read and click elements, type,
//! run a script and take a screenshot. Debian's `chromium` and
//! `chromium-driver`; no network (the flags keep Chromium from calling
//! home) and a fresh profile per browser.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session; the driver and browser end when it is dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
}

/// Chromium and ChromeDriver, when both are installed.
pub fn installed() -> Option<(PathBuf, PathBuf)> {
    let chromium = ["chromium", "chromium-browser"].iter().find_map(|p| crate::which(p))?;
    let driver = crate::which("chromedriver")?;
    Some((chromium, driver))
}

impl Browser {
    /// Starts ChromeDriver on a free port and opens a headless session
    /// with a window of `width`×`height`.
    pub fn start(chromium: &Path, driver: &Path, width: u32, height: u32) -> Result<Browser, String> {
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("chromedriver: {e}"))?;
        let http =
            reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().map_err(|e| e.to_string())?;
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut b = Browser { driver: child, base, session: String::new(), http, _profile: profile };
        let up = crate::wait_for(Duration::from_secs(30), || {
            let r = b.http.get(format!("{}/status", b.base)).send().ok()?;
            let v: Value = r.json().ok()?;
            v["value"]["ready"].as_bool().filter(|r| *r)
        });
        up.ok_or("chromedriver did not become ready within 30 s")?;
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", b._profile.path().display()),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args }
        }}});
        let v = b.call("POST", "/session", Some(caps))?;
        b.session = v["sessionId"].as_str().ok_or_else(|| format!("no session id in {v}"))?.to_string();
        Ok(b)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body.unwrap_or(json!({}))),
        };
        let r = req.send().map_err(|e| format!("{method} {path}: {e}"))?;
        let ok = r.status().is_success();
        let v: Value = r.json().map_err(|e| format!("{method} {path}: {e}"))?;
        if !ok {
            return Err(format!("{method} {path}: {}", v["value"]["message"].as_str().unwrap_or(&v.to_string())));
        }
        Ok(v["value"].clone())
    }

    /// Loads `url`.
    pub fn goto(&self, url: &str) -> Result<(), String> {
        self.call("POST", "/url", Some(json!({ "url": url }))).map(drop)
    }

    /// The page's current address.
    pub fn url(&self) -> Result<String, String> {
        Ok(self.call("GET", "/url", None)?.as_str().unwrap_or_default().to_string())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and
    /// returns its result.
    pub fn script(&self, script: &str, args: Vec<Value>) -> Result<Value, String> {
        self.call("POST", "/execute/sync", Some(json!({ "script": script, "args": args })))
    }

    /// Runs `script` asynchronously: it ends by calling its last argument
    /// (`arguments[arguments.length - 1]`) with the result.
    pub fn script_async(&self, script: &str, args: Vec<Value>) -> Result<Value, String> {
        self.call("POST", "/execute/async", Some(json!({ "script": script, "args": args })))
    }

    /// Presses and releases each key of `keys` in turn, as a keyboard
    /// does, on whatever has the focus (WebDriver key codes: Tab is
    /// `\u{E004}`, Enter `\u{E007}`).
    pub fn keys(&self, keys: &str) -> Result<(), String> {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|k| {
                [
                    json!({ "type": "keyDown", "value": k.to_string() }),
                    json!({ "type": "keyUp", "value": k.to_string() }),
                ]
            })
            .collect();
        let body = json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] });
        self.call("POST", "/actions", Some(body)).map(drop)
    }

    /// The first element matching `css`.
    pub fn find(&self, css: &str) -> Result<String, String> {
        let v = self.call("POST", "/element", Some(json!({ "using": "css selector", "value": css })))?;
        v[ELEMENT].as_str().map(str::to_string).ok_or_else(|| format!("no element id for {css}"))
    }

    /// Every element matching `css`.
    pub fn find_all(&self, css: &str) -> Result<Vec<String>, String> {
        let v = self.call("POST", "/elements", Some(json!({ "using": "css selector", "value": css })))?;
        Ok(v.as_array().into_iter().flatten().filter_map(|e| e[ELEMENT].as_str().map(str::to_string)).collect())
    }

    /// An element's rendered text.
    pub fn text(&self, el: &str) -> Result<String, String> {
        Ok(self.call("GET", &format!("/element/{el}/text"), None)?.as_str().unwrap_or_default().to_string())
    }

    /// Clicks an element.
    pub fn click(&self, el: &str) -> Result<(), String> {
        self.call("POST", &format!("/element/{el}/click"), None).map(drop)
    }

    /// Types `text` into an element.
    pub fn type_into(&self, el: &str, text: &str) -> Result<(), String> {
        self.call("POST", &format!("/element/{el}/value"), Some(json!({ "text": text }))).map(drop)
    }

    /// Empties an input or text area.
    pub fn clear(&self, el: &str) -> Result<(), String> {
        self.call("POST", &format!("/element/{el}/clear"), None).map(drop)
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Result<Vec<u8>, String> {
        use base64::Engine;
        let v = self.call("GET", "/screenshot", None)?;
        base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).map_err(|e| e.to_string())
    }

    /// Polls `f` (every 100 ms) until it gives `Some`, for at most `limit`.
    pub fn wait<T>(&self, limit: Duration, mut f: impl FnMut(&Browser) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = f(self) {
                return Some(v);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", "", None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
