//! Landlock: what a child may touch by path and by port, enforced by the kernel however the
//! call is made. A child may read (never write, create or execute) the directories its
//! interpreter loads from, and nothing else; it may neither bind nor connect a TCP socket;
//! where the kernel supports scoping (ABI 6), it may signal no process outside its own domain
//! and reach no abstract unix socket.
//!
//! The ruleset is built once in the zygote (opening the paths once); each child only enforces
//! it, one system call.

use std::io;
use std::path::Path;

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetError, RulesetStatus, Scope, ABI,
};

use super::JailError;

/// The oldest ABI that covers both halves of the policy (files, and TCP from ABI 4).
pub const REQUIRED: ABI = ABI::V4;
/// Newer rights and scopes are used where the kernel has them.
const WANTED: ABI = ABI::V6;

/// The newest ABI to use: [`WANTED`], or less when the settings cap it (never below
/// [`REQUIRED`]).
fn wanted(abi_max: Option<i32>) -> ABI {
    match abi_max {
        Some(max) => ABI::from(max.clamp(REQUIRED as i32, WANTED as i32)),
        None => WANTED,
    }
}

/// Builds the ruleset: `readable` directories and files read-only (a directory with what is
/// beneath it), everything else denied; rights and scopes up to ABI `abi_max` (see
/// [`super::settings::JailSettings::landlock_abi_max`]).
pub fn build(readable: &[&Path], abi_max: Option<i32>) -> Result<RulesetCreated, JailError> {
    let mut ruleset = handle_everything(wanted(abi_max)).map_err(JailError::LandlockRuleset)?;
    for path in readable {
        let read_only = if path.is_dir() {
            AccessFs::from_read(REQUIRED) & !AccessFs::Execute
        } else {
            AccessFs::ReadFile.into()
        };
        let fd = PathFd::new(path).map_err(JailError::LandlockPath)?;
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, read_only))
            .map_err(JailError::LandlockRuleset)?;
    }
    Ok(ruleset)
}

/// A ruleset that handles no access but scopes signals and abstract unix sockets to the domain
/// it creates: enforced by a child on top of its zygote's domain, it keeps the child from its
/// zygote and its siblings. `None` where the kernel cannot scope (ABI < 6), or `abi_max` says
/// not to.
pub fn build_child_scope(abi_max: Option<i32>) -> Result<Option<RulesetCreated>, JailError> {
    if abi_version().unwrap_or(0) < 6 || (wanted(abi_max) as i32) < 6 {
        return Ok(None);
    }
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .scope(Scope::from_all(ABI::V6))
        .and_then(|ruleset| ruleset.create())
        .map(Some)
        .map_err(JailError::LandlockRuleset)
}

fn handle_everything(wanted: ABI) -> Result<RulesetCreated, RulesetError> {
    let ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(REQUIRED))?
        .handle_access(AccessNet::from_all(REQUIRED))?
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(wanted))?;
    // Scopes come with ABI 6; an empty set of them is an error, not a no-op.
    let ruleset = if wanted >= ABI::V6 {
        ruleset.scope(Scope::from_all(wanted))?
    } else {
        ruleset
    };
    ruleset
        .set_compatibility(CompatLevel::HardRequirement)
        .create()
}

/// Enforces `ruleset` on the calling (only) thread for good (setting `no_new_privs` first).
pub fn enforce(ruleset: RulesetCreated) -> Result<(), JailError> {
    let status = ruleset
        .restrict_self()
        .map_err(JailError::LandlockRuleset)?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(JailError::LandlockUnsupported);
    }
    Ok(())
}

/// The Landlock ABI this kernel offers, or why it offers none.
pub fn abi_version() -> Result<i32, io::Error> {
    const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
    // SAFETY: with the VERSION flag, landlock_create_ruleset reads no memory and returns a number.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as i32)
}
