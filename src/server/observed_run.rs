//! A run as the operator sees it: every API runs its jobs through [`AppState::run`], which
//! counts the run in `/metrics` and writes its one log line (inside the request's span, so the
//! line carries the request id). Nothing of the code, the inputs or the output is logged.

use std::time::Instant;

use super::AppState;
use crate::run::RunResponse;
use crate::run_request::Plan;
use crate::supervisor::{Busy, Follower};

impl AppState {
    pub async fn run(&self, plan: &Plan) -> Result<RunResponse, Busy> {
        self.run_followed(plan, None).await
    }

    /// [`AppState::run`] for a streamed run: `follower` gets its output as it is printed.
    pub async fn run_followed(
        &self,
        plan: &Plan,
        follower: Option<&Follower>,
    ) -> Result<RunResponse, Busy> {
        let language = plan.language.name();
        let started = Instant::now();
        let route = plan.api.name();
        // Dropped with the request when its client leaves mid-run: the run is still counted.
        let mut abandoned = Abandoned {
            state: Some(self),
            language,
            route,
        };
        let outcome = self
            .supervisor
            .run_followed(plan.kind, &plan.job, follower)
            .await;
        abandoned.state = None;
        let seconds = started.elapsed().as_secs_f64();
        match &outcome {
            Ok(response) => {
                let kind_name = response.error.as_ref().map(|e| e.kind.name());
                let outcome = kind_name.unwrap_or("ok");
                let run_seconds = response.execution_time_ms / 1000.0;
                self.metrics
                    .record_run(language, route, outcome, Some(run_seconds));
                tracing::info!(
                    route,
                    language,
                    outcome,
                    exit_code = response.exit_code,
                    duration_ms = (seconds * 1000.0 * 100.0).round() / 100.0,
                    run_ms = response.execution_time_ms,
                    "run"
                );
            }
            Err(Busy) => {
                self.metrics.record_run(language, route, "busy", None);
                tracing::warn!(
                    route,
                    language,
                    outcome = "busy",
                    "run refused: the queue is full"
                );
            }
        }
        outcome
    }
}

/// Counts and logs a run whose client went away before it ended (the run's child is killed
/// with the request).
struct Abandoned<'a> {
    state: Option<&'a AppState>,
    language: &'static str,
    route: &'static str,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some(state) = self.state {
            let (language, route) = (self.language, self.route);
            state.metrics.record_run(language, route, "abandoned", None);
            tracing::info!(
                route,
                language,
                outcome = "abandoned",
                "run abandoned by its client"
            );
        }
    }
}
