//! The system calls a child may make once its code runs — the whole policy, as data.
//!
//! Anything not listed fails with EPERM, so user code that tries to open a file, make a
//! socket, fork or exec gets an ordinary `PermissionError` / `Error` rather than a dead
//! process. The interpreters are fully built before the fork, which is what lets the list be
//! this short: no call below reaches a path name, a new descriptor or a new process.

/// An argument condition: the call is allowed only when `arg` masked with `mask` equals `value`.
pub struct ArgIs {
    pub arg: u8,
    pub mask: u64,
    pub value: u64,
}

/// Allowed in any form.
pub const ALLOWED: &[(i64, &str)] = &[
    // Memory: the allocators of CPython, QuickJS and Rust.
    (libc::SYS_brk, "brk"),
    (libc::SYS_mmap, "mmap"),
    (libc::SYS_munmap, "munmap"),
    (libc::SYS_mremap, "mremap"),
    (libc::SYS_mprotect, "mprotect"),
    (libc::SYS_madvise, "madvise"),
    // I/O on descriptors the child already holds: stdio on /dev/null and the job channel.
    (libc::SYS_read, "read"),
    (libc::SYS_write, "write"),
    (libc::SYS_readv, "readv"),
    (libc::SYS_writev, "writev"),
    (libc::SYS_lseek, "lseek"),
    (libc::SYS_close, "close"),
    (libc::SYS_fstat, "fstat"),
    (libc::SYS_fcntl, "fcntl"),
    // Clocks and sleeping (time.sleep, Date.now, performance timers).
    (libc::SYS_clock_gettime, "clock_gettime"),
    (libc::SYS_clock_getres, "clock_getres"),
    (libc::SYS_gettimeofday, "gettimeofday"),
    (libc::SYS_clock_nanosleep, "clock_nanosleep"),
    (libc::SYS_nanosleep, "nanosleep"),
    (libc::SYS_restart_syscall, "restart_syscall"),
    // Signal plumbing the runtimes set up for themselves.
    (libc::SYS_rt_sigaction, "rt_sigaction"),
    (libc::SYS_rt_sigprocmask, "rt_sigprocmask"),
    (libc::SYS_rt_sigreturn, "rt_sigreturn"),
    (libc::SYS_sigaltstack, "sigaltstack"),
    // Locks and scheduling inside the one thread.
    (libc::SYS_futex, "futex"),
    (libc::SYS_sched_yield, "sched_yield"),
    // Randomness for random, secrets, uuid and crypto.getRandomValues.
    (libc::SYS_getrandom, "getrandom"),
    // Harmless identity and host facts some stdlib modules read.
    (libc::SYS_getpid, "getpid"),
    (libc::SYS_gettid, "gettid"),
    (libc::SYS_getppid, "getppid"),
    (libc::SYS_getuid, "getuid"),
    (libc::SYS_geteuid, "geteuid"),
    (libc::SYS_getgid, "getgid"),
    (libc::SYS_getegid, "getegid"),
    (libc::SYS_uname, "uname"),
    (libc::SYS_getcwd, "getcwd"),
    // Leaving.
    (libc::SYS_exit, "exit"),
    (libc::SYS_exit_group, "exit_group"),
];

/// Allowed only in one form.
pub const ALLOWED_IF: &[(i64, &str, ArgIs)] = &[
    // glibc's fstat() is newfstatat(fd, "", buf, AT_EMPTY_PATH); with a path it would tell
    // which host files exist.
    (
        libc::SYS_newfstatat,
        "newfstatat with AT_EMPTY_PATH",
        ArgIs {
            arg: 3,
            mask: libc::AT_EMPTY_PATH as u64,
            value: libc::AT_EMPTY_PATH as u64,
        },
    ),
    // Reading a limit (new_limit == NULL) is fine; setting one is not.
    (
        libc::SYS_prlimit64,
        "prlimit64 reading only",
        ArgIs {
            arg: 2,
            mask: u64::MAX,
            value: 0,
        },
    ),
];
