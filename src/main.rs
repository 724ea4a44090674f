//! The `sandlot` command line: `serve`, `run`, and the hidden `__zygote` a server re-executes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use sandlot::broker::destination::Allowed;
use sandlot::broker::Broker;
use sandlot::config::{default_workers, Config, LimitPolicy};
use sandlot::jail::probe::{self, LayerStatus};
use sandlot::jail::settings::{JailSettings, DEFAULT_CHILD_ID};
use sandlot::protocol::ZygoteKind;
use sandlot::python_packages;
use sandlot::run::{Limits, Mode};
use sandlot::run_request::{RequestedLimits, RunRequest};
use sandlot::supervisor::Supervisor;

/// Runs untrusted Python and JavaScript code-node snippets behind a local HTTP endpoint.
///
/// Each request runs in a single-use child process forked from a pre-warmed interpreter and
/// confined by the kernel (namespaces, rlimits, an unprivileged uid, Landlock and seccomp)
/// before it reads any user code.
#[derive(Parser)]
#[command(name = "sandlot", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the HTTP server (POST /v1/run, GET /healthz, GET /readyz).
    Serve(ServeArgs),
    /// Run one file through the same engine the server uses and print the response JSON.
    ///
    /// Exits with the run's exit code (124 on timeout).
    Run(RunArgs),
    /// Install or list the third-party Python packages (numpy, pandas, matplotlib, jinja2) of
    /// whitelist/python-requirements.txt. `serve` installs them at its first start too.
    Deps {
        #[command(subcommand)]
        action: DepsAction,
        /// sandlot's data directory (default: $XDG_DATA_HOME/sandlot or ~/.local/share/sandlot).
        #[arg(long, env = "SANDLOT_DATA_DIR", global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Show which isolation layers work on this machine, and why a missing one is missing.
    ///
    /// Exits 0 when every layer is active, 1 otherwise.
    Doctor(JailArgs),
    /// Internal: a zygote process, started by the server itself.
    #[command(name = "__zygote", hide = true)]
    Zygote { kind: ZygoteKind },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on. A port of 0 picks a free one (the ready line says which).
    #[arg(long, env = "SANDLOT_LISTEN", default_value = "127.0.0.1:8194")]
    listen: SocketAddr,
    /// API key clients must send as `Authorization: Bearer KEY` or `X-Api-Key: KEY`.
    /// Repeat it (or separate keys with commas in SANDLOT_API_KEY) to accept several.
    #[arg(
        long = "api-key",
        env = "SANDLOT_API_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    api_keys: Vec<String>,
    /// Allow listening on a non-loopback address with no API key.
    #[arg(long, env = "SANDLOT_INSECURE_NO_AUTH")]
    insecure_no_auth: bool,
    /// Time limit of a request that asks for none, in milliseconds (raises the maximum if
    /// above it). Dify's WORKER_TIMEOUT (seconds) sets it too.
    #[arg(long, env = "SANDLOT_DEFAULT_TIMEOUT_MS")]
    default_timeout_ms: Option<u64>,
    /// Longest time limit a request may ask for, in milliseconds.
    #[arg(long, env = "SANDLOT_MAX_TIMEOUT_MS", default_value_t = LimitPolicy::default().max.timeout_ms)]
    max_timeout_ms: u64,
    /// Largest memory limit a request may ask for, in MB.
    #[arg(long, env = "SANDLOT_MAX_MEMORY_MB", default_value_t = LimitPolicy::default().max.memory_mb)]
    max_memory_mb: u64,
    /// Largest stdout+stderr (and returned value) a request may ask for, in bytes.
    #[arg(long, env = "SANDLOT_MAX_OUTPUT_BYTES", default_value_t = LimitPolicy::default().max.max_output_bytes)]
    max_output_bytes: u64,
    /// Runs executing at once; further requests wait in the queue.
    #[arg(long, env = "SANDLOT_WORKERS", default_value_t = default_workers())]
    workers: usize,
    /// Requests that may wait for a worker; past this, 503 with Retry-After.
    #[arg(long, env = "SANDLOT_QUEUE", default_value_t = Config::default().queue)]
    queue: usize,
    /// Where sandlot keeps the Python data packages it installs (default:
    /// $XDG_DATA_HOME/sandlot or ~/.local/share/sandlot).
    #[arg(long, env = "SANDLOT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Largest request body, in bytes (413 past it).
    #[arg(long, env = "SANDLOT_MAX_BODY_BYTES", default_value_t = Config::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Open a destination to SystemHelper.httpRequest on purpose: a CIDR range (10.0.0.0/8),
    /// an address, or a host name. Repeatable; SANDLOT_HTTP_ALLOW takes a comma-separated list.
    #[arg(long = "http-allow", env = "SANDLOT_HTTP_ALLOW", value_delimiter = ',')]
    http_allow: Vec<String>,
    /// Whether runs may use SystemHelper.httpRequest at all (`--network false` refuses every
    /// call). Dify's ENABLE_NETWORK sets it too.
    #[arg(long, env = "SANDLOT_NETWORK", default_value_t = true, action = clap::ArgAction::Set)]
    network: bool,
    #[command(flatten)]
    jail: JailArgs,
}

#[derive(Args)]
struct JailArgs {
    /// Start even when an isolation layer is unavailable on this machine. Every missing layer
    /// is logged and listed in /readyz; without this flag the server refuses to start.
    #[arg(long, env = "SANDLOT_ALLOW_DEGRADED")]
    allow_degraded: bool,
    /// The uid children run as when sandlot runs as root.
    #[arg(long, env = "SANDLOT_CHILD_UID", default_value_t = DEFAULT_CHILD_ID)]
    child_uid: u32,
    /// The gid children run as when sandlot runs as root.
    #[arg(long, env = "SANDLOT_CHILD_GID", default_value_t = DEFAULT_CHILD_ID)]
    child_gid: u32,
}

#[derive(Subcommand)]
enum DepsAction {
    /// Install the packages (pip install --target into the data directory), showing progress.
    Install,
    /// Print the installed packages and their versions.
    List,
}

#[derive(Args)]
struct RunArgs {
    /// The file holding the code.
    file: PathBuf,
    /// python, javascript or shell (and their aliases); by default from the file's extension.
    #[arg(long)]
    lang: Option<String>,
    /// Inputs as a JSON object, or @FILE to read them from a file.
    #[arg(long)]
    inputs: Option<String>,
    /// main (call main(inputs), the default) or script (run top to bottom).
    #[arg(long, value_parser = ["main", "script"])]
    mode: Option<String>,
    /// Time limit in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Memory limit in MB.
    #[arg(long)]
    memory_mb: Option<u64>,
    #[command(flatten)]
    jail: JailArgs,
}

/// A failed allocation in a child becomes a `memory_limit` report rather than an abort.
#[global_allocator]
static ALLOCATOR: sandlot::zygote::out_of_memory::ReportingAllocator =
    sandlot::zygote::out_of_memory::ReportingAllocator;

fn main() -> ExitCode {
    sandlot::config::apply_peer_aliases();
    let cli = Cli::parse();
    match cli.command {
        // Before anything else: a zygote must stay single-threaded.
        Command::Zygote { kind } => exit_code(sandlot::zygote::main(kind)),
        Command::Serve(args) => serve(args),
        Command::Run(args) => run_file(args),
        Command::Doctor(args) => doctor(args),
        Command::Deps { action, data_dir } => deps(action, data_dir),
    }
}

fn deps(action: DepsAction, data_dir: Option<PathBuf>) -> ExitCode {
    let data_dir = data_dir.unwrap_or_else(python_packages::default_data_dir);
    match action {
        DepsAction::Install => match python_packages::install(&data_dir, &mut std::io::stdout()) {
            Ok(()) => {
                println!(
                    "installed in {}",
                    python_packages::site_dir(&data_dir).display()
                );
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("sandlot deps install: {why}");
                ExitCode::FAILURE
            }
        },
        DepsAction::List => {
            let installed = python_packages::installed(&data_dir);
            if installed.is_empty() {
                println!(
                    "no packages installed in {} (run `sandlot deps install`)",
                    data_dir.display()
                );
            }
            for (name, version) in installed {
                println!("{name}=={version}");
            }
            ExitCode::SUCCESS
        }
    }
}

fn doctor(args: JailArgs) -> ExitCode {
    let settings = args.settings(LimitPolicy::default().max);
    let report = probe::probe(&settings);
    print!("{report}");
    if report.missing().next().is_none() {
        println!("\nevery layer is active");
        ExitCode::SUCCESS
    } else {
        println!(
            "\nsandlot serve refuses to start with a layer missing unless --allow-degraded is given"
        );
        ExitCode::FAILURE
    }
}

impl JailArgs {
    fn settings(&self, max: Limits) -> JailSettings {
        JailSettings {
            child_uid: self.child_uid,
            child_gid: self.child_gid,
            ..JailSettings::new(max)
        }
    }

    /// Probes the layers (while the process is still single-threaded): settings that skip the
    /// missing ones if the operator allows it, or the reason to refuse.
    fn checked_settings(&self, max: Limits) -> Result<(JailSettings, Vec<LayerStatus>), String> {
        let mut settings = self.settings(max);
        let report = probe::probe(&settings);
        let missing: Vec<LayerStatus> = report.missing().cloned().collect();
        if missing.is_empty() {
            return Ok((settings, missing));
        }
        if !self.allow_degraded {
            return Err(format!(
                "refusing to start: isolation layers unavailable on this machine:\n{report}\
                 Fix them (see `sandlot doctor`), or pass --allow-degraded to run without them."
            ));
        }
        for layer in &missing {
            eprintln!(
                "sandlot: WARNING: running without {} (--allow-degraded): {}",
                layer.layer.name(),
                layer.detail
            );
        }
        settings.skip = missing.iter().map(|l| l.layer).collect();
        Ok((settings, missing))
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let max = Limits {
        timeout_ms: args
            .max_timeout_ms
            .max(args.default_timeout_ms.unwrap_or(0)),
        memory_mb: args.max_memory_mb,
        max_output_bytes: args.max_output_bytes,
    };
    let allow = match args
        .http_allow
        .iter()
        .filter(|e| !e.trim().is_empty())
        .map(|e| Allowed::parse(e))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(allow) => allow,
        Err(message) => {
            eprintln!("sandlot: {message}");
            return ExitCode::from(2);
        }
    };
    let (jail, degraded) = match args.jail.checked_settings(max) {
        Ok(checked) => checked,
        Err(message) => {
            eprintln!("sandlot: {message}");
            return ExitCode::FAILURE;
        }
    };
    let config = Config {
        listen: args.listen,
        api_keys: args
            .api_keys
            .into_iter()
            .filter(|k| !k.is_empty())
            .collect(),
        insecure_no_auth: args.insecure_no_auth,
        limits: {
            let mut policy = LimitPolicy::with_max(max);
            if let Some(timeout_ms) = args.default_timeout_ms {
                policy.default.timeout_ms = timeout_ms.max(1);
            }
            policy
        },
        workers: args.workers,
        queue: args.queue,
        max_body_bytes: args.max_body_bytes,
        data_dir: args
            .data_dir
            .unwrap_or_else(python_packages::default_data_dir),
        jail,
        broker: Broker {
            enabled: args.network,
            allow,
        },
        degraded,
    };
    let result = runtime().block_on(sandlot::server::serve(config));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sandlot: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run_file(args: RunArgs) -> ExitCode {
    let jail = match args.jail.checked_settings(LimitPolicy::default().max) {
        Ok((jail, _)) => jail,
        Err(message) => {
            eprintln!("sandlot run: {message}");
            return ExitCode::FAILURE;
        }
    };
    match build_request(&args) {
        Ok(request) => run_request(request, &jail),
        Err(message) => {
            eprintln!("sandlot run: {message}");
            ExitCode::from(2)
        }
    }
}

fn build_request(args: &RunArgs) -> Result<RunRequest, String> {
    let code = std::fs::read_to_string(&args.file)
        .map_err(|e| format!("reading {}: {e}", args.file.display()))?;
    let language = match &args.lang {
        Some(lang) => lang.clone(),
        None => match args.file.extension().and_then(|e| e.to_str()) {
            Some("py") => "python".into(),
            Some("js" | "mjs" | "cjs") => "javascript".into(),
            Some("sh") => "shell".into(),
            _ => return Err("cannot tell the language from the file name; pass --lang".into()),
        },
    };
    let inputs = match &args.inputs {
        None => None,
        Some(text) => {
            let text = match text.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| format!("reading inputs from {path}: {e}"))?,
                None => text.clone(),
            };
            Some(
                serde_json::value::RawValue::from_string(text)
                    .map_err(|e| format!("--inputs is not valid JSON: {e}"))?,
            )
        }
    };
    Ok(RunRequest {
        language,
        code,
        inputs,
        mode: args.mode.as_deref().map(|m| match m {
            "script" => Mode::Script,
            _ => Mode::Main,
        }),
        limits: RequestedLimits {
            timeout_ms: args.timeout_ms,
            memory_mb: args.memory_mb,
            max_output_bytes: None,
        },
        allowed_modules: None,
        network: None,
        working_dir: None,
        env: None,
    })
}

fn run_request(request: RunRequest, jail: &JailSettings) -> ExitCode {
    let plan = match request.plan(&LimitPolicy::default()) {
        Ok(plan) => plan,
        Err(invalid) => {
            eprintln!("sandlot run: {}", invalid.0);
            return ExitCode::from(2);
        }
    };
    let response = runtime().block_on(async {
        let data = plan.kind == ZygoteKind::PythonData;
        let data_dir = python_packages::default_data_dir();
        if data {
            python_packages::install(&data_dir, &mut std::io::stderr())?;
        }
        let kinds: &[ZygoteKind] = if data { &[] } else { &[plan.kind] };
        let supervisor = Supervisor::start(
            kinds,
            jail,
            Broker::default(),
            data.then_some(data_dir),
            1,
            0,
        );
        let ready = match supervisor.python_data() {
            Some(python_data) if data => python_data.wait_ready(Duration::from_secs(120)).await,
            _ => supervisor.wait_ready(Duration::from_secs(120)).await,
        };
        if !ready {
            return Err(format!(
                "the interpreter did not start: {:?}",
                supervisor.status()
            ));
        }
        supervisor
            .run(plan.kind, &plan.job)
            .await
            .map_err(|_| "no worker available".to_owned())
    });
    match response {
        Ok(response) => {
            match serde_json::to_string_pretty(&response) {
                Ok(text) => println!("{text}"),
                Err(e) => eprintln!("sandlot run: encoding the response: {e}"),
            }
            exit_code(response.exit_code)
        }
        Err(message) => {
            eprintln!("sandlot run: {message}");
            ExitCode::FAILURE
        }
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime")
}
