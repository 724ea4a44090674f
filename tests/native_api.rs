//! POST /v1/run as docs/api.md describes it, over HTTP against a real server.

mod common;

use serde_json::{json, Value};

#[test]
fn python_main_gets_inputs_and_its_print_goes_to_stdout() {
    let r = common::shared().python(
        "def main(a, b):\n    print('adding', a, b)\n    return {'sum': a + b}\n",
        json!({"a": 20, "b": 22}),
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"], json!({"sum": 42}));
    assert_eq!(r["stdout"], "adding 20 22\n");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["error"], Value::Null);
    assert!(r["execution_time_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(r["images"], json!([]));
}

#[test]
fn javascript_main_is_awaited_and_console_streams_split() {
    let r = common::shared().javascript(
        "async function main({a, b}) {\n  console.log('obj', {a}, [1, 2]);\n  console.info('info');\n  console.debug('debug');\n  console.warn('careful');\n  console.error('bad');\n  await new Promise(r => r());\n  return {sum: a + b};\n}\n",
        json!({"a": 1, "b": 2}),
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"], json!({"sum": 3}));
    assert_eq!(r["stdout"], "obj {\"a\":1} [1,2]\ninfo\ndebug\n");
    assert_eq!(r["stderr"], "careful\nbad\n");
}

/// A job larger than the job channel's buffer (some 200 KB) goes out in parts: the server writes
/// what the channel takes at once, the rest as the child reads.
#[test]
fn an_input_larger_than_the_job_channel_arrives_whole() {
    let text: String = (0..4_000_000u32)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let expected = json!({"n": 4_000_000, "z": 153_846, "last": "bcd"});
    let r = common::shared().javascript(
        "function main({s}) { let z = 0; for (const c of s) if (c === 'z') z++; return {n: s.length, z, last: s.slice(-3)} }",
        json!({"s": text}),
    );
    assert_eq!(r["result"], expected, "{r}");
    let r = common::shared().python(
        "def main(s):\n    return {'n': len(s), 'z': s.count('z'), 'last': s[-3:]}\n",
        json!({"s": text}),
    );
    assert_eq!(r["result"], expected, "{r}");
}

#[test]
fn javascript_const_arrow_main_works() {
    let r = common::shared().javascript(
        "const main = ({s}) => ({upper: s.toUpperCase()});",
        json!({"s": "abc"}),
    );
    assert_eq!(r["result"], json!({"upper": "ABC"}), "{r}");
}

#[test]
fn python_runtime_error_points_at_the_users_line_without_wrapper_frames() {
    let r = common::shared().python(
        "def helper(x):\n    return 10 / x\n\ndef main():\n    return {'v': helper(0)}\n",
        json!({}),
    );
    let error = &r["error"];
    assert_eq!(error["kind"], "runtime_error", "{r}");
    assert_eq!(error["line"], 2);
    assert_eq!(error["column"], 12);
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("ZeroDivisionError"));
    let tb = error["traceback"].as_str().unwrap();
    assert!(tb.contains("File \"<code>\", line 5, in main"), "{tb}");
    assert!(tb.contains("File \"<code>\", line 2, in helper"), "{tb}");
    assert!(!tb.contains("sandlot"), "wrapper frames leaked: {tb}");
    assert_eq!(r["exit_code"], 1);
    assert_eq!(r["ok"], false);
}

#[test]
fn javascript_runtime_error_points_at_the_users_line() {
    let r = common::shared().javascript(
        "function main() {\n  const x = null;\n  return {v: x.y};\n}\n",
        json!({}),
    );
    assert_eq!(r["error"]["kind"], "runtime_error", "{r}");
    assert_eq!(r["error"]["line"], 3);
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("TypeError"));
    assert!(!r["error"]["traceback"]
        .as_str()
        .unwrap()
        .contains("sandlot"));
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let s = common::shared();
    let py = s.python("x = 1\ndef main(:\n    pass\n", json!({}));
    assert_eq!(py["error"]["kind"], "syntax_error", "{py}");
    assert_eq!(py["error"]["line"], 2);
    assert!(py["error"]["column"].as_u64().unwrap() >= 1);
    let js = s.javascript("const a = 1;\nfunction main( {\n}\n", json!({}));
    assert_eq!(js["error"]["kind"], "syntax_error", "{js}");
    assert!(js["error"]["line"].as_u64().is_some());
}

#[test]
fn a_refused_import_names_the_module_and_the_allowed_list() {
    let s = common::shared();
    let py = s.python("import subprocess\ndef main():\n    return {}\n", json!({}));
    assert_eq!(py["error"]["kind"], "module_not_allowed", "{py}");
    let message = py["error"]["message"].as_str().unwrap();
    assert!(message.contains("'subprocess'"), "{message}");
    // The native API allows the standard library but what cannot work in the jail, and the
    // data packages: the message says so and names the refused modules and the packages.
    assert!(
        message.contains("standard library except") && message.contains("socket"),
        "{message}"
    );
    assert!(message.contains("pandas"), "{message}");
    assert_eq!(py["error"]["line"], 1);

    let js = s.javascript(
        "function main() {\n  return {cp: require('child_process')};\n}\n",
        json!({}),
    );
    assert_eq!(js["error"]["kind"], "module_not_allowed", "{js}");
    let message = js["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("'child_process'") && message.contains("lodash"),
        "{message}"
    );
    assert_eq!(js["error"]["line"], 2);
}

#[test]
fn whitelisted_modules_import_and_their_internal_imports_work() {
    let r = common::shared().python(
        "import json, re, datetime, hashlib, collections, statistics, decimal, uuid, base64\n\
         def main():\n    d = datetime.datetime.strptime('2024-03-01', '%Y-%m-%d')\n    \
         return {'week': d.strftime('%A'), 'h': hashlib.sha256(b'x').hexdigest()[:8],\n            \
         'm': statistics.mean([1, 2, 3]), 'u': len(str(uuid.uuid4())), 'b': base64.b64encode(b'hi').decode()}\n",
        json!({}),
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["week"], "Friday");
    assert_eq!(r["result"]["h"], "2d711642");
    assert_eq!(r["result"]["m"], 2);
    assert_eq!(r["result"]["u"], 36);
    assert_eq!(r["result"]["b"], "aGk=");
}

#[test]
fn allowed_modules_narrows_the_whitelist_for_one_run() {
    let s = common::shared();
    let code = "import json\ndef main():\n    return {}\n";
    let narrowed = s.run(json!({"language": "python", "code": code, "allowed_modules": ["math"]}));
    assert_eq!(
        narrowed["error"]["kind"], "module_not_allowed",
        "{narrowed}"
    );
    let widened = s.run(json!({"language": "python", "code": code, "allowed_modules": ["json"]}));
    assert_eq!(widened["ok"], true, "{widened}");
}

#[test]
fn invalid_returns_are_reported_as_such() {
    let s = common::shared();
    for (code, needle) in [
        ("x = 1\n", "main"),
        ("def main():\n    return [1, 2]\n", "dict"),
        ("def main():\n    return {'s': {1, 2}}\n", "result.s"),
        (
            "def main():\n    d = {}\n    d['me'] = d\n    return d\n",
            "itself",
        ),
    ] {
        let r = s.python(code, json!({}));
        assert_eq!(r["error"]["kind"], "invalid_return", "{code}: {r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains(needle),
            "{r}"
        );
    }
    for code in [
        "var x = 1;",
        "function main() { return 5 }",
        "function main() { const o = {}; o.o = o; return o }",
        "function main() { return [1] }",
    ] {
        let r = s.javascript(code, json!({}));
        assert_eq!(r["error"]["kind"], "invalid_return", "{code}: {r}");
    }
}

#[test]
fn nan_and_infinity_become_null() {
    let r = common::shared().python(
        "def main():\n    return {'n': float('nan'), 'i': [float('inf')], 'ok': 1.5}\n",
        json!({}),
    );
    assert_eq!(
        r["result"],
        json!({"n": null, "i": [null], "ok": 1.5}),
        "{r}"
    );
}

#[test]
fn script_mode_runs_top_to_bottom_and_reports_the_exit_code() {
    let s = common::shared();
    let ok = s.run(json!({"language": "python", "mode": "script", "code": "print('hello')"}));
    assert_eq!(ok["stdout"], "hello\n");
    assert_eq!(ok["result"], Value::Null);
    assert_eq!(ok["exit_code"], 0);

    let failed = s.run(json!({"language": "python3", "mode": "script",
        "code": "print('before')\nraise ValueError('boom')\n"}));
    assert_eq!(failed["exit_code"], 1, "{failed}");
    assert_eq!(failed["stdout"], "before\n");
    assert!(failed["stderr"]
        .as_str()
        .unwrap()
        .contains("ValueError: boom"));
    assert_eq!(failed["error"]["line"], 2);

    let exited = s.run(json!({"language": "py", "mode": "script", "code": "exit(3)"}));
    assert_eq!(exited["exit_code"], 3, "{exited}");

    let js = s.run(json!({"language": "nodejs", "mode": "script",
        "code": "console.log(JSON.stringify({a: 1}, null, 2)); undeclared = 5; console.log(undeclared)"}));
    assert_eq!(js["stdout"], "{\n  \"a\": 1\n}\n5\n", "{js}");

    let thrown =
        s.run(json!({"language": "js", "mode": "script", "code": "throw new Error('nope')"}));
    assert_eq!(thrown["exit_code"], 1);
    assert!(
        thrown["stderr"].as_str().unwrap().contains("Error: nope"),
        "{thrown}"
    );
}

#[test]
fn malformed_requests_get_400_naming_the_field() {
    let s = common::shared();
    for (body, field) in [
        (r#"{"code": "x"}"#, "language"),
        (r#"{"language": "python"}"#, "code"),
        (r#"{"language": "cobol", "code": ""}"#, "language"),
        (r#"{"language": "python", "code": 5}"#, "code"),
        (
            r#"{"language": "python", "code": "", "inputs": [1]}"#,
            "inputs",
        ),
        (
            r#"{"language": "python", "code": "", "mode": "fast"}"#,
            "mode",
        ),
        (
            r#"{"language": "python", "code": "", "limits": {"timeout_ms": "x"}}"#,
            "limits.timeout_ms",
        ),
        (
            r#"{"language": "python", "code": "", "limits": {"timeout_ms": 0}}"#,
            "limits.timeout_ms",
        ),
        (
            r#"{"language": "python", "code": "", "limits": {"memroy_mb": 5}}"#,
            "memroy_mb",
        ),
        (
            r#"{"language": "python", "code": "", "allowed_modules": ["subprocess"]}"#,
            "allowed_modules",
        ),
        (
            r#"{"language": "python", "code": "", "colour": 1}"#,
            "colour",
        ),
        (r#"{"language": "python", "code": "#, "JSON"),
        ("", "JSON"),
    ] {
        let reply = s.post("/v1/run", body, &[]);
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        assert_eq!(reply.body["error"]["kind"], "bad_request", "{body}");
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{body}: {message}");
    }
}

/// A server with small maxima, shared by the tests of each: a body cap of 100 kB and a
/// timeout cap of 1.5 s apply to different requests.
fn capped() -> &'static common::Server {
    static SERVER: std::sync::OnceLock<common::Server> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        common::start(
            &["--max-body-bytes", "100000", "--max-timeout-ms", "1500"],
            &[],
        )
    })
}

#[test]
fn an_oversized_body_gets_413() {
    let server = capped();
    // Just over the limit, so the whole write fits in the socket buffers before the 413.
    let code = "x".repeat(110_000);
    let body = json!({"language": "python", "code": code}).to_string();
    let reply = server.post("/v1/run", &body, &[]);
    assert_eq!(reply.status, 413, "{}", reply.text);
    assert_eq!(reply.body["error"]["kind"], "payload_too_large");
}

#[test]
fn limits_are_capped_by_the_servers_maxima() {
    let server = capped();
    let started = std::time::Instant::now();
    let r = server.run(json!({"language": "python",
        "code": "import time\ndef main():\n    time.sleep(30)\n    return {}\n",
        "limits": {"timeout_ms": 600000}}));
    assert_eq!(r["error"]["kind"], "timeout", "{r}");
    assert!(
        started.elapsed().as_secs_f64() < 3.5,
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn api_keys_guard_every_route_but_health() {
    let key = common::random_token();
    let server = common::start(&["--api-key", &key], &[]);
    let body =
        json!({"language": "python", "code": "def main():\n    return {'a': 1}\n"}).to_string();
    assert_eq!(server.post("/v1/run", &body, &[]).status, 401);
    assert_eq!(
        server
            .post("/v1/run", &body, &[("x-api-key", "wrong")])
            .status,
        401
    );
    assert_eq!(
        server
            .post("/v1/run", &body, &[("authorization", "Bearer wrong")])
            .status,
        401
    );
    let bearer = format!("Bearer {key}");
    let ok = server.post("/v1/run", &body, &[("authorization", &bearer)]);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body["result"], json!({"a": 1}));
    assert_eq!(
        server.post("/v1/run", &body, &[("x-api-key", &key)]).status,
        200
    );
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/readyz").status, 200);
}

#[test]
fn serve_refuses_a_public_address_without_a_key() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sandlot"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env_remove("SANDLOT_API_KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--api-key") && stderr.contains("--insecure-no-auth"),
        "{stderr}"
    );
}

#[test]
fn health_routes_answer() {
    let s = common::shared();
    let health = s.get("/healthz");
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "ok");
    let ready = s.get("/readyz");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["status"], "ready");
    let kinds: Vec<&str> = ready.body["zygotes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["python", "javascript", "shell"]);
}

#[test]
fn each_zygote_is_a_single_threaded_process_of_our_own_binary() {
    let ready = common::shared().get("/readyz");
    let zygotes = ready.body["zygotes"].as_array().unwrap().clone();
    assert_eq!(zygotes.len(), 3);
    for zygote in zygotes {
        let pid = zygote["pid"].as_i64().expect("a ready zygote has a pid");
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count();
        assert_eq!(threads, 1, "{zygote}");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        assert_eq!(args[1], b"__zygote", "{zygote}");
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let environ = String::from_utf8_lossy(&environ);
        assert!(
            !environ.contains("CARGO"),
            "the server's environment reached a zygote"
        );
    }
}

#[test]
fn usage_is_the_runs_own_accounting() {
    let server = common::shared();
    let small = server.python("def main():\n    return {}", json!({}));
    // 40 MB written: at least 10,000 pages faulted in, and as much more resident memory.
    let big = server.python(
        "def main():\n    b = bytearray(40 * 1024 * 1024)\n    for i in range(0, len(b), 4096):\n        b[i] = 1\n    return {}",
        json!({}),
    );
    let (small, big) = (&small["usage"], &big["usage"]);
    for usage in [small, big] {
        assert!(usage["cpu_ms"].as_f64().unwrap() >= 0.0, "{usage}");
    }
    assert!(big["page_faults"].as_u64().unwrap() >= 10_000, "{big}");
    assert!(small["page_faults"].as_u64().unwrap() < 1_000, "{small}");
    let grown = big["max_rss_kb"].as_u64().unwrap() - small["max_rss_kb"].as_u64().unwrap();
    assert!(grown >= 38 * 1024, "peak RSS grew by only {grown} KB");
    assert!(big["cpu_ms"].as_f64().unwrap() > small["cpu_ms"].as_f64().unwrap());
}
