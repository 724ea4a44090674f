//! Starting a zygote process: our own binary re-executed as `__zygote <kind>`, with nothing of
//! the server's environment, its control socket at its fixed number, tied to the server by its
//! parent-death signal; and relaying what it says on stderr into the server's log.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::jail::settings::JailSettings;
use crate::protocol::{ZygoteKind, JAIL_SETTINGS_ENV, ZYGOTE_CONTROL_FD};

/// Logs each line a zygote writes on stderr, until it exits.
pub fn relay_stderr(kind: &'static str, stderr: std::process::ChildStderr) {
    use std::io::BufRead;
    for line in std::io::BufReader::new(stderr).lines() {
        let Ok(line) = line else { return };
        tracing::warn!(zygote = kind, "{line}");
    }
}

/// `/proc/self/exe __zygote <kind>`, with a scrubbed environment and its control socket on
/// [`ZYGOTE_CONTROL_FD`].
pub fn spawn_zygote(
    kind: ZygoteKind,
    jail: &JailSettings,
    env: &[(String, String)],
    control: &OwnedFd,
) -> std::io::Result<std::process::Child> {
    let control_fd = control.as_raw_fd();
    // The zygote's real parent: compared with getppid() once its death signal is armed (which
    // must not rely on "adopted by PID 1": as a container's PID 1 we are that init's child).
    let server = nix::unistd::getpid().as_raw();
    let mut command = Command::new("/proc/self/exe");
    command
        .arg("__zygote")
        .arg(kind.name())
        .env_clear()
        .envs(zygote_environment(kind))
        .env(JAIL_SETTINGS_ENV, jail.to_env())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // What a zygote says on stderr (a failed start, a module that did not import) goes
        // into the server's log; its children's stdio is /dev/null (jail/fds.rs).
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec this only calls async-signal-safe functions (dup2, fcntl,
    // prctl, getppid) on descriptors that exist in the forked child.
    unsafe {
        command.pre_exec(move || {
            if control_fd == ZYGOTE_CONTROL_FD {
                if libc::fcntl(ZYGOTE_CONTROL_FD, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(control_fd, ZYGOTE_CONTROL_FD) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // The server died before the signal was armed: nothing would ever kill this one.
            // (The signal survives the exec, so the zygote need not check again.)
            if libc::getppid() != server {
                return Err(std::io::Error::other("the server exited while starting it"));
            }
            Ok(())
        });
    }
    command.spawn()
}

/// How glibc's malloc serves the python-data zygote's children: from the heap up to 32 MiB (not
/// a fresh mapping for each of numpy's arrays), kept until exit, and in transparent huge pages,
/// so a DataFrame's columns fault in 2 MiB at a time. A 100k-row groupby: 21.0 -> 18.1 ms, 4745
/// -> 2326 faults a run; the trivial pandas run unchanged. The python zygote is left alone: its
/// trivial runs touch a few pages of new heap each, and a huge page there cost them ~5%.
const PYTHON_DATA_MALLOC: &str = "glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=33554432:\
                                  glibc.malloc.trim_threshold=67108864";

/// Everything a zygote's environment holds: no variable of the server's passes, so no secret
/// can reach an interpreter.
fn zygote_environment(kind: ZygoteKind) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("PATH", "/usr/bin:/bin".to_owned()),
        ("LANG", "C.UTF-8".to_owned()),
        ("HOME", "/nonexistent".to_owned()),
        ("PYTHONUTF8", "1".to_owned()),
        ("PYTHONDONTWRITEBYTECODE", "1".to_owned()),
        ("PYTHONNOUSERSITE", "1".to_owned()),
        ("OPENBLAS_NUM_THREADS", "1".to_owned()),
        ("OMP_NUM_THREADS", "1".to_owned()),
        ("MKL_NUM_THREADS", "1".to_owned()),
    ];
    if let Ok(tz) = std::env::var("TZ") {
        env.push(("TZ", tz));
    }
    if kind == ZygoteKind::PythonData {
        env.push(("GLIBC_TUNABLES", PYTHON_DATA_MALLOC.to_owned()));
    }
    if matches!(
        kind,
        ZygoteKind::Javascript | ZygoteKind::JavascriptModules | ZygoteKind::JavascriptIntl
    ) {
        // The dynamic loader binds a function of libc, libm or libgcc_s on its first call: it
        // looks the name up through every loaded library's symbol tables (libpython's too) and
        // writes the caller's GOT. A function first called in a child cost that child those
        // pages: bound in the zygote at its start instead, a JavaScript run faults 96 -> 87
        // pages. The Python zygotes' rehearsal calls what a run calls (no change measured
        // there); a shell command must not inherit the variable.
        env.push(("LD_BIND_NOW", "1".to_owned()));
    }
    env
}
