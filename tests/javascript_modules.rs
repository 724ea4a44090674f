//! The npm modules and the JavaScript zygotes: code that calls `require` or `import` runs in the
//! javascript-modules zygote (started by the first such run), where every whitelisted module is
//! evaluated already; every other run in the lean javascript zygote, which evaluates a module in
//! the child when a run reaches it without naming it. Both must give the same answers.
//! `/metrics` counts the runs of each kind of zygote, which is how these tests see where a run
//! went.

mod common;

use std::time::Duration;

use common::ok_result;
use common::processes::runs;
use serde_json::{json, Value};

/// Every bundled module, used the way code nodes use it; `REQUIRE` stands for the way to
/// call `require` (the name itself, or a disguise of it).
const EVERY_MODULE: &str = r#"
function main({ms}) {
  const _ = REQUIRE('lodash'), dayjs = REQUIRE('dayjs'), moment = REQUIRE('moment');
  const CryptoJS = REQUIRE('crypto-js'), qs = REQUIRE('qs'), querystring = REQUIRE('querystring');
  const url = REQUIRE('url'), uuid = REQUIRE('uuid');
  return {
    lodash: _.sortBy([3, 1, 2]).concat(_.sum([1, 2, 3])),
    dayjs: dayjs(ms).add(1, 'day').format('YYYY-MM-DD'),
    moment: moment.utc(ms).format('YYYY-MM-DD HH:mm'),
    md5: CryptoJS.MD5('hello').toString(),
    qs: qs.stringify({a: [1, 2], b: {c: 'd'}}),
    querystring: querystring.parse('x=1&y=2&y=3'),
    url: url.parse('https://example.com:8080/p?q=1').port,
    sameUrl: url.URL === URL,
    uuid: uuid.validate(uuid.v4()),
  };
}
"#;

fn wait_for_modules_zygote(server: &common::Server) {
    common::wait_for(
        Duration::from_secs(60),
        || {
            format!(
                "the javascript-modules zygote: {}",
                server.get("/readyz").text
            )
        },
        || (server.get("/readyz").body["javascript_modules"]["ready"] == true).then_some(()),
    );
}

#[test]
fn runs_that_name_require_or_import_go_to_the_modules_zygote() {
    let server = common::start(&[], &[]);
    let plain = "function main({a, b}) { return {sum: a + b} }";
    assert_eq!(
        ok_result(server.javascript(plain, json!({"a": 1, "b": 2})))["sum"],
        3
    );
    assert_eq!(runs(&server, "javascript"), 1);
    assert_eq!(
        server.get("/readyz").body["javascript_modules"],
        Value::Null,
        "a plain run started the javascript-modules zygote"
    );

    // The first run that calls require starts the zygote; it is answered wherever it ran.
    let lodash = "const _ = require('lodash'); function main() { return {s: _.sum([1, 2, 3])} }";
    assert_eq!(ok_result(server.javascript(lodash, json!({})))["s"], 6);
    wait_for_modules_zygote(&server);
    let (lean, modules) = (
        runs(&server, "javascript"),
        runs(&server, "javascript-modules"),
    );
    assert_eq!(lean + modules, 2);

    assert_eq!(ok_result(server.javascript(lodash, json!({})))["s"], 6);
    let esm = "import dayjs from 'dayjs'\nexport function main() { return {y: dayjs(0).year()} }";
    assert_eq!(ok_result(server.javascript(esm, json!({})))["y"], 1970);
    assert_eq!(runs(&server, "javascript-modules"), modules + 2);
    assert_eq!(
        ok_result(server.javascript(plain, json!({"a": 2, "b": 2})))["sum"],
        4
    );
    assert_eq!(runs(&server, "javascript"), lean + 1);
    assert_eq!(runs(&server, "javascript-modules"), modules + 2);
}

/// A module reached without naming `require` is evaluated in the lean zygote's child, and
/// answers as the one the javascript-modules zygote evaluated before its fork.
#[test]
fn a_module_loaded_in_the_child_answers_as_the_zygotes_own() {
    let server = common::start(&[], &[]);
    let inputs = json!({"ms": 1705343400000u64});
    let disguised = EVERY_MODULE.replace("REQUIRE", "globalThis['req' + 'uire']");
    assert!(!disguised.contains("require") && !disguised.contains("import"));
    let in_child = ok_result(server.javascript(&disguised, inputs.clone()));
    assert_eq!(runs(&server, "javascript"), 1);
    assert_eq!(in_child["sameUrl"], true, "{in_child}");
    assert_eq!(in_child["uuid"], true, "{in_child}");
    assert_eq!(in_child["md5"], "5d41402abc4b2a76b9719d911017c592");
    assert_eq!(in_child["dayjs"], "2024-01-16");

    let named = EVERY_MODULE.replace("REQUIRE", "require");
    ok_result(server.javascript(&named, inputs.clone()));
    wait_for_modules_zygote(&server);
    let before = runs(&server, "javascript-modules");
    let in_zygote = ok_result(server.javascript(&named, inputs));
    assert_eq!(runs(&server, "javascript-modules"), before + 1);
    assert_eq!(in_child, in_zygote);
}

/// FastGPT's createHmac signs with crypto-js: code that names it goes to the javascript-modules
/// zygote, and code that reaches it otherwise gets crypto-js evaluated in the lean zygote's
/// child; either way the signature is the one crypto-js computes.
#[test]
fn fastgpt_create_hmac_signs_in_either_zygote() {
    let server = common::start(&[], &[]);
    let sign = |code: &str, zygote: &str| {
        let before = runs(&server, zygote);
        let reply = server.post("/sandbox/js", &json!({"code": code}).to_string(), &[]);
        assert_eq!(runs(&server, zygote), before + 1, "not signed in {zygote}");
        let signed = reply.body["data"]["codeReturn"].clone();
        let timestamp = signed["timestamp"].as_str().expect(&reply.text).to_owned();
        let check = "const C = require('crypto-js');\n\
                     function main({t}) { return {sign: encodeURIComponent(\n\
                     C.enc.Base64.stringify(C.HmacSHA256(`${t}\\nsecret`, 'secret')))} }";
        let expected = ok_result(server.javascript(check, json!({"t": timestamp})));
        assert_eq!(signed["sign"], expected["sign"], "{}", reply.text);
    };
    sign(
        "function main() { return globalThis['create' + 'Hmac']('sha256', 'secret') }",
        "javascript",
    );
    wait_for_modules_zygote(&server);
    sign(
        "function main() { return createHmac('sha256', 'secret') }",
        "javascript-modules",
    );
}

/// An `import` statement in a server's first run, before the javascript-modules zygote is up:
/// the lean zygote's module loader evaluates the module in the child.
#[test]
fn an_import_before_the_modules_zygote_is_up_is_answered() {
    let server = common::start(&[], &[]);
    let esm = "import dayjs from 'dayjs'\nimport {sum} from 'lodash'\n\
               export function main() { return {y: dayjs(0).year(), s: sum([1, 2])} }";
    let result = ok_result(server.javascript(esm, json!({})));
    assert_eq!(result["y"], 1970);
    assert_eq!(result["s"], 3);
}

/// Every module evaluated in the child of a run with the smallest memory limit.
#[test]
fn the_modules_load_in_a_child_with_the_least_memory() {
    let server = common::start(&[], &[]);
    let disguised = EVERY_MODULE.replace("REQUIRE", "globalThis['req' + 'uire']");
    let reply = server.run(json!({"language": "javascript", "code": disguised,
        "inputs": {"ms": 1705343400000u64}, "limits": {"memory_mb": 16}}));
    assert_eq!(ok_result(reply)["md5"], "5d41402abc4b2a76b9719d911017c592");
    assert_eq!(runs(&server, "javascript"), 1);
}

/// A run's `allowed_modules` holds whatever the code replaces first: a Set's `has`, a name on
/// Object.prototype, a string's methods.
#[test]
fn a_run_cannot_widen_its_module_allowlist() {
    let server = common::start(&[], &[]);
    let code = "function main() {
      Set.prototype.has = () => true;
      Object.prototype.dayjs = true;
      const r = globalThis['req' + 'uire'];
      const tries = {};
      for (const name of ['dayjs', 'node:dayjs']) {
        try { tries[name] = typeof r(name) } catch (e) { tries[name] = e.name }
      }
      String.prototype.slice = () => ({toString: () => 'dayjs'});
      try { tries.sliced = typeof r('node:qs') } catch (e) { tries.sliced = e.name }
      return {tries, lodash: typeof r('lodash')};
    }";
    let reply = server.run(json!({"language": "javascript", "code": code, "inputs": {},
        "allowed_modules": ["lodash"]}));
    let result = ok_result(reply);
    assert_eq!(result["lodash"], "function", "{result}");
    assert_eq!(
        result["tries"]["dayjs"], "ModuleNotAllowedError",
        "{result}"
    );
    assert_eq!(
        result["tries"]["node:dayjs"], "ModuleNotAllowedError",
        "{result}"
    );
    assert_eq!(result["tries"]["sliced"], "TypeError", "{result}");
}
