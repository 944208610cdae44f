//! Helpers for twinmesh's end-to-end tests: find (and build, once) the
//! `twinmesh` binary, and run it with a time limit.

pub mod browser;
pub mod kube_double;
pub mod netns;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Path of the `twinmesh` binary, built in this profile on first use
/// (`TWINMESH_BIN` overrides).
pub fn twinmesh_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var("TWINMESH_BIN") {
        Ok(p) => PathBuf::from(p),
        Err(_) => build_bin("twinmesh-agent", "twinmesh"),
    })
    .clone()
}

/// The simulator's binary (`twinmesh-sims`), built like [`twinmesh_bin`].
pub fn sims_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("twinmesh-sims", "twinmesh-sims")).clone()
}

/// Builds binary `bin` of `package` in the test's own profile; its path.
fn build_bin(package: &str, bin: &str) -> PathBuf {
    // The test executable lives in <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>").to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo_root()).args(["build", "-q", "-p", package, "--bin", bin]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let st = cmd.status().expect("run cargo build");
    assert!(st.success(), "building {bin} failed");
    let path = profile_dir.join(bin);
    assert!(path.exists(), "{} missing after build", path.display());
    path
}

/// Runs `twinmesh` with `args` and optional stdin, killing it after
/// `limit`.
pub fn run_twinmesh(args: &[&str], stdin: Option<&str>, limit: Duration) -> Output {
    use std::io::Write;
    let mut child = Command::new(twinmesh_bin())
        .args(args)
        .current_dir(repo_root())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn twinmesh");
    if let Some(text) = stdin {
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write stdin");
    }
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("twinmesh {args:?} ran past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `twinmesh` binary cross-built for `triple` (debug profile), built
/// on first use; `None` when the cross toolchain is missing.
pub fn cross_bin(triple: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // <target>/debug/deps/<test> → <target>
    let target = exe.parent()?.parent()?.parent()?.to_path_buf();
    let bin = target.join(triple).join("debug").join("twinmesh");
    // Always ask cargo: a no-op when up to date, a rebuild when not.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(repo_root())
        .args(["build", "-q", "-p", "twinmesh-agent", "--bin", "twinmesh", "--target", triple])
        .status()
        .ok()?;
    (st.success() && bin.exists()).then_some(bin)
}

/// A test that cannot run here (no root, no browser, no QEMU…) says why on
/// stderr and returns — unless `TWINMESH_REQUIRE_ALL` is set (`.ci/run`
/// sets it, on a machine that has everything), where a skip is a failure:
/// a check that did not run must not count as passed.
pub fn skip(why: &str) {
    if std::env::var_os("TWINMESH_REQUIRE_ALL").is_some_and(|v| !v.is_empty() && v != "0") {
        panic!("TWINMESH_REQUIRE_ALL is set, and this test cannot run here: {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// The path of a program on the PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// A `twinmesh agent` process, killed when dropped.
pub struct AgentProc {
    child: std::process::Child,
    /// Node name.
    pub name: String,
    /// API base URL (`http://127.0.0.1:port`).
    pub api: String,
    /// Mesh address (with `/p2p/<peer id>`).
    pub mesh: String,
    /// Data directory.
    pub data: PathBuf,
    /// Its log file.
    pub log: PathBuf,
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl AgentProc {
    /// Starts `twinmesh agent --node NAME --cluster CLUSTER` with free
    /// ports, data in `data`, plus `extra` arguments; waits until it prints
    /// its API and mesh addresses (30 s at most). Its log goes to
    /// `data/agent.log`.
    pub fn start(name: &str, cluster: &str, data: &std::path::Path, extra: &[&str]) -> AgentProc {
        Self::start_with(Command::new(twinmesh_bin()), name, cluster, data, extra)
    }

    /// As [`AgentProc::start`], running `cmd` (a `twinmesh` binary, or an
    /// emulator with the binary as its first argument).
    pub fn start_with(cmd: Command, name: &str, cluster: &str, data: &std::path::Path, extra: &[&str]) -> AgentProc {
        Self::start_logged(cmd, name, cluster, data, &data.join("agent.log"), extra)
    }

    /// As [`AgentProc::start_with`], logging to `log` (e.g. off a data
    /// directory that a test fills up).
    pub fn start_logged(
        cmd: Command,
        name: &str,
        cluster: &str,
        data: &std::path::Path,
        log_path: &std::path::Path,
        extra: &[&str],
    ) -> AgentProc {
        Self::start_at(cmd, name, cluster, data, log_path, "127.0.0.1", extra)
    }

    /// As [`AgentProc::start_logged`], with the API and the mesh on `ip`
    /// (free ports): an address of a network namespace, say.
    pub fn start_at(
        mut cmd: Command,
        name: &str,
        cluster: &str,
        data: &std::path::Path,
        log_path: &std::path::Path,
        ip: &str,
        extra: &[&str],
    ) -> AgentProc {
        use std::io::BufRead;
        std::fs::create_dir_all(data).expect("data dir");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path).expect("log file");
        // A log filter the caller set on `cmd` stays.
        if !cmd.get_envs().any(|(k, _)| k == "TWINMESH_LOG") {
            cmd.env("TWINMESH_LOG", std::env::var("TWINMESH_TEST_LOG").unwrap_or_else(|_| "info".into()));
        }
        let mut child = cmd
            .args(["agent", "--node", name, "--cluster", cluster, "--api", &format!("{ip}:0")])
            .args(["--listen", &format!("/ip4/{ip}/tcp/0"), "--data-dir"])
            .arg(data)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn agent");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut api, mut mesh) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(120);
        while api.is_none() || mesh.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => {
                    if let Some(a) = l.strip_prefix("api ") {
                        api = Some(a.to_string());
                    } else if let Some(m) = l.strip_prefix("mesh ") {
                        mesh = Some(m.to_string());
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(log_path).unwrap_or_default();
                    panic!("agent {name} did not start within 120 s; log:\n{log}");
                }
            }
        }
        AgentProc {
            child,
            name: name.to_string(),
            api: api.expect("api"),
            mesh: mesh.expect("mesh"),
            data: data.to_path_buf(),
            log: log_path.to_path_buf(),
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (what Kubernetes sends a pod) and waits for the exit,
    /// for at most `limit`; the exit status, or `None` if it did not exit.
    pub fn terminate(mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// GET `path` as JSON, with an optional bearer token.
    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = http().get(format!("{}{path}", self.api)).send().expect("GET");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(serde_json::Value::Null))
    }

    /// POST `body` to `path`, with an optional bearer token.
    pub fn post(&self, path: &str, body: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let mut r = http().post(format!("{}{path}", self.api)).body(body.to_string());
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().expect("POST");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(serde_json::Value::Null))
    }

    /// DELETE `path`.
    pub fn delete(&self, path: &str) -> (u16, serde_json::Value) {
        let r = http().delete(format!("{}{path}", self.api)).send().expect("DELETE");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(serde_json::Value::Null))
    }

    /// This agent's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().expect("client")
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// A mesh key file (64 hex digits) in `dir`.
pub fn key_file(dir: &std::path::Path, name: &str, byte: u8) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{byte:02x}").repeat(32)).expect("key file");
    p
}
