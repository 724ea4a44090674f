//! A zygote: the sandlot binary re-executed as `__zygote <kind>`. It builds one interpreter,
//! imports everything on its whitelist, and then forks a single-use child per request.
//!
//! The zygote is single-threaded, holds no secret, and never sees a job: it only forks, hands
//! the server each child's job channel and pidfd, and reports how each child exited.

pub mod child;
mod javascript;
pub mod out_of_memory;
mod python;
mod shell;

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::control_socket;
use crate::jail::settings::{JailSettings, Layer};
use crate::jail::{namespaces, Jail};
use crate::protocol::{ExitStatus, ZygoteCommand, ZygoteEvent};

/// The descriptor a zygote finds its control socket on.
pub const CONTROL_FD: i32 = 3;

/// Which interpreter a zygote builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZygoteKind {
    Python,
    /// Python with numpy, pandas, matplotlib and jinja2 pre-imported.
    PythonData,
    Javascript,
    Shell,
}

impl ZygoteKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Python => "python",
            Self::PythonData => "python-data",
            Self::Javascript => "javascript",
            Self::Shell => "shell",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "python" => Some(Self::Python),
            "python-data" => Some(Self::PythonData),
            "javascript" => Some(Self::Javascript),
            "shell" => Some(Self::Shell),
            _ => None,
        }
    }
}

/// An interpreter as a zygote holds it.
pub trait Engine: Sized {
    /// Builds the interpreter and imports the whitelist; runs once, before any fork.
    fn prepare() -> Result<Self, String>;
    /// Directories a child may read from (Landlock): where the interpreter loads its files.
    fn readable_dirs(&self) -> Vec<std::path::PathBuf> {
        Vec::new()
    }
    /// Interpreter bookkeeping around `fork()` (CPython's `PyOS_*Fork*`).
    fn before_fork(&mut self) {}
    fn after_fork_parent(&mut self) {}
    fn after_fork_child(&mut self) {}
    /// Runs one job in the locked-down child; ends with [`child::finish`].
    fn run(&mut self, job: crate::protocol::Job) -> !;
    /// An engine whose child is a trusted supervisor that jails a process of its own (the
    /// shell): its child gets only the descriptor step of [`Jail::lock_down`].
    const JAILS_ITSELF: bool = false;
}

/// Entry point of `sandlot __zygote <kind>`; returns the process exit code.
pub fn main(kind: &str) -> i32 {
    match ZygoteKind::parse(kind) {
        Some(ZygoteKind::Python | ZygoteKind::PythonData) => serve::<python::PythonEngine>(kind),
        Some(ZygoteKind::Javascript) => serve::<javascript::JavascriptEngine>(kind),
        Some(ZygoteKind::Shell) => serve::<shell::ShellEngine>(kind),
        None => {
            eprintln!("sandlot zygote: unknown kind {kind:?}");
            2
        }
    }
}

fn serve<E: Engine>(kind: &str) -> i32 {
    // SAFETY: prctl with PR_SET_PDEATHSIG and a valid signal number has no memory effects.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if nix::unistd::getppid() == Pid::from_raw(1) {
        return 0; // the server died before we could arm the death signal
    }
    // SAFETY: the server passes the zygote's end of the control socket as descriptor 3 and
    // nothing else in this process owns it.
    let control = unsafe { OwnedFd::from_raw_fd(CONTROL_FD) };
    match run_zygote::<E>(&control) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("sandlot zygote {kind}: {message}");
            let _ = control_socket::send(&control, &ZygoteEvent::ForkFailed { message }, &[]);
            1
        }
    }
}

fn run_zygote<E: Engine>(control: &OwnedFd) -> Result<(), String> {
    let devnull: OwnedFd = std::fs::File::open("/dev/null")
        .map_err(|e| format!("opening /dev/null: {e}"))?
        .into();
    let settings = JailSettings::from_env()?;
    if settings.applies(Layer::Namespaces) {
        namespaces::enter().map_err(|e| e.to_string())?;
    }
    let mut engine = E::prepare()?;
    let readable = engine.readable_dirs();
    let readable: Vec<&std::path::Path> = readable.iter().map(|p| p.as_path()).collect();
    let jail = Jail::prepare(settings, &readable).map_err(|e| e.to_string())?;

    // SIGCHLD arrives on a signalfd so the loop can poll it beside the control socket.
    let mut sigchld = SigSet::empty();
    sigchld.add(Signal::SIGCHLD);
    sigchld
        .thread_block()
        .map_err(|e| format!("blocking SIGCHLD: {e}"))?;
    let signals = SignalFd::with_flags(&sigchld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| format!("signalfd: {e}"))?;

    let ready = ZygoteEvent::Ready {
        pid: std::process::id() as i32,
    };
    control_socket::send(control, &ready, &[]).map_err(|e| format!("announcing ready: {e}"))?;

    loop {
        let (command_ready, child_exited) = {
            let mut fds = [
                PollFd::new(control.as_fd(), PollFlags::POLLIN),
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("poll: {e}")),
            }
            let hit = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            (hit(&fds[0]), hit(&fds[1]))
        };
        if child_exited {
            while let Ok(Some(_)) = signals.read_signal() {}
            reap_children(control)?;
        }
        if command_ready {
            match control_socket::recv::<ZygoteCommand>(control) {
                Ok(Some((ZygoteCommand::Fork, _))) => {
                    fork_child(&mut engine, control, &devnull, &jail, &sigchld)?
                }
                // The server is gone: so are we (our children die with us by PDEATHSIG).
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("reading the control socket: {e}")),
            }
        }
    }
}

fn fork_child<E: Engine>(
    engine: &mut E,
    control: &OwnedFd,
    devnull: &OwnedFd,
    jail: &Jail,
    blocked: &SigSet,
) -> Result<(), String> {
    let (server_end, child_end) = match socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    ) {
        Ok(pair) => pair,
        Err(e) => return report_fork_failure(control, format!("socketpair: {e}")),
    };
    let zygote_pid = nix::unistd::getpid();
    engine.before_fork();
    // SAFETY: the zygote is single-threaded, so the child inherits no lock held by another
    // thread; the child only runs `child::run`, which never returns.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            engine.after_fork_child();
            let _ = blocked.thread_unblock();
            drop(server_end);
            child::run(engine, zygote_pid, devnull, child_end, jail)
        }
        Ok(ForkResult::Parent { child }) => {
            engine.after_fork_parent();
            drop(child_end);
            let pidfd = match pidfd_open(child) {
                Ok(fd) => fd,
                Err(e) => {
                    let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                    return report_fork_failure(control, format!("pidfd_open: {e}"));
                }
            };
            let forked = ZygoteEvent::Forked {
                pid: child.as_raw(),
            };
            control_socket::send(
                control,
                &forked,
                &[server_end.as_raw_fd(), pidfd.as_raw_fd()],
            )
            .map_err(|e| format!("handing over a child: {e}"))
        }
        Err(e) => {
            engine.after_fork_parent();
            report_fork_failure(control, format!("fork: {e}"))
        }
    }
}

fn report_fork_failure(control: &OwnedFd, message: String) -> Result<(), String> {
    control_socket::send(control, &ZygoteEvent::ForkFailed { message }, &[])
        .map_err(|e| format!("reporting a failed fork: {e}"))
}

fn reap_children(control: &OwnedFd) -> Result<(), String> {
    loop {
        let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Code(code)),
            Ok(WaitStatus::Signaled(pid, signal, _)) => (pid, ExitStatus::Signal(signal as i32)),
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return Ok(()),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("waitpid: {e}")),
        };
        let event = ZygoteEvent::Exited {
            pid: status.0.as_raw(),
            status: status.1,
        };
        control_socket::send(control, &event, &[])
            .map_err(|e| format!("reporting an exit: {e}"))?;
    }
}

fn pidfd_open(pid: Pid) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
