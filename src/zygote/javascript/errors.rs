//! A caught JavaScript error as a run error: its kind, and its line and column in the user's
//! own code (frames of the prelude and the bundled modules are dropped).

use rquickjs::CaughtError;

use super::{PRELUDE_FILE, USER_FILE};
use crate::run::{ErrorKind, RunError};

/// Turns a caught JavaScript error into a run error with the user's line and column.
pub fn describe(caught: CaughtError<'_>, while_loading: bool) -> RunError {
    match caught {
        CaughtError::Exception(exception) => {
            let name: String = exception.get("name").unwrap_or_else(|_| "Error".into());
            let message = exception.message().unwrap_or_default();
            let stack = exception.stack().unwrap_or_default();
            let code: Option<String> = exception.get("code").ok();
            // fetch's TypeError("fetch failed") carries why in its cause, as in Node.
            let cause = exception
                .get::<_, rquickjs::Value>("cause")
                .ok()
                .and_then(|c| c.into_exception());
            let cause_code: Option<String> = cause.as_ref().and_then(|c| c.get("code").ok());
            let user_stack: Vec<&str> = stack
                .lines()
                .filter(|l| {
                    !l.contains(PRELUDE_FILE) && !l.contains("eval_script") && !l.contains("<npm:")
                })
                .collect();
            let position = user_stack.iter().find_map(|l| position_in(l));
            let parse_error = while_loading
                && name == "SyntaxError"
                && user_stack
                    .first()
                    .is_some_and(|l| l.trim_start().starts_with(&format!("at {USER_FILE}:")));
            let kind = if name == "InternalError" && message == "interrupted" {
                ErrorKind::Timeout
            } else if name == "InternalError" && message == "out of memory" {
                ErrorKind::MemoryLimit
            } else if code.as_deref() == Some("MODULE_NOT_ALLOWED") {
                ErrorKind::ModuleNotAllowed
            } else if code.as_deref() == Some("NETWORK_DENIED")
                || cause_code.as_deref() == Some("NETWORK_DENIED")
            {
                ErrorKind::NetworkDenied
            } else if parse_error {
                ErrorKind::SyntaxError
            } else {
                ErrorKind::RuntimeError
            };
            let mut head = if message.is_empty() {
                name.clone()
            } else {
                format!("{name}: {message}")
            };
            if let Some(cause) = &cause {
                let cause_name: String = cause.get("name").unwrap_or_else(|_| "Error".into());
                let cause_message = cause.message().unwrap_or_default();
                head = format!("{head} (cause: {cause_name}: {cause_message})");
            }
            let mut traceback = head.clone();
            for l in &user_stack {
                traceback.push('\n');
                traceback.push_str(l);
            }
            traceback.push('\n');
            RunError {
                kind,
                message: if kind == ErrorKind::Timeout {
                    "the run exceeded its time limit".into()
                } else {
                    head
                },
                line: position.map(|p| p.0),
                column: position.map(|p| p.1),
                traceback: Some(traceback),
            }
        }
        CaughtError::Value(value) => {
            let shown = value
                .ctx()
                .json_stringify(value.clone())
                .ok()
                .flatten()
                .and_then(|s| s.to_string().ok())
                .unwrap_or_else(|| "a value".into());
            RunError::new(ErrorKind::RuntimeError, format!("Uncaught {shown}"))
        }
        CaughtError::Error(rquickjs::Error::Allocation) => {
            RunError::new(ErrorKind::MemoryLimit, "out of memory")
        }
        CaughtError::Error(e) => RunError::new(ErrorKind::Internal, e.to_string()),
    }
}

/// `    at main (<code>:3:11)` → (3, 11).
fn position_in(frame: &str) -> Option<(u32, u32)> {
    let start = frame.find(USER_FILE)? + USER_FILE.len() + 1;
    let rest = &frame[start..];
    let mut parts = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty());
    let line = parts.next()?.parse().ok()?;
    let column = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    Some((line, column))
}
