//! The server's settings. Flags win over `SANDLOT_*` environment variables (clap reads both),
//! which win over the peers' own variable names ([`apply_peer_aliases`]), which win over the
//! configuration file ([`crate::config_file`]), which wins over the defaults
//! ([`Config::resolve`]).

use std::net::SocketAddr;

use crate::broker::destination::Allowed;
use crate::broker::Broker;
use crate::cli::serve::ServeArgs;
use crate::config_file::{ConfigFile, ConfigFileError, OneOrMany};
use crate::jail::probe::LayerStatus;
use crate::jail::settings::JailSettings;
use crate::logging::LogFormat;
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
    /// Connections open at once; past them a client gets 503.
    pub max_connections: usize,
    /// How long a client may take to send a request's head, and then its body.
    pub header_timeout: std::time::Duration,
    pub body_timeout: std::time::Duration,
    /// How long in-flight runs may finish after SIGTERM before what is left is killed.
    pub shutdown_grace: std::time::Duration,
    pub log_format: LogFormat,
    pub jail: JailSettings,
    pub broker: Broker,
    /// Where sandlot installs the Python data packages.
    pub data_dir: std::path::PathBuf,
    /// The wait before a failed install is tried again (it doubles each time).
    pub deps_retry: std::time::Duration,
    /// Start without a layer this machine lacks (`--allow-degraded`).
    pub allow_degraded: bool,
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

/// Why the server will not start with the configuration it was given.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    HttpAllow(String),
    #[error("--http-proxy: {0}")]
    HttpProxy(String),
    #[error("{0}")]
    Jail(String),
    #[error(transparent)]
    File(#[from] ConfigFileError),
}

impl ConfigError {
    /// 2 for a value that does not parse (like a usage error), 1 for a machine that lacks a
    /// layer of the jail.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::HttpAllow(_) | Self::HttpProxy(_) | Self::File(_) => 2,
            Self::Jail(_) => 1,
        }
    }
}

impl Config {
    /// Probes the jail the flags ask for (while the process is single-threaded): the settings
    /// that apply on this machine, or the reason to refuse to start.
    ///
    /// # Safety
    /// The process must be single-threaded: the probe forks.
    pub unsafe fn with_probed_jail(
        mut self,
        jail: crate::cli::jail_args::JailArgs,
    ) -> Result<Self, ConfigError> {
        // SAFETY: our caller promises a single thread.
        let (settings, degraded) =
            unsafe { jail.checked_settings(self.limits.max) }.map_err(ConfigError::Jail)?;
        self.jail = settings;
        self.degraded = degraded;
        Ok(self)
    }

    /// The configuration without probing the jail (what `sandlot config` shows), and the jail
    /// flags still to probe.
    pub fn resolve(
        mut args: ServeArgs,
    ) -> Result<(Self, crate::cli::jail_args::JailArgs), ConfigError> {
        if let Some(path) = args.config.take() {
            ConfigFile::read(&path)?.fill_in(&mut args);
        }
        let defaults = Self::default();
        let policy_max = LimitPolicy::default().max;
        let max = Limits {
            timeout_ms: args
                .max_timeout_ms
                .unwrap_or(policy_max.timeout_ms)
                .max(args.default_timeout_ms.unwrap_or(0)),
            memory_mb: args.max_memory_mb.unwrap_or(policy_max.memory_mb),
            max_output_bytes: args.max_output_bytes.unwrap_or(policy_max.max_output_bytes),
        };
        let allow = args
            .http_allow
            .iter()
            .filter(|e| !e.trim().is_empty())
            .map(|e| Allowed::parse(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ConfigError::HttpAllow)?;
        let proxy = args
            .http_proxy
            .filter(|p| !p.trim().is_empty())
            .map(|p| ureq::Proxy::new(&p).map(|_| p).map_err(|e| e.to_string()))
            .transpose()
            .map_err(ConfigError::HttpProxy)?;
        let jail = args.jail.settings(max);
        let mut limits = LimitPolicy::with_max(max);
        if let Some(timeout_ms) = args.default_timeout_ms {
            limits.default.timeout_ms = timeout_ms.max(1);
        }
        let config = Self {
            listen: args.listen.unwrap_or(defaults.listen),
            api_keys: args
                .api_keys
                .into_iter()
                .filter(|k| !k.is_empty())
                .collect(),
            insecure_no_auth: args.insecure_no_auth.unwrap_or(false),
            limits,
            workers: args.workers.unwrap_or(defaults.workers),
            queue: args.queue.unwrap_or(defaults.queue),
            max_body_bytes: args.max_body_bytes.unwrap_or(defaults.max_body_bytes),
            max_connections: args.max_connections.unwrap_or(defaults.max_connections),
            header_timeout: args
                .header_timeout_ms
                .map_or(defaults.header_timeout, std::time::Duration::from_millis),
            body_timeout: args
                .body_timeout_ms
                .map_or(defaults.body_timeout, std::time::Duration::from_millis),
            shutdown_grace: args
                .shutdown_grace_ms
                .map_or(defaults.shutdown_grace, std::time::Duration::from_millis),
            log_format: args.log_format.unwrap_or_default(),
            data_dir: args.data_dir.unwrap_or(defaults.data_dir),
            deps_retry: args
                .deps_retry_ms
                .map_or(defaults.deps_retry, std::time::Duration::from_millis),
            jail,
            broker: Broker {
                enabled: args.network.unwrap_or(true),
                allow,
                proxy,
                ..Broker::default()
            },
            allow_degraded: args.jail.allow_degraded.unwrap_or(false),
            degraded: Vec::new(),
        };
        Ok((config, args.jail))
    }

    /// The configuration as a configuration file would give it, every key filled in and the
    /// keys masked: what `sandlot config` prints.
    pub fn as_file(&self) -> ConfigFile {
        let ms = |d: std::time::Duration| Some(d.as_millis() as u64);
        let masked = self
            .api_keys
            .iter()
            .map(|_| "********".to_owned())
            .collect();
        ConfigFile {
            listen: Some(self.listen),
            api_key: Some(OneOrMany::Many(masked)),
            insecure_no_auth: Some(self.insecure_no_auth),
            default_timeout_ms: Some(self.limits.default.timeout_ms),
            max_timeout_ms: Some(self.limits.max.timeout_ms),
            max_memory_mb: Some(self.limits.max.memory_mb),
            max_output_bytes: Some(self.limits.max.max_output_bytes),
            workers: Some(self.workers),
            queue: Some(self.queue),
            data_dir: Some(self.data_dir.clone()),
            deps_retry_ms: ms(self.deps_retry),
            max_connections: Some(self.max_connections),
            header_timeout_ms: ms(self.header_timeout),
            body_timeout_ms: ms(self.body_timeout),
            shutdown_grace_ms: ms(self.shutdown_grace),
            max_body_bytes: Some(self.max_body_bytes),
            http_allow: Some(OneOrMany::Many(
                self.broker.allow.iter().map(|a| a.to_string()).collect(),
            )),
            http_proxy: self.broker.proxy.clone(),
            network: Some(self.broker.enabled),
            log_format: Some(self.log_format),
            allow_degraded: Some(self.allow_degraded),
            child_uid: Some(self.jail.child_uid),
            child_gid: Some(self.jail.child_gid),
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
            max_connections: 1024,
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(30),
            shutdown_grace: std::time::Duration::from_secs(30),
            log_format: LogFormat::default(),
            jail: JailSettings::new(LimitPolicy::default().max),
            broker: Broker::default(),
            data_dir: crate::python_packages::default_data_dir(),
            deps_retry: std::time::Duration::from_secs(30),
            allow_degraded: false,
            degraded: Vec::new(),
        }
    }
}

/// Runs are mostly CPU-bound and short: a few per core keeps the cores busy while one waits.
pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 4).max(4)
}

/// The environment names dify-sandbox and fastgpt-sandbox deployments already set, read as
/// their sandlot equivalents when those are not set themselves: a platform can switch to
/// sandlot without touching its configuration.
///
/// | peer variable | sandlot variable |
/// |---|---|
/// | `API_KEY` (Dify), `SANDBOX_TOKEN` (FastGPT) | `SANDLOT_API_KEY` |
/// | `SANDBOX_PORT` (both) | `SANDLOT_LISTEN` = `0.0.0.0:PORT` (the peers listen on every interface) |
/// | `WORKER_TIMEOUT` (Dify, seconds) | `SANDLOT_DEFAULT_TIMEOUT_MS` |
/// | `SANDBOX_MAX_TIMEOUT` (FastGPT, ms) | `SANDLOT_MAX_TIMEOUT_MS` |
/// | `SANDBOX_MAX_MEMORY_MB` (FastGPT) | `SANDLOT_MAX_MEMORY_MB` |
/// | `MAX_WORKERS` (Dify) | `SANDLOT_WORKERS` |
/// | `MAX_REQUESTS` (Dify) | `SANDLOT_QUEUE` |
/// | `ENABLE_NETWORK` (Dify) | `SANDLOT_NETWORK` |
///
/// Must run while the process is single-threaded (it sets environment variables).
pub fn apply_peer_aliases() {
    let seconds_to_ms = |v: &str| {
        v.trim()
            .parse::<f64>()
            .ok()
            .map(|s| format!("{}", (s * 1000.0) as u64))
    };
    let aliases: &[(&str, &str, Convert)] = &[
        ("API_KEY", "SANDLOT_API_KEY", &|v| Some(v.to_owned())),
        ("SANDBOX_TOKEN", "SANDLOT_API_KEY", &|v| Some(v.to_owned())),
        ("SANDBOX_PORT", "SANDLOT_LISTEN", &|v| {
            v.trim().parse::<u16>().ok().map(|p| format!("0.0.0.0:{p}"))
        }),
        (
            "WORKER_TIMEOUT",
            "SANDLOT_DEFAULT_TIMEOUT_MS",
            &seconds_to_ms,
        ),
        ("SANDBOX_MAX_TIMEOUT", "SANDLOT_MAX_TIMEOUT_MS", &|v| {
            Some(v.trim().to_owned())
        }),
        ("SANDBOX_MAX_MEMORY_MB", "SANDLOT_MAX_MEMORY_MB", &|v| {
            Some(v.trim().to_owned())
        }),
        ("MAX_WORKERS", "SANDLOT_WORKERS", &|v| {
            Some(v.trim().to_owned())
        }),
        ("MAX_REQUESTS", "SANDLOT_QUEUE", &|v| {
            Some(v.trim().to_owned())
        }),
        ("ENABLE_NETWORK", "SANDLOT_NETWORK", &|v| {
            let on = matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "true" | "1" | "yes" | "on"
            );
            Some(on.to_string())
        }),
    ];
    for (peer, ours, convert) in aliases {
        if std::env::var_os(ours).is_some() {
            continue;
        }
        if let Some(value) = std::env::var(peer)
            .ok()
            .filter(|v| !v.is_empty())
            .and_then(|v| convert(&v))
        {
            std::env::set_var(ours, value);
        }
    }
}

/// A peer's value turned into ours, or `None` when it does not parse.
type Convert<'a> = &'a dyn Fn(&str) -> Option<String>;
