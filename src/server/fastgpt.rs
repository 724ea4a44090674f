//! fastgpt-sandbox's API (FastGPT 4.14.8): `POST /sandbox/js`, `POST /sandbox/python`,
//! `GET /sandbox/modules`. `{code, variables}` in; `{success: true, data: {codeReturn, log}}`
//! or `{success: false, message}` out. The calling convention is FastGPT's
//! ([`Convention::Fastgpt`]).
//!
//! Differences from fastgpt-sandbox, on purpose: `import` of a whitelisted module works in
//! JavaScript (FastGPT refuses every `import(`); anything else is refused with the same
//! "not allowed" message `require` gives.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::adapter::{self, Adapter};
use super::json_body::{JsonBody, Refusal};
use super::AppState;
use crate::api::Api;
use crate::run::{ErrorKind, Language, Mode, RunError, RunResponse};
use crate::run_request::{Plan, RequestedLimits, RunRequest};
use crate::whitelist;

/// FastGPT caps the log it returns at 1 MB.
const LOG_BYTES: usize = 1024 * 1024;

/// The globals a FastGPT JavaScript run has beyond the language's own.
const BUILTIN_GLOBALS: &[&str] = &[
    "SystemHelper.httpRequest",
    "httpRequest",
    "delay",
    "countToken",
    "strToBase64",
    "createHmac",
    "variables",
    "console",
    "require",
    "Buffer",
    "URL",
    "URLSearchParams",
    "TextEncoder",
    "TextDecoder",
    "atob",
    "btoa",
    "setTimeout",
    "clearTimeout",
    "setInterval",
    "clearInterval",
    "setImmediate",
    "structuredClone",
    "crypto",
    "process",
];

#[derive(Deserialize, utoipa::ToSchema)]
pub struct FastgptRun {
    /// The code: `function main(variables) {...}` or `def main(...)`.
    #[serde(default)]
    #[schema(value_type = String)]
    code: Value,
    /// The arguments of `main`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    variables: Option<Box<RawValue>>,
}

/// fastgpt-sandbox's answer: `success` with `data`, or a failure's `message` (with `data.log`
/// when the run printed before it failed).
#[derive(Serialize, utoipa::ToSchema)]
pub struct FastgptAnswer {
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<FastgptData>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FastgptData {
    /// What `main` returned.
    #[serde(rename = "codeReturn")]
    #[schema(value_type = Option<serde_json::Value>)]
    code_return: Option<Box<RawValue>>,
    /// What the run printed, cut at 1 MB.
    log: String,
}

impl FastgptAnswer {
    fn failure(message: String) -> Self {
        Self {
            success: false,
            message: Some(message),
            data: None,
        }
    }
}

/// fastgpt-sandbox's refusal: `{success: false, message: "Invalid request: ..."}`.
pub struct Fastgpt;

impl Refusal for Fastgpt {
    fn refuse(status: StatusCode, message: String) -> Response {
        let message = format!("Invalid request: {message}");
        (status, Json(FastgptAnswer::failure(message))).into_response()
    }
}

#[utoipa::path(
    post,
    path = "/sandbox/js",
    tag = "fastgpt",
    request_body = FastgptRun,
    responses(
        (status = 200, description = "The run; `success` is false when it failed", body = FastgptAnswer),
        (status = 400, description = "Invalid request", body = FastgptAnswer),
        (status = 401, description = "Missing or wrong API key", body = super::api_error::ErrorBody),
        (status = 503, description = "The sandbox is busy", body = FastgptAnswer),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn javascript(
    State(state): State<AppState>,
    JsonBody(request, _): JsonBody<FastgptRun, Fastgpt>,
) -> Response {
    adapter::handle::<Fastgpt>(&state, (Language::Javascript, request)).await
}

#[utoipa::path(
    post,
    path = "/sandbox/python",
    tag = "fastgpt",
    request_body = FastgptRun,
    responses(
        (status = 200, description = "The run; `success` is false when it failed", body = FastgptAnswer),
        (status = 400, description = "Invalid request", body = FastgptAnswer),
        (status = 401, description = "Missing or wrong API key", body = super::api_error::ErrorBody),
        (status = 503, description = "The sandbox is busy", body = FastgptAnswer),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn python(
    State(state): State<AppState>,
    JsonBody(request, _): JsonBody<FastgptRun, Fastgpt>,
) -> Response {
    adapter::handle::<Fastgpt>(&state, (Language::Python, request)).await
}

impl Adapter for Fastgpt {
    /// The route's language, and the body.
    type Input = (Language, FastgptRun);

    fn request((language, request): Self::Input, state: &AppState) -> Result<RunRequest, String> {
        let code = match request.code {
            Value::String(code) if !code.trim().is_empty() => code,
            Value::String(_) | Value::Null => {
                return Err("code is required and must not be empty".into())
            }
            _ => return Err("code must be a string".into()),
        };
        let variables = match request.variables {
            None => None,
            Some(raw) if raw.get() == "null" => None,
            Some(raw) if raw.get().trim_start().starts_with('{') => Some(raw),
            Some(_) => return Err("variables must be an object".into()),
        };
        let max = state.config.limits.max;
        Ok(RunRequest {
            inputs: variables,
            mode: Some(Mode::Main),
            // The log is cut at 1 MB in the answer, not by failing the run.
            limits: RequestedLimits {
                max_output_bytes: Some(max.max_output_bytes),
                ..Default::default()
            },
            ..RunRequest::new(Api::Fastgpt, language, code)
        })
    }

    fn answer(response: RunResponse, plan: &Plan) -> Response {
        let timeout_ms = plan.job.limits.timeout_ms;
        Json(answer(response, plan.language, timeout_ms)).into_response()
    }

    fn busy() -> Response {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "1")],
            Json(FastgptAnswer::failure(
                "the sandbox is busy; retry shortly".into(),
            )),
        )
            .into_response()
    }
}

/// `{success: true, data: {codeReturn, log}}`, or `{success: false, message}` — plus, if the
/// run printed anything before it failed, that log as `data.log` (FastGPT leaves `data` out of
/// a failure; its clients read `data` only on success, and a user debugging a timeout wants
/// the log).
fn answer(response: RunResponse, language: Language, timeout_ms: u64) -> FastgptAnswer {
    let error = response.error.clone();
    let mut log = response.stdout;
    if log.ends_with('\n') {
        log.pop();
    }
    if log.len() > LOG_BYTES {
        let mut cut = LOG_BYTES;
        while !log.is_char_boundary(cut) {
            cut -= 1;
        }
        log.truncate(cut);
    }
    if let Some(error) = &error {
        let message = message(error, language, timeout_ms);
        let data = (!log.is_empty()).then_some(FastgptData {
            code_return: None,
            log,
        });
        return FastgptAnswer {
            data,
            ..FastgptAnswer::failure(message)
        };
    }
    // Passed through as the child wrote it: parsing it into a map would cost a 1 MB result
    // ~12 ms and sort its keys, where FastGPT keeps the order `main` gave them.
    FastgptAnswer {
        success: true,
        message: None,
        data: Some(FastgptData {
            code_return: response.result,
            log,
        }),
    }
}

/// FastGPT's wording: JavaScript gives `err.message` (no "Error: " in front); a timeout says it
/// timed out.
fn message(error: &RunError, language: Language, timeout_ms: u64) -> String {
    match error.kind {
        ErrorKind::Timeout => format!("Script execution timed out after {timeout_ms} ms"),
        _ if language == Language::Javascript => strip_error_name(&error.message).to_owned(),
        _ => error.message.clone(),
    }
}

/// "TypeError: x is undefined" → "x is undefined".
fn strip_error_name(message: &str) -> &str {
    match message.split_once(": ") {
        Some((name, rest)) if name.ends_with("Error") && !name.contains(' ') => rest,
        _ => message,
    }
}

/// `GET /sandbox/modules`: what `require`/`import` accept in each language (Python: FastGPT's
/// list, then the modules of the operator's packages), and the globals.
#[utoipa::path(
    get,
    path = "/sandbox/modules",
    tag = "fastgpt",
    responses((status = 200, description = "The modules each language may import, and the globals",
               body = FastgptModules)),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn modules(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "success": true,
        "data": {
            "js": whitelist::javascript(),
            "python": whitelist::python_fastgpt_allowed(&state.operator_modules()),
            "builtinGlobals": BUILTIN_GLOBALS,
        },
    }))
}

/// The answer of `/sandbox/modules` (for the OpenAPI document).
#[derive(Serialize, utoipa::ToSchema)]
pub struct FastgptModules {
    success: bool,
    data: FastgptModuleLists,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FastgptModuleLists {
    js: Vec<String>,
    python: Vec<String>,
    #[serde(rename = "builtinGlobals")]
    builtin_globals: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_stripped_like_err_message() {
        assert_eq!(
            strip_error_name("TypeError: x is undefined"),
            "x is undefined"
        );
        assert_eq!(
            strip_error_name("ModuleNotAllowedError: Module 'fs' is not allowed"),
            "Module 'fs' is not allowed"
        );
        assert_eq!(strip_error_name("Uncaught 42"), "Uncaught 42");
        assert_eq!(strip_error_name("bad thing: here"), "bad thing: here");
    }
}
