//! JavaScript as code-node users write it: the whitelisted npm modules, the Node-like globals,
//! script mode, ES module imports, and Dify's nodejs template. Every value asserted is computed
//! by the module or global under test inside a real QuickJS child.

mod common;

use serde_json::{json, Value};

fn js(code: &str, inputs: Value) -> Value {
    let r = common::shared().javascript(code, inputs);
    assert_eq!(r["ok"], true, "{code}\n{r}");
    r["result"].clone()
}

fn script(code: &str) -> Value {
    common::shared().run(json!({"language": "javascript", "code": code, "mode": "script"}))
}

// ---- the npm modules ----

#[test]
fn lodash_basics() {
    let r = js(
        "const _ = require('lodash');\nfunction main({xs}) { return {chunk: _.chunk(xs, 2), \
         sum: _.sum(xs), uniq: _.uniq([1, 1, 2]), group: _.groupBy(['one', 'two', 'three'], 'length'), \
         deep: _.get({a: {b: [5, 6]}}, 'a.b[1]'), camel: _.camelCase('Foo Bar'), version: _.VERSION} }",
        json!({"xs": [1, 2, 3, 4, 5]}),
    );
    assert_eq!(r["chunk"], json!([[1, 2], [3, 4], [5]]));
    assert_eq!(r["sum"], 15);
    assert_eq!(r["uniq"], json!([1, 2]));
    assert_eq!(r["group"], json!({"3": ["one", "two"], "5": ["three"]}));
    assert_eq!(r["deep"], 6);
    assert_eq!(r["camel"], "fooBar");
    assert!(r["version"].as_str().unwrap().starts_with('4'), "{r}");
}

#[test]
fn moment_and_dayjs_basics() {
    let r = js(
        "const moment = require('moment'); const dayjs = require('dayjs');\n\
         function main() { return {m: moment('2024-02-28').add(1, 'days').format('YYYY-MM-DD'), \
         mdiff: moment('2024-03-01').diff(moment('2024-02-01'), 'days'), \
         d: dayjs('2024-12-31').add(1, 'day').format('YYYY-MM-DD'), dv: dayjs('2024-01-01').day(), \
         valid: dayjs('not a date').isValid()} }",
        json!({}),
    );
    assert_eq!(
        r,
        json!({"m": "2024-02-29", "mdiff": 29, "d": "2025-01-01", "dv": 1, "valid": false})
    );
}

#[test]
fn crypto_js_basics() {
    let r = js(
        "const CryptoJS = require('crypto-js');\nfunction main({text, key}) { \
         const encrypted = CryptoJS.AES.encrypt(text, key).toString(); \
         return {md5: CryptoJS.MD5('hello').toString(), sha256: CryptoJS.SHA256('abc').toString(), \
         hmac: CryptoJS.HmacSHA256('data', 'key').toString(), \
         b64: CryptoJS.enc.Base64.stringify(CryptoJS.enc.Utf8.parse('hi')), \
         roundtrip: CryptoJS.AES.decrypt(encrypted, key).toString(CryptoJS.enc.Utf8), \
         differs: encrypted !== CryptoJS.AES.encrypt(text, key).toString()} }",
        json!({"text": "secret message", "key": "k"}),
    );
    assert_eq!(r["md5"], "5d41402abc4b2a76b9719d911017c592");
    assert_eq!(
        r["sha256"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        r["hmac"],
        "5031fe3d989c6d1537a013fa6e739da23463fdaec3b70137d828e36ace221bd0"
    );
    assert_eq!(r["b64"], "aGk=");
    assert_eq!(r["roundtrip"], "secret message");
    assert_eq!(
        r["differs"], true,
        "AES salts must come from a real random source"
    );
}

#[test]
fn uuid_qs_url_and_querystring_basics() {
    let r = js(
        "const { v4, v5, validate, version } = require('uuid'); const qs = require('qs');\n\
         const url = require('url'); const querystring = require('querystring');\n\
         function main() { const id = v4(); return {v4: validate(id) && version(id), \
         v5: v5('hello', v5.DNS), two: v4() !== v4(), \
         qs: qs.stringify({a: {b: 1}, c: [1, 2]}, {encode: false}), \
         parsed: qs.parse('a[b]=1&c=2'), \
         path: url.parse('https://u:p@x.org:8080/p/a?q=1#h').pathname, \
         port: url.parse('https://x.org:8080/').port, \
         resolved: url.resolve('http://a.com/b/c', '../d'), \
         q: querystring.stringify({x: 'a b', y: [1, 2]}), \
         qp: querystring.parse('x=1&x=2&y=%20')} }",
        json!({}),
    );
    assert_eq!(r["v4"], 4);
    // Python: uuid.uuid5(uuid.NAMESPACE_DNS, "hello")
    assert_eq!(r["v5"], "9342d47a-1bab-5709-9869-c840b2eac501");
    assert_eq!(r["two"], true);
    assert_eq!(r["qs"], "a[b]=1&c[0]=1&c[1]=2");
    assert_eq!(r["parsed"], json!({"a": {"b": "1"}, "c": "2"}));
    assert_eq!(r["path"], "/p/a");
    assert_eq!(r["port"], "8080");
    assert_eq!(r["resolved"], "http://a.com/d");
    assert_eq!(r["q"], "x=a%20b&y=1&y=2");
    assert_eq!(r["qp"], json!({"x": ["1", "2"], "y": " "}));
}

#[test]
fn node_prefixed_names_and_refusals() {
    let r = js(
        "function main() { return {same: require('node:querystring') === require('querystring')} }",
        json!({}),
    );
    assert_eq!(r["same"], true);
    // (`fs` is the run's own files on this API: tests/files.rs.)
    for name in ["child_process", "os", "net", "./lodash", "lodash/fp"] {
        let code = format!("function main() {{ require({name:?}); return {{}} }}");
        let r = common::shared().javascript(&code, json!({}));
        assert_eq!(r["error"]["kind"], "module_not_allowed", "{name}: {r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("Module '{name}' is not allowed in sandbox")),
            "{r}"
        );
        assert!(message.contains("lodash"), "the allowed list is named: {r}");
    }
}

// ---- the globals ----

#[test]
fn buffer_covers_the_encodings_and_helpers_code_nodes_use() {
    let r = js(
        "function main() { const b = Buffer.from('héllo wörld', 'utf8'); return { \
         b64: b.toString('base64'), back: Buffer.from(b.toString('base64'), 'base64').toString('utf-8'), \
         hex: Buffer.from('hi').toString('hex'), fromHex: Buffer.from('6869', 'hex').toString(), \
         latin1: Buffer.from([0xe9, 0x41]).toString('latin1'), \
         len: Buffer.byteLength('héllo'), concat: Buffer.concat([Buffer.from('a'), Buffer.from('b')]).toString(), \
         is: Buffer.isBuffer(b) && !Buffer.isBuffer('x'), slice: b.slice(0, 5).toString(), \
         index: b[0], json: JSON.stringify(Buffer.from('ab'))} }",
        json!({}),
    );
    assert_eq!(r["b64"], "aMOpbGxvIHfDtnJsZA==");
    assert_eq!(r["back"], "héllo wörld");
    assert_eq!(r["hex"], "6869");
    assert_eq!(r["fromHex"], "hi");
    assert_eq!(r["latin1"], "éA");
    assert_eq!(r["len"], 6);
    assert_eq!(r["concat"], "ab");
    assert_eq!(r["is"], true);
    assert_eq!(r["slice"], "héll");
    assert_eq!(r["index"], 104);
    assert_eq!(r["json"], "{\"type\":\"Buffer\",\"data\":[97,98]}");
}

#[test]
fn text_encoding_url_base64_and_structured_clone() {
    let r = js(
        "function main() { const u = new URL('https://user@example.com:8443/a/b?x=1&y=two#frag'); \
         u.searchParams.append('z', 'a b'); const p = new URLSearchParams('a=1&a=2&b=3'); \
         const original = {d: new Date(0), m: new Map([[1, 'one']]), nested: [1, {x: 2}]}; \
         const copy = structuredClone(original); return { \
         enc: Array.from(new TextEncoder().encode('é€')), \
         dec: new TextDecoder().decode(new Uint8Array([0xe2, 0x82, 0xac, 0x21])), \
         host: u.host, path: u.pathname, y: u.searchParams.get('y'), href: u.href, \
         all: p.getAll('a'), ps: p.toString(), btoa: btoa('hi'), atob: atob('aGk='), \
         cloned: copy !== original && copy.nested[1] !== original.nested[1] && copy.nested[1].x === 2 \
           && copy.m.get(1) === 'one' && copy.d.getTime() === 0} }",
        json!({}),
    );
    assert_eq!(r["enc"], json!([195, 169, 226, 130, 172]));
    assert_eq!(r["dec"], "€!");
    assert_eq!(r["host"], "example.com:8443");
    assert_eq!(r["path"], "/a/b");
    assert_eq!(r["y"], "two");
    assert_eq!(
        r["href"],
        "https://user@example.com:8443/a/b?x=1&y=two&z=a+b#frag"
    );
    assert_eq!(r["all"], json!(["1", "2"]));
    assert_eq!(r["ps"], "a=1&a=2&b=3");
    assert_eq!(r["btoa"], "aGk=");
    assert_eq!(r["atob"], "hi");
    assert_eq!(r["cloned"], true);
}

#[test]
fn timers_run_in_order_and_take_real_time() {
    let code = "async function main() { const log = []; const t0 = Date.now(); \
        setTimeout(() => log.push('t30'), 30); setTimeout(() => log.push('t10'), 10); \
        const cancelled = setTimeout(() => log.push('never'), 5); clearTimeout(cancelled); \
        setImmediate(() => log.push('immediate')); queueMicrotask(() => log.push('micro')); \
        let n = 0; await new Promise(done => { const i = setInterval(() => { n++; \
        if (n === 3) { clearInterval(i); done() } }, 15) }); \
        await new Promise(r => setTimeout(r, 20)); \
        return {log, n, waited: Date.now() - t0 >= 45} }";
    let r = js(code, json!({}));
    assert_eq!(r["log"], json!(["micro", "immediate", "t10", "t30"]), "{r}");
    assert_eq!(r["n"], 3);
    assert_eq!(r["waited"], true);
}

#[test]
fn a_timer_past_the_deadline_is_a_timeout() {
    let r = common::shared().run(json!({"language": "javascript",
        "code": "async function main() { await new Promise(r => setTimeout(r, 60000)); return {} }",
        "limits": {"timeout_ms": 500}}));
    assert_eq!(r["error"]["kind"], "timeout", "{r}");
    assert_eq!(r["exit_code"], 124);
}

#[test]
fn crypto_randomness_comes_fresh_in_every_run() {
    let code = "function main() { const a = new Uint32Array(4); crypto.getRandomValues(a); \
        return {values: Array.from(a), uuid: crypto.randomUUID(), r: Math.random()} }";
    let first = js(code, json!({}));
    let second = js(code, json!({}));
    let uuid = first["uuid"].as_str().unwrap();
    assert_eq!(uuid.len(), 36);
    assert_eq!(&uuid[14..15], "4");
    assert_ne!(first["values"], second["values"]);
    assert_ne!(first["uuid"], second["uuid"]);
    assert_ne!(
        first["r"], second["r"],
        "Math.random must not repeat across runs"
    );
}

#[test]
fn process_is_minimal_and_frozen() {
    let r = js(
        "function main() { let threw = false; try { 'use strict'; process.env.X = 1; \
         process.env = {a: 1} } catch (e) { threw = true } \
         return {env: process.env, platform: process.platform, frozen: Object.isFrozen(process), \
         version: typeof process.version, keys: Object.keys(process.env).length} }",
        json!({}),
    );
    // Only where the run's output directory is (docs/api.md, "Files").
    assert_eq!(r["env"], json!({"SANDLOT_OUTPUT_DIR": "/sandbox/output"}));
    assert_eq!(r["platform"], "linux");
    assert_eq!(r["frozen"], true);
    assert_eq!(r["version"], "string");
    assert_eq!(r["keys"], 1);
}

#[test]
fn console_prints_like_node_code_nodes() {
    let r = common::shared().javascript(
        "function main() { console.log('a', 1, {b: [1, 2]}, [3], null, true); \
         console.info('info'); console.warn('warn'); console.error(new Error('bad').message); \
         return {} }",
        json!({}),
    );
    assert_eq!(r["stdout"], "a 1 {\"b\":[1,2]} [3] null true\ninfo\n");
    assert_eq!(r["stderr"], "warn\nbad\n");
}

// ---- script mode ----

#[test]
fn script_mode_exit_codes() {
    let r = script("console.log('before'); process.exit(3); console.log('after')");
    assert_eq!(r["exit_code"], 3, "{r}");
    assert_eq!(r["stdout"], "before\n");
    assert_eq!(r["error"], Value::Null);

    let r = script(
        "setTimeout(() => { console.log('late'); process.exit(0) }, 10); console.log('now')",
    );
    assert_eq!(r["exit_code"], 0, "{r}");
    assert_eq!(r["stdout"], "now\nlate\n");

    let r = script("const x = 1;\nnull.boom");
    assert_eq!(r["exit_code"], 1, "{r}");
    let stderr = r["stderr"].as_str().unwrap();
    assert!(stderr.contains("TypeError"), "{r}");
    assert!(
        stderr.contains("<code>:2"),
        "the stack names the user's line: {r}"
    );

    let r = script("async function f() { throw new Error('rejected') }\nf()");
    assert_eq!(r["exit_code"], 1, "{r}");
    assert!(
        r["stderr"].as_str().unwrap().contains("Error: rejected"),
        "{r}"
    );

    let r = script("Promise.reject(new Error('x')).catch(() => console.log('caught'))");
    assert_eq!(r["exit_code"], 0, "a handled rejection is fine: {r}");
    assert_eq!(r["stdout"], "caught\n");
}

// ---- ES module syntax ----

#[test]
fn import_statements_work_for_whitelisted_modules() {
    let r = js(
        "import _ from 'lodash';\nimport dayjs from 'dayjs';\nimport { v4 as uuidv4 } from 'uuid';\n\
         import * as qs from 'qs';\nimport { chunk } from 'lodash';\n\
         export async function main({xs}) { return {sum: _.sum(xs), chunk: chunk(xs, 2), \
         year: dayjs('2021-06-01').year(), uuid: uuidv4().length, qs: qs.stringify({a: 1})} }",
        json!({"xs": [1, 2, 3]}),
    );
    assert_eq!(
        r,
        json!({"sum": 6, "chunk": [[1, 2], [3]], "year": 2021, "uuid": 36, "qs": "a=1"})
    );
    // A plain `function main` in module code is found too.
    let r = js(
        "import _ from 'lodash'\nfunction main() { return {n: _.max([3, 9, 4])} }",
        json!({}),
    );
    assert_eq!(r["n"], 9);
}

#[test]
fn importing_anything_else_is_module_not_allowed() {
    for code in [
        "import net from 'net';\nexport function main() { return {} }",
        "async function main() { await import('child_process'); return {} }",
        "async function main() { await import('/etc/passwd'); return {} }",
        "import { spawn } from 'node:child_process';\nfunction main() { return {} }",
    ] {
        let r = common::shared().javascript(code, json!({}));
        assert_eq!(r["error"]["kind"], "module_not_allowed", "{code}: {r}");
    }
}

// ---- Dify's nodejs template ----

#[test]
fn difys_nodejs_template_shape() {
    // What Dify sends: the user's code, then its inputs as base64 JSON decoded with Buffer, a
    // synchronous main(), and the result printed between markers. Sloppy mode (`result` is
    // never declared).
    let inputs = json!({"arg1": "héllo", "arg2": [1, 2]});
    let b64 = {
        let text = inputs.to_string();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let bytes = text.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |acc, &b| (acc << 8) | b as u32) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
            out.push_str(&"=".repeat(3 - chunk.len()));
        }
        out
    };
    let code = format!(
        "// declare main function\nfunction main({{arg1, arg2}}) {{\n    return {{result: arg1 + ' ' + arg2.length}}\n}}\n\n\
         // decode and prepare input object\nvar inputs_obj = JSON.parse(Buffer.from('{b64}', 'base64').toString('utf-8'))\n\n\
         // execute main function\nvar output_obj = main(inputs_obj)\n\n\
         // convert output to json and print\nvar output_json = JSON.stringify(output_obj)\n\
         result = `<<RESULT>>${{output_json}}<<RESULT>>`\nconsole.log(result)\n"
    );
    let r = common::shared().run(json!({"language": "nodejs", "code": code, "mode": "script"}));
    assert_eq!(r["exit_code"], 0, "{r}");
    assert_eq!(
        r["stdout"], "<<RESULT>>{\"result\":\"héllo 2\"}<<RESULT>>\n",
        "{r}"
    );
}

// ---- the reference examples that need the modules ----

#[test]
fn fastgpt_js_date_calculation() {
    let code = "const dayjs = require('dayjs')\nfunction main(){\nconst now = dayjs()\nreturn {\n\
                today: now.format('YYYY-MM-DD'),\nnextWeek: now.add(7, 'day').format('YYYY-MM-DD'),\n\
                timestamp: now.valueOf()\n}\n}";
    let r = js(code, json!({}));
    let timestamp = r["timestamp"].as_f64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    assert!((now - timestamp).abs() < 60_000.0, "{r}");
    assert_eq!(r["today"].as_str().unwrap().len(), 10);
    assert_ne!(r["today"], r["nextWeek"]);
}

#[test]
fn fastgpt_js_data_encryption() {
    let code = "const CryptoJS = require('crypto-js')\nfunction main({text, key}){\n\
                const encrypted = CryptoJS.AES.encrypt(text, key).toString()\nreturn { encrypted }\n}";
    let r = js(code, json!({"text": "hello", "key": "secret"}));
    let encrypted = r["encrypted"].as_str().unwrap();
    // OpenSSL's salted format: "Salted__" in base64, then salt and ciphertext.
    assert!(encrypted.starts_with("U2FsdGVkX1"), "{r}");
    let check = js(
        "const CryptoJS = require('crypto-js')\nfunction main({e}) { return {plain: \
         CryptoJS.AES.decrypt(e, 'secret').toString(CryptoJS.enc.Utf8)} }",
        json!({"e": encrypted}),
    );
    assert_eq!(check["plain"], "hello");
}

#[test]
fn allowed_modules_narrow_require_and_import_for_one_run() {
    let r = common::shared().run(
        json!({"language": "javascript", "allowed_modules": ["lodash"],
        "code": "function main() { require('lodash'); require('dayjs'); return {} }"}),
    );
    assert_eq!(r["error"]["kind"], "module_not_allowed", "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("dayjs"),
        "{r}"
    );
    let r = common::shared().run(
        json!({"language": "javascript", "allowed_modules": ["lodash"],
        "code": "import dayjs from 'dayjs'\nexport function main() { return {} }"}),
    );
    assert_eq!(r["error"]["kind"], "module_not_allowed", "{r}");
    // The next run has the whole whitelist again.
    let r = js(
        "function main() { return {d: typeof require('dayjs')} }",
        json!({}),
    );
    assert_eq!(r["d"], "function");
}

// ---- the returned value's JSON ----

/// What `main` returns is written as JSON by sandlot's own walk when it is plain data and by
/// `JSON.stringify` otherwise; either way the bytes must be stringify's. Each case prints
/// `JSON.stringify({v})` and returns `{v}`; the result's raw JSON must equal what it printed.
#[test]
fn returned_json_is_byte_for_byte_what_stringify_writes() {
    #[derive(serde::Deserialize)]
    struct Reply {
        ok: bool,
        result: Option<Box<serde_json::value::RawValue>>,
        stdout: String,
    }
    let cases = [
        // plain data, the walk's own path
        "{s: 'plain', n: [0, -1, 2147483647, -2147483648, 2147483648, 1.5, -0, 0.1 + 0.2, 1e21, \
         1e-7, 123e-20, 2 ** 53, 2 ** 60, 1.5e300, 5e-324, 3 * 0.5 * 2, NaN, Infinity, -Infinity], \
         b: [true, false, null], nested: {a: {b: {c: [[], {}, [[1]]]}}}}",
        "{zh: '中文 字符', emoji: '😀 ok', esc: 'q\"b\\\\s/ \\b\\f\\n\\r\\t \\u0001\\u001f\\u007f \
         \\u2028\\u2029 \\u00e9', 'key \"quoted\"\\n': 1, '': 2}",
        "{2: 'two', 1: 'one', b: 'b', a: 'a', '-1': 'minus'}",
        "{u: undefined, a: [undefined, 1], n: null}",
        "Object.assign(Object.create(null), {x: 1})",
        "(() => { const rows = []; for (let i = 0; i < 300; i++) rows.push({id: i, name: 'r' + i, \
         score: i / 7, ok: i % 2 === 0}); return rows })()",
        "'x'.repeat(100000)",
        // doubles of every magnitude: random bit patterns, and random decimals scaled
        "(() => { const v = new DataView(new ArrayBuffer(8)); let s = 2463534242; \
         const next = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; return s >>>= 0 }; \
         const xs = []; for (let i = 0; i < 3000; i++) { v.setUint32(0, next()); v.setUint32(4, next()); \
         const x = v.getFloat64(0); if (Number.isFinite(x)) xs.push(x); \
         xs.push(next() / 2 ** (next() % 40), (next() - 2 ** 31) * 10 ** (next() % 60 - 30), \
         Math.round(next() / 7) / 100) } return xs })()",
        // what the walk leaves to stringify
        "{d: new Date(0), f: function () {}, s: Symbol('x'), after: 1}",
        "{a: [function () {}, Symbol('y')]}",
        "{x: 1, toJSON() { return {replaced: true} }}",
        "new (class Point { constructor() { this.x = 1 } })()",
        "{m: new Map([[1, 2]]), set: new Set([1]), re: /x/g, err: new Error('e')}",
        "{str: new String('boxed'), num: new Number(5), bool: new Boolean(false)}",
        "{lone: '\\ud800', pair: '\\ud83d\\ude00', tail: 'a\\udc00'}",
        "(() => { const a = [1, , 3]; a.extra = 'x'; return {a} })()",
        "{typed: new Uint8Array([1, 2]), args: (function () { return arguments })(1, 2)}",
        "(() => { let v = []; for (let i = 0; i < 250; i++) v = [v]; return v })()",
        "new Proxy({a: 1}, {})",
    ];
    for case in cases {
        let code = format!(
            "function main() {{ const v = {case}; console.log(JSON.stringify({{v}})); return {{v}} }}"
        );
        let reply = common::shared().post(
            "/v1/run",
            &json!({"language": "javascript", "code": code}).to_string(),
            &[],
        );
        let reply: Reply = serde_json::from_str(&reply.text).expect(&reply.text);
        assert!(reply.ok, "{case}: {}", reply.stdout);
        assert_eq!(
            reply.result.unwrap().get(),
            reply.stdout.trim_end(),
            "{case}"
        );
    }

    // A getter runs once: the walk gives up before it, and stringify calls it.
    let r = js(
        "let calls = 0;\nfunction main() { return {a: 1, get x() { calls += 1; return calls }, \
         after: [1, {get y() { calls += 1; return calls }}]} }",
        json!({}),
    );
    assert_eq!(r, json!({"a": 1, "x": 1, "after": [1, {"y": 2}]}));
    // A toJSON that user code puts on Object.prototype is every object's.
    let r = js(
        "Object.prototype.toJSON = function () { return 'keys:' + Object.keys(this) };\n\
         function main() { return {a: 1, b: 2} }",
        json!({}),
    );
    assert_eq!(r, "keys:a,b");
    // Neither a cycle nor a BigInt is JSON.
    for code in [
        "function main() { const o = {a: [1]}; o.a.push(o); return o }",
        "function main() { return {big: 10n} }",
    ] {
        let r = common::shared().javascript(code, json!({}));
        assert_eq!(r["error"]["kind"], "invalid_return", "{code}: {r}");
    }
}
