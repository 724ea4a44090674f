//! The drop-in APIs, each spoken to in its peer's own request and response shapes: dify-sandbox
//! (`/v1/sandbox/run`, as Dify's API server sends it), fastgpt-sandbox (`/sandbox/*`, FastGPT
//! 4.14.8's call conventions), and the sandbox module API (`/v1/sandbox/execute_*`).

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const KEY: &str = "compat-test-key";

fn server() -> &'static common::Server {
    static SERVER: OnceLock<common::Server> = OnceLock::new();
    SERVER.get_or_init(|| common::start(&["--api-key", KEY], &[]))
}

fn dify(body: Value) -> common::Reply {
    server().post("/v1/sandbox/run", &body.to_string(), &[("x-api-key", KEY)])
}

/// POST with the Bearer key (FastGPT's and the module API's way); asserts HTTP 200.
fn bearer_post(path: &str, body: Value) -> Value {
    bearer_reply(path, body).body
}

/// The same, the whole reply (its text as sent).
fn bearer_reply(path: &str, body: Value) -> common::Reply {
    let reply = server().post(
        path,
        &body.to_string(),
        &[("authorization", &format!("Bearer {KEY}"))],
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
        out.push_str(&"=".repeat(3 - chunk.len()));
    }
    out
}

/// The JSON between Dify's markers.
fn dify_result(stdout: &str) -> Value {
    let inner = stdout
        .split("<<RESULT>>")
        .nth(1)
        .unwrap_or_else(|| panic!("no <<RESULT>> markers in {stdout:?}"));
    serde_json::from_str(inner).unwrap()
}

// ---- dify-sandbox ----

/// Dify's python3 template (api/core/helper/code_executor/python3), user code first.
#[test]
fn dify_python3_template() {
    let user = "def main(arg1: str, arg2: list) -> dict:\n    return {\"result\": arg1 + str(len(arg2)), \"uni\": \"héllo ✓\"}";
    let inputs = base64(
        json!({"arg1": "n=", "arg2": [1, 2, 3]})
            .to_string()
            .as_bytes(),
    );
    let code = format!(
        "{user}\n\nimport json\nfrom base64 import b64decode\n\n# decode and prepare input dict\n\
         inputs_obj = json.loads(b64decode('{inputs}').decode('utf-8'))\n\n# execute main function\n\
         output_obj = main(**inputs_obj)\n\n# convert output to json and print\n\
         output_json = json.dumps(output_obj, indent=4)\n\nresult = f'''<<RESULT>>{{output_json}}<<RESULT>>'''\n\
         print(result)\n"
    );
    let r =
        dify(json!({"language": "python3", "code": code, "preload": "", "enable_network": true}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["code"], 0);
    assert_eq!(r.body["message"], "success");
    assert_eq!(r.body["data"]["error"], "", "{}", r.text);
    assert_eq!(
        dify_result(r.body["data"]["stdout"].as_str().unwrap()),
        json!({"result": "n=3", "uni": "héllo ✓"})
    );
}

/// Dify's nodejs template: top-level vars, Buffer base64 inputs, sloppy mode.
#[test]
fn dify_nodejs_template() {
    let user = "function main({arg1, arg2}) {\n    return {result: arg1 + arg2, big: String(2n ** 64n), emoji: '🚀'}\n}";
    let inputs = base64(json!({"arg1": 40, "arg2": 2}).to_string().as_bytes());
    let code = format!(
        "// declare main function\n{user}\n\n// decode and prepare input object\n\
         var inputs_obj = JSON.parse(Buffer.from('{inputs}', 'base64').toString('utf-8'))\n\n\
         // execute main function\nvar output_obj = main(inputs_obj)\n\n\
         // convert output to json and print\nvar output_json = JSON.stringify(output_obj)\n\
         var result = `<<RESULT>>${{output_json}}<<RESULT>>`\nundeclared = 1\nconsole.log(result)\n"
    );
    let r =
        dify(json!({"language": "nodejs", "code": code, "preload": "", "enable_network": true}));
    assert_eq!(r.body["data"]["error"], "", "{}", r.text);
    assert_eq!(
        dify_result(r.body["data"]["stdout"].as_str().unwrap()),
        json!({"result": 42, "big": "18446744073709551616", "emoji": "🚀"})
    );
}

#[test]
fn dify_warnings_on_stderr_leave_error_empty() {
    // re warns about a possible nested set (FutureWarning) on stderr; the run succeeds.
    let r =
        dify(json!({"language": "python3", "code": "import re\nre.compile('[[a]')\nprint('ok')"}));
    assert!(
        r.body["data"]["stderr"]
            .as_str()
            .unwrap()
            .contains("FutureWarning"),
        "{}",
        r.text
    );
    assert_eq!(r.body["data"]["error"], "", "{}", r.text);
    let r = dify(
        json!({"language": "nodejs", "code": "console.error('just a warning'); console.log('ok')"}),
    );
    assert_eq!(r.body["data"]["stderr"], "just a warning\n");
    assert_eq!(r.body["data"]["error"], "", "{}", r.text);
}

#[test]
fn dify_failures_keep_http_200_and_say_why() {
    let r = dify(json!({"language": "python3", "code": "x = 1\nraise ValueError('boom')"}));
    assert_eq!(r.status, 200);
    assert_eq!(r.body["code"], 0);
    let error = r.body["data"]["error"].as_str().unwrap();
    assert!(error.starts_with("process exited with code 1\n"), "{error}");
    assert!(error.contains("ValueError: boom"), "{error}");
    assert!(
        error.contains("line 2"),
        "lines count in the script as sent: {error}"
    );

    let r = dify(json!({"language": "python3", "code": "def f(:\n  pass"}));
    assert!(
        r.body["data"]["error"]
            .as_str()
            .unwrap()
            .contains("SyntaxError"),
        "{}",
        r.text
    );

    let r = dify(json!({"language": "python3", "code": "def f():\n    return f()\nf()"}));
    assert!(
        r.body["data"]["error"]
            .as_str()
            .unwrap()
            .contains("RecursionError"),
        "{}",
        r.text
    );

    let r = dify(json!({"language": "nodejs", "code": "throw new TypeError('bad input')"}));
    let error = r.body["data"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("process exited with code 1\n") && error.contains("TypeError: bad input"),
        "{error}"
    );
}

#[test]
fn dify_script_runs_as_main() {
    let r = dify(
        json!({"language": "python3", "code": "if __name__ == '__main__':\n    print('as main')"}),
    );
    assert_eq!(r.body["data"]["stdout"], "as main\n");
}

#[test]
fn dify_carries_eight_mib_of_stdout() {
    let r = dify(json!({"language": "python3", "code": "print('x' * (8 * 1024 * 1024 - 1))"}));
    assert_eq!(
        r.body["data"]["error"],
        "",
        "{}",
        &r.text[..300.min(r.text.len())]
    );
    assert_eq!(
        r.body["data"]["stdout"].as_str().unwrap().len(),
        8 * 1024 * 1024
    );
}

#[test]
fn dify_never_executes_preload() {
    let marker = std::env::temp_dir().join(format!("sandlot-preload-{}", common::random_token()));
    let preload = format!(
        "print('PRELOADED')\nopen({:?}, 'w').write('x')",
        marker.to_str().unwrap()
    );
    let r = dify(json!({"language": "python3", "code": "print('body')", "preload": preload}));
    assert_eq!(r.body["data"]["stdout"], "body\n", "{}", r.text);
    assert!(!marker.exists());
}

#[test]
fn dify_refusals() {
    let r = dify(json!({"language": "ruby", "code": "puts 1"}));
    assert_eq!(r.status, 400);
    assert_eq!(r.body["code"], -400, "{}", r.text);
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("unsupported language"));

    let r = server().post(
        "/v1/sandbox/run",
        &json!({"language": "python3", "code": "print(1)"}).to_string(),
        &[("x-api-key", "wrong")],
    );
    assert_eq!(r.status, 401);

    let r = dify(json!({"language": "python3"}));
    assert_eq!(r.status, 400);
    assert_eq!(r.body["code"], -400);
    assert!(
        r.body["message"].as_str().unwrap().contains("code"),
        "{}",
        r.text
    );
}

#[test]
fn dify_timeout_says_timeout() {
    let s = common::start(&["--api-key", KEY], &[("WORKER_TIMEOUT", "1")]);
    let started = Instant::now();
    let r = s.post(
        "/v1/sandbox/run",
        &json!({"language": "python3", "code": "import time\ntime.sleep(30)"}).to_string(),
        &[("x-api-key", KEY)],
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "WORKER_TIMEOUT=1 is the time limit"
    );
    let error = r.body["data"]["error"].as_str().unwrap();
    assert!(error.contains("timeout"), "{error}");
}

#[test]
fn dify_environment_names_configure_the_server() {
    let s = common::start(
        &[],
        &[
            ("API_KEY", "dify-sandbox"),
            ("MAX_WORKERS", "1"),
            ("MAX_REQUESTS", "1"),
        ],
    );
    let body = json!({"language": "python3", "code": "print(1)"}).to_string();
    assert_eq!(s.post("/v1/sandbox/run", &body, &[]).status, 401);
    assert_eq!(
        s.post("/v1/sandbox/run", &body, &[("x-api-key", "dify-sandbox")])
            .status,
        200
    );
    let r = s.get("/health");
    assert_eq!(r.body, json!({"status": "ok"}));
}

#[test]
fn dify_dependencies_routes_answer_in_shape() {
    for path in [
        "/v1/sandbox/dependencies?language=python3",
        "/v1/sandbox/dependencies/refresh?language=python3",
    ] {
        let r = server().get_with(path, &[("x-api-key", KEY)]);
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["code"], 0);
        assert!(r.body["data"]["dependencies"].is_array(), "{}", r.text);
    }
}

// ---- fastgpt-sandbox ----

#[test]
fn fastgpt_javascript_conventions() {
    let r = bearer_post(
        "/sandbox/js",
        json!({"code": "function main(v) { console.log('n is', v.n, {deep: [1]}); console.warn('w'); return v.n * 2 }", "variables": {"n": 21}}),
    );
    assert_eq!(
        r,
        json!({"success": true, "data": {"codeReturn": 42, "log": "n is 21 {\"deep\":[1]}\nw"}})
    );

    let r = bearer_post(
        "/sandbox/js",
        json!({"code": "async function main() { return variables.a + '!' }", "variables": {"a": "global"}}),
    );
    assert_eq!(r["data"]["codeReturn"], "global!");

    let r = bearer_post("/sandbox/js", json!({"code": "function main() { }"}));
    assert_eq!(
        r["data"]["codeReturn"],
        Value::Null,
        "undefined becomes null: {r}"
    );

    let r = bearer_post(
        "/sandbox/js",
        json!({"code": "function main() { const a = {}; a.a = a; return a }"}),
    );
    assert_eq!(r["success"], false, "a cyclic value fails: {r}");

    let r = bearer_post(
        "/sandbox/js",
        json!({"code": "function main() { throw new Error('plain message') }"}),
    );
    assert_eq!(r, json!({"success": false, "message": "plain message"}));

    let r = bearer_post(
        "/sandbox/js",
        json!({"code": "function main() { try { require('child_process') } catch (e) { return e.message } }"}),
    );
    assert!(
        r["data"]["codeReturn"]
            .as_str()
            .unwrap()
            .contains("not allowed"),
        "{r}"
    );
}

#[test]
fn fastgpt_legacy_javascript_helpers() {
    let r = bearer_post(
        "/sandbox/js",
        json!({"code": "async function main() { const t = Date.now(); await delay(30); \
        let refused; try { await delay(20000) } catch (e) { refused = e.message } \
        const h = createHmac('sha256', 'secret'); \
        return {waited: Date.now() - t >= 30, refused, b64: strToBase64('hello', 'data:'), \
        tokens: countToken('hello world, this is a test'), ts: h.timestamp.length, sign: typeof h.sign} }"}),
    );
    let out = &r["data"]["codeReturn"];
    assert_eq!(out["waited"], true, "{r}");
    assert!(out["refused"].as_str().unwrap().contains("10000"), "{r}");
    assert_eq!(out["b64"], "data:aGVsbG8=");
    assert!(out["tokens"].as_u64().unwrap() > 0);
    assert_eq!(out["ts"], 13);
    assert_eq!(out["sign"], "string");
}

#[test]
fn fastgpt_python_conventions() {
    let call = |code: &str, variables: Value| {
        bearer_post(
            "/sandbox/python",
            json!({"code": code, "variables": variables}),
        )
    };
    let r = call("def main():\n    return {'none': True}", json!({"a": 1}));
    assert_eq!(r["data"]["codeReturn"], json!({"none": true}));
    let r = call("def main(a):\n    return a * 2", json!({"a": 21}));
    assert_eq!(
        r["data"]["codeReturn"], 42,
        "one parameter named after a key: {r}"
    );
    let r = call(
        "def main(data):\n    return sorted(data)",
        json!({"x": 1, "y": 2}),
    );
    assert_eq!(
        r["data"]["codeReturn"],
        json!(["x", "y"]),
        "one other parameter: the whole dict: {r}"
    );
    let r = call(
        "def main(a, b=10, *, c=5):\n    return a + b + c",
        json!({"a": 1, "c": 100}),
    );
    assert_eq!(r["data"]["codeReturn"], 111, "{r}");
    let r = call("def main(a, b):\n    return a", json!({"a": 1}));
    assert_eq!(r["success"], false);
    assert!(r["message"].as_str().unwrap().contains("Missing"), "{r}");
    let r = call(
        "def main():\n    return greeting + '!'",
        json!({"greeting": "hi"}),
    );
    assert_eq!(r["data"]["codeReturn"], "hi!", "variables are globals: {r}");
    let r = call("import datetime\ndef main():\n    print('a', 1, [2])\n    return {'at': datetime.datetime(2024, 1, 1, 12, 0, 0)}", json!({}));
    assert_eq!(
        r["data"]["codeReturn"],
        json!({"at": "2024-01-01 12:00:00"}),
        "default=str: {r}"
    );
    assert_eq!(r["data"]["log"], "a 1 [2]");
}

#[test]
fn fastgpt_python_imports_and_files() {
    let r = bearer_post(
        "/sandbox/python",
        json!({"code": "def main():\n    try:\n        import os\n    except ImportError as e:\n        return str(e)"}),
    );
    let message = r["data"]["codeReturn"].as_str().unwrap();
    assert!(
        message.contains("os") && message.contains("not in the allowlist"),
        "{r}"
    );
    let r = bearer_post(
        "/sandbox/python",
        json!({"code": "import builtins\ndef main():\n    return builtins.len('abc')"}),
    );
    assert_eq!(r["data"]["codeReturn"], 3, "{r}");
    let r = bearer_post(
        "/sandbox/python",
        json!({"code": "def main():\n    open('/etc/passwd').read()"}),
    );
    assert!(
        r["message"].as_str().unwrap().contains("not allowed"),
        "{r}"
    );
}

#[test]
fn fastgpt_limits_read_like_fastgpt() {
    let s = common::start(
        &[],
        &[
            ("SANDBOX_MAX_TIMEOUT", "800"),
            ("SANDBOX_MAX_MEMORY_MB", "64"),
        ],
    );
    let post = |path: &str, code: &str| s.post(path, &json!({"code": code}).to_string(), &[]).body;
    let r = post("/sandbox/js", "function main() { while (true) {} }");
    assert!(r["message"].as_str().unwrap().contains("timed out"), "{r}");
    let r = post(
        "/sandbox/python",
        "def main():\n    return len(bytearray(2 * 1024 ** 3))",
    );
    assert!(r["message"].as_str().unwrap().contains("memory"), "{r}");
}

#[test]
fn fastgpt_refusals_and_modules() {
    let auth = format!("Bearer {KEY}");
    for body in [json!({"code": ""}), json!({}), json!({"code": 42})] {
        let r = server().post(
            "/sandbox/js",
            &body.to_string(),
            &[("authorization", &auth)],
        );
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.body["success"], false);
        assert!(
            r.body["message"]
                .as_str()
                .unwrap()
                .starts_with("Invalid request"),
            "{}",
            r.text
        );
    }
    let r = server().post("/sandbox/js", "{not json", &[("authorization", &auth)]);
    assert_eq!(r.status, 400);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("invalid"),
        "{}",
        r.text
    );
    let r = server().post(
        "/sandbox/js",
        &json!({"code": "function main() {}"}).to_string(),
        &[],
    );
    assert_eq!(r.status, 401);
    let r = server().post(
        "/sandbox/js",
        &json!({"code": "function main() {}"}).to_string(),
        &[("authorization", "Bearer wrong")],
    );
    assert_eq!(r.status, 401);

    let r = server().get_with("/sandbox/modules", &[("authorization", &auth)]);
    assert_eq!(r.body["success"], true);
    assert_eq!(r.body["data"]["js"][0], "lodash");
    assert!(r.body["data"]["python"]
        .as_array()
        .unwrap()
        .contains(&json!("math")));
    assert!(r.body["data"]["builtinGlobals"]
        .as_array()
        .unwrap()
        .contains(&json!("SystemHelper.httpRequest")));

    let r = server().get("/health");
    assert_eq!((r.status, r.body.clone()), (200, json!({"status": "ok"})));
}

#[test]
fn fastgpt_token_alias() {
    let s = common::start(&[], &[("SANDBOX_TOKEN", "fg-token")]);
    let body = json!({"code": "function main() { return 1 }"}).to_string();
    assert_eq!(s.post("/sandbox/js", &body, &[]).status, 401);
    assert_eq!(
        s.post(
            "/sandbox/js",
            &body,
            &[("authorization", "Bearer fg-token")]
        )
        .status,
        200
    );
}

// ---- the sandbox module API ----

#[test]
fn module_api_reference_examples() {
    let r = bearer_post(
        "/v1/sandbox/execute_js",
        json!({"code": "console.log(\"Hello, World!\");", "timeout": 10}),
    );
    assert_eq!(r["stdout"], "Hello, World!\n");
    assert_eq!(r["exit_code"], 0);
    assert!(r["execution_time_ms"].as_f64().unwrap() > 0.0);
    let r = bearer_post(
        "/v1/sandbox/execute_js",
        json!({"code": "const data = { name: \"test\", value: 42 };\nconsole.log(JSON.stringify(data, null, 2));"}),
    );
    assert_eq!(
        r["stdout"],
        "{\n  \"name\": \"test\",\n  \"value\": 42\n}\n"
    );
    let r = bearer_post(
        "/v1/sandbox/execute_python",
        json!({"code": "print(\"Hello, World!\")", "timeout": 10}),
    );
    assert_eq!(r["stdout"], "Hello, World!\n");
    let r = bearer_post(
        "/v1/sandbox/execute_python",
        json!({"code": "import math\nprint(math.pi)", "allowed_modules": ["math"]}),
    );
    assert_eq!(r["stdout"], "3.141592653589793\n");
}

#[test]
fn module_api_allowed_modules_narrow_the_whitelist() {
    let r = bearer_post(
        "/v1/sandbox/execute_python",
        json!({"code": "import json\nprint(1)", "allowed_modules": ["math"]}),
    );
    assert_eq!(r["exit_code"], 1);
    assert!(r["stderr"].as_str().unwrap().contains("json"), "{r}");
    let r = bearer_post(
        "/v1/sandbox/execute_python",
        json!({"code": "import json\nprint(json.dumps([1]))", "allowed_modules": []}),
    );
    assert_eq!(r["stdout"], "[1]\n", "empty means the whole whitelist: {r}");
}

#[test]
fn module_api_timeout_is_in_seconds() {
    let started = Instant::now();
    let r = bearer_post(
        "/v1/sandbox/execute_python",
        json!({"code": "while True:\n    pass", "timeout": 1}),
    );
    assert_eq!(r["exit_code"], 124, "{r}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(r["stderr"].as_str().unwrap().contains("time limit"), "{r}");
    let reply = server().post(
        "/v1/sandbox/execute_js",
        &json!({"code": "1", "timeout": -1}).to_string(),
        &[("authorization", &format!("Bearer {KEY}"))],
    );
    assert_eq!(reply.status, 400);
    assert!(reply.text.contains("timeout"), "{}", reply.text);
}

/// Dify sends up to a dozen code nodes at once; none may get 503.
#[test]
fn dify_twelve_requests_at_once_all_run() {
    let handles: Vec<_> = (0..12)
        .map(|i| {
            std::thread::spawn(move || {
                let code = format!("import time\ntime.sleep(0.2)\nprint({i} * 2)");
                let r = dify(json!({"language": "python3", "code": code}));
                (
                    r.status,
                    r.body["data"]["stdout"].as_str().map(str::to_owned),
                    i,
                )
            })
        })
        .collect();
    for handle in handles {
        let (status, stdout, i) = handle.join().unwrap();
        assert_eq!(status, 200);
        assert_eq!(stdout, Some(format!("{}\n", i * 2)));
    }
}

/// FastGPT's sandbox answers `codeReturn` with the keys in the order `main` built them (it
/// stringifies the object); so do sandlot's routes, which pass the child's JSON through.
#[test]
fn returned_keys_keep_their_order() {
    let expected = r#"{"zeta":1,"alpha":{"y":[1,{"k2":2,"k1":1}],"b":null},"mid":"x"}"#;
    let post = |path: &str, body: Value| bearer_reply(path, body).text;
    let python = "def main():\n    return {'zeta': 1, 'alpha': {'y': [1, {'k2': 2, 'k1': 1}], 'b': None}, 'mid': 'x'}";
    let javascript =
        "function main() { return {zeta: 1, alpha: {y: [1, {k2: 2, k1: 1}], b: null}, mid: 'x'} }";
    for (path, code) in [("/sandbox/python", python), ("/sandbox/js", javascript)] {
        let text = post(path, json!({"code": code, "variables": {}}));
        assert!(
            text.contains(&format!(r#""codeReturn":{expected}"#)),
            "{path}: {text}"
        );
    }
    for (language, code) in [("python", python), ("javascript", javascript)] {
        let text = post(
            "/v1/run",
            json!({"language": language, "code": code, "inputs": {}}),
        );
        assert!(
            text.contains(&format!(r#""result":{expected}"#)),
            "{language}: {text}"
        );
    }
}
