//! What a child cannot do even when user code escapes the import whitelist, asserted by its
//! effect: canaries untouched, listeners unconnected, state not carried between runs.

mod common;

use std::net::TcpListener;

use serde_json::json;

/// Python that reaches the real `os` module through the object graph, as escapes do.
const ESCAPE_TO_OS: &str = "os = [c for c in ().__class__.__base__.__subclasses__() \
                            if c.__name__ == '_wrap_close'][0].__init__.__globals__\n";

/// A `main(path)` that first runs `setup`, then tries each `(name, expression)` and returns
/// what each gave or the name of the exception it raised.
fn escape(setup: &str, attempts: &[(&str, &str)]) -> String {
    let mut code = format!("{ESCAPE_TO_OS}def main(path):\n    out = {{}}\n{setup}");
    code.push_str("    for name, attempt in [\n");
    for (name, expression) in attempts {
        code.push_str(&format!("        ({name:?}, lambda: {expression}),\n"));
    }
    code.push_str(
        "    ]:\n        try:\n            out[name] = repr(attempt())\n\
         \x20       except BaseException as e:\n            out[name] = type(e).__name__\n",
    );
    code.push_str("    return out\n");
    code
}

fn canary() -> (std::path::PathBuf, String) {
    let token = common::random_token();
    let path = std::env::temp_dir().join(format!("sandlot-canary-{token}"));
    std::fs::write(&path, &token).unwrap();
    (path, token)
}

#[test]
fn a_host_file_cannot_be_read_even_through_an_escape() {
    let (path, token) = canary();
    let code = escape(
        "",
        &[
            (
                "os.open",
                "os['read'](os['open'](path, os['O_RDONLY']), 100)",
            ),
            ("builtin open", "open(path).read()"),
            ("io.open", "os['__builtins__']['open'](path).read()"),
            ("passwd", "os['read'](os['open']('/etc/passwd', 0), 100)"),
            ("listdir", "os['listdir']('/')"),
            ("stat", "os['stat'](path).st_size"),
        ],
    );
    let r = common::shared().python(&code, json!({"path": path.to_str().unwrap()}));
    assert_eq!(r["ok"], true, "{r}");
    assert!(!r.to_string().contains(&token), "the canary was read: {r}");
    assert!(
        !r.to_string().contains("root:x:0:0"),
        "/etc/passwd was read: {r}"
    );
    for attempt in [
        "os.open",
        "builtin open",
        "io.open",
        "passwd",
        "listdir",
        "stat",
    ] {
        assert_eq!(r["result"][attempt], "PermissionError", "{attempt}: {r}");
    }
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_host_file_cannot_be_written_or_created() {
    let (path, token) = canary();
    let created = std::env::temp_dir().join(format!("sandlot-created-{}", common::random_token()));
    let code = escape(
        "",
        &[
            (
                "overwrite",
                "os['write'](os['open'](path, os['O_WRONLY'] | os['O_TRUNC']), b'pwned')",
            ),
            (
                "create",
                "os['open'](path + '.new', os['O_WRONLY'] | os['O_CREAT'])",
            ),
            ("unlink", "os['unlink'](path)"),
            ("rename", "os['rename'](path, path + '.moved')"),
        ],
    );
    let r = common::shared().python(&code, json!({"path": path.to_str().unwrap()}));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        token,
        "the canary changed"
    );
    assert!(!std::path::Path::new(&format!("{}.new", path.display())).exists());
    assert!(!created.exists());
    std::fs::remove_file(path).unwrap();
}

#[test]
fn no_process_can_be_started() {
    let marker = std::env::temp_dir().join(format!("sandlot-spawned-{}", common::random_token()));
    let code = escape(
        "    cmd = 'touch ' + path\n",
        &[
            ("system", "os['system'](cmd)"),
            ("fork", "os['fork']()"),
            ("execv", "os['execv']('/bin/sh', ['sh', '-c', cmd])"),
            (
                "spawn",
                "os['posix_spawn']('/bin/sh', ['sh', '-c', cmd], {})",
            ),
            ("popen", "os['popen'](cmd).read()"),
        ],
    );
    let r = common::shared().python(&code, json!({"path": marker.to_str().unwrap()}));
    // Each way is refused as it is tried (`system` reports its shell as not run, status 127,
    // when its spawn fails), so no process is left to touch the marker later: its absence
    // needs no wait.
    for attempt in ["fork", "execv", "spawn", "popen"] {
        assert_eq!(r["result"][attempt], "PermissionError", "{attempt}: {r}");
    }
    assert_eq!(r["result"]["system"], (127 << 8).to_string(), "{r}");
    assert!(!marker.exists(), "a process ran: {r}");
}

#[test]
fn no_connection_reaches_a_local_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let code = escape(
        "    imp = os['__builtins__']['__import__']\n",
        &[
            (
                "socket",
                "imp('socket').create_connection(('127.0.0.1', int(path)), 1)",
            ),
            ("_socket", "imp('_socket').socket()"),
            (
                "urllib",
                "imp('urllib.request', fromlist=['urlopen']).urlopen('http://127.0.0.1:' + path)",
            ),
        ],
    );
    let r = common::shared().python(&code, json!({"path": port.to_string()}));
    assert_eq!(r["ok"], true, "{r}");
    // Each attempt got as far as trying (`urllib` was once only looked up, an AttributeError).
    for attempt in ["socket", "_socket", "urllib"] {
        assert_ne!(r["result"][attempt], "AttributeError", "{attempt}: {r}");
    }
    // A connection the run made was queued before its answer came back.
    common::assert_no_connection_before_ours(&listener, &r.to_string());
}

#[test]
fn the_servers_secrets_never_reach_a_run() {
    let key = common::random_token();
    let canary_value = common::random_token();
    let server = common::start(
        &["--api-key", &key],
        &[("SANDLOT_TEST_CANARY", &canary_value)],
    );
    let code = format!(
        "{ESCAPE_TO_OS}def main():\n    env = dict(os['environ'])\n    \
         try:\n        proc = os['read'](os['open']('/proc/self/environ', 0), 100000)\n    \
         except BaseException as e:\n        proc = type(e).__name__\n    \
         try:\n        parent = os['read'](os['open']('/proc/%d/environ' % os['getppid'](), 0), 100000)\n    \
         except BaseException as e:\n        parent = type(e).__name__\n    \
         return {{'env': env, 'proc': str(proc), 'parent': str(parent)}}\n"
    );
    let body = json!({"language": "python", "code": code}).to_string();
    let reply = server.post("/v1/run", &body, &[("x-api-key", &key)]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["ok"], true, "{}", reply.text);
    assert!(!reply.text.contains(&key), "the API key leaked");
    assert!(
        !reply.text.contains(&canary_value),
        "the server's environment leaked"
    );
    let js = json!({"language": "javascript",
        "code": "function main() { return {g: Object.keys(globalThis), p: typeof process} }"})
    .to_string();
    let reply = server.post("/v1/run", &js, &[("x-api-key", &key)]);
    assert!(!reply.text.contains(&key) && !reply.text.contains(&canary_value));
}

#[test]
fn mutations_of_modules_and_globals_are_invisible_to_the_next_run() {
    let s = common::shared();
    for _ in 0..2 {
        let r = s.python(
            "import json, math\nSEEN = getattr(math, 'poisoned', False)\n\
             def main():\n    seen = SEEN\n    math.poisoned = True\n    math.pi = 3\n    \
             json.dumps = None\n    __builtins__['len'] = None\n    return {'seen': seen, 'pi': 3.14159 < 3.1416}\n",
            json!({}),
        );
        assert_eq!(
            r["result"]["seen"], false,
            "a previous run's mutation is visible: {r}"
        );
    }
    let check = s.python(
        "import json, math\ndef main():\n    return {'pi': math.pi, 'dumps': json.dumps({'a': 1}), 'len': len('abc')}\n",
        json!({}),
    );
    assert_eq!(check["result"]["pi"], std::f64::consts::PI, "{check}");
    assert_eq!(check["result"]["dumps"], "{\"a\": 1}");
    assert_eq!(check["result"]["len"], 3);

    for _ in 0..2 {
        let r = s.javascript(
            "function main() {\n  const seen = [typeof globalThis.leaked, typeof Array.prototype.polluted, JSON.stringify === null];\n  \
             globalThis.leaked = 1; Array.prototype.polluted = 1; JSON.stringify = null; Math.max = () => 0;\n  \
             return {seen: seen.join(',')};\n}\n",
            json!({}),
        );
        assert_eq!(r["result"]["seen"], "undefined,undefined,false", "{r}");
    }
    let check = s.javascript(
        "function main() { return {max: Math.max(1, 5), json: JSON.stringify([1])} }",
        json!({}),
    );
    assert_eq!(check["result"], json!({"max": 5, "json": "[1]"}), "{check}");
}

#[test]
fn every_run_draws_fresh_randomness() {
    // Each child is a copy of its zygote: a generator state left as the zygote had it would
    // hand every run the same "random" numbers.
    let server = common::shared();
    let code = "import random, uuid, secrets\n\
                def main():\n    \
                    return {'r': [random.random(), random.randint(0, 10**9)], 'u': str(uuid.uuid4()), \
                            's': secrets.token_hex(8)}";
    let runs: Vec<serde_json::Value> = (0..3)
        .map(|_| server.python(code, serde_json::json!({}))["result"].clone())
        .collect();
    for key in ["r", "u", "s"] {
        assert_ne!(runs[0][key], runs[1][key], "{key}: {runs:?}");
        assert_ne!(runs[1][key], runs[2][key], "{key}: {runs:?}");
    }
}
