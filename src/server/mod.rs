//! The HTTP server: a router assembled from one module per API family, over shared state.

mod adapter;
mod api_error;
mod auth;
mod connections;
mod dify;
mod event_stream;
mod fastgpt;
mod health;
mod json_body;
mod metrics;
mod native;
mod observed_run;
mod openapi;
mod request_id;
mod sandbox_module;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Extension, Router};
use connections::ConnectionLimits;
use json_body::BodyTimeout;

use crate::broker::Broker;
use crate::config::Config;
use crate::jail::probe::LayerStatus;
use crate::jail::settings::JailSettings;
use crate::metrics::Metrics;
use crate::protocol::ZygoteKind;
use crate::supervisor::{Packages, Supervisor};
use crate::systemd_notify;

#[derive(Clone)]
pub struct AppState {
    pub supervisor: Arc<Supervisor>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// Jail layers this machine lacks and the operator accepted (`--allow-degraded`); `/readyz`
    /// lists them.
    pub degraded: Arc<Vec<LayerStatus>>,
}

impl AppState {
    /// The modules of the operator's packages this server serves (`--python-requirements`).
    pub fn operator_modules(&self) -> Arc<Vec<String>> {
        self.supervisor
            .python_data()
            .map(|data| data.operator_modules())
            .unwrap_or_default()
    }
}

pub fn router(state: AppState) -> Router {
    let keys = auth::ApiKeys(Arc::new(state.config.api_keys.clone()));
    let protected = Router::new()
        .route("/v1/run", post(native::run))
        .route("/v1/sandbox/run", post(dify::run))
        .route("/v1/sandbox/dependencies", get(dify::dependencies))
        .route(
            "/v1/sandbox/dependencies/refresh",
            get(dify::refresh_dependencies),
        )
        .route(
            "/v1/sandbox/dependencies/update",
            post(dify::update_dependencies),
        )
        .route("/sandbox/js", post(fastgpt::javascript))
        .route("/sandbox/python", post(fastgpt::python))
        .route("/sandbox/modules", get(fastgpt::modules))
        .route("/v1/sandbox/execute_js", post(sandbox_module::execute_js))
        .route(
            "/v1/sandbox/execute_python",
            post(sandbox_module::execute_python),
        )
        .route(
            "/v1/sandbox/execute_shell",
            post(sandbox_module::execute_shell),
        )
        .layer(axum::middleware::from_fn_with_state(
            keys,
            auth::require_key,
        ));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/health", get(health::health))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(openapi::document))
        .merge(protected)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(Extension(BodyTimeout(state.config.body_timeout)))
        .layer(axum::middleware::from_fn(request_id::tag))
        .with_state(state)
}

/// Why the server stopped or never started.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {0} without an API key: set --api-key (or SANDLOT_API_KEY), \
         or pass --insecure-no-auth to accept unauthenticated requests from the network"
    )]
    NoKeyOnNetwork(SocketAddr),
    #[error("binding {address} failed: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Binds, starts the zygotes under `jail` (the settings as probed, skipping the `degraded`
/// layers), serves until SIGINT or SIGTERM.
pub async fn serve(
    config: Config,
    jail: JailSettings,
    degraded: Vec<LayerStatus>,
) -> Result<(), ServeError> {
    if !config.listen.ip().is_loopback() && config.api_keys.is_empty() && !config.insecure_no_auth {
        return Err(ServeError::NoKeyOnNetwork(config.listen));
    }
    let bind_failed = |source| ServeError::Bind {
        address: config.listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(bind_failed)?;
    let address = listener.local_addr().map_err(bind_failed)?;
    let supervisor = Supervisor::start(
        &[
            ZygoteKind::Python,
            ZygoteKind::Javascript,
            ZygoteKind::Shell,
        ],
        &jail,
        Broker::new(config.http.clone()),
        Some(Packages {
            data_dir: config.data_dir.clone(),
            first_retry: config.deps_retry,
            requirements: config.python_requirements.clone(),
            sources: config.pip.clone(),
        }),
        true,
        config.workers,
        config.max_children,
        config.queue,
    );
    let grace = config.shutdown_grace;
    let state = AppState {
        supervisor: supervisor.clone(),
        config: Arc::new(config),
        metrics: Arc::new(Metrics::new(supervisor.clone())),
        degraded: Arc::new(degraded),
    };
    tokio::spawn(announce_ready(supervisor.clone(), address));
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            supervisor.trim_pools();
        }
    });
    let limits = ConnectionLimits {
        max_connections: state.config.max_connections,
        header_timeout: state.config.header_timeout,
    };
    connections::serve(
        listener,
        router(state),
        limits,
        shutdown_signal(grace),
        grace,
    )
    .await
    .map_err(ServeError::Serve)?;
    tracing::info!("stopped");
    Ok(())
}

/// The one line that says requests will be taken now; `/readyz` turns 200 at the same moment.
async fn announce_ready(supervisor: Arc<Supervisor>, address: SocketAddr) {
    loop {
        if supervisor.wait_ready(Duration::from_secs(60)).await {
            tracing::info!(%address, version = env!("CARGO_PKG_VERSION"), "ready");
            println!("sandlot: ready on http://{address}");
            systemd_notify::notify("READY=1");
            return;
        }
        tracing::warn!(zygotes = ?supervisor.status(), "still waiting for the zygotes");
    }
}

/// SIGTERM or SIGINT: from here no connection is accepted, and the runs in flight get `grace`
/// to finish before they are killed.
async fn shutdown_signal(grace: Duration) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let signal = tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    systemd_notify::notify("STOPPING=1");
    tracing::info!(
        signal,
        grace_ms = grace.as_millis() as u64,
        "shutting down: no new connections; runs in flight may finish"
    );
}
