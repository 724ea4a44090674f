//! console.* and the run's one report. console.* writes to the run's output file through a
//! native function; crossing the output limit ends the run at once with what fit.

use serde_json::value::RawValue;

use crate::output_region::{Stream, Written};
use crate::protocol::ChildReport;
use crate::run::{ErrorKind, RunError};
use crate::zygote::{child, out_of_memory, run_output};

/// The native side of console.*: `stream` is 1 (stdout) or 2 (stderr). The text's copy into
/// Rust is the one allocation here; QuickJS failing it means the memory limit was reached.
pub fn write_output(stream: i32, text: rquickjs::String<'_>) {
    match text.to_string() {
        Ok(text) => push_output(stream, &text),
        Err(_) => out_of_memory::report_refusal(),
    }
}

pub fn push_output(stream: i32, text: &str) {
    if run_output::write_str(Stream::from_fd_number(stream), text) == Written::Cut {
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
    run_output::limit()
}

pub fn report(result: Option<Box<RawValue>>, exit_code: i32, error: Option<RunError>) -> ! {
    child::finish(ChildReport::finished(result, exit_code, error, Vec::new()))
}
