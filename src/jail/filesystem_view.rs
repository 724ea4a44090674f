//! The file system a shell command sees: a fresh, size-capped tmpfs as its root, holding
//! read-only bind mounts of the host's system directories (`/usr` and the `/bin`, `/lib`, ...
//! beside it), a minimal `/etc`, a handful of device nodes, its own `/proc`, and a writable
//! `/tmp` and working directory. Nothing else of the host — not `/root`, `/home`, the server's
//! files or the host's `/proc` — exists in it.
//!
//! [`build`] runs in the shell's supervisor after it entered new mount and pid namespaces;
//! [`enter`] runs in the process that will start the shell (pid 1 of the new pid namespace).

use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::JailError;

/// Where the new root is assembled, in the supervisor's private mount namespace (the host's
/// `/tmp` is untouched: the mount exists only in that namespace).
pub const ROOT: &str = "/tmp";

/// The system directories shown read-only, when the host has them.
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];
/// Host files of `/etc` a shell needs to run programs (the loader's cache, Debian's
/// alternatives such as awk), shown read-only.
const ETC_BINDS: &[&str] = &["/etc/ld.so.cache", "/etc/alternatives", "/etc/localtime"];
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom"];

/// Makes every mount private, so nothing done in this namespace propagates to the host's.
pub fn make_private() -> Result<(), JailError> {
    mount_at("/", None, None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)
}

/// Assembles the root at [`ROOT`]: `size_mb` of tmpfs, the read-only system view, and
/// `working_dir` (owned by `uid`:`gid`, who will run the shell).
pub fn build(size_mb: u64, working_dir: &Path, uid: u32, gid: u32) -> Result<(), JailError> {
    let options = format!("size={}m,mode=755", size_mb.max(1));
    mount_at(
        ROOT,
        Some(Path::new("tmpfs")),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&options),
    )?;
    let root = Path::new(ROOT);
    for dir in SYSTEM_DIRS {
        show(Path::new(dir), &root.join(&dir[1..]))?;
    }
    let etc = root.join("etc");
    create(&etc, std::fs::create_dir(&etc))?;
    for (name, text) in [
        (
            "passwd",
            format!("root:x:0:0:root:/root:/bin/sh\nsandbox:x:{uid}:{gid}:sandbox:/tmp:/bin/sh\n"),
        ),
        ("group", format!("root:x:0:\nsandbox:x:{gid}:\n")),
        ("hosts", "127.0.0.1 localhost\n::1 localhost\n".to_owned()),
        ("hostname", "sandlot\n".to_owned()),
    ] {
        let path = etc.join(name);
        create(&path, std::fs::write(&path, text))?;
    }
    for file in ETC_BINDS {
        show(Path::new(file), &root.join(&file[1..]))?;
    }
    let dev = root.join("dev");
    create(&dev, std::fs::create_dir(&dev))?;
    for device in DEVICES {
        show(&Path::new("/dev").join(device), &dev.join(device))?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let link = dev.join(name);
        create(&link, symlink(target, &link))?;
    }
    let proc_dir = root.join("proc");
    create(&proc_dir, std::fs::create_dir(&proc_dir))?;
    let tmp = root.join("tmp");
    create(
        &tmp,
        std::fs::create_dir(&tmp)
            .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))),
    )?;
    let work = root.join(working_dir.strip_prefix("/").unwrap_or(working_dir));
    create(&work, std::fs::create_dir_all(&work))?;
    create(&work, std::os::unix::fs::chown(&work, Some(uid), Some(gid)))
}

/// Where `working_dir` of the command is, seen from the supervisor (before pid 1 enters it).
pub fn seen_from_supervisor(working_dir: &Path) -> std::path::PathBuf {
    Path::new(ROOT).join(working_dir.strip_prefix("/").unwrap_or(working_dir))
}

/// The run's output directory, `output/` in its working directory: a tmpfs of its own, owned
/// by `uid`:`gid`, of at most `max_bytes` and `max_files` files, so that the kernel refuses
/// (ENOSPC) what the server would not return. Its path, seen from the supervisor.
pub fn add_output_dir(
    working_dir: &Path,
    uid: u32,
    gid: u32,
    max_bytes: u64,
    max_files: usize,
) -> Result<std::path::PathBuf, JailError> {
    let dir = seen_from_supervisor(working_dir).join(crate::output_files::OUTPUT_DIR);
    create(&dir, std::fs::create_dir_all(&dir))?;
    // The root directory takes an inode of its own; tmpfs reads `size=0` as unlimited.
    let options = format!(
        "size={},nr_inodes={},mode=755,uid={uid},gid={gid}",
        max_bytes.max(1),
        max_files + 1
    );
    mount_at(
        &dir,
        Some(Path::new("tmpfs")),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(&options),
    )?;
    Ok(dir)
}

/// In pid 1 of the new pid namespace: mounts its `/proc`, makes [`ROOT`] the root (the host's
/// tree detached and gone), and starts in `working_dir`.
pub fn enter(working_dir: &Path) -> Result<(), JailError> {
    let proc_dir = Path::new(ROOT).join("proc");
    mount_at(
        &proc_dir,
        Some(Path::new("proc")),
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    change_dir(Path::new(ROOT))?;
    // pivot_root(".", ".") stacks the old root under the new one; detaching "." then drops it.
    nix::unistd::pivot_root(".", ".").map_err(|e| JailError::PivotRoot(e.into()))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| JailError::DetachRoot(e.into()))?;
    change_dir(working_dir)
}

/// Shows `source` at `target` read-only: a symlink as the same symlink, a directory or file as a
/// read-only bind mount. A missing source is skipped.
fn show(source: &Path, target: &Path) -> Result<(), JailError> {
    let Ok(meta) = std::fs::symlink_metadata(source) else {
        return Ok(());
    };
    if meta.file_type().is_symlink() {
        let made = std::fs::read_link(source).and_then(|to| symlink(to, target));
        return create(target, made);
    }
    let made = if meta.is_dir() {
        std::fs::create_dir_all(target)
    } else {
        std::fs::write(target, b"")
    };
    create(target, made)?;
    mount_at(
        target,
        Some(source),
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    let read_only =
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID;
    mount_at(target, None, None, read_only, None)
}

fn mount_at(
    target: impl AsRef<Path>,
    source: Option<&Path>,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), JailError> {
    let target = target.as_ref();
    mount(source, target, fstype, flags, data).map_err(|e| JailError::Mount {
        target: target.display().to_string(),
        source: e.into(),
    })
}

fn create(path: &Path, made: io::Result<()>) -> Result<(), JailError> {
    made.map_err(|source| JailError::ShellRoot {
        path: path.display().to_string(),
        source,
    })
}

fn change_dir(path: &Path) -> Result<(), JailError> {
    std::env::set_current_dir(path).map_err(|source| JailError::ChangeDir {
        path: path.display().to_string(),
        source,
    })
}
