//! The server's settings, as plain data. They come in layers ([`Settings`]): flags and
//! `SANDLOT_*` variables (clap reads both) win over the peers' own variable names
//! ([`peer_names`]), which win over the configuration file ([`file`]), which wins over the
//! defaults ([`Config::resolve`]). Nothing here probes the machine or holds runtime state: the
//! jail probe is the command line's step (`cli::jail_args`), the broker's counts the server's.

pub mod file;
pub mod peer_names;
pub mod settings;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::broker::destination::Allowed;
use crate::broker::{HttpPolicy, Ports};
use crate::jail::settings::{JailSettings, DEFAULT_CHILD_ID};
use crate::logging::LogFormat;
use crate::python_packages::PipOptions;
use crate::run::Limits;
pub use file::ConfigFileError;
pub use settings::{OneOrMany, Settings};

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Keys accepted as `Authorization: Bearer <key>` or `X-Api-Key: <key>`; empty means no auth.
    pub api_keys: Vec<String>,
    /// Allows a non-loopback `listen` with no key.
    pub insecure_no_auth: bool,
    pub limits: LimitPolicy,
    /// Runs computing at once.
    pub workers: usize,
    /// Runs alive at once, those waiting in a sleep or on the broker included.
    pub max_children: usize,
    /// Requests waiting for a worker before new ones get 503.
    pub queue: usize,
    pub max_body_bytes: usize,
    /// Connections open at once; past them a client gets 503.
    pub max_connections: usize,
    /// How long a client may take to send a request's head, and then its body.
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// How long in-flight runs may finish after SIGTERM before what is left is killed.
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    /// The jail the settings ask for, before the machine is probed for it.
    pub jail: JailSettings,
    /// Brokered HTTP: on or off, the destinations opened on purpose, the proxy.
    pub http: HttpPolicy,
    /// Where sandlot installs the Python data packages.
    pub data_dir: PathBuf,
    /// The operator's pip requirements, installed beside the data packages.
    pub python_requirements: Option<PathBuf>,
    /// Where pip finds packages: an index, a wheelhouse.
    pub pip: PipOptions,
    /// The wait before a failed install is tried again (it doubles each time).
    pub deps_retry: Duration,
    /// Start without a layer this machine lacks (`--allow-degraded`).
    pub allow_degraded: bool,
}

/// Per-run limits: what a request gets when it asks for nothing, and the most it can ask for.
#[derive(Debug, Clone, Copy)]
pub struct LimitPolicy {
    pub default: Limits,
    pub max: Limits,
    /// The bytes a request's input files may hold together (decoded).
    pub max_input_files_bytes: u64,
}

/// The default of `--max-input-files-bytes`.
pub const DEFAULT_MAX_INPUT_FILES_BYTES: u64 = 8 * 1024 * 1024;
/// The default of `--max-output-files-bytes`.
pub const DEFAULT_MAX_OUTPUT_FILES_BYTES: u64 = 10 * 1024 * 1024;

/// Below this a Python run cannot even report its own MemoryError.
pub const MIN_MEMORY_MB: u64 = 16;

impl Default for LimitPolicy {
    fn default() -> Self {
        Self {
            default: Limits {
                timeout_ms: 10_000,
                memory_mb: 256,
                max_output_bytes: 1024 * 1024,
                max_output_files_bytes: DEFAULT_MAX_OUTPUT_FILES_BYTES,
                max_output_file_bytes: DEFAULT_MAX_OUTPUT_FILES_BYTES,
            },
            max: Limits {
                timeout_ms: 60_000,
                memory_mb: 1024,
                max_output_bytes: 16 * 1024 * 1024,
                max_output_files_bytes: DEFAULT_MAX_OUTPUT_FILES_BYTES,
                max_output_file_bytes: DEFAULT_MAX_OUTPUT_FILES_BYTES,
            },
            max_input_files_bytes: DEFAULT_MAX_INPUT_FILES_BYTES,
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
                max_output_files_bytes: max.max_output_files_bytes,
                max_output_file_bytes: max.max_output_file_bytes,
            },
            max,
            max_input_files_bytes: DEFAULT_MAX_INPUT_FILES_BYTES,
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
    ConnectPorts(String),
    #[error("{name}={value:?} (a peer's variable, read as sandlot's setting) does not parse")]
    PeerVariable { name: String, value: String },
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
            Self::HttpAllow(_)
            | Self::HttpProxy(_)
            | Self::ConnectPorts(_)
            | Self::PeerVariable { .. }
            | Self::File(_) => 2,
            Self::Jail(_) => 1,
        }
    }
}

impl Config {
    /// The configuration from the command line's layer (`flags`: flags and `SANDLOT_*`), the
    /// peers' variables (read through `environment`), the file at `file` and the defaults.
    pub fn resolve(
        flags: Settings,
        file: Option<&Path>,
        environment: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = file.map(file::read).transpose()?.unwrap_or_default();
        let settings = flags.over(peer_names::settings(environment)?).over(file);
        Self::from_settings(settings)
    }

    /// Every setting `s` leaves unset takes its default.
    fn from_settings(s: Settings) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let policy_max = LimitPolicy::default().max;
        let files_bytes = s
            .max_output_files_bytes
            .unwrap_or(policy_max.max_output_files_bytes);
        let max = Limits {
            timeout_ms: s
                .max_timeout_ms
                .unwrap_or(policy_max.timeout_ms)
                .max(s.default_timeout_ms.unwrap_or(0)),
            memory_mb: s.max_memory_mb.unwrap_or(policy_max.memory_mb),
            max_output_bytes: s.max_output_bytes.unwrap_or(policy_max.max_output_bytes),
            max_output_files_bytes: files_bytes,
            max_output_file_bytes: s
                .max_output_file_bytes
                .unwrap_or(files_bytes)
                .min(files_bytes),
        };
        let allow = s
            .http_allow
            .map(OneOrMany::into_vec)
            .unwrap_or_default()
            .iter()
            .filter(|e| !e.trim().is_empty())
            .map(|e| Allowed::parse(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ConfigError::HttpAllow)?;
        let proxy = s
            .http_proxy
            .filter(|p| !p.trim().is_empty())
            .map(|p| ureq::Proxy::new(&p).map(|_| p).map_err(|e| e.to_string()))
            .transpose()
            .map_err(ConfigError::HttpProxy)?;
        let connect_ports = s
            .connect_ports
            .map(|p| Ports::parse(&p))
            .transpose()
            .map_err(ConfigError::ConnectPorts)?
            .unwrap_or_default();
        let mut limits = LimitPolicy::with_max(max);
        limits.max_input_files_bytes = s
            .max_input_files_bytes
            .unwrap_or(DEFAULT_MAX_INPUT_FILES_BYTES);
        if let Some(timeout_ms) = s.default_timeout_ms {
            limits.default.timeout_ms = timeout_ms.max(1);
        }
        let ms =
            |value: Option<u64>, default: Duration| value.map_or(default, Duration::from_millis);
        let workers = s.workers.unwrap_or(defaults.workers);
        Ok(Self {
            listen: s.listen.unwrap_or(defaults.listen),
            api_keys: s
                .api_key
                .map(OneOrMany::into_vec)
                .unwrap_or_default()
                .into_iter()
                .filter(|k| !k.is_empty())
                .collect(),
            insecure_no_auth: s.insecure_no_auth.unwrap_or(false),
            limits,
            workers,
            queue: s.queue.unwrap_or(defaults.queue),
            max_children: s.max_children.map_or_else(
                || crate::supervisor::default_max_children(workers),
                |n| n.max(workers),
            ),
            max_body_bytes: s.max_body_bytes.unwrap_or(defaults.max_body_bytes),
            max_connections: s.max_connections.unwrap_or(defaults.max_connections),
            header_timeout: ms(s.header_timeout_ms, defaults.header_timeout),
            body_timeout: ms(s.body_timeout_ms, defaults.body_timeout),
            shutdown_grace: ms(s.shutdown_grace_ms, defaults.shutdown_grace),
            log_format: s.log_format.unwrap_or_default(),
            data_dir: s.data_dir.unwrap_or(defaults.data_dir),
            python_requirements: match s.python_requirements {
                Some(path) if path.as_os_str().is_empty() => None,
                Some(path) => Some(path),
                None => defaults.python_requirements,
            },
            pip: PipOptions {
                index_url: s.pip_index_url.filter(|u| !u.trim().is_empty()),
                find_links: s.pip_find_links.filter(|l| !l.trim().is_empty()),
            },
            deps_retry: ms(s.deps_retry_ms, defaults.deps_retry),
            jail: JailSettings {
                child_uid: s.child_uid.unwrap_or(DEFAULT_CHILD_ID),
                child_gid: s.child_gid.unwrap_or(DEFAULT_CHILD_ID),
                landlock_abi_max: s.testing_landlock_abi_max,
                ..JailSettings::new(max)
            },
            http: HttpPolicy {
                enabled: s.network.unwrap_or(true),
                allow,
                proxy,
                connect_ports,
            },
            allow_degraded: s.allow_degraded.unwrap_or(false),
        })
    }

    /// The configuration as a configuration file would give it, every key filled in and the
    /// keys masked: what `sandlot config` prints.
    pub fn as_settings(&self) -> Settings {
        let ms = |d: Duration| Some(d.as_millis() as u64);
        let masked = self
            .api_keys
            .iter()
            .map(|_| "********".to_owned())
            .collect();
        Settings {
            listen: Some(self.listen),
            api_key: Some(OneOrMany::Many(masked)),
            insecure_no_auth: Some(self.insecure_no_auth),
            default_timeout_ms: Some(self.limits.default.timeout_ms),
            max_timeout_ms: Some(self.limits.max.timeout_ms),
            max_memory_mb: Some(self.limits.max.memory_mb),
            max_output_bytes: Some(self.limits.max.max_output_bytes),
            max_input_files_bytes: Some(self.limits.max_input_files_bytes),
            max_output_files_bytes: Some(self.limits.max.max_output_files_bytes),
            max_output_file_bytes: Some(self.limits.max.max_output_file_bytes),
            workers: Some(self.workers),
            queue: Some(self.queue),
            max_children: Some(self.max_children),
            data_dir: Some(self.data_dir.clone()),
            python_requirements: self.python_requirements.clone(),
            pip_index_url: self.pip.index_url.clone(),
            pip_find_links: self.pip.find_links.clone(),
            deps_retry_ms: ms(self.deps_retry),
            max_connections: Some(self.max_connections),
            header_timeout_ms: ms(self.header_timeout),
            body_timeout_ms: ms(self.body_timeout),
            shutdown_grace_ms: ms(self.shutdown_grace),
            max_body_bytes: Some(self.max_body_bytes),
            http_allow: Some(OneOrMany::Many(
                self.http.allow.iter().map(|a| a.to_string()).collect(),
            )),
            http_proxy: self.http.proxy.clone(),
            connect_ports: Some(self.http.connect_ports.to_string()),
            network: Some(self.http.enabled),
            log_format: Some(self.log_format),
            allow_degraded: Some(self.allow_degraded),
            child_uid: Some(self.jail.child_uid),
            child_gid: Some(self.jail.child_gid),
            testing_landlock_abi_max: self.jail.landlock_abi_max,
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
            max_children: crate::supervisor::default_max_children(default_workers()),
            max_body_bytes: 16 * 1024 * 1024,
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            log_format: LogFormat::default(),
            jail: JailSettings::new(LimitPolicy::default().max),
            http: HttpPolicy::default(),
            data_dir: crate::python_packages::default_data_dir(),
            python_requirements: crate::python_packages::operator::default_requirements(),
            pip: PipOptions::default(),
            deps_retry: Duration::from_secs(30),
            allow_degraded: false,
        }
    }
}

/// Runs are mostly CPU-bound and short: a few per core keeps the cores busy while one waits.
pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 4).max(4)
}
