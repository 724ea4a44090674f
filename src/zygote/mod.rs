//! A zygote: the sandlot binary re-executed as `__zygote <kind>`. It builds one interpreter,
//! imports everything on its whitelist, and then forks a single-use child per request.
//!
//! The zygote is single-threaded, holds no secret, and never sees a job: it only forks, hands
//! the server each child's job channel, pidfd and output file, and reports how each child
//! exited.

mod brokered_connection;
pub mod child;
pub mod fresh_memory;
pub mod huge_pages;
pub mod javascript;
mod native_libraries;
mod numpy_memory;
pub mod out_of_memory;
mod python;
mod python_arenas;
mod python_memory;
mod run_output;
mod shell;
mod shell_files;
mod unused_library_data;

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::control_socket;
use crate::jail::settings::{JailSettings, Layer, SettingsError};
use crate::jail::{namespaces, parent_death, Jail, JailError};
use crate::output_region;
use crate::protocol::{
    ExitStatus, Job, ZygoteCommand, ZygoteEvent, ZygoteKind, CHILD_CHANNEL_FD, CHILD_OUTPUT_FD,
    ZYGOTE_CONTROL_FD,
};

/// Why a zygote stopped. The server restarts it.
#[derive(Debug, thiserror::Error)]
pub enum ZygoteError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("opening /dev/null failed: {0}")]
    DevNull(#[source] io::Error),
    #[error(transparent)]
    Jail(#[from] JailError),
    #[error("building the interpreter failed: {0}")]
    Interpreter(String),
    #[error("routing SIGCHLD to a signalfd failed: {0}")]
    Sigchld(#[source] io::Error),
    #[error("announcing readiness failed: {0}")]
    Announce(#[source] io::Error),
    #[error("polling the control socket failed: {0}")]
    Poll(#[source] io::Error),
    #[error("reading the control socket failed: {0}")]
    ReadControl(#[source] io::Error),
    #[error("writing to the control socket failed: {0}")]
    WriteControl(#[source] io::Error),
    #[error("reaping a child failed: {0}")]
    Reap(#[source] io::Error),
}

/// An interpreter as a zygote holds it.
pub trait Engine: Sized {
    /// Builds the interpreter of this `kind` of zygote and imports the whitelist; runs once,
    /// before any fork.
    fn prepare(kind: ZygoteKind) -> Result<Self, ZygoteError>;
    /// Directories and files a child may read (Landlock): where the interpreter loads its
    /// files from.
    fn readable_paths(&self) -> Vec<std::path::PathBuf> {
        Vec::new()
    }
    /// Whether the interpreter loads native code as it goes (CPython's extension modules): its
    /// children may then map readable files executable.
    const LOADS_NATIVE_CODE: bool = false;
    /// Interpreter bookkeeping around `fork()` (CPython's `PyOS_*Fork*`).
    fn before_fork(&mut self) {}
    fn after_fork_parent(&mut self) {}
    fn after_fork_child(&mut self) {}
    /// In a locked-down child, before its job arrives (it may wait in the prefork pool):
    /// whatever a run needs that its job does not decide.
    fn prepare_run(&mut self) {}
    /// Runs one job in the locked-down child; ends with [`child::finish`].
    fn run(&mut self, job: Job) -> !;
}

/// How this zygote's children are confined: an interpreter's child by the [`Jail`] the zygote
/// prepared; the shell's child (sandlot's own supervisor of one command) by the
/// [`crate::jail::ShellJail`] its engine holds.
pub enum Confinement {
    Interpreter(Box<Jail>),
    Shell,
}

/// Entry point of `sandlot __zygote <kind>`; returns the process exit code.
pub fn main(kind: ZygoteKind) -> i32 {
    match kind {
        ZygoteKind::Python | ZygoteKind::PythonData => serve::<python::PythonEngine>(kind),
        ZygoteKind::Javascript | ZygoteKind::JavascriptModules | ZygoteKind::JavascriptIntl => {
            serve::<javascript::JavascriptEngine>(kind)
        }
        ZygoteKind::Shell => serve::<shell::ShellEngine>(kind),
    }
}

fn serve<E: Engine>(kind: ZygoteKind) -> i32 {
    // The server armed this already, before the exec, and checked that it was still our
    // parent then (supervisor::zygote_process). Not `getppid() == 1`: a container's
    // `sandlot serve` is the child of sandlot's own PID 1 (crate::pid_one).
    if parent_death::arm().is_err() {
        return 0;
    }
    // SAFETY: the server passes the zygote's end of the control socket as this descriptor and
    // nothing else in this process owns it.
    let control = unsafe { OwnedFd::from_raw_fd(ZYGOTE_CONTROL_FD) };
    match run_zygote::<E>(kind, &control) {
        Ok(()) => 0,
        Err(error) => {
            let message = error.to_string();
            eprintln!("sandlot zygote {}: {message}", kind.name());
            let _ = control_socket::send(&control, &ZygoteEvent::ForkFailed { message }, &[]);
            1
        }
    }
}

fn run_zygote<E: Engine>(kind: ZygoteKind, control: &OwnedFd) -> Result<(), ZygoteError> {
    let devnull: OwnedFd = std::fs::File::open("/dev/null")
        .map_err(ZygoteError::DevNull)?
        .into();
    hold_child_descriptor_numbers(&devnull).map_err(ZygoteError::DevNull)?;
    let settings = JailSettings::from_env()?;
    let output_size = output_region::file_size(
        settings.max.max_output_bytes,
        settings.max.max_output_files_bytes,
    );
    if settings.applies(Layer::Namespaces) {
        namespaces::enter_zygote()?;
    }
    if kind != ZygoteKind::Shell {
        huge_pages::align_program_break();
    }
    // Never dropped: a zygote leaves by returning, and an interpreter torn down with objects
    // still alive (QuickJS asserts on it) would turn a clean exit into an abort.
    let mut engine = std::mem::ManuallyDrop::new(E::prepare(kind)?);
    let runs_python = matches!(kind, ZygoteKind::Python | ZygoteKind::PythonData);
    if !runs_python {
        unused_library_data::keep_libpython_out_of_children();
    }

    // SIGCHLD arrives on a signalfd so the loop can poll it beside the control socket.
    let mut sigchld = SigSet::empty();
    sigchld.add(Signal::SIGCHLD);
    sigchld
        .thread_block()
        .map_err(|e| ZygoteError::Sigchld(e.into()))?;
    let signals = SignalFd::with_flags(&sigchld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| ZygoteError::Sigchld(e.into()))?;

    // Last before the loop: from here on this process, and every child it forks, is jailed.
    let mut confinement = if kind == ZygoteKind::Shell {
        Confinement::Shell
    } else {
        // Before the jail, which closes /proc; best effort.
        huge_pages::align_program_break();
        let _ = huge_pages::collapse_anonymous_memory();
        let _ = huge_pages::remap_read_only_code(runs_python);
        let readable = engine.readable_paths();
        let readable: Vec<&std::path::Path> = readable.iter().map(|p| p.as_path()).collect();
        let mut jail = Jail::prepare(settings, &readable, E::LOADS_NATIVE_CODE)?;
        jail.lock_zygote()?;
        Confinement::Interpreter(Box::new(jail))
    };

    let ready = ZygoteEvent::Ready {
        pid: std::process::id() as i32,
    };
    control_socket::send(control, &ready, &[]).map_err(ZygoteError::Announce)?;

    loop {
        let (command_ready, child_exited) = {
            let mut fds = [
                PollFd::new(control.as_fd(), PollFlags::POLLIN),
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(ZygoteError::Poll(e.into())),
            }
            let hit = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            (hit(&fds[0]), hit(&fds[1]))
        };
        if child_exited {
            while let Ok(Some(_)) = signals.read_signal() {}
            reap_children(control)?;
        }
        if command_ready {
            match control_socket::recv_command(control) {
                Ok(Some(ZygoteCommand::Fork)) => fork_child(
                    &mut *engine,
                    control,
                    &devnull,
                    &mut confinement,
                    &sigchld,
                    output_size,
                )?,
                // The server is gone: so are we (our children die with us by PDEATHSIG).
                Ok(None) => return Ok(()),
                Err(e) => return Err(ZygoteError::ReadControl(e)),
            }
        }
    }
}

/// Occupies a child's fixed descriptor numbers (its channel's and its output's) in the zygote
/// before the interpreter is built, so that no descriptor the interpreter owns ever has one of
/// them: a child's interpreter may close its own descriptors at any time (matplotlib's font
/// file, when its cache is dropped), which must not close the channel or the output file put at
/// that number.
fn hold_child_descriptor_numbers(devnull: &OwnedFd) -> io::Result<()> {
    for number in [CHILD_CHANNEL_FD, CHILD_OUTPUT_FD] {
        if number == devnull.as_raw_fd() {
            continue;
        }
        // SAFETY: the number is free or a copy made here; the copy is never closed by us (a
        // child's isolation replaces it) and no Rust object owns that number.
        if unsafe { libc::dup2(devnull.as_raw_fd(), number) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn fork_child<E: Engine>(
    engine: &mut E,
    control: &OwnedFd,
    devnull: &OwnedFd,
    confinement: &mut Confinement,
    blocked: &SigSet,
    output_size: u64,
) -> Result<(), ZygoteError> {
    let output = match output_region::create(output_size) {
        Ok(file) => file,
        Err(e) => return report_fork_failure(control, format!("the output file: {e}")),
    };
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
            fresh_memory::use_region_in_child();
            engine.after_fork_child();
            let _ = blocked.thread_unblock();
            drop(server_end);
            // A panic must neither unwind into the zygote's loop nor leave through `exit`,
            // whose finalizers would call into libraries a child no longer maps
            // (`unused_library_data`).
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                child::run(engine, zygote_pid, devnull, child_end, output, confinement);
            }));
            // SAFETY: _exit ends the child at once, running nothing of the zygote's.
            unsafe { libc::_exit(101) }
        }
        Ok(ForkResult::Parent { child }) => {
            engine.after_fork_parent();
            drop(child_end);
            let pidfd = match pidfd_open(child) {
                Ok(fd) => fd,
                Err(e) => {
                    // Without a pidfd the server could not kill it: the child reads EOF on its
                    // channel once `server_end` is dropped, and leaves.
                    return report_fork_failure(control, format!("pidfd_open: {e}"));
                }
            };
            let forked = ZygoteEvent::Forked {
                pid: child.as_raw(),
            };
            control_socket::send(
                control,
                &forked,
                &[
                    server_end.as_raw_fd(),
                    pidfd.as_raw_fd(),
                    output.as_raw_fd(),
                ],
            )
            .map_err(ZygoteError::WriteControl)
        }
        Err(e) => {
            engine.after_fork_parent();
            report_fork_failure(control, format!("fork: {e}"))
        }
    }
}

fn report_fork_failure(control: &OwnedFd, message: String) -> Result<(), ZygoteError> {
    control_socket::send(control, &ZygoteEvent::ForkFailed { message }, &[])
        .map_err(ZygoteError::WriteControl)
}

fn reap_children(control: &OwnedFd) -> Result<(), ZygoteError> {
    loop {
        let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Code(code)),
            Ok(WaitStatus::Signaled(pid, signal, _)) => (pid, ExitStatus::Signal(signal as i32)),
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return Ok(()),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(ZygoteError::Reap(e.into())),
        };
        let event = ZygoteEvent::Exited {
            pid: status.0.as_raw(),
            status: status.1,
        };
        control_socket::send(control, &event, &[]).map_err(ZygoteError::WriteControl)?;
    }
}

fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
