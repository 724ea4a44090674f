//! A run's stdout and stderr, and its one report. console.* appends here through a native
//! function; crossing the output limit ends the run at once with what fit.

use std::cell::RefCell;
use std::time::Instant;

use serde_json::value::RawValue;

use crate::protocol::{ChildReport, Output as Captured};
use crate::run::{ErrorKind, RunError};
use crate::zygote::child;

/// stdout and stderr of the run in progress; `None` in the zygote.
struct Output {
    stdout: String,
    stderr: String,
    limit: usize,
    started: Instant,
    /// One stream: stderr writes go to stdout (FastGPT's single log).
    merged: bool,
}

thread_local! {
    static OUTPUT: RefCell<Option<Output>> = const { RefCell::new(None) };
}

/// Starts collecting a run's output (in the child).
pub fn begin(limit: usize, started: Instant, merged: bool) {
    OUTPUT.with(|o| {
        *o.borrow_mut() = Some(Output {
            stdout: String::new(),
            stderr: String::new(),
            limit,
            started,
            merged,
        })
    });
}

/// The native side of console.*: appends to the run's output, and ends the run the moment
/// the output limit is crossed.
pub fn write_output(stream: i32, text: String) {
    push_output(stream, &text);
}

pub fn push_output(stream: i32, text: &str) {
    let overflow = OUTPUT.with(|cell| {
        let mut cell = cell.borrow_mut();
        let Some(out) = cell.as_mut() else {
            return false;
        };
        let used = out.stdout.len() + out.stderr.len();
        let target = if stream == 2 && !out.merged {
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
pub fn output_limit() -> usize {
    OUTPUT.with(|o| o.borrow().as_ref().map_or(0, |o| o.limit))
}

pub fn report(result: Option<Box<RawValue>>, exit_code: i32, error: Option<RunError>) -> ! {
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
    let output = Captured {
        stdout,
        stderr,
        execution_time_ms: elapsed,
    };
    child::finish(ChildReport::finished(
        result,
        exit_code,
        error,
        output,
        Vec::new(),
    ))
}
