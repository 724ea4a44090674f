//! Every request gets an id: the client's `X-Request-Id` when it is a sane token, else a new
//! one. It names the request's span (so each log line of the request carries it) and comes
//! back in the response's `X-Request-Id`, so a platform can find its call in sandlot's log.

use std::hash::{BuildHasher, Hasher};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

/// Longest id taken from a client; a longer one is replaced, not cut.
const MAX_LEN: usize = 128;

pub async fn tag(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| acceptable(id))
        .map_or_else(fresh, str::to_owned);
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

/// Only what cannot forge a log line or a header: letters, digits and `-_.:`.
fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// 16 hex digits. `RandomState` is seeded from the OS and differs per instance: unique enough
/// to find a request in a log, with no dependency.
fn fresh() -> String {
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_id_is_kept_only_when_it_is_a_plain_token() {
        assert!(acceptable("req-42_a.b:c"));
        assert!(!acceptable(""));
        assert!(!acceptable("two words"));
        assert!(!acceptable("line\nbreak"));
        assert!(!acceptable(&"x".repeat(MAX_LEN + 1)));
    }

    #[test]
    fn fresh_ids_differ() {
        assert_ne!(fresh(), fresh());
        assert_eq!(fresh().len(), 16);
    }
}
