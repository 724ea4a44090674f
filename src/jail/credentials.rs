//! A child of a root sandlot becomes an unprivileged user: no supplementary groups, then the
//! gid, then the uid (in that order: once the uid is gone, so is the right to change groups).
//! Setting every uid to a non-zero value also empties the capability sets.
//!
//! A sandlot that does not run as root has nothing to drop: its children already run as its
//! own unprivileged user.

use nix::unistd::{geteuid, setgroups, setresgid, setresuid, Gid, Uid};

use super::parent_death;
use super::JailError;

/// Drops to `uid`/`gid` when running as root; otherwise does nothing.
pub fn drop_to(uid: u32, gid: u32) -> Result<(), JailError> {
    if !geteuid().is_root() {
        return Ok(());
    }
    if uid == 0 {
        return Err(JailError::RootChildUid);
    }
    let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
    setgroups(&[]).map_err(|e| JailError::SetGroups(e.into()))?;
    setresgid(gid, gid, gid).map_err(|e| JailError::SetGid(e.into()))?;
    setresuid(uid, uid, uid).map_err(|e| JailError::SetUid(e.into()))?;
    // Paranoia: getting root back must now fail.
    let root = Uid::from_raw(0);
    if setresuid(root, root, root).is_ok() {
        return Err(JailError::RootRegained);
    }
    // The kernel clears the parent-death signal when the uid changes: arm it again.
    parent_death::arm()
}
