//! docs/interop.md against the agents: the gossipsub version two agents
//! negotiate is the one the page names.

use std::process::{Command, Stdio};
use std::time::Duration;

use twinmesh_tests::{repo_root, tempdir, twinmesh_bin, wait_for};

/// The version docs/interop.md says two agents speak: the `/meshsub/…`
/// in bold in the protocol row.
fn documented() -> String {
    let doc = std::fs::read_to_string(repo_root().join("docs/interop.md")).unwrap();
    let row = doc.lines().find(|l| l.starts_with("| protocol | gossipsub")).expect("the protocol row");
    let said = row.split("**two agents speak `").nth(1).expect("the row names what two agents speak");
    said.split('`').next().unwrap().to_string()
}

// Rule: the gossipsub protocol two agents negotiate (from rust-libp2p's
// own debug log of the peer's kind) is the one docs/interop.md names.
#[test]
fn two_agents_speak_the_documented_gossipsub_version() {
    let want = documented();
    let version = want.strip_prefix("/meshsub/").expect("a /meshsub/ protocol id");
    let kind = format!("peer_type=Gossipsub v{}", version.trim_end_matches(".0"));
    let dir = tempdir();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let spawn = |name: &str, cluster: &str, extra: &[String]| {
        let log = dir.path().join(format!("{name}.log"));
        let child = Command::new(twinmesh_bin())
            .args(["agent", "--node", name, "--cluster", cluster, "--api", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join(name))
            .args(extra)
            .env("TWINMESH_LOG", "info,libp2p_gossipsub=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn agent");
        (child, log)
    };
    let (mut a, log_a) = spawn("dc-x86-01", "dc-core", &["--listen".into(), format!("/ip4/127.0.0.1/tcp/{port}")]);
    let (mut b, log_b) = spawn(
        "edge-srv-01",
        "edge-microdc",
        &["--listen".into(), "/ip4/127.0.0.1/tcp/0".into(), "--bootstrap".into(), format!("/ip4/127.0.0.1/tcp/{port}")],
    );
    let kinds = |log: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("New peer type found"))
            .filter_map(|l| l.split("peer_type=").nth(1).map(|k| format!("peer_type={}", k.trim())))
            .collect()
    };
    let seen = wait_for(Duration::from_secs(60), || {
        let (ka, kb) = (kinds(&log_a), kinds(&log_b));
        (!ka.is_empty() && !kb.is_empty()).then_some((ka, kb))
    });
    let _ = a.kill();
    let _ = b.kill();
    let _ = (a.wait(), b.wait());
    let (ka, kb) = seen.unwrap_or_else(|| {
        panic!(
            "no gossipsub peer kind logged within 60 s; logs:\n{}\n{}",
            std::fs::read_to_string(&log_a).unwrap_or_default(),
            std::fs::read_to_string(&log_b).unwrap_or_default()
        )
    });
    for k in ka.iter().chain(&kb) {
        assert_eq!(k, &kind, "docs/interop.md says two agents speak {want}");
    }
}
