//! Driving one run: fork a child, hand it the job, and wait for its report until the
//! deadline, which the server enforces with SIGKILL.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::zygote_process::{Forked, ZygoteProcess};
use crate::broker::Broker;
use crate::protocol::{
    read_frame_async, write_frame_async, ChildReport, ExitStatus, FrameTag, Job,
    MAX_BROKER_REQUEST_FRAME,
};
use crate::run::{ErrorKind, RunError, RunResponse, TIMEOUT_EXIT_CODE};

/// How long to wait for a zygote to say how a child that sent no report ended.
const EXIT_STATUS_WAIT: Duration = Duration::from_secs(2);

pub async fn execute(zygote: &ZygoteProcess, job: &Job, broker: &Broker) -> RunResponse {
    let payload = match serde_json::to_vec(job) {
        Ok(bytes) => bytes,
        Err(e) => return internal(format!("encoding the job: {e}")),
    };
    let (
        Forked {
            pid,
            channel,
            pidfd,
            exit,
        },
        _in_use,
    ) = match zygote.take().await {
        Ok(taken) => taken,
        Err(message) => return internal(message),
    };
    // From here on the child dies with this future: at its deadline, after its report, or when
    // the request is abandoned.
    let child = KillOnDrop(pidfd);
    let started = Instant::now();
    let mut stream = match into_async_stream(channel) {
        Ok(stream) => stream,
        Err(e) => return internal(format!("job channel of child {pid}: {e}")),
    };
    let max_frame = report_cap(job).max(MAX_BROKER_REQUEST_FRAME);
    let deadline = Duration::from_millis(job.limits.timeout_ms);
    let run_deadline = started + deadline;
    let exchange = async {
        write_frame_async(&mut stream, FrameTag::Job, &payload).await?;
        let mut calls = 0;
        loop {
            let request = match read_frame_async(&mut stream, max_frame).await? {
                (FrameTag::Report, report) => return Ok::<_, std::io::Error>(report),
                (FrameTag::BrokerRequest, request) => request,
                (tag, _) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("a child may not send a {tag:?} frame"),
                    ))
                }
            };
            calls += 1;
            let answer = broker
                .answer(&request, calls, job.network, run_deadline)
                .await;
            write_frame_async(&mut stream, FrameTag::BrokerAnswer, &answer).await?;
        }
    };
    match tokio::time::timeout(deadline, exchange).await {
        Ok(Ok(report)) => {
            child.kill();
            from_report(&report)
        }
        Ok(Err(_)) => {
            // No report: the child died (or broke the protocol). Its exit status says why.
            child.kill();
            let elapsed = ms(started);
            match tokio::time::timeout(EXIT_STATUS_WAIT, exit).await {
                Ok(Ok(status)) => died(status, elapsed, job),
                Ok(Err(_)) => RunResponse::failed(
                    RunError::new(
                        ErrorKind::Internal,
                        format!(
                            "the {} zygote died during the run; it is being restarted, retry",
                            zygote.kind().name()
                        ),
                    ),
                    1,
                    elapsed,
                ),
                Err(_) => RunResponse::failed(
                    RunError::new(ErrorKind::Internal, "the child ended without a report"),
                    1,
                    elapsed,
                ),
            }
        }
        Err(_) => {
            child.kill();
            timed_out(job, ms(started))
        }
    }
}

pub fn internal(message: String) -> RunResponse {
    RunResponse::failed(RunError::new(ErrorKind::Internal, message), 1, 0.0)
}

fn from_report(bytes: &[u8]) -> RunResponse {
    match serde_json::from_slice::<ChildReport>(bytes) {
        Ok(report) => RunResponse {
            ok: report.error.is_none() && report.exit_code == 0,
            result: report.result,
            stdout: report.stdout,
            stderr: report.stderr,
            exit_code: report.exit_code,
            execution_time_ms: report.execution_time_ms,
            images: report.images,
            usage: report.usage,
            error: report.error,
        },
        Err(e) => internal(format!("the child's report was unreadable: {e}")),
    }
}

fn timed_out(job: &Job, elapsed: f64) -> RunResponse {
    RunResponse::failed(
        RunError::new(
            ErrorKind::Timeout,
            format!(
                "the run timed out after {} ms (its time limit)",
                job.limits.timeout_ms
            ),
        ),
        TIMEOUT_EXIT_CODE,
        elapsed,
    )
}

/// A child that ended without a report, by its exit status.
fn died(status: ExitStatus, elapsed: f64, job: &Job) -> RunResponse {
    match status {
        // The kernel's backstops for the deadline: RLIMIT_CPU and the interval timer.
        ExitStatus::Signal(libc::SIGXCPU) | ExitStatus::Signal(libc::SIGALRM) => {
            timed_out(job, elapsed)
        }
        // The seccomp kill list: a call only an exploit makes.
        ExitStatus::Signal(libc::SIGSYS) => RunResponse::failed(
            RunError::new(
                ErrorKind::RuntimeError,
                "the process was killed for a forbidden system call (SIGSYS): the sandbox \
                 allows no mounts, namespaces, tracing, kernel modules, keys or io_uring",
            ),
            128 + libc::SIGSYS,
            elapsed,
        ),
        ExitStatus::Signal(signal) => RunResponse::failed(
            RunError::new(
                ErrorKind::RuntimeError,
                format!(
                    "the process was killed by signal {signal} ({})",
                    signal_name(signal)
                ),
            ),
            128 + signal,
            elapsed,
        ),
        ExitStatus::Code(code) => RunResponse::failed(
            RunError::new(
                ErrorKind::Internal,
                format!("the child exited with code {code} without a report"),
            ),
            code,
            elapsed,
        ),
    }
}

fn signal_name(signal: i32) -> &'static str {
    nix::sys::signal::Signal::try_from(signal).map_or("unknown", |s| s.as_str())
}

/// The largest report a child may send: its output and its result are each capped by
/// `max_output_bytes`; the rest is error text and framing.
fn report_cap(job: &Job) -> usize {
    let output = usize::try_from(job.limits.max_output_bytes).unwrap_or(usize::MAX / 4);
    output.saturating_mul(3).saturating_add(1024 * 1024)
}

fn into_async_stream(fd: OwnedFd) -> std::io::Result<tokio::net::UnixStream> {
    let stream = std::os::unix::net::UnixStream::from(fd);
    stream.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(stream)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Kills the child through its pidfd: no pid-reuse race, whoever reaps it.
struct KillOnDrop(OwnedFd);

impl KillOnDrop {
    fn kill(&self) {
        // SAFETY: pidfd_send_signal takes a pidfd we own, a signal, no siginfo and no flags.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}
