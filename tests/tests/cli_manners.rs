//! What a user expects of any command-line tool, checked on the built
//! binary: colour only where wanted (`NO_COLOR`, `--color`), shell
//! completions, a manual page that renders, every flag in `--help`, and a
//! clear error when a port is taken.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use twinmesh_tests::{AgentProc, run_twinmesh, tempdir, twinmesh_bin, which};

const LIMIT: Duration = Duration::from_secs(60);
const ESC: u8 = 0x1b;

/// `twinmesh args` with stdout and stderr on a terminal (a pseudo-terminal
/// through util-linux `script`), `env` added and `NO_COLOR` removed unless
/// `env` sets it; everything it wrote. `None` without `script`.
fn on_a_terminal(args: &[&str], env: &[(&str, &str)]) -> Option<String> {
    let script = which("script")?;
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let line: Vec<String> = std::iter::once(twinmesh_bin().to_string_lossy().into_owned())
        .chain(args.iter().map(|a| a.to_string()))
        .collect();
    let line = line.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ");
    let out = Command::new(script)
        .args(["-q", "-c", &line, "/dev/null"])
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An agent start that logs a warning (no mesh key) and then stops on a
/// missing token file: one log line and one error, quickly.
fn failing_start(dir: &std::path::Path) -> Vec<String> {
    [
        "agent",
        "--api",
        "127.0.0.1:0",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--data-dir",
        dir.join("data").to_str().unwrap(),
        "--api-token-file",
        dir.join("no-such-token").to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

// Rule: on a terminal the log is coloured, unless NO_COLOR is set or
// --color never is given; --color always colours even with NO_COLOR and
// in a pipe; clap's help follows the same choice.
#[test]
fn colour_follows_no_color_and_the_color_flag() {
    let dir = tempdir();
    let start = failing_start(dir.path());
    let start: Vec<&str> = start.iter().map(String::as_str).collect();
    let Some(plain) = on_a_terminal(&start, &[]) else {
        return twinmesh_tests::skip("util-linux `script` is not installed: no terminal to run twinmesh on");
    };
    assert!(plain.contains("no mesh key") && plain.contains("cannot read API token"), "{plain}");
    // The terminal is real: without NO_COLOR the log has colour codes, so
    // the checks below can see them go.
    assert!(plain.as_bytes().contains(&ESC), "no colour on a terminal: {plain:?}");
    let no_color = on_a_terminal(&start, &[("NO_COLOR", "1")]).unwrap();
    assert!(no_color.contains("no mesh key"), "{no_color}");
    assert!(!no_color.as_bytes().contains(&ESC), "NO_COLOR=1 but colour codes: {no_color:?}");
    let never = on_a_terminal(&[&["--color", "never"], &start[..]].concat(), &[]).unwrap();
    assert!(never.contains("no mesh key") && !never.as_bytes().contains(&ESC), "{never:?}");
    // The flag after the command works too (it is global).
    let never = on_a_terminal(&[&start[..], &["--color=never"]].concat(), &[]).unwrap();
    assert!(never.contains("no mesh key") && !never.as_bytes().contains(&ESC), "{never:?}");
    let always = on_a_terminal(&[&["--color", "always"], &start[..]].concat(), &[("NO_COLOR", "1")]).unwrap();
    assert!(always.as_bytes().contains(&ESC), "--color always wins over NO_COLOR: {always:?}");
    let piped = run_twinmesh(&[&["--color", "always"], &start[..]].concat(), None, LIMIT);
    assert!(piped.stderr.contains(&ESC), "--color always colours a pipe too");
    let piped = run_twinmesh(&start, None, LIMIT);
    assert!(!piped.stderr.contains(&ESC), "no colour in a pipe by default");
    // clap's help.
    let help = on_a_terminal(&["agent", "--help"], &[]).unwrap();
    assert!(help.as_bytes().contains(&ESC), "{help:?}");
    let help = on_a_terminal(&["agent", "--help"], &[("NO_COLOR", "1")]).unwrap();
    assert!(help.contains("--mesh-key-file") && !help.as_bytes().contains(&ESC), "{help:?}");
    // A bad value is refused with the choices.
    let bad = run_twinmesh(&["--color", "sometimes", "demo"], None, LIMIT);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("sometimes") && err.contains("always"), "{err}");
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).expect("UTF-8")
}

// Rule: `twinmesh completions SHELL` prints a script for that shell that
// knows the commands and their flags; bash reads the bash one without a
// syntax error.
#[test]
fn completions_know_the_commands_and_flags() {
    let bash = ok(&run_twinmesh(&["completions", "bash"], None, LIMIT));
    for word in ["agent", "demo", "plan", "submit", "completions", "man", "--mesh-key-file", "--config", "--color"] {
        assert!(bash.contains(word), "the bash script lacks {word}");
    }
    if which("bash").is_some() {
        let dir = tempdir();
        let f = dir.path().join("twinmesh.bash");
        std::fs::write(&f, &bash).unwrap();
        let st = Command::new("bash").arg("-n").arg(&f).output().unwrap();
        assert!(st.status.success(), "bash -n: {}", String::from_utf8_lossy(&st.stderr));
        // Sourced, it registers a completion for twinmesh.
        let reg = Command::new("bash")
            .arg("-c")
            .arg(format!("source {} && complete -p twinmesh", f.display()))
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&reg.stdout).contains("twinmesh"), "{reg:?}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let s = ok(&run_twinmesh(&["completions", shell], None, LIMIT));
        assert!(s.contains("agent") && s.contains("mesh-key-file"), "{shell}: {s}");
    }
    let bad = run_twinmesh(&["completions", "tcsh"], None, LIMIT);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bash"), "the error lists the shells");
}

/// `page` rendered by groff for a terminal (UTF-8 input through preconv,
/// as man(1) does), when groff is installed.
fn render(page: &std::path::Path) -> Option<String> {
    let groff = which("groff")?;
    let out =
        Command::new(groff).args(["-k", "-man", "-Tutf8", "-ww"]).arg(page).env("GROFF_NO_SGR", "1").output().ok()?;
    assert!(out.status.success(), "groff: {}", String::from_utf8_lossy(&out.stderr));
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(warnings.trim().is_empty(), "groff warns on {}: {warnings}", page.display());
    // Strip overstrike (bold and underline as x\bx, _\bx).
    let mut text = String::new();
    for c in String::from_utf8_lossy(&out.stdout).chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    Some(text)
}

// Rule: `twinmesh man` prints a manual page that renders (no groff
// warning) with the name, the synopsis and every command; `--dir` writes
// one page per command, the agent's with its flags.
#[test]
fn the_manual_page_renders() {
    let page = ok(&run_twinmesh(&["man"], None, LIMIT));
    assert!(page.starts_with(".ie") || page.contains(".TH twinmesh 1"), "{page}");
    let dir = tempdir();
    let f = dir.path().join("twinmesh.1");
    std::fs::write(&f, &page).unwrap();
    let out = ok(&run_twinmesh(&["man", "--dir", dir.path().join("pages").to_str().unwrap()], None, LIMIT));
    assert!(out.contains("wrote"), "{out}");
    let agent = dir.path().join("pages/twinmesh-agent.1");
    assert!(agent.is_file(), "no page for twinmesh agent");
    for cmd in ["demo", "plan", "completions", "man"] {
        assert!(dir.path().join(format!("pages/twinmesh-{cmd}.1")).is_file(), "no page for {cmd}");
    }
    let Some(text) = render(&f) else {
        return twinmesh_tests::skip("groff is not installed: the manual page was written but not rendered");
    };
    for part in ["NAME", "SYNOPSIS", "SUBCOMMANDS", "twinmesh-agent(1)", "twinmesh-completions(1)", "--color"] {
        assert!(text.contains(part), "the rendered page lacks {part}:\n{text}");
    }
    let text = render(&agent).unwrap();
    for part in ["--mesh-key-file", "--config", "TWINMESH_CONFIG", "NO_COLOR"] {
        assert!(text.contains(part), "the agent's page lacks {part}:\n{text}");
    }
}

// Rule: every flag the agent takes is in its --help: --config included
// (read before the rest of the command line is parsed).
#[test]
fn help_lists_every_flag() {
    let help = ok(&run_twinmesh(&["agent", "--help"], None, LIMIT));
    for flag in
        ["--config <FILE>", "TWINMESH_CONFIG", "--color <WHEN>", "--node", "--api", "--listen", "--mesh-key-file"]
    {
        assert!(help.contains(flag), "agent --help lacks {flag}:\n{help}");
    }
    // And it works as documented: a file's entries, the command line over them.
    let dir = tempdir();
    let cfg = dir.path().join("agent.yaml");
    std::fs::write(&cfg, "cluster: no-such-cluster\n").unwrap();
    let out = run_twinmesh(&["agent", "--config", cfg.to_str().unwrap()], None, LIMIT);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster 'no-such-cluster' is not in the fabric"));
}

// Rule: an agent started on an API or mesh port that another process
// listens on stops at once with an error that names the port and, read
// from /proc, the process (pid and name).
#[test]
fn a_taken_port_is_a_clear_error_naming_its_holder() {
    let dir = tempdir();
    let first = AgentProc::start("dc-x86-01", "dc-core", &dir.path().join("a"), &[]);
    let api = first.api.strip_prefix("http://").unwrap().to_string();
    let port: u16 = api.rsplit(':').next().unwrap().parse().unwrap();
    let second = |extra: &[&str]| {
        let data = dir.path().join("b");
        let mut args =
            vec!["agent", "--node", "dc-x86-02", "--cluster", "dc-core", "--data-dir", data.to_str().unwrap()];
        args.extend(extra);
        let out = run_twinmesh(&args, None, LIMIT);
        assert!(!out.status.success(), "the second agent started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = second(&["--api", &api, "--listen", "/ip4/127.0.0.1/tcp/0"]);
    let want = format!("API port {port} is already in use by process {} (twinmesh)", first.pid());
    assert!(err.contains(&want), "wanted «{want}» in:\n{err}");
    assert!(err.contains("--api"), "{err}");
    // The mesh port: held by this test.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mesh = held.local_addr().unwrap().port();
    let err = second(&["--api", "127.0.0.1:0", "--listen", &format!("/ip4/127.0.0.1/tcp/{mesh}")]);
    let want = format!("mesh port {mesh} is already in use by process {} (", std::process::id());
    assert!(err.contains(&want), "wanted «{want}» in:\n{err}");
    assert!(err.contains("--listen"), "{err}");
}
