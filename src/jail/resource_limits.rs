//! rlimits: the kernel's own caps on what one child may use. The memory cap is a budget above
//! what the forked interpreter already maps, so `memory_mb` means memory the user's code can
//! have, whatever the interpreter's own size.
//!
//! A child is capped at the server's maxima before it reads its job ([`apply`]), then narrowed
//! to the job's own limits ([`Budget::narrow`]). An unprivileged child can lower a limit but never
//! raise its hard limit.

use std::io;

use rlimit::Resource;

use super::JailError;
use crate::run::Limits;

/// Descriptors a child may hold: its three stdio slots, its channel, and a little slack for
/// the read-only files an interpreter may open.
const MAX_OPEN_FILES: u64 = 16;

/// What the child mapped before any limit: the base its memory budget is added to.
pub struct Budget {
    mapped: u64,
}

pub fn apply(max: &Limits) -> Result<Budget, JailError> {
    let budget = Budget {
        mapped: mapped_bytes().map_err(|e| JailError::ResourceLimit("RLIMIT_AS", e))?,
    };
    budget.set_time_and_memory(max)?;
    set(
        Resource::NOFILE,
        MAX_OPEN_FILES,
        MAX_OPEN_FILES,
        "RLIMIT_NOFILE",
    )?;
    set(Resource::NPROC, 0, 0, "RLIMIT_NPROC")?;
    set(Resource::FSIZE, 0, 0, "RLIMIT_FSIZE")?;
    set(Resource::CORE, 0, 0, "RLIMIT_CORE")?;

    // A wall-clock backstop too: SIGALRM, whose default action ends the process, two seconds
    // after the longest deadline, in case the server cannot deliver its SIGKILL.
    arm_alarm(max.timeout_ms + 2000)?;
    Ok(budget)
}

impl Budget {
    /// Lowers memory and CPU time to the job's limits (seccomp allows exactly these two).
    pub fn narrow(&self, job: &Limits) -> Result<(), JailError> {
        self.set_time_and_memory(job)
    }

    fn set_time_and_memory(&self, limits: &Limits) -> Result<(), JailError> {
        let address_space = self
            .mapped
            .saturating_add(limits.memory_mb.saturating_mul(1024 * 1024));
        set(Resource::AS, address_space, address_space, "RLIMIT_AS")?;
        // CPU time is a backstop for the server's wall-clock deadline: SIGXCPU one second
        // after it, SIGKILL a second later.
        let cpu_seconds = limits.timeout_ms.div_ceil(1000) + 1;
        set(Resource::CPU, cpu_seconds, cpu_seconds + 1, "RLIMIT_CPU")
    }
}

fn set(resource: Resource, soft: u64, hard: u64, name: &'static str) -> Result<(), JailError> {
    resource
        .set(soft, hard)
        .map_err(|e| JailError::ResourceLimit(name, e))
}

/// Virtual memory this process maps now, from /proc/self/statm (in pages).
fn mapped_bytes() -> io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/self/statm"))?;
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    Ok(pages * page_size)
}

fn arm_alarm(after_ms: u64) -> Result<(), JailError> {
    let timer = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: (after_ms / 1000) as libc::time_t,
            tv_usec: ((after_ms % 1000) * 1000) as libc::suseconds_t,
        },
    };
    // SAFETY: `timer` is a valid itimerval; the old value is not wanted.
    let rc = unsafe { libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(JailError::ResourceLimit(
            "ITIMER_REAL",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}
