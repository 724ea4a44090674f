//! The system calls a child may make once its code runs — the whole policy, as data.
//!
//! Four tiers:
//! - [`ALLOWED`] and [`ALLOWED_IF`]: what the interpreters need, and
//!   [`super::seccomp_socket_use::SOCKET_USE`]: using a socket the broker handed over. The interpreters are fully
//!   built before the fork, which is what lets the list be this short.
//! - [`ZYGOTE_ONLY`]: what a locked-down zygote also needs to fork and hand over children, and
//!   what a child needs for its own few set-up steps. The zygote's filter allows them; each
//!   child, once set up, refuses them to itself with a short filter of its own, so its code
//!   runs under exactly the first tier.
//! - Anything else fails with EPERM, so user code that innocently tries to open a file for
//!   writing, make a socket, fork or exec gets an ordinary `PermissionError` / `Error`. The
//!   kernel traps those calls, and the process's own handler answers EPERM and notes the call,
//!   so that the run's error names it (`refused_calls.rs`) — but for [`UNTRAPPED`], which the
//!   kernel answers itself.
//! - [`KILLED`]: calls that only an exploit makes. The process dies on the spot (SIGSYS).

/// One condition on an argument: `arg` masked with `mask` equals `value`. `dword` compares the
/// low 32 bits only, for arguments the kernel reads as `int`.
pub struct ArgIs {
    pub arg: u8,
    pub mask: u64,
    pub value: u64,
    pub dword: bool,
}

pub(super) const fn qword(arg: u8, mask: u64, value: u64) -> ArgIs {
    ArgIs {
        arg,
        mask,
        value,
        dword: false,
    }
}

pub(super) const fn dword(arg: u8, mask: u64, value: u64) -> ArgIs {
    ArgIs {
        arg,
        mask,
        value,
        dword: true,
    }
}

/// Allowed in any form.
pub const ALLOWED: &[(i64, &str)] = &[
    // Memory: the allocators of CPython, QuickJS and Rust (mapping is in ALLOWED_IF).
    (libc::SYS_brk, "brk"),
    (libc::SYS_munmap, "munmap"),
    (libc::SYS_mremap, "mremap"),
    (libc::SYS_madvise, "madvise"),
    // I/O on descriptors the child holds: stdio on /dev/null, the job channel, and files
    // opened read-only under Landlock.
    (libc::SYS_read, "read"),
    (libc::SYS_write, "write"),
    (libc::SYS_readv, "readv"),
    (libc::SYS_writev, "writev"),
    (libc::SYS_pread64, "pread64"),
    (libc::SYS_lseek, "lseek"),
    (libc::SYS_close, "close"),
    (libc::SYS_fstat, "fstat"),
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
    // A run's own CPU time, peak memory and page faults, for its report.
    (libc::SYS_getrusage, "getrusage"),
    (libc::SYS_getcwd, "getcwd"),
    // The run's own wall-clock alarm, armed once it knows its job (a backstop to the server's
    // deadline; it can only end the process itself).
    (libc::SYS_setitimer, "setitimer"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_alarm, "alarm"),
    // Leaving.
    (libc::SYS_exit, "exit"),
    (libc::SYS_exit_group, "exit_group"),
];

const PROT_EXEC: u64 = libc::PROT_EXEC as u64;
/// Every `open` flag that writes, creates or truncates. `O_TMPFILE` is checked by its own bit
/// (`__O_TMPFILE`), since the constant also carries `O_DIRECTORY`, which reading may use.
const WRITING_FLAGS: u64 =
    (libc::O_ACCMODE | libc::O_CREAT | libc::O_TRUNC | libc::O_APPEND) as u64 | 0o20000000;

/// `fcntl` commands, as the kernel reads them (an `int`).
const fn fcntl_command(command: i32) -> ArgIs {
    dword(1, u32::MAX as u64, command as u64)
}

/// Allowed only in the listed forms: an entry's conditions must all hold; entries for the same
/// call are alternatives.
pub const ALLOWED_IF: &[(i64, &str, &[ArgIs])] = &[
    // isatty(), which Python asks of every file it opens as text (each import of a module's
    // source): no descriptor a child holds is a terminal, so the kernel answers ENOTTY, as it
    // would outside the jail, where a refusal would trap (`refused_calls.rs`) on every import.
    (
        libc::SYS_ioctl,
        "ioctl(TCGETS)",
        &[dword(1, u32::MAX as u64, libc::TCGETS)],
    ),
    // fcntl for what the runtimes do with descriptors: copy them, read and set close-on-exec
    // and non-blocking, read a memory file's seals. Never the commands that make the kernel
    // signal someone on the child's behalf — F_SETOWN(_EX) naming another process plus O_ASYNC
    // on the job channel would send it SIGIO whenever the server writes — nor leases,
    // directory notifications or locks.
    (
        libc::SYS_fcntl,
        "fcntl(F_DUPFD)",
        &[fcntl_command(libc::F_DUPFD)],
    ),
    (
        libc::SYS_fcntl,
        "fcntl(F_DUPFD_CLOEXEC)",
        &[fcntl_command(libc::F_DUPFD_CLOEXEC)],
    ),
    (
        libc::SYS_fcntl,
        "fcntl(F_GETFD)",
        &[fcntl_command(libc::F_GETFD)],
    ),
    (
        libc::SYS_fcntl,
        "fcntl(F_SETFD)",
        &[fcntl_command(libc::F_SETFD)],
    ),
    (
        libc::SYS_fcntl,
        "fcntl(F_GETFL)",
        &[fcntl_command(libc::F_GETFL)],
    ),
    (
        libc::SYS_fcntl,
        "fcntl(F_SETFL) without O_ASYNC",
        &[
            fcntl_command(libc::F_SETFL),
            dword(2, libc::O_ASYNC as u64, 0),
        ],
    ),
    (
        libc::SYS_fcntl,
        "fcntl(F_GET_SEALS)",
        &[fcntl_command(libc::F_GET_SEALS)],
    ),
    // No executable memory once the interpreter is up: neither CPython nor QuickJS generates
    // machine code, and every extension module was loaded before the fork.
    (
        libc::SYS_mmap,
        "mmap without PROT_EXEC",
        &[qword(2, PROT_EXEC, 0)],
    ),
    (
        libc::SYS_mprotect,
        "mprotect without PROT_EXEC",
        &[qword(2, PROT_EXEC, 0)],
    ),
    // Reading a limit (new_limit == NULL) is fine.
    (
        libc::SYS_prlimit64,
        "prlimit64 reading only",
        &[qword(2, u64::MAX, 0)],
    ),
    // The child lowers its own memory and CPU limits to the job's once it has read the job.
    // Without privilege a limit can only go down (soft and hard are set equal).
    (
        libc::SYS_prlimit64,
        "prlimit64 on itself, RLIMIT_AS",
        &[
            qword(0, u64::MAX, 0),
            dword(1, u32::MAX as u64, libc::RLIMIT_AS as u64),
        ],
    ),
    (
        libc::SYS_prlimit64,
        "prlimit64 on itself, RLIMIT_CPU",
        &[
            qword(0, u64::MAX, 0),
            dword(1, u32::MAX as u64, libc::RLIMIT_CPU as u64),
        ],
    ),
];

/// glibc's `fork()`: `clone` with exactly these flags (no shared memory, no thread).
pub(super) const FORK_FLAGS: u64 =
    (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD) as u64;

/// Allowed to a locked-down zygote, and to a child until its own set-up is done: forking and
/// handing over children on the control socket, reaping them, and the child's set-up steps
/// (its death signal, its descriptors, its process limit, its alarm, its nested Landlock
/// domain, its own filter). Entries for the same call are alternatives; a child refuses every
/// call named here once set up, in any form but for the calls the interpreters make in other
/// forms and `clone`, whose other forms the untrapped list refuses.
pub const ZYGOTE_ONLY: &[(i64, &str, &[ArgIs])] = &[
    (
        libc::SYS_clone,
        "clone as fork()",
        &[qword(0, u64::MAX, FORK_FLAGS)],
    ),
    (libc::SYS_set_robust_list, "set_robust_list", &[]),
    (
        libc::SYS_socketpair,
        "socketpair of unix sockets",
        &[dword(0, u32::MAX as u64, libc::AF_UNIX as u64)],
    ),
    (libc::SYS_sendmsg, "sendmsg", &[]),
    (libc::SYS_wait4, "wait4", &[]),
    (libc::SYS_waitid, "waitid", &[]),
    (libc::SYS_pidfd_open, "pidfd_open", &[]),
    // Each child's output file (`output_region::create`), sized before the fork; its seals
    // (fcntl) forbid anyone to resize it afterwards.
    (libc::SYS_memfd_create, "memfd_create", &[]),
    (libc::SYS_ftruncate, "ftruncate", &[]),
    (
        libc::SYS_fcntl,
        "fcntl(F_ADD_SEALS)",
        &[fcntl_command(libc::F_ADD_SEALS)],
    ),
    (
        libc::SYS_prctl,
        "prctl(PR_SET_PDEATHSIG)",
        &[dword(0, u32::MAX as u64, libc::PR_SET_PDEATHSIG as u64)],
    ),
    (
        libc::SYS_prctl,
        "prctl(PR_SET_NO_NEW_PRIVS)",
        &[dword(0, u32::MAX as u64, libc::PR_SET_NO_NEW_PRIVS as u64)],
    ),
    (libc::SYS_dup3, "dup3", &[]),
    (libc::SYS_close_range, "close_range", &[]),
    (
        libc::SYS_prlimit64,
        "prlimit64 on itself, RLIMIT_NPROC",
        &[
            qword(0, u64::MAX, 0),
            dword(1, u32::MAX as u64, libc::RLIMIT_NPROC as u64),
        ],
    ),
    (
        libc::SYS_prlimit64,
        "prlimit64 on itself, RLIMIT_FSIZE",
        &[
            qword(0, u64::MAX, 0),
            dword(1, u32::MAX as u64, libc::RLIMIT_FSIZE as u64),
        ],
    ),
    (
        libc::SYS_prlimit64,
        "prlimit64 on itself, RLIMIT_NOFILE",
        &[
            qword(0, u64::MAX, 0),
            dword(1, u32::MAX as u64, libc::RLIMIT_NOFILE as u64),
        ],
    ),
    (
        libc::SYS_landlock_restrict_self,
        "landlock_restrict_self",
        &[],
    ),
    (
        libc::SYS_seccomp,
        "seccomp(SECCOMP_SET_MODE_FILTER)",
        &[dword(
            0,
            u32::MAX as u64,
            libc::SECCOMP_SET_MODE_FILTER as u64,
        )],
    ),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_dup2, "dup2", &[]),
];

/// Only with Landlock on: opening for reading. Landlock decides *what* may be read (the
/// interpreter's own files); without Landlock, `openat` falls to EPERM like every other call.
/// Never `O_PATH`: such an open never reaches Landlock's check, and `fstat` of the descriptor
/// would tell any host path's size, owner and times. (`openat2`, whose flags are in a struct
/// seccomp cannot read, is not allowed at all.)
pub const READ_ONLY_OPEN: (i64, &str, &[ArgIs]) = (
    libc::SYS_openat,
    "openat read-only, not O_PATH",
    &[dword(2, WRITING_FLAGS, 0), dword(2, libc::O_PATH as u64, 0)],
);

/// Trapped, and answered by the process itself (`stat_emulation.rs`): glibc's `fstat(fd)` is
/// `newfstatat(fd, "", buf, AT_EMPTY_PATH)`, and seccomp cannot see whether the path is empty
/// — with a path, the call would tell any host file's size, owner and times, which Landlock
/// does not guard. The handler answers the empty-path form with `fstat(fd)` and every other
/// form with EPERM.
pub const EMULATED: &[(i64, &str)] = &[(libc::SYS_newfstatat, "newfstatat")];

/// Only with Landlock on, for an interpreter that loads native code as it goes (CPython's
/// extension modules): mapping a *file* executable, not writable and private, as the dynamic
/// loader does (a shared executable mapping would follow writes made to the file through
/// another mapping; the one file a child can write, its output file, has no descriptor left
/// once the run starts, `zygote::run_output::begin`). A child makes no anonymous memory
/// executable and `mprotect` never adds `PROT_EXEC`, so no page is writable and executable at
/// once, and what executes is the content of a file a child may open at all (read-only: the
/// interpreter's own, and the libraries they need), which is Landlock's to say, or the copies of
/// such code its zygote made before its jail (`zygote::huge_pages::remap_read_only_code`).
pub const EXECUTABLE_FILE_MAPPING: (i64, &str, &[ArgIs]) = (
    libc::SYS_mmap,
    "mmap of a file, executable but not writable (the dynamic loader)",
    &[
        qword(3, libc::MAP_ANONYMOUS as u64, 0),
        qword(3, libc::MAP_SHARED as u64, 0),
        qword(2, libc::PROT_WRITE as u64, 0),
    ],
);

/// Only with Landlock on: listing a directory opened read-only (Python's import system lists
/// the directories it imports from; Landlock limits which).
pub const LIST_DIRECTORY: (i64, &str) = (libc::SYS_getdents64, "getdents64");

/// Refused with EPERM by the kernel itself, never trapped: what glibc or CPython call with every
/// signal blocked, where a trapped call (SIGSYS blocked) kills the process — process and thread
/// creation other than the zygote's own `fork()` (`pthread_create`, `posix_spawn`, CPython's
/// `vfork`; `clone` with other flags is [`FORK_FLAGS`]' complement, built in `seccomp.rs`) and
/// a signal sent to oneself (`raise`, `abort`) — and the SIGSYS handler that answers the
/// trapped calls, replaced or asked about.
pub const UNTRAPPED: &[(i64, &str, &[ArgIs])] = &[
    (libc::SYS_clone3, "clone3", &[]),
    (libc::SYS_tgkill, "tgkill", &[]),
    (libc::SYS_tkill, "tkill", &[]),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_fork, "fork", &[]),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_vfork, "vfork", &[]),
    (
        libc::SYS_rt_sigaction,
        "rt_sigaction for SIGSYS",
        &[dword(0, u32::MAX as u64, libc::SIGSYS as u64)],
    ),
];

/// Calls no interpreter makes and no innocent code needs: the kernel attack surface of an
/// exploit (debugging other processes, kernel modules and images, mounts and namespaces, keys,
/// io_uring, eBPF, userfaultfd, perf, raw handles). The process is killed outright.
pub const KILLED: &[(i64, &str)] = &[
    (libc::SYS_ptrace, "ptrace"),
    (libc::SYS_process_vm_readv, "process_vm_readv"),
    (libc::SYS_process_vm_writev, "process_vm_writev"),
    (libc::SYS_pidfd_getfd, "pidfd_getfd"),
    (libc::SYS_kcmp, "kcmp"),
    (libc::SYS_bpf, "bpf"),
    (libc::SYS_perf_event_open, "perf_event_open"),
    (libc::SYS_userfaultfd, "userfaultfd"),
    (libc::SYS_io_uring_setup, "io_uring_setup"),
    (libc::SYS_io_uring_enter, "io_uring_enter"),
    (libc::SYS_io_uring_register, "io_uring_register"),
    (libc::SYS_keyctl, "keyctl"),
    (libc::SYS_add_key, "add_key"),
    (libc::SYS_request_key, "request_key"),
    (libc::SYS_mount, "mount"),
    (libc::SYS_umount2, "umount2"),
    (libc::SYS_pivot_root, "pivot_root"),
    (libc::SYS_chroot, "chroot"),
    (libc::SYS_fsopen, "fsopen"),
    (libc::SYS_fsconfig, "fsconfig"),
    (libc::SYS_fsmount, "fsmount"),
    (libc::SYS_fspick, "fspick"),
    (libc::SYS_move_mount, "move_mount"),
    (libc::SYS_open_tree, "open_tree"),
    (libc::SYS_mount_setattr, "mount_setattr"),
    (libc::SYS_unshare, "unshare"),
    (libc::SYS_setns, "setns"),
    (libc::SYS_kexec_load, "kexec_load"),
    (libc::SYS_kexec_file_load, "kexec_file_load"),
    (libc::SYS_init_module, "init_module"),
    (libc::SYS_finit_module, "finit_module"),
    (libc::SYS_delete_module, "delete_module"),
    (libc::SYS_open_by_handle_at, "open_by_handle_at"),
    (libc::SYS_name_to_handle_at, "name_to_handle_at"),
    (libc::SYS_iopl, "iopl"),
    (libc::SYS_ioperm, "ioperm"),
    (libc::SYS_swapon, "swapon"),
    (libc::SYS_swapoff, "swapoff"),
    (libc::SYS_reboot, "reboot"),
    (libc::SYS_acct, "acct"),
    (libc::SYS_quotactl, "quotactl"),
];
