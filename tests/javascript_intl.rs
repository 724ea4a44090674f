//! Intl and the JavaScript zygotes: code that names Intl or a locale-aware method runs in the
//! javascript-intl zygote (started by the first such run), every other run in the lean
//! javascript zygote, and code that reaches Intl without naming it gets the same answers there
//! (the bundle loads in the child). `/metrics` counts the runs of each kind of zygote, which is
//! how these tests see where a run went.

mod common;

use std::time::Duration;

use common::ok_result;
use common::processes::runs;
use serde_json::{json, Value};

/// The corpus's Intl programs (tests/real_code_corpus.rs checks them against Node 20), with
/// their inputs and Node's answers.
const PROGRAMS: &[(&str, &str, &str)] = &[
    (
        include_str!("corpus/javascript/intl_numbers.js"),
        r#"{"amount": 1234567.891}"#,
        r#"{"usd": "$1,234,567.89", "cny": "¥1,234,567.89", "percent": "12.3%", "compact": "1.2M", "compactZh": "123万", "grouped": "1,234,567.891", "groupedZh": "1,234,567.9", "fixed": "0.50", "unit": "50 km/h"}"#,
    ),
    (
        include_str!("corpus/javascript/intl_dates.js"),
        r#"{"millis": 1705343400000}"#,
        r#"{"medium": "Jan 15, 2024", "full": "Monday, January 15, 2024", "zh": "2024年1月16日", "zhWeekday": "星期二", "parts": ["month=01", "day=15", "year=2024"], "dateString": "1/15/2024", "shanghaiHour": "02", "zone": "Asia/Tokyo"}"#,
    ),
    (
        include_str!("corpus/javascript/intl_collation_and_plurals.js"),
        r#"{"words": ["banana", "Apple", "cherry", "apple"]}"#,
        r#"{"sorted": ["Apple", "apple", "banana", "cherry"], "files": ["file1", "file2", "file10"], "same": true, "local": -1, "plural": ["other", "one", "other"], "ordinal": ["one", "two", "few", "other", "other", "two"]}"#,
    ),
];

/// What FastGPT users write most: a date in Beijing time.
const SHANGHAI: &str =
    "function main({millis}) { return {t: new Date(millis).toLocaleString('zh-CN', \
                        {timeZone: 'Asia/Shanghai'})} }";

/// Whether `t` is 2024-01-15T18:30:00Z in Beijing time, as FormatJS writes it in Chinese
/// ("2024年1月16日 02:30:00"; Node with full ICU writes "2024/1/16 02:30:00").
fn is_shanghai_time(t: &Value) -> bool {
    let t = t.as_str().unwrap_or_default();
    t.starts_with("2024") && t.contains("16") && t.ends_with(" 02:30:00")
}

/// The same code, reaching Intl and the locale-aware methods without naming them, so the server
/// sends it to the lean zygote.
fn disguised(code: &str) -> String {
    let code = code
        .replace("Intl", "globalThis['In' + 'tl']")
        .replace(".localeCompare(", "['locale' + 'Compare'](");
    let code = ["toLocaleString", "toLocaleDateString", "toLocaleTimeString"]
        .iter()
        .fold(code, |code, method| {
            let (head, tail) = method.split_at(8);
            code.replace(&format!(".{method}("), &format!("['{head}' + '{tail}']("))
        });
    for token in [
        "Intl",
        "toLocaleString",
        "toLocaleDateString",
        "toLocaleTimeString",
        "localeCompare",
    ] {
        assert!(!code.contains(token), "{token} left in {code}");
    }
    code
}

/// Runs Intl code once (which starts the javascript-intl zygote) and waits until `/readyz` says
/// that zygote is ready.
fn with_intl_zygote(server: &common::Server) {
    let reply = server.javascript(SHANGHAI, json!({"millis": 1705343400000u64}));
    let t = &ok_result(reply)["t"];
    assert!(is_shanghai_time(t), "{t}");
    common::wait_for(
        Duration::from_secs(60),
        || format!("the javascript-intl zygote: {}", server.get("/readyz").text),
        || (server.get("/readyz").body["javascript_intl"]["ready"] == true).then_some(()),
    );
}

fn intl_ready_server() -> &'static common::Server {
    static SERVER: std::sync::OnceLock<common::Server> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        let server = common::start(&[], &[]);
        with_intl_zygote(&server);
        server
    })
}

#[test]
fn plain_runs_go_to_the_lean_zygote_and_runs_that_name_intl_to_the_intl_one() {
    let server = common::start(&[], &[]);
    let plain = "function main({a, b}) { return {sum: a + b} }";
    let ready = server.get("/readyz");
    assert_eq!(ready.body["javascript_intl"], Value::Null, "{}", ready.text);
    assert_eq!(runs(&server, "javascript"), 0);
    let r = server.javascript(plain, json!({"a": 1, "b": 2}));
    assert_eq!(ok_result(r)["sum"], 3);
    assert_eq!(runs(&server, "javascript"), 1);
    assert_eq!(runs(&server, "javascript-intl"), 0);
    assert_eq!(
        server.get("/readyz").body["javascript_intl"],
        Value::Null,
        "a plain run started the javascript-intl zygote"
    );

    // The first run that names Intl starts the zygote; it is answered right wherever it ran.
    with_intl_zygote(&server);
    let (lean, intl) = (
        runs(&server, "javascript"),
        runs(&server, "javascript-intl"),
    );
    assert_eq!(lean + intl, 2);
    let ready = server.get("/readyz");
    assert_eq!(ready.status, 200);
    assert_eq!(
        ready.body["javascript_intl"]["kind"], "javascript-intl",
        "{}",
        ready.text
    );

    let r = server.javascript(SHANGHAI, json!({"millis": 1705343400000u64}));
    let named = ok_result(r)["t"].clone();
    assert!(is_shanghai_time(&named), "{named}");
    assert_eq!(runs(&server, "javascript-intl"), intl + 1);
    let r = server.javascript(plain, json!({"a": 2, "b": 2}));
    assert_eq!(ok_result(r)["sum"], 4);
    assert_eq!(runs(&server, "javascript"), lean + 1);
    assert_eq!(runs(&server, "javascript-intl"), intl + 1);
    // FastGPT's route is routed the same way.
    let body = json!({"code": SHANGHAI, "variables": {"millis": 1705343400000u64}});
    let reply = server.post("/sandbox/js", &body.to_string(), &[]);
    assert_eq!(
        reply.body["data"]["codeReturn"]["t"], named,
        "{}",
        reply.text
    );
    assert_eq!(runs(&server, "javascript-intl"), intl + 2);
}

#[test]
fn intl_answers_are_the_same_in_both_zygotes() {
    let server = intl_ready_server();
    for (code, inputs, expected) in PROGRAMS {
        let inputs: Value = serde_json::from_str(inputs).unwrap();
        let expected: Value = serde_json::from_str(expected).unwrap();
        let named = ok_result(server.javascript(code, inputs.clone()));
        assert_eq!(named, expected, "{code}");
        let reached = ok_result(server.javascript(&disguised(code), inputs));
        assert_eq!(reached, expected, "{}", disguised(code));
    }
    let inputs = json!({"millis": 1705343400000u64});
    let named = ok_result(server.javascript(SHANGHAI, inputs.clone()));
    assert!(is_shanghai_time(&named["t"]), "{named}");
    let reached = ok_result(server.javascript(&disguised(SHANGHAI), inputs));
    assert_eq!(reached, named);
}

/// The lean zygote's stand-ins stand for exactly what the Intl bundle installs: after a load,
/// Intl, the prototypes and the globals look as they do where the bundle was evaluated in the
/// zygote, and before it Intl has the same names.
#[test]
fn the_stand_ins_give_way_to_what_the_intl_zygote_has() {
    let server = intl_ready_server();
    let shape = "function shape() {
      const I = globalThis['In' + 'tl'];
      const describe = (o) => Object.getOwnPropertyNames(o).sort().map((k) => {
        const d = Object.getOwnPropertyDescriptor(o, k);
        const v = d.value;
        return [k, typeof v, typeof v === 'function' ? v.name : '', d.enumerable, d.writable,
          d.configurable].join(' ');
      });
      return {intl: describe(I), number: describe(Number.prototype),
        bigint: describe(BigInt.prototype), date: describe(Date.prototype),
        string: describe(String.prototype), globals: Object.getOwnPropertyNames(globalThis).sort()};
    }";
    let intl_zygote = format!(
        "{shape}\nfunction main() {{ new Intl.NumberFormat('en').format(1); return shape() }}"
    );
    let lean = disguised(&format!(
        "{shape}\nfunction main() {{ const names = Object.getOwnPropertyNames(Intl).sort(); \
         const s = shape(); new Intl.NumberFormat('en').format(1); \
         return {{before: names, after: shape(), methods: s.number}} }}"
    ));
    let want = ok_result(server.javascript(&intl_zygote, json!({})));
    let got = ok_result(server.javascript(&lean, json!({})));
    assert_eq!(got["after"], want);
    let names: Vec<Value> = want["intl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| json!(d.as_str().unwrap().split(' ').next().unwrap()))
        .collect();
    assert_eq!(got["before"], json!(names));
    // Before the load the methods are stand-ins of the same names.
    assert!(
        got["methods"].as_array().unwrap().iter().any(|d| d
            .as_str()
            .unwrap()
            .starts_with("toLocaleString function toLocaleString")),
        "{}",
        got["methods"]
    );
}

#[test]
fn what_a_run_replaced_before_intl_loaded_stays_replaced() {
    let server = intl_ready_server();
    let code = "function main() {
          const I = globalThis['In' + 'tl'];
          const mine = function () { return 'mine' };
          Date.prototype['toLocale' + 'DateString'] = mine;
          const held = Number.prototype['toLocale' + 'String'];
          const formatted = new I.NumberFormat('en-US').format(1234.5);
          return {formatted, date: new Date(0)['toLocale' + 'DateString']('en-US'),
                  number: held.call(1234.5, 'en-US'),
                  same: Date.prototype['toLocale' + 'DateString'] === mine,
                  sorted: ['b', 'a', 'C'].sort((x, y) => x['locale' + 'Compare'](y, 'en'))}
        }";
    assert_eq!(disguised(code), code);
    let r = ok_result(server.javascript(code, json!({})));
    assert_eq!(
        r,
        json!({"formatted": "1,234.5", "date": "mine", "number": "1,234.5", "same": true,
               "sorted": ["a", "b", "C"]})
    );
}

/// In the lean zygote Intl would load within the run's own memory limit; a run whose limit is
/// too small for that waits for the javascript-intl zygote, even as the first one.
#[test]
fn a_run_with_little_memory_waits_for_the_intl_zygote() {
    let server = common::start(&[], &[]);
    assert_eq!(server.get("/readyz").body["javascript_intl"], Value::Null);
    let body = json!({"language": "javascript", "code": SHANGHAI, "limits": {"memory_mb": 16},
                      "inputs": {"millis": 1705343400000u64}});
    let t = &ok_result(server.run(body))["t"];
    assert!(is_shanghai_time(t), "{t}");
    assert_eq!(runs(&server, "javascript-intl"), 1);
    assert_eq!(runs(&server, "javascript"), 0);
}

#[test]
fn sandlot_run_answers_intl_code() {
    let dir = std::env::temp_dir().join(format!("sandlot-intl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("shanghai.js");
    std::fs::write(&file, SHANGHAI).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sandlot"))
        .arg("run")
        .arg(&file)
        .args(["--inputs", r#"{"millis": 1705343400000}"#])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let reply: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    assert!(is_shanghai_time(&reply["result"]["t"]), "{output:?}");
}

/// The formatters a date's or a number's toLocale*String builds are kept per locales and
/// options (intl.js). A kept one must answer what FormatJS's own method answers: options
/// whose members are getters are never kept, so each case is asked both ways, in a run of the
/// javascript-intl zygote (whose warm-up kept some already) and in one of the lean zygote.
#[test]
fn kept_formatters_answer_as_formatjs_does() {
    const CASES: &str = r#"
        const d = new Date(1705343400000);
        const bad = new Date(NaN);
        const date = ['toLocale' + 'String', 'toLocale' + 'DateString', 'toLocale' + 'TimeString'];
        const asGetters = (o) => Object.defineProperties({}, Object.fromEntries(
            Object.entries(o ?? {}).map(([k, v]) => [k, {get: () => v, enumerable: true}])));
        const answer = (f) => { try { return f() } catch (e) { return 'threw ' + e.name } };
        const cases = [];
        for (const locales of [undefined, 'zh-CN', 'en-US', ['zh-CN', 'en']]) {
            for (const options of [undefined, {timeZone: 'Asia/Shanghai'}, {dateStyle: 'full'},
                {timeStyle: 'short', timeZone: 'UTC'}, {hour: '2-digit', minute: undefined},
                {weekday: 'long', timeZone: 'America/New_York'}, {timeZone: 'Nowhere/Zone'},
                {hour12: false, timeZone: 'Asia/Tokyo'}]) {
                for (const method of date) for (const when of [d, bad]) {
                    for (let twice = 0; twice < 2; twice++) cases.push([
                        answer(() => when[method](locales, options)),
                        answer(() => when[method](locales, asGetters(options)))]);
                }
            }
            for (const options of [undefined, {style: 'currency', currency: 'CNY'},
                {style: 'percent', maximumFractionDigits: 1}, {notation: 'compact'},
                {style: 'currency'}, {minimumFractionDigits: 2, useGrouping: false}]) {
                for (const x of [1234567.891, -0.5, 12n]) cases.push([
                    answer(() => x['toLocale' + 'String'](locales, options)),
                    answer(() => x['toLocale' + 'String'](locales, asGetters(options)))]);
            }
        }
        return {cases};
    "#;
    let server = intl_ready_server();
    for (zygote, code) in [
        (
            "javascript-intl",
            format!("// Intl\nfunction main() {{ {CASES} }}"),
        ),
        ("javascript", format!("function main() {{ {CASES} }}")),
    ] {
        let result = ok_result(server.javascript(&code, json!({})));
        let cases = result["cases"].as_array().unwrap();
        assert!(cases.len() > 300, "{zygote}: {}", cases.len());
        for case in cases {
            assert_eq!(case[0], case[1], "{zygote}: kept vs FormatJS's own");
        }
        // The cases do differ from one another (a formatter kept under the wrong key would not).
        let distinct: std::collections::HashSet<String> =
            cases.iter().map(|c| c[0].to_string()).collect();
        assert!(distinct.len() > 40, "{zygote}: {distinct:?}");
    }
}
