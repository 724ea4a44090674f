//! The call the jail refused last during a run, so that a refusal's error can name it
//! ("operation not permitted" alone says nothing of which call, or that the sandbox was why).
//!
//! The allowlist and each child's own filter *trap* what they refuse instead of answering
//! EPERM themselves: the process gets SIGSYS, and the handler (`stat_emulation.rs`) notes the
//! call here and answers EPERM, so the code sees what it saw before. What glibc calls with
//! every signal blocked — process and thread creation, a signal to itself — is answered EPERM
//! by the kernel instead (`UNTRAPPED` in `seccomp_policy.rs`): a trap with SIGSYS blocked
//! would kill the process. Those refusals go unnamed.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

/// The call the jail refused last, or -1.
static LAST: AtomicI64 = AtomicI64::new(-1);

/// Notes a refused call. Async-signal-safe: one atomic store.
pub fn record(nr: i64) {
    LAST.store(nr, Relaxed);
}

/// Forgets what was noted before: a child's run starts with none of its zygote's.
pub fn clear() {
    LAST.store(-1, Relaxed);
}

/// The call the jail refused last in this run, by name.
pub fn last() -> Option<String> {
    let nr = LAST.load(Relaxed);
    (nr >= 0).then(|| name_of(nr))
}

/// A failed run's message with the call the jail refused last named, when the message is a
/// refusal's ("Operation not permitted"). Said as the last one, not as the cause: libraries
/// meet refusals they get past (Python's `import socket` asks for an epoll descriptor), and a
/// refusal the kernel answers untrapped is never noted.
pub fn explain(message: &str, last: Option<&str>) -> String {
    const REFUSAL: &[u8] = b"not permitted";
    let is_refusal = message
        .as_bytes()
        .windows(REFUSAL.len())
        .any(|window| window.eq_ignore_ascii_case(REFUSAL));
    match last {
        Some(call) if is_refusal => {
            format!("{message} (the last system call the sandbox refused was `{call}`)")
        }
        _ => message.to_owned(),
    }
}

/// A call's name, or its number where this table has none.
pub fn name_of(nr: i64) -> String {
    NAMES
        .iter()
        .find(|(n, _)| *n == nr)
        .map_or_else(|| format!("#{nr}"), |(_, name)| (*name).to_owned())
}

/// The trapped calls code in a sandbox reaches for most often, as the kernel names them (the
/// untrapped ones, `clone` and the rest, are never noted).
const NAMES: &[(i64, &str)] = &[
    (libc::SYS_socket, "socket"),
    (libc::SYS_socketpair, "socketpair"),
    (libc::SYS_connect, "connect"),
    (libc::SYS_bind, "bind"),
    (libc::SYS_listen, "listen"),
    (libc::SYS_accept, "accept"),
    (libc::SYS_accept4, "accept4"),
    (libc::SYS_sendmsg, "sendmsg"),
    (libc::SYS_sendmmsg, "sendmmsg"),
    (libc::SYS_recvmmsg, "recvmmsg"),
    (libc::SYS_execve, "execve"),
    (libc::SYS_execveat, "execveat"),
    (libc::SYS_kill, "kill"),
    (libc::SYS_wait4, "wait4"),
    (libc::SYS_waitid, "waitid"),
    (libc::SYS_pidfd_open, "pidfd_open"),
    (libc::SYS_pidfd_send_signal, "pidfd_send_signal"),
    (libc::SYS_openat, "openat"),
    (libc::SYS_openat2, "openat2"),
    (libc::SYS_newfstatat, "newfstatat (stat)"),
    (libc::SYS_statx, "statx"),
    (libc::SYS_faccessat, "faccessat"),
    (libc::SYS_faccessat2, "faccessat2"),
    (libc::SYS_readlinkat, "readlinkat"),
    (libc::SYS_getdents64, "getdents64"),
    (libc::SYS_mkdirat, "mkdirat"),
    (libc::SYS_unlinkat, "unlinkat"),
    (libc::SYS_renameat2, "renameat2"),
    (libc::SYS_linkat, "linkat"),
    (libc::SYS_symlinkat, "symlinkat"),
    (libc::SYS_fchmodat, "fchmodat"),
    (libc::SYS_fchmod, "fchmod"),
    (libc::SYS_fchownat, "fchownat"),
    (libc::SYS_fchown, "fchown"),
    (libc::SYS_utimensat, "utimensat"),
    (libc::SYS_truncate, "truncate"),
    (libc::SYS_ftruncate, "ftruncate"),
    (libc::SYS_fallocate, "fallocate"),
    (libc::SYS_chdir, "chdir"),
    (libc::SYS_fchdir, "fchdir"),
    (libc::SYS_getcwd, "getcwd"),
    (libc::SYS_dup3, "dup3"),
    (libc::SYS_close_range, "close_range"),
    (libc::SYS_fcntl, "fcntl"),
    (libc::SYS_ioctl, "ioctl"),
    (libc::SYS_flock, "flock"),
    (libc::SYS_mmap, "mmap"),
    (libc::SYS_mprotect, "mprotect"),
    (libc::SYS_madvise, "madvise"),
    (libc::SYS_mlock, "mlock"),
    (libc::SYS_memfd_create, "memfd_create"),
    (libc::SYS_prctl, "prctl"),
    (libc::SYS_prlimit64, "prlimit64"),
    (libc::SYS_setrlimit, "setrlimit"),
    (libc::SYS_setpriority, "setpriority"),
    (libc::SYS_sched_setaffinity, "sched_setaffinity"),
    (libc::SYS_sched_setscheduler, "sched_setscheduler"),
    (libc::SYS_setuid, "setuid"),
    (libc::SYS_setgid, "setgid"),
    (libc::SYS_setsid, "setsid"),
    (libc::SYS_setpgid, "setpgid"),
    (libc::SYS_timer_create, "timer_create"),
    (libc::SYS_timerfd_create, "timerfd_create"),
    (libc::SYS_eventfd2, "eventfd2"),
    (libc::SYS_inotify_init1, "inotify_init1"),
    (libc::SYS_epoll_create1, "epoll_create1"),
    (libc::SYS_pipe2, "pipe2"),
    (libc::SYS_sysinfo, "sysinfo"),
    (libc::SYS_uname, "uname"),
    (libc::SYS_sethostname, "sethostname"),
    (libc::SYS_syslog, "syslog"),
    (libc::SYS_sigaltstack, "sigaltstack"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_open, "open"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_stat, "stat"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_lstat, "lstat"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_access, "access"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_pipe, "pipe"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_mkdir, "mkdir"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_unlink, "unlink"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_rename, "rename"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_chmod, "chmod"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_chown, "chown"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_dup2, "dup2"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_alarm, "alarm"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_renameat, "renameat"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_refused_call_is_named_in_a_refusal_s_message_only() {
        clear();
        assert_eq!(last(), None);
        record(libc::SYS_epoll_create1);
        record(libc::SYS_socket);
        assert_eq!(last().as_deref(), Some("socket"));
        assert_eq!(
            explain(
                "PermissionError: [Errno 1] Operation not permitted",
                last().as_deref()
            ),
            "PermissionError: [Errno 1] Operation not permitted (the last system call the sandbox \
             refused was `socket`)"
        );
        assert_eq!(
            explain("RuntimeError: can't start new thread", last().as_deref()),
            "RuntimeError: can't start new thread"
        );
        assert!(explain("E: NOT PERMITTED", last().as_deref()).ends_with("`socket`)"));
        record(9999);
        assert_eq!(last().as_deref(), Some("#9999"));
        clear();
        assert_eq!(last(), None);
    }
}
