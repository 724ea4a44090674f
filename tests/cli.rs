//! `sandlot run FILE` goes through the same engine and exits with the run's exit code.

use std::process::Command;

use serde_json::Value;

fn sandlot_run(file_name: &str, code: &str, extra: &[&str]) -> (i32, Value) {
    let dir = std::env::temp_dir().join(format!("sandlot-cli-{}-{file_name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(file_name);
    std::fs::write(&file, code).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sandlot"))
        .arg("run")
        .arg(&file)
        .args(extra)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let json = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), json)
}

#[test]
fn run_prints_the_response_and_exits_with_its_code() {
    let (code, r) = sandlot_run(
        "add.py",
        "def main(a, b):\n    return {'sum': a + b}\n",
        &["--inputs", r#"{"a": 2, "b": 3}"#],
    );
    assert_eq!(code, 0);
    assert_eq!(r["result"]["sum"], 5);

    let (code, r) = sandlot_run("fail.js", "function main() { throw new Error('x') }", &[]);
    assert_eq!(code, 1);
    assert_eq!(r["error"]["kind"], "runtime_error");

    let (code, r) = sandlot_run("exit.py", "exit(7)", &["--mode", "script"]);
    assert_eq!(code, 7, "{r}");

    let (code, r) = sandlot_run(
        "slow.py",
        "while True:\n    pass\n",
        &["--mode", "script", "--timeout-ms", "500"],
    );
    assert_eq!(code, 124);
    assert_eq!(r["error"]["kind"], "timeout");
}

#[test]
fn inputs_can_come_from_a_file() {
    let inputs =
        std::env::temp_dir().join(format!("sandlot-cli-inputs-{}.json", std::process::id()));
    std::fs::write(&inputs, r#"{"name": "file"}"#).unwrap();
    let arg = format!("@{}", inputs.display());
    let (code, r) = sandlot_run(
        "hello.js",
        "function main({name}) { return {hi: name} }",
        &["--inputs", &arg],
    );
    std::fs::remove_file(&inputs).unwrap();
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["result"]["hi"], "file");
}

#[test]
fn help_explains_each_command() {
    let output = Command::new(env!("CARGO_BIN_EXE_sandlot"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("serve") && text.contains("run"), "{text}");
    let serve = Command::new(env!("CARGO_BIN_EXE_sandlot"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&serve.stdout);
    for flag in ["--listen", "--api-key", "--max-timeout-ms", "--workers"] {
        assert!(text.contains(flag), "{flag} missing from serve --help");
    }
    let run = Command::new(env!("CARGO_BIN_EXE_sandlot"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    for flag in ["--lang", "--inputs", "--mode"] {
        assert!(text.contains(flag), "{flag} missing from run --help");
    }
}

/// `--stream` prints the code's output as it prints it, then the response as its last line.
#[test]
fn run_stream_prints_as_the_code_prints() {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    let dir = std::env::temp_dir().join(format!("sandlot-cli-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("slow.py");
    let code = "import sys, time\ndef main():\n    print('first')\n    \
                print('oops', file=sys.stderr)\n    time.sleep(0.8)\n    print('second')\n    \
                return {'done': True}\n";
    std::fs::write(&file, code).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sandlot"))
        .args(["run", "--stream"])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let first_at = Instant::now();
    assert_eq!(first, "first");
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let ended = first_at.elapsed();
    let status = child.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(status.success());
    assert!(
        ended >= Duration::from_millis(500),
        "{ended:?}: printed at the end"
    );
    assert_eq!(rest[0], "second", "{rest:?}");
    let response: Value = serde_json::from_str(rest.last().unwrap()).unwrap();
    assert_eq!(response["result"]["done"], true, "{response}");
    assert_eq!(response["stdout"], "first\nsecond\n");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("oops\n"), "{stderr}");
}
