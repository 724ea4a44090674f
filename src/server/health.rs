//! Liveness and readiness, open without a key.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::AppState;

/// The process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process answers", body = Object,
               example = json!({"status": "ok"}))),
)]
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `/healthz` under the name dify-sandbox and FastGPT's sandbox answer to.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses((status = 200, description = "The process answers", body = Object,
               example = json!({"status": "ok"}))),
)]
pub async fn health() -> impl IntoResponse {
    healthz().await
}

/// Every zygote is up; 503 while one starts or restarts. Lists any jail layer the server runs
/// without (`--allow-degraded`), the state of the Python data packages, and the
/// javascript-modules and javascript-intl zygotes (each null until a run first names `require`
/// or Intl; readiness does not wait for them).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Every zygote is up: `status` is `ready`, with `zygotes`, \
         `degraded`, `python_packages`, `javascript_modules` and `javascript_intl`", body = Object),
        (status = 503, description = "A zygote is starting or restarting: `status` is \
         `starting`", body = Object),
    ),
)]
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
        "degraded": *state.degraded,
        "python_packages": state.supervisor.python_data().map(|d| d.status()),
        "javascript_modules": state.supervisor.javascript_modules().and_then(|m| m.status()),
        "javascript_intl": state.supervisor.javascript_intl().and_then(|i| i.status()),
    });
    (status, Json(body))
}
