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
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::adapter::{self, Adapter};
use super::api_error::ApiError;
use super::json_body::{JsonBody, Refusal};
use super::AppState;
use crate::api::Api;
use crate::python_packages;
use crate::python_packages::ProgressLog;
use crate::run::{ErrorKind, Language, Limits, Mode, RunResponse};
use crate::run_request::{Plan, RequestedLimits, RunRequest};

/// Dify's own limit on a string output is 400,000 characters, which `json.dumps` may escape to
/// about 2.4 MB of stdout: this route carries at least 8 MiB (or the server's maximum).
const STDOUT_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct DifyRun {
    /// python3 or nodejs.
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
        let body = DifyRefusal {
            code,
            message,
            data: None,
        };
        (status, Json(body)).into_response()
    }
}

/// A code node the way Dify sends it: run as a script, the result printed between markers.
#[utoipa::path(
    post,
    path = "/v1/sandbox/run",
    operation_id = "dify_run",
    tag = "dify",
    request_body = DifyRun,
    responses(
        (status = 200, description = "The run (`data.error` is empty exactly when it exited 0)", body = DifyRunAnswer),
        (status = 400, description = "Invalid request", body = DifyRefusal),
        (status = 401, description = "Missing or wrong API key", body = super::api_error::ErrorBody),
        (status = 503, description = "Every worker is busy and the queue is full", body = super::api_error::ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn run(
    State(state): State<AppState>,
    JsonBody(request, _): JsonBody<DifyRun, Dify>,
) -> Response {
    adapter::handle::<Dify>(&state, request).await
}

impl Adapter for Dify {
    type Input = DifyRun;

    fn request(request: DifyRun, state: &AppState) -> Result<RunRequest, String> {
        let language = match request.language.as_str() {
            "python3" | "python" => Language::Python,
            "nodejs" | "javascript" => Language::Javascript,
            other => {
                return Err(format!(
                    "unsupported language: {other:?} (use python3 or nodejs)"
                ))
            }
        };
        let max = state.config.limits.max;
        Ok(RunRequest {
            mode: Some(Mode::Script),
            limits: RequestedLimits {
                max_output_bytes: Some(STDOUT_BYTES.min(max.max_output_bytes)),
                ..Default::default()
            },
            network: request.enable_network,
            ..RunRequest::new(Api::Dify, language, request.code)
        })
    }

    fn answer(response: RunResponse, plan: &Plan) -> Response {
        Json(answer(&response, &plan.job.limits)).into_response()
    }

    fn busy() -> Response {
        ApiError::Busy.into_response()
    }
}

/// dify-sandbox's answer to a run.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DifyRunAnswer {
    /// 0.
    code: i32,
    /// "success".
    message: String,
    data: DifyRunData,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DifyRunData {
    stdout: String,
    stderr: String,
    /// Empty exactly when the run exited 0; else "process exited with code N" and why.
    error: String,
    exit_code: i32,
}

/// dify-sandbox's refusal (also `code: -500` when an install fails).
#[derive(Serialize, utoipa::ToSchema)]
pub struct DifyRefusal {
    /// Minus the HTTP status.
    code: i32,
    message: String,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
}

/// The installed third-party Python packages.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DifyDependenciesAnswer {
    code: i32,
    message: String,
    data: DifyDependencies,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DifyDependencies {
    dependencies: Vec<DifyDependency>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DifyDependency {
    name: String,
    version: String,
}

/// `error` is empty exactly when the run exited 0 (warnings on stderr must not fail a Dify
/// node).
fn answer(response: &RunResponse, limits: &Limits) -> DifyRunAnswer {
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
    DifyRunAnswer {
        code: 0,
        message: "success".into(),
        data: DifyRunData {
            stdout: response.stdout.clone(),
            stderr: response.stderr.clone(),
            error,
            exit_code: response.exit_code,
        },
    }
}

fn refusal(message: &str) -> Response {
    Dify::refuse(StatusCode::BAD_REQUEST, message.to_owned())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DependencyQuery {
    /// python3 (the default); no other language has dependencies.
    #[serde(default)]
    language: Option<String>,
}

/// `GET /v1/sandbox/dependencies?language=python3` (and `/refresh`): the third-party Python
/// packages this server has installed (none while they are being installed).
#[utoipa::path(
    get,
    path = "/v1/sandbox/dependencies",
    tag = "dify",
    params(DependencyQuery),
    responses(
        (status = 200, description = "The installed packages", body = DifyDependenciesAnswer),
        (status = 400, description = "A language other than python3", body = DifyRefusal),
    ),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn dependencies(
    State(state): State<AppState>,
    Query(query): Query<DependencyQuery>,
) -> Response {
    match query.language.as_deref() {
        None | Some("python3") | Some("python") => Json(listing(&state)).into_response(),
        Some(other) => refusal(&format!(
            "unsupported language: {other:?} (dependencies exist for python3 only)"
        )),
    }
}

/// `GET /v1/sandbox/dependencies/refresh`: the same as `/v1/sandbox/dependencies`.
#[utoipa::path(
    get,
    path = "/v1/sandbox/dependencies/refresh",
    tag = "dify",
    params(DependencyQuery),
    responses(
        (status = 200, description = "The installed packages", body = DifyDependenciesAnswer),
        (status = 400, description = "A language other than python3", body = DifyRefusal),
    ),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn refresh_dependencies(
    state: State<AppState>,
    query: Query<DependencyQuery>,
) -> Response {
    dependencies(state, query).await
}

/// `POST /v1/sandbox/dependencies/update`: installs what is missing now — the data packages,
/// and the operator's requirements file as it is now (`--python-requirements`) — waiting for
/// the install, then lists the packages. A failure (a version conflict: pip's reason) is
/// `code: -500`; the packages installed before keep serving.
#[utoipa::path(
    post,
    path = "/v1/sandbox/dependencies/update",
    tag = "dify",
    responses(
        (status = 200, description = "The installed packages, or `code: -500` and why the install failed",
         body = DifyDependenciesAnswer),
    ),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn update_dependencies(State(state): State<AppState>) -> Response {
    let outcome = match state.supervisor.python_data() {
        Some(python_data) => python_data.update().await,
        None => {
            let config = state.config.clone();
            tokio::task::spawn_blocking(move || {
                python_packages::install_all(
                    &config.data_dir,
                    config.python_requirements.as_deref(),
                    &config.pip,
                    &mut ProgressLog::default(),
                )
                .map(drop)
                .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|installed| installed)
        }
    };
    match outcome {
        Ok(()) => Json(listing(&state)).into_response(),
        Err(why) => Json(DifyRefusal {
            code: -500,
            message: why,
            data: None,
        })
        .into_response(),
    }
}

/// The data packages and the operator's packages this server serves, as installed.
fn listing(state: &AppState) -> DifyDependenciesAnswer {
    let mut installed = python_packages::installed(&state.config.data_dir);
    if let Some(site) = state
        .supervisor
        .python_data()
        .and_then(|d| d.operator_site())
    {
        installed.extend(site.distributions);
    }
    let dependencies = installed
        .into_iter()
        .map(|(name, version)| DifyDependency { name, version })
        .collect();
    DifyDependenciesAnswer {
        code: 0,
        message: "success".into(),
        data: DifyDependencies { dependencies },
    }
}
