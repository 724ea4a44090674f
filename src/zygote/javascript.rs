//! The JavaScript zygote: one QuickJS runtime and context (rquickjs), with the prelude of
//! `stdlib-shims/javascript/` evaluated once. A child inherits them by fork and uses them once.

use std::cell::RefCell;
use std::time::Instant;

use rquickjs::context::EvalOptions;
use rquickjs::{CatchResultExt, CaughtError, Context, Ctx, Function, Runtime, Value};
use serde_json::value::RawValue;

use super::{child, Engine};
use crate::protocol::{ChildReport, Job};
use crate::run::{ErrorKind, Mode, RunError, TIMEOUT_EXIT_CODE};
use crate::whitelist;

const PRELUDE: &str = include_str!("../../stdlib-shims/javascript/prelude.js");
const PRELUDE_FILE: &str = "<sandlot-prelude>";
const USER_FILE: &str = "<code>";

pub struct JavascriptEngine {
    runtime: Runtime,
    context: Context,
}

/// stdout and stderr of the run in progress; `None` in the zygote.
struct Output {
    stdout: String,
    stderr: String,
    limit: usize,
    started: Instant,
}

thread_local! {
    static OUTPUT: RefCell<Option<Output>> = const { RefCell::new(None) };
}

impl Engine for JavascriptEngine {
    fn prepare() -> Result<Self, String> {
        let runtime = Runtime::new().map_err(|e| format!("creating the QuickJS runtime: {e}"))?;
        let context =
            Context::full(&runtime).map_err(|e| format!("creating the QuickJS context: {e}"))?;
        context
            .with(|ctx| -> rquickjs::Result<()> {
                let mut options = EvalOptions::default();
                options.filename = Some(PRELUDE_FILE.into());
                let install: Function = ctx.eval_with_options(PRELUDE, options)?;
                let write = Function::new(ctx.clone(), write_output)?;
                install.call::<_, ()>((write, whitelist::javascript()))
            })
            .map_err(|e| format!("installing the JavaScript prelude: {e}"))?;
        runtime.run_gc();
        Ok(Self { runtime, context })
    }

    fn run(&mut self, job: Job) -> ! {
        let limits = job.limits;
        let started = Instant::now();
        OUTPUT.with(|o| {
            *o.borrow_mut() = Some(Output {
                stdout: String::new(),
                stderr: String::new(),
                limit: usize::try_from(limits.max_output_bytes).unwrap_or(usize::MAX),
                started,
            })
        });
        let deadline = started + std::time::Duration::from_millis(limits.timeout_ms);
        self.runtime
            .set_interrupt_handler(Some(Box::new(move || Instant::now() >= deadline)));
        let in_use = usize::try_from(self.runtime.memory_usage().malloc_size).unwrap_or(0);
        let budget =
            usize::try_from(limits.memory_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        self.runtime.set_memory_limit(in_use.saturating_add(budget));

        let outcome = self.context.with(|ctx| execute(&ctx, &job, deadline));
        let outcome = match outcome {
            Outcome {
                result: Some(json), ..
            } if json.get().len() > output_limit() => Outcome::failed(RunError::new(
                ErrorKind::OutputLimit,
                format!(
                    "the returned value exceeds the limit of {} bytes",
                    limits.max_output_bytes
                ),
            )),
            other => other,
        };
        let mut outcome = outcome;
        if let Some(error) = outcome.error.as_mut() {
            match error.kind {
                ErrorKind::Timeout => outcome.exit_code = TIMEOUT_EXIT_CODE,
                ErrorKind::MemoryLimit => {
                    error.message = format!(
                        "memory limit exceeded: the run may use {} MB ({})",
                        limits.memory_mb, error.message
                    )
                }
                _ => {}
            }
            if job.mode == Mode::Script {
                if let Some(traceback) = &error.traceback {
                    let text = traceback.clone();
                    push_output(2, &text);
                }
            }
        }
        report(outcome.result, outcome.exit_code, outcome.error)
    }
}

struct Outcome {
    result: Option<Box<RawValue>>,
    exit_code: i32,
    error: Option<RunError>,
}

impl Outcome {
    fn ok(result: Option<Box<RawValue>>) -> Self {
        Self {
            result,
            exit_code: 0,
            error: None,
        }
    }

    fn failed(error: RunError) -> Self {
        Self {
            result: None,
            exit_code: 1,
            error: Some(error),
        }
    }
}

fn execute<'js>(ctx: &Ctx<'js>, job: &Job, deadline: Instant) -> Outcome {
    let mut options = EvalOptions::default();
    options.global = true;
    options.strict = false; // Dify's template relies on sloppy mode
    options.backtrace_barrier = true;
    options.promise = false;
    options.filename = Some(USER_FILE.into());
    let inputs = match ctx.json_parse(job.inputs.get()) {
        Ok(value) => value,
        Err(e) => return Outcome::failed(RunError::new(ErrorKind::Internal, e.to_string())),
    };
    if let Err(caught) = ctx
        .eval_with_options::<Value, _>(job.code.as_str(), options)
        .catch(ctx)
    {
        return Outcome::failed(describe(caught, true));
    }
    if job.mode == Mode::Script {
        drain_jobs(ctx);
        if Instant::now() >= deadline {
            return Outcome::failed(interrupted());
        }
        return Outcome::ok(None);
    }
    let main: Value = match ctx.eval("typeof main === 'function' ? main : undefined") {
        Ok(value) => value,
        Err(e) => return Outcome::failed(RunError::new(ErrorKind::Internal, e.to_string())),
    };
    let Some(main) = main.as_function() else {
        return Outcome::failed(RunError::new(
            ErrorKind::InvalidReturn,
            "no main function: define `function main(inputs)` returning an object",
        ));
    };
    let returned = match main.call::<_, Value>((inputs,)).catch(ctx) {
        Ok(value) => value,
        Err(caught) => return Outcome::failed(describe(caught, false)),
    };
    let returned = match returned.as_promise() {
        Some(promise) => match promise.finish::<Value>().catch(ctx) {
            Ok(value) => value,
            // A promise job stopped by the interrupt handler leaves nothing to catch: the
            // queue just runs dry.
            Err(CaughtError::Error(rquickjs::Error::WouldBlock)) if Instant::now() >= deadline => {
                return Outcome::failed(interrupted())
            }
            Err(CaughtError::Error(rquickjs::Error::WouldBlock)) => {
                return Outcome::failed(RunError::new(
                    ErrorKind::RuntimeError,
                    "main() returned a promise that never settled",
                ))
            }
            Err(caught) => return Outcome::failed(describe(caught, false)),
        },
        None => returned,
    };
    if !returned.is_object() || returned.is_array() || returned.is_function() {
        return Outcome::failed(RunError::new(
            ErrorKind::InvalidReturn,
            format!("main() must return an object, not {}", type_name(&returned)),
        ));
    }
    match ctx.json_stringify(returned).catch(ctx) {
        Ok(Some(text)) => match text.to_string().map(RawValue::from_string) {
            Ok(Ok(json)) => Outcome::ok(Some(json)),
            _ => Outcome::failed(RunError::new(
                ErrorKind::InvalidReturn,
                "the returned value holds a string that is not valid Unicode",
            )),
        },
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

fn interrupted() -> RunError {
    RunError::new(ErrorKind::Timeout, "the run exceeded its time limit")
}

/// Runs queued promise jobs until none is left (or the interrupt handler stops them).
fn drain_jobs(ctx: &Ctx<'_>) {
    while ctx.execute_pending_job() {}
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

/// Turns a caught JavaScript error into a run error with the user's line and column.
fn describe(caught: CaughtError<'_>, while_loading: bool) -> RunError {
    match caught {
        CaughtError::Exception(exception) => {
            let name: String = exception.get("name").unwrap_or_else(|_| "Error".into());
            let message = exception.message().unwrap_or_default();
            let stack = exception.stack().unwrap_or_default();
            let code: Option<String> = exception.get("code").ok();
            let user_stack: Vec<&str> = stack
                .lines()
                .filter(|l| !l.contains(PRELUDE_FILE) && !l.contains("eval_script"))
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
            } else if parse_error {
                ErrorKind::SyntaxError
            } else {
                ErrorKind::RuntimeError
            };
            let head = if message.is_empty() {
                name.clone()
            } else {
                format!("{name}: {message}")
            };
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

/// The native side of console.*: appends to the run's output, and ends the run the moment
/// the output limit is crossed.
fn write_output(stream: i32, text: String) {
    push_output(stream, &text);
}

fn push_output(stream: i32, text: &str) {
    let overflow = OUTPUT.with(|cell| {
        let mut cell = cell.borrow_mut();
        let Some(out) = cell.as_mut() else {
            return false;
        };
        let used = out.stdout.len() + out.stderr.len();
        let target = if stream == 2 {
            &mut out.stderr
        } else {
            &mut out.stdout
        };
        if used + text.len() <= out.limit {
            target.push_str(text);
            return false;
        }
        let mut room = out.limit.saturating_sub(used);
        while !text.is_char_boundary(room) {
            room -= 1;
        }
        target.push_str(&text[..room]);
        true
    });
    if overflow {
        let limit = output_limit();
        report(
            None,
            1,
            Some(RunError::new(
                ErrorKind::OutputLimit,
                format!("output exceeded the limit of {limit} bytes"),
            )),
        );
    }
}

/// The run's output cap; 0 in the zygote, where no run is in progress.
fn output_limit() -> usize {
    OUTPUT.with(|o| o.borrow().as_ref().map_or(0, |o| o.limit))
}

fn report(result: Option<Box<RawValue>>, exit_code: i32, error: Option<RunError>) -> ! {
    let (stdout, stderr, elapsed) = OUTPUT.with(|o| {
        let mut o = o.borrow_mut();
        match o.as_mut() {
            Some(out) => (
                std::mem::take(&mut out.stdout),
                std::mem::take(&mut out.stderr),
                out.started.elapsed().as_secs_f64() * 1000.0,
            ),
            None => (String::new(), String::new(), 0.0),
        }
    });
    let report = ChildReport {
        result,
        stdout,
        stderr,
        exit_code,
        error,
        execution_time_ms: elapsed,
    };
    match serde_json::to_vec(&report) {
        Ok(bytes) => child::finish(&bytes),
        Err(e) => child::fail(&format!("encoding the report: {e}")),
    }
}
