//! Clients that do not play fair: slow heads, slow bodies, too many connections, and bodies of
//! every malformed kind on every route. None of them starves the others, none gets a 5xx, and
//! the server keeps answering.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::json;

fn address(server: &common::Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (or `limit` passes): what it sent.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Result<String, String> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(String::from_utf8_lossy(&received).into_owned()),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok(String::from_utf8_lossy(&received).into_owned())
            }
            Err(e) => return Err(format!("still open after {limit:?}: {e}")),
        }
    }
}

/// A control run that shows the server still serves, and soon: nothing starves it.
fn control(server: &common::Server) {
    let started = Instant::now();
    common::control(server, "", 41).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// One server for the two tests of slow clients: its header and body timeouts (half a second
/// each) apply to different parts of a request, so neither test sees the other's.
fn slow_clients_server() -> &'static common::Server {
    static SERVER: std::sync::OnceLock<common::Server> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        common::start(
            &["--header-timeout-ms", "500", "--body-timeout-ms", "500"],
            &[],
        )
    })
}

#[test]
fn slow_heads_are_cut_off_and_do_not_starve_others() {
    let server = slow_clients_server();
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(address(server)).unwrap();
            s.write_all(b"POST /v1/run HTTP/1.1\r\nHost: x\r\nContent-Ty")
                .unwrap();
            s
        })
        .collect();
    control(server);
    for stream in &mut slow {
        // Closed by the server about half a second after it connected.
        read_until_closed(stream, Duration::from_secs(3)).unwrap();
    }
    // An idle keep-alive connection is not kept for ever either.
    let mut idle = TcpStream::connect(address(server)).unwrap();
    read_until_closed(&mut idle, Duration::from_secs(3)).unwrap();
    control(server);
}

#[test]
fn a_slow_body_gets_408_and_is_closed() {
    let server = slow_clients_server();
    // The three slow bodies at once: each must be cut off on its own clock.
    let slow: Vec<_> = ["/v1/run", "/v1/sandbox/run", "/sandbox/js"]
        .map(|path| {
            let mut s = TcpStream::connect(address(server)).unwrap();
            write!(
                s,
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"lang"
            )
            .unwrap();
            (path, s, Instant::now())
        })
        .into();
    for (path, mut s, started) in slow {
        let answer = read_until_closed(&mut s, Duration::from_secs(5)).unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    control(server);
}

#[test]
fn connections_past_the_limit_get_503_and_the_rest_still_work() {
    let server = common::start(
        &["--max-connections", "4", "--header-timeout-ms", "60000"],
        &[],
    );
    // Four idle connections hold the four slots. No wait is needed before the fifth: the
    // kernel queues connections in the order their connects returned, and the server takes a
    // slot for each in its accept loop, in that order.
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(address(&server)).unwrap())
        .collect();
    let mut fifth = TcpStream::connect(address(&server)).unwrap();
    let answer = read_until_closed(&mut fifth, Duration::from_secs(3)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after"), "{answer}");
    // Their slots free again once they leave (once the server has read each one's end).
    drop(held);
    common::wait_for(
        Duration::from_secs(10),
        || "a free slot".into(),
        || {
            let mut s = TcpStream::connect(address(&server)).unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let answer = read_until_closed(&mut s, Duration::from_secs(3)).unwrap();
            (!answer.starts_with("HTTP/1.1 503")).then_some(())
        },
    );
    control(&server);
}

/// Every POST route of every API.
const ROUTES: &[&str] = &[
    "/v1/run",
    "/v1/sandbox/run",
    "/v1/sandbox/dependencies/update",
    "/sandbox/js",
    "/sandbox/python",
    "/v1/sandbox/execute_js",
    "/v1/sandbox/execute_python",
    "/v1/sandbox/execute_shell",
];

/// Bodies of every malformed kind: arbitrary bytes (not UTF-8), truncated or deeply nested
/// JSON, JSON of the wrong shapes, huge strings.
fn hostile_body() -> impl Strategy<Value = Vec<u8>> {
    let json_value = prop::strategy::Union::new(vec![
        Just(json!(null)).boxed(),
        any::<bool>().prop_map(|b| json!(b)).boxed(),
        any::<i64>().prop_map(|n| json!(n)).boxed(),
        any::<f64>().prop_map(|n| json!(n)).boxed(),
        ".{0,40}".prop_map(|s| json!(s)).boxed(),
    ]);
    let field = prop::sample::select(vec![
        "language",
        "code",
        "inputs",
        "limits",
        "mode",
        "variables",
        "preload",
        "enable_network",
        "timeout",
        "command",
        "allowed_modules",
        "network",
        "working_dir",
        "env",
    ]);
    let object = prop::collection::vec((field, json_value), 0..6).prop_map(|fields| {
        let map: serde_json::Map<String, serde_json::Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        serde_json::to_vec(&map).unwrap()
    });
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        object.clone(),
        (object, 0usize..64).prop_map(|(mut bytes, cut)| {
            bytes.truncate(bytes.len().saturating_sub(cut));
            bytes
        }),
        (1usize..100_000).prop_map(|depth| {
            let mut bytes = vec![b'['; depth];
            bytes.extend(std::iter::repeat_n(b']', depth));
            bytes
        }),
        (1usize..100_000)
            .prop_map(|depth| format!("{{\"code\": {}", "{\"a\":".repeat(depth)).into_bytes()),
        (0usize..4_000_000).prop_map(|n| {
            format!(
                "{{\"language\": \"python\", \"code\": \"{}\"}}",
                "x".repeat(n)
            )
            .into_bytes()
        }),
        Just(b"{\"language\": \"python\", \"code\": \"\xff\xfe\"}".to_vec()),
    ]
}

#[test]
fn malformed_bodies_on_every_route_get_4xx_never_5xx() {
    let server = common::start(
        &[
            "--api-key",
            "k",
            "--max-body-bytes",
            "1048576",
            "--default-timeout-ms",
            "2000",
        ],
        &[],
    );
    let address = address(&server);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(prop::sample::select(ROUTES), hostile_body()),
            |(route, body)| {
                let status = post_raw(&address, route, &body);
                prop_assert!(
                    status < 500,
                    "{route}: HTTP {status} for {} bytes",
                    body.len()
                );
                Ok(())
            },
        )
        .unwrap();
    common::control(&server, "k", 1).unwrap();
}

/// A POST with the key and raw bytes as the body; the status code.
fn post_raw(address: &str, path: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(address).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nX-Api-Key: k\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer 413 and close before it has read all of a large body.
    let _ = s.write_all(body);
    let answer = read_until_closed(&mut s, Duration::from_secs(60)).unwrap();
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{path}: no status line in {answer:?}"))
}
