//! Python's own HTTP clients — `urllib.request`, `http.client`, `requests`, `httpx` — through
//! the server's broker (brokered connections). Local servers stand in for the internet: an
//! HTTP echo server and a TLS server on 127.0.0.2, opened with `--http-allow 127.0.0.2/32`,
//! and a listener on 127.0.0.1 that must never receive a connection, whatever a run tries.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};

use common::echo::{assert_forbidden_untouched, fixture};

/// The TLS server on 127.0.0.2: its port and the PEM of its self-signed certificate.
struct Tls {
    port: u16,
    certificate: String,
    _process: KillOnDrop,
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

/// The shared fixture of `common::echo`, once its server has the python-data zygote (the HTTP
/// client packages are among the data packages), and the TLS server.
fn ready() -> (&'static common::echo::Fixture, &'static Tls) {
    static TLS: OnceLock<Tls> = OnceLock::new();
    let f = fixture();
    let tls = TLS.get_or_init(|| {
        f.server.wait_for_python_data(Duration::from_secs(600));
        let (process, port, certificate) = start_tls_server();
        Tls {
            port,
            certificate,
            _process: KillOnDrop(process),
        }
    });
    (f, tls)
}

/// A TLS server on 127.0.0.2 with a fresh self-signed certificate for that address (openssl
/// and Python's ssl module, as found on the test machine): its process, port and PEM.
fn start_tls_server() -> (Child, u16, String) {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.2",
            "-addext",
            "subjectAltName=IP:127.0.0.2",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success(), "openssl could not make a certificate");
    // The server leaves when this test process does (its stdin reaches EOF): the fixture is a
    // static, which is never dropped, so KillOnDrop alone would leave it running.
    let script = "import http.server, os, ssl, sys, threading\n\
        threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()\n\
        class Echo(http.server.BaseHTTPRequestHandler):\n\
        \x20   def do_GET(self):\n\
        \x20       body = ('secure ' + self.path).encode()\n\
        \x20       self.send_response(200)\n\
        \x20       self.send_header('Content-Length', str(len(body)))\n\
        \x20       self.end_headers()\n\
        \x20       self.wfile.write(body)\n\
        \x20   def log_message(self, *args):\n\
        \x20       pass\n\
        server = http.server.ThreadingHTTPServer(('127.0.0.2', 0), Echo)\n\
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
        context.load_cert_chain(sys.argv[1], sys.argv[2])\n\
        server.socket = context.wrap_socket(server.socket, server_side=True)\n\
        print(server.server_address[1], flush=True)\n\
        server.serve_forever()\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .arg(&cert)
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the TLS server's port");
    (child, port, std::fs::read_to_string(&cert).unwrap())
}

fn py(code: &str) -> Value {
    let (f, tls) = ready();
    f.server.python(
        code,
        json!({"echo": f.allowed, "tls": tls.port, "ca": tls.certificate, "forbidden": f.forbidden}),
    )
}

/// Whether the echo server got a request for `target`.
fn seen(target: &str) -> bool {
    fixture().seen.lock().unwrap().iter().any(|t| t == target)
}

fn assert_ok(r: &Value) -> &Value {
    assert_eq!(r["ok"], true, "{r}");
    &r["result"]
}

fn assert_denied(r: &Value, needle: &str) {
    assert_eq!(r["error"]["kind"], "network_denied", "{r}");
    let message = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "the message should say {needle:?}: {r}"
    );
}

#[test]
fn requests_gets_and_posts_json() {
    let r = py("import requests\n\
        def main(echo, tls, ca, forbidden):\n\
        \x20   base = f'http://127.0.0.2:{echo}'\n\
        \x20   got = requests.get(base + '/items?x=1', headers={'X-Token': 'abc'}, timeout=5)\n\
        \x20   posted = requests.post(base + '/items', json={'a': [1, 'é']}, timeout=5)\n\
        \x20   with requests.Session() as s:\n\
        \x20       again = [s.get(base + f'/{i}').json()['path'] for i in range(3)]\n\
        \x20   return {'status': got.status_code, 'got': got.json(), 'posted': posted.json(), 'again': again}");
    let result = assert_ok(&r);
    assert_eq!(result["status"], 201);
    assert_eq!(result["got"]["path"], "/items?x=1");
    assert_eq!(result["got"]["headers"]["x-token"], "abc");
    assert_eq!(result["posted"]["method"], "POST");
    let body: Value = serde_json::from_str(result["posted"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"a": [1, "é"]}));
    assert_eq!(result["again"], json!(["/0", "/1", "/2"]));
}

#[test]
fn httpx_gets_and_posts_json() {
    let r = py("import httpx\n\
        def main(echo, tls, ca, forbidden):\n\
        \x20   base = f'http://127.0.0.2:{echo}'\n\
        \x20   got = httpx.get(base + '/one', timeout=5)\n\
        \x20   with httpx.Client(base_url=base, timeout=5) as client:\n\
        \x20       posted = client.post('/two', json={'n': 2})\n\
        \x20   return {'got': got.json()['path'], 'posted': posted.json()}");
    let result = assert_ok(&r);
    assert_eq!(result["got"], "/one");
    assert_eq!(result["posted"]["path"], "/two");
    assert_eq!(result["posted"]["body"], r#"{"n":2}"#);
}

#[test]
fn urllib_and_http_client_of_the_standard_library() {
    let r = py("import json, urllib.request, http.client\n\
        def main(echo, tls, ca, forbidden):\n\
        \x20   with urllib.request.urlopen(f'http://127.0.0.2:{echo}/u', timeout=5) as r:\n\
        \x20       got = json.loads(r.read())\n\
        \x20   c = http.client.HTTPConnection('127.0.0.2', echo, timeout=5)\n\
        \x20   c.request('POST', '/c', body=b'raw', headers={'Content-Type': 'text/plain'})\n\
        \x20   posted = json.loads(c.getresponse().read())\n\
        \x20   return {'got': got['path'], 'posted': posted['body']}");
    let result = assert_ok(&r);
    assert_eq!(result, &json!({"got": "/u", "posted": "raw"}));
}

#[test]
fn tls_is_verified_against_the_destinations_certificate() {
    // Trusting the server's own certificate, the handshake and the hostname check pass.
    let r = py("import ssl, urllib.request, httpx\n\
        def main(echo, tls, ca, forbidden):\n\
        \x20   context = ssl.create_default_context(cadata=ca)\n\
        \x20   url = f'https://127.0.0.2:{tls}/hello'\n\
        \x20   a = urllib.request.urlopen(url, context=context, timeout=5).read().decode()\n\
        \x20   b = httpx.get(url, verify=context, timeout=5).text\n\
        \x20   return {'urllib': a, 'httpx': b}");
    assert_eq!(
        assert_ok(&r),
        &json!({"urllib": "secure /hello", "httpx": "secure /hello"})
    );
    // With the default trust (certifi, the system's store) a self-signed certificate fails.
    for client in ["requests.get(url, timeout=5)", "httpx.get(url, timeout=5)"] {
        let r = py(&format!(
            "import requests, httpx\n\
             def main(echo, tls, ca, forbidden):\n\
             \x20   url = f'https://127.0.0.2:{{tls}}/'\n\
             \x20   return {{'status': {client}.status_code}}"
        ));
        assert_eq!(r["error"]["kind"], "runtime_error", "{r}");
        let message = r["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("CERTIFICATE_VERIFY_FAILED"),
            "{client}: {r}"
        );
    }
}

#[test]
fn loopback_metadata_and_redirects_there_are_refused() {
    let direct = py("import requests\n\
        def main(echo, tls, ca, forbidden):\n\
        \x20   return {'status': requests.get(f'http://127.0.0.1:{forbidden}/', timeout=5).status_code}");
    assert_denied(&direct, "127.0.0.1");
    let metadata = py("import urllib.request\n\
        def main(echo, tls, ca, forbidden):\n\
        \x20   return {'status': urllib.request.urlopen('http://169.254.169.254/latest/', timeout=5).status}");
    assert_denied(&metadata, "169.254.169.254");
    for client in [
        "requests.get(url, timeout=5)",
        "httpx.get(url, follow_redirects=True, timeout=5)",
    ] {
        let redirected = py(&format!(
            "import requests, httpx\n\
             def main(echo, tls, ca, forbidden):\n\
             \x20   url = f'http://127.0.0.2:{{echo}}/redirect?to=http://localhost:{{forbidden}}/'\n\
             \x20   return {{'status': {client}.status_code}}"
        ));
        assert_denied(&redirected, "127.0.0.1");
    }
    let mail = py("import http.client\n\
        def main(echo, tls, ca, forbidden):\n\
        \x20   http.client.HTTPConnection('127.0.0.2', 25, timeout=5).request('GET', '/')\n\
        \x20   return {}");
    assert_denied(&mail, "port 25");
    assert_forbidden_untouched();
}

#[test]
fn without_network_every_client_fails_at_once() {
    let (f, _) = ready();
    for client in [
        "requests.get(url)",
        "httpx.get(url)",
        "urllib.request.urlopen(url)",
    ] {
        let code = format!(
            "import requests, httpx, urllib.request\n\
             def main(echo):\n\
             \x20   url = f'http://127.0.0.2:{{echo}}/no-network'\n\
             \x20   {client}\n\
             \x20   return {{}}"
        );
        let r = f.server.run(json!({"language": "python", "code": code,
            "inputs": {"echo": f.allowed}, "network": false}));
        assert_denied(&r, "not allowed for this run");
    }
    // Dify's enable_network: false is the same refusal.
    let reply = f.server.post(
        "/v1/sandbox/run",
        &json!({"language": "python3", "enable_network": false, "code": format!(
            "import requests\nprint(requests.get('http://127.0.0.2:{}/no-network-dify').status_code)", f.allowed)})
        .to_string(),
        &[],
    );
    let error = reply.body["data"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("NetworkDeniedError"), "{}", reply.text);
    assert!(
        !seen("/no-network") && !seen("/no-network-dify"),
        "a refused run reached the server"
    );
}

#[test]
fn dify_code_with_requests_reaches_the_network() {
    let (f, _) = ready();
    let code = format!(
        "import requests\n\
         def main(name: str) -> dict:\n\
         \x20   r = requests.post('http://127.0.0.2:{}/hook', json={{'name': name}}, timeout=5)\n\
         \x20   return {{'result': r.json()['body']}}\n",
        f.allowed
    );
    // What Dify's code node sends: the user's main, and a runner that prints its result.
    let runner = format!("{code}\nimport json\nprint(json.dumps(main(**{{'name': 'dify'}})))\n");
    let reply = f.server.post(
        "/v1/sandbox/run",
        &json!({"language": "python3", "code": runner, "enable_network": true}).to_string(),
        &[],
    );
    assert_eq!(reply.body["code"], 0, "{}", reply.text);
    let stdout = reply.body["data"]["stdout"].as_str().unwrap();
    let printed: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(printed["result"], r#"{"name": "dify"}"#);
}

#[test]
fn connections_count_against_the_runs_request_limit() {
    let r = py("import http.client\n\
        def main(echo, tls, ca, forbidden):\n\
        \x20   made = 0\n\
        \x20   try:\n\
        \x20       for _ in range(40):\n\
        \x20           c = http.client.HTTPConnection('127.0.0.2', echo, timeout=5)\n\
        \x20           c.request('GET', '/')\n\
        \x20           c.getresponse().read()\n\
        \x20           c.close()\n\
        \x20           made += 1\n\
        \x20   except PermissionError as e:\n\
        \x20       return {'made': made, 'error': str(e)}\n\
        \x20   return {'made': made}");
    let result = assert_ok(&r);
    assert_eq!(result["made"], 30, "{r}");
    assert!(
        result["error"].as_str().unwrap().contains("request limit"),
        "{r}"
    );
}

#[test]
fn the_same_code_is_refused_without_http_allow() {
    let (f, _) = ready();
    let plain = common::shared();
    plain.wait_for_python_data(Duration::from_secs(600));
    for (client, path) in [
        ("requests.get(url, timeout=5)", "/unallowed-requests"),
        ("httpx.get(url, timeout=5)", "/unallowed-httpx"),
        (
            "urllib.request.urlopen(url, timeout=5)",
            "/unallowed-urllib",
        ),
    ] {
        let code = format!(
            "import requests, httpx, urllib.request\n\
             def main(echo):\n\
             \x20   url = f'http://127.0.0.2:{{echo}}{path}'\n\
             \x20   {client}\n\
             \x20   return {{}}"
        );
        let r = plain.python(&code, json!({"echo": f.allowed}));
        assert_denied(&r, "not allowed");
        assert!(
            !seen(path),
            "{client} reached the echo server without --http-allow"
        );
    }
}

#[test]
fn connections_reach_only_the_web_ports_unless_more_are_opened() {
    let (f, _) = ready();
    // Allowed destination, default ports (80 and 443): the echo server's port is refused.
    let web_only = common::start(&["--http-allow", "127.0.0.2/32"], &[]);
    let code = "import urllib.request\n\
        def main(echo):\n\
        \x20   urllib.request.urlopen(f'http://127.0.0.2:{echo}/port-refused', timeout=5)\n\
        \x20   return {}";
    let r = web_only.python(code, json!({"echo": f.allowed}));
    assert_denied(&r, &format!("port {}", f.allowed));
    assert!(!seen("/port-refused"), "a refused port was reached");
    // SystemHelper.httpRequest speaks HTTP itself and is not limited to them.
    let r = web_only.python(
        "def main(echo):\n    return {'status': SystemHelper.httpRequest(f'http://127.0.0.2:{echo}/over-http')['status']}",
        json!({"echo": f.allowed}),
    );
    assert_eq!(assert_ok(&r)["status"], 201);
}
