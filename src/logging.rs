//! The server's log: `tracing` events on stderr, as text for people or one JSON object per line
//! for a log pipeline (`--log-format`). What is logged is the run's shape (route, language,
//! outcome, exit code, duration, request id) and the zygotes' lives, never code, inputs,
//! outputs or keys. The one line a supervisor waits for, `sandlot: ready on ...`, stays on
//! stdout whatever the format.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the subscriber for the process, logging at `level` and above (`RUST_LOG`-style
/// filtering is not offered): the server logs `info`, `sandlot run` only what went wrong.
pub fn init(format: LogFormat, level: tracing::Level) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
