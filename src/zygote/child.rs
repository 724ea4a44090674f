//! A child's life: die with the zygote, lock down, read the job, narrow the limits to it, run,
//! report once, `_exit`. An interpreter's child reads no byte of its job before its jail is
//! complete, so it can be forked and jailed before its job exists. The shell's child is
//! sandlot's own supervisor of one command: it isolates itself, reads the job (the command's
//! file system depends on it), and jails the command before it starts (`ShellJail`).

use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, OwnedFd};

use nix::sys::resource::{getrusage, UsageWho};
use nix::unistd::Pid;

use super::{run_output, Confinement, Engine};
use crate::jail::{parent_death, ShellJail};
use crate::protocol::{
    read_frame, write_frame, ChildReport, FrameTag, Job, CHILD_CHANNEL_FD, CHILD_UNJAILED_EXIT,
    MAX_BROKER_ANSWER_FRAME, MAX_BROKER_BODY_BYTES, MAX_BROKER_REQUEST_FRAME, MAX_JOB_FRAME,
    MIN_PAUSE,
};
use crate::run::Usage;

pub fn run<E: Engine>(
    engine: &mut E,
    zygote: Pid,
    devnull: &OwnedFd,
    channel: OwnedFd,
    output: OwnedFd,
    confinement: &mut Confinement,
) -> ! {
    if parent_death::arm_for(zygote).is_err() {
        exit(1); // the zygote died between fork and prctl
    }
    // A failure of the jail reports on the job channel only once the channel is at its number:
    // before that, descriptor 3 is the zygote's placeholder.
    let jail_failed = |e: crate::jail::ChildJailError| -> ! {
        if e.channel_in_place {
            fail(&e.error.to_string())
        }
        abandon(&e.error.to_string())
    };
    match confinement {
        Confinement::Shell => {
            if let Err(e) = ShellJail::isolate_supervisor(devnull, channel, output) {
                jail_failed(e);
            }
            let job = read_job();
            begin_output(&job);
            engine.run(job)
        }
        Confinement::Interpreter(jail) => {
            let budget = match jail.lock_child(devnull, channel, output) {
                Ok(budget) => budget,
                Err(e) => jail_failed(e),
            };
            engine.prepare_run();
            let job = read_job();
            job_arrived();
            begin_output(&job);
            super::out_of_memory::arm(job.limits.memory_mb);
            if let Err(e) = budget.narrow(&job.limits) {
                fail(&e.to_string());
            }
            engine.run(job)
        }
    }
}

/// Reads the job. The server learns that it arrived from the output file, which the child maps
/// next ([`crate::output_region::job_arrived`]): from there on the run's code may run.
fn read_job() -> Job {
    let job_bytes = match read_frame(&mut *channel_file(), MAX_JOB_FRAME) {
        Ok((FrameTag::Job, bytes)) => {
            // The run's refusals are its own from here: none of its zygote's or its set-up's.
            crate::jail::refused_calls::clear();
            HAS_JOB.store(true, std::sync::atomic::Ordering::Relaxed);
            bytes
        }
        Ok((tag, _)) => fail(&format!("expected the job, got a {tag:?} frame")),
        Err(_) => exit(1), // the server dropped the request before sending it
    };
    match serde_json::from_slice(&job_bytes) {
        Ok(job) => job,
        Err(e) => fail(&format!("unreadable job: {e}")),
    }
}

fn begin_output(job: &Job) {
    if let Err(e) = run_output::begin(job) {
        fail(&format!("mapping the output file: {e}"));
    }
}

/// Asks the server's broker for an HTTP request (JSON of [`crate::broker::Request`]) and
/// blocks for its answer (`{"ok": ...}` or `{"error": ...}`, as JSON).
pub fn broker_call(request: &[u8]) -> std::io::Result<Vec<u8>> {
    if request.len() > MAX_BROKER_REQUEST_FRAME {
        let answer = serde_json::json!({"error": {"denied": true, "message": format!(
            "the request is too large: a request body may have at most \
             {MAX_BROKER_BODY_BYTES} bytes (5 MB)"
        )}});
        return Ok(answer.to_string().into_bytes());
    }
    write_frame(&mut *channel_file(), FrameTag::BrokerRequest, request)?;
    match read_frame(&mut *channel_file(), MAX_BROKER_ANSWER_FRAME)? {
        (FrameTag::BrokerAnswer, answer) => Ok(answer),
        (tag, _) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("expected the broker's answer, got a {tag:?} frame"),
        )),
    }
}

/// Set once this process is a child with its job: it has a server on its job channel.
static HAS_JOB: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Waits `length`. A wait of [`MIN_PAUSE`] or more goes through the server, which gives the
/// run's core to another run meanwhile (`supervisor::admission`); a shorter one is slept here.
pub fn pause(length: std::time::Duration) {
    // A zygote warming up has no server to ask.
    if length < MIN_PAUSE || !HAS_JOB.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(length);
        return;
    }
    // Rounded up: a sleep is never shorter than asked.
    let millis = length.as_nanos().div_ceil(1_000_000).min(u64::MAX as u128) as u64;
    if ask_pause(&millis.to_string()).is_err() {
        // No server to ask (it ends this child soon): wait here.
        std::thread::sleep(length);
    }
}

/// Waits until brokered connection `connection` (counted from 0 in the order they were
/// handed over) has something to read, or `timeout` passes; whether it has. The server gives
/// the run's core to another run meanwhile.
pub fn wait_readable(
    connection: u32,
    timeout: Option<std::time::Duration>,
) -> std::io::Result<bool> {
    // 0 is no limit but the run's deadline; a timeout is at least a millisecond.
    let millis = timeout.map_or(0, |t| {
        t.as_nanos().div_ceil(1_000_000).clamp(1, u64::MAX as u128) as u64
    });
    Ok(ask_pause(&format!("{millis} {connection}"))? == b"1")
}

/// Sends a pause and blocks for the server's answer.
fn ask_pause(pause: &str) -> std::io::Result<Vec<u8>> {
    write_frame(&mut *channel_file(), FrameTag::Pause, pause.as_bytes())?;
    match read_frame(&mut *channel_file(), 1)? {
        (FrameTag::Resume, answer) => Ok(answer),
        (tag, _) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("expected the end of a pause, got a {tag:?} frame"),
        )),
    }
}

/// Sends the report and leaves. Nothing runs after this: no destructors, no atexit handlers,
/// no interpreter shutdown.
pub fn finish(mut report: ChildReport) -> ! {
    if report.usage.is_none() {
        report.usage = usage_since_job();
    }
    // A run that failed on a refusal names the call the jail refused it.
    let has_job = HAS_JOB.load(std::sync::atomic::Ordering::Relaxed);
    if let Some(error) = report.error.as_mut().filter(|_| has_job) {
        let last = crate::jail::refused_calls::last();
        error.message = crate::jail::refused_calls::explain(&error.message, last.as_deref());
    }
    let code = match write_frame(&mut *channel_file(), FrameTag::Report, &report.to_json()) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    exit(code)
}

/// Reports an `internal` error of the child itself and leaves.
pub fn fail(message: &str) -> ! {
    finish(ChildReport::internal(message))
}

/// Leaves without a report, for a child whose job channel is not in place: the message goes to
/// its stderr (still the zygote's, which the server logs) and the exit code says why.
fn abandon(message: &str) -> ! {
    eprintln!("sandlot child {}: {message}", std::process::id());
    exit(CHILD_UNJAILED_EXIT)
}

/// The child's own accounting when its job arrived (its set-up and its wait in the pool are
/// not the run's).
static AT_JOB: std::sync::Mutex<Option<Usage>> = std::sync::Mutex::new(None);

fn job_arrived() {
    *AT_JOB.lock().unwrap_or_else(|e| e.into_inner()) = own_usage();
}

/// What the run has cost since its job arrived; its peak memory is the process's.
fn usage_since_job() -> Option<Usage> {
    let now = own_usage()?;
    let at_job = (*AT_JOB.lock().unwrap_or_else(|e| e.into_inner()))?;
    Some(Usage {
        cpu_ms: now.cpu_ms - at_job.cpu_ms,
        max_rss_kb: now.max_rss_kb,
        page_faults: now.page_faults.saturating_sub(at_job.page_faults),
    })
}

/// This process's CPU time, peak RSS and page faults so far (the kernel's `getrusage`).
pub fn own_usage() -> Option<Usage> {
    usage_of(UsageWho::RUSAGE_SELF)
}

pub fn usage_of(who: UsageWho) -> Option<Usage> {
    let usage = getrusage(who).ok()?;
    let ms = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1000.0 + t.tv_usec() as f64 / 1000.0;
    Some(Usage {
        cpu_ms: ms(usage.user_time()) + ms(usage.system_time()),
        max_rss_kb: u64::try_from(usage.max_rss()).unwrap_or(0),
        page_faults: u64::try_from(usage.minor_page_faults() + usage.major_page_faults())
            .unwrap_or(0),
    })
}

fn channel_file() -> ManuallyDrop<File> {
    // SAFETY: CHILD_CHANNEL_FD is the job channel the jail installed; ManuallyDrop keeps this
    // borrowed view from closing it.
    ManuallyDrop::new(unsafe { File::from_raw_fd(CHILD_CHANNEL_FD) })
}

fn exit(code: i32) -> ! {
    // Rust's stderr is unbuffered: nothing to flush (taking its lock would copy a page).
    // SAFETY: _exit ends the process immediately; nothing is left to unwind.
    unsafe { libc::_exit(code) }
}
