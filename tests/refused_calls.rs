//! A call the jail refuses is named in the run's error, and still has no effect: the kernel
//! traps it, the child's handler answers EPERM and notes it (`src/jail/refused_calls.rs`).
//! Process and thread creation stay refused by the kernel itself, so code that blocks every
//! signal around them (glibc's `pthread_create` and `posix_spawn`) still gets its error.

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
            && message(&r).ends_with("(the sandbox refused the system call `socket`)"),
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
        message(&r).ends_with("(the sandbox refused the system call `openat`)"),
        "{r}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        token,
        "the canary changed"
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_refused_fork_is_named() {
    let r = common::shared().python(
        "import os\ndef main():\n    os.fork()\n    return {}\n",
        json!({}),
    );
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        message(&r).starts_with("PermissionError")
            && message(&r).ends_with("(the sandbox refused the system call `clone (fork)`)"),
        "{r}"
    );
}

/// glibc blocks every signal around these clones: a trap would kill the process, so the
/// kernel answers them with EPERM itself, and the code gets its ordinary error.
#[test]
fn threads_and_spawns_still_fail_with_an_error_not_a_kill() {
    let r = common::shared().python(
        "import os, threading\n\
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
             return out\n",
        json!({}),
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        r["result"]["thread"], "RuntimeError: can't start new thread",
        "{r}"
    );
    assert_eq!(r["result"]["spawn"], "PermissionError", "{r}");
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

/// A run's error names only its own refusals: one that raises PermissionError itself, after
/// runs whose calls were refused, gets no name.
#[test]
fn a_run_names_no_refusal_but_its_own() {
    let server = common::shared();
    for _ in 0..3 {
        let refused = server.python(
            "import socket\ndef main():\n    socket.socket()\n    return {}\n",
            json!({}),
        );
        assert!(message(&refused).contains("`socket`"), "{refused}");
    }
    let r = server.python(
        "def main():\n    raise PermissionError(1, 'Operation not permitted')\n",
        json!({}),
    );
    assert_eq!(
        message(&r),
        "PermissionError: [Errno 1] Operation not permitted",
        "{r}"
    );
}
