//! `sandlot serve` as PID 1 (a container's entrypoint, a pod's first process): the process
//! splits in two before it does anything else. PID 1 stays a minimal init — it forwards the
//! stop signals to the server and reaps every process of the namespace — and its forked child
//! is the server, exactly as it runs anywhere else.
//!
//! Why not reap inside the server: PID 1 inherits every orphan of its PID namespace, and
//! reaping them means `waitpid(-1)`, which would also take the exit of the server's own
//! children (zygotes, pip) from the `std::process::Child::wait` that waits for them, on
//! threads a SIGCHLD handler cannot coordinate with. A separate init has no child but the
//! server, so every other exit it sees is an orphan's (what tini and `docker run --init` do).
//!
//! The kernel delivers to a namespace's PID 1 only the signals it handles: the signals here
//! are blocked and taken with `sigwait`, so none is dropped, and none is lost between the
//! fork and the loop.

use std::process::ExitCode;

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// Signals PID 1 passes on to the server: the stop requests (SIGTERM drains, as anywhere),
/// and the ones an operator may send by hand.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Why PID 1 could not put the server under itself.
#[derive(Debug, thiserror::Error)]
pub enum PidOneError {
    #[error("blocking the forwarded signals failed: {0}")]
    BlockSignals(#[source] Errno),
    #[error("forking the server failed: {0}")]
    Fork(#[source] Errno),
}

/// What the caller of [`split_if_pid_one`] is now.
pub enum Role {
    /// Not PID 1, or the forked child: serve.
    Server,
    /// PID 1, after the server exited: exit with this code.
    InitDone(ExitCode),
}

/// When this process is PID 1, forks the server and stays its init until it exits. Must be
/// called while the process is single-threaded (it forks).
pub fn split_if_pid_one() -> Result<Role, PidOneError> {
    if std::process::id() != 1 {
        return Ok(Role::Server);
    }
    let mut waited = SigSet::empty();
    for signal in FORWARDED {
        waited.add(signal);
    }
    waited.add(Signal::SIGCHLD);
    let mut previous = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited), Some(&mut previous))
        .map_err(PidOneError::BlockSignals)?;
    // SAFETY: the process is single-threaded (callers' contract); the child only restores its
    // signal mask before it returns to become the server.
    match unsafe { fork() }.map_err(PidOneError::Fork)? {
        ForkResult::Child => {
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&previous), None)
                .map_err(PidOneError::BlockSignals)?;
            Ok(Role::Server)
        }
        ForkResult::Parent { child } => Ok(Role::InitDone(init(child, &waited))),
    }
}

/// PID 1's loop: forward signals to `server`, reap whatever exits, return the server's exit
/// as an exit code (128 + the signal that killed it).
fn init(server: Pid, waited: &SigSet) -> ExitCode {
    loop {
        match waited.wait() {
            Ok(Signal::SIGCHLD) => {
                if let Some(code) = reap_all(server) {
                    return ExitCode::from(code);
                }
            }
            Ok(signal) => {
                let _ = kill(server, signal);
            }
            Err(_) => {}
        }
    }
}

/// Reaps every exited process; the server's exit code once it is among them. The rest of the
/// namespace dies with PID 1 when it returns (the kernel kills a PID namespace with its init).
fn reap_all(server: Pid) -> Option<u8> {
    let mut server_exit = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == server => {
                server_exit = Some(u8::try_from(code).unwrap_or(1));
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == server => {
                server_exit = Some(128u8.saturating_add(signal as u8));
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return server_exit,
            Ok(_) => {}
        }
    }
}
