//! The sandbox module API: `POST /v1/sandbox/execute_js`, `…/execute_python`,
//! `…/execute_shell`. Code runs as a script; `timeout` is in seconds (default 10);
//! `allowed_modules` narrows the Python whitelist (empty or absent: all of it). The answer is
//! `{stdout, stderr, exit_code, execution_time_ms}`; why a run failed (a timeout, a refused
//! import) is on stderr, as a subprocess would show it.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::api_error::ApiError;
use super::json_body::JsonBody;
use super::observed_run::Api;
use super::AppState;
use crate::run::{Mode, RunResponse};
use crate::run_request::{RequestedLimits, RunRequest};

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
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Executed {
    stdout: String,
    stderr: String,
    exit_code: i32,
    execution_time_ms: f64,
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
    JsonBody(body, _): JsonBody<ExecuteCode>,
) -> Result<Json<Executed>, ApiError> {
    if body.allowed_modules.is_some() {
        return Err(ApiError::BadRequest(
            "allowed_modules: applies to execute_python only".into(),
        ));
    }
    execute(
        &state,
        "javascript",
        body.code,
        body.timeout,
        None,
        None,
        None,
    )
    .await
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
    JsonBody(body, _): JsonBody<ExecuteCode>,
) -> Result<Json<Executed>, ApiError> {
    execute(
        &state,
        "python",
        body.code,
        body.timeout,
        body.allowed_modules,
        None,
        None,
    )
    .await
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
    JsonBody(body, _): JsonBody<ExecuteShell>,
) -> Result<Json<Executed>, ApiError> {
    execute(
        &state,
        "shell",
        body.command,
        body.timeout,
        None,
        body.working_dir,
        body.env,
    )
    .await
}

async fn execute(
    state: &AppState,
    language: &str,
    code: String,
    timeout: Option<f64>,
    allowed_modules: Option<Vec<String>>,
    working_dir: Option<String>,
    env: Option<BTreeMap<String, String>>,
) -> Result<Json<Executed>, ApiError> {
    let seconds = timeout.unwrap_or(DEFAULT_TIMEOUT_S);
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(ApiError::BadRequest(format!(
            "timeout: must be a positive number of seconds, got {seconds}"
        )));
    }
    let request = RunRequest {
        mode: Some(Mode::Script),
        limits: RequestedLimits {
            timeout_ms: Some((seconds * 1000.0).ceil().min(u64::MAX as f64) as u64),
            ..Default::default()
        },
        allowed_modules,
        working_dir,
        env,
        ..RunRequest::new(language, code)
    };
    let response = super::native::run_request(state, Api::SandboxModule, request).await?;
    Ok(Json(executed(response)))
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
    }
}
