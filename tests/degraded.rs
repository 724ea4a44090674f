//! No silent fallback: on a machine where an isolation layer is missing, `doctor` says so,
//! `serve` refuses to start, and `--allow-degraded` starts it with the gap logged and listed in
//! `/readyz`, while the remaining layers still hold.
//!
//! The missing layer is made real, not pretended: the server runs under a seccomp filter that
//! answers `landlock_create_ruleset` with ENOSYS, as a container runtime's default profile on
//! an older kernel does.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
use serde_json::json;

fn without_landlock() -> BpfProgram {
    let rules = BTreeMap::from([(libc::SYS_landlock_create_ruleset, vec![])]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        TargetArch::x86_64,
    )
    .unwrap();
    filter.try_into().unwrap()
}

fn hook() -> impl FnMut() -> std::io::Result<()> + Send + Sync + 'static {
    let program = without_landlock();
    move || seccompiler::apply_filter(&program).map_err(std::io::Error::other)
}

fn sandlot(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sandlot"));
    command.args(args).env_remove("SANDLOT_ALLOW_DEGRADED");
    let hook = hook();
    // SAFETY: the hook only installs a precompiled filter (prctl and seccomp system calls).
    unsafe { command.pre_exec(hook) };
    command
}

#[test]
fn doctor_names_the_missing_layer() {
    let out = sandlot(&["doctor"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let landlock = text.lines().find(|l| l.starts_with("landlock")).unwrap();
    assert!(landlock.contains("UNAVAILABLE"), "{text}");
    for layer in ["namespaces", "rlimits", "uid_drop", "seccomp"] {
        let line = text.lines().find(|l| l.starts_with(layer)).unwrap();
        assert!(line.contains("active"), "{text}");
    }
}

#[test]
fn the_full_jail_reports_every_layer_active() {
    let out = Command::new(env!("CARGO_BIN_EXE_sandlot"))
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches(" active ").count(), 5, "{text}");
}

#[test]
fn serve_refuses_to_start_without_a_layer() {
    let out = sandlot(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ready on"));
    assert!(stderr.contains("landlock"), "{stderr}");
    assert!(stderr.contains("--allow-degraded"), "{stderr}");
}

#[test]
fn allow_degraded_starts_lists_the_gap_and_still_confines() {
    let server = common::start_under(&["--allow-degraded"], &[], hook());
    let ready = server.get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text);
    let degraded = ready.body["degraded"].as_array().unwrap();
    assert_eq!(degraded.len(), 1, "{}", ready.text);
    assert_eq!(degraded[0]["layer"], "landlock");

    // Without Landlock, seccomp refuses every open: the canary still cannot be read.
    let token = common::random_token();
    let canary = std::env::temp_dir().join(format!("sandlot-degraded-{token}"));
    std::fs::write(&canary, &token).unwrap();
    let code = "OS = [c for c in ().__class__.__base__.__subclasses__() \
                if c.__name__ == '_wrap_close'][0].__init__.__globals__\n\
                def main(path):\n    try:\n        return {'x': repr(OS['read'](OS['open'](path, 0), 100))}\n\
                \x20   except OSError as e:\n        return {'x': type(e).__name__}\n";
    let r = server.python(code, json!({"path": canary}));
    std::fs::remove_file(&canary).unwrap();
    assert!(!r.to_string().contains(&token), "{r}");
    assert_eq!(r["result"]["x"], "PermissionError", "{r}");
    let r = server.python("def main(a):\n    return {'a': a * 2}", json!({"a": 21}));
    assert_eq!(r["result"]["a"], 42, "{r}");
}

#[test]
fn the_gap_is_logged_in_the_log_format_asked_for() {
    use std::io::{BufRead, BufReader};

    let mut child = sandlot(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--allow-degraded",
        "--log-format",
        "json",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut warning = None;
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(60)) {
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if value["layer"] == "landlock" {
            warning = Some(value);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let warning = warning.expect("a log line naming the missing layer");
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert!(warning["message"]
        .as_str()
        .unwrap()
        .contains("--allow-degraded"));
}
