//! The sandbox module API: `POST /v1/sandbox/execute_js`, `…/execute_python`,
//! `…/execute_shell`. Code runs as a script; `timeout` is in seconds (default 10);
//! `allowed_modules` narrows the Python whitelist (empty or absent: all of it). The answer is
//! `{stdout, stderr, exit_code, execution_time_ms}`; why a run failed (a timeout, a refused
//! import) is on stderr, as a subprocess would show it.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::adapter::{self, Adapter};
use super::api_error::ApiError;
use super::json_body::{JsonBody, Native, Refusal};
use super::AppState;
use crate::api::Api;
use crate::input_files::InputFile;
use crate::output_files::OutputFile;
use crate::run::{Language, Mode, RunResponse};
use crate::run_request::{Plan, RequestedLimits, RunRequest};

const DEFAULT_TIMEOUT_S: f64 = 10.0;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteCode {
    code: String,
    /// Seconds (default 10).
    #[serde(default)]
    timeout: Option<f64>,
    /// Narrows the Python allowlist (execute_python only).
    #[serde(default)]
    allowed_modules: Option<Vec<String>>,
    /// Files the code finds beside it, read-only.
    #[serde(default)]
    files: Option<Vec<InputFile>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteShell {
    command: String,
    /// Seconds (default 10).
    #[serde(default)]
    timeout: Option<f64>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    env: Option<BTreeMap<String, String>>,
    /// Files the command finds in its working directory, read-only.
    #[serde(default)]
    files: Option<Vec<InputFile>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Executed {
    stdout: String,
    stderr: String,
    exit_code: i32,
    execution_time_ms: f64,
    /// What the run wrote into `output/`; absent when it wrote nothing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    files: Vec<OutputFile>,
}

#[utoipa::path(
    post,
    path = "/v1/sandbox/execute_js",
    tag = "sandbox module",
    request_body = ExecuteCode,
    responses(
        (status = 200, description = "The run, as a subprocess would report it", body = Executed),
        (status = 400, description = "A field is invalid; the message names it", body = super::api_error::ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = super::api_error::ErrorBody),
        (status = 503, description = "Every worker is busy and the queue is full", body = super::api_error::ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn execute_js(
    State(state): State<AppState>,
    JsonBody(body, _): JsonBody<ExecuteCode, SandboxModule>,
) -> Response {
    if body.allowed_modules.is_some() {
        let message = "allowed_modules: applies to execute_python only".to_owned();
        return SandboxModule::refuse(StatusCode::BAD_REQUEST, message);
    }
    adapter::handle::<SandboxModule>(&state, ModuleRun::code(Language::Javascript, body)).await
}

#[utoipa::path(
    post,
    path = "/v1/sandbox/execute_python",
    tag = "sandbox module",
    request_body = ExecuteCode,
    responses(
        (status = 200, description = "The run, as a subprocess would report it", body = Executed),
        (status = 400, description = "A field is invalid; the message names it", body = super::api_error::ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = super::api_error::ErrorBody),
        (status = 503, description = "Every worker is busy and the queue is full", body = super::api_error::ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn execute_python(
    State(state): State<AppState>,
    JsonBody(body, _): JsonBody<ExecuteCode, SandboxModule>,
) -> Response {
    adapter::handle::<SandboxModule>(&state, ModuleRun::code(Language::Python, body)).await
}

#[utoipa::path(
    post,
    path = "/v1/sandbox/execute_shell",
    tag = "sandbox module",
    request_body = ExecuteShell,
    responses(
        (status = 200, description = "The run, as a subprocess would report it", body = Executed),
        (status = 400, description = "A field is invalid; the message names it", body = super::api_error::ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = super::api_error::ErrorBody),
        (status = 503, description = "Every worker is busy and the queue is full", body = super::api_error::ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn execute_shell(
    State(state): State<AppState>,
    JsonBody(body, _): JsonBody<ExecuteShell, SandboxModule>,
) -> Response {
    let run = ModuleRun {
        language: Language::Shell,
        code: body.command,
        timeout: body.timeout,
        allowed_modules: None,
        working_dir: body.working_dir,
        env: body.env,
        files: body.files,
    };
    adapter::handle::<SandboxModule>(&state, run).await
}

/// A request of any of the three routes.
pub struct ModuleRun {
    language: Language,
    code: String,
    timeout: Option<f64>,
    allowed_modules: Option<Vec<String>>,
    working_dir: Option<String>,
    env: Option<BTreeMap<String, String>>,
    files: Option<Vec<InputFile>>,
}

impl ModuleRun {
    fn code(language: Language, body: ExecuteCode) -> Self {
        Self {
            language,
            code: body.code,
            timeout: body.timeout,
            allowed_modules: body.allowed_modules,
            working_dir: None,
            env: None,
            files: body.files,
        }
    }
}

/// The sandbox module API: refusals in sandlot's own shape.
pub struct SandboxModule;

impl Refusal for SandboxModule {
    fn refuse(status: StatusCode, message: String) -> Response {
        Native::refuse(status, message)
    }
}

impl Adapter for SandboxModule {
    type Input = ModuleRun;

    fn request(run: ModuleRun, _: &AppState) -> Result<RunRequest, String> {
        let seconds = run.timeout.unwrap_or(DEFAULT_TIMEOUT_S);
        if !seconds.is_finite() || seconds <= 0.0 {
            return Err(format!(
                "timeout: must be a positive number of seconds, got {seconds}"
            ));
        }
        Ok(RunRequest {
            mode: Some(Mode::Script),
            limits: RequestedLimits {
                timeout_ms: Some((seconds * 1000.0).ceil().min(u64::MAX as f64) as u64),
                ..Default::default()
            },
            allowed_modules: run.allowed_modules,
            working_dir: run.working_dir,
            env: run.env,
            files: run.files,
            ..RunRequest::new(Api::SandboxModule, run.language, run.code)
        })
    }

    fn answer(response: RunResponse, _: &Plan) -> Response {
        Json(executed(response)).into_response()
    }

    fn busy() -> Response {
        ApiError::Busy.into_response()
    }
}

fn executed(response: RunResponse) -> Executed {
    let mut stderr = response.stderr;
    if let Some(error) = &response.error {
        if !stderr.contains(&error.message) {
            if !stderr.is_empty() && !stderr.ends_with('\n') {
                stderr.push('\n');
            }
            stderr.push_str(&error.message);
            stderr.push('\n');
        }
    }
    Executed {
        stdout: response.stdout,
        stderr,
        exit_code: response.exit_code,
        execution_time_ms: response.execution_time_ms,
        files: response.files,
    }
}
