//! The one JSON body extractor of every API. Its refusals are the API's own — 400 naming the
//! field (`limits.timeout_ms: invalid type ...`), 413 past the body limit, 408 for a body that
//! does not arrive in time — in the shape that API's clients read ([`Refusal`]), never axum's
//! plain-text rejections.

use std::marker::PhantomData;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::api_error::ApiError;

/// How long a request's body may take to arrive, from the end of its head (a request
/// extension the router sets; a slow-body client is answered 408 and its connection closed).
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// When the router sets none.
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// How an API tells its clients that their request body was refused.
pub trait Refusal {
    /// `status` is 400, 408 or 413; `message` says what is wrong, naming the field.
    fn refuse(status: StatusCode, message: String) -> Response;
}

/// sandlot's own APIs: `{"error": {"kind", "message"}}`.
pub struct Native;

impl Refusal for Native {
    fn refuse(status: StatusCode, message: String) -> Response {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(message).into_response(),
            StatusCode::REQUEST_TIMEOUT => ApiError::RequestTimeout(message).into_response(),
            _ => ApiError::BadRequest(message).into_response(),
        }
    }
}

pub struct JsonBody<T, R = Native>(pub T, pub PhantomData<R>);

impl<S, T, R> FromRequest<S> for JsonBody<T, R>
where
    S: Send + Sync,
    T: DeserializeOwned,
    R: Refusal,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let timeout = req
            .extensions()
            .get::<BodyTimeout>()
            .map_or(DEFAULT_BODY_TIMEOUT, |t| t.0);
        let read = tokio::time::timeout(timeout, Bytes::from_request(req, state));
        let Ok(read) = read.await else {
            let message = format!(
                "the request body did not arrive within {} s",
                timeout.as_secs_f64()
            );
            let mut refusal = R::refuse(StatusCode::REQUEST_TIMEOUT, message);
            refusal.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            return Err(refusal);
        };
        let bytes = read.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                let message = format!("request body too large: {}", e.body_text());
                R::refuse(StatusCode::PAYLOAD_TOO_LARGE, message)
            } else {
                let message = format!("unreadable request body: {}", e.body_text());
                R::refuse(StatusCode::BAD_REQUEST, message)
            }
        })?;
        parse(&bytes)
            .map(|value| Self(value, PhantomData))
            .map_err(|message| R::refuse(StatusCode::BAD_REQUEST, message))
    }
}

/// Deserialises `bytes`, reporting the path of the field at fault. A body that parses takes the
/// plain deserializer; only a refused one is read again to find the path, which costs an
/// allocation for every key read.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).or_else(|_| parse_naming_the_field(bytes))
}

fn parse_naming_the_field<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || inner.is_syntax() || inner.is_eof() {
            format!("invalid JSON body: {inner}")
        } else {
            format!("{path}: {inner}")
        }
    })?;
    deserializer
        .end()
        .map_err(|e| format!("invalid JSON body: {e}"))?;
    Ok(value)
}
