//! A child's report is the child's word, and code past the import policy can write its own on
//! the job channel (descriptor 3) or scribble on its output file (descriptor 4). The server
//! measures the time itself, takes the output from the output file cut at the run's limit,
//! checks the result and the figures against their caps, and treats a frame that is not a
//! report as the run's failure.

mod common;

use serde_json::{json, Value};

/// Python that sends `payload` (a report's JSON, or anything) as a report frame of its own,
/// after printing a line, then carries on to return `{"real": true}`.
fn forging(payload_expression: &str, memory_mb: u64) -> Value {
    let code = format!(
        "import os, json, struct, time\n\
         def main():\n\
         \x20   print('the real output')\n\
         \x20   payload = {payload_expression}\n\
         \x20   if isinstance(payload, str):\n\
         \x20       payload = payload.encode()\n\
         \x20   os.write(3, struct.pack('<I', len(payload) + 1) + b'D' + payload)\n\
         \x20   time.sleep(0.2)\n\
         \x20   return {{'real': True}}\n"
    );
    common::shared().run(json!({
        "language": "python",
        "code": code,
        "limits": {"memory_mb": memory_mb, "timeout_ms": 5000},
    }))
}

#[test]
fn a_forged_report_cannot_set_the_time_or_the_output() {
    let r = forging(
        "json.dumps({'result': {'forged': 1}, 'stdout': 'FORGED' * 1000, 'stderr': 'FORGED', \
         'execution_time_ms': -5, 'exit_code': 0})",
        256,
    );
    // The result is the child's word (it could have returned it), but the output and the time
    // are the server's.
    assert_eq!(r["result"], json!({"forged": 1}), "{r}");
    assert_eq!(r["stdout"], "the real output\n", "{r}");
    assert_eq!(r["stderr"], "", "{r}");
    let ms = r["execution_time_ms"].as_f64().unwrap();
    assert!(ms > 0.0 && ms < 5000.0, "{r}");
}

#[test]
fn a_forged_result_over_the_cap_is_output_limit() {
    // 3 MiB of result, under a 1 MiB output limit.
    let r = forging(
        "json.dumps({'result': {'x': 'A' * (3 << 20)}, 'exit_code': 0})",
        256,
    );
    assert_eq!(
        r["error"]["kind"],
        "output_limit",
        "{}",
        &r.to_string()[..300]
    );
    assert_eq!(r["result"], Value::Null);
    assert!(r.to_string().len() < 64 * 1024);
    assert_eq!(r["stdout"], "the real output\n");
}

#[test]
fn forged_figures_over_their_caps_are_output_limit() {
    let r = forging(
        "json.dumps({'exit_code': 0, 'images': [{'format': 'png', 'base64': 'AAAA'}] * 100})",
        256,
    );
    assert_eq!(r["error"]["kind"], "output_limit", "{r}");
    assert_eq!(r["images"], json!([]));
    // 12 figures of 1 MiB each: each under its cap, over the 10 MiB of all of them.
    let r = forging(
        "json.dumps({'exit_code': 0, 'images': [{'format': 'png', 'base64': 'A' * ((1 << 20) * 4 // 3)}] * 12})",
        256,
    );
    assert_eq!(
        r["error"]["kind"],
        "output_limit",
        "{}",
        &r.to_string()[..300]
    );
    assert_eq!(r["images"], json!([]));
    // A figure that is not one is not a report.
    let r = forging(
        "json.dumps({'exit_code': 0, 'images': [{'format': 'svg', 'base64': 'AAAA', 'x': 1}]})",
        256,
    );
    assert_eq!(r["error"]["kind"], "runtime_error", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("protocol"));
}

#[test]
fn a_frame_that_is_not_a_report_fails_the_run() {
    for payload in ["'this is not json'", "json.dumps({'exit_code': 'zero'})"] {
        let r = forging(payload, 256);
        assert_eq!(r["error"]["kind"], "runtime_error", "{r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains("protocol"),
            "{r}"
        );
        assert_eq!(r["stdout"], "the real output\n");
    }
    // A header announcing a frame larger than any report.
    let r = common::shared().run(json!({
        "language": "python",
        "code": "import os, struct, time\ndef main():\n    os.write(3, struct.pack('<I', 0xFFFFFFF0) + b'D')\n    time.sleep(1)\n    return {}\n",
    }));
    assert_eq!(r["error"]["kind"], "runtime_error", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("protocol"));
}

#[test]
fn connection_requests_without_reading_the_answers_end_the_run() {
    // Each answer may carry a socket, in flight until read: a child may not pile them up.
    let code = "import os, struct, time\n\
        def main():\n\
        \x20   ask = b'{\"host\": \"127.0.0.1\", \"port\": 80}'\n\
        \x20   for _ in range(3):\n\
        \x20       os.write(3, struct.pack('<I', len(ask) + 1) + b'C' + ask)\n\
        \x20       time.sleep(0.2)\n\
        \x20   return {'survived': True}\n";
    let r = common::shared().run(json!({"language": "python", "code": code}));
    assert_eq!(r["error"]["kind"], "runtime_error", "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("protocol"),
        "{r}"
    );
}

#[test]
fn a_scribbled_output_header_is_cut_at_the_limit() {
    // The output file's header claims 2^64-1 bytes of stdout and of stderr.
    let r = common::shared().run(json!({
        "language": "python",
        "code": "import mmap\ndef main():\n    print('x')\n    m = mmap.mmap(4, 16)\n    m[0:16] = b'\\xff' * 16\n    return {}\n",
        "limits": {"max_output_bytes": 4096},
    }));
    let stdout = r["stdout"].as_str().unwrap();
    let stderr = r["stderr"].as_str().unwrap();
    assert!(
        stdout.len() + stderr.len() <= 4096,
        "{} + {}",
        stdout.len(),
        stderr.len()
    );
    assert!(stdout.starts_with("x\n"), "{r}");
}
