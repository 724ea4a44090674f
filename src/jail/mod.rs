//! Confines the processes that run user code, one step a file, each applied in the order the
//! methods below spell out. The kernel is the boundary: whatever user code reaches through an
//! escape from the import whitelist still runs in a process these steps have confined.
//!
//! - [`Jail`]: an interpreter's child (Python, JavaScript). The zygote enters its
//!   [`namespaces`], then prepares the rest once ([`Jail::prepare`]: the [`landlock`] rulesets,
//!   the [`seccomp`] filters) and locks itself down with it ([`Jail::lock_zygote`]), so each
//!   child inherits the jail at fork and adds only a short delta ([`Jail::lock_child`]).
//! - [`ShellJail`]: a shell command, which needs `fork`, `exec` and files, and so gets mount and
//!   pid namespaces and a read-only [`filesystem_view`] instead of Landlock and the allowlist.
//!
//! [`probe`] applies every layer in a throwaway process to tell which ones this machine has.

pub mod capabilities;
pub mod credentials;
mod error;
pub mod fds;
pub mod filesystem_view;
pub mod landlock;
pub mod namespaces;
pub mod no_new_privs;
pub mod parent_death;
pub mod probe;
pub mod refused_calls;
pub mod resource_limits;
pub mod seccomp;
mod seccomp_policy;
mod seccomp_refusal;
mod seccomp_socket_use;
pub mod settings;
pub mod shell_ids;
mod stat_emulation;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

pub use error::JailError;
use nix::unistd::geteuid;
use settings::{JailSettings, Layer};

use crate::protocol::{CHILD_CHANNEL_FD, CHILD_OUTPUT_FD};
use crate::run::Limits;

/// The jail of an interpreter's children. Most of it is put on the zygote itself, once its
/// interpreter is built, and every child inherits it at fork for free; each child adds only a
/// short, cheap delta. Which layer is applied where is in docs/security.md.
pub struct Jail {
    settings: JailSettings,
    /// The zygote's (and so every child's) Landlock domain; enforced once, by the zygote.
    landlock: Option<::landlock::RulesetCreated>,
    /// A nested domain that only scopes signals and abstract unix sockets, so that a child
    /// reaches neither its zygote nor its siblings; taken and enforced by each child.
    child_scope: Option<::landlock::RulesetCreated>,
    filter: Option<seccomp::Filter>,
    budget: resource_limits::Budget,
}

impl Jail {
    /// In the zygote, after the interpreter is built: `readable` are the directories (and
    /// files) it loads from; `native_code`, whether it loads native code as it goes. Opens,
    /// builds and compiles everything; applies nothing.
    pub fn prepare(
        settings: JailSettings,
        readable: &[&Path],
        native_code: bool,
    ) -> Result<Self, JailError> {
        let (landlock, child_scope) = if settings.applies(Layer::Landlock) {
            (
                Some(landlock::build(readable, settings.landlock_abi_max)?),
                landlock::build_child_scope(settings.landlock_abi_max)?,
            )
        } else {
            (None, None)
        };
        let filter = if settings.applies(Layer::Seccomp) {
            Some(seccomp::Filter::compile(landlock.is_some(), native_code)?)
        } else {
            None
        };
        Ok(Self {
            settings,
            landlock,
            child_scope,
            filter,
            budget: resource_limits::Budget::measure()?,
        })
    }

    /// In the zygote, before its first fork, in this order: the limits every child inherits
    /// (memory at the server's maximum, files, no file written, no core dump); the
    /// unprivileged user; no capabilities; `no_new_privs`; Landlock; seccomp last, its allowlist covering the
    /// zygote's own calls too.
    pub fn lock_zygote(&mut self) -> Result<(), JailError> {
        self.budget.apply_to_zygote(&self.settings.max)?;
        if self.settings.applies(Layer::UidDrop) {
            credentials::drop_to(self.settings.child_uid, self.settings.child_gid)?;
        }
        capabilities::drop_all()?;
        no_new_privs::set()?;
        if let Some(ruleset) = self.landlock.take() {
            landlock::enforce(ruleset)?;
        }
        if let Some(filter) = &self.filter {
            filter.apply_to_zygote()?;
        }
        Ok(())
    }

    /// In the child, before it reads its job, in this order: a Landlock domain of its own
    /// (while the ruleset's descriptor is still open); only stdio on `devnull` and the job
    /// `channel` left open; its own limits (no process, no file written, CPU, fewer files);
    /// seccomp's short filter last, refusing the zygote's calls — including every call made by
    /// the steps before it.
    pub fn lock_child(
        &mut self,
        devnull: &OwnedFd,
        channel: OwnedFd,
        output: OwnedFd,
    ) -> Result<resource_limits::Budget, ChildJailError> {
        if let Some(scope) = self.child_scope.take() {
            landlock::enforce(scope).map_err(ChildJailError::before_channel)?;
        }
        keep_child_descriptors(devnull, channel, output).map_err(ChildJailError::before_channel)?;
        self.budget
            .apply_to_child(&self.settings.max)
            .map_err(ChildJailError::after_channel)?;
        if let Some(filter) = &self.filter {
            filter
                .apply_to_child()
                .map_err(ChildJailError::after_channel)?;
        }
        Ok(self.budget)
    }
}

/// A child's jail failed. Whether its job channel was in place by then decides where the child
/// may say so: on the channel, or (before it, when descriptor 3 is still the zygote's
/// placeholder) nowhere but its stderr.
#[derive(Debug)]
pub struct ChildJailError {
    pub error: JailError,
    pub channel_in_place: bool,
}

impl ChildJailError {
    fn before_channel(error: JailError) -> Self {
        Self {
            error,
            channel_in_place: false,
        }
    }

    fn after_channel(error: JailError) -> Self {
        Self {
            error,
            channel_in_place: true,
        }
    }
}

/// A child's descriptors: stdio on /dev/null, the job channel and the output file at their
/// fixed numbers, nothing else.
fn keep_child_descriptors(
    devnull: &OwnedFd,
    channel: OwnedFd,
    output: OwnedFd,
) -> Result<(), JailError> {
    fds::isolate(
        [devnull.as_raw_fd(); 3],
        &[
            (channel.as_raw_fd(), CHILD_CHANNEL_FD),
            (output.as_raw_fd(), CHILD_OUTPUT_FD),
        ],
    )?;
    // Now at their fixed numbers; the old ones are closed.
    std::mem::forget((channel, output));
    Ok(())
}

/// The probe's way to the same steps (`probe.rs`): a zygote half applied step by step, then
/// each step of the child's half on its own, so that a failure names its layer.
impl Jail {
    fn for_probe(
        settings: JailSettings,
        budget: resource_limits::Budget,
        child_scope: Option<::landlock::RulesetCreated>,
        filter: Option<seccomp::Filter>,
    ) -> Self {
        Self {
            settings,
            landlock: None,
            child_scope,
            filter,
            budget,
        }
    }

    fn probe_child(&mut self) -> Vec<(Layer, Result<(), JailError>)> {
        let mut results = vec![(
            Layer::Rlimits,
            self.budget.apply_to_child(&self.settings.max),
        )];
        if let Some(scope) = self.child_scope.take() {
            results.push((Layer::Landlock, landlock::enforce(scope)));
        }
        if let Some(filter) = &self.filter {
            results.push((Layer::Seccomp, filter.apply_to_child()));
        }
        results
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
            Some(seccomp::Filter::compile(false, false)?)
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
    pub fn isolate_supervisor(
        devnull: &OwnedFd,
        channel: OwnedFd,
        output: OwnedFd,
    ) -> Result<(), ChildJailError> {
        keep_child_descriptors(devnull, channel, output).map_err(ChildJailError::before_channel)?;
        namespaces::enter_shell().map_err(ChildJailError::after_channel)?;
        filesystem_view::make_private().map_err(ChildJailError::after_channel)
    }

    /// In the supervisor, once the job says how large and where: the command's file system.
    pub fn build_view(&self, run: &ShellRun) -> Result<(), JailError> {
        filesystem_view::build(run.limits.memory_mb, run.working_dir, run.uid, run.gid)
    }

    /// In pid 1 of the run's pid namespace, which then starts the shell: die with the
    /// supervisor; stdout and stderr on the supervisor's pipes and nothing else open; the new
    /// root; unprivileged, a user namespace of the run's own (its own RLIMIT_NPROC count); rlimits;
    /// as root, the run's own unprivileged uid; no capabilities; `no_new_privs`; the
    /// seccomp kill list.
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
        if !geteuid().is_root() {
            namespaces::enter_shell_user()?;
        }
        resource_limits::apply_to_shell(run.limits)?;
        if self.settings.applies(Layer::UidDrop) {
            credentials::drop_to(run.uid, run.gid)?;
        }
        capabilities::drop_all()?;
        no_new_privs::set()?;
        if let Some(filter) = &self.filter {
            filter.apply_kill_list()?;
        }
        Ok(())
    }
}
