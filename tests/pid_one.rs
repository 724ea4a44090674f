//! `sandlot serve` as PID 1 of its PID namespace, as a container's entrypoint starts it: it
//! becomes ready, runs every language, a timeout and a shell command, reaps the orphans the
//! namespace hands it, and drains on SIGTERM and exits 0.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

/// One process of the namespace, as the host's /proc shows it.
#[derive(Debug)]
struct Process {
    host_pid: i32,
    /// Its pid inside the namespace (the last NSpid field).
    namespace_pid: i32,
    parent: i32,
    state: char,
}

fn status_field(pid: i32, key: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_owned())
}

fn pid_namespace(pid: i32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// Every process in the PID namespace whose init is `init` (a host pid).
fn namespace_processes(init: i32) -> Vec<Process> {
    let namespace = pid_namespace(init).expect("the namespace's init is alive");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if pid_namespace(pid).as_ref() != Some(&namespace) {
            continue;
        }
        let (Some(nspid), Some(parent), Some(state)) = (
            status_field(pid, "NSpid:"),
            status_field(pid, "PPid:"),
            status_field(pid, "State:"),
        ) else {
            continue; // exited meanwhile
        };
        found.push(Process {
            host_pid: pid,
            namespace_pid: nspid.split_whitespace().last().unwrap().parse().unwrap(),
            parent: parent.parse().unwrap(),
            state: state.chars().next().unwrap(),
        });
    }
    found
}

/// Waits until no process of the namespace is a zombie; panics naming them after `limit`.
fn assert_no_zombie(init: i32, limit: Duration) {
    let until = Instant::now() + limit;
    loop {
        let zombies: Vec<String> = namespace_processes(init)
            .iter()
            .filter(|p| p.state == 'Z')
            .map(|p| format!("{} (parent {})", p.host_pid, p.parent))
            .collect();
        if zombies.is_empty() {
            return;
        }
        assert!(Instant::now() < until, "zombies left: {zombies:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn as_pid_one_it_serves_every_language_reaps_orphans_and_drains_on_sigterm() {
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(env!("CARGO_BIN_EXE_sandlot"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("SANDLOT_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    common::dies_with_the_test(&mut command);
    let mut unshare = command.spawn().expect("starting unshare (util-linux)");
    let log = Arc::new(Mutex::new(Vec::new()));
    let lines = log.clone();
    let stderr = BufReader::new(unshare.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line);
        }
    });
    let (tx, rx) = mpsc::channel();
    let stdout = BufReader::new(unshare.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if let Some(address) = line.strip_prefix("sandlot: ready on ") {
                let _ = tx.send(address.to_owned());
            }
        }
    });
    let Ok(base) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = unshare.kill();
        let log = log.lock().unwrap();
        let tail = &log[log.len().saturating_sub(12)..];
        panic!("sandlot as PID 1 did not become ready in 60 s: {tail:#?}");
    };
    let server = common::Server { base, pid: 0 };

    // The namespace's init is sandlot itself.
    let init = common::processes::children(unshare.id() as i32)
        .first()
        .expect("unshare's child, the namespace's init")
        .0;
    let init_process = namespace_processes(init)
        .into_iter()
        .find(|p| p.host_pid == init)
        .unwrap();
    assert_eq!(init_process.namespace_pid, 1);
    assert_eq!(
        std::fs::read_link(format!("/proc/{init}/exe")).unwrap(),
        std::path::Path::new(env!("CARGO_BIN_EXE_sandlot"))
    );

    let answer = server.python("def main(a):\n    return {'b': a + 1}", json!({"a": 1}));
    assert_eq!(answer["result"]["b"], 2, "{answer}");
    let answer = server.javascript("function main({a}) { return {b: a * 2} }", json!({"a": 4}));
    assert_eq!(answer["result"]["b"], 8, "{answer}");
    let answer = server.run(
        json!({"language": "python", "code": "def main():\n    while True: pass",
                                   "limits": {"timeout_ms": 500}}),
    );
    assert_eq!(answer["error"]["kind"], "timeout", "{answer}");
    let answer = server.run(json!({"language": "shell", "code": "echo hi from $0"}));
    assert_eq!(answer["exit_code"], 0, "{answer}");
    assert!(
        answer["stdout"].as_str().unwrap().starts_with("hi from"),
        "{answer}"
    );

    // An orphan of the namespace (a process whose parent exits before it) is adopted by PID 1
    // and reaped when it ends.
    let out = Command::new("nsenter")
        .args(["--target", &init.to_string(), "--pid", "--"])
        // Its stdio elsewhere, or `output()` would wait for it to close the pipe (to exit).
        .args(["sh", "-c", "sleep 2 </dev/null >/dev/null 2>&1 & echo $!"])
        .output()
        .expect("nsenter (util-linux)");
    assert!(out.status.success(), "{out:?}");
    let orphan: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let seen = namespace_processes(init);
    let adopted = seen
        .iter()
        .find(|p| p.namespace_pid == orphan)
        .unwrap_or_else(|| panic!("the orphan {orphan} is not among {seen:?}"));
    assert_eq!(adopted.parent, init, "the orphan was not adopted by PID 1");
    // It ends after 2 s; then it must be gone, not a zombie.
    let until = Instant::now() + Duration::from_secs(10);
    while namespace_processes(init)
        .iter()
        .any(|p| p.namespace_pid == orphan && p.state != 'Z')
    {
        assert!(Instant::now() < until, "the orphan never ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_no_zombie(init, Duration::from_secs(5));
    assert!(
        !namespace_processes(init)
            .iter()
            .any(|p| p.namespace_pid == orphan),
        "the orphan was not reaped"
    );

    // SIGTERM to PID 1: the run in flight finishes, then everything exits 0.
    let base = server.base.clone();
    let python = common::processes::zygote_pid(&server, "python").expect("a python zygote");
    let python = namespace_processes(init)
        .iter()
        .find(|p| p.namespace_pid == python)
        .expect("the python zygote in the namespace")
        .host_pid;
    // Busy for 2 s: seen running, it is in flight when the signal comes.
    let in_flight = std::thread::spawn(move || {
        common::Server { base, pid: 0 }.python(
            "import time\ndef main():\n    end = time.monotonic() + 2\n    \
             while time.monotonic() < end:\n        pass\n    return {'slept': True}",
            json!({}),
        )
    });
    common::processes::wait_for_busy_child(python, Duration::from_secs(10));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let answer = in_flight.join().unwrap();
    assert_eq!(answer["result"]["slept"], true, "{answer}");
    let until = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = unshare.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < until, "sandlot did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{:?}", log.lock().unwrap());
}
