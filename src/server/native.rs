//! `POST /v1/run`, sandlot's own API (docs/api.md).

use axum::extract::State;
use axum::Json;

use super::api_error::ApiError;
use super::json_body::JsonBody;
use super::AppState;
use crate::run::RunResponse;
use crate::run_request::RunRequest;

pub async fn run(
    State(state): State<AppState>,
    JsonBody(request, _): JsonBody<RunRequest>,
) -> Result<Json<RunResponse>, ApiError> {
    run_request(&state, request).await.map(Json)
}

/// Validates a request (400 naming the field) and runs it (503 when the queue is full); the
/// APIs that translate to a [`RunRequest`] share this.
pub async fn run_request(state: &AppState, request: RunRequest) -> Result<RunResponse, ApiError> {
    let plan = request
        .plan(&state.config.limits)
        .map_err(|invalid| ApiError::BadRequest(invalid.0))?;
    state
        .supervisor
        .run(plan.kind, &plan.job)
        .await
        .map_err(|_| ApiError::Busy)
}
