//! One handler for every API. Each API is an [`Adapter`]: how its body becomes a
//! [`RunRequest`], and how a [`RunResponse`] (or a refusal, or "busy") becomes its answer.
//! [`handle`] does the rest the same way for all of them: validate and plan, run (counted
//! and logged by [`AppState::run`]), answer. Adding an API is one adapter.

use axum::http::StatusCode;
use axum::response::Response;

use super::json_body::Refusal;
use super::AppState;
use crate::run::RunResponse;
use crate::run_request::{Plan, RunRequest};

pub trait Adapter: Refusal {
    /// What a route of this API hands over: its body, with what the route itself says (the
    /// language of `/sandbox/js`, say).
    type Input;

    /// The request as a run, or why it is refused (a 400 in the API's shape).
    fn request(input: Self::Input, state: &AppState) -> Result<RunRequest, String>;

    /// A run's outcome, in the API's shape.
    fn answer(response: RunResponse, plan: &Plan) -> Response;

    /// Every worker is busy and the queue is full (503).
    fn busy() -> Response;
}

/// Plans, runs and answers one request of API `A`.
pub async fn handle<A: Adapter>(state: &AppState, input: A::Input) -> Response {
    let plan = match plan::<A>(state, input) {
        Ok(plan) => plan,
        Err(message) => return A::refuse(StatusCode::BAD_REQUEST, message),
    };
    match state.run(&plan).await {
        Ok(response) => A::answer(response, &plan),
        Err(_busy) => A::busy(),
    }
}

/// A request of API `A` as a validated plan, or why it is refused (a 400).
pub fn plan<A: Adapter>(state: &AppState, input: A::Input) -> Result<Plan, String> {
    let request = A::request(input, state)?;
    let operator = state.operator_modules();
    request
        .plan(&state.config.limits, &operator)
        .map_err(|invalid| invalid.0)
}
