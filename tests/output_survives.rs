//! What a run printed before it died reaches the response, however it died — a timeout, the
//! memory limit, a crash, the output limit — in every language and through every API: the
//! output is written outside the child as it is produced.

mod common;

use serde_json::{json, Value};

fn run(body: Value) -> Value {
    common::shared().run(body)
}

/// The native API: the error kind the run ended with, and its stdout and stderr.
fn ended(language: &str, code: &str, limits: Value) -> (String, String, String) {
    let r = run(json!({"language": language, "code": code, "limits": limits}));
    (
        r["error"]["kind"].as_str().unwrap_or("none").to_owned(),
        r["stdout"].as_str().unwrap().to_owned(),
        r["stderr"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn python_output_survives_a_timeout_a_memory_kill_and_a_crash() {
    let (kind, stdout, stderr) = ended(
        "python",
        "import sys\ndef main():\n    for i in range(3):\n        print('step', i)\n    \
         print('to stderr', file=sys.stderr)\n    while True:\n        pass\n",
        json!({"timeout_ms": 500}),
    );
    assert_eq!(kind, "timeout");
    assert_eq!(stdout, "step 0\nstep 1\nstep 2\n");
    assert_eq!(stderr, "to stderr\n");

    let (kind, stdout, _) = ended(
        "python",
        "def main():\n    print('allocating')\n    x = []\n    while True:\n        \
         x.append(bytearray(1 << 20))\n",
        json!({"memory_mb": 64}),
    );
    assert_eq!(kind, "memory_limit");
    assert_eq!(stdout, "allocating\n");

    // A segmentation fault (a code object whose constant index is out of range): the process
    // dies at once, with no report.
    let (kind, stdout, _) = ended(
        "python",
        "def main():\n    print('about to crash')\n    c = (lambda: 0).__code__.replace(\
         co_consts=(), co_code=bytes([151, 0, 100, 5, 83, 0]))\n    return eval(c)\n",
        json!({}),
    );
    assert_eq!(kind, "runtime_error");
    assert_eq!(stdout, "about to crash\n");
}

#[test]
fn javascript_output_survives_a_timeout_and_a_memory_kill() {
    let (kind, stdout, stderr) = ended(
        "javascript",
        "function main() { console.log('step', 1); console.error('oops'); for (;;) {} }",
        json!({"timeout_ms": 500}),
    );
    assert_eq!(kind, "timeout");
    assert_eq!(stdout, "step 1\n");
    assert_eq!(stderr, "oops\n");

    let (kind, stdout, _) = ended(
        "javascript",
        "function main() { console.log('growing'); const a = []; for (;;) a.push(new Array(1e5).fill(1)) }",
        json!({"memory_mb": 64}),
    );
    assert_eq!(kind, "memory_limit");
    assert_eq!(stdout, "growing\n");
}

#[test]
fn shell_output_survives_a_timeout() {
    let (kind, stdout, _) = ended(
        "shell",
        "echo started; sleep 30",
        json!({"timeout_ms": 1000}),
    );
    assert_eq!(kind, "timeout");
    assert_eq!(stdout, "started\n");
}

#[test]
fn output_stops_exactly_at_the_limit_and_is_kept() {
    for language in ["python", "javascript"] {
        let code = match language {
            "python" => "def main():\n    while True:\n        print('0123456789', end='')\n",
            _ => "function main() { for (;;) process.stdout.write('0123456789') }",
        };
        let (kind, stdout, _) = ended(language, code, json!({"max_output_bytes": 1005}));
        assert_eq!(kind, "output_limit", "{language}");
        assert_eq!(stdout.len(), 1005, "{language}");
        assert!(stdout.starts_with("01234567890123"), "{language}");
    }
}

#[test]
fn the_dify_and_fastgpt_apis_return_the_output_of_a_run_that_timed_out() {
    // Neither API takes a time limit per request: the server's default applies.
    let s = common::start(&["--default-timeout-ms", "1000"], &[]);
    let dify = s.post(
        "/v1/sandbox/run",
        &json!({"language": "python3", "code": "print('dify says hi', flush=True)\nwhile True:\n    pass\n",
                "preload": "", "enable_network": false})
        .to_string(),
        &[("x-api-key", "dify-sandbox")],
    );
    assert_eq!(
        dify.body["data"]["stdout"], "dify says hi\n",
        "{}",
        dify.text
    );
    assert!(
        dify.body["data"]["error"]
            .as_str()
            .unwrap()
            .contains("timeout"),
        "{}",
        dify.text
    );

    for (path, code) in [
        (
            "/sandbox/js",
            "async function main() { console.log('fastgpt says hi'); for (;;) {} }",
        ),
        (
            "/sandbox/python",
            "def main():\n    print('fastgpt says hi')\n    while True:\n        pass\n",
        ),
    ] {
        let r = s.post(
            path,
            &json!({"code": code, "variables": {}}).to_string(),
            &[],
        );
        assert_eq!(r.body["success"], false, "{}", r.text);
        assert!(
            r.body["message"].as_str().unwrap().contains("timed out"),
            "{}",
            r.text
        );
        assert_eq!(
            r.body["data"]["log"], "fastgpt says hi",
            "{path}: {}",
            r.text
        );
    }
}
