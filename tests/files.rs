//! Files in and out of a run (docs/api.md, "Files"), against a real server: a request's files
//! are read-only beside the code in every language, what the code writes into `output/` comes
//! back (a timed-out run's too), the caps hold in the code and in the response, names that are
//! not plain file names are refused, and no run sees another's files.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use common::Server;
use serde_json::{json, Value};

/// Caps small enough to reach in a test.
const OUTPUT_CAP: u64 = 300_000;
const FILE_CAP: u64 = 200_000;
const INPUT_CAP: u64 = 100_000;

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        common::start(
            &[
                "--max-output-files-bytes",
                &OUTPUT_CAP.to_string(),
                "--max-output-file-bytes",
                &FILE_CAP.to_string(),
                "--max-input-files-bytes",
                &INPUT_CAP.to_string(),
            ],
            &[],
        )
    })
}

fn text_file(name: &str, content: &str) -> Value {
    json!({"name": name, "content": content})
}

fn binary_file(name: &str, bytes: &[u8]) -> Value {
    let content = base64::engine::general_purpose::STANDARD.encode(bytes);
    json!({"name": name, "content": content, "encoding": "base64"})
}

/// The bytes of the response's file `name`.
fn returned(response: &Value, name: &str) -> Vec<u8> {
    let files = response["files"].as_array().expect("files");
    let file = files
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no file {name} in {response}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(file["base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(file["size"], json!(bytes.len()), "{file}");
    bytes
}

fn names(response: &Value) -> Vec<String> {
    response["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

const SALES: &str = "region,amount\nnorth,10\nsouth,5\nnorth,7\neast,3\n";

#[test]
fn python_turns_a_csv_into_a_chart_and_a_spreadsheet() {
    server().wait_for_python_data(Duration::from_secs(900));
    let code = "\
import os
import pandas as pd
import matplotlib.pyplot as plt
def main():
    df = pd.read_csv('sales.csv')
    summary = df.groupby('region', as_index=False)['amount'].sum()
    os.makedirs(os.environ['SANDLOT_OUTPUT_DIR'], exist_ok=True)
    summary.to_excel('output/summary.xlsx', index=False)
    fig, ax = plt.subplots()
    ax.bar(summary['region'], summary['amount'])
    fig.savefig('output/chart.png')
    plt.close(fig)
    return {'regions': len(summary), 'listed': sorted(os.listdir('output'))}
";
    let r = server().run(json!({
        "language": "python", "code": code, "files": [text_file("sales.csv", SALES)],
    }));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["regions"], 3, "{r}");
    assert_eq!(
        r["result"]["listed"],
        json!(["chart.png", "summary.xlsx"]),
        "{r}"
    );
    let png = returned(&r, "chart.png");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let xlsx = returned(&r, "summary.xlsx");
    assert!(xlsx.starts_with(b"PK"), "not a zip archive");
    let media: Vec<&str> = r["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["media_type"].as_str().unwrap())
        .collect();
    assert!(media.contains(&"image/png"), "{media:?}");
    // The spreadsheet reads back, in a run of its own that is given it.
    let back = server().run(json!({
        "language": "python",
        "code": "import pandas as pd\ndef main():\n    df = pd.read_excel('summary.xlsx')\n    return {'rows': df.to_dict('records')}\n",
        "files": [binary_file("summary.xlsx", &xlsx)],
    }));
    assert_eq!(
        back["result"]["rows"],
        json!([
            {"region": "east", "amount": 3},
            {"region": "north", "amount": 17},
            {"region": "south", "amount": 5},
        ]),
        "{back}"
    );
}

#[test]
fn python_reads_its_files_and_may_not_write_them_or_read_elsewhere() {
    let code = "\
import os, pathlib
def main():
    out = {'text': open('notes.txt', encoding='utf-8').read(),
           'bytes': list(pathlib.Path('blob.bin').read_bytes()),
           'exists': [os.path.exists('notes.txt'), os.path.exists('missing.txt')],
           'size': os.path.getsize('blob.bin')}
    for name, attempt in [('write input', lambda: open('notes.txt', 'w')),
                          ('host file', lambda: open('/etc/hostname')),
                          ('subdirectory', lambda: open('output/sub/x.txt', 'w')),
                          ('escape output', lambda: open('output/../../x.txt', 'w'))]:
        try:
            attempt()
            out[name] = 'allowed'
        except OSError as e:
            out[name] = type(e).__name__
    return out
";
    let r = server().run(json!({
        "language": "python", "code": code,
        "files": [text_file("notes.txt", "héllo\n"), binary_file("blob.bin", &[0, 1, 255])],
    }));
    assert_eq!(r["ok"], true, "{r}");
    let result = &r["result"];
    assert_eq!(result["text"], "héllo\n", "{r}");
    assert_eq!(result["bytes"], json!([0, 1, 255]), "{r}");
    assert_eq!(result["exists"], json!([true, false]), "{r}");
    assert_eq!(result["size"], 3, "{r}");
    for attempt in ["write input", "host file", "subdirectory", "escape output"] {
        assert_ne!(result[attempt], "allowed", "{attempt}: {r}");
    }
    assert_eq!(names(&r), Vec::<String>::new(), "{r}");
}

#[test]
fn javascript_reads_and_writes_through_fs() {
    let code = "\
const fs = require('fs');
async function main() {
  const rows = fs.readFileSync('data.csv', 'utf8').trim().split('\\n').slice(1);
  fs.writeFileSync('output/total.json', JSON.stringify({rows: rows.length}));
  fs.appendFileSync('output/log.txt', 'one\\n');
  fs.appendFileSync('output/log.txt', 'two\\n');
  fs.writeFileSync('output/raw.bin', Buffer.from([1, 2, 3]));
  await fs.promises.writeFile('output/late.txt', 'later');
  const refused = {};
  for (const [name, attempt] of [['write input', () => fs.writeFileSync('data.csv', 'x')],
                                 ['host file', () => fs.readFileSync('/etc/hostname')],
                                 ['elsewhere', () => fs.writeFileSync('/tmp/x', 'x')]]) {
    try { attempt(); refused[name] = 'allowed'; } catch (e) { refused[name] = e.code; }
  }
  return {dir: fs.readdirSync('.'), out: fs.readdirSync('output'),
          exists: fs.existsSync('data.csv'), back: fs.readFileSync('output/log.txt', 'utf8'),
          env: process.env.SANDLOT_OUTPUT_DIR, refused};
}
";
    let r = server().run(json!({
        "language": "javascript", "code": code, "files": [text_file("data.csv", SALES)],
    }));
    assert_eq!(r["ok"], true, "{r}");
    let result = &r["result"];
    assert_eq!(result["dir"], json!(["data.csv", "output"]), "{r}");
    assert_eq!(
        result["out"],
        json!(["late.txt", "log.txt", "raw.bin", "total.json"]),
        "{r}"
    );
    assert_eq!(result["back"], "one\ntwo\n", "{r}");
    assert_eq!(result["env"], "/sandbox/output", "{r}");
    assert_eq!(
        result["refused"],
        json!({"write input": "EACCES", "host file": "ENOENT", "elsewhere": "EACCES"}),
        "{r}"
    );
    assert_eq!(returned(&r, "total.json"), br#"{"rows":4}"#.to_vec());
    assert_eq!(returned(&r, "log.txt"), b"one\ntwo\n".to_vec());
    assert_eq!(returned(&r, "raw.bin"), vec![1, 2, 3]);
    assert_eq!(returned(&r, "late.txt"), b"later".to_vec());
}

#[test]
fn fastgpt_routes_have_no_fs() {
    let r = server().post(
        "/sandbox/js",
        &json!({"code": "function main() { return {fs: typeof require('fs')} }", "variables": {}})
            .to_string(),
        &[],
    );
    assert!(
        r.text.contains("not allowed"),
        "FastGPT's suite expects fs to be refused: {}",
        r.text
    );
}

#[test]
fn a_shell_command_works_in_its_directory_and_its_output_comes_back() {
    let r = server().run(json!({
        "language": "shell",
        "code": "tr a-z A-Z < data.csv > output/upper.csv; echo changed > data.csv || echo read-only; \
                 ls output; echo \"$SANDLOT_OUTPUT_DIR\"",
        "files": [text_file("data.csv", SALES)],
    }));
    assert_eq!(r["exit_code"], 0, "{r}");
    let stdout = r["stdout"].as_str().unwrap();
    assert!(stdout.contains("read-only"), "{r}");
    assert!(stdout.contains("upper.csv"), "{r}");
    assert!(stdout.trim_end().ends_with("/output"), "{r}");
    assert_eq!(returned(&r, "upper.csv"), SALES.to_uppercase().into_bytes());
}

#[test]
fn past_the_caps_writes_fail_in_the_code_and_the_run_is_output_limit() {
    let python = "\
import errno
def main():
    with open('output/first.txt', 'w') as f:
        f.write('kept')
    try:
        with open('output/big.bin', 'wb') as f:
            f.write(b'x' * 150_000)
        with open('output/bigger.bin', 'wb') as f:
            f.write(b'x' * 190_000)
    except OSError as e:
        print('refused', errno.errorcode[e.errno])
    return {'went on': True}
";
    let r = server().run(json!({"language": "python", "code": python}));
    assert!(
        r["stdout"].as_str().unwrap().contains("refused ENOSPC"),
        "{r}"
    );
    assert_eq!(r["error"]["kind"], "output_limit", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&OUTPUT_CAP.to_string()),
        "the message names the cap: {r}"
    );
    assert_eq!(
        returned(&r, "first.txt"),
        b"kept".to_vec(),
        "what fit is kept"
    );

    let many = "def main():\n    for i in range(40):\n        open(f'output/f{i}.txt', 'w').write('x')\n    return {}\n";
    let r = server().run(json!({"language": "python", "code": many}));
    assert_eq!(r["error"]["kind"], "output_limit", "{r}");
    assert_eq!(r["files"].as_array().unwrap().len(), 32, "{r}");

    let js = "const fs = require('fs');\nfunction main() {\n  try { fs.writeFileSync('output/big', 'y'.repeat(400000)); } catch (e) { return {code: e.code}; }\n  return {code: null};\n}\n";
    let r = server().run(json!({"language": "javascript", "code": js}));
    assert_eq!(r["error"]["kind"], "output_limit", "{r}");
    assert!(names(&r).len() <= 1, "{r}");

    let shell = "head -c 400000 /dev/zero > output/zeros || echo refused";
    let r = server().run(json!({"language": "shell", "code": shell}));
    assert!(r["stdout"].as_str().unwrap().contains("refused"), "{r}");
    assert_eq!(r["error"]["kind"], "output_limit", "{r}");
    assert!(returned(&r, "zeros").len() as u64 <= OUTPUT_CAP, "{r}");
}

#[test]
fn one_file_past_its_own_cap_fails_with_efbig_in_every_language() {
    let python = "\
import errno
def main():
    try:
        with open('output/one.bin', 'wb') as f:
            f.write(b'x' * 250_000)
    except OSError as e:
        print('refused', errno.errorcode[e.errno])
    return {}
";
    let r = server().run(json!({"language": "python", "code": python}));
    assert!(
        r["stdout"].as_str().unwrap().contains("refused EFBIG"),
        "{r}"
    );
    assert_eq!(r["error"]["kind"], "output_limit", "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&FILE_CAP.to_string()) && message.contains("--max-output-file-bytes"),
        "the message names the cap: {r}"
    );

    let js = "const fs = require('fs');\nfunction main() {\n  try { fs.writeFileSync('output/one', 'y'.repeat(250000)); } catch (e) { return {code: e.code}; }\n  return {code: null};\n}\n";
    let r = server().run(json!({"language": "javascript", "code": js}));
    assert_eq!(r["error"]["kind"], "output_limit", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-output-file-bytes"),
        "{r}"
    );

    // The command's write fails (EFBIG: "File too large"); it is not killed by SIGXFSZ.
    let shell = "head -c 250000 /dev/zero > output/zeros; echo status $?";
    let r = server().run(json!({"language": "shell", "code": shell}));
    assert!(r["stdout"].as_str().unwrap().contains("status 1"), "{r}");
    assert!(
        r["stderr"].as_str().unwrap().contains("File too large"),
        "{r}"
    );
    assert_eq!(r["error"]["kind"], "output_limit", "{r}");
    assert!(returned(&r, "zeros").len() as u64 <= FILE_CAP, "{r}");
}

#[test]
fn a_run_that_times_out_keeps_what_it_wrote() {
    let python = "import time\ndef main():\n    with open('output/partial.txt', 'w') as f:\n        f.write('before the deadline')\n    time.sleep(30)\n";
    let js = "const fs = require('fs');\nfunction main() {\n  fs.writeFileSync('output/partial.txt', 'before the deadline');\n  for (;;) {}\n}\n";
    let shell = "echo before the deadline > output/partial.txt; sleep 30";
    for (language, code) in [("python", python), ("javascript", js), ("shell", shell)] {
        let r = server().run(json!({
            "language": language, "code": code, "limits": {"timeout_ms": 1000},
        }));
        assert_eq!(r["error"]["kind"], "timeout", "{language}: {r}");
        let kept = String::from_utf8(returned(&r, "partial.txt")).unwrap();
        assert!(kept.starts_with("before the deadline"), "{language}: {r}");
    }
}

#[test]
fn names_that_are_not_plain_file_names_are_refused_naming_the_file() {
    for (name, why) in [
        ("../etc/passwd", "plain file name"),
        ("/etc/passwd", "plain file name"),
        ("dir/data.csv", "plain file name"),
        ("..", "not a file name"),
        ("output", "output directory"),
        ("", "empty"),
    ] {
        let r = server().post(
            "/v1/run",
            &json!({"language": "python", "code": "def main():\n    return {}\n",
                    "files": [text_file("fine.txt", "x"), text_file(name, "x")]})
            .to_string(),
            &[],
        );
        assert_eq!(r.status, 400, "{name:?}: {}", r.text);
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("files[1]"), "{name:?}: {message}");
        assert!(message.contains(why), "{name:?}: {message}");
    }
    let bad = server().post(
        "/v1/run",
        &json!({"language": "python", "code": "def main():\n    return {}\n",
                "files": [{"name": "a.bin", "content": "%%%", "encoding": "base64"}]})
        .to_string(),
        &[],
    );
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(bad.text.contains("base64"), "{}", bad.text);
    let big = "x".repeat(INPUT_CAP as usize + 1);
    let over = server().post(
        "/v1/run",
        &json!({"language": "python", "code": "def main():\n    return {}\n",
                "files": [text_file("big.txt", &big)]})
        .to_string(),
        &[],
    );
    assert_eq!(over.status, 400, "{}", over.text);
    assert!(over.text.contains("big.txt"), "{}", over.text);
    assert!(
        over.text.contains("--max-input-files-bytes"),
        "{}",
        over.text
    );
}

#[test]
fn a_run_sees_no_other_run_s_files() {
    let secret = common::random_token();
    let holder = std::thread::spawn(move || {
        server().run(json!({
            "language": "python",
            "code": "import time\ndef main():\n    open('output/mine.txt', 'w').write(open('secret.txt').read())\n    time.sleep(1.5)\n    return {}\n",
            "files": [text_file("secret.txt", &secret)],
        }))
    });
    std::thread::sleep(Duration::from_millis(500));
    let probe = "\
import os
def main():
    found = {}
    for path in ['secret.txt', 'output/mine.txt', '/sandbox/secret.txt']:
        try:
            found[path] = open(path).read()
        except OSError as e:
            found[path] = type(e).__name__
    return {'found': found, 'listed': os.listdir('output')}
";
    for language in ["python", "javascript"] {
        let code = if language == "python" {
            probe.to_owned()
        } else {
            "const fs = require('fs');\nfunction main() {\n  const found = {};\n  for (const p of ['secret.txt', 'output/mine.txt']) {\n    try { found[p] = fs.readFileSync(p, 'utf8'); } catch (e) { found[p] = e.code; }\n  }\n  return {found, listed: fs.readdirSync('output')};\n}\n".to_owned()
        };
        let r = server().run(json!({"language": language, "code": code}));
        assert_eq!(r["ok"], true, "{language}: {r}");
        for (path, value) in r["result"]["found"].as_object().unwrap() {
            assert!(
                value.as_str().unwrap().len() < 20,
                "{language} read {path}: {r}"
            );
        }
        assert_eq!(r["result"]["listed"], json!([]), "{language}: {r}");
    }
    let shell = server().run(json!({"language": "shell", "code": "ls; ls output; cat secret.txt"}));
    let holder = holder.join().unwrap();
    let secret = String::from_utf8(returned(&holder, "mine.txt")).unwrap();
    assert!(
        !shell["stdout"].as_str().unwrap().contains(&secret),
        "{shell}"
    );
}

#[test]
fn the_sandbox_module_api_takes_and_returns_files() {
    let r = server().post(
        "/v1/sandbox/execute_python",
        &json!({"code": "print(open('in.txt').read())\nopen('output/out.txt', 'w').write('made')\n",
                "files": [text_file("in.txt", "given")]})
        .to_string(),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["stdout"], "given\n", "{}", r.text);
    assert_eq!(returned(&r.body, "out.txt"), b"made".to_vec());
    // A run that writes nothing answers in the module API's own shape.
    let plain = server().post(
        "/v1/sandbox/execute_python",
        &json!({"code": "print(1)"}).to_string(),
        &[],
    );
    assert!(plain.body.get("files").is_none(), "{}", plain.text);
}

#[test]
fn the_openapi_document_describes_files() {
    let document = server().get("/openapi.json").body;
    let schemas = &document["components"]["schemas"];
    for name in ["InputFile", "OutputFile"] {
        assert!(schemas[name].is_object(), "{name}: {schemas}");
    }
    assert!(
        schemas["RunRequest"]["properties"]["files"].is_object(),
        "{}",
        schemas["RunRequest"]
    );
    assert!(
        schemas["RunResponse"]["properties"]["files"].is_object(),
        "{}",
        schemas["RunResponse"]
    );
    assert!(
        schemas["ExecuteCode"]["properties"]["files"].is_object(),
        "{}",
        schemas["ExecuteCode"]
    );
}
