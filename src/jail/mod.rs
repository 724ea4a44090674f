//! Locks a child down before it runs user code, one step a file, applied in order by
//! [`lock_down`]. The kernel is the boundary: whatever user code reaches through an escape from
//! the import whitelist still runs in a process these steps have confined.

pub mod fds;
pub mod resource_limits;
pub mod seccomp;
mod seccomp_policy;

use std::fmt;

use crate::run::Limits;

/// A step of the jail that could not be applied. The child reports it as `internal` and never
/// runs the code.
#[derive(Debug)]
pub enum JailError {
    Fds(std::io::Error),
    ResourceLimit(&'static str, std::io::Error),
    Seccomp(seccompiler::Error),
}

impl fmt::Display for JailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fds(e) => write!(f, "closing stray file descriptors failed: {e}"),
            Self::ResourceLimit(which, e) => write!(f, "setting {which} failed: {e}"),
            Self::Seccomp(e) => write!(f, "installing the seccomp filter failed: {e}"),
        }
    }
}

impl std::error::Error for JailError {}

/// The steps that need the job's limits, in order: rlimits, then seccomp last, so that nothing
/// after it can loosen what came before.
pub fn lock_down(limits: &Limits, filter: &seccomp::Filter) -> Result<(), JailError> {
    resource_limits::apply(limits)?;
    filter.apply()
}
