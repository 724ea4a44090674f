//! What a child can make the *server* hold in memory. Code past the import policy can write any
//! frame to its job channel (descriptor 3); the server reads each kind of frame up to that
//! kind's cap and parses it into bounded, typed structures, so no frame costs the server more
//! than a small multiple of its cap, however it is shaped.
//!
//! The bound: a server with 4 workers, sent every kind of forged frame by 4 runs at once,
//! keeps its peak resident memory (`VmHWM`) under 200 MiB. (Before the frames were typed, one
//! 100 MB report of `{"images": [0, 0, ...]}` took it to 1.67 GB.)

mod common;

use serde_json::{json, Value};

const PEAK_BOUND_KB: u64 = 200 * 1024;

/// Python whose `main` writes `payload` (a bytes expression) as one frame tagged `tag` on its
/// job channel, waits for the server to act on it, and returns.
fn forging(tag: char, payload_expression: &str) -> Value {
    let code = format!(
        "import os, struct, time\n\
         def main():\n\
         \x20   payload = {payload_expression}\n\
         \x20   frame = memoryview(struct.pack('<I', len(payload) + 1) + b'{tag}' + payload)\n\
         \x20   del payload\n\
         \x20   while frame:\n\
         \x20       frame = frame[os.write(3, frame):]\n\
         \x20   time.sleep(2)\n\
         \x20   return {{'real': True}}\n"
    );
    json!({
        "language": "python",
        "code": code,
        "limits": {"memory_mb": 1024, "timeout_ms": 20000},
    })
}

fn peak_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn forged_frames_of_every_kind_at_once_keep_the_server_small() {
    let server = common::start(&["--workers", "4"], &[]);
    let forgeries = [
        // A report of 100 MB: numbers where figures go (once 1.67 GB of parsed values).
        ('D', "b'{\"images\":[' + b'0,' * 50_000_000 + b'0]}'"),
        // A report under the cap whose figures are a million tiny objects.
        (
            'D',
            "b'{\"exit_code\":0,\"images\":[' + b'{\"format\":\"png\",\"base64\":\"AA\"},' * 400_000 + b'{}]}'",
        ),
        // A report whose error text is 16 MiB.
        (
            'D',
            "b'{\"exit_code\":1,\"error\":{\"kind\":\"runtime_error\",\"message\":\"' + b'E' * (16 << 20) + b'\",\"traceback\":\"' + b'T' * (2 << 20) + b'\"}}'",
        ),
        // A broker request of 10 MB whose body is numbers.
        (
            'R',
            "b'{\"url\":\"http://127.0.0.1:9/\",\"body\":[' + b'0,' * 5_000_000 + b'0]}'",
        ),
    ];
    let outcomes: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = forgeries
            .iter()
            .flat_map(|(tag, payload)| std::iter::repeat_n((*tag, *payload), 4))
            .map(|(tag, payload)| {
                let server = &server;
                s.spawn(move || server.run(forging(tag, payload)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let peak = peak_kb(server.pid);
    eprintln!("the server's peak RSS: {} MiB", peak / 1024);
    assert!(
        peak < PEAK_BOUND_KB,
        "the server's peak RSS reached {} MiB (bound: {} MiB)",
        peak / 1024,
        PEAK_BOUND_KB / 1024
    );
    for outcome in &outcomes {
        // Whatever was forged, the answer is a run's answer, and its error text is capped.
        assert!(
            outcome["ok"].is_boolean(),
            "{}",
            &outcome.to_string()[..300]
        );
        let error = &outcome["error"];
        let text = error["message"].as_str().map_or(0, str::len)
            + error["traceback"].as_str().map_or(0, str::len);
        assert!(text <= 1 << 20, "{text} bytes of error text");
    }
    // The server still runs code.
    let r = server.python("def main():\n    return {'x': 1}\n", json!({}));
    assert_eq!(r["result"], json!({"x": 1}), "{r}");
}
