//! How a run ended, as the engine carries it to the report: the returned value as JSON, or the
//! error; and the checks on what `main` returned.

use rquickjs::{CatchResultExt, Ctx, Value};
use serde_json::value::RawValue;

use super::errors::describe;
use super::{output, plain_json};
use crate::run::{ErrorKind, RunError};

pub struct Outcome {
    pub result: Option<Box<RawValue>>,
    pub exit_code: i32,
    pub error: Option<RunError>,
}

impl Outcome {
    pub fn ok(result: Option<Box<RawValue>>) -> Self {
        Self {
            result,
            exit_code: 0,
            error: None,
        }
    }

    pub fn exited(code: i32) -> Self {
        Self {
            result: None,
            exit_code: code,
            error: None,
        }
    }

    pub fn failed(error: RunError) -> Self {
        Self {
            result: None,
            exit_code: 1,
            error: Some(error),
        }
    }
}

impl Outcome {
    /// An unhandled rejection reads "Uncaught (in promise)".
    pub fn in_promise(mut self) -> Self {
        if let Some(error) = self.error.as_mut() {
            error.message = format!("Uncaught (in promise) {}", error.message);
        }
        self
    }
}

/// The JSON of what `main` returned: an object, or with `any_value` any JSON value
/// (`undefined` and functions as `null`).
pub fn to_result<'js>(ctx: &Ctx<'js>, returned: Value<'js>, any_value: bool) -> Outcome {
    if !any_value && (!returned.is_object() || returned.is_array() || returned.is_function()) {
        return Outcome::failed(RunError::new(
            ErrorKind::InvalidReturn,
            format!("main() must return an object, not {}", type_name(&returned)),
        ));
    }
    if let Some(json) = plain_json::to_json(ctx, &returned, output::output_limit()) {
        if let Ok(json) = RawValue::from_string(json) {
            return Outcome::ok(Some(json));
        }
    }
    match ctx.json_stringify(returned).catch(ctx) {
        Ok(Some(text)) => match text.to_string().map(RawValue::from_string) {
            Ok(Ok(json)) => Outcome::ok(Some(json)),
            _ => Outcome::failed(RunError::new(
                ErrorKind::InvalidReturn,
                "the returned value holds a string that is not valid Unicode",
            )),
        },
        Ok(None) if any_value => Outcome::ok(RawValue::from_string("null".into()).ok()),
        Ok(None) => Outcome::failed(RunError::new(
            ErrorKind::InvalidReturn,
            "main() returned a value JSON cannot carry",
        )),
        Err(caught) => {
            let mut error = describe(caught, false);
            if error.kind == ErrorKind::RuntimeError {
                error.kind = ErrorKind::InvalidReturn;
                error.message = format!(
                    "the returned value cannot be converted to JSON: {}",
                    error.message
                );
            }
            Outcome::failed(error)
        }
    }
}

pub fn interrupted() -> RunError {
    RunError::new(ErrorKind::Timeout, "the run exceeded its time limit")
}

fn type_name(value: &Value<'_>) -> &'static str {
    if value.is_null() {
        "null"
    } else if value.is_undefined() {
        "undefined"
    } else if value.is_array() {
        "an array"
    } else if value.is_function() {
        "a function"
    } else if value.is_string() {
        "a string"
    } else if value.is_number() {
        "a number"
    } else if value.is_bool() {
        "a boolean"
    } else {
        "this value"
    }
}
