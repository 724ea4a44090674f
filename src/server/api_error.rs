//! Answers for requests that were not run: `{"error": {"kind", "message"}}` with a status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug)]
pub enum ApiError {
    /// 400; the message names the field at fault.
    BadRequest(String),
    /// 401.
    Unauthorized,
    /// 413.
    PayloadTooLarge(String),
    /// 408: the body did not arrive in time.
    RequestTimeout(String),
    /// 503 with Retry-After.
    Busy,
}

/// The body of every refusal of sandlot's own API (for the OpenAPI document).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// bad_request, unauthorized, payload_too_large, request_timeout or busy.
    pub kind: String,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, message) = match self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong API key: send `Authorization: Bearer <key>` or `X-Api-Key: <key>`"
                    .to_owned(),
            ),
            Self::PayloadTooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m),
            Self::RequestTimeout(m) => (StatusCode::REQUEST_TIMEOUT, "request_timeout", m),
            Self::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "every worker is busy and the queue is full; retry shortly".to_owned(),
            ),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                kind: kind.to_owned(),
                message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
