//! `POST /v1/run` with `Accept: text/event-stream` (docs/api.md, "Streaming"), against a real
//! server: output arrives as it is printed, the result event is the plain response, the limits
//! hold, and a client that leaves ends its run.

mod common;

use std::io::{BufRead, BufReader};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{processes, Server};
use serde_json::{json, Value};

/// One server for this file, with a heartbeat every 100 ms rather than every 15 s.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| common::start(&[], &[("SANDLOT_TESTING_SSE_HEARTBEAT_MS", "100")]))
}

/// A stream's events as they arrived.
struct Streamed {
    /// (when, event name, data)
    events: Vec<(Instant, String, Value)>,
    /// When each `: keep-alive` comment arrived.
    heartbeats: Vec<Instant>,
}

impl Streamed {
    fn output(&self, name: &str) -> Vec<(Instant, String)> {
        self.events
            .iter()
            .filter(|(_, n, _)| n == name)
            .map(|(at, _, data)| (*at, data["text"].as_str().unwrap().to_owned()))
            .collect()
    }

    fn text(&self, name: &str) -> String {
        self.output(name).into_iter().map(|(_, t)| t).collect()
    }

    /// The result event: its arrival and data. It is the last event, and there is one.
    fn result(&self) -> (Instant, &Value) {
        let results: Vec<_> = self.events.iter().filter(|e| e.1 == "result").collect();
        assert_eq!(results.len(), 1, "{:?}", self.events);
        let last = self.events.last().unwrap();
        assert_eq!(last.1, "result", "{:?}", self.events);
        (last.0, &last.2)
    }
}

fn open(body: &Value) -> ureq::http::Response<ureq::Body> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let response = agent
        .post(format!("{}/v1/run", server().base))
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .send(body.to_string())
        .expect("HTTP request");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    response
}

/// Reads events until the stream ends (or `until` says stop after an event).
fn read_events(reader: &mut impl BufRead, mut until: impl FnMut(&str, &Value) -> bool) -> Streamed {
    let mut streamed = Streamed {
        events: Vec::new(),
        heartbeats: Vec::new(),
    };
    let (mut name, mut data) = (String::new(), String::new());
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).expect("reading the stream") == 0 {
            return streamed;
        }
        let line = line.trim_end_matches('\n');
        if let Some(comment) = line.strip_prefix(':') {
            assert_eq!(comment.trim(), "keep-alive");
            streamed.heartbeats.push(Instant::now());
        } else if let Some(value) = line.strip_prefix("event: ") {
            name = value.to_owned();
        } else if let Some(value) = line.strip_prefix("data: ") {
            data = value.to_owned();
        } else if line.is_empty() && !name.is_empty() {
            let value: Value = serde_json::from_str(&data).expect("JSON data");
            streamed.events.push((Instant::now(), name.clone(), value));
            if until(&name, &streamed.events.last().unwrap().2) {
                return streamed;
            }
            name.clear();
        }
    }
}

fn stream(body: Value) -> Streamed {
    let response = open(&body);
    let mut reader = BufReader::new(response.into_body().into_reader());
    let streamed = read_events(&mut reader, |_, _| false);
    streamed.result();
    streamed
}

/// The same request without streaming.
fn plain(body: &Value) -> Value {
    server().run(body.clone())
}

/// Every chunk arrives as the code prints it: the first one long before the result, spread over
/// the run as its sleeps spread the prints (a buffered stream would deliver them all at once).
fn assert_arrived_as_printed(streamed: &Streamed, printed: usize, gap_ms: f64) {
    let stdout = streamed.output("stdout");
    let (result_at, result) = streamed.result();
    assert!(stdout.len() >= printed, "{:?}", streamed.events);
    let run_ms = result["execution_time_ms"].as_f64().unwrap();
    let early_ms = result_at.duration_since(stdout[0].0).as_secs_f64() * 1000.0;
    let expected = gap_ms * (printed - 1) as f64;
    assert!(
        early_ms >= expected * 0.7,
        "the first chunk came {early_ms:.0} ms before the result of a {run_ms:.0} ms run, \
         which sleeps {expected} ms after it"
    );
    assert!(run_ms >= expected, "{result}");
}

fn assert_same_response(streamed: &Value, plain: &Value) {
    let keys = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(streamed), keys(plain), "{streamed}\n{plain}");
    for field in [
        "ok",
        "result",
        "stdout",
        "stderr",
        "exit_code",
        "error",
        "images",
        "files",
    ] {
        assert_eq!(
            streamed[field], plain[field],
            "{field}: {streamed}\n{plain}"
        );
    }
}

#[test]
fn a_slow_python_producer_streams_each_print_as_it_happens() {
    let body = json!({"language": "python", "code": "import sys, time\n\
        def main(n):\n    for i in range(n):\n        print('tick', i, 'é')\n        \
        print('warn', i, file=sys.stderr)\n        time.sleep(0.3)\n    return {'n': n}",
        "inputs": {"n": 4}});
    let streamed = stream(body.clone());
    assert_arrived_as_printed(&streamed, 4, 300.0);
    let (_, result) = streamed.result();
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["result"], json!({"n": 4}));
    assert_eq!(streamed.text("stdout"), result["stdout"].as_str().unwrap());
    assert_eq!(streamed.text("stderr"), result["stderr"].as_str().unwrap());
    assert!(streamed.text("stdout").starts_with("tick 0 é\ntick 1 é\n"));
    // One line, but for a print whose writes a stall kept apart for a whole reading.
    assert!(streamed.output("stderr")[0].1.starts_with("warn"));
    assert_same_response(result, &plain(&body));
    // Quiet for 300 ms at a time, with a heartbeat every 100 ms (this server's setting).
    assert!(!streamed.heartbeats.is_empty(), "no heartbeat");
}

#[test]
fn a_slow_javascript_producer_streams_each_log_as_it_happens() {
    let body = json!({"language": "javascript", "code": "async function main({n}) {\n\
        for (let i = 0; i < n; i++) {\n    console.log('tick ' + i);\n    \
        console.error('warn ' + i);\n    await new Promise(r => setTimeout(r, 300));\n  }\n  \
        return {n};\n}", "inputs": {"n": 4}});
    let streamed = stream(body.clone());
    assert_arrived_as_printed(&streamed, 4, 300.0);
    let (_, result) = streamed.result();
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["result"], json!({"n": 4}));
    assert_eq!(streamed.text("stdout"), "tick 0\ntick 1\ntick 2\ntick 3\n");
    assert_eq!(streamed.text("stderr"), result["stderr"].as_str().unwrap());
    assert_same_response(result, &plain(&body));
}

#[test]
fn a_slow_shell_command_streams_its_output() {
    let body = json!({"language": "shell",
        "code": "for i in 1 2 3 4; do echo line $i; echo err $i >&2; sleep 0.3; done"});
    let streamed = stream(body.clone());
    assert_arrived_as_printed(&streamed, 4, 300.0);
    let (_, result) = streamed.result();
    assert_eq!(result["exit_code"], 0, "{result}");
    assert_eq!(streamed.text("stdout"), "line 1\nline 2\nline 3\nline 4\n");
    assert_eq!(streamed.text("stderr"), "err 1\nerr 2\nerr 3\nerr 4\n");
    assert_same_response(result, &plain(&body));
}

#[test]
fn the_output_limit_stops_the_stream_and_the_result_says_so() {
    for (language, code) in [
        (
            "python",
            "import time\ndef main():\n    for i in range(50):\n        print('x' * 99)\n        \
             time.sleep(0.1)\n    return {}",
        ),
        (
            "javascript",
            "async function main() {\n  for (let i = 0; i < 50; i++) {\n    \
             console.log('x'.repeat(99));\n    await new Promise(r => setTimeout(r, 100));\n  }\n  \
             return {};\n}",
        ),
    ] {
        let body = json!({"language": language, "code": code,
                          "limits": {"max_output_bytes": 1000}});
        let streamed = stream(body);
        let (result_at, result) = streamed.result();
        assert_eq!(
            result["error"]["kind"], "output_limit",
            "{language}: {result}"
        );
        let text = streamed.text("stdout");
        assert!(
            text.len() <= 1000,
            "{language}: {} bytes streamed",
            text.len()
        );
        assert!(
            text.len() >= 900,
            "{language}: {} bytes streamed",
            text.len()
        );
        assert_eq!(text, result["stdout"].as_str().unwrap(), "{language}");
        // The lines before the limit came as they were printed, over about a second.
        let first = streamed.output("stdout")[0].0;
        assert!(
            result_at.duration_since(first) >= Duration::from_millis(500),
            "{language}: {:?}",
            result_at.duration_since(first)
        );
    }
}

#[test]
fn a_run_that_times_out_mid_stream_keeps_what_it_printed() {
    for (language, code) in [
        (
            "python",
            "def main():\n    print('before', flush=True)\n    while True: pass",
        ),
        (
            "javascript",
            "function main() {\n  console.log('before');\n  while (true) {}\n}",
        ),
    ] {
        let body = json!({"language": language, "code": code,
                          "limits": {"timeout_ms": 1500}});
        let streamed = stream(body);
        let (result_at, result) = streamed.result();
        assert_eq!(result["error"]["kind"], "timeout", "{language}: {result}");
        assert_eq!(result["stdout"], "before\n");
        assert_eq!(streamed.text("stdout"), "before\n");
        let first = streamed.output("stdout")[0].0;
        assert!(
            result_at.duration_since(first) >= Duration::from_millis(1000),
            "{language}: the print came {:?} before the timeout's result",
            result_at.duration_since(first)
        );
    }
}

/// The client leaves once the code has printed: the run's child, busy in a loop with 20 s
/// left, is killed at once.
#[test]
fn a_client_that_disconnects_ends_its_run() {
    let server = server();
    for (language, zygote, code) in [
        (
            "python",
            "python",
            "def main():\n    print('started', flush=True)\n    while True: pass",
        ),
        (
            "javascript",
            "javascript",
            "function main() {\n  console.log('started');\n  while (true) {}\n}",
        ),
    ] {
        let body = json!({"language": language, "code": code,
                          "limits": {"timeout_ms": 20000}});
        let response = open(&body);
        let mut reader = BufReader::new(response.into_body().into_reader());
        let streamed = read_events(&mut reader, |name, _| name == "stdout");
        assert_eq!(streamed.text("stdout"), "started\n", "{language}");
        let parent = processes::zygote_pid(server, zygote).expect("the zygote");
        let child = processes::wait_for_busy_child(parent, Duration::from_secs(10));
        let left = Instant::now();
        drop(reader);
        processes::wait_for_exit(child, Duration::from_secs(5));
        assert!(
            left.elapsed() < Duration::from_secs(3),
            "{:?}",
            left.elapsed()
        );
    }
}

#[test]
fn a_quiet_run_gets_heartbeats_and_a_bad_request_gets_plain_json() {
    let streamed = stream(json!({"language": "python",
        "code": "import time\ndef main():\n    time.sleep(1)\n    return {'done': True}"}));
    let (result_at, result) = streamed.result();
    assert_eq!(result["result"], json!({"done": true}));
    let before_result = streamed
        .heartbeats
        .iter()
        .filter(|h| **h < result_at)
        .count();
    assert!(
        before_result >= 3,
        "{before_result} heartbeats in a quiet second"
    );

    let reply = server().post(
        "/v1/run",
        r#"{"language": "python", "code": "x", "limits": {"timeout_ms": "soon"}}"#,
        &[("accept", "text/event-stream")],
    );
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.body["error"]["kind"], "bad_request");
    let content_type = reply.headers.iter().find(|(k, _)| k == "content-type");
    assert_eq!(content_type.unwrap().1, "application/json");
    // A field only the plan checks is refused the same way.
    let reply = server().post(
        "/v1/run",
        r#"{"language": "shell", "code": "true", "mode": "main"}"#,
        &[("accept", "text/event-stream")],
    );
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.body["error"]["kind"], "bad_request");
}

/// Each file is sent whole when the code closes it, long before the result; a file rewritten
/// and closed again is sent again as it is then. The result holds every file too.
#[test]
fn files_are_sent_as_they_are_closed() {
    let code = "import time\n\
        def main():\n\
        \x20   with open('output/first.csv', 'w') as f:\n\
        \x20       f.write('a,b\\n')\n\
        \x20   time.sleep(0.6)\n\
        \x20   with open('output/first.csv', 'a') as f:\n\
        \x20       f.write('1,2\\n')\n\
        \x20   time.sleep(0.6)\n\
        \x20   return {}\n";
    let body = json!({"language": "python", "code": code});
    let streamed = stream(body.clone());
    let files: Vec<_> = streamed
        .events
        .iter()
        .filter(|(_, name, _)| name == "file")
        .collect();
    assert_eq!(files.len(), 2, "{:?}", streamed.events);
    let decode = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(v["base64"].as_str().unwrap())
            .unwrap()
    };
    assert_eq!(files[0].2["name"], "first.csv");
    assert_eq!(decode(&files[0].2), b"a,b\n".to_vec());
    assert_eq!(decode(&files[1].2), b"a,b\n1,2\n".to_vec());
    let (result_at, result) = streamed.result();
    let early = result_at.duration_since(files[0].0);
    assert!(
        early >= Duration::from_millis(800),
        "the first file came {early:?} before the result"
    );
    assert_eq!(decode(&result["files"][0]), b"a,b\n1,2\n".to_vec());
    assert_same_response(result, &plain(&body));
}

#[test]
fn the_openapi_document_describes_the_event_stream() {
    let document = server().get("/openapi.json").body;
    let run = &document["paths"]["/v1/run"]["post"];
    let content = &run["responses"]["200"]["content"];
    assert!(content["application/json"].is_object(), "{content}");
    let events = &content["text/event-stream"];
    assert!(
        events["example"]
            .as_str()
            .unwrap()
            .contains("event: result"),
        "{events}"
    );
    let accept = run["parameters"].as_array().unwrap();
    assert!(accept.iter().any(|p| p["name"] == "accept"), "{run}");
    assert!(run["description"].as_str().unwrap().contains("keep-alive"));
}
