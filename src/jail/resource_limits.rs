//! rlimits: the kernel's own caps on what one process may use.
//!
//! An interpreter's child is capped at the server's maxima before it reads its job — the
//! limits a fork inherits are put on the zygote ([`Budget::apply_to_zygote`]), the rest on the
//! child ([`Budget::apply_to_child`]) — then narrowed to the job's own limits
//! ([`Budget::narrow`]); an unprivileged process can lower a limit but never raise its hard
//! limit. Its memory cap is a budget above what the interpreter maps, measured once in the
//! zygote ([`Budget::measure`]), so `memory_mb` means memory the user's code can have, whatever
//! the interpreter's own size. A shell command's processes get [`apply_to_shell`].

use std::io;

use rlimit::Resource;

use super::JailError;
use crate::output_region;
use crate::run::Limits;

/// Descriptors an interpreter's child may hold: its three stdio slots, its channel, the
/// read-only files an interpreter may open, and its brokered connections (a run makes at most
/// `broker::MAX_REQUESTS_PER_RUN`, and a connection pool keeps a few open).
const CHILD_OPEN_FILES: u64 = 48;
/// Descriptors a zygote may hold: its stdio, control socket, signalfd and rulesets, and a
/// child's socketpair and pidfd while it hands them over. Also the bound the kernel puts on the
/// descriptors its uid has in flight when it passes one (in an unprivileged sandlot, the
/// sockets the server hands to children count too: at most one a run), so it is well above
/// any number of workers.
const ZYGOTE_OPEN_FILES: u64 = 1024;
/// Descriptors a shell command's process may hold: shells and the tools they run open files,
/// pipes and redirections freely inside their own tmpfs.
const SHELL_OPEN_FILES: u64 = 256;
/// Processes a shell command may run at once (per user namespace and uid, as the kernel counts;
/// every run has a uid of its own as root, a user namespace of its own otherwise).
pub const SHELL_PROCESSES: u64 = 128;

/// What the interpreter maps before a run: the base a run's memory budget is added to.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    mapped: u64,
}

impl Budget {
    /// In the zygote, once its interpreter is built (a child could not read /proc).
    pub fn measure() -> Result<Self, JailError> {
        Ok(Self {
            mapped: mapped_bytes().map_err(JailError::MappedSize)?,
        })
    }

    /// The zygote, once, for every child it will fork: memory at the server's maximum above
    /// the interpreter's own, no core dump, a few descriptors.
    pub fn apply_to_zygote(&self, max: &Limits) -> Result<(), JailError> {
        set(Resource::AS, self.address_space(max), "RLIMIT_AS")?;
        set(Resource::NOFILE, ZYGOTE_OPEN_FILES, "RLIMIT_NOFILE")?;
        set(Resource::CORE, 0, "RLIMIT_CORE")
    }

    /// An interpreter's child, before it reads its job: what a fork does not inherit or the
    /// zygote cannot have — no process at all (the kernel counts them per uid, and the zygote
    /// forks), no file written (the zygote's stderr may be the server's log file), CPU time at
    /// the server's maximum, fewer descriptors.
    pub fn apply_to_child(&self, max: &Limits) -> Result<(), JailError> {
        set(Resource::NPROC, 0, "RLIMIT_NPROC")?;
        set(Resource::FSIZE, 0, "RLIMIT_FSIZE")?;
        set(Resource::NOFILE, CHILD_OPEN_FILES, "RLIMIT_NOFILE")?;
        set_cpu(max.timeout_ms)
    }

    /// Once the job is read: memory and CPU time lowered to the job's limits (seccomp allows
    /// exactly these two), and a wall-clock alarm — SIGALRM, whose default action ends the
    /// process — two seconds after the job's deadline, in case the server cannot deliver its
    /// SIGKILL. (Not earlier: a child may wait in the prefork pool for longer than any run.)
    pub fn narrow(&self, job: &Limits) -> Result<(), JailError> {
        self.set_time_and_memory(job)?;
        let seconds = u32::try_from((job.timeout_ms + 2000).div_ceil(1000)).unwrap_or(u32::MAX);
        nix::unistd::alarm::set(seconds);
        Ok(())
    }

    fn set_time_and_memory(&self, limits: &Limits) -> Result<(), JailError> {
        set(Resource::AS, self.address_space(limits), "RLIMIT_AS")?;
        set_cpu(limits.timeout_ms)
    }

    /// The interpreter's own mappings, the run's memory, and its mapping of the output file.
    fn address_space(&self, limits: &Limits) -> u64 {
        let output = usize::try_from(limits.max_output_bytes).unwrap_or(usize::MAX);
        self.mapped
            .saturating_add(megabytes(limits.memory_mb))
            .saturating_add(
                output_region::mapped_size(output, limits.max_output_files_bytes) as u64,
            )
    }
}

/// A shell command's processes: memory per process, CPU as a backstop, processes, open files,
/// file size, no core dumps. A file may grow one byte past the cap on one output file, so
/// that the run's supervisor sees it was hit; the command's write fails with EFBIG there
/// (SIGXFSZ is ignored in the command).
pub fn apply_to_shell(limits: &Limits) -> Result<(), JailError> {
    let memory = megabytes(limits.memory_mb);
    set(Resource::AS, memory, "RLIMIT_AS")?;
    set_cpu(limits.timeout_ms)?;
    set(Resource::NPROC, SHELL_PROCESSES, "RLIMIT_NPROC")?;
    set(Resource::NOFILE, SHELL_OPEN_FILES, "RLIMIT_NOFILE")?;
    let file = limits.max_output_file_bytes.saturating_add(1).min(memory);
    set(Resource::FSIZE, file, "RLIMIT_FSIZE")?;
    set(Resource::CORE, 0, "RLIMIT_CORE")
}

/// CPU time is a backstop for the server's wall-clock deadline: SIGXCPU one second after it,
/// SIGKILL a second later.
fn set_cpu(timeout_ms: u64) -> Result<(), JailError> {
    let seconds = timeout_ms.div_ceil(1000) + 1;
    Resource::CPU
        .set(seconds, seconds + 1)
        .map_err(|source| JailError::Rlimit {
            resource: "RLIMIT_CPU",
            source,
        })
}

/// Soft and hard limit alike: the soft one cannot be raised back.
fn set(resource: Resource, value: u64, name: &'static str) -> Result<(), JailError> {
    resource
        .set(value, value)
        .map_err(|source| JailError::Rlimit {
            resource: name,
            source,
        })
}

fn megabytes(mb: u64) -> u64 {
    mb.saturating_mul(1024 * 1024)
}

/// Virtual memory this process maps now, from /proc/self/statm (in pages).
fn mapped_bytes() -> io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/self/statm"))?;
    let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    Ok(pages * page_size)
}
