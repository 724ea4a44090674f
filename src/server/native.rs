//! `POST /v1/run`, sandlot's own API (docs/api.md).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::adapter::{self, Adapter};
use super::api_error::{ApiError, ErrorBody};
use super::json_body::{JsonBody, Native};
use super::AppState;
use crate::api::Api;
use crate::run::RunResponse;
use crate::run_request::{Plan, RunRequest};

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
) -> Response {
    adapter::handle::<Native>(&state, request).await
}

impl Adapter for Native {
    type Input = RunRequest;

    fn request(request: RunRequest, _: &AppState) -> Result<RunRequest, String> {
        Ok(RunRequest {
            api: Api::Native,
            ..request
        })
    }

    fn answer(response: RunResponse, _: &Plan) -> Response {
        Json(response).into_response()
    }

    fn busy() -> Response {
        ApiError::Busy.into_response()
    }
}
