//! Which API a run came in by. It is decided by the route, never by the body, and it decides
//! the rest: the Python import policy ([`crate::whitelist::python_policy`]), how `main` is
//! called ([`Api::convention`]), and the name `/metrics` and the log give the run.

use crate::protocol::Convention;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Api {
    /// `POST /v1/run` (and `sandlot run`).
    #[default]
    Native,
    /// The sandbox module API: `POST /v1/sandbox/execute_*`.
    SandboxModule,
    /// fastgpt-sandbox's routes.
    Fastgpt,
    /// dify-sandbox's route.
    Dify,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::SandboxModule => "sandbox_module",
            Self::Fastgpt => "fastgpt",
            Self::Dify => "dify",
        }
    }

    /// How a run of this API calls `main` and what it may return.
    /// Whether its runs have files (`files` in, `output/` out): sandlot's own APIs. The peers'
    /// have no field for them, and FastGPT's suite checks that `fs` is refused.
    pub fn has_files(self) -> bool {
        matches!(self, Self::Native | Self::SandboxModule)
    }

    pub fn convention(self) -> Convention {
        match self {
            Self::Fastgpt => Convention::Fastgpt,
            Self::Native | Self::SandboxModule | Self::Dify => Convention::Native,
        }
    }
}
