//! dify-sandbox's API: `POST /v1/sandbox/run` and the dependencies routes. Dify runs every code
//! node as a script (its templates call `main` themselves and print the result between
//! `<<RESULT>>` markers) and reads only `code`, `message`, `data.stdout` and `data.error`.
//!
//! Differences from dify-sandbox, on purpose: `preload` is accepted and never executed; an
//! uncaught Python exception exits 1 (dify-sandbox: 255) — `data.error` still begins with
//! "process exited with code N" and carries the traceback.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api_error::ApiError;
use super::json_body::parse;
use super::AppState;
use crate::run::{ErrorKind, Limits, Mode, RunResponse};
use crate::run_request::{RequestedLimits, RunRequest};

/// Dify's own limit on a string output is 400,000 characters, which `json.dumps` may escape to
/// about 2.4 MB of stdout: this route carries at least 8 MiB (or the server's maximum).
const STDOUT_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Deserialize)]
pub struct DifyRun {
    language: String,
    code: String,
    /// Never executed: accepted because Dify sends it (non-empty for jinja2).
    #[serde(default)]
    #[allow(dead_code)]
    preload: Option<String>,
    #[serde(default)]
    enable_network: Option<bool>,
}

pub async fn run(State(state): State<AppState>, body: Bytes) -> Response {
    let request: DifyRun = match parse(&body) {
        Ok(request) => request,
        Err(ApiError::BadRequest(message)) => return refusal(&message),
        Err(other) => return other.into_response(),
    };
    let language = match request.language.as_str() {
        "python3" | "python" => "python",
        "nodejs" | "javascript" => "javascript",
        other => {
            return refusal(&format!(
                "unsupported language: {other:?} (use python3 or nodejs)"
            ))
        }
    };
    let max = state.config.limits.max;
    let native = RunRequest {
        language: language.into(),
        code: request.code,
        inputs: None,
        mode: Some(Mode::Script),
        limits: RequestedLimits {
            max_output_bytes: Some(STDOUT_BYTES.min(max.max_output_bytes)),
            ..Default::default()
        },
        allowed_modules: None,
        network: request.enable_network,
        working_dir: None,
        env: None,
    };
    let plan = match native.plan(&state.config.limits) {
        Ok(plan) => plan,
        Err(invalid) => return refusal(&invalid.0),
    };
    match state.supervisor.run(plan.kind, &plan.job).await {
        Ok(response) => Json(success(&response, &plan.job.limits)).into_response(),
        Err(_) => ApiError::Busy.into_response(),
    }
}

/// `{code: 0, message: "success", data: {stdout, stderr, error, exit_code}}`; `error` is empty
/// exactly when the run exited 0 (warnings on stderr must not fail a Dify node).
fn success(response: &RunResponse, limits: &Limits) -> Value {
    let error = if response.exit_code == 0 && response.error.is_none() {
        String::new()
    } else {
        let mut text = format!("process exited with code {}\n", response.exit_code);
        text.push_str(&response.stderr);
        if let Some(error) = &response.error {
            let why = match error.kind {
                ErrorKind::Timeout => format!("timeout: the run exceeded {} ms", limits.timeout_ms),
                _ => error.message.clone(),
            };
            if !response.stderr.contains(&why) {
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&why);
                text.push('\n');
            }
        }
        text
    };
    json!({
        "code": 0,
        "message": "success",
        "data": {
            "stdout": response.stdout,
            "stderr": response.stderr,
            "error": error,
            "exit_code": response.exit_code,
        },
    })
}

/// dify-sandbox's refusal: HTTP 400, `{code: -400, message, data: null}`.
fn refusal(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"code": -400, "message": message, "data": null})),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct DependencyQuery {
    #[serde(default)]
    language: Option<String>,
}

/// `GET /v1/sandbox/dependencies?language=python3` (and `/refresh`): the third-party Python
/// packages this server has installed. None until the data stack is installed.
pub async fn dependencies(Query(query): Query<DependencyQuery>) -> Response {
    match query.language.as_deref() {
        None | Some("python3") | Some("python") => Json(json!({
            "code": 0,
            "message": "success",
            "data": {"dependencies": installed_dependencies()},
        }))
        .into_response(),
        Some(other) => refusal(&format!(
            "unsupported language: {other:?} (dependencies exist for python3 only)"
        )),
    }
}

/// `POST /v1/sandbox/dependencies/update`: reinstalling is not available in this build; the
/// answer says so rather than pretending.
pub async fn update_dependencies() -> Response {
    Json(json!({
        "code": 0,
        "message": "success: nothing to update (this build installs no third-party Python packages)",
        "data": {"dependencies": installed_dependencies()},
    }))
    .into_response()
}

fn installed_dependencies() -> Vec<Value> {
    Vec::new()
}
