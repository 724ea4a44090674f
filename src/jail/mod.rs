//! Confines the processes that run user code, one step a file, each applied in the order the
//! methods below spell out. The kernel is the boundary: whatever user code reaches through an
//! escape from the import whitelist still runs in a process these steps have confined.
//!
//! - [`Jail`]: an interpreter's child (Python, JavaScript). The zygote prepares what is costly
//!   once ([`Jail::prepare`]: entering [`namespaces`], compiling the [`seccomp`] filters,
//!   building the [`landlock`] ruleset); each child applies it ([`Jail::lock_down`]).
//! - [`ShellJail`]: a shell command, which needs `fork`, `exec` and files, and so gets mount and
//!   pid namespaces and a read-only [`filesystem_view`] instead of Landlock and the allowlist.
//!
//! [`probe`] applies every layer in a throwaway process to tell which ones this machine has.

pub mod credentials;
mod error;
pub mod fds;
pub mod filesystem_view;
pub mod landlock;
pub mod namespaces;
pub mod no_new_privs;
pub mod parent_death;
pub mod probe;
pub mod resource_limits;
pub mod seccomp;
mod seccomp_policy;
pub mod settings;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

pub use error::JailError;
use settings::{JailSettings, Layer};

use crate::protocol::CHILD_CHANNEL_FD;
use crate::run::Limits;

/// What a zygote prepares once so that each child only has to apply it.
pub struct Jail {
    settings: JailSettings,
    /// Taken (and enforced) by the child; the zygote keeps its own copy forever unused.
    landlock: Option<::landlock::RulesetCreated>,
    filter: Option<seccomp::Filter>,
    budget: resource_limits::Budget,
}

impl Jail {
    /// In the zygote, after the interpreter is built: `readable` are the directories it loads
    /// files from.
    pub fn prepare(settings: JailSettings, readable: &[&Path]) -> Result<Self, JailError> {
        let landlock = if settings.applies(Layer::Landlock) {
            Some(landlock::build(readable)?)
        } else {
            None
        };
        let filter = if settings.applies(Layer::Seccomp) {
            Some(seccomp::Filter::compile(landlock.is_some())?)
        } else {
            None
        };
        Ok(Self {
            settings,
            landlock,
            filter,
            budget: resource_limits::Budget::measure()?,
        })
    }

    /// In the child, before it reads its job, in this order: Landlock (while the ruleset's
    /// descriptor is still open); keep only stdio on `devnull` and the job `channel`; rlimits
    /// at the server's maxima; the unprivileged user; `no_new_privs`; seccomp last, so that
    /// nothing after it can loosen what came before.
    pub fn lock_down(
        &mut self,
        devnull: &OwnedFd,
        channel: OwnedFd,
    ) -> Result<resource_limits::Budget, JailError> {
        if let Some(ruleset) = self.landlock.take() {
            landlock::enforce(ruleset)?;
        }
        let null = devnull.as_raw_fd();
        fds::isolate([null; 3], &[(channel.as_raw_fd(), CHILD_CHANNEL_FD)])?;
        std::mem::forget(channel); // now CHILD_CHANNEL_FD; its old number is closed
        self.budget.apply(&self.settings.max)?;
        if self.settings.applies(Layer::UidDrop) {
            credentials::drop_to(self.settings.child_uid, self.settings.child_gid)?;
        }
        no_new_privs::set()?;
        if let Some(filter) = &self.filter {
            filter.apply()?;
        }
        Ok(self.budget)
    }
}

/// The jail of a shell command, prepared once in the shell zygote.
pub struct ShellJail {
    settings: JailSettings,
    /// The kill list alone: a shell needs fork, exec and files, which its namespaces and
    /// read-only view confine, but never an exploit's calls.
    filter: Option<seccomp::Filter>,
}

/// Who runs a shell command, and in which directory of its own file system.
pub struct ShellRun<'a> {
    pub uid: u32,
    pub gid: u32,
    pub working_dir: &'a Path,
    pub limits: &'a Limits,
}

impl ShellJail {
    pub fn prepare(settings: JailSettings) -> Result<Self, JailError> {
        let filter = if settings.applies(Layer::Seccomp) {
            Some(seccomp::Filter::compile(false)?)
        } else {
            None
        };
        Ok(Self { settings, filter })
    }

    pub fn settings(&self) -> &JailSettings {
        &self.settings
    }

    /// In the shell zygote's child — sandlot's own supervisor of one run — before it reads its
    /// job: keep only stdio on `devnull` and the job `channel`; new mount and pid namespaces
    /// whose mounts are private.
    pub fn isolate_supervisor(devnull: &OwnedFd, channel: OwnedFd) -> Result<(), JailError> {
        let null = devnull.as_raw_fd();
        fds::isolate([null; 3], &[(channel.as_raw_fd(), CHILD_CHANNEL_FD)])?;
        std::mem::forget(channel); // now CHILD_CHANNEL_FD; its old number is closed
        namespaces::enter_shell()?;
        filesystem_view::make_private()
    }

    /// In the supervisor, once the job says how large and where: the command's file system.
    pub fn build_view(&self, run: &ShellRun) -> Result<(), JailError> {
        filesystem_view::build(run.limits.memory_mb, run.working_dir, run.uid, run.gid)
    }

    /// In pid 1 of the run's pid namespace, which then starts the shell: die with the
    /// supervisor; stdout and stderr on the supervisor's pipes and nothing else open; the new
    /// root; rlimits; the run's own unprivileged uid; `no_new_privs`; the seccomp kill list.
    pub fn lock_down_init(
        &self,
        run: &ShellRun,
        stdout: RawFd,
        stderr: RawFd,
        stdin: RawFd,
    ) -> Result<(), JailError> {
        parent_death::arm()?;
        fds::isolate([stdin, stdout, stderr], &[])?;
        filesystem_view::enter(run.working_dir)?;
        resource_limits::apply_to_shell(run.limits)?;
        if self.settings.applies(Layer::UidDrop) {
            credentials::drop_to(run.uid, run.gid)?;
        }
        no_new_privs::set()?;
        if let Some(filter) = &self.filter {
            filter.apply_kill_list()?;
        }
        Ok(())
    }
}
