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
    let server = common::start(&["--workers", "1", "--queue", "1"], &[]);
    let server = &*Box::leak(Box::new(server));
    // Runs that sleep (in user code) so that four sent at once overlap on one worker and a
    // queue of one: the sleep is the load under test, not a wait of the test's.
    let sleep = "import time\ntime.sleep(1.5)\n";
    // The native API, dify-sandbox's and fastgpt-sandbox's: each refuses the same way.
    for (path, body) in [
        (
            "/v1/run",
            json!({"language": "python", "code": format!("{sleep}def main():\n    return {{}}\n")}),
        ),
        (
            "/v1/sandbox/run",
            json!({"language": "python3", "code": sleep}),
        ),
        (
            "/sandbox/python",
            json!({"code": format!("{sleep}def main():\n    return 1\n")}),
        ),
    ] {
        let body = body.to_string();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let body = body.clone();
                std::thread::spawn(move || server.post(path, &body, &[]))
            })
            .collect();
        let replies: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let busy: Vec<_> = replies.iter().filter(|r| r.status == 503).collect();
        let ran = replies.iter().filter(|r| r.status == 200).count();
        assert!(!busy.is_empty(), "{path}: no request was refused");
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
