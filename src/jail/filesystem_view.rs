//! The file system a shell command sees: a fresh, size-capped tmpfs as its root, holding
//! read-only bind mounts of the host's system directories (`/usr` and the `/bin`, `/lib`, ...
//! beside it), a minimal `/etc`, a handful of device nodes, its own `/proc`, and a writable
//! `/tmp` and working directory. Nothing else of the host — not `/root`, `/home`, the server's
//! files or the host's `/proc` — exists in it.
//!
//! [`build`] runs in the shell child after it entered new mount and pid namespaces; [`enter`]
//! runs in the process that will exec the shell (pid 1 of the new pid namespace).

use std::ffi::CString;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use super::JailError;

/// Where the new root is assembled, in the child's private mount namespace (the host's `/tmp`
/// is untouched: the mount exists only in that namespace).
pub const ROOT: &str = "/tmp";

/// The system directories shown read-only, when the host has them.
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];
/// Host files of `/etc` a shell needs to run programs (the loader's cache, Debian's
/// alternatives such as awk), shown read-only.
const ETC_BINDS: &[&str] = &["/etc/ld.so.cache", "/etc/alternatives", "/etc/localtime"];
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom"];

fn fail(what: &str, e: io::Error) -> JailError {
    JailError::Filesystem(format!("{what}: {e}"))
}

/// Assembles the root at [`ROOT`]: `size_mb` of tmpfs, the read-only system view, and
/// `working_dir` (owned by `uid`:`gid`, who will run the shell).
pub fn build(size_mb: u64, working_dir: &Path, uid: u32, gid: u32) -> Result<(), JailError> {
    // Nothing done here may propagate back to the host's mount namespace.
    mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(|e| fail("making mounts private", e))?;
    let options = format!("size={}m,mode=755", size_mb.max(1));
    mount(
        Some("tmpfs"),
        ROOT,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&options),
    )
    .map_err(|e| fail("mounting the root tmpfs", e))?;
    let root = Path::new(ROOT);
    for dir in SYSTEM_DIRS {
        show(Path::new(dir), &root.join(&dir[1..]))?;
    }
    let etc = root.join("etc");
    std::fs::create_dir(&etc).map_err(|e| fail("creating /etc", e))?;
    std::fs::write(
        etc.join("passwd"),
        format!("root:x:0:0:root:/root:/bin/sh\nsandbox:x:{uid}:{gid}:sandbox:/tmp:/bin/sh\n"),
    )
    .and_then(|()| std::fs::write(etc.join("group"), format!("root:x:0:\nsandbox:x:{gid}:\n")))
    .and_then(|()| std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n::1 localhost\n"))
    .and_then(|()| std::fs::write(etc.join("hostname"), "sandlot\n"))
    .map_err(|e| fail("writing /etc", e))?;
    for file in ETC_BINDS {
        show(Path::new(file), &root.join(&file[1..]))?;
    }
    let dev = root.join("dev");
    std::fs::create_dir(&dev).map_err(|e| fail("creating /dev", e))?;
    for device in DEVICES {
        show(&Path::new("/dev").join(device), &dev.join(device))?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(name)).map_err(|e| fail("linking /dev", e))?;
    }
    std::fs::create_dir(root.join("proc")).map_err(|e| fail("creating /proc", e))?;
    let tmp = root.join("tmp");
    std::fs::create_dir(&tmp)
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)))
        .map_err(|e| fail("creating /tmp", e))?;
    let work = root.join(working_dir.strip_prefix("/").unwrap_or(working_dir));
    std::fs::create_dir_all(&work).map_err(|e| fail("creating the working directory", e))?;
    let c = cstring(&work)?;
    // SAFETY: chown on a path we just created, with a NUL-terminated string.
    if unsafe { libc::chown(c.as_ptr(), uid, gid) } != 0 {
        return Err(fail(
            "handing over the working directory",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// In pid 1 of the new pid namespace: mounts its `/proc`, makes [`ROOT`] the root (the host's
/// tree detached and gone), and starts in `working_dir`.
pub fn enter(working_dir: &Path) -> Result<(), JailError> {
    let proc_dir = Path::new(ROOT).join("proc");
    mount(
        Some("proc"),
        proc_dir.to_str().expect("a UTF-8 path"),
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
    .map_err(|e| fail("mounting /proc", e))?;
    std::env::set_current_dir(ROOT).map_err(|e| fail("entering the new root", e))?;
    let dot = CString::new(".").expect("no NUL");
    // SAFETY: pivot_root(".", ".") stacks the old root under the new one; both strings are
    // NUL-terminated.
    if unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) } != 0 {
        return Err(fail("pivot_root", io::Error::last_os_error()));
    }
    // SAFETY: detaches the old root, which now sits on top of ".".
    if unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(fail(
            "detaching the host's root",
            io::Error::last_os_error(),
        ));
    }
    std::env::set_current_dir(working_dir).map_err(|e| fail("entering the working directory", e))
}

/// Shows `source` at `target` read-only: a symlink as the same symlink, a directory or file as a
/// read-only bind mount. A missing source is skipped.
fn show(source: &Path, target: &Path) -> Result<(), JailError> {
    let Ok(meta) = std::fs::symlink_metadata(source) else {
        return Ok(());
    };
    if meta.file_type().is_symlink() {
        let points_to = std::fs::read_link(source).map_err(|e| fail("reading a link", e))?;
        return symlink(points_to, target).map_err(|e| fail("linking a system directory", e));
    }
    if meta.is_dir() {
        std::fs::create_dir_all(target)
    } else {
        std::fs::write(target, b"")
    }
    .map_err(|e| fail("creating a mount point", e))?;
    let (source, target) = (path_str(source)?, path_str(target)?);
    mount(
        Some(&source),
        &target,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(|e| fail(&format!("binding {source}"), e))?;
    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID;
    mount(None, &target, None, flags, None)
        .map_err(|e| fail(&format!("making {source} read-only"), e))
}

fn mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let c = |s: &str| CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let source = source.map(c).transpose()?;
    let target = c(target)?;
    let fstype = fstype.map(c).transpose()?;
    let data = data.map(c).transpose()?;
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is null or a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn path_str(p: &Path) -> Result<String, JailError> {
    p.to_str()
        .map(str::to_owned)
        .ok_or_else(|| JailError::Filesystem(format!("{} is not UTF-8", p.display())))
}

fn cstring(p: &Path) -> Result<CString, JailError> {
    CString::new(path_str(p)?).map_err(|_| JailError::Filesystem("a path holds NUL".into()))
}
