//! `POST /v1/run`, sandlot's own API (DESIGN §2).

use axum::extract::State;
use axum::Json;

use super::api_error::ApiError;
use super::json_body::JsonBody;
use super::AppState;
use crate::run::RunResponse;
use crate::run_request::RunRequest;

pub async fn run(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<RunRequest>,
) -> Result<Json<RunResponse>, ApiError> {
    let plan = request
        .plan(&state.config.limits)
        .map_err(|invalid| ApiError::BadRequest(invalid.0))?;
    let response = state
        .supervisor
        .run(plan.kind, &plan.job)
        .await
        .map_err(|_| ApiError::Busy)?;
    Ok(Json(response))
}
