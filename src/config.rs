//! The server's settings. Flags win over `SANDLOT_*` environment variables, which win over the
//! defaults (clap applies that order; see `main.rs`).

use std::net::SocketAddr;

use crate::jail::probe::LayerStatus;
use crate::jail::settings::JailSettings;
use crate::run::Limits;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Keys accepted as `Authorization: Bearer <key>` or `X-Api-Key: <key>`; empty means no auth.
    pub api_keys: Vec<String>,
    /// Allows a non-loopback `listen` with no key.
    pub insecure_no_auth: bool,
    pub limits: LimitPolicy,
    /// Children running at once.
    pub workers: usize,
    /// Requests waiting for a worker before new ones get 503.
    pub queue: usize,
    pub max_body_bytes: usize,
    pub jail: JailSettings,
    /// Layers this machine lacks and the operator accepted (`--allow-degraded`); `/readyz`
    /// lists them.
    pub degraded: Vec<LayerStatus>,
}

/// Per-run limits: what a request gets when it asks for nothing, and the most it can ask for.
#[derive(Debug, Clone, Copy)]
pub struct LimitPolicy {
    pub default: Limits,
    pub max: Limits,
}

/// Below this a Python run cannot even report its own MemoryError.
pub const MIN_MEMORY_MB: u64 = 16;

impl Default for LimitPolicy {
    fn default() -> Self {
        Self {
            default: Limits {
                timeout_ms: 10_000,
                memory_mb: 256,
                max_output_bytes: 1024 * 1024,
            },
            max: Limits {
                timeout_ms: 60_000,
                memory_mb: 1024,
                max_output_bytes: 16 * 1024 * 1024,
            },
        }
    }
}

impl LimitPolicy {
    /// The maxima as given, with each default lowered to its maximum where needed.
    pub fn with_max(max: Limits) -> Self {
        let d = Self::default().default;
        Self {
            default: Limits {
                timeout_ms: d.timeout_ms.min(max.timeout_ms),
                memory_mb: d.memory_mb.min(max.memory_mb),
                max_output_bytes: d.max_output_bytes.min(max.max_output_bytes),
            },
            max,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8194)),
            api_keys: Vec::new(),
            insecure_no_auth: false,
            limits: LimitPolicy::default(),
            workers: default_workers(),
            queue: 512,
            max_body_bytes: 16 * 1024 * 1024,
            jail: JailSettings::new(LimitPolicy::default().max),
            degraded: Vec::new(),
        }
    }
}

/// Runs are mostly CPU-bound and short: a few per core keeps the cores busy while one waits.
pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 4).max(4)
}
