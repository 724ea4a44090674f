//! `sandlot serve`: its flags (each with a `SANDLOT_*` variable), and starting the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::jail_args::{self, JailArgs};
use crate::config::{Config, ConfigError, OneOrMany, Settings};
use crate::logging::LogFormat;

/// Where the Python packages go and come from: flags of `serve` and of `deps`.
#[derive(Args)]
pub struct PackageArgs {
    /// Where sandlot keeps the Python packages it installs (default: /var/lib/sandlot
    /// for root, else $XDG_DATA_HOME/sandlot or ~/.local/share/sandlot).
    #[arg(long, env = "SANDLOT_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The operator's own Python packages: a pip requirements file, installed beside the data
    /// packages (with their pins as constraints) and importable on every API [default:
    /// /dependencies/python-requirements.txt, dify-sandbox's, when it exists; "" for none].
    #[arg(long, env = "SANDLOT_PYTHON_REQUIREMENTS", global = true)]
    pub python_requirements: Option<String>,
    /// The package index pip installs from (pip's --index-url); Dify's PIP_MIRROR_URL sets it
    /// too [default: pip's own, PyPI or PIP_INDEX_URL].
    #[arg(long, env = "SANDLOT_PIP_INDEX_URL", global = true)]
    pub pip_index_url: Option<String>,
    /// A directory (or page) of wheels pip installs from (pip's --find-links): a wheelhouse
    /// for a host without the internet.
    #[arg(long, env = "SANDLOT_PIP_FIND_LINKS", global = true)]
    pub pip_find_links: Option<String>,
}

/// The flags of `serve`. Every value is optional here: they are the top layer of settings
/// ([`ServeArgs::settings`]), and [`Config::resolve`] fills in the layers below and the
/// defaults, so that a flag, its variable and the defaults keep one order of precedence.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8194]. A port of 0 picks a free one (the
    /// ready line says which).
    #[arg(long, env = "SANDLOT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// API key clients must send as `Authorization: Bearer KEY` or `X-Api-Key: KEY`.
    /// Repeat it (or separate keys with commas in SANDLOT_API_KEY) to accept several.
    #[arg(
        long = "api-key",
        env = "SANDLOT_API_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// Allow listening on a non-loopback address with no API key.
    /// `--insecure-no-auth=false` (or the variable set to false) overrides a config file.
    #[arg(
        long,
        env = "SANDLOT_INSECURE_NO_AUTH",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub insecure_no_auth: Option<bool>,
    /// Time limit of a request that asks for none, in milliseconds [default: 10000] (raises
    /// the maximum if above it). Dify's WORKER_TIMEOUT (seconds) sets it too.
    #[arg(long, env = "SANDLOT_DEFAULT_TIMEOUT_MS")]
    pub default_timeout_ms: Option<u64>,
    /// Longest time limit a request may ask for, in milliseconds [default: 60000].
    #[arg(long, env = "SANDLOT_MAX_TIMEOUT_MS")]
    pub max_timeout_ms: Option<u64>,
    /// Largest memory limit a request may ask for, in MB [default: 1024].
    #[arg(long, env = "SANDLOT_MAX_MEMORY_MB")]
    pub max_memory_mb: Option<u64>,
    /// Largest stdout+stderr (and returned value) a request may ask for, in bytes
    /// [default: 16777216].
    #[arg(long, env = "SANDLOT_MAX_OUTPUT_BYTES")]
    pub max_output_bytes: Option<u64>,
    /// Largest total of a request's input files (`files`, decoded), in bytes; past it, 400
    /// naming the file [default: 8388608].
    #[arg(long, env = "SANDLOT_MAX_INPUT_FILES_BYTES")]
    pub max_input_files_bytes: Option<u64>,
    /// Largest total of the files a run writes into its output directory, in bytes; past it
    /// the write fails in the code (ENOSPC) and the run ends `output_limit` [default: 10485760].
    #[arg(long, env = "SANDLOT_MAX_OUTPUT_FILES_BYTES")]
    pub max_output_files_bytes: Option<u64>,
    /// Largest file a run may write into its output directory, in bytes; past it the write
    /// fails in the code (EFBIG) and the run ends `output_limit` [default: the total's cap].
    #[arg(long, env = "SANDLOT_MAX_OUTPUT_FILE_BYTES")]
    pub max_output_file_bytes: Option<u64>,
    /// Runs computing at once; further requests wait in the queue. A run waiting in a sleep or
    /// on a brokered request gives its place to another meanwhile [default: 4 per core].
    #[arg(long, env = "SANDLOT_WORKERS")]
    pub workers: Option<usize>,
    /// Runs alive at once, those waiting in a sleep or on a brokered request included (a
    /// waiting Python child keeps about 5 MiB) [default: one per 64 MiB of half the memory,
    /// at most 1024].
    #[arg(long, env = "SANDLOT_MAX_CHILDREN")]
    pub max_children: Option<usize>,
    /// Requests that may wait for a worker; past this, 503 with Retry-After [default: 512].
    #[arg(long, env = "SANDLOT_QUEUE")]
    pub queue: Option<usize>,
    #[command(flatten)]
    pub packages: PackageArgs,
    /// How long to wait before trying a failed install of the Python data packages again
    /// (doubling each time, up to 15 minutes)
    #[arg(long, env = "SANDLOT_DEPS_RETRY_MS")]
    pub deps_retry_ms: Option<u64>,
    /// Connections open at once; past them a new client gets 503 [default: 1024]
    #[arg(long, env = "SANDLOT_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// How long a client may take to send a request's head [default: 10000]
    #[arg(long, env = "SANDLOT_HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: Option<u64>,
    /// How long a client may take to send a request's body, after its head [default: 30000]
    #[arg(long, env = "SANDLOT_BODY_TIMEOUT_MS")]
    pub body_timeout_ms: Option<u64>,
    /// How long in-flight runs may take to finish after SIGTERM or SIGINT before they are
    /// killed [default: 30000]
    #[arg(long, env = "SANDLOT_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Largest request body, in bytes (413 past it) [default: 16777216].
    #[arg(long, env = "SANDLOT_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Open a destination to SystemHelper.httpRequest on purpose: a CIDR range (10.0.0.0/8),
    /// an address, or a host name. Repeatable; SANDLOT_HTTP_ALLOW takes a comma-separated list.
    #[arg(long = "http-allow", env = "SANDLOT_HTTP_ALLOW", value_delimiter = ',')]
    pub http_allow: Vec<String>,
    /// Send brokered HTTP through this proxy (`http://host:port`), e.g. Dify's ssrf_proxy.
    /// Without it no proxy is used, whatever HTTP_PROXY/HTTPS_PROXY/ALL_PROXY say: the server
    /// connects to the addresses it checked. With it, the proxy connects (and resolves the
    /// host again); the destination is still checked first.
    #[arg(long, env = "SANDLOT_HTTP_PROXY")]
    pub http_proxy: Option<String>,
    /// The ports Python's own HTTP clients (brokered connections: raw TCP to a checked
    /// destination) may reach, as `80,443,8000-8999` [default: 80,443]. SystemHelper.httpRequest
    /// and fetch speak HTTP themselves and reach any port but the Fetch standard's blocked ones.
    #[arg(long, env = "SANDLOT_CONNECT_PORTS")]
    pub connect_ports: Option<String>,
    /// Whether runs may use SystemHelper.httpRequest at all (`--network false` refuses every
    /// call) [default: true]. Dify's ENABLE_NETWORK sets it too.
    #[arg(long, env = "SANDLOT_NETWORK", action = clap::ArgAction::Set)]
    pub network: Option<bool>,
    /// How log lines are written to stderr: `text` for people, `json` for one JSON object per
    /// line [default: text]
    #[arg(long, env = "SANDLOT_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// A TOML file of these settings (keys: the long flag names with `_` for `-`); flags,
    /// SANDLOT_* variables and the peers' variable names win over it. See contrib/sandlot.toml.
    #[arg(long, env = "SANDLOT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub jail: JailArgs,
}

impl ServeArgs {
    /// The flags and `SANDLOT_*` variables, as the top layer of settings.
    pub fn settings(&self) -> Settings {
        Settings {
            listen: self.listen,
            api_key: OneOrMany::from_vec(self.api_keys.clone()),
            insecure_no_auth: self.insecure_no_auth,
            default_timeout_ms: self.default_timeout_ms,
            max_timeout_ms: self.max_timeout_ms,
            max_memory_mb: self.max_memory_mb,
            max_output_bytes: self.max_output_bytes,
            max_input_files_bytes: self.max_input_files_bytes,
            max_output_files_bytes: self.max_output_files_bytes,
            max_output_file_bytes: self.max_output_file_bytes,
            workers: self.workers,
            queue: self.queue,
            max_children: self.max_children,
            data_dir: self.packages.data_dir.clone(),
            python_requirements: self.packages.python_requirements.clone().map(PathBuf::from),
            pip_index_url: self.packages.pip_index_url.clone(),
            pip_find_links: self.packages.pip_find_links.clone(),
            deps_retry_ms: self.deps_retry_ms,
            max_connections: self.max_connections,
            header_timeout_ms: self.header_timeout_ms,
            body_timeout_ms: self.body_timeout_ms,
            shutdown_grace_ms: self.shutdown_grace_ms,
            max_body_bytes: self.max_body_bytes,
            http_allow: OneOrMany::from_vec(self.http_allow.clone()),
            http_proxy: self.http_proxy.clone(),
            connect_ports: self.connect_ports.clone(),
            network: self.network,
            log_format: self.log_format,
            ..self.jail.settings()
        }
    }

    /// The configuration these flags, the process's environment and the file give.
    pub fn config(&self) -> Result<Config, ConfigError> {
        Config::resolve(self.settings(), self.config.as_deref(), |name| {
            std::env::var(name).ok()
        })
    }
}

pub fn main(args: ServeArgs) -> ExitCode {
    // First, while single-threaded: as PID 1, stay a minimal init and serve from a child.
    match crate::pid_one::split_if_pid_one() {
        Ok(crate::pid_one::Role::Server) => {}
        Ok(crate::pid_one::Role::InitDone(code)) => return code,
        Err(error) => {
            eprintln!("sandlot: {error}");
            return ExitCode::FAILURE;
        }
    }
    let config = match args.config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("sandlot: {error}");
            return ExitCode::from(error.exit_code());
        }
    };
    // The log is set up first, so that the jail probe's warnings are in its format.
    crate::logging::init(config.log_format, tracing::Level::INFO);
    // SAFETY: no thread has been started yet (the runtime is built after this).
    let probed = unsafe { jail_args::probed(config.jail.clone(), config.allow_degraded) };
    let (jail, degraded) = match probed {
        Ok(probed) => probed,
        Err(error) => {
            eprintln!("sandlot: {error}");
            return ExitCode::from(ConfigError::Jail(error).exit_code());
        }
    };
    let runtime = super::runtime();
    let outcome = runtime.block_on(crate::server::serve(config, jail, degraded));
    // Whatever is still running past the grace period dies with the process; do not wait
    // for blocking threads (a broker fetch) to notice.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sandlot: {message}");
            ExitCode::FAILURE
        }
    }
}
