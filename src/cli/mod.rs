//! The command line, one module per subcommand; `main.rs` only dispatches to them.

pub mod config;
pub mod deps;
pub mod doctor;
pub mod jail_args;
pub mod run;
pub mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::protocol::ZygoteKind;

/// Runs untrusted Python and JavaScript code-node snippets behind a local HTTP endpoint.
///
/// Each request runs in a single-use child process forked from a pre-warmed interpreter and
/// confined by the kernel (namespaces, rlimits, an unprivileged uid, Landlock and seccomp)
/// before it reads any user code.
#[derive(Parser)]
#[command(name = "sandlot", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Start the HTTP server (POST /v1/run, the compatible APIs, GET /healthz, /readyz,
    /// /metrics, /openapi.json).
    Serve(serve::ServeArgs),
    /// Run one file through the same engine the server uses and print the response JSON.
    ///
    /// Exits with the run's exit code (124 on timeout).
    Run(run::RunArgs),
    /// Install or list the third-party Python packages: the data packages (numpy, pandas,
    /// matplotlib, jinja2, requests, ...) of whitelist/python-requirements.txt, and the
    /// operator's (--python-requirements). `serve` installs them at its start too.
    Deps(deps::DepsArgs),
    /// Print the configuration `serve` would run with (the same flags, variables and --config
    /// file), as TOML with the API keys masked.
    Config(serve::ServeArgs),
    /// Print sandlot's version (as --version does).
    Version,
    /// Show which isolation layers work on this machine, and why a missing one is missing.
    ///
    /// Exits 0 when every layer is active, 1 otherwise.
    Doctor(jail_args::JailArgs),
    /// Internal: a zygote process, started by the server itself.
    #[command(name = "__zygote", hide = true)]
    Zygote { kind: ZygoteKind },
}

/// A process exit code from a run's exit code (0..=255).
pub fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}

/// The server's runtime; built only once the jail probe (which forks) is done.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime")
}
