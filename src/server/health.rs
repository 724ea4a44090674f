//! Liveness and readiness, open without a key.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::AppState;

/// The process answers.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Every zygote is up; 503 while one starts or restarts. Lists any jail layer the server runs
/// without (`--allow-degraded`).
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let zygotes = state.supervisor.status();
    let ready = zygotes.iter().all(|z| z.ready);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "starting" },
        "zygotes": zygotes,
        "degraded": state.config.degraded,
        "python_packages": state.supervisor.python_data().map(|d| d.status()),
    });
    (status, Json(body))
}
