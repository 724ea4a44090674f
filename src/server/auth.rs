//! API-key check for every route but the health routes.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::api_error::ApiError;

/// The configured keys; empty means auth is off.
#[derive(Clone)]
pub struct ApiKeys(pub Arc<Vec<String>>);

pub async fn require_key(State(keys): State<ApiKeys>, request: Request, next: Next) -> Response {
    if keys.0.is_empty() {
        return next.run(request).await;
    }
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").map(str::trim));
    let api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let presented = [bearer, api_key];
    let accepted = presented.iter().flatten().any(|given| {
        keys.0
            .iter()
            .any(|key| constant_time_eq(key.as_bytes(), given.as_bytes()))
    });
    if accepted {
        next.run(request).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// Compares without stopping at the first difference (`subtle`, which keeps the compiler from
/// turning it back into an early exit), so timing tells nothing of the key but its length.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(super::constant_time_eq(b"secret", b"secret"));
        assert!(!super::constant_time_eq(b"secret", b"secreT"));
        assert!(!super::constant_time_eq(b"secret", b"secret2"));
    }
}
