//! sandlot run by an unprivileged user: its zygotes enter user namespaces of their own, where
//! the kernel hands them every capability, and shell runs cannot take a uid of their own.
//!
//! The server is started inside a user namespace that maps the test's (root) uid to uid 1000:
//! to sandlot that is an ordinary user, while the files it reads (the toolchain's Python under
//! root's 0700 home) stay readable to it as their owner.

mod common;

use std::time::Duration;

use serde_json::json;

/// A server that runs as uid/gid 1000 of a user namespace of its own, shared by the tests
/// (each only runs code and reads /proc).
fn unprivileged_server() -> &'static common::Server {
    static SERVER: std::sync::OnceLock<common::Server> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        common::start_under(&[], &[], || {
            // SAFETY: unshare takes flags and touches no memory.
            if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            std::fs::write("/proc/self/setgroups", "deny")?;
            std::fs::write("/proc/self/uid_map", "1000 0 1")?;
            std::fs::write("/proc/self/gid_map", "1000 0 1")
        })
    })
}

/// The capability sets (`CapInh`, `CapPrm`, `CapEff`, `CapBnd`, `CapAmb`) in a `status` file.
fn capability_sets(status: &str) -> Vec<String> {
    status
        .lines()
        .filter(|l| l.starts_with("Cap"))
        .map(str::to_owned)
        .collect()
}

fn is_empty(set: &str) -> bool {
    set.split_whitespace()
        .nth(1)
        .is_some_and(|hex| hex.chars().all(|c| c == '0'))
}

#[test]
fn the_server_runs_unprivileged_here() {
    let server = unprivileged_server();
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid)).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    // Outside its namespace the server is still the test's uid; inside, the kernel reports it
    // as uid 1000 to sandlot, whose zygotes take the unprivileged path.
    let r = server.run(json!({"language": "bash", "code": "id -u"}));
    assert_eq!(r["stdout"], "1000\n", "{uid}: {r}");
}

/// Every interpreter zygote, and so every child it forks, holds no capability at all: not in
/// its effective or permitted set (what it could use in its own user namespace), nor in its
/// bounding or ambient set.
#[test]
fn interpreter_zygotes_hold_no_capability() {
    let server = unprivileged_server();
    let zygotes: Vec<(&str, i32)> = ["python", "javascript"]
        .into_iter()
        .map(|kind| {
            let pid = common::wait_for(
                Duration::from_secs(60),
                || format!("the {kind} zygote"),
                || common::processes::zygote_pid(server, kind),
            );
            (kind, pid)
        })
        .collect();
    // A run first: the zygote is locked down by then.
    let r = server.python("def main():\n    return {'ok': 1}", json!({}));
    assert_eq!(r["result"]["ok"], 1, "{r}");
    for (kind, pid) in zygotes {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let sets = capability_sets(&status);
        assert_eq!(sets.len(), 5, "{kind}: {status}");
        for set in &sets {
            assert!(
                is_empty(set),
                "the {kind} zygote holds capabilities: {sets:?}"
            );
        }
    }
}

/// A shell command holds no capability either (it reads its own /proc).
#[test]
fn a_shell_command_holds_no_capability() {
    let server = unprivileged_server();
    let r = server.run(json!({"language": "bash", "code": "grep ^Cap /proc/self/status"}));
    let stdout = r["stdout"].as_str().unwrap_or_default();
    let sets = capability_sets(stdout);
    assert_eq!(sets.len(), 5, "{r}");
    for set in &sets {
        assert!(
            is_empty(set),
            "a shell command holds capabilities: {sets:?}"
        );
    }
}

/// A server that runs as the host's own uid 1000 (not root's uid under another name: the
/// kernel never enforces RLIMIT_NPROC on the host's root, whatever its namespace calls it).
fn host_user_server() -> common::Server {
    common::start_under(&[], &[("HOME", "/tmp")], || {
        // SAFETY: each call takes integers and touches no memory we own.
        let dropped = unsafe {
            libc::setgroups(0, std::ptr::null()) == 0
                && libc::setresgid(1000, 1000, 1000) == 0
                && libc::setresuid(1000, 1000, 1000) == 0
                // The uid change cleared the parent-death signal common::start_under armed.
                && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == 0
        };
        if dropped {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    })
}

/// How many `sleep` processes of uid 1000 there are (the bomb's).
fn bomb_sleeps() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|entry| {
            let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
            status.lines().next() == Some("Name:\tsleep")
                && status
                    .lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("1000"))
        })
        .count()
}

/// RLIMIT_NPROC is one run's budget: a fork bomb that exhausts its own does not make `fork`
/// fail in a concurrent run, although both run as the server's uid. The bomb holds every process
/// it gets (`sleep 30`) and keeps retrying (bash retries a failed fork, where dash gives up and
/// exits), so its budget stays exhausted until its deadline; a classic `b() { b | b & }` churns,
/// and leaves gaps another run could slip through.
#[test]
fn a_fork_bomb_does_not_starve_another_shell_run() {
    let server = std::sync::Arc::new(host_user_server());
    let r = server.run(json!({"language": "bash", "code": "id -u"}));
    assert_eq!(r["stdout"], "1000\n", "{r}");
    let bomber = std::sync::Arc::clone(&server);
    let bomb = std::thread::spawn(move || {
        let flood = "exec bash -c 'while :; do sleep 30 & done'";
        bomber.run(json!({"language": "bash", "code": flood, "limits": {"timeout_ms": 4000}}))
    });
    // The other run starts once the bomb holds all of its budget: SHELL_PROCESSES (128) less
    // the run's shell and the looping bash is 126 sleeps. (It has 4 s to get there.)
    common::wait_for(
        Duration::from_secs(10),
        || format!("the bomb to hold 126 sleeps (it holds {})", bomb_sleeps()),
        || (bomb_sleeps() >= 126).then_some(()),
    );
    let r = server.run(json!({
        "language": "bash",
        "code": "for i in 1 2 3; do (true) || exit 9; done; echo ok",
    }));
    assert_eq!(r["stdout"], "ok\n", "{r}");
    assert_eq!(r["exit_code"], 0, "{r}");
    let bombed = bomb.join().unwrap();
    assert!(
        bombed["stderr"]
            .as_str()
            .unwrap_or_default()
            .contains("fork"),
        "the bomb never reached its own limit: {bombed}"
    );
}
