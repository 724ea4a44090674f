//! Locks a child down before it reads its job, one step a file, applied in order by
//! [`Jail::lock_down`]. The kernel is the boundary: whatever user code reaches through an escape
//! from the import whitelist still runs in a process these steps have confined.
//!
//! Some steps happen once per zygote instead: entering [`namespaces`], compiling the
//! [`seccomp`] filters and building the [`landlock`] ruleset ([`Jail::prepare`]). A child only
//! applies what is ready, so the jail costs little per run.

pub mod credentials;
pub mod fds;
pub mod filesystem_view;
pub mod landlock;
pub mod namespaces;
pub mod no_new_privs;
pub mod probe;
pub mod resource_limits;
pub mod seccomp;
mod seccomp_policy;
pub mod settings;

use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use settings::{JailSettings, Layer};

/// A step of the jail that could not be applied. In a child it is reported as `internal` and
/// the code never runs; in a zygote it stops the zygote.
#[derive(Debug)]
pub enum JailError {
    Namespaces(std::io::Error),
    Fds(std::io::Error),
    ResourceLimit(&'static str, std::io::Error),
    Credentials(std::io::Error),
    NoNewPrivs(std::io::Error),
    Landlock(String),
    Seccomp(seccompiler::Error),
    Filesystem(String),
}

impl fmt::Display for JailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Namespaces(e) => write!(f, "entering new namespaces failed: {e}"),
            Self::Fds(e) => write!(f, "closing stray file descriptors failed: {e}"),
            Self::ResourceLimit(which, e) => write!(f, "setting {which} failed: {e}"),
            Self::Credentials(e) => write!(f, "dropping to the unprivileged user failed: {e}"),
            Self::NoNewPrivs(e) => write!(f, "setting no_new_privs failed: {e}"),
            Self::Landlock(e) => write!(f, "Landlock failed: {e}"),
            Self::Seccomp(e) => write!(f, "installing the seccomp filter failed: {e}"),
            Self::Filesystem(e) => write!(f, "building the shell's file system failed: {e}"),
        }
    }
}

impl std::error::Error for JailError {}

/// What a zygote prepares once so that each child only has to apply it.
pub struct Jail {
    settings: JailSettings,
    landlock: Option<landlock::LandlockRuleset>,
    filter: Option<seccomp::Filter>,
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
            Some(seccomp::Filter::compile(landlock.is_some()).map_err(JailError::Seccomp)?)
        } else {
            None
        };
        Ok(Self {
            settings,
            landlock,
            filter,
        })
    }

    /// In the child, before it reads its job, in this order: keep only its descriptors; rlimits
    /// at the server's maxima; the unprivileged user; `no_new_privs`; Landlock; seccomp last, so
    /// that nothing after it can loosen what came before.
    pub fn lock_down(
        &self,
        devnull: &OwnedFd,
        channel: OwnedFd,
    ) -> Result<resource_limits::Budget, JailError> {
        let landlock_fd = self.landlock.as_ref().map(AsRawFd::as_raw_fd);
        fds::isolate(devnull, channel, landlock_fd)?;
        let budget = resource_limits::apply(&self.settings.max)?;
        if self.settings.applies(Layer::UidDrop) {
            credentials::drop_to(self.settings.child_uid, self.settings.child_gid)?;
        }
        no_new_privs::set()?;
        if landlock_fd.is_some() {
            landlock::enforce(fds::LANDLOCK_FD)?;
        }
        if let Some(filter) = &self.filter {
            filter.apply()?;
        }
        Ok(budget)
    }
}
