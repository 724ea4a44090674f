//! `GET /metrics`: the Prometheus scrape, open without a key like `/healthz`. It holds counts
//! and pool sizes, nothing about any run's content.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::AppState;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "The server's metrics in the OpenMetrics text format",
               content_type = "application/openmetrics-text", body = String)),
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(CONTENT_TYPE, OPENMETRICS)], state.metrics.render())
}
