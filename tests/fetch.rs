//! JavaScript's `fetch`, over the same broker as SystemHelper.httpRequest, against the fixture
//! of [`common::echo`]: an echo server on 127.0.0.2 opened with `--http-allow 127.0.0.2/32`,
//! and a listener on 127.0.0.1 that must never receive a connection.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::echo::{assert_forbidden_untouched, fixture};

/// Runs `main({base, allowed, forbidden})`; `base` is the echo server's URL.
fn js(code: &str) -> Value {
    let f = fixture();
    f.server.javascript(
        code,
        json!({"base": format!("http://127.0.0.2:{}", f.allowed), "allowed": f.allowed,
            "forbidden": f.forbidden}),
    )
}

/// The run succeeded; its result.
fn result(r: &Value) -> &Value {
    assert_eq!(r["ok"], true, "{r}");
    &r["result"]
}

/// Whether the echo server got a request for `target`.
fn seen(target: &str) -> bool {
    fixture().seen.lock().unwrap().iter().any(|t| t == target)
}

#[test]
fn get_json_and_post_json_with_headers() {
    let r = js("async function main({base}) {\n\
        const got = await fetch(base + '/get?x=1', {headers: {'X-Token': 'abc'}});\n\
        const body = await got.json();\n\
        const posted = await fetch(new URL('/post', base), {method: 'POST',\n\
          headers: new Headers([['Content-Type', 'application/json'], ['X-Multi', 'a'], ['x-multi', 'b']]),\n\
          body: JSON.stringify({a: [1, 'é']})});\n\
        return {status: got.status, ok: got.ok, statusText: got.statusText, type: got.type,\n\
          url: got.url, redirected: got.redirected, used: got.bodyUsed,\n\
          contentType: got.headers.get('Content-Type'), echoHeader: got.headers.get('x-echo'),\n\
          body, posted: await posted.json()} }");
    let r = result(&r);
    assert_eq!(r["status"], 201);
    assert_eq!(r["ok"], true);
    assert_eq!(r["statusText"], "Created");
    assert_eq!(r["type"], "basic");
    assert_eq!(r["redirected"], false);
    assert_eq!(r["used"], true);
    assert_eq!(r["contentType"], "application/json");
    assert_eq!(r["echoHeader"], "yes");
    let url = r["url"].as_str().unwrap();
    assert!(
        url.starts_with("http://127.0.0.2:") && url.ends_with("/get?x=1"),
        "{r}"
    );
    assert_eq!(r["body"]["method"], "GET");
    assert_eq!(r["body"]["path"], "/get?x=1");
    assert_eq!(r["body"]["headers"]["x-token"], "abc");
    assert_eq!(r["body"]["headers"]["accept"], "*/*");
    let posted = &r["posted"];
    assert_eq!(posted["method"], "POST");
    assert_eq!(posted["path"], "/post");
    assert_eq!(posted["headers"]["content-type"], "application/json");
    assert_eq!(posted["headers"]["x-multi"], "a, b");
    let sent: Value = serde_json::from_str(posted["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent, json!({"a": [1, "é"]}));
}

/// A string is text/plain, URLSearchParams a form; an object is its string, as in fetch (not
/// JSON).
#[test]
fn bodies_get_fetchs_content_types() {
    let r = js("async function main({base}) {\n\
        const echo = async (body) => (await fetch(base + '/put', {method: 'PUT', body})).json();\n\
        const [text, form, object] = [await echo('héllo'), await echo(new URLSearchParams({q: 'a b', n: '1'})), await echo({a: 1})];\n\
        return {text, form, object} }");
    let r = result(&r);
    assert_eq!(r["text"]["body"], "héllo");
    assert_eq!(
        r["text"]["headers"]["content-type"],
        "text/plain;charset=UTF-8"
    );
    assert_eq!(r["form"]["body"], "q=a+b&n=1");
    assert_eq!(
        r["form"]["headers"]["content-type"],
        "application/x-www-form-urlencoded;charset=UTF-8"
    );
    assert_eq!(r["object"]["body"], "[object Object]");
}

/// Every byte value survives both ways: up as a typed array, an ArrayBuffer and a Blob, down
/// through arrayBuffer(), bytes() and blob(); text() decodes UTF-8.
#[test]
fn binary_bodies_both_ways() {
    let r = js("async function main({base}) {\n\
        const all = Uint8Array.from({length: 256}, (_, i) => i);\n\
        const up = async (body) => (await (await fetch(base + '/up', {method: 'POST', body})).json()).body_hex;\n\
        const down = await (await fetch(base + '/bytes')).arrayBuffer();\n\
        const bytes = await (await fetch(base + '/bytes')).bytes();\n\
        const blob = await (await fetch(base + '/bytes')).blob();\n\
        const text = await fetch(base + '/text');\n\
        return {typed: await up(all), buffer: await up(all.buffer), blob: await up(new Blob([all.subarray(0, 3), 'é'])),\n\
          down: [...new Uint8Array(down)], bytes: [...bytes], blobType: blob.type, blobSize: blob.size,\n\
          blobBytes: [...new Uint8Array(await blob.arrayBuffer())], text: await text.text()} }");
    let r = result(&r);
    let hex: String = (0..=255u8).map(|b| format!("{b:02x}")).collect();
    assert_eq!(r["typed"], hex);
    assert_eq!(r["buffer"], hex);
    assert_eq!(r["blob"], "000102c3a9");
    let all: Vec<u8> = (0..=255).collect();
    assert_eq!(r["down"], json!(all));
    assert_eq!(r["bytes"], json!(all));
    assert_eq!(r["blobType"], "application/octet-stream");
    assert_eq!(r["blobSize"], 256);
    assert_eq!(r["blobBytes"], json!(all));
    assert_eq!(r["text"], "plain text ✓");
}

#[test]
fn status_codes_are_answers_not_errors() {
    let r = js("async function main({base}) {\n\
        const res = await fetch(base + '/status/404');\n\
        const copy = res.clone();\n\
        const text = await res.text();\n\
        let again; try { await res.text() } catch (e) { again = e.name }\n\
        return {ok: res.ok, status: res.status, statusText: res.statusText, text, copy: await copy.text(), again} }");
    let r = result(&r);
    assert_eq!(r["ok"], false);
    assert_eq!(r["status"], 404);
    assert_eq!(r["statusText"], "Not Found");
    assert_eq!(r["text"], "status 404");
    assert_eq!(r["copy"], "status 404");
    assert_eq!(r["again"], "TypeError", "a body is read once");
}

#[test]
fn redirects_followed_by_hand_or_refused() {
    let r = js("async function main({base}) {\n\
        const followed = await fetch(base + '/redirect?to=/landed-follow');\n\
        const manual = await fetch(base + '/redirect?to=/landed-manual', {redirect: 'manual'});\n\
        let error; try { await fetch(base + '/redirect?to=/landed-error', {redirect: 'error'}) }\n\
          catch (e) { error = [e.name, e.message, e.cause.message] }\n\
        return {followed: [followed.status, followed.redirected, followed.url, (await followed.json()).path],\n\
          manual: [manual.status, manual.redirected, manual.url, manual.headers.get('location')], error} }");
    let r = result(&r);
    let base = format!("http://127.0.0.2:{}", fixture().allowed);
    assert_eq!(
        r["followed"],
        json!([201, true, format!("{base}/landed-follow"), "/landed-follow"])
    );
    assert_eq!(
        r["manual"],
        json!([
            302,
            false,
            format!("{base}/redirect?to=/landed-manual"),
            "/landed-manual"
        ])
    );
    assert!(!seen("/landed-manual"), "redirect: 'manual' followed");
    assert_eq!(
        r["error"],
        json!(["TypeError", "fetch failed", "unexpected redirect"])
    );
    assert!(!seen("/landed-error"), "redirect: 'error' followed");
}

/// To 127.0.0.1 directly or by a redirect: refused as Node refuses, `TypeError('fetch
/// failed')` with the reason as its cause, `network_denied` if uncaught, and the listener there
/// never sees a connection.
#[test]
fn loopback_refused_directly_and_after_a_redirect() {
    let p = fixture().forbidden;
    for url in [
        format!("http://127.0.0.1:{p}/"),
        format!("http://localhost:{p}/"),
        format!(
            "http://127.0.0.2:{}/redirect?to=http://127.0.0.1:{p}/",
            fixture().allowed
        ),
    ] {
        let r = js(&format!(
            "async function main() {{ try {{ await fetch({url:?}) }} catch (e) {{\n\
            return {{name: e.name, message: e.message, cause: e.cause.name, code: e.cause.code, why: e.cause.message}} }} }}"
        ));
        let r = result(&r);
        assert_eq!(r["name"], "TypeError", "{url}: {r}");
        assert_eq!(r["message"], "fetch failed", "{url}: {r}");
        assert_eq!(r["cause"], "NetworkDeniedError", "{url}: {r}");
        assert_eq!(r["code"], "NETWORK_DENIED", "{url}: {r}");
        assert!(
            r["why"].as_str().unwrap().contains("loopback"),
            "{url}: {r}"
        );

        let r = js(&format!(
            "async function main() {{ const r = await fetch({url:?}); return {{status: r.status}} }}"
        ));
        assert_eq!(r["error"]["kind"], "network_denied", "{url}: {r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("fetch failed") && message.contains("loopback"),
            "{r}"
        );
    }
    assert_forbidden_untouched();
}

/// With the run's network off, fetch fails at once, nothing reaches the echo server, and
/// uncaught it is `network_denied`; Dify's `enable_network` maps to the same.
#[test]
fn network_off_refuses_fetch() {
    let f = fixture();
    let token = common::random_token();
    let code = format!(
        "async function main() {{ const r = await fetch('http://127.0.0.2:{}/off-{token}'); return {{status: r.status}} }}",
        f.allowed
    );
    let started = Instant::now();
    let r = f
        .server
        .run(json!({"language": "javascript", "code": code, "network": false}));
    assert_eq!(r["error"]["kind"], "network_denied", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not allowed for this run"),
        "{r}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!seen(&format!("/off-{token}")));

    let script = |on: bool| {
        json!({"language": "nodejs", "enable_network": on, "code": format!(
            "fetch('http://127.0.0.2:{}/dify-{on}-{token}').then(r => console.log(r.status))",
            f.allowed)})
        .to_string()
    };
    let off = f.server.post("/v1/sandbox/run", &script(false), &[]);
    assert_eq!(off.body["data"]["stdout"], "", "{}", off.text);
    assert!(
        off.body["data"]["error"]
            .as_str()
            .unwrap()
            .contains("fetch failed"),
        "{}",
        off.text
    );
    assert!(!seen(&format!("/dify-false-{token}")));
    let on = f.server.post("/v1/sandbox/run", &script(true), &[]);
    assert_eq!(on.body["data"]["stdout"], "201\n", "{}", on.text);
    assert!(seen(&format!("/dify-true-{token}")));
}

/// FastGPT's routes have no fetch, as FastGPT 4.14.8 (whose suite checks); httpRequest serves.
#[test]
fn fastgpt_routes_keep_fetch_undefined() {
    let code = "async function main() { return {fetch: typeof fetch, response: typeof Response, http: typeof SystemHelper.httpRequest} }";
    let reply = fixture()
        .server
        .post("/sandbox/js", &json!({"code": code}).to_string(), &[]);
    assert_eq!(
        reply.body["data"]["codeReturn"],
        json!({"fetch": "undefined", "response": "function", "http": "function"}),
        "{}",
        reply.text
    );
}

/// fetch and SystemHelper.httpRequest share a run's 30 requests; the 31st is refused before it
/// leaves the server.
#[test]
fn fetch_counts_against_the_request_limit() {
    let token = common::random_token();
    let r = js(&format!("async function main({{base}}) {{ let n = 0, last;\n\
        for (let i = 0; i < 31; i++) {{ const url = `${{base}}/count-{token}-${{i}}`;\n\
          try {{ if (i % 2) await SystemHelper.httpRequest(url); else await (await fetch(url)).text(); n++ }}\n\
          catch (e) {{ last = [e.message, e.cause?.code, e.cause?.message] }} }}\n\
        return {{n, last}} }}"));
    let r = result(&r);
    assert_eq!(r["n"], 30, "{r}");
    assert_eq!(r["last"][0], "fetch failed", "{r}");
    assert_eq!(r["last"][1], "NETWORK_DENIED", "{r}");
    assert!(r["last"][2].as_str().unwrap().contains("limit"), "{r}");
    assert!(seen(&format!("/count-{token}-29")));
    assert!(!seen(&format!("/count-{token}-30")));
}

/// AbortSignal.timeout bounds the request (the broker gets what is left); an aborted signal
/// stops it before it is sent; an oversized response is refused.
#[test]
fn timeouts_aborts_and_oversized_responses() {
    let token = common::random_token();
    let started = Instant::now();
    let r = js(&format!("async function main({{base}}) {{\n\
        let timeout, aborted, big;\n\
        try {{ await fetch(base + '/slow', {{signal: AbortSignal.timeout(500)}}) }} catch (e) {{ timeout = [e.name, e.message] }}\n\
        const controller = new AbortController();\n\
        const pending = fetch(base + '/aborted-{token}', {{signal: controller.signal}});\n\
        controller.abort();\n\
        try {{ await pending }} catch (e) {{ aborted = e.name }}\n\
        try {{ await fetch(base + '/big') }} catch (e) {{ big = [e.message, e.cause.code, e.cause.message] }}\n\
        return {{timeout, aborted, big}} }}"));
    let r = result(&r);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r["timeout"][0], "TimeoutError", "{r}");
    assert_eq!(r["aborted"], "AbortError", "{r}");
    assert!(!seen(&format!("/aborted-{token}")));
    assert_eq!(r["big"][0], "fetch failed", "{r}");
    assert_eq!(r["big"][1], "NETWORK_DENIED", "{r}");
    assert!(r["big"][2].as_str().unwrap().contains("too large"), "{r}");
}

/// The classes alone, as Node's behave (no request made).
#[test]
fn headers_request_and_response_classes() {
    let r = js("async function main() {\n\
        const h = new Headers({'X-A': '1'}); h.append('x-a', '2'); h.append('Set-Cookie', 'a=1');\n\
        h.append('set-cookie', 'b=2'); h.set('B', 'z'); h.delete('nothing');\n\
        const seen = []; h.forEach((v, k) => seen.push(k + '=' + v));\n\
        const res = new Response('{\"a\":1}', {status: 202, statusText: 'Yes', headers: {'X-R': 'r'}});\n\
        const json = Response.json({b: 2});\n\
        const req = new Request('http://example.com/p', {method: 'post', body: 'x'});\n\
        const errors = [];\n\
        for (const f of [() => new Request('/relative'), () => new Request('http://e.com', {method: 'GET', body: 'x'}),\n\
          () => new Response('x', {status: 99}), () => new Headers({'bad name': 'v'})]) {\n\
          try { f(); errors.push(null) } catch (e) { errors.push(e.name) } }\n\
        return {entries: [...h.entries()], get: h.get('X-A'), has: h.has('SET-COOKIE'), cookies: h.getSetCookie(), seen,\n\
          res: [res.status, res.ok, res.statusText, res.headers.get('content-type'), res.type, res.url, await res.json(), res.bodyUsed],\n\
          json: [json.headers.get('content-type'), await json.text()],\n\
          req: [req.method, req.url, req.headers.get('content-type'), await req.text(), req.redirect, req.signal.aborted],\n\
          errors, tags: [String(h), String(res), String(req)]} }");
    let r = result(&r);
    assert_eq!(
        r["entries"],
        json!([
            ["b", "z"],
            ["set-cookie", "a=1"],
            ["set-cookie", "b=2"],
            ["x-a", "1, 2"]
        ])
    );
    assert_eq!(r["get"], "1, 2");
    assert_eq!(r["has"], true);
    assert_eq!(r["cookies"], json!(["a=1", "b=2"]));
    assert_eq!(
        r["seen"],
        json!(["b=z", "set-cookie=a=1", "set-cookie=b=2", "x-a=1, 2"])
    );
    assert_eq!(
        r["res"],
        json!([202, true, "Yes", "text/plain;charset=UTF-8", "default", "", {"a": 1}, true])
    );
    assert_eq!(r["json"], json!(["application/json", "{\"b\":2}"]));
    assert_eq!(
        r["req"],
        json!([
            "POST",
            "http://example.com/p",
            "text/plain;charset=UTF-8",
            "x",
            "follow",
            false
        ])
    );
    assert_eq!(
        r["errors"],
        json!(["TypeError", "TypeError", "RangeError", "TypeError"])
    );
    assert_eq!(
        r["tags"],
        json!(["[object Headers]", "[object Response]", "[object Request]"])
    );
}

#[test]
fn a_header_named_like_an_object_property_is_sent_as_it_is() {
    let r = js("async function main({base}) {\n\
        const res = await fetch(base + '/proto-headers', {headers: {'constructor': 'c1', 'toString': 't1'}});\n\
        return (await res.json()).headers }");
    let headers = result(&r);
    assert_eq!(headers["constructor"], "c1", "{r}");
    assert_eq!(headers["tostring"], "t1", "{r}");
}
