//! Namespaces. A zygote enters its own once ([`enter_zygote`]), so every child it forks shares
//! them at no cost per run: a network namespace with nothing but a downed loopback (no route to
//! the host, not even its 127.0.0.1), and private IPC and UTS namespaces (no SysV/POSIX IPC
//! with the host, a hostname of its own). A shell run adds mount and pid namespaces of its own
//! ([`enter_shell`]).
//!
//! Run as root, the zygote unshares them directly. Otherwise it first enters a user namespace
//! that maps only its own uid and gid, which is what lets an unprivileged user create the rest.

use std::io;

use nix::sched::{unshare, CloneFlags};
use nix::unistd::{getegid, geteuid, sethostname};

use super::JailError;

const ZYGOTE: CloneFlags = CloneFlags::CLONE_NEWNET
    .union(CloneFlags::CLONE_NEWIPC)
    .union(CloneFlags::CLONE_NEWUTS);

/// Moves the calling (single-threaded) zygote into fresh namespaces.
pub fn enter_zygote() -> Result<(), JailError> {
    let unshare = |flags| unshare(flags).map_err(|e| JailError::Unshare(e.into()));
    if geteuid().is_root() {
        unshare(ZYGOTE)?;
    } else {
        let (uid, gid) = (geteuid().as_raw(), getegid().as_raw());
        unshare(CloneFlags::CLONE_NEWUSER | ZYGOTE)?;
        map_own_ids(uid, gid).map_err(JailError::MapIds)?;
    }
    // `socket.gethostname()` in a child says "sandlot", not the host's name.
    sethostname("sandlot").map_err(|e| JailError::Hostname(e.into()))
}

/// A shell run's own mount namespace (its file system view) and pid namespace (its processes
/// die with its init).
pub fn enter_shell() -> Result<(), JailError> {
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID)
        .map_err(|e| JailError::Unshare(e.into()))
}

/// In an unprivileged sandlot's shell run, pid 1 once it has entered its root (a user namespace
/// must not own the mount namespace it pivots in: it would lack the right to pivot), before its
/// rlimits: a user namespace of the run's own, mapping only our uid and gid. The kernel counts
/// RLIMIT_NPROC per user namespace and uid, and checks each level up to the host's: the run's
/// processes count against the run's limit alone, while the level above (the server's uid) is
/// checked against the limit pid 1 had when it created the namespace — the server's, hence
/// before [`super::resource_limits::apply_to_shell`] lowers it. So runs that share the server's
/// uid no longer share one process budget.
pub fn enter_shell_user() -> Result<(), JailError> {
    let (uid, gid) = (geteuid().as_raw(), getegid().as_raw());
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| JailError::Unshare(e.into()))?;
    map_own_ids(uid, gid).map_err(JailError::MapIds)
}

/// Inside a new user namespace: the same uid and gid as outside, nothing else mapped.
fn map_own_ids(uid: u32, gid: u32) -> io::Result<()> {
    std::fs::write("/proc/self/setgroups", "deny")?;
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1"))?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"))
}
