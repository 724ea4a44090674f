//! dify-sandbox's API: `POST /v1/sandbox/run` and the dependencies routes. Dify runs every code
//! node as a script (its templates call `main` themselves and print the result between
//! `<<RESULT>>` markers) and reads only `code`, `message`, `data.stdout` and `data.error`.
//!
//! Differences from dify-sandbox, on purpose: `preload` is accepted and never executed; an
//! uncaught Python exception exits 1 (dify-sandbox: 255) — `data.error` still begins with
//! "process exited with code N" and carries the traceback.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api_error::ApiError;
use super::json_body::{JsonBody, Refusal};
use super::AppState;
use crate::python_packages;
use crate::run::{ErrorKind, Limits, Mode, RunResponse};
use crate::run_request::{RequestedLimits, RunRequest};
use crate::whitelist::Route;

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

/// dify-sandbox's refusal: HTTP 400 (413 for a body too large), `{code: -400, message, data:
/// null}`.
pub struct Dify;

impl Refusal for Dify {
    fn refuse(status: StatusCode, message: String) -> Response {
        let code = -i32::from(status.as_u16());
        (
            status,
            Json(json!({"code": code, "message": message, "data": null})),
        )
            .into_response()
    }
}

pub async fn run(
    State(state): State<AppState>,
    JsonBody(request, _): JsonBody<DifyRun, Dify>,
) -> Response {
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
        mode: Some(Mode::Script),
        limits: RequestedLimits {
            max_output_bytes: Some(STDOUT_BYTES.min(max.max_output_bytes)),
            ..Default::default()
        },
        network: request.enable_network,
        route: Route::Dify,
        ..RunRequest::new(language, request.code)
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

fn refusal(message: &str) -> Response {
    Dify::refuse(StatusCode::BAD_REQUEST, message.to_owned())
}

#[derive(Deserialize)]
pub struct DependencyQuery {
    #[serde(default)]
    language: Option<String>,
}

/// `GET /v1/sandbox/dependencies?language=python3` (and `/refresh`): the third-party Python
/// packages this server has installed (none while they are being installed).
pub async fn dependencies(
    State(state): State<AppState>,
    Query(query): Query<DependencyQuery>,
) -> Response {
    match query.language.as_deref() {
        None | Some("python3") | Some("python") => Json(json!({
            "code": 0,
            "message": "success",
            "data": {"dependencies": installed_dependencies(&state.config.data_dir)},
        }))
        .into_response(),
        Some(other) => refusal(&format!(
            "unsupported language: {other:?} (dependencies exist for python3 only)"
        )),
    }
}

/// `POST /v1/sandbox/dependencies/update`: installs `whitelist/python-requirements.txt` if it
/// is not installed yet (waiting for an install already under way), then lists the packages.
pub async fn update_dependencies(State(state): State<AppState>) -> Response {
    let data_dir = state.config.data_dir.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        python_packages::install(&data_dir, &mut std::io::stderr())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|installed| installed.map_err(|e| e.to_string()));
    if let Some(python_data) = state.supervisor.python_data() {
        python_data.retry_now(); // installed now, or worth another try at once
    }
    match outcome {
        Ok(()) => Json(json!({
            "code": 0,
            "message": "success",
            "data": {"dependencies": installed_dependencies(&state.config.data_dir)},
        }))
        .into_response(),
        Err(why) => Json(json!({"code": -500, "message": why, "data": null})).into_response(),
    }
}

fn installed_dependencies(data_dir: &std::path::Path) -> Vec<Value> {
    python_packages::installed(data_dir)
        .into_iter()
        .map(|(name, version)| json!({"name": name, "version": version}))
        .collect()
}
