//! Time, memory and output limits, and many runs at once.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;

fn run_timed(body: serde_json::Value) -> (serde_json::Value, Duration) {
    let started = Instant::now();
    let r = common::shared().run(body);
    (r, started.elapsed())
}

#[test]
fn a_run_past_its_deadline_returns_within_a_second_of_it_as_timeout() {
    for (language, code) in [
        (
            "python",
            "import time\ndef main():\n    time.sleep(60)\n    return {}\n",
        ),
        ("python", "def main():\n    while True:\n        pass\n"),
        ("javascript", "function main() { while (true) {} }"),
        (
            "javascript",
            "async function main() { for (;;) { await null } }",
        ),
    ] {
        let (r, elapsed) = run_timed(json!({"language": language, "code": code,
            "limits": {"timeout_ms": 1000}}));
        assert_eq!(r["error"]["kind"], "timeout", "{code}: {r}");
        assert_eq!(r["exit_code"], 124, "{r}");
        // When the answer comes is what is tested here; the test waits on nothing.
        assert!(
            elapsed < Duration::from_millis(2000),
            "{code}: took {elapsed:?}"
        );
        assert!(elapsed >= Duration::from_millis(950), "{code}: {elapsed:?}");
    }
}

#[test]
fn a_2_gb_allocation_under_128_mb_is_memory_limit() {
    for (language, code) in [
        ("python", "def main():\n    b = bytearray(2 * 1024**3)\n    return {'n': len(b)}\n"),
        ("python", "def main():\n    xs = []\n    while True:\n        xs.append('x' * 1_000_000 + str(len(xs)))\n"),
        ("javascript", "function main() { const a = new Uint8Array(2000 * 1024 * 1024); return {n: a.length} }"),
        ("javascript", "function main() { const xs = []; for (;;) xs.push('x'.repeat(1e6) + xs.length) }"),
    ] {
        let r = common::shared().run(json!({"language": language, "code": code,
            "limits": {"memory_mb": 128, "timeout_ms": 20000}}));
        assert_eq!(r["error"]["kind"], "memory_limit", "{code}: {r}");
        assert!(r["error"]["message"].as_str().unwrap().contains("memory"), "{r}");
    }
}

#[test]
fn twenty_mb_of_output_is_output_limit_and_the_output_stops_at_the_limit() {
    for (language, code) in [
        ("python", "print('x' * (20 * 1024 * 1024))"),
        ("python", "while True:\n    try:\n        print('y' * 1000)\n    except BaseException:\n        pass\n"),
        ("javascript", "console.log('x'.repeat(20 * 1024 * 1024))"),
        ("javascript", "for (;;) { try { console.log('y'.repeat(1000)) } catch (e) {} }"),
    ] {
        let r = common::shared().run(json!({"language": language, "code": code, "mode": "script",
            "limits": {"max_output_bytes": 1048576, "timeout_ms": 20000}}));
        assert_eq!(r["error"]["kind"], "output_limit", "{code}: {r}");
        let out = r["stdout"].as_str().unwrap().len() + r["stderr"].as_str().unwrap().len();
        assert!(out <= 1048576, "{out} bytes came back");
        assert!(out >= 1048576 - 1000, "the output up to the limit is kept: {out}");
    }
}

#[test]
fn a_huge_return_value_is_output_limit() {
    let r = common::shared().run(json!({"language": "python",
        "code": "def main():\n    return {'big': 'x' * 5_000_000}\n",
        "limits": {"max_output_bytes": 1048576}}));
    assert_eq!(r["error"]["kind"], "output_limit", "{r}");
    // JavaScript: one long string, and many small values (sandlot's own JSON walk stops at the
    // limit and stringify's answer is checked against it too).
    for code in [
        "function main() { return {big: 'x'.repeat(5000000)} }",
        "function main() { return {rows: Array.from({length: 200000}, (_, i) => ({i, s: 'row'}))} }",
    ] {
        let r = common::shared().run(json!({"language": "javascript", "code": code,
            "limits": {"max_output_bytes": 1048576}}));
        assert_eq!(r["error"]["kind"], "output_limit", "{code}: {r}");
    }
}

#[test]
fn sixty_four_concurrent_requests_are_all_answered_correctly() {
    let server = common::shared();
    let handles: Vec<_> = (0..64)
        .map(|i| {
            std::thread::spawn(move || {
                let r = if i % 2 == 0 {
                    server.python(
                        "def main(i):\n    return {'square': i * i, 'who': 'py'}\n",
                        json!({"i": i}),
                    )
                } else {
                    server.javascript(
                        "function main({i}) { return {square: i * i, who: 'js'} }",
                        json!({"i": i}),
                    )
                };
                (i, r)
            })
        })
        .collect();
    for handle in handles {
        let (i, r) = handle.join().unwrap();
        assert_eq!(r["ok"], true, "{i}: {r}");
        assert_eq!(r["result"]["square"], i * i, "{i}: {r}");
        assert_eq!(r["result"]["who"], if i % 2 == 0 { "py" } else { "js" });
    }
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    // The one place for a run (--max-children 1; a waiting run gives back its core, not its
    // place) is held by a run that waits on a brokered HTTP request to a listener of the
    // test's, answered only once the requests under test have had their answers: the load
    // lasts exactly as long as the test needs it, whatever the machine's speed.
    let held = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let server = common::start(
        &[
            "--workers",
            "1",
            "--max-children",
            "1",
            "--queue",
            "1",
            "--http-allow",
            "127.0.0.2/32",
        ],
        &[],
    );
    let server = &*Box::leak(Box::new(server));
    let holder = json!({"language": "python", "code": format!(
        "def main():\n    return {{'held': SystemHelper.httpRequest('http://127.0.0.2:{port}/')['status']}}\n")})
    .to_string();
    let queue_waiting = || {
        server.get("/metrics").text.lines().find_map(|l| {
            l.strip_prefix("sandlot_queue_waiting ")?
                .parse::<f64>()
                .ok()
        })
    };
    // The native API, dify-sandbox's and fastgpt-sandbox's: each refuses the same way.
    for (path, body) in [
        (
            "/v1/run",
            json!({"language": "python", "code": "def main():\n    return {}\n"}),
        ),
        (
            "/v1/sandbox/run",
            json!({"language": "python3", "code": "print(1)\n"}),
        ),
        (
            "/sandbox/python",
            json!({"code": "def main():\n    return 1\n"}),
        ),
    ] {
        let body = body.to_string();
        let holder = {
            let holder = holder.clone();
            std::thread::spawn(move || server.post("/v1/run", &holder, &[]))
        };
        // The holder's request reached the listener: the worker is taken.
        let (mut held, _) = held.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            std::io::Read::read_exact(&mut held, &mut byte).unwrap();
            head.push(byte[0]);
        }
        // One request of the route waits in the queue of one...
        let queued = {
            let body = body.clone();
            std::thread::spawn(move || server.post(path, &body, &[]))
        };
        common::wait_for(
            Duration::from_secs(10),
            || format!("{path}: a request in the queue ({:?})", queue_waiting()),
            || (queue_waiting() == Some(1.0)).then_some(()),
        );
        // ...so the next ones find it full.
        let mut replies: Vec<_> = (0..2).map(|_| server.post(path, &body, &[])).collect();
        std::io::Write::write_all(
            &mut held,
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
        )
        .unwrap();
        drop(held);
        let holder = holder.join().unwrap();
        assert_eq!(holder.body["result"]["held"], 200, "{}", holder.text);
        replies.push(queued.join().unwrap());
        let busy: Vec<_> = replies.iter().filter(|r| r.status == 503).collect();
        let ran = replies.iter().filter(|r| r.status == 200).count();
        assert_eq!(busy.len(), 2, "{path}: the full queue did not refuse");
        assert!(ran >= 1, "{path}");
        for reply in busy {
            assert!(
                reply.headers.iter().any(|(k, _)| k == "retry-after"),
                "{path}"
            );
            if path == "/v1/run" {
                assert_eq!(reply.body["error"]["kind"], "busy");
            }
        }
    }
}

/// The memory limit holds where the allocation is Rust's own (here, the copy of a logged string
/// that console.log hands to Rust): the kernel's refusal is reported as `memory_limit`, not a
/// crash. (The output itself lives outside the run's memory, in the output file.)
#[test]
fn memory_refused_to_rust_code_is_memory_limit_not_a_crash() {
    for memory_mb in [16, 24] {
        let r = common::shared().run(json!({
            "language": "javascript",
            "code": "function main() { let s = 'x'.repeat(1 << 20); for (;;) { s += s; console.log(s) } }",
            "limits": {"memory_mb": memory_mb, "max_output_bytes": 16 * 1024 * 1024},
        }));
        assert_eq!(r["error"]["kind"], "memory_limit", "{memory_mb} MB: {r}");
        assert_eq!(r["exit_code"], 1, "{r}");
    }
}
