//! A child's life: detach from the zygote's process group, die with the zygote, lock down, read
//! the job, narrow the limits to it, run, report once, `_exit`. No byte of the job is read
//! before the jail is complete, so a child can be forked and jailed before its job exists.

use std::fs::File;
use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, OwnedFd};

use nix::unistd::{getppid, setpgid, Pid};

use super::Engine;
use crate::jail::{fds::CHANNEL_FD, Jail};
use crate::protocol::{read_frame, write_frame, ChildReport, Job};
use crate::run::{ErrorKind, RunError};

/// A job is code plus inputs; the server caps request bodies well below this.
const MAX_JOB_BYTES: usize = 256 * 1024 * 1024;

pub fn run<E: Engine>(
    engine: &mut E,
    zygote: Pid,
    devnull: &OwnedFd,
    channel: OwnedFd,
    jail: &Jail,
) -> ! {
    // Its own process group, so the server can kill it and anything it might start as one.
    let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
    // SAFETY: prctl with PR_SET_PDEATHSIG and a valid signal number has no memory effects.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if getppid() != zygote {
        exit(1); // the zygote died between fork and prctl
    }
    if E::JAILS_ITSELF {
        if let Err(e) = crate::jail::fds::isolate(devnull, channel, None) {
            fail(&e.to_string());
        }
        let job = read_job();
        engine.run(job)
    }
    let budget = match jail.lock_down(devnull, channel) {
        Ok(budget) => budget,
        Err(e) => fail(&e.to_string()),
    };
    let job = read_job();
    super::out_of_memory::arm(job.limits.memory_mb);
    if let Err(e) = budget.narrow(&job.limits) {
        fail(&e.to_string());
    }
    engine.run(job)
}

fn read_job() -> Job {
    let job_bytes = match read_frame(&mut *channel_file(), MAX_JOB_BYTES) {
        Ok(bytes) => bytes,
        Err(_) => exit(1), // the server dropped the request before sending it
    };
    match serde_json::from_slice(&job_bytes) {
        Ok(job) => job,
        Err(e) => fail(&format!("unreadable job: {e}")),
    }
}

/// The largest broker answer a child accepts: a 2 MiB body, JSON-escaped, and headers.
const MAX_BROKER_ANSWER: usize = 16 * 1024 * 1024;

/// Asks the server's broker for an HTTP request (JSON of [`crate::broker::Request`]) and
/// blocks for its answer (`{"ok": ...}` or `{"error": ...}`, as JSON).
pub fn broker_call(request: &[u8]) -> std::io::Result<Vec<u8>> {
    if request.len() > crate::broker::MAX_REQUEST_FRAME {
        let answer = serde_json::json!({"error": {"denied": true, "message": format!(
            "the request is too large: a request body may have at most {} bytes (5 MB)",
            crate::broker::MAX_REQUEST_BYTES
        )}});
        return Ok(answer.to_string().into_bytes());
    }
    let mut frame = Vec::with_capacity(request.len() + 1);
    frame.push(crate::supervisor::BROKER_REQUEST);
    frame.extend_from_slice(request);
    write_frame(&mut *channel_file(), &frame)?;
    read_frame(&mut *channel_file(), MAX_BROKER_ANSWER)
}

/// Sends the report (JSON of a [`ChildReport`]) and leaves. Nothing runs after this: no
/// destructors, no atexit handlers, no interpreter shutdown.
pub fn finish(report: &[u8]) -> ! {
    let code = match write_frame(&mut *channel_file(), report) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    exit(code)
}

/// Reports an `internal` error of the child itself and leaves.
pub fn fail(message: &str) -> ! {
    let report = ChildReport {
        result: None,
        stdout: String::new(),
        stderr: String::new(),
        exit_code: 1,
        error: Some(RunError::new(ErrorKind::Internal, message)),
        execution_time_ms: 0.0,
        images: Vec::new(),
    };
    let bytes = serde_json::to_vec(&report).unwrap_or_default();
    finish(&bytes)
}

fn channel_file() -> ManuallyDrop<File> {
    // SAFETY: CHANNEL_FD is the job channel `fds::isolate` installed; ManuallyDrop keeps this
    // borrowed view from closing it.
    ManuallyDrop::new(unsafe { File::from_raw_fd(CHANNEL_FD) })
}

fn exit(code: i32) -> ! {
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process immediately; nothing is left to unwind.
    unsafe { libc::_exit(code) }
}
