//! A call the jail refuses is named in the run's error, and still has no effect: the kernel
//! traps it, the child's handler answers EPERM and notes it (`src/jail/refused_calls.rs`).
//! What glibc calls with every signal blocked (`pthread_create`'s and `posix_spawn`'s clone,
//! `fork()`'s in glibc 2.41, `raise()`'s tgkill) stays refused by the kernel itself, so it
//! still gets its error.

mod common;

use std::net::TcpListener;

use serde_json::{json, Value};

fn message(r: &Value) -> &str {
    r["error"]["message"].as_str().unwrap_or_default()
}

#[test]
fn a_refused_connection_names_socket_and_reaches_no_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let r = common::shared().python(
        "import socket\n\
         def main(port):\n    \
             s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n    \
             s.connect(('127.0.0.1', port))\n    \
             return {}\n",
        json!({ "port": port }),
    );
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"]["kind"], "runtime_error", "{r}");
    assert!(
        message(&r).starts_with("PermissionError: [Errno 1] Operation not permitted")
            && message(&r).ends_with("(the last system call the sandbox refused was `socket`)"),
        "{r}"
    );
    common::assert_no_connection_before_ours(&listener, &r.to_string());
}

#[test]
fn a_refused_write_names_openat_and_leaves_the_file_alone() {
    let token = common::random_token();
    let path = std::env::temp_dir().join(format!("sandlot-canary-{token}"));
    std::fs::write(&path, &token).unwrap();
    let r = common::shared().python(
        "import os\n\
         def main(path):\n    \
             fd = os.open(path, os.O_WRONLY | os.O_TRUNC)\n    \
             os.write(fd, b'overwritten')\n    \
             return {}\n",
        json!({ "path": path.to_str().unwrap() }),
    );
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        message(&r).ends_with("(the last system call the sandbox refused was `openat`)"),
        "{r}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        token,
        "the canary changed"
    );
    std::fs::remove_file(&path).unwrap();
}

/// A child's fork is refused untrapped (glibc 2.41 blocks every signal around it), so it is an
/// ordinary error; nothing names it, and no earlier refusal is named for it.
#[test]
fn a_refused_fork_is_an_error_not_a_kill() {
    let r = common::shared().python(
        "import os\ndef main():\n    os.fork()\n    return {}\n",
        json!({}),
    );
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(
        message(&r),
        "PermissionError: [Errno 1] Operation not permitted",
        "{r}"
    );
}

/// glibc blocks every signal around these clones: a trap would kill the process, so the
/// kernel answers them with EPERM itself, and the code gets its ordinary error.
#[test]
fn threads_and_spawns_still_fail_with_an_error_not_a_kill() {
    let r = common::shared().python(
        "import os, signal, threading\n\
         def main():\n    \
             out = {}\n    \
             try:\n        \
                 threading.Thread(target=lambda: None).start()\n    \
             except BaseException as e:\n        \
                 out['thread'] = type(e).__name__ + ': ' + str(e)\n    \
             try:\n        \
                 os.posix_spawn('/bin/true', ['true'], {})\n    \
             except BaseException as e:\n        \
                 out['spawn'] = type(e).__name__\n    \
             try:\n        \
                 signal.raise_signal(signal.SIGUSR1)\n    \
             except BaseException as e:\n        \
                 out['raise'] = type(e).__name__\n    \
             return out\n",
        json!({}),
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        r["result"]["thread"], "RuntimeError: can't start new thread",
        "{r}"
    );
    assert_eq!(r["result"]["spawn"], "PermissionError", "{r}");
    // glibc's raise() blocks every signal around its tgkill.
    assert_eq!(r["result"]["raise"], "PermissionError", "{r}");
}

/// User code cannot take the handler away (the refusals would then return garbage), and a
/// run that gets past a refusal succeeds without a word about it.
#[test]
fn the_handler_stays_and_a_run_that_recovers_succeeds() {
    let r = common::shared().python(
        "import signal, socket\n\
         def main():\n    \
             out = {}\n    \
             try:\n        \
                 signal.signal(signal.SIGSYS, signal.SIG_IGN)\n        \
                 out['replaced'] = True\n    \
             except PermissionError:\n        \
                 out['replaced'] = False\n    \
             try:\n        \
                 socket.socket()\n    \
             except PermissionError as e:\n        \
                 out['socket'] = e.errno\n    \
             return out\n",
        json!({}),
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        r["result"],
        json!({"replaced": false, "socket": libc::EPERM}),
        "{r}"
    );
}
