//! SystemHelper.httpRequest, brokered by the server. Two local HTTP servers
//! ([`common::echo`]): one on 127.0.0.2, opened with `--http-allow 127.0.0.2/32`, that echoes
//! what it gets; one on 127.0.0.1 that must never receive a connection, whatever spelling,
//! redirect or name user code tries.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::echo::{assert_forbidden_untouched, fixture};

fn py(code: &str) -> Value {
    fixture().server.python(
        code,
        json!({"allowed": fixture().allowed, "forbidden": fixture().forbidden}),
    )
}

fn js(code: &str) -> Value {
    fixture().server.javascript(
        code,
        json!({"allowed": fixture().allowed, "forbidden": fixture().forbidden}),
    )
}

/// `r[section][field]` is a string that says `needle`.
fn assert_says(r: &Value, section: &str, field: &str, needle: &str) {
    let text = r[section][field].as_str().unwrap_or_default();
    assert!(
        text.contains(needle),
        "{section}.{field} should say {needle:?}: {r}"
    );
}

#[test]
fn get_and_post_with_headers_and_json_in_python() {
    let r = py("def main(allowed, forbidden):\n    base = f'http://127.0.0.2:{allowed}'\n\
        \x20   got = SystemHelper.httpRequest(base + '/get?x=1', headers={'X-Token': 'abc'})\n\
        \x20   posted = SystemHelper.httpRequest(base + '/post', method='POST', body={'a': [1, 'é']})\n\
        \x20   text = SystemHelper.httpRequest(base + '/text')\n\
        \x20   return {'got': got, 'posted': posted, 'text': text['data']}");
    assert_eq!(r["ok"], true, "{r}");
    let got = &r["result"]["got"];
    assert_eq!(got["status"], 201);
    assert_eq!(got["headers"]["x-echo"], "yes");
    assert_eq!(got["data"]["method"], "GET");
    assert_eq!(got["data"]["path"], "/get?x=1");
    assert_eq!(got["data"]["headers"]["x-token"], "abc");
    let posted = &r["result"]["posted"]["data"];
    assert_eq!(posted["method"], "POST");
    assert_eq!(posted["headers"]["content-type"], "application/json");
    assert_eq!(
        serde_json::from_str::<Value>(posted["body"].as_str().unwrap()).unwrap(),
        json!({"a": [1, "é"]})
    );
    assert_eq!(r["result"]["text"], "plain text ✓");
}

#[test]
fn get_and_post_with_headers_and_json_in_javascript() {
    let r = js("async function main({allowed}) { const base = `http://127.0.0.2:${allowed}`;\n\
        const got = await SystemHelper.httpRequest(base + '/get', {headers: {'X-Token': 'xyz'}, timeout: 10});\n\
        const posted = await SystemHelper.httpRequest(base + '/post', {method: 'POST', body: {n: 42}});\n\
        const raw = await SystemHelper.httpRequest(base + '/put', {method: 'PUT', body: 'raw text', headers: {'content-type': 'text/plain'}});\n\
        return {got, posted: posted.data, raw: raw.data} }");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["got"]["status"], 201);
    assert_eq!(r["result"]["got"]["data"]["headers"]["x-token"], "xyz");
    assert_eq!(r["result"]["posted"]["body"], "{\"n\":42}");
    assert_eq!(
        r["result"]["posted"]["headers"]["content-type"],
        "application/json"
    );
    assert_eq!(r["result"]["raw"]["method"], "PUT");
    assert_eq!(r["result"]["raw"]["body"], "raw text");
    assert_eq!(r["result"]["raw"]["headers"]["content-type"], "text/plain");
}

/// Every way to 127.0.0.1 (and other internal places) is refused, and the listener there never
/// sees a connection.
#[test]
fn loopback_private_and_metadata_destinations_are_refused() {
    let f = fixture();
    let p = f.forbidden;
    let urls = [
        format!("http://127.0.0.1:{p}/"),
        format!("http://localhost:{p}/"),
        format!("http://localhost.:{p}/"),
        format!("http://2130706433:{p}/"),
        format!("http://0x7f000001:{p}/"),
        format!("http://0x7f.1:{p}/"),
        format!("http://0177.0.0.1:{p}/"),
        format!("http://127.1:{p}/"),
        format!("http://017700000001:{p}/"),
        format!("http://[::1]:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        format!("http://[::ffff:7f00:1]:{p}/"),
        format!("http://0.0.0.0:{p}/"),
        format!("http://0:{p}/"),
        format!("http://user@127.0.0.1:{p}/"),
        format!(
            "http://127.0.0.2:{}/redirect?to=http://127.0.0.1:{p}/",
            f.allowed
        ),
        format!(
            "http://127.0.0.2:{}/redirect?to=http://localhost:{p}/",
            f.allowed
        ),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://192.168.1.1/".to_owned(),
        "http://172.16.0.1/".to_owned(),
        "http://100.64.0.1/".to_owned(),
        "http://[fd00::1]/".to_owned(),
        "http://[fe80::1]/".to_owned(),
        "file:///etc/passwd".to_owned(),
        format!("gopher://127.0.0.1:{p}/"),
        format!("ftp://127.0.0.1:{p}/"),
    ];
    for url in &urls {
        for language in ["python", "javascript"] {
            let r = if language == "python" {
                py(&format!(
                    "def main(allowed, forbidden):\n    return SystemHelper.httpRequest({url:?})"
                ))
            } else {
                js(&format!(
                    "async function main() {{ return await SystemHelper.httpRequest({url:?}) }}"
                ))
            };
            assert_eq!(
                r["error"]["kind"], "network_denied",
                "{language} {url}: {r}"
            );
        }
    }
    let r = py("def main(allowed, forbidden):\n    try:\n        SystemHelper.httpRequest('gopher://x/')\n    except SystemHelper.NetworkDeniedError as e:\n        return {'message': str(e)}");
    assert_says(&r, "result", "message", "protocol");
    let r = js(&format!("async function main() {{ try {{ await SystemHelper.httpRequest('http://10.1.1.1:{p}/') }} catch (e) {{ return {{message: e.message, code: e.code}} }} }}"));
    assert_says(&r, "result", "message", "private");
    assert_eq!(r["result"]["code"], "NETWORK_DENIED");
    assert_forbidden_untouched();
}

#[test]
fn at_most_thirty_requests_a_run() {
    let r = py("def main(allowed, forbidden):\n    n = 0\n    for i in range(31):\n        try:\n\
        \x20           SystemHelper.httpRequest('http://10.0.0.1/' if i % 2 else f'http://127.0.0.2:{allowed}/')\n\
        \x20           n += 1\n        except SystemHelper.NetworkDeniedError as e:\n            last = str(e)\n\
        \x20   return {'ok': n, 'last': last}");
    assert_eq!(r["result"]["ok"], 15, "refused calls count too: {r}");
    assert_says(&r, "result", "last", "limit");
}

#[test]
fn oversized_bodies_and_slow_servers_fail_clearly() {
    let r = js("async function main({allowed}) { return await SystemHelper.httpRequest(`http://127.0.0.2:${allowed}/big`) }");
    assert_eq!(r["error"]["kind"], "network_denied", "{r}");
    assert_says(&r, "error", "message", "too large");

    let r = py("def main(allowed, forbidden):\n    return SystemHelper.httpRequest(f'http://127.0.0.2:{allowed}/post', method='POST', body='x' * (5 * 1024 * 1024 + 1))");
    assert_says(&r, "error", "message", "too large");

    let r = js("async function main({allowed}) { return await SystemHelper.httpRequest(`http://127.0.0.2:${allowed}/post`, {method: 'POST', body: 'y'.repeat(12 * 1024 * 1024)}) }");
    assert_eq!(r["error"]["kind"], "network_denied", "{r}");
    assert_says(&r, "error", "message", "too large");

    let started = Instant::now();
    let r = js("async function main({allowed}) { try { await SystemHelper.httpRequest(`http://127.0.0.2:${allowed}/slow`, {timeout: 1}) } catch (e) { return {message: e.message, code: e.code ?? null} } }");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_says(&r, "result", "message", "timed out");
    assert_eq!(
        r["result"]["code"],
        Value::Null,
        "a timeout is a failure, not a refusal"
    );
}

#[test]
fn network_off_refuses_every_call() {
    let f = fixture();
    let code = format!(
        "def main():\n    return SystemHelper.httpRequest('http://127.0.0.2:{}/')",
        f.allowed
    );
    let r = f
        .server
        .run(json!({"language": "python", "code": code, "network": false}));
    assert_eq!(r["error"]["kind"], "network_denied", "{r}");

    let off = common::start(&["--http-allow", "127.0.0.2/32", "--network", "false"], &[]);
    let r = off.python(&code, json!({}));
    assert_eq!(r["error"]["kind"], "network_denied", "{r}");
    assert_says(&r, "error", "message", "turned off");

    // Dify's enable_network: false maps to the same refusal.
    let reply = f.server.post(
        "/v1/sandbox/run",
        &json!({"language": "python3", "code": format!("print(SystemHelper.httpRequest('http://127.0.0.2:{}/')['status'])", f.allowed), "enable_network": false}).to_string(),
        &[],
    );
    assert!(
        reply.body["data"]["error"]
            .as_str()
            .unwrap()
            .contains("NetworkDeniedError"),
        "{}",
        reply.text
    );
    let reply = f.server.post(
        "/v1/sandbox/run",
        &json!({"language": "python3", "code": format!("print(SystemHelper.httpRequest('http://127.0.0.2:{}/')['status'])", f.allowed), "enable_network": true}).to_string(),
        &[],
    );
    assert_eq!(reply.body["data"]["stdout"], "201\n", "{}", reply.text);
}

#[test]
fn fastgpt_routes_have_both_spellings() {
    let f = fixture();
    let code = format!("async function main() {{ const a = await SystemHelper.httpRequest('http://127.0.0.2:{0}/a'); const b = await httpRequest('http://127.0.0.2:{0}/b'); return [a.data.path, b.data.path] }}", f.allowed);
    let reply = f
        .server
        .post("/sandbox/js", &json!({"code": code}).to_string(), &[]);
    assert_eq!(
        reply.body["data"]["codeReturn"],
        json!(["/a", "/b"]),
        "{}",
        reply.text
    );
    assert_forbidden_untouched();
}

/// Credentials go to the origin they were written for: a redirect to another port keeps
/// `X-Other` but drops `Authorization` and `Cookie`; a redirect within the origin keeps them.
#[test]
fn credentials_do_not_follow_a_redirect_to_another_origin() {
    let (other, _) = common::echo::echo_server("127.0.0.2");
    let r = fixture().server.python(
        "def main(allowed, other):\n\
        \x20   base = f'http://127.0.0.2:{allowed}'\n\
        \x20   h = {'Authorization': 'Bearer s3cret', 'Cookie': 'id=1', 'X-Other': 'kept'}\n\
        \x20   away = SystemHelper.httpRequest(f'{base}/redirect?to=http://127.0.0.2:{other}/landed', headers=h)\n\
        \x20   home = SystemHelper.httpRequest(f'{base}/redirect?to=/landed', headers=h)\n\
        \x20   return {'away': away['data'], 'home': home['data']}",
        json!({"allowed": fixture().allowed, "other": other}),
    );
    assert_eq!(r["ok"], true, "{r}");
    let away = &r["result"]["away"];
    assert_eq!(away["path"], "/landed", "{r}");
    assert_eq!(away["headers"]["x-other"], "kept", "{r}");
    assert_eq!(away["headers"]["authorization"], Value::Null, "{r}");
    assert_eq!(away["headers"]["cookie"], Value::Null, "{r}");
    let home = &r["result"]["home"];
    assert_eq!(home["headers"]["authorization"], "Bearer s3cret", "{r}");
    assert_eq!(home["headers"]["cookie"], "id=1", "{r}");
}

/// A CONNECT proxy (as ureq speaks to every HTTP proxy) that counts its connections, keeps
/// the request lines it got, and tunnels to the destination.
fn proxy_listener(host: &str) -> (u16, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind(format!("{host}:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (counted, kept) = (hits.clone(), lines.clone());
    std::thread::spawn(move || {
        for mut client in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(client.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let mut header = String::new();
            while reader.read_line(&mut header).unwrap_or(0) > 2 {
                header.clear();
            }
            kept.lock().unwrap().push(line.trim_end().to_owned());
            let Some(target) = line
                .strip_prefix("CONNECT ")
                .and_then(|l| l.split(' ').next())
            else {
                continue;
            };
            let Ok(upstream) = TcpStream::connect(target) else {
                continue;
            };
            let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
            let (mut up_read, mut up_write) = (upstream.try_clone().unwrap(), upstream);
            let mut client_write = client.try_clone().unwrap();
            std::thread::spawn(move || std::io::copy(&mut reader, &mut up_write));
            std::thread::spawn(move || std::io::copy(&mut up_read, &mut client_write));
        }
    });
    (port, hits, lines)
}

/// The proxy variables of the server's environment (Dify's compose sets them) are not used:
/// the broker connects to the address it checked. `--http-proxy` sends requests through the
/// proxy named on purpose.
#[test]
fn proxies_are_used_only_when_configured() {
    let (ambient, ambient_hits, _) = proxy_listener("127.0.0.1");
    let ambient_url = format!("http://127.0.0.1:{ambient}");
    let server = common::start(
        &["--http-allow", "127.0.0.2/32"],
        &[
            ("HTTP_PROXY", &ambient_url),
            ("HTTPS_PROXY", &ambient_url),
            ("ALL_PROXY", &ambient_url),
            ("http_proxy", &ambient_url),
        ],
    );
    let code = "def main(allowed):\n    return SystemHelper.httpRequest(f'http://127.0.0.2:{allowed}/direct')\n";
    let r = server.python(code, json!({"allowed": fixture().allowed}));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["data"]["path"], "/direct", "{r}");
    assert_eq!(
        ambient_hits.load(Ordering::SeqCst),
        0,
        "the ambient proxy was used"
    );

    let (chosen, chosen_hits, chosen_lines) = proxy_listener("127.0.0.2");
    let server = common::start(
        &[
            "--http-allow",
            "127.0.0.2/32",
            "--http-proxy",
            &format!("http://127.0.0.2:{chosen}"),
        ],
        &[],
    );
    let r = server.python(code, json!({"allowed": fixture().allowed}));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["data"]["path"], "/direct", "{r}");
    assert_eq!(
        *chosen_lines.lock().unwrap(),
        [format!("CONNECT 127.0.0.2:{} HTTP/1.1", fixture().allowed)]
    );
    assert_eq!(chosen_hits.load(Ordering::SeqCst), 1);
    // The destination is still checked before the proxy is asked.
    let r = server.python(
        "def main():\n    return SystemHelper.httpRequest('http://169.254.169.254/')\n",
        json!({}),
    );
    assert_eq!(r["error"]["kind"], "network_denied", "{r}");
    assert_eq!(chosen_hits.load(Ordering::SeqCst), 1);
}
