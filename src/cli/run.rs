//! `sandlot run FILE`: one run through the same zygotes and children the server uses.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use clap::Args;
use serde_json::value::RawValue;

use super::jail_args::JailArgs;
use crate::broker::Broker;
use crate::config::LimitPolicy;
use crate::input_files::{Encoding, InputFile};
use crate::jail::settings::JailSettings;
use crate::output_region::Stream;
use crate::protocol::ZygoteKind;
use crate::python_packages;
use crate::run::{Language, Mode, RunResponse};
use crate::run_request::{RequestedLimits, RunRequest};
use crate::supervisor::{Packages, RunEvent, Supervisor};

#[derive(Args)]
pub struct RunArgs {
    /// The file holding the code.
    file: PathBuf,
    /// The language; by default from the file's extension (.py, .js/.mjs/.cjs, .sh).
    #[arg(long, value_enum)]
    lang: Option<Language>,
    /// Inputs as a JSON object, or @FILE to read them from a file.
    #[arg(long)]
    inputs: Option<String>,
    /// main (call main(inputs), the default) or script (run top to bottom).
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Time limit in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Memory limit in MB.
    #[arg(long)]
    memory_mb: Option<u64>,
    /// Print the code's stdout and stderr as it prints them, then the response as one JSON
    /// line on stdout.
    #[arg(long)]
    stream: bool,
    /// A file the code finds beside it, read-only, under its own name (repeatable).
    #[arg(long = "file", value_name = "PATH")]
    files: Vec<PathBuf>,
    /// Where to write the files the run wrote into its output/ directory (created if needed);
    /// without it they are only in the response, base64.
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
    #[command(flatten)]
    jail: JailArgs,
}

pub fn main(args: RunArgs) -> ExitCode {
    crate::logging::init(crate::logging::LogFormat::Text, tracing::Level::WARN);
    let jail = args
        .jail
        .jail()
        .map_err(|e| e.to_string())
        // SAFETY: no thread has been started yet (the runtime is built after this).
        .and_then(|(jail, allow_degraded)| unsafe {
            super::jail_args::probed(jail, allow_degraded)
        });
    let jail = match jail {
        Ok((jail, _)) => jail,
        Err(message) => {
            eprintln!("sandlot run: {message}");
            return ExitCode::FAILURE;
        }
    };
    let request = match build_request(&args) {
        Ok(request) => request,
        Err(message) => {
            eprintln!("sandlot run: {message}");
            return ExitCode::from(2);
        }
    };
    match run(request, &jail, args.stream) {
        Ok(response) => {
            if let Some(dir) = &args.output_dir {
                if let Err(message) = save_files(&response, dir) {
                    eprintln!("sandlot run: {message}");
                    return ExitCode::FAILURE;
                }
            }
            let text = if args.stream {
                serde_json::to_string(&response)
            } else {
                serde_json::to_string_pretty(&response)
            };
            match text {
                Ok(text) => println!("{text}"),
                Err(e) => eprintln!("sandlot run: encoding the response: {e}"),
            }
            super::exit_code(response.exit_code)
        }
        Err(message) => {
            eprintln!("sandlot run: {message}");
            ExitCode::FAILURE
        }
    }
}

fn build_request(args: &RunArgs) -> Result<RunRequest, String> {
    let code = std::fs::read_to_string(&args.file)
        .map_err(|e| format!("reading {}: {e}", args.file.display()))?;
    let language = match args.lang {
        Some(lang) => lang,
        None => match args.file.extension().and_then(|e| e.to_str()) {
            Some("py") => Language::Python,
            Some("js" | "mjs" | "cjs") => Language::Javascript,
            Some("sh") => Language::Shell,
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
                RawValue::from_string(text)
                    .map_err(|e| format!("--inputs is not valid JSON: {e}"))?,
            )
        }
    };
    let mut files = Vec::new();
    for path in &args.files {
        let bytes =
            std::fs::read(path).map_err(|e| format!("reading --file {}: {e}", path.display()))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("--file {}: not a file name", path.display()))?;
        files.push(InputFile {
            name: name.to_owned(),
            content: base64::engine::general_purpose::STANDARD.encode(bytes),
            encoding: Encoding::Base64,
        });
    }
    Ok(RunRequest {
        inputs,
        files: Some(files),
        mode: args.mode,
        limits: RequestedLimits {
            timeout_ms: args.timeout_ms,
            memory_mb: args.memory_mb,
            max_output_bytes: None,
        },
        ..RunRequest::new(crate::api::Api::Native, language, code)
    })
}

/// `--output-dir`: each returned file, under its name (which the server checked is a plain
/// file name).
fn save_files(response: &RunResponse, dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for file in &response.files {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&file.base64)
            .map_err(|e| format!("{}: {e}", file.name))?;
        let path = dir.join(&file.name);
        std::fs::write(&path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Starts the one zygote the run needs (installing the data packages first if it needs them),
/// and runs it.
fn run(request: RunRequest, jail: &JailSettings, stream: bool) -> Result<RunResponse, String> {
    let plan = request
        .plan(&LimitPolicy::default(), &[])
        .map_err(|invalid| invalid.0)?;
    super::runtime().block_on(async {
        let data = plan.kind == ZygoteKind::PythonData;
        let data_dir = python_packages::default_data_dir();
        if data {
            python_packages::install(&data_dir, &Default::default(), &mut std::io::stderr())
                .map_err(|e| e.to_string())?;
        }
        let kinds: &[ZygoteKind] = if data { &[] } else { &[plan.kind] };
        let supervisor = Supervisor::start(
            kinds,
            jail,
            Broker::default(),
            data.then_some(Packages {
                data_dir,
                first_retry: Duration::from_secs(30),
                requirements: None,
                sources: Default::default(),
            }),
            false,
            1,
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
        let (follower, printer) = match stream {
            true => {
                let (follower, events) = tokio::sync::mpsc::channel(64);
                (Some(follower), Some(tokio::spawn(print_output(events))))
            }
            false => (None, None),
        };
        let response = supervisor
            .run_followed(plan.kind, &plan.job, follower.as_ref())
            .await
            .map_err(|_| "no worker available".to_owned());
        drop(follower);
        if let Some(printer) = printer {
            let _ = printer.await;
        }
        response
    })
}

/// `--stream`: the code's output, as it prints it, on this process's stdout and stderr; the
/// response's JSON line then starts a line of its own.
async fn print_output(mut events: tokio::sync::mpsc::Receiver<RunEvent>) {
    use std::io::Write;
    let mut line_open = false;
    while let Some(event) = events.recv().await {
        let RunEvent::Output { stream, text } = event else {
            continue;
        };
        let _ = match stream {
            Stream::Stdout => {
                line_open = !text.ends_with('\n');
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|()| out.flush())
            }
            Stream::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
        };
    }
    if line_open {
        println!();
    }
}
