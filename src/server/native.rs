//! `POST /v1/run`, sandlot's own API (docs/api.md).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::adapter::{self, Adapter};
use super::api_error::{ApiError, ErrorBody};
use super::event_stream;
use super::json_body::{JsonBody, Native, Refusal};
use super::AppState;
use crate::api::Api;
use crate::run::RunResponse;
use crate::run_request::{Plan, RunRequest};

/// Runs `code` in a fresh, jailed child and answers with its result, output and usage.
///
/// With `Accept: text/event-stream` the answer is a stream of server-sent events instead:
/// `event: stdout` and `event: stderr` with `data: {"text": "..."}` as the code prints (UTF-8
/// text, cut on character boundaries; together exactly the response's `stdout` and `stderr`),
/// then one `event: result` whose data is the response object the plain request would have
/// had, and the stream ends. A `: keep-alive` comment is sent every 15 s while the code is
/// quiet. The limits apply as they do to the plain response (the output stops at
/// `max_output_bytes` and the result says `output_limit`); a client that disconnects ends its
/// run. Refusals (400, 401, 408, 413, 503) are the plain JSON ones.
#[utoipa::path(
    post,
    path = "/v1/run",
    tag = "native",
    request_body = RunRequest,
    params(
        ("accept" = Option<String>, Header,
         description = "`text/event-stream` streams the run as server-sent events"),
    ),
    responses(
        (status = 200, description = "The run's outcome, whatever the code did; with \
                                      `Accept: text/event-stream`, its events (stdout, stderr, \
                                      then result carrying this same object)",
         content(
             (RunResponse = "application/json"),
             (String = "text/event-stream",
              example = "event: stdout\ndata: {\"text\":\"adding\\n\"}\n\nevent: result\ndata: {\"ok\":true,\"result\":{\"sum\":3},\"stdout\":\"adding\\n\",\"stderr\":\"\",\"exit_code\":0,\"execution_time_ms\":0.9,\"images\":[],\"error\":null}\n\n"),
         )),
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
    headers: HeaderMap,
    JsonBody(request, _): JsonBody<RunRequest>,
) -> Response {
    if event_stream::wanted(&headers) {
        return match adapter::plan::<Native>(&state, request) {
            Ok(plan) => event_stream::answer(state, plan).await,
            Err(message) => Native::refuse(StatusCode::BAD_REQUEST, message),
        };
    }
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
