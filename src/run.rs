//! What a run is: its language, mode, limits, and the response it produces. These are the
//! shapes of `POST /v1/run` (docs/api.md); the compatible APIs translate to and from them.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Read from a request by any of the names the peers use ([`Language::parse`]); an unknown
/// name is refused naming the accepted ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    #[value(alias = "python3", alias = "py")]
    Python,
    #[value(alias = "js", alias = "nodejs", alias = "node")]
    Javascript,
    #[value(alias = "sh", alias = "bash")]
    Shell,
}

impl Language {
    /// Accepts the names the peers use as well as our own.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "python" | "python3" | "py" => Some(Self::Python),
            "javascript" | "js" | "nodejs" | "node" => Some(Self::Javascript),
            "shell" | "sh" | "bash" => Some(Self::Shell),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Python => "python",
            Self::Javascript => "javascript",
            Self::Shell => "shell",
        }
    }

    pub const ACCEPTED_NAMES: &'static str =
        "python (python3, py), javascript (js, nodejs, node), shell (sh, bash)";
}

impl<'de> Deserialize<'de> for Language {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unsupported language {name:?}; use one of {}",
                Self::ACCEPTED_NAMES
            ))
        })
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Define `main`; it is called with the inputs and its return value is the result.
    Main,
    /// Run the code top to bottom; stdout, stderr and the exit code carry the outcome.
    Script,
}

/// Limits of one run, already capped by the server's maxima.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub timeout_ms: u64,
    pub memory_mb: u64,
    pub max_output_bytes: u64,
    /// The bytes the files a run writes into its output directory may hold together.
    pub max_output_files_bytes: u64,
    /// The bytes one of those files may hold (at most the total).
    pub max_output_file_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    SyntaxError,
    RuntimeError,
    ModuleNotAllowed,
    InvalidReturn,
    Timeout,
    MemoryLimit,
    OutputLimit,
    NetworkDenied,
    Internal,
}

impl ErrorKind {
    /// As the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::SyntaxError => "syntax_error",
            Self::RuntimeError => "runtime_error",
            Self::ModuleNotAllowed => "module_not_allowed",
            Self::InvalidReturn => "invalid_return",
            Self::Timeout => "timeout",
            Self::MemoryLimit => "memory_limit",
            Self::OutputLimit => "output_limit",
            Self::NetworkDenied => "network_denied",
            Self::Internal => "internal",
        }
    }
}

/// Why a run did not succeed. Lines and columns count in the user's own code, from 1.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunError {
    pub kind: ErrorKind,
    /// Read from a child's report, the text is cut at
    /// [`MAX_ERROR_TEXT_BYTES`](crate::protocol::MAX_ERROR_TEXT_BYTES) as it is parsed.
    #[serde(deserialize_with = "crate::protocol::error_text")]
    pub message: String,
    #[serde(default)]
    pub line: Option<u32>,
    #[serde(default)]
    pub column: Option<u32>,
    #[serde(default, deserialize_with = "crate::protocol::optional_error_text")]
    pub traceback: Option<String>,
}

impl RunError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            line: None,
            column: None,
            traceback: None,
        }
    }

    /// This error with its message and traceback cut to what a report may carry.
    pub fn cut(self) -> Self {
        use crate::protocol::{cut_text, MAX_ERROR_TEXT_BYTES};
        Self {
            message: cut_text(&self.message, MAX_ERROR_TEXT_BYTES),
            traceback: self.traceback.map(|t| cut_text(&t, MAX_ERROR_TEXT_BYTES)),
            ..self
        }
    }
}

/// The answer to a valid run request, whatever the code did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunResponse {
    pub ok: bool,
    /// What `main` returned (mode `main`); null otherwise or when the run failed.
    #[schema(value_type = Option<serde_json::Value>)]
    pub result: Option<Box<RawValue>>,
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
    pub execution_time_ms: f64,
    /// Figures a run drew (matplotlib), as `{"format": "png", "base64": ...}`.
    pub images: Vec<crate::protocol::Image>,
    /// What the run wrote into its output directory (`output/`), however it ended.
    pub files: Vec<crate::output_files::OutputFile>,
    pub error: Option<RunError>,
    /// What the run cost, by the child's own accounting; absent when the child sent no report.
    pub usage: Option<Usage>,
}

/// A run's cost from the kernel's accounting of its process (`getrusage`), counted from the
/// moment its job arrived: CPU time, peak resident memory (the interpreter's own pages
/// included), and page faults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    pub cpu_ms: f64,
    pub max_rss_kb: u64,
    pub page_faults: u64,
}

/// Exit code of a run stopped at its deadline, as `timeout(1)` reports it.
pub const TIMEOUT_EXIT_CODE: i32 = 124;

impl RunResponse {
    /// A run that ended without a report from its child (timeout, crash, zygote loss).
    pub fn failed(error: RunError, exit_code: i32, execution_time_ms: f64) -> Self {
        Self {
            ok: false,
            result: None,
            stdout: String::new(),
            stderr: String::new(),
            exit_code,
            execution_time_ms,
            images: Vec::new(),
            files: Vec::new(),
            error: Some(error),
            usage: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorKind;

    #[test]
    fn an_error_kind_is_named_as_the_api_spells_it() {
        for kind in [
            ErrorKind::SyntaxError,
            ErrorKind::RuntimeError,
            ErrorKind::ModuleNotAllowed,
            ErrorKind::InvalidReturn,
            ErrorKind::Timeout,
            ErrorKind::MemoryLimit,
            ErrorKind::OutputLimit,
            ErrorKind::NetworkDenied,
            ErrorKind::Internal,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
    }
}
