//! `twinmesh` — the agent daemon and command-line tool.
//!
//! Run `twinmesh --help` for the commands. Errors reach the user through
//! `anyhow` with context they can act on; everything below the CLI returns
//! typed errors.

use twinmesh_agent::cli;

fn main() -> std::process::ExitCode {
    twinmesh_agent::memory::limit_arenas();
    let argv = match cli::config::expand(std::env::args_os().collect(), std::env::var_os("TWINMESH_CONFIG")) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Colour codes only for a terminal (not a file or a pipe) and unless
    // NO_COLOR is set, or as --color says.
    let color = cli::ColorWhen::from_args(&argv);
    let no_color = std::env::var_os("NO_COLOR");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TWINMESH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,twinmesh=info,twinmesh_agent=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(color.enabled(std::io::IsTerminal::is_terminal(&std::io::stderr()), no_color.as_deref()))
        // A log that cannot be written (stderr on a full disk) must not
        // take the agent down: by default the subscriber reports its own
        // write errors with eprintln!, which panics in whatever thread
        // logged — the store's writer included.
        .log_internal_errors(false)
        .init();
    let args = cli::parse(argv, color, no_color.as_deref());
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
