//! No capabilities. A zygote of an unprivileged sandlot enters a user namespace of its own,
//! and the kernel gives the creator of a user namespace every capability inside it: enough to
//! reconfigure its network namespace, or to mount and unshare where a later layer did not
//! refuse the calls. Nothing after the namespaces needs one (Landlock and seccomp rely on
//! `no_new_privs`), so every set is emptied: the bounding set (where the process may still
//! change it), the ambient set, then the permitted, effective and inheritable sets.
//!
//! A root sandlot's zygote gets the same by its uid drop (`setresuid` to a non-zero uid empties
//! the permitted, effective and ambient sets); its bounding set it can no longer change then,
//! and `no_new_privs` keeps any exec from using it.

use super::JailError;

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Empties every capability set of the calling process.
pub fn drop_all() -> Result<(), JailError> {
    // The bounding set, capability by capability until the kernel knows no more (EINVAL).
    // Without CAP_SETPCAP (a root sandlot's zygote after its uid drop) it stays as it is.
    for capability in 0.. {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no memory.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0) } != 0 {
            let error = std::io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::EINVAL) => break,
                Some(libc::EPERM) => break,
                _ => return Err(JailError::DropCapabilities(error)),
            }
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL touches no memory.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(JailError::DropCapabilities(std::io::Error::last_os_error()));
    }
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: capset reads a version-3 header and two data words, which is what is passed.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(JailError::DropCapabilities(std::io::Error::last_os_error()));
    }
    Ok(())
}
