//! sandlot as root of a user namespace that maps only 65536 ids — a container's usual lot
//! (podman `--uidmap 0:100000:65536`, Kubernetes `hostUsers: false`): a shell run must take a
//! uid that namespace maps, or the kernel refuses to give it its working directory (chown:
//! EINVAL) and every shell run fails.
//!
//! The namespace maps ids 0..65536 onto the host's same ids, so root inside is the test's root
//! outside and still reads the toolchain under root's 0700 home; what the kernel allows a
//! process inside is decided by the mapping's size alone, as in a container.

mod common;

use std::io::Write;

use serde_json::json;

const MAP: &str = "0 0 65536";

/// In the server's process before it execs: a new user namespace, mapped by a helper left
/// outside it (a map of more than one id needs CAP_SETUID over the parent namespace, which a
/// process inside never has). Allocates nothing (it runs between fork and exec).
fn enter_small_user_namespace() -> std::io::Result<()> {
    let mut pipe = [0; 2];
    // SAFETY: pipe writes two descriptors into the array we own.
    if unsafe { libc::pipe(pipe.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: getpid has no preconditions.
    let target = unsafe { libc::getpid() };
    // SAFETY: this process is single-threaded (between fork and exec); the helper only makes
    // system calls and `_exit`s.
    let helper = unsafe { libc::fork() };
    if helper == 0 {
        let mut byte = 0u8;
        // SAFETY: reads one byte into a variable we own; then writes the maps and leaves.
        unsafe {
            libc::read(pipe[0], (&mut byte as *mut u8).cast(), 1);
            let ok = write_map(target, "uid_map").is_ok() && write_map(target, "gid_map").is_ok();
            libc::_exit(if ok { 0 } else { 1 })
        }
    }
    if helper < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: unshare takes flags and touches no memory.
    let entered = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
    let error = std::io::Error::last_os_error();
    let mut status = 0;
    // SAFETY: writes one byte from a constant, closes our own descriptors, waits for our child.
    unsafe {
        libc::write(pipe[1], b"x".as_ptr().cast(), 1);
        libc::close(pipe[1]);
        libc::close(pipe[0]);
        libc::waitpid(helper, &mut status, 0);
    }
    if entered != 0 {
        return Err(error);
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(std::io::Error::other("writing the id maps failed"));
    }
    Ok(())
}

/// Writes [`MAP`] to `/proc/PID/FILE`, the path formatted on the stack.
fn write_map(pid: libc::pid_t, file: &str) -> std::io::Result<()> {
    let mut buffer = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    write!(cursor, "/proc/{pid}/{file}")?;
    let length = cursor.position() as usize;
    let path = std::str::from_utf8(&buffer[..length]).map_err(std::io::Error::other)?;
    std::fs::write(path, MAP)
}

#[test]
fn shell_runs_work_as_root_of_a_small_user_namespace() {
    let server = common::start_under(&[], &[], enter_small_user_namespace);
    let map = std::fs::read_to_string(format!("/proc/{}/uid_map", server.pid)).unwrap();
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "65536"]
    );
    let mut uids = Vec::new();
    for _ in 0..3 {
        let r =
            server.run(json!({"language": "bash", "code": "id -u; id -g; touch mine && echo ok"}));
        assert_eq!(r["error"], serde_json::Value::Null, "{r}");
        assert_eq!(r["exit_code"], 0, "{r}");
        let lines: Vec<u32> = r["stdout"]
            .as_str()
            .unwrap()
            .lines()
            .take(2)
            .map(|l| l.parse().unwrap())
            .collect();
        let (uid, gid) = (lines[0], lines[1]);
        assert!(r["stdout"].as_str().unwrap().ends_with("ok\n"), "{r}");
        // Mapped, and none of root, the interpreters' child uid or the system's low ids.
        assert!((1000..65536).contains(&uid) && uid != 65534, "uid {uid}");
        assert_eq!(gid, 65534, "{r}");
        uids.push(uid);
    }
    // A run's uid is its own: no two consecutive runs share one.
    uids.dedup();
    assert_eq!(uids.len(), 3, "{uids:?}");
}
