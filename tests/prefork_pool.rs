//! The prefork pool: children are forked and jailed ahead of demand, a run takes one for good,
//! the pool grows with concurrent demand (never past `--workers`), and a pooled child that died
//! while it waited is never handed to a run.

mod common;

use std::time::{Duration, Instant};

use common::processes;
use serde_json::{json, Value};

fn zygote(server: &common::Server, kind: &str) -> Value {
    let zygote = processes::zygote(server, kind);
    assert!(!zygote.is_null(), "no {kind} zygote");
    zygote
}

/// The server of the tests that only run code: one uses the Python pool, the other the
/// JavaScript one, so they do not see each other's runs.
fn workers_3() -> &'static common::Server {
    static SERVER: std::sync::OnceLock<common::Server> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| common::start(&["--workers", "3"], &[]))
}

fn pool_size(server: &common::Server, kind: &str) -> u64 {
    zygote(server, kind)["pool"].as_u64().expect("pool size")
}

/// Waits until `kind`'s pool holds at least `n` children.
fn wait_for_pool(server: &common::Server, kind: &str, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let size = pool_size(server, kind);
        if size >= n || Instant::now() > deadline {
            return size;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_run_gets_a_child_of_its_own_and_the_pool_refills() {
    let server = workers_3();
    assert!(
        wait_for_pool(server, "python", 1) >= 1,
        "no child forked ahead"
    );
    // os is not on the whitelist; its getpid is reached the way an escape would.
    let code = "def main():\n    os = [c for c in ().__class__.__base__.__subclasses__() \
                if c.__name__ == '_wrap_close'][0].__init__.__globals__\n    \
                return {'pid': os['getpid']()}";
    let pids: Vec<i64> = (0..5)
        .map(|_| {
            server.python(code, json!({}))["result"]["pid"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let mut unique = pids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), pids.len(), "a child ran twice: {pids:?}");
    assert!(
        wait_for_pool(server, "python", 1) >= 1,
        "the pool did not refill"
    );
}

#[test]
fn the_pool_grows_with_demand_but_never_past_workers() {
    let server = workers_3();
    wait_for_pool(server, "javascript", 1);
    // Six at once, each long enough to overlap: the pool's target rises to workers (3).
    let code = "async function main() { await new Promise(r => setTimeout(r, 300)); return {} }";
    let runs: Vec<_> = (0..6)
        .map(|_| std::thread::spawn(move || server.javascript(code, json!({}))))
        .collect();
    for run in runs {
        assert_eq!(run.join().unwrap()["ok"], true);
    }
    let grown = wait_for_pool(server, "javascript", 3);
    assert_eq!(grown, 3, "{}", zygote(server, "javascript"));
    // That it never asks for more than `--workers` is the pool's own unit test
    // (src/supervisor/pool.rs): no wait here could show a fork that never comes.
    assert!(pool_size(server, "javascript") <= 3);
}

#[test]
fn a_pooled_child_that_died_waiting_is_never_handed_out() {
    let server = common::start(&[], &[]);
    wait_for_pool(&server, "python", 1);
    let zygote_pid = zygote(&server, "python")["pid"].as_i64().unwrap();
    let zygote_pid = zygote_pid as i32;
    let waiting: Vec<i32> = processes::children(zygote_pid)
        .into_iter()
        .map(|(pid, _)| pid)
        .collect();
    assert!(!waiting.is_empty(), "no pooled child under the zygote");
    for &pid in &waiting {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
    // Dead and reaped by the zygote: still in the pool, as far as the server knows.
    let deadline = Instant::now() + Duration::from_secs(5);
    while waiting.iter().any(|pid| {
        processes::children(zygote_pid)
            .iter()
            .any(|(c, _)| c == pid)
    }) {
        assert!(Instant::now() < deadline, "the killed children did not go");
        std::thread::sleep(Duration::from_millis(20));
    }
    let reply = server.python("def main():\n    return {'x': 1}", json!({}));
    assert_eq!(reply["result"], json!({"x": 1}), "{reply}");
    assert_eq!(zygote(&server, "python")["restarts"], 0);
}
