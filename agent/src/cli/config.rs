//! `twinmesh agent --config FILE`: the agent's flags from a YAML file.
//!
//! The file maps long flag names to values (`node: edge-srv-01`,
//! `bootstrap: [/ip4/…, /ip4/…]`, `own-cluster: true`). Its entries are put
//! on the command line before the user's own flags, so precedence is:
//! command line, then the config file, then `TWINMESH_*` variables, then
//! defaults.

use std::ffi::OsString;

use anyhow::{Context, bail};

/// Rewrites `argv` for `twinmesh agent --config FILE` (or
/// `TWINMESH_CONFIG`): the file's entries become flags right after
/// `agent`. Any other command line passes through unchanged.
pub fn expand(argv: Vec<OsString>, env_config: Option<OsString>) -> anyhow::Result<Vec<OsString>> {
    let Some(pos) = argv.iter().position(|a| a == "agent") else { return Ok(argv) };
    // `--config F` or `--config=F` among the agent's arguments.
    let mut path: Option<OsString> = env_config;
    let mut rest: Vec<OsString> = Vec::new();
    let mut it = argv[pos + 1..].iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--config" {
            path = Some(it.next().context("--config needs a file")?.clone());
        } else if let Some(p) = s.strip_prefix("--config=") {
            path = Some(p.into());
        } else {
            rest.push(a.clone());
        }
    }
    let Some(path) = path else { return Ok(argv) };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read config file {}", path.to_string_lossy()))?;
    let map: serde_yaml_ng::Mapping = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("config file {} is not a YAML mapping", path.to_string_lossy()))?;
    let mut out: Vec<OsString> = argv[..=pos].to_vec();
    for (k, v) in map {
        let key = k.as_str().with_context(|| format!("config file: key {k:?} is not a string"))?.to_string();
        if key == "config" {
            bail!("config file: 'config' cannot name another file");
        }
        let flag = format!("--{key}");
        match v {
            serde_yaml_ng::Value::Bool(true) => out.push(flag.into()),
            serde_yaml_ng::Value::Bool(false) | serde_yaml_ng::Value::Null => {}
            serde_yaml_ng::Value::String(s) => out.extend([flag.into(), s.into()]),
            serde_yaml_ng::Value::Number(n) => out.extend([flag.into(), n.to_string().into()]),
            serde_yaml_ng::Value::Sequence(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| match i {
                        serde_yaml_ng::Value::String(s) => Ok(s.clone()),
                        serde_yaml_ng::Value::Number(n) => Ok(n.to_string()),
                        other => bail!("config file: {key}: list items must be strings, got {other:?}"),
                    })
                    .collect::<anyhow::Result<_>>()?;
                out.extend([flag.into(), parts.join(",").into()]);
            }
            other => bail!("config file: {key}: unsupported value {other:?}"),
        }
    }
    out.extend(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn config_entries_become_flags_and_the_command_line_wins() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("agent.yaml");
        std::fs::write(
            &f,
            "node: lab-pc-01\ncluster: campus-lab\nown-cluster: true\nmdns: false\ntime-scale: 0.5\nbootstrap: [/ip4/10.0.0.1/tcp/7401, /ip4/10.0.0.2/tcp/7401]\n",
        )
        .unwrap();
        let argv =
            expand(os(&["twinmesh", "agent", "--config", f.to_str().unwrap(), "--node", "lab-pc-02"]), None).unwrap();
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        let crate::cli::Command::Agent(a) = cli.command else { panic!("not agent") };
        assert_eq!(a.node, "lab-pc-02", "the command line overrides the file");
        assert_eq!(a.cluster, "campus-lab");
        assert!(a.own_cluster && !a.mdns);
        assert_eq!(a.time_scale, 0.5);
        assert_eq!(a.bootstrap.len(), 2);
    }

    #[test]
    fn bad_config_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.yaml");
        std::fs::write(&f, "- just\n- a list\n").unwrap();
        let e = expand(os(&["twinmesh", "agent", "--config", f.to_str().unwrap()]), None).unwrap_err();
        assert!(e.to_string().contains("not a YAML mapping"), "{e}");
        let e = expand(os(&["twinmesh", "agent", "--config", "/no/such/file"]), None).unwrap_err();
        assert!(e.to_string().contains("cannot read config file"), "{e}");
        // Other commands are untouched.
        let argv = os(&["twinmesh", "plan", "job.yaml"]);
        assert_eq!(expand(argv.clone(), None).unwrap(), argv);
    }
}
