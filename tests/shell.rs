//! The jailed shell, over `POST /v1/sandbox/execute_shell` and `POST /v1/run`: what a command
//! can do (echo, pwd, env, exit codes, its own files under /tmp) and, judged by effect, what it
//! cannot (see the host's files, write outside its tmpfs, reach the host's network, outlive its
//! deadline, exhaust the host's processes).

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn shell(body: Value) -> Value {
    let reply = common::shared().post("/v1/sandbox/execute_shell", &body.to_string(), &[]);
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

/// Every host process whose command line holds `needle`.
fn host_processes_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

/// No host process matches `needle` within three seconds.
fn assert_gone_soon(needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = host_processes_with(needle);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes outlived their run: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn echo_pwd_env_and_exit_codes() {
    let r = shell(json!({"command": "echo \"Hello, World!\"", "timeout": 10}));
    assert_eq!(r["stdout"], "Hello, World!\n");
    assert_eq!(r["exit_code"], 0);

    let r = shell(
        json!({"command": "pwd; echo $HOME; echo \"$FOO\"", "working_dir": "/tmp/work/deep", "env": {"FOO": "bar baz"}}),
    );
    assert_eq!(r["stdout"], "/tmp/work/deep\n/tmp\nbar baz\n", "{r}");

    let r = shell(json!({"command": "ls -la", "working_dir": "/tmp"}));
    assert_eq!(r["exit_code"], 0, "{r}");

    let r = shell(json!({"command": "echo out; echo err >&2; exit 7"}));
    assert_eq!(
        (
            r["stdout"].as_str(),
            r["stderr"].as_str(),
            r["exit_code"].as_i64()
        ),
        (Some("out\n"), Some("err\n"), Some(7))
    );

    let r = shell(json!({"command": "kill -TERM $$; echo survived"}));
    assert_eq!(r["exit_code"], 128 + 15, "death by signal is 128+n: {r}");
}

#[test]
fn the_environment_is_minimal_and_never_the_servers() {
    let canary = common::random_token();
    let s = common::start(&[], &[("SHELL_ENV_CANARY", canary.as_str())]);
    let reply = s.post(
        "/v1/sandbox/execute_shell",
        &json!({"command": "env; cat /proc/1/environ"}).to_string(),
        &[],
    );
    assert!(!reply.text.contains(&canary), "{}", reply.text);
    let names: Vec<&str> = reply.body["stdout"]
        .as_str()
        .unwrap()
        .lines()
        .filter_map(|l| l.split('=').next())
        .filter(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !n.is_empty())
        .collect();
    for name in names {
        assert!(
            [
                "PATH",
                "HOME",
                "LANG",
                "PWD",
                "SHLVL",
                "OLDPWD",
                "_",
                "SANDLOT_OUTPUT_DIR"
            ]
            .contains(&name),
            "{name} leaked: {}",
            reply.text
        );
    }
}

#[test]
fn its_files_live_and_die_with_the_run() {
    let r = shell(
        json!({"command": "echo data > /tmp/note && cat /tmp/note && mkdir -p /tmp/a/b && touch /tmp/a/b/c && ls /tmp/a/b"}),
    );
    assert_eq!(r["stdout"], "data\nc\n", "{r}");
    let r = shell(json!({"command": "cat /tmp/note"}));
    assert_ne!(r["exit_code"], 0, "a later run sees a fresh /tmp: {r}");
}

#[test]
fn no_host_file_is_visible() {
    let token = common::random_token();
    let name = common::random_token();
    let canary = std::env::temp_dir().join(format!("sandlot-shell-canary-{name}"));
    std::fs::write(&canary, &token).unwrap();
    let r = shell(json!({"command": format!(
        "cat {0}; ls /root /home /work; cat /proc/{1}/environ; ls /proc/{1}; cat /etc/shadow; ls /etc; \
         find /tmp /etc /dev -name 'sandlot-shell-canary-*' 2>/dev/null",
        canary.display(), std::process::id())}));
    std::fs::remove_file(&canary).unwrap();
    assert!(!r.to_string().contains(&token), "the canary was read: {r}");
    let stdout = r["stdout"].as_str().unwrap();
    assert!(!stdout.contains("root:"), "{r}");
    let etc: Vec<&str> = stdout.lines().collect();
    assert!(
        !etc.contains(&"shadow") && !etc.contains(&"ssh"),
        "a minimal /etc: {r}"
    );
}

#[test]
fn no_write_outside_its_tmpfs() {
    let token = common::random_token();
    let target = std::env::temp_dir().join(format!("sandlot-shell-write-{token}"));
    std::fs::write(&target, &token).unwrap();
    let host_file = target.display().to_string();
    let r = shell(json!({"command": format!(
        "echo pwned > {host_file}; echo x > /usr/sandlot-{token}; touch /bin/sandlot-{token}; \
         echo x > /etc/ld.so.cache; mkdir /usr/lib/sandlot-{token}; echo done"
    )}));
    assert_eq!(r["stdout"], "done\n", "{r}");
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        token,
        "the host file changed"
    );
    std::fs::remove_file(&target).unwrap();
    assert!(!std::path::Path::new(&format!("/usr/sandlot-{token}")).exists());
    assert!(!std::path::Path::new(&format!("/usr/bin/sandlot-{token}")).exists());
    assert!(!std::path::Path::new(&format!("/usr/lib/sandlot-{token}")).exists());
    let stderr = r["stderr"].as_str().unwrap();
    assert!(stderr.contains("Read-only file system"), "{r}");
}

#[test]
fn a_host_listener_gets_no_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let r = shell(json!({"command": format!(
        "python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 2)\"; \
         echo hi > /dev/tcp/127.0.0.1/{port}; \
         python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=2)\"; echo tried"
    )}));
    assert!(r["stdout"].as_str().unwrap().contains("tried"), "{r}");
    // A connection the command made was queued before its answer came back.
    common::assert_no_connection_before_ours(&listener, &r.to_string());
}

#[test]
fn a_timeout_kills_the_whole_tree() {
    let unique = format!(
        "{}.{}",
        900 + std::process::id() % 99,
        std::process::id() % 1000
    );
    let started = Instant::now();
    let r = shell(
        json!({"command": format!("sleep {unique} & (sleep {unique} &) ; sleep 30; echo never"), "timeout": 1}),
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(r["exit_code"], 124, "{r}");
    assert!(!r["stdout"].as_str().unwrap().contains("never"));
    // Background children die with the namespace's pid 1.
    assert_gone_soon(&format!("sleep {unique}"));
}

#[test]
fn background_children_die_when_the_command_ends() {
    let unique = format!(
        "{}.{}",
        800 + std::process::id() % 97,
        std::process::id() % 997
    );
    let r = shell(json!({"command": format!("sleep {unique} & echo started")}));
    assert_eq!(r["stdout"], "started\n", "{r}");
    assert_gone_soon(&format!("sleep {unique}"));
}

#[test]
fn a_fork_bomb_is_contained() {
    let s = common::start(&[], &[]);
    let started = Instant::now();
    let reply = s.post(
        "/v1/sandbox/execute_shell",
        &json!({"command": "bomb() { bomb | bomb & }; bomb; sleep 3", "timeout": 2}).to_string(),
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(started.elapsed() < Duration::from_secs(6));
    // The server and its other languages still answer, right away.
    let r = s.run(json!({"language": "python", "code": "def main():\n    return {'ok': 1}"}));
    assert_eq!(r["result"]["ok"], 1, "{r}");
    let r = s.post(
        "/v1/sandbox/execute_shell",
        &json!({"command": "echo alive"}).to_string(),
        &[],
    );
    assert_eq!(r.body["stdout"], "alive\n", "{}", r.text);
}

#[test]
fn the_native_api_runs_shell_too() {
    let r = common::shared()
        .run(json!({"language": "bash", "code": "echo $((6 * 7))", "env": {"X": "1"}}));
    assert_eq!(r["stdout"], "42\n", "{r}");
    assert_eq!(r["result"], Value::Null);
    let reply = common::shared().post(
        "/v1/run",
        &json!({"language": "sh", "code": "true", "working_dir": "/usr/lib"}).to_string(),
        &[],
    );
    assert_eq!(reply.status, 400);
    assert!(reply.text.contains("working_dir"), "{}", reply.text);
    let reply = common::shared().post(
        "/v1/run",
        &json!({"language": "sh", "code": "true", "working_dir": "relative"}).to_string(),
        &[],
    );
    assert_eq!(reply.status, 400);
}
