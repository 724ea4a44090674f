//! The shell zygote: no interpreter, only a jail-maker. Its child (sandlot's own code) isolates
//! itself in new mount and pid namespaces, reads the job, builds the command's file system, and
//! forks the process that becomes pid 1 of that pid namespace: pid 1 takes the rest of the jail
//! ([`ShellJail::lock_down_init`]), then forks `/bin/sh -c COMMAND` (minimal environment) and
//! stays as its init: it reaps orphans and exits with the shell's status.
//!
//! As root, each run's uid is its own (chosen from what the user namespace maps:
//! [`crate::jail::shell_ids`]), so RLIMIT_NPROC, which the kernel counts per uid, bounds one
//! run without starving another.
//!
//! The child collects the command's stdout and stderr and enforces the deadline and the output
//! limit by killing pid 1, which takes the whole namespace — every background process — with
//! it. If the child itself is killed (the server's deadline), pid 1 dies by its parent-death
//! signal, with the same effect.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, getegid, geteuid, getpid, pipe, ForkResult, Pid};

use super::{child, run_output, shell_files, Engine, ZygoteError};
use crate::jail::settings::{JailSettings, Layer};
use crate::jail::shell_ids::ShellIds;
use crate::jail::{JailError, ShellJail, ShellRun};
use crate::output_region::{Stream, Written};
use crate::protocol::{ChildReport, Job, ZygoteKind};
use crate::run::{ErrorKind, RunError, TIMEOUT_EXIT_CODE};

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct ShellEngine {
    jail: ShellJail,
    /// The uids runs take as root; `None` when runs keep sandlot's own identity.
    ids: Option<ShellIds>,
}

impl Engine for ShellEngine {
    fn prepare(_kind: ZygoteKind) -> Result<Self, ZygoteError> {
        let settings = JailSettings::from_env()?;
        // Read now: a run's supervisor no longer sees this namespace's /proc.
        let ids = if geteuid().is_root() && settings.applies(Layer::UidDrop) {
            Some(ShellIds::from_maps(settings.child_uid, settings.child_gid)?)
        } else {
            None
        };
        Ok(Self {
            jail: ShellJail::prepare(settings)?,
            ids,
        })
    }

    fn run(&mut self, job: Job) -> ! {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(job.limits.timeout_ms);
        let working_dir = job.working_dir.clone().unwrap_or_else(|| "/tmp".into());
        let (uid, gid) = self.identity();
        let run = ShellRun {
            uid,
            gid,
            working_dir: Path::new(&working_dir),
            limits: &job.limits,
        };
        if let Err(e) = self.jail.build_view(&run) {
            child::fail(&e.to_string());
        }
        let output_dir = shell_files::place(&job, Path::new(&working_dir), uid, gid)
            .unwrap_or_else(|e| child::fail(&e));
        let (out_read, out_write) = pipe().unwrap_or_else(|e| child::fail(&format!("pipe: {e}")));
        let (err_read, err_write) = pipe().unwrap_or_else(|e| child::fail(&format!("pipe: {e}")));
        let command = prepare_exec(&job, &working_dir);
        // SAFETY: this child is single-threaded; the forked process only makes system calls
        // and execs (or `_exit`s).
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                drop((out_read, err_read));
                let error = self.become_init(&run, out_write, err_write, &command);
                let message = format!("sandlot: starting the shell failed: {error}\n");
                // SAFETY: writes a buffer we own to stderr, then leaves at once.
                unsafe {
                    libc::write(2, message.as_ptr().cast(), message.len());
                    libc::_exit(127)
                }
            }
            Ok(ForkResult::Parent { child: shell }) => {
                drop((out_write, err_write));
                let collected = collect(shell, out_read, err_read, deadline);
                let status = waitpid(shell, None);
                shell_files::gather(&output_dir);
                report(collected, status, &job)
            }
            Err(e) => child::fail(&format!("fork: {e}")),
        }
    }
}

impl ShellEngine {
    /// Who runs the command: as root, a uid of this run's own (see the module comment) and the
    /// configured unprivileged group; otherwise our own identity.
    fn identity(&self) -> (u32, u32) {
        match self.ids {
            Some(ids) => (
                ids.uid_for(getpid().as_raw() as u32),
                self.jail.settings().child_gid,
            ),
            None => (geteuid().as_raw(), getegid().as_raw()),
        }
    }

    /// In the forked process, pid 1 of the new namespace: returns only on failure.
    fn become_init(
        &self,
        run: &ShellRun,
        stdout: OwnedFd,
        stderr: OwnedFd,
        command: &Exec,
    ) -> JailError {
        let jail = self
            .jail
            .lock_down_init(run, stdout.as_raw_fd(), stderr.as_raw_fd(), 0);
        std::mem::forget((stdout, stderr)); // moved to 1 and 2; the originals are closed
        if let Err(e) = jail {
            return e;
        }
        // As the namespace's init, stay: the shell runs as our child, so it gets ordinary
        // signal semantics, and orphans are reaped here.
        // SAFETY: single-threaded; the child only execs (or `_exit`s).
        let shell = match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                // SAFETY: signal() is async-signal-safe; every pointer array is NULL-terminated
                // and points at CStrings that live in `command` until the call (execve only
                // returns on failure).
                unsafe {
                    // A write past RLIMIT_FSIZE fails with EFBIG instead of killing the writer;
                    // an ignored signal stays ignored across execve.
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    libc::execve(
                        command.path.as_ptr(),
                        command.argv.as_ptr(),
                        command.envp.as_ptr(),
                    );
                    libc::_exit(127)
                }
            }
            Ok(ForkResult::Parent { child }) => child,
            Err(e) => return JailError::Fork(e.into()),
        };
        loop {
            match waitpid(None, None) {
                Ok(WaitStatus::Exited(pid, code)) if pid == shell => exit_now(code),
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == shell => {
                    exit_now(128 + signal as i32)
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return JailError::Wait(e.into()),
            }
        }
    }
}

/// Leaves at once with `code`; the kernel then ends every process left in the namespace.
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

/// `/bin/sh -c COMMAND` and its environment, built before the fork (no allocation after it).
struct Exec {
    path: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    _strings: Vec<CString>,
}

fn prepare_exec(job: &Job, working_dir: &str) -> Exec {
    let mut env = std::collections::BTreeMap::from([
        ("PATH".to_owned(), PATH.to_owned()),
        ("HOME".to_owned(), "/tmp".to_owned()),
        ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ("PWD".to_owned(), working_dir.to_owned()),
        (
            "SANDLOT_OUTPUT_DIR".to_owned(),
            format!(
                "{}/{}",
                working_dir.trim_end_matches('/'),
                crate::output_files::OUTPUT_DIR
            ),
        ),
    ]);
    env.extend(job.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let cstring = |s: String| CString::new(s.replace('\0', "")).expect("NUL removed");
    let argv_strings = vec![
        cstring("sh".into()),
        cstring("-c".into()),
        cstring(job.code.clone()),
    ];
    let env_strings: Vec<CString> = env
        .into_iter()
        .map(|(k, v)| cstring(format!("{k}={v}")))
        .collect();
    let argv = argv_strings
        .iter()
        .map(|s| s.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let envp = env_strings
        .iter()
        .map(|s| s.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    Exec {
        path: cstring("/bin/sh".into()),
        argv,
        envp,
        _strings: argv_strings.into_iter().chain(env_strings).collect(),
    }
}

struct Collected {
    timed_out: bool,
    overflowed: bool,
}

/// Copies both pipes into the run's output file until they close, the deadline passes, or the
/// output limit is crossed (the last two kill pid 1, and with it the namespace).
fn collect(shell: Pid, stdout: OwnedFd, stderr: OwnedFd, deadline: Instant) -> Collected {
    let mut out = Collected {
        timed_out: false,
        overflowed: false,
    };
    let mut files = [
        Some(std::fs::File::from(stdout)),
        Some(std::fs::File::from(stderr)),
    ];
    let mut buf = vec![0u8; 64 * 1024];
    while files.iter().any(Option::is_some) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            out.timed_out = true;
            let _ = kill(shell, Signal::SIGKILL);
            break;
        }
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd> = files
                .iter()
                .flatten()
                .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN))
                .collect();
            let wait = PollTimeout::try_from(left.as_millis().min(60_000) as i32 + 1)
                .unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, wait) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
            fds.iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect()
        };
        let mut index = 0;
        for (slot, target) in files.iter_mut().zip([0usize, 1]) {
            let Some(file) = slot.as_mut() else { continue };
            let hit = ready.get(index).copied().unwrap_or(false);
            index += 1;
            if !hit {
                continue;
            }
            match file.read(&mut buf) {
                Ok(0) | Err(_) => *slot = None,
                Ok(n) => {
                    let stream = if target == 0 {
                        Stream::Stdout
                    } else {
                        Stream::Stderr
                    };
                    if run_output::write_bytes(stream, &buf[..n]) == Written::Cut {
                        out.overflowed = true;
                        let _ = kill(shell, Signal::SIGKILL);
                    }
                }
            }
        }
        if out.overflowed {
            break;
        }
    }
    out
}

fn report(collected: Collected, status: nix::Result<WaitStatus>, job: &Job) -> ! {
    let (exit_code, error) = if collected.timed_out {
        (
            TIMEOUT_EXIT_CODE,
            Some(RunError::new(
                ErrorKind::Timeout,
                format!("the command timed out after {} ms", job.limits.timeout_ms),
            )),
        )
    } else if collected.overflowed {
        (
            1,
            Some(RunError::new(
                ErrorKind::OutputLimit,
                format!(
                    "output exceeded the limit of {} bytes",
                    job.limits.max_output_bytes
                ),
            )),
        )
    } else {
        match status {
            Ok(WaitStatus::Exited(_, code)) => (code, None),
            Ok(WaitStatus::Signaled(_, signal, _)) => (128 + signal as i32, None),
            other => (
                1,
                Some(RunError::new(
                    ErrorKind::Internal,
                    format!("waitpid: {other:?}"),
                )),
            ),
        }
    };
    let mut report = ChildReport::finished(None, exit_code, error, Vec::new());
    // The command's cost: every process of its tree, reaped by now (pid 1 waited for them).
    report.usage = child::usage_of(nix::sys::resource::UsageWho::RUSAGE_CHILDREN);
    child::finish(report)
}
