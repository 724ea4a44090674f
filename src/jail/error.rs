//! What can fail while confining a process, one variant per operation. In a child the error is
//! reported as `internal` and the code never runs; in a zygote it stops the zygote.

use std::io;
use std::os::fd::RawFd;

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error("entering new namespaces failed: {0}")]
    Unshare(#[source] io::Error),
    #[error("mapping the user namespace's ids failed: {0}")]
    MapIds(#[source] io::Error),
    #[error("reading this user namespace's id map failed: {0}")]
    ReadIdMap(#[source] io::Error),
    #[error("the child gid {0} is not mapped in this user namespace (see SANDLOT_CHILD_GID)")]
    UnmappedChildGid(u32),
    #[error("this user namespace maps no range of ids a shell run could take")]
    NoShellUids,
    #[error("setting the hostname failed: {0}")]
    Hostname(#[source] io::Error),

    #[error("moving descriptor {from} to {to} failed: {source}")]
    Dup {
        from: RawFd,
        to: RawFd,
        source: io::Error,
    },
    #[error("closing stray file descriptors failed: {0}")]
    CloseRange(#[source] io::Error),

    #[error("reading how much memory is mapped failed: {0}")]
    MappedSize(#[source] io::Error),
    #[error("setting {resource} failed: {source}")]
    Rlimit {
        resource: &'static str,
        source: io::Error,
    },

    #[error("the child uid must not be 0")]
    RootChildUid,
    #[error("dropping the supplementary groups failed: {0}")]
    SetGroups(#[source] io::Error),
    #[error("dropping to the unprivileged gid failed: {0}")]
    SetGid(#[source] io::Error),
    #[error("dropping to the unprivileged uid failed: {0}")]
    SetUid(#[source] io::Error),
    #[error("root could be regained after dropping it")]
    RootRegained,
    #[error("arming the parent-death signal failed: {0}")]
    ParentDeathSignal(#[source] io::Error),
    #[error("the parent died before the child could arm its death signal")]
    Orphaned,
    #[error("setting no_new_privs failed: {0}")]
    NoNewPrivs(#[source] io::Error),

    #[error("building the Landlock ruleset failed: {0}")]
    LandlockRuleset(#[source] landlock::RulesetError),
    #[error("opening a directory for a Landlock rule failed: {0}")]
    LandlockPath(#[source] landlock::PathFdError),
    #[error("this kernel does not support Landlock")]
    LandlockUnsupported,
    #[error("enforcing Landlock failed: {0}")]
    LandlockRestrict(#[source] io::Error),

    #[error("compiling the seccomp policy failed: {0}")]
    SeccompCompile(#[source] seccompiler::Error),
    #[error("assembling the child's seccomp filter failed: {0} does not fit")]
    SeccompAssemble(String),
    #[error("installing the seccomp filter failed: {0}")]
    SeccompInstall(#[source] seccompiler::Error),
    #[error("dropping the capabilities failed: {0}")]
    DropCapabilities(#[source] std::io::Error),
    #[error("installing the handler that answers fstat failed: {0}")]
    StatEmulation(#[source] std::io::Error),

    #[error("mounting {target} failed: {source}")]
    Mount { target: String, source: io::Error },
    #[error("creating {path} in the shell's root failed: {source}")]
    ShellRoot { path: String, source: io::Error },
    #[error("{0} is not a usable path (not UTF-8, or holds NUL)")]
    UnusablePath(String),
    #[error("entering {path} failed: {source}")]
    ChangeDir { path: String, source: io::Error },
    #[error("pivot_root into the shell's root failed: {0}")]
    PivotRoot(#[source] io::Error),
    #[error("detaching the host's root failed: {0}")]
    DetachRoot(#[source] io::Error),
    #[error("forking failed: {0}")]
    Fork(#[source] io::Error),
    #[error("waiting for the shell failed: {0}")]
    Wait(#[source] io::Error),
}
