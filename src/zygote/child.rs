//! A child's life: detach from the zygote's process group, die with the zygote, keep only its
//! job channel, read the job, lock down, run, report once, `_exit`.

use std::fs::File;
use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, OwnedFd};

use nix::unistd::{getppid, setpgid, Pid};

use super::Engine;
use crate::jail::{self, fds::CHANNEL_FD, seccomp::Filter};
use crate::protocol::{read_frame, write_frame, ChildReport, Job};
use crate::run::{ErrorKind, RunError};

/// A job is code plus inputs; the server caps request bodies well below this.
const MAX_JOB_BYTES: usize = 256 * 1024 * 1024;

pub fn run<E: Engine>(
    engine: &mut E,
    zygote: Pid,
    devnull: &OwnedFd,
    channel: OwnedFd,
    filter: &Filter,
) -> ! {
    // Its own process group, so the server can kill it and anything it might start as one.
    let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
    // SAFETY: prctl with PR_SET_PDEATHSIG and a valid signal number has no memory effects.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if getppid() != zygote {
        exit(1); // the zygote died between fork and prctl
    }
    if let Err(e) = jail::fds::isolate(devnull, channel) {
        fail(&e.to_string());
    }
    let job_bytes = match read_frame(&mut *channel_file(), MAX_JOB_BYTES) {
        Ok(bytes) => bytes,
        Err(_) => exit(1), // the server dropped the request before sending it
    };
    let job: Job = match serde_json::from_slice(&job_bytes) {
        Ok(job) => job,
        Err(e) => fail(&format!("unreadable job: {e}")),
    };
    drop(job_bytes);
    if let Err(e) = jail::lock_down(&job.limits, filter) {
        fail(&e.to_string());
    }
    engine.run(job)
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
