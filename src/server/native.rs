//! `POST /v1/run`, sandlot's own API (docs/api.md).

use axum::extract::State;
use axum::Json;

use super::api_error::{ApiError, ErrorBody};
use super::json_body::JsonBody;
use super::observed_run::Api;
use super::AppState;
use crate::run::RunResponse;
use crate::run_request::RunRequest;

/// Runs `code` in a fresh, jailed child and answers with its result, output and usage.
#[utoipa::path(
    post,
    path = "/v1/run",
    tag = "native",
    request_body = RunRequest,
    responses(
        (status = 200, description = "The run's outcome, whatever the code did", body = RunResponse),
        (status = 400, description = "A field is invalid; the message names it", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time", body = ErrorBody),
        (status = 413, description = "The body is larger than --max-body-bytes", body = ErrorBody),
        (status = 503, description = "Every worker is busy and the queue is full", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn run(
    State(state): State<AppState>,
    JsonBody(request, _): JsonBody<RunRequest>,
) -> Result<Json<RunResponse>, ApiError> {
    run_request(&state, Api::Native, request).await.map(Json)
}

/// Validates a request (400 naming the field) and runs it (503 when the queue is full); the
/// APIs that translate to a [`RunRequest`] share this.
pub async fn run_request(
    state: &AppState,
    api: Api,
    request: RunRequest,
) -> Result<RunResponse, ApiError> {
    let plan = request
        .plan(&state.config.limits)
        .map_err(|invalid| ApiError::BadRequest(invalid.0))?;
    state
        .run(api, plan.kind, &plan.job)
        .await
        .map_err(|_| ApiError::Busy)
}
