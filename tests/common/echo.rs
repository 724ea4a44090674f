//! The brokered-HTTP fixture (tests/broker.rs, tests/fetch.rs, tests/python_http_clients.rs):
//! a server started with `--http-allow 127.0.0.2/32` (and the ephemeral ports open to brokered
//! connections), an echo server on 127.0.0.2 that notes every request it gets,
//! and a listener on 127.0.0.1 that must never receive a connection, whatever spelling,
//! redirect or name user code tries.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};

/// The request targets (`/path?query`) an echo server got, in order.
pub type Seen = Arc<Mutex<Vec<String>>>;

pub struct Fixture {
    pub server: super::Server,
    /// The allowed echo server, on 127.0.0.2.
    pub allowed: u16,
    /// What it got.
    pub seen: Seen,
    /// The forbidden listener on 127.0.0.1, and the peers of the connections it took.
    pub forbidden: u16,
    forbidden_peers: Arc<Mutex<Vec<SocketAddr>>>,
    /// The test's own connections to it (see [`assert_forbidden_untouched`]).
    sentinels: Mutex<Vec<SocketAddr>>,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let forbidden_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let forbidden = forbidden_listener.local_addr().unwrap().port();
        let forbidden_peers: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
        let peers = forbidden_peers.clone();
        std::thread::spawn(move || loop {
            if let Ok((_stream, peer)) = forbidden_listener.accept() {
                peers.lock().unwrap().push(peer);
            }
        });
        let (allowed, seen) = echo_server("127.0.0.2");
        // Local servers listen on ephemeral ports, which brokered connections reach only
        // when opened.
        let server = super::start(
            &[
                "--http-allow",
                "127.0.0.2/32",
                "--connect-ports",
                "80,443,1024-65535",
            ],
            &[],
        );
        Fixture {
            server,
            allowed,
            seen,
            forbidden,
            forbidden_peers,
            sentinels: Mutex::default(),
        }
    })
}

/// Starts an echo server on `host`; its port and what it gets.
pub fn echo_server(host: &str) -> (u16, Seen) {
    let listener = TcpListener::bind(format!("{host}:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Seen::default();
    let noted = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let noted = noted.clone();
            std::thread::spawn(move || serve(stream, &noted));
        }
    });
    (port, seen)
}

/// One request of the echo server: `/slow` sleeps, `/big` sends 3 MiB, `/redirect?to=URL`
/// redirects (302), `/text` answers plain text, `/bytes` the 256 byte values, `/status/N` that
/// status; anything else echoes the request as JSON (the body as text and as hex).
fn serve(mut stream: TcpStream, seen: &Seen) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut headers = serde_json::Map::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
            if name == "content-length" {
                length = value.parse().unwrap_or(0);
            }
            headers.insert(name, Value::String(value));
        }
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    seen.lock().unwrap().push(target.clone());
    let (status, content_type, payload): (String, &str, Vec<u8>) = if target == "/slow" {
        std::thread::sleep(Duration::from_secs(5));
        ("200 OK".into(), "text/plain", b"late".to_vec())
    } else if target == "/big" {
        ("200 OK".into(), "text/plain", vec![b'x'; 3 * 1024 * 1024])
    } else if let Some(to) = target.strip_prefix("/redirect?to=") {
        let response = format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(response.as_bytes());
        return;
    } else if target == "/text" {
        (
            "200 OK".into(),
            "text/plain; charset=utf-8",
            "plain text ✓".as_bytes().to_vec(),
        )
    } else if target == "/bytes" {
        (
            "200 OK".into(),
            "application/octet-stream",
            (0..=255u8).collect(),
        )
    } else if let Some(code) = target.strip_prefix("/status/") {
        let reason = if code == "404" { "Not Found" } else { "Status" };
        (
            format!("{code} {reason}"),
            "text/plain",
            format!("status {code}").into_bytes(),
        )
    } else {
        let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
        let echo = json!({"method": method, "path": target, "headers": headers,
            "body": String::from_utf8_lossy(&body), "body_hex": hex});
        (
            "201 Created".into(),
            "application/json",
            echo.to_string().into_bytes(),
        )
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nX-Echo: yes\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&payload);
}

/// No connection reached the forbidden listener. A negative check needs a positive control:
/// the test makes a connection of its own (a sentinel) and waits until the listener has taken
/// it; the listener takes connections in the order they were made, and any the server made for
/// a run was made before the run answered, so by then it has been seen. Sentinels are made and
/// noted under one lock, so that tests running at once do not take each other's for intruders.
pub fn assert_forbidden_untouched() {
    let fixture = fixture();
    let (_stream, sentinel) = {
        let mut sentinels = fixture.sentinels.lock().unwrap();
        let stream = TcpStream::connect(("127.0.0.1", fixture.forbidden)).unwrap();
        let sentinel = stream.local_addr().unwrap();
        sentinels.push(sentinel);
        (stream, sentinel)
    };
    super::wait_for(
        Duration::from_secs(10),
        || format!("the forbidden listener to take the sentinel {sentinel}"),
        || {
            let peers = fixture.forbidden_peers.lock().unwrap();
            peers.contains(&sentinel).then_some(())
        },
    );
    let sentinels = fixture.sentinels.lock().unwrap();
    let intruders: Vec<SocketAddr> = fixture
        .forbidden_peers
        .lock()
        .unwrap()
        .iter()
        .filter(|peer| !sentinels.contains(peer))
        .copied()
        .collect();
    assert!(
        intruders.is_empty(),
        "127.0.0.1 got connections from {intruders:?}"
    );
}
