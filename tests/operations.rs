//! Running sandlot as a service: the version, the configuration file and its precedence,
//! `/metrics`, `/openapi.json`, the log, graceful shutdown and systemd's readiness protocol,
//! each against a real server process.

mod common;

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{processes, start_watched, Watched};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_sandlot");

fn sandlot(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command.args(args).stdin(Stdio::null());
    // The caller's environment must not leak into what is checked.
    for name in [
        "SANDLOT_API_KEY",
        "SANDLOT_MAX_TIMEOUT_MS",
        "SANDLOT_LISTEN",
        "SANDBOX_MAX_TIMEOUT",
        "API_KEY",
        "SANDBOX_TOKEN",
        "SANDBOX_PORT",
    ] {
        command.env_remove(name);
    }
    command
        .envs(envs.iter().copied())
        .output()
        .expect("running sandlot")
}

/// A checker's verdict: its exit status, with what it said when it failed.
fn assert_succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sandlot-ops-{}", common::random_token()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sigterm(child: &std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

fn stop(mut watched: Watched) -> std::process::ExitStatus {
    sigterm(&watched.child);
    wait_exit(&mut watched.child, Duration::from_secs(40))
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < until,
            "the server did not exit in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn version_is_printed_by_the_flag_and_the_subcommand() {
    let expected = format!("sandlot {}\n", env!("CARGO_PKG_VERSION"));
    for args in [&["--version"][..], &["version"][..]] {
        let out = sandlot(args, &[]);
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{args:?}");
    }
    let help = String::from_utf8_lossy(&sandlot(&["--help"], &[]).stdout).into_owned();
    assert!(help.contains("version"), "{help}");
}

/// What `sandlot config --config FILE ARGS` prints, with `envs` set.
fn effective_config(file: &str, args: &[&str], envs: &[(&str, &str)]) -> toml::Table {
    let mut all = vec!["config", "--config", file];
    all.extend_from_slice(args);
    let out = sandlot(&all, envs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    toml::from_str(&String::from_utf8_lossy(&out.stdout)).expect("config prints TOML")
}

/// `sandlot config` with a file: each source wins over the ones below it.
#[test]
fn precedence_is_flag_then_sandlot_variable_then_peer_name_then_file() {
    let file = temp_file(
        "sandlot.toml",
        "max_timeout_ms = 1500\nmax_memory_mb = 300\nqueue = 7\n",
    );
    let file = file.to_str().unwrap();
    let effective = |args: &[&str], envs: &[(&str, &str)]| effective_config(file, args, envs);
    let max_timeout = |t: &toml::Table| t["max_timeout_ms"].as_integer().unwrap();
    let from_file = effective(&[], &[]);
    assert_eq!(max_timeout(&from_file), 1500);
    assert_eq!(from_file["max_memory_mb"].as_integer(), Some(300));
    assert_eq!(from_file["queue"].as_integer(), Some(7));
    // A default the file leaves alone.
    assert_eq!(from_file["max_connections"].as_integer(), Some(1024));
    let peer = [("SANDBOX_MAX_TIMEOUT", "3500")];
    assert_eq!(max_timeout(&effective(&[], &peer)), 3500);
    let ours = [
        ("SANDBOX_MAX_TIMEOUT", "3500"),
        ("SANDLOT_MAX_TIMEOUT_MS", "2500"),
    ];
    assert_eq!(max_timeout(&effective(&[], &ours)), 2500);
    assert_eq!(
        max_timeout(&effective(&["--max-timeout-ms", "4500"], &ours)),
        4500
    );
}

/// A switch the file turns on can be turned off again by the variable or the flag.
#[test]
fn a_switch_set_in_the_file_is_turned_off_by_the_variable_or_the_flag() {
    let file = temp_file(
        "switches.toml",
        "allow_degraded = true\ninsecure_no_auth = true\n",
    );
    let file = file.to_str().unwrap();
    let effective = |args: &[&str], envs: &[(&str, &str)]| effective_config(file, args, envs);
    let switches = |t: &toml::Table| {
        (
            t["allow_degraded"].as_bool().unwrap(),
            t["insecure_no_auth"].as_bool().unwrap(),
        )
    };
    assert_eq!(switches(&effective(&[], &[])), (true, true));
    let off = [
        ("SANDLOT_ALLOW_DEGRADED", "false"),
        ("SANDLOT_INSECURE_NO_AUTH", "false"),
    ];
    assert_eq!(switches(&effective(&[], &off)), (false, false));
    assert_eq!(
        switches(&effective(
            &["--allow-degraded=false", "--insecure-no-auth=false"],
            &[]
        )),
        (false, false)
    );
    // The bare flag still turns a switch on, over a variable that says off.
    assert_eq!(
        switches(&effective(
            &["--allow-degraded", "--insecure-no-auth"],
            &off
        )),
        (true, true)
    );
}

#[test]
fn an_unknown_key_or_a_wrong_type_stops_the_server_naming_the_key() {
    for (text, key) in [
        (
            "listen = \"127.0.0.1:0\"\nmax_timout_ms = 10\n",
            "max_timout_ms",
        ),
        ("max_memory_mb = \"lots\"\n", "max_memory_mb"),
        ("api_key = 42\n", "api_key"),
    ] {
        let file = temp_file("bad.toml", text);
        let out = sandlot(&["serve", "--config", file.to_str().unwrap()], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(&format!("`{key}`")), "{text}: {stderr}");
    }
    let out = sandlot(&["serve", "--config", "/nonexistent/sandlot.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/sandlot.toml"));
}

#[test]
fn the_shipped_example_file_is_valid_and_printed_keys_are_masked() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/sandlot.toml");
    let out = sandlot(&["config", "--config", example], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = common::random_token();
    let out = sandlot(&["config", "--config", example, "--api-key", &secret], &[]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(!printed.contains(&secret), "{printed}");
    let table: toml::Table = toml::from_str(&printed).unwrap();
    assert_eq!(table["api_key"].as_array().map(Vec::len), Some(1));
    // What `config` prints is itself a valid configuration file.
    let again = temp_file("printed.toml", &printed);
    let out = sandlot(&["config", "--config", again.to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A file sets the address, the keys and a limit of a real server.
#[test]
fn a_config_file_sets_the_address_the_keys_and_the_limits() {
    let port = free_port();
    let file = temp_file(
        "sandlot.toml",
        &format!(
            "listen = \"127.0.0.1:{port}\"\napi_key = [\"key-one\", \"key-two\"]\n\
             max_timeout_ms = 500\n"
        ),
    );
    let watched = start_watched(&["--config", file.to_str().unwrap()], &[]);
    let server = &watched.server;
    assert_eq!(server.base, format!("http://127.0.0.1:{port}"));
    let body = json!({"language": "python", "code": "def main():\n    while True: pass",
                      "limits": {"timeout_ms": 30000}})
    .to_string();
    assert_eq!(server.post("/v1/run", &body, &[]).status, 401);
    assert_eq!(
        server
            .post("/v1/run", &body, &[("x-api-key", "key-three")])
            .status,
        401
    );
    let started = Instant::now();
    let reply = server.post("/v1/run", &body, &[("authorization", "Bearer key-two")]);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["error"]["kind"], "timeout");
    // Asked for 30 s, capped by the file's maximum.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(reply.body["execution_time_ms"].as_f64().unwrap() <= 500.0);
    let ok = json!({"language": "python", "code": "def main():\n    return {'x': 1}"}).to_string();
    assert_eq!(
        server
            .post("/v1/run", &ok, &[("x-api-key", "key-one")])
            .body["ok"],
        true
    );
    assert!(stop(watched).success());
}

/// The value of one sample line of a Prometheus text, 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_move_with_runs_and_need_no_key() {
    let watched = start_watched(
        &["--listen", "127.0.0.1:0", "--api-key", "metrics-key"],
        &[],
    );
    let server = &watched.server;
    let scrape = || {
        let reply = server.get("/metrics");
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.text
    };
    let key = [("x-api-key", "metrics-key")];
    let before = scrape();
    let ok = r#"{"language": "python", "code": "def main():\n    return {'x': 1}"}"#;
    let failing =
        r#"{"language": "javascript", "code": "function main() { throw new Error('no') }"}"#;
    let brokered = r#"{"language": "python", "code": "def main():\n    try:\n        SystemHelper.httpRequest('http://127.0.0.1:9/')\n    except Exception:\n        pass\n    return {}"}"#;
    for body in [ok, ok, failing, brokered] {
        assert_eq!(server.post("/v1/run", body, &key).status, 200);
    }
    let dify = json!({"language": "python3", "code": "print(1)"}).to_string();
    assert_eq!(server.post("/v1/sandbox/run", &dify, &key).status, 200);
    let after = scrape();
    let moved = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(
        moved(r#"sandlot_runs_total{language="python",route="native",outcome="ok"}"#),
        3.0,
        "{after}"
    );
    assert_eq!(
        moved(
            r#"sandlot_runs_total{language="javascript",route="native",outcome="runtime_error"}"#
        ),
        1.0,
        "{after}"
    );
    assert_eq!(
        moved(r#"sandlot_runs_total{language="python",route="dify",outcome="ok"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"sandlot_run_duration_seconds_count{language="python"}"#),
        4.0,
        "{after}"
    );
    assert_eq!(
        moved(r#"sandlot_broker_requests_total{outcome="denied"}"#),
        1.0
    );
    assert!(sample(&after, "sandlot_workers") >= 1.0);
    assert_eq!(sample(&after, "sandlot_workers_busy"), 0.0);
    assert_eq!(sample(&after, "sandlot_queue_waiting"), 0.0);
    assert!(
        after.contains(r#"sandlot_zygote_restarts_total{kind="python"} 0"#),
        "{after}"
    );
    assert!(
        sample(&after, r#"sandlot_prefork_pool_size{kind="python"}"#) >= 1.0,
        "{after}"
    );
    // Each native answer carries the run's own accounting.
    let reply = server.post("/v1/run", ok, &key);
    let usage = &reply.body["usage"];
    assert!(usage["cpu_ms"].as_f64().unwrap() > 0.0, "{usage}");
    assert!(usage["max_rss_kb"].as_u64().unwrap() > 0, "{usage}");
    assert!(usage["page_faults"].as_u64().unwrap() > 0, "{usage}");
}

/// A client that leaves mid-run: its run is counted and logged as abandoned, not lost.
#[test]
fn a_run_whose_client_leaves_is_counted_as_abandoned() {
    use std::io::Write as _;
    let watched = start_watched(&["--listen", "127.0.0.1:0", "--log-format", "json"], &[]);
    let server = &watched.server;
    let series = r#"sandlot_runs_total{language="python",route="native",outcome="abandoned"}"#;
    let before = sample(&server.get("/metrics").text, series);
    let body = json!({"language": "python", "code": "def main():\n    while True: pass",
                      "limits": {"timeout_ms": 20000}})
    .to_string();
    let address = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST /v1/run HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let python = processes::zygote_pid(server, "python").expect("the python zygote");
    processes::wait_for_busy_child(python, Duration::from_secs(10));
    drop(stream);
    let until = Instant::now() + Duration::from_secs(5);
    while sample(&server.get("/metrics").text, series) < before + 1.0 {
        assert!(Instant::now() < until, "{}", server.get("/metrics").text);
        std::thread::sleep(Duration::from_millis(50));
    }
    // The log line comes through the server's stderr, read by a thread of ours: it may land
    // after the counter moved.
    common::wait_for(
        Duration::from_secs(10),
        || {
            format!(
                "an abandoned run in the log: {:?}",
                watched.log.lock().unwrap()
            )
        },
        || {
            let log = watched.log.lock().unwrap();
            log.iter()
                .any(|l| l.contains("\"outcome\":\"abandoned\""))
                .then_some(())
        },
    );
}

/// `/health` and `/readyz` are documented as what they are: the document's statuses and words
/// for each match what each answers (once `/readyz`'s description sat on `/health`).
#[test]
fn the_openapi_document_describes_health_and_readiness_as_they_answer() {
    let server = common::shared();
    let document = server.get("/openapi.json").body;
    let responses = |path: &str| document["paths"][path]["get"]["responses"].clone();
    let health = server.get("/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.body, json!({"status": "ok"}));
    let documented = responses("/health");
    assert_eq!(documented.as_object().unwrap().len(), 1, "{documented}");
    let text = documented["200"].to_string();
    assert!(text.contains("The process answers"), "{text}");
    assert!(
        !text.contains("zygote"),
        "/health documented as readiness: {text}"
    );

    let ready = server.get("/readyz");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["status"], "ready");
    let documented = responses("/readyz");
    let ok = documented["200"]["description"].as_str().unwrap();
    for field in ["zygotes", "degraded", "python_packages", "javascript_intl"] {
        assert!(ready.body.get(field).is_some(), "/readyz has no {field}");
        assert!(
            ok.contains(field),
            "/readyz's 200 does not say {field}: {ok}"
        );
    }
    assert!(documented["503"]["description"]
        .as_str()
        .unwrap()
        .contains("starting"));
    let summary = document["paths"]["/readyz"]["get"].to_string();
    assert!(summary.contains("Every zygote is up"), "{summary}");
}

#[test]
fn the_openapi_document_describes_every_route_and_validates() {
    let server = common::shared();
    let reply = server.get("/openapi.json");
    assert_eq!(reply.status, 200);
    let document = &reply.body;
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/v1/run", "post"),
        ("/v1/sandbox/run", "post"),
        ("/v1/sandbox/dependencies", "get"),
        ("/v1/sandbox/dependencies/refresh", "get"),
        ("/v1/sandbox/dependencies/update", "post"),
        ("/sandbox/js", "post"),
        ("/sandbox/python", "post"),
        ("/sandbox/modules", "get"),
        ("/v1/sandbox/execute_js", "post"),
        ("/v1/sandbox/execute_python", "post"),
        ("/v1/sandbox/execute_shell", "post"),
        ("/healthz", "get"),
        ("/health", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            document["paths"][path][method].is_object(),
            "{method} {path} is not in the document"
        );
    }
    let Some(mut python) = common::python_with(
        &["openapi-spec-validator", "jsonschema"],
        &["openapi_spec_validator", "jsonschema"],
    ) else {
        return;
    };
    // The document is valid OpenAPI, and real answers match the schemas it gives for them.
    let answers = json!([
        [
            "/v1/run",
            "post",
            "200",
            server.python("def main(a):\n    return {'a': a}", json!({"a": 1}))
        ],
        [
            "/v1/run",
            "post",
            "400",
            server
                .post("/v1/run", r#"{"language": "cobol", "code": ""}"#, &[])
                .body
        ],
        [
            "/v1/sandbox/run",
            "post",
            "200",
            server
                .post(
                    "/v1/sandbox/run",
                    r#"{"language": "python3", "code": "print(1)"}"#,
                    &[]
                )
                .body
        ],
        [
            "/v1/sandbox/run",
            "post",
            "400",
            server
                .post(
                    "/v1/sandbox/run",
                    r#"{"language": "cobol", "code": ""}"#,
                    &[]
                )
                .body
        ],
        [
            "/sandbox/js",
            "post",
            "200",
            server
                .post(
                    "/sandbox/js",
                    r#"{"code": "function main() { return {x: 1} }"}"#,
                    &[]
                )
                .body
        ],
        [
            "/sandbox/python",
            "post",
            "200",
            server
                .post(
                    "/sandbox/python",
                    r#"{"code": "def main():\n    raise ValueError('no')"}"#,
                    &[]
                )
                .body
        ],
        [
            "/sandbox/modules",
            "get",
            "200",
            server.get("/sandbox/modules").body
        ],
        [
            "/v1/sandbox/dependencies",
            "get",
            "200",
            server.get("/v1/sandbox/dependencies").body
        ],
        [
            "/v1/sandbox/execute_shell",
            "post",
            "200",
            server
                .post(
                    "/v1/sandbox/execute_shell",
                    r#"{"command": "echo hi"}"#,
                    &[]
                )
                .body
        ],
    ]);
    let script = r#"
import json, sys
from openapi_spec_validator import validate
from jsonschema import Draft202012Validator
document = json.loads(sys.argv[1])
validate(document)
for path, method, status, answer in json.loads(sys.argv[2]):
    schema = document["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    schema = dict(schema, components=document["components"])
    errors = list(Draft202012Validator(schema).iter_errors(answer))
    assert not errors, f"{method} {path} {status}: {errors[0].message} in {answer}"
print("valid")
"#;
    let out = python
        .arg("-c")
        .arg(script)
        .arg(document.to_string())
        .arg(answers.to_string())
        .output()
        .unwrap();
    assert_succeeded(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "valid");
}

#[test]
fn a_json_log_line_per_run_with_the_request_id_and_nothing_of_the_run() {
    let watched = start_watched(&["--listen", "127.0.0.1:0", "--log-format", "json"], &[]);
    let server = &watched.server;
    let secret = common::random_token();
    let body = json!({"language": "python",
                      "code": format!("def main(x):\n    print('{secret}')\n    return {{'x': x}}"),
                      "inputs": {"x": secret}})
    .to_string();
    let reply = server.post("/v1/run", &body, &[("x-request-id", "trace-4711")]);
    assert_eq!(reply.body["ok"], true, "{}", reply.text);
    let echoed = reply.headers.iter().find(|(k, _)| k == "x-request-id");
    assert_eq!(echoed.map(|(_, v)| v.as_str()), Some("trace-4711"));
    // A request without one gets a fresh id, returned too.
    let reply = server.post("/v1/run", &body, &[]);
    let fresh = reply
        .headers
        .iter()
        .find(|(k, _)| k == "x-request-id")
        .map(|(_, v)| v.clone())
        .expect("a fresh request id");
    assert!(!fresh.is_empty() && fresh != "trace-4711");
    let until = Instant::now() + Duration::from_secs(5);
    let runs = loop {
        let lines = watched.log.lock().unwrap().clone();
        let runs: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
            .filter(|v| v["message"] == "run")
            .collect();
        if runs.len() >= 2 || Instant::now() > until {
            for line in &lines {
                assert!(
                    !line.contains(&secret),
                    "the log holds the run's content: {line}"
                );
            }
            break runs;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(runs.len(), 2, "{runs:?}");
    let line = &runs[0];
    assert_eq!(line["span"]["request_id"], "trace-4711", "{line}");
    assert_eq!(runs[1]["span"]["request_id"], fresh.as_str(), "{}", runs[1]);
    assert_eq!(line["route"], "native");
    assert_eq!(line["language"], "python");
    assert_eq!(line["outcome"], "ok");
    assert_eq!(line["exit_code"], 0);
    assert!(line["duration_ms"].as_f64().unwrap() > 0.0, "{line}");
    assert_eq!(line["level"], "INFO");
    // The zygotes' lives are logged too.
    let lines = watched.log.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("zygote ready") && l.contains("javascript")),
        "{lines:?}"
    );
}

#[test]
fn a_zygote_death_and_restart_are_logged() {
    let watched = start_watched(&["--listen", "127.0.0.1:0", "--log-format", "json"], &[]);
    let pid =
        processes::zygote_pid(&watched.server, "javascript").expect("the javascript zygote's pid");
    processes::kill(pid);
    let logged = |message: &str, extra: &dyn Fn(&Value) -> bool| {
        watched.log.lock().unwrap().iter().any(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or(Value::Null);
            v["message"] == message && v["zygote"] == "javascript" && extra(&v)
        })
    };
    let until = Instant::now() + Duration::from_secs(30);
    while !(logged("zygote down; restarting it", &|v| v["level"] == "WARN")
        && logged("zygote started", &|v| v["restarts"] == 1)
        && logged("zygote ready", &|v| v["pid"] != pid))
    {
        assert!(Instant::now() < until, "{:?}", watched.log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    let answer = watched
        .server
        .javascript("function main() { return {x: 1} }", json!({}));
    assert_eq!(answer["ok"], true, "{answer}");
}

#[test]
fn sigterm_lets_a_run_in_flight_finish_refuses_new_requests_and_exits_0() {
    let mut watched = start_watched(&["--listen", "127.0.0.1:0"], &[]);
    let base = watched.server.base.clone();
    let address = base.trim_start_matches("http://").to_owned();
    let python = processes::zygote_pid(&watched.server, "python").expect("the python zygote");
    // A run busy for 3 s: seen running, it is in flight when the signal comes.
    let in_flight = std::thread::spawn(move || {
        let server = common::Server { base, pid: 0 };
        server.python(
            "import time\ndef main():\n    end = time.monotonic() + 3\n    \
             while time.monotonic() < end:\n        pass\n    return {'slept': 2}",
            json!({}),
        )
    });
    processes::wait_for_busy_child(python, Duration::from_secs(10));
    sigterm(&watched.child);
    // Stops accepting: a new connection is refused (while the run is still in flight).
    common::wait_for(
        Duration::from_secs(10),
        || "new connections to be refused after SIGTERM".into(),
        || {
            std::net::TcpStream::connect(&address)
                .is_err()
                .then_some(())
        },
    );
    assert!(
        !in_flight.is_finished(),
        "the run ended before the server stopped accepting"
    );
    let answer = in_flight.join().unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["result"]["slept"], 2);
    let status = wait_exit(&mut watched.child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn runs_past_the_grace_period_are_killed_and_the_server_still_exits_0() {
    let mut watched = start_watched(
        &["--listen", "127.0.0.1:0", "--shutdown-grace-ms", "500"],
        &[],
    );
    let base = watched.server.base.clone();
    let in_flight = std::thread::spawn(move || {
        let server = common::Server { base, pid: 0 };
        let body = json!({"language": "python", "code": "def main():\n    while True:\n        pass",
                          "limits": {"timeout_ms": 30000}});
        server.post("/v1/run", &body.to_string(), &[]).status
    });
    let python = processes::zygote_pid(&watched.server, "python").expect("the python zygote");
    let run = processes::wait_for_busy_child(python, Duration::from_secs(10));
    let stopped = Instant::now();
    sigterm(&watched.child);
    let status = wait_exit(&mut watched.child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );
    let _ = in_flight.join();
    // The run's child is not left behind (it was seen running above).
    processes::wait_for_exit(run, Duration::from_secs(5));
}

#[test]
fn systemd_hears_ready_and_stopping_on_its_notify_socket() {
    let dir = std::env::temp_dir().join(format!("sandlot-notify-{}", common::random_token()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let watched = start_watched(
        &["--listen", "127.0.0.1:0"],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let mut buffer = [0u8; 256];
    let n = socket.recv(&mut buffer).expect("READY=1 within 60 s");
    assert_eq!(&buffer[..n], b"READY=1");
    // Ready means ready: a run succeeds now.
    let answer = watched
        .server
        .python("def main():\n    return {'x': 1}", json!({}));
    assert_eq!(answer["ok"], true, "{answer}");
    let status = stop(watched);
    let n = socket.recv(&mut buffer).expect("STOPPING=1");
    assert_eq!(&buffer[..n], b"STOPPING=1");
    assert!(status.success());
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = include_str!("../contrib/systemd/sandlot.service");
    for needed in [
        "Type=notify",
        "StateDirectory=sandlot",
        "EnvironmentFile=",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(needed), "{needed}");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: systemd-analyze is not installed on this machine");
        return;
    }
    // verify checks that ExecStart's binary exists: point it at this build.
    let dir = std::env::temp_dir().join(format!("sandlot-unit-{}", common::random_token()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sandlot.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/sandlot", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    // An unknown or misspelt directive is only a warning: none may be printed.
    assert!(!said.contains("sandlot.service"), "{said}");
}

#[test]
fn the_kubernetes_manifests_render_and_validate() {
    let base = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");
    let rendered = match Command::new("kubectl").args(["kustomize", base]).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
        Err(_) => {
            eprintln!("SKIPPED: kubectl is not installed on this machine");
            return;
        }
    };
    for kind in [
        "kind: Deployment",
        "kind: Service",
        "kind: HorizontalPodAutoscaler",
        "kind: PodDisruptionBudget",
        "path: /readyz",
        "path: /healthz",
        "secretKeyRef",
    ] {
        assert!(rendered.contains(kind), "{kind} missing from:\n{rendered}");
    }
    let Some(mut python) = common::python_with(&["kubernetes-validate"], &["kubernetes_validate"])
    else {
        return;
    };
    let file = temp_file("rendered.yaml", &rendered);
    let out = python
        .args(["-m", "kubernetes_validate", "--strict"])
        .arg(&file)
        .output()
        .unwrap();
    assert_succeeded(&out);
}

/// A container image ships the data packages in a read-only file system: the server must use
/// them as they are, writing nothing into the data directory.
#[test]
fn an_installed_data_directory_on_a_read_only_file_system_serves() {
    // The default data directory, installed as the first server start (or `deps install`,
    // as `docker build` does) leaves it.
    let out = sandlot(&["config"], &[]);
    let effective: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let data = effective["data_dir"].as_str().unwrap().to_owned();
    let out = Command::new(BIN)
        .args(["deps", "install", "--data-dir", &data])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server runs in a mount namespace of its own where that directory is read-only.
    let target = std::ffi::CString::new(data.clone()).unwrap();
    let server = common::start_under(&["--data-dir", &data], &[], move || {
        use nix::mount::{mount, MsFlags};
        let none: Option<&str> = None;
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
        mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)?;
        let path = target.as_c_str();
        mount(
            Some(path),
            path,
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        )?;
        let read_only = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(none, path, none, read_only, none)?;
        Ok(())
    });
    server.wait_for_python_data(Duration::from_secs(120));
    let answer = server.python(
        "import pandas as pd\ndef main():\n    return {'n': int(pd.DataFrame({'x': [1, 2, 3]})['x'].sum())}",
        json!({}),
    );
    assert_eq!(answer["result"]["n"], 6, "{answer}");
}

/// The capabilities the deployment files name, as numbers.
fn capabilities(names: &[&str]) -> Vec<u64> {
    const CAPABILITIES: &[(&str, u64)] = &[
        ("CHOWN", 0),
        ("DAC_OVERRIDE", 1),
        ("FOWNER", 3),
        ("KILL", 5),
        ("SETGID", 6),
        ("SETUID", 7),
        ("NET_ADMIN", 12),
        ("SYS_CHROOT", 18),
        ("SYS_ADMIN", 21),
        ("SYS_RESOURCE", 24),
    ];
    names
        .iter()
        .map(|name| {
            let name = name.trim_start_matches("CAP_");
            CAPABILITIES
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("add {name} to this test's table"))
                .1
        })
        .collect()
}

/// A server started as a deployment file confines it (no systemd or Kubernetes runs here):
/// only the capabilities `keep` in its bounding set, optionally no_new_privs, and a read-only
/// file system but for `writable` directories and /tmp. It refuses to start unless every
/// layer of its jail works, so a start proves the jail whole; then every kind of run must work.
fn check_under_deployment_restrictions(keep: Vec<u64>, no_new_privs: bool, writable: Vec<String>) {
    let last: u64 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // /tmp stays writable (systemd's PrivateTmp=, the Deployment's emptyDir). It is the host's
    // own /tmp, not a fresh one: a fresh one would hide a binary built under /tmp.
    let writable: Vec<std::ffi::CString> = std::iter::once("/tmp".to_owned())
        .chain(writable)
        .map(|dir| {
            std::fs::create_dir_all(&dir).unwrap();
            std::ffi::CString::new(dir).unwrap()
        })
        .collect();
    let server = common::start_under(&[], &[], move || {
        use nix::mount::{mount, MsFlags};
        let none: Option<&str> = None;
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
        mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)?;
        let read_only = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(none, "/", none, read_only, none)?;
        for dir in &writable {
            let dir = dir.as_c_str();
            mount(Some(dir), dir, none, MsFlags::MS_BIND, none)?;
            mount(
                none,
                dir,
                none,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
                none,
            )?;
        }
        for capability in (0..=last).filter(|c| !keep.contains(c)) {
            // SAFETY: prctl changes only this process's capability bounding set.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        if no_new_privs {
            nix::sys::prctl::set_no_new_privs()?;
        }
        Ok(())
    });
    let ready = server.wait_for_python_data(Duration::from_secs(120));
    assert_eq!(ready.body["degraded"], json!([]), "{}", ready.text);
    let pandas = server.python(
        "import pandas as pd\ndef main():\n    return {'n': int(pd.Series([1, 2]).sum())}",
        json!({}),
    );
    assert_eq!(pandas["result"]["n"], 3, "{pandas}");
    let timed_out = server.run(
        json!({"language": "python", "code": "def main():\n    while True: pass",
                                       "limits": {"timeout_ms": 300}}),
    );
    assert_eq!(timed_out["error"]["kind"], "timeout", "{timed_out}");
    let python = server.python("def main(a):\n    return {'a': a + 1}", json!({"a": 1}));
    assert_eq!(python["result"]["a"], 2, "{python}");
    let javascript = server.javascript("function main({a}) { return {a: a + 1} }", json!({"a": 1}));
    assert_eq!(javascript["result"]["a"], 2, "{javascript}");
    let shell =
        server.run(json!({"language": "shell", "code": "echo hello; touch /tmp/x && ls /tmp"}));
    // /tmp is the working directory, with the run's output directory in it.
    assert_eq!(shell["stdout"], "hello\noutput\nx\n", "{shell}");
    // The Dify route imports anything: fork gets past Python and the kernel refuses it.
    let forked = server.post(
        "/v1/sandbox/run",
        r#"{"language": "python3", "code": "import os\nprint(os.fork())"}"#,
        &[],
    );
    let error = forked.body["data"]["error"].as_str().unwrap_or("");
    assert!(error.contains("PermissionError"), "{}", forked.text);
}

fn data_dir() -> String {
    let out = sandlot(&["config"], &[]);
    let effective: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    effective["data_dir"].as_str().unwrap().to_owned()
}

/// `contrib/systemd/sandlot.service`: its capability bounding set, `NoNewPrivileges=`, and
/// `ProtectSystem=strict` with `StateDirectory=` and `PrivateTmp=`.
#[test]
fn the_systemd_units_hardening_leaves_the_jail_whole() {
    let unit = include_str!("../contrib/systemd/sandlot.service");
    let keep: Vec<&str> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit bounds its capabilities")
        .split_whitespace()
        .collect();
    assert!(unit.contains("NoNewPrivileges=yes") && unit.contains("ProtectSystem=strict"));
    check_under_deployment_restrictions(capabilities(&keep), true, vec![data_dir()]);
}

/// `deploy/kubernetes/deployment.yaml`: the capabilities it adds (after dropping all), a
/// read-only root file system, and its two emptyDirs.
#[test]
fn the_kubernetes_security_context_leaves_the_jail_whole() {
    let deployment = include_str!("../deploy/kubernetes/deployment.yaml");
    let added = deployment
        .lines()
        .find_map(|l| l.trim().strip_prefix("add: "))
        .expect("the Deployment adds capabilities");
    let keep: Vec<&str> = added
        .trim_matches(['[', ']'])
        .split(',')
        .map(|c| c.trim().trim_matches('"'))
        .collect();
    assert!(deployment.contains("readOnlyRootFilesystem: true"));
    assert!(deployment.contains("drop: [\"ALL\"]"));
    let matplotlib = format!("{}/matplotlib", data_dir());
    assert!(deployment.contains("mountPath: /var/lib/sandlot/matplotlib"));
    check_under_deployment_restrictions(capabilities(&keep), false, vec![matplotlib]);
}
