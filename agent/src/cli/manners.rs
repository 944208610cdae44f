//! What a command-line tool is expected to do besides its work: colour
//! only where wanted (`--color`, `NO_COLOR`), shell completions and a
//! manual page generated from the same definitions as `--help`.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};

use super::Cli;

/// When output is coloured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    /// On a terminal, unless `NO_COLOR` is set (to anything but nothing).
    #[default]
    Auto,
    /// Always, even in a file or a pipe, and whatever `NO_COLOR` says.
    Always,
    /// Never.
    Never,
}

impl ColorWhen {
    /// The `--color` of a command line before it is parsed: the log and
    /// clap's own messages are set up before parsing. `auto` when absent
    /// or not understood (parsing then reports the bad value).
    pub fn from_args(argv: &[OsString]) -> ColorWhen {
        let mut found = ColorWhen::Auto;
        let mut it = argv.iter().skip(1).map(|a| a.to_string_lossy());
        while let Some(a) = it.next() {
            if a == "--" {
                break;
            }
            let value = match a.strip_prefix("--color") {
                Some("") => it.next(),
                Some(v) if v.starts_with('=') => Some(v[1..].to_string().into()),
                _ => continue,
            };
            found = match value.as_deref() {
                Some("always") => ColorWhen::Always,
                Some("never") => ColorWhen::Never,
                _ => ColorWhen::Auto,
            };
        }
        found
    }

    /// Whether to colour a stream that `is_terminal`, with `no_color` the
    /// value of `NO_COLOR` (https://no-color.org: set and not empty means
    /// no colour; an explicit `--color always` still wins).
    pub fn enabled(self, is_terminal: bool, no_color: Option<&OsStr>) -> bool {
        match self {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => is_terminal && no_color.is_none_or(OsStr::is_empty),
        }
    }

    /// The same choice for clap's help and error messages.
    fn clap(self, no_color: Option<&OsStr>) -> clap::ColorChoice {
        match self {
            ColorWhen::Always => clap::ColorChoice::Always,
            ColorWhen::Never => clap::ColorChoice::Never,
            ColorWhen::Auto if no_color.is_some_and(|v| !v.is_empty()) => clap::ColorChoice::Never,
            ColorWhen::Auto => clap::ColorChoice::Auto,
        }
    }
}

/// Parses a command line with clap's messages coloured as `color` and
/// `NO_COLOR` say; on a bad command line, prints clap's message and exits.
pub fn parse(argv: Vec<OsString>, color: ColorWhen, no_color: Option<&OsStr>) -> Cli {
    let matches = Cli::command().color(color.clap(no_color)).get_matches_from(argv);
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Arguments of `twinmesh completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Arguments of `twinmesh man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write `twinmesh.1` and one page per command (`twinmesh-agent.1`, …)
    /// here instead of printing `twinmesh.1`.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// `twinmesh completions SHELL`: the script on stdout.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "twinmesh", &mut out);
    write_stdout(&out)
}

/// `twinmesh man [--dir DIR]`.
pub fn man(args: &ManArgs) -> anyhow::Result<()> {
    let cmd = Cli::command();
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write manual pages to {}", dir.display()))?;
            println!("wrote the manual pages to {}", dir.display());
            Ok(())
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            write_stdout(&out)
        }
    }
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).and_then(|()| out.flush()).context("cannot write to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_color_flag_is_found_before_parsing() {
        assert_eq!(ColorWhen::from_args(&os(&["twinmesh", "demo"])), ColorWhen::Auto);
        assert_eq!(ColorWhen::from_args(&os(&["twinmesh", "--color", "never", "demo"])), ColorWhen::Never);
        assert_eq!(ColorWhen::from_args(&os(&["twinmesh", "agent", "--color=always"])), ColorWhen::Always);
        // The last one wins, as in clap; nothing after `--` counts.
        assert_eq!(ColorWhen::from_args(&os(&["t", "--color=always", "--color", "never"])), ColorWhen::Never);
        assert_eq!(ColorWhen::from_args(&os(&["t", "--", "--color", "never"])), ColorWhen::Auto);
    }

    #[test]
    fn no_color_turns_auto_off_and_an_explicit_flag_wins() {
        let set = Some(OsStr::new("1"));
        assert!(ColorWhen::Auto.enabled(true, None));
        assert!(!ColorWhen::Auto.enabled(false, None));
        assert!(!ColorWhen::Auto.enabled(true, set));
        assert!(ColorWhen::Auto.enabled(true, Some(OsStr::new(""))), "an empty NO_COLOR is unset");
        assert!(ColorWhen::Always.enabled(false, set));
        assert!(!ColorWhen::Never.enabled(true, None));
        assert_eq!(ColorWhen::Auto.clap(set), clap::ColorChoice::Never);
    }

    #[test]
    fn the_global_flag_parses_after_a_command() {
        let cli = parse(os(&["twinmesh", "work", "--color", "never", "--cpu-ms", "0"]), ColorWhen::Never, None);
        assert_eq!(cli.color, ColorWhen::Never);
    }
}
