//! `POST /v1/run` with `Accept: text/event-stream`: the run's answer as server-sent events.
//! `stdout` and `stderr` events carry `{"text": ...}` as the code prints it (cut on UTF-8
//! boundaries), one `result` event carries the response the plain request would have had, and
//! a `: keep-alive` comment goes out every [`HEARTBEAT`] while the code is quiet.
//!
//! The run goes on in a task of its own that sends its events into a bounded channel; the
//! response's body reads them. A client that leaves drops the body, and with it the channel's
//! receiver: the task sees the channel closed and drops the run, which kills its child.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::http::{header, HeaderMap};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::api_error::ApiError;
use super::AppState;
use crate::output_region::Stream;
use crate::run::{ErrorKind, RunError, RunResponse};
use crate::run_request::Plan;
use crate::supervisor::{Busy, RunEvent};

/// How long a stream may stay quiet before a `: keep-alive` comment (proxies close idle
/// connections).
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Testing only: the heartbeat's interval in milliseconds, so tests need not wait 15 s.
const HEARTBEAT_ENV: &str = "SANDLOT_TESTING_SSE_HEARTBEAT_MS";
/// Events a run may have sent that the client has not yet read; past them the run's reader
/// waits (the output itself waits in the run's output file, bounded by its limit).
const EVENTS_BUFFERED: usize = 64;

/// Whether the client asked for server-sent events.
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("text/event-stream")))
}

/// How the run's task ended: `None` when its client left first.
type Outcome = Option<Result<RunResponse, Busy>>;

/// Runs `plan`, answering with its events; a run refused as busy is the usual 503.
pub async fn answer(state: AppState, plan: Plan) -> Response {
    let (events, mut receiver) = mpsc::channel(EVENTS_BUFFERED);
    let run: JoinHandle<Outcome> = tokio::spawn(async move {
        tokio::select! {
            outcome = state.run_followed(&plan, Some(&events)) => Some(outcome),
            // The client left: the run is dropped here, its child killed, the run counted as
            // abandoned.
            () = events.closed() => None,
        }
    });
    // Nothing is answered before the run has a worker, so a full queue is still a 503.
    if !matches!(receiver.recv().await, Some(RunEvent::Admitted)) {
        return match run.await {
            Ok(Some(Err(Busy))) => ApiError::Busy.into_response(),
            outcome => Json(response(outcome)).into_response(),
        };
    }
    let body = stream::unfold(Body::Running(receiver, run), |state| async move {
        let (mut receiver, run) = match state {
            Body::Running(receiver, run) => (receiver, run),
            Body::Ending(mut last) => {
                let event = last.pop_front()?;
                return Some((Ok::<_, Infallible>(event), Body::Ending(last)));
            }
        };
        loop {
            match receiver.recv().await {
                Some(RunEvent::Output { stream, text }) => {
                    return Some((Ok(output(stream, &text)), Body::Running(receiver, run)))
                }
                Some(RunEvent::File(file)) => {
                    return Some((Ok(json_event("file", &file)), Body::Running(receiver, run)))
                }
                Some(RunEvent::Admitted) => continue,
                None => {
                    // The run's figures are collected as it ends: each an `image` event, then
                    // the result.
                    let response = response(run.await);
                    let mut last: VecDeque<Event> = response
                        .images
                        .iter()
                        .map(|image| json_event("image", image))
                        .collect();
                    last.push_back(json_event("result", &response));
                    let first = last.pop_front().expect("the result at least");
                    return Some((Ok(first), Body::Ending(last)));
                }
            }
        }
    });
    let heartbeat = KeepAlive::new().interval(heartbeat()).text("keep-alive");
    (
        // Asks a buffering proxy (nginx) to pass each event on as it comes.
        [("x-accel-buffering", "no")],
        Sse::new(body).keep_alive(heartbeat),
    )
        .into_response()
}

/// Where the event stream is: following the run, or sending its last events.
enum Body {
    Running(mpsc::Receiver<RunEvent>, JoinHandle<Outcome>),
    Ending(VecDeque<Event>),
}

fn json_event(name: &str, data: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event(name).data("{}"))
}

fn output(stream: Stream, text: &str) -> Event {
    #[derive(Serialize)]
    struct Chunk<'a> {
        text: &'a str,
    }
    let name = match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    Event::default()
        .event(name)
        .json_data(Chunk { text })
        .unwrap_or_else(|_| Event::default().event(name).data("{}"))
}

fn response(outcome: Result<Outcome, tokio::task::JoinError>) -> RunResponse {
    match outcome {
        Ok(Some(Ok(response))) => response,
        Ok(Some(Err(Busy))) => internal("every worker is busy"),
        Ok(None) => internal("the run was abandoned"),
        Err(e) => internal(&format!("the run failed: {e}")),
    }
}

fn internal(message: &str) -> RunResponse {
    RunResponse::failed(RunError::new(ErrorKind::Internal, message), 1, 0.0)
}

fn heartbeat() -> Duration {
    std::env::var(HEARTBEAT_ENV)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(HEARTBEAT, Duration::from_millis)
}
