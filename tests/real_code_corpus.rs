//! A corpus of real code-node programs, of the kinds Dify and FastGPT users write, sent through
//! every API that would carry it: sandlot's own (`/v1/run`), dify-sandbox's (`/v1/sandbox/run`,
//! wrapped in the runner Dify's API server sends) and FastGPT's (`/sandbox/python`,
//! `/sandbox/js`). Each program's expected result is what it returns outside any sandbox: the
//! host's CPython with the same packages (`python3 -s`), and Node 20 for JavaScript. A program
//! lists the routes whose import policy admits it (FastGPT's refuses `os`, `sys`, `urllib` and
//! jinja2, as FastGPT itself does).

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Native,
    Dify,
    Fastgpt,
}
use Route::{Dify, Fastgpt, Native};

struct Program {
    name: &'static str,
    language: &'static str,
    code: &'static str,
    routes: &'static [Route],
    inputs: &'static str,
    expected: &'static str,
}

const KEY: &str = "corpus-key";

const CORPUS: &[Program] = &[
    Program {
        name: "csv through io.StringIO",
        language: "python",
        code: include_str!("corpus/python/csv_through_stringio.py"),
        routes: &[Native, Dify, Fastgpt],
        inputs: r#"{"text": "name,a,b\nx,1,2\ny,3,4\n"}"#,
        expected: r#"{"rows": 2, "csv": "name,total\r\nx,3\r\ny,7\r\n"}"#,
    },
    Program {
        name: "text: textwrap, html, unicodedata, difflib, string",
        language: "python",
        code: include_str!("corpus/python/text_modules.py"),
        routes: &[Native, Dify, Fastgpt],
        inputs: r#"{"text": "The quick brown fox jumps over the lazy dog"}"#,
        expected: r#"{"short": "The quick brown...", "wrapped": ["The quick", "brown fox", "jumps over", "the lazy dog"], "escaped": "&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;", "unescaped": "<é>", "nfkc": "full-width123", "ratio": 0.941, "close": ["apple", "ape"], "template": "Ann likes tea"}"#,
    },
    Program {
        name: "dates: zoneinfo, datetime, calendar",
        language: "python",
        code: include_str!("corpus/python/dates_and_zones.py"),
        routes: &[Native, Dify, Fastgpt],
        inputs: r#"{"stamp": "2024-01-15T12:30:00+00:00"}"#,
        expected: r#"{"shanghai": "2024-01-15T20:30:00+08:00", "new_york": "2024-01-15 07:30 EST", "week_later": "2024-01-22", "weekday": "Monday", "month_days": 29, "parsed": 1709622480.0}"#,
    },
    Program {
        name: "bytes: gzip, zlib, base64, struct, hashlib, hmac",
        language: "python",
        code: include_str!("corpus/python/bytes_and_hashes.py"),
        routes: &[Native, Dify, Fastgpt],
        inputs: r#"{"text": "hello sandlot"}"#,
        expected: r#"{"roundtrip": true, "crc32": 2019743667, "b64": "aGVsbG8gc2FuZGxvdA==", "urlsafe": "-_8=", "struct": [7, 65536], "sha256": "f173d0d262a374e1750c190884028711186aa5266bc6c333b720c60b8358a10c", "md5": "7bec0bbf4434e1498e0efc74de0e617d", "hmac": "8e415ffd1baca4be"}"#,
    },
    Program {
        name: "structured text: xml.etree, json, re, ipaddress",
        language: "python",
        code: include_str!("corpus/python/structured_text.py"),
        routes: &[Native, Dify, Fastgpt],
        inputs: r#"{"xml": "<order><item price='1.5'>tea</item><item price='2.25'>cake</item></order>", "log": "10.0.0.1 - - \"GET /a HTTP/1.1\"\n8.8.8.8 - - \"POST /b HTTP/1.1\"\n"}"#,
        expected: r#"{"total": 3.75, "names": ["tea", "cake"], "hits": [{"ip": "10.0.0.1", "method": "GET", "path": "/a"}, {"ip": "8.8.8.8", "method": "POST", "path": "/b"}], "private": [true, false], "hosts": 14, "json": {"a": null, "b": [1, 2]}}"#,
    },
    Program {
        name: "numbers: decimal, fractions, statistics, math, random with a seed",
        language: "python",
        code: include_str!("corpus/python/numbers.py"),
        routes: &[Native, Dify, Fastgpt],
        inputs: r#"{"values": [3, 1, 4, 1, 5, 9, 2, 6]}"#,
        expected: r#"{"money": "59.99", "fraction": "1/2", "mean": 3.875, "median": 3.5, "stdev": 2.7484, "hypot": 5.0, "sample_is_subset": true, "same_seed_same_draw": true}"#,
    },
    Program {
        name: "collections, itertools, functools, dataclasses, enum, typing",
        language: "python",
        code: include_str!("corpus/python/collections_and_types.py"),
        routes: &[Native, Dify, Fastgpt],
        inputs: r#"{"words": ["apple", "avocado", "banana", "apple", "cherry"]}"#,
        expected: r#"{"common": [["apple", 2], ["avocado", 1]], "groups": {"a": ["apple", "avocado", "apple"], "b": ["banana"], "c": ["cherry"]}, "pairs": [["apple", "avocado"], ["apple", "banana"], ["apple", "cherry"]], "product": 120, "window": ["apple", "cherry"], "fib": 12586269025, "ticket": {"title": "disk full", "level": "HIGH", "tags": ["ops"]}, "ordered": ["apple", "avocado", "banana", "cherry"]}"#,
    },
    Program {
        name: "what Dify users import: os.path, sys, urllib.parse, warnings, logging",
        language: "python",
        code: include_str!("corpus/python/dify_imports.py"),
        routes: &[Native, Dify],
        inputs: r#"{"url": "https://example.com/files/report.final.pdf?x=1&x=2&y=z"}"#,
        expected: r#"{"host": "example.com", "query": {"x": ["1", "2"], "y": ["z"]}, "file": "report.final", "ext": ".pdf", "joined": "reports/report.final.csv", "quoted": "a%20b%26c/d", "encoded": "q=sandlot+%E6%B2%99%E7%AE%B1&page=2", "python3": true, "max_int": true}"#,
    },
    Program {
        name: "jinja2 templates and its sandbox",
        language: "python",
        code: include_str!("corpus/python/jinja2_templates.py"),
        routes: &[Native, Dify],
        inputs: r#"{"items": [{"name": "tea", "price": 1.5}, {"name": "cake", "price": 2}]}"#,
        expected: r#"{"text": "TEA=1.5;CAKE=2.0;", "plain": "Hello world!", "unsafe_blocked": true}"#,
    },
    Program {
        name: "pandas reshape: pivot_table, melt, crosstab, stack",
        language: "python",
        code: include_str!("corpus/python/pandas_reshape.py"),
        routes: &[Native, Dify, Fastgpt],
        inputs: r#"{"rows": [{"region": "east", "quarter": "Q1", "sales": 10}, {"region": "east", "quarter": "Q2", "sales": 5}, {"region": "west", "quarter": "Q1", "sales": 7}, {"region": "east", "quarter": "Q1", "sales": 1}]}"#,
        expected: r#"{"pivot": {"Q1": {"east": 11, "west": 7}, "Q2": {"east": 5, "west": 0}}, "long_rows": 4, "cross": [[2, 1], [1, 0]], "stacked_q1": {"east": 11.0, "west": 7.0}}"#,
    },
    Program {
        name: "pandas windows: rolling, expanding, ewm, shift, pct_change, resample",
        language: "python",
        code: include_str!("corpus/python/pandas_windows.py"),
        routes: &[Native, Dify, Fastgpt],
        inputs: r#"{"values": [1, 3, 2, 5, 4, 6, 8, 7, 9]}"#,
        expected: r#"{"rolling": [2.0, 3.333, 3.667, 5.0, 6.0, 7.0, 8.0], "expanding": [1.0, 3.0, 3.0, 5.0, 5.0, 6.0, 8.0, 8.0, 9.0], "ewm": 7.8728, "shift": [0.0, 1.0, 3.0, 2.0, 5.0, 4.0, 6.0, 8.0, 7.0], "change": [2.0, -0.333, 1.5, -0.2, 0.5, 0.333, -0.125, 0.286], "weekly": {"2024-01-07": 29, "2024-01-14": 16}}"#,
    },
    Program {
        name: "pandas IO to strings and bytes: csv, json, markdown, html, BytesIO",
        language: "python",
        code: include_str!("corpus/python/pandas_io.py"),
        routes: &[Native, Dify, Fastgpt],
        inputs: r#"{"csv_text": "name,score\nann,90\nbob,85\n"}"#,
        expected: r#"{"shape": [2, 2], "bytes": "name,score\nann,90\nbob,85\n", "json_roundtrip": true, "markdown": "| name   |   score |\n|:-------|--------:|\n| ann    |      90 |\n| bob    |      85 |", "html_has_table": true, "records": [{"name": "ann", "score": 90}, {"name": "bob", "score": 85}]}"#,
    },
    Program {
        name: "pandas styling",
        language: "python",
        code: include_str!("corpus/python/pandas_styling.py"),
        routes: &[Native, Dify, Fastgpt],
        inputs: r#"{"rows": [{"name": "ann", "score": 90}, {"name": "bob", "score": 85}]}"#,
        expected: r#"{"formatted": true, "highlighted": true, "has_table": true}"#,
    },
    Program {
        name: "matplotlib and pandas plotting into a BytesIO",
        language: "python",
        code: include_str!("corpus/python/plotting_to_bytesio.py"),
        routes: &[Native, Dify, Fastgpt],
        inputs: r#"{"values": [3, 1, 4, 1, 5]}"#,
        expected: r#"{"png": true, "png_b64_prefix": "iVBO", "svg": true, "title": true}"#,
    },
    Program {
        name: "numpy: linear algebra, statistics, vectorised maths",
        language: "python",
        code: include_str!("corpus/python/numpy_maths.py"),
        routes: &[Native, Dify, Fastgpt],
        inputs: r#"{"matrix": [[2, 1], [1, 3]], "rhs": [3, 5]}"#,
        expected: r#"{"solution": [0.8, 1.4], "det": 5.0, "percentile": 9.1, "cumsum": [1, 3, 6, 10], "where": [2, 5, 8], "reshape": [7, 9, 11, 13, 15], "seeded_equal": true}"#,
    },
    Program {
        name: "url: URL, URLSearchParams and the legacy parse/format",
        language: "javascript",
        code: include_str!("corpus/javascript/url_module.js"),
        routes: &[Native, Dify, Fastgpt],
        inputs: r#"{"link": "https://user@example.com:8443/a/b?q=hello%20world#top"}"#,
        expected: r#"{"host": "example.com:8443", "path": "/a/b", "q": "hello world", "href": "https://user@example.com:8443/a/b?q=hello+world&page=2#top", "params": "q=sandlot+%E6%B2%99%E7%AE%B1&tag=a%26b", "legacyQuery": {"q": "hello world"}, "formatted": "https://example.com/x?a=1", "relative": "https://example.com/a/b?c=1"}"#,
    },
    Program {
        name: "Intl.NumberFormat and toLocaleString in en and zh",
        language: "javascript",
        code: include_str!("corpus/javascript/intl_numbers.js"),
        routes: &[Native, Dify, Fastgpt],
        inputs: r#"{"amount": 1234567.891}"#,
        expected: r#"{"usd": "$1,234,567.89", "cny": "¥1,234,567.89", "percent": "12.3%", "compact": "1.2M", "compactZh": "123万", "grouped": "1,234,567.891", "groupedZh": "1,234,567.9", "fixed": "0.50", "unit": "50 km/h"}"#,
    },
    Program {
        name: "Intl.DateTimeFormat and toLocaleString of dates in en and zh",
        language: "javascript",
        code: include_str!("corpus/javascript/intl_dates.js"),
        routes: &[Native, Dify, Fastgpt],
        inputs: r#"{"millis": 1705343400000}"#,
        expected: r#"{"medium": "Jan 15, 2024", "full": "Monday, January 15, 2024", "zh": "2024年1月16日", "zhWeekday": "星期二", "parts": ["month=01", "day=15", "year=2024"], "dateString": "1/15/2024", "shanghaiHour": "02", "zone": "Asia/Tokyo"}"#,
    },
    Program {
        name: "Intl.Collator, localeCompare and Intl.PluralRules",
        language: "javascript",
        code: include_str!("corpus/javascript/intl_collation_and_plurals.js"),
        routes: &[Native, Dify, Fastgpt],
        inputs: r#"{"words": ["banana", "Apple", "cherry", "apple"]}"#,
        expected: r#"{"sorted": ["Apple", "apple", "banana", "cherry"], "files": ["file1", "file2", "file10"], "same": true, "local": -1, "plural": ["other", "one", "other"], "ordinal": ["one", "two", "few", "other", "other", "two"]}"#,
    },
    Program {
        name: "lodash, dayjs, crypto-js, qs, uuid as code nodes use them",
        language: "javascript",
        code: include_str!("corpus/javascript/allowed_modules.js"),
        routes: &[Native, Dify, Fastgpt],
        inputs: r#"{"orders": [{"id": 1, "user": "a", "amount": 5}, {"id": 2, "user": "b", "amount": 9}, {"id": 3, "user": "a", "amount": 2.5}]}"#,
        expected: r#"{"totals": {"a": 7.5, "b": 9}, "top": 2, "chunks": [[1, 2], [3]], "template": "Hi Ann!", "due": "2024-02-29", "diff": 29, "sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", "hmac": "5031fe3d989c6d15", "b64": "5rKZ566x", "query": "a[0]=1&a[1]=2&b[c]=d", "parsed": {"x": {"y": "1", "z": "2"}}, "uuid": true}"#,
    },
    Program {
        name: "language idioms: classes, destructuring, regex groups, Map, JSON, Date",
        language: "javascript",
        code: include_str!("corpus/javascript/language_idioms.js"),
        routes: &[Native, Dify, Fastgpt],
        inputs: r#"{"lines": "name=ann;age=30;city=Shanghai"}"#,
        expected: r#"{"pairs": {"name": "ann", "age": "30", "city": "Shanghai"}, "total": "3.35", "counts": {"i": 4, "m": 1, "p": 2, "s": 4}, "rest": {"b": 2, "c": 3}, "at": 3, "flat": [1, 2, 3], "json": "1970-01-01T00:00:00.000Z", "iso": "2024-02-29T00:00:00.000Z", "big": "18446744073709551616", "optional": "none"}"#,
    },
];

/// A server with the data packages ready (the first server on a machine installs them).
fn server() -> &'static common::Server {
    static SERVER: OnceLock<common::Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = common::start(&["--api-key", KEY], &[]);
        server.wait_for_python_data(Duration::from_secs(600));
        server
    })
}

/// Base64 of `bytes`, as Dify's runner carries its inputs.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Dify's code-executor templates (api/core/helper/code_executor/*/..._transformer.py): the
/// program, then a runner that decodes the inputs, calls `main` and prints the result between
/// `<<RESULT>>` markers.
fn dify_script(program: &Program, inputs: &Value) -> (String, &'static str) {
    let inputs = base64(inputs.to_string().as_bytes());
    let code = program.code;
    match program.language {
        "python" => (
            format!(
                "# declare main function\n{code}\nimport json\nfrom base64 import b64decode\n\
                 inputs_obj = json.loads(b64decode('{inputs}').decode('utf-8'))\n\
                 output_obj = main(**inputs_obj)\noutput_json = json.dumps(output_obj, indent=4)\n\
                 result = f'''<<RESULT>>{{output_json}}<<RESULT>>'''\nprint(result)\n"
            ),
            "python3",
        ),
        _ => (
            format!(
                "// declare main function\n{code}\n\
                 var inputs_obj = JSON.parse(Buffer.from('{inputs}', 'base64').toString('utf-8'))\n\
                 var output_obj = main(inputs_obj)\nvar output_json = JSON.stringify(output_obj)\n\
                 var result = `<<RESULT>>${{output_json}}<<RESULT>>`\nconsole.log(result)\n"
            ),
            "nodejs",
        ),
    }
}

/// Runs `program` through `route`: its result, or what went wrong.
fn run(program: &Program, route: Route) -> Result<Value, String> {
    let s = server();
    let inputs: Value = serde_json::from_str(program.inputs).unwrap();
    let bearer = format!("Bearer {KEY}");
    match route {
        Native => {
            let body =
                json!({"language": program.language, "code": program.code, "inputs": inputs});
            let r = s.post("/v1/run", &body.to_string(), &[("authorization", &bearer)]);
            match r.body["ok"] == true {
                true => Ok(r.body["result"].clone()),
                false => Err(r.text),
            }
        }
        Dify => {
            let (code, language) = dify_script(program, &inputs);
            let body =
                json!({"language": language, "code": code, "preload": "", "enable_network": true});
            let r = s.post("/v1/sandbox/run", &body.to_string(), &[("x-api-key", KEY)]);
            let stdout = r.body["data"]["stdout"].as_str().unwrap_or("");
            match stdout.split("<<RESULT>>").nth(1) {
                Some(json) => serde_json::from_str(json).map_err(|e| format!("{e}: {json}")),
                None => Err(r.text),
            }
        }
        Fastgpt => {
            let path = match program.language {
                "python" => "/sandbox/python",
                _ => "/sandbox/js",
            };
            let body = json!({"code": program.code, "variables": inputs});
            let r = s.post(path, &body.to_string(), &[("authorization", &bearer)]);
            match r.body["success"] == true {
                true => Ok(r.body["data"]["codeReturn"].clone()),
                false => Err(r.text),
            }
        }
    }
}

fn check(language: &str) {
    let mut failures = Vec::new();
    let mut runs = 0;
    for program in CORPUS.iter().filter(|p| p.language == language) {
        let expected: Value = serde_json::from_str(program.expected).unwrap();
        for &route in program.routes {
            runs += 1;
            match run(program, route) {
                Ok(result) if result == expected => {}
                Ok(result) => failures.push(format!(
                    "{route:?} {}:\n    got  {result}\n    want {expected}",
                    program.name
                )),
                Err(e) => failures.push(format!(
                    "{route:?} {}: {}",
                    program.name,
                    e.chars().take(1500).collect::<String>()
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} runs differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn python_programs_return_what_they_return_outside_a_sandbox() {
    check("python");
}

#[test]
fn javascript_programs_return_what_they_return_in_node() {
    check("javascript");
}

#[test]
fn the_corpus_is_sent_through_every_api() {
    for route in [Native, Dify, Fastgpt] {
        for language in ["python", "javascript"] {
            let n = CORPUS
                .iter()
                .filter(|p| p.language == language && p.routes.contains(&route))
                .count();
            assert!(n >= 5, "only {n} {language} programs through {route:?}");
        }
    }
}
