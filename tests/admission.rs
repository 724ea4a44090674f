//! Admission over real HTTP: a run waiting in `time.sleep`, on a JavaScript timer, on a
//! brokered request or on a read of a brokered connection gives its core back (`--workers`), so a trivial run is answered while
//! it waits; the runs alive stay within `--max-children`; a waiting child is stopped, so it
//! cannot compute without a core.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{processes, wait_for, Server};

const PY_SLEEP: &str = "import time\ndef main(s):\n    time.sleep(s)\n    return {'slept': s}";
const JS_SLEEP: &str =
    "async function main({s}) { await new Promise(r => setTimeout(r, s * 1000)); return {slept: s} }";

/// One of the server's gauges from /metrics.
fn gauge(server: &Server, name: &str) -> i64 {
    let text = server.get("/metrics").text;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("sandlot_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sandlot_{name} in /metrics:\n{text}"))
}

/// Sends a run on its own thread; the thread's value is the response.
fn in_flight(
    server: &'static Server,
    language: &str,
    code: &str,
    inputs: Value,
) -> JoinHandle<Value> {
    let body = json!({"language": language, "code": code, "inputs": inputs});
    std::thread::spawn(move || server.run(body))
}

fn leak(server: Server) -> &'static Server {
    Box::leak(Box::new(server))
}

#[test]
fn runs_waiting_in_a_sleep_let_a_trivial_run_compute_meanwhile() {
    // One core for runs: before, a sleeping run held it and the trivial run queued behind.
    let server = leak(common::start(&["--workers", "1"], &[]));
    let sleepers: Vec<_> = (0..3)
        .map(|_| in_flight(server, "python", PY_SLEEP, json!({"s": 4})))
        .chain([in_flight(server, "javascript", JS_SLEEP, json!({"s": 4}))])
        .collect();
    wait_for(
        Duration::from_secs(10),
        || "four sleeping runs admitted".into(),
        || (gauge(server, "runs_alive") == 4 && gauge(server, "workers_busy") == 0).then_some(()),
    );
    for language in ["python", "javascript"] {
        let r = match language {
            "python" => server.python("def main(a):\n    return {'n': a + 1}", json!({"a": 1})),
            _ => server.javascript("function main({a}) { return {n: a + 1} }", json!({"a": 1})),
        };
        assert_eq!(r["result"]["n"], 2, "{r}");
    }
    assert!(
        sleepers.iter().all(|s| !s.is_finished()),
        "the trivial runs were answered only after a sleeper ended"
    );
    for sleeper in sleepers {
        let r = sleeper.join().unwrap();
        assert_eq!(r["result"]["slept"], 4, "{r}");
        let took = r["execution_time_ms"].as_f64().unwrap();
        assert!(took >= 4000.0, "a 4 s sleep took {took} ms: {r}");
    }
}

#[test]
fn the_runs_alive_stay_within_max_children() {
    let server = leak(common::start(
        &["--workers", "1", "--max-children", "2"],
        &[],
    ));
    let sleepers: Vec<_> = (0..3)
        .map(|_| in_flight(server, "python", PY_SLEEP, json!({"s": 2})))
        .collect();
    wait_for(
        Duration::from_secs(10),
        || "two runs alive, one queued".into(),
        || (gauge(server, "runs_alive") == 2 && gauge(server, "queue_waiting") == 1).then_some(()),
    );
    let started = Instant::now();
    for sleeper in sleepers {
        assert_eq!(sleeper.join().unwrap()["result"]["slept"], 2);
    }
    // The third ran once a place was free: after the first two's 2 s.
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

#[test]
fn a_waiting_child_is_stopped_so_it_cannot_compute_without_a_core() {
    let server = leak(common::start(&["--workers", "1"], &[]));
    let zygote = processes::zygote_pid(server, "python").expect("the python zygote");
    let sleeper = in_flight(server, "python", PY_SLEEP, json!({"s": 3}));
    // The kernel's word: the child is stopped (T), not merely blocked like the pooled ones.
    let stopped = wait_for(
        Duration::from_secs(10),
        || "the sleeping child stopped".into(),
        || {
            processes::children(zygote)
                .into_iter()
                .find(|&(_, state)| state == 'T')
                .map(|(pid, _)| pid)
        },
    );
    let cpu = processes::cpu_time(stopped);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(processes::cpu_time(stopped), cpu);
    assert_eq!(sleeper.join().unwrap()["result"]["slept"], 3);
}

#[test]
fn time_sleep_keeps_its_meaning() {
    let server = common::shared();
    let r = server.python(
        "import time\n\
         def main():\n\
         \x20   t = time.monotonic()\n\
         \x20   time.sleep(0.25)\n\
         \x20   time.sleep(0.001)\n\
         \x20   time.sleep(0)\n\
         \x20   errors = []\n\
         \x20   for bad in (-1, 'x', None, float('nan')):\n\
         \x20       try:\n\
         \x20           time.sleep(bad)\n\
         \x20       except (ValueError, TypeError) as e:\n\
         \x20           errors.append(type(e).__name__)\n\
         \x20   return {'took': time.monotonic() - t, 'errors': errors}",
        json!({}),
    );
    assert!(r["result"]["took"].as_f64().unwrap() >= 0.25, "{r}");
    assert_eq!(
        r["result"]["errors"],
        json!(["ValueError", "TypeError", "TypeError", "ValueError"]),
        "{r}"
    );
    // A sleep past the run's deadline ends the run at the deadline.
    let started = Instant::now();
    let r = server.run(
        json!({"language": "python", "code": PY_SLEEP, "inputs": {"s": 30},
                              "limits": {"timeout_ms": 1000}}),
    );
    assert_eq!(r["error"]["kind"], "timeout", "{r}");
    assert!(started.elapsed() < Duration::from_secs(10), "{r}");
}

/// A server on 127.0.0.2 that answers each request after `delay`, counting the requests.
fn slow_server(delay: Duration) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counted = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 2 {
                    line.clear();
                }
                std::thread::sleep(delay);
                let mut client = client;
                let _ = client.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nslow",
                );
            });
        }
    });
    (port, seen)
}

#[test]
fn runs_waiting_on_a_brokered_request_let_a_trivial_run_compute_meanwhile() {
    let server = leak(common::start(
        &[
            "--workers",
            "1",
            "--http-allow",
            "127.0.0.2/32",
            "--connect-ports",
            "1024-65535",
        ],
        &[],
    ));
    let (port, seen) = slow_server(Duration::from_secs(4));
    let waiting = vec![
        // Python's own client reads its brokered socket: the read waits through the server.
        in_flight(
            server,
            "python",
            "import urllib.request\ndef main(port):\n    with urllib.request.urlopen(f'http://127.0.0.2:{port}/') as r:\n        return {'body': r.read().decode()}",
            json!({"port": port}),
        ),
        in_flight(
            server,
            "python",
            "def main(port):\n    r = SystemHelper.httpRequest(f'http://127.0.0.2:{port}/')\n    return {'body': r['data']}",
            json!({"port": port}),
        ),
        in_flight(
            server,
            "javascript",
            "async function main({port}) { const r = await fetch(`http://127.0.0.2:${port}/`); return {body: await r.text()} }",
            json!({"port": port}),
        ),
    ];
    wait_for(
        Duration::from_secs(10),
        || "the three requests at the slow server".into(),
        || (seen.load(Ordering::SeqCst) == 3).then_some(()),
    );
    let r = server.python("def main(a):\n    return {'n': a + 1}", json!({"a": 1}));
    assert_eq!(r["result"]["n"], 2, "{r}");
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "the trivial run was answered only after a brokered request ended"
    );
    for w in waiting {
        let r = w.join().unwrap();
        assert_eq!(r["result"]["body"], "slow", "{r}");
    }
}
