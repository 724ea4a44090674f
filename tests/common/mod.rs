//! Starts real `sandlot serve` processes for the integration tests and talks to them over HTTP.
#![allow(dead_code)]

pub mod echo;
pub mod processes;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

pub struct Server {
    pub base: String,
    pub pid: u32,
}

/// How each server [`start`] started has ended, by pid, once its thread has seen it end: a
/// request that finds no server says so (the servers' stderr goes nowhere).
static ENDED: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());

/// The server shared by the tests of one test binary (default settings, no key).
pub fn shared() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| start(&[], &[]))
}

/// A server of one's own, with extra flags and environment variables.
pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Server {
    start_under(args, envs, || Ok(()))
}

/// Like [`start`], with `pre_exec` run in the server's process just before it execs (to start
/// it under restrictions a real deployment might impose).
pub fn start_under(
    args: &[&str],
    envs: &[(&str, &str)],
    pre_exec: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
) -> Server {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let envs: Vec<(String, String)> = envs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (tx, rx) = mpsc::channel();
    // The server gets PDEATHSIG, which fires when the spawning *thread* ends: spawn it from a
    // thread that lives as long as the test process.
    std::thread::spawn(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sandlot"));
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(&args)
            .envs(envs)
            .env_remove("SANDLOT_API_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut pre_exec = pre_exec;
        // SAFETY: prctl is async-signal-safe and touches no memory; callers' hooks are too.
        unsafe {
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                pre_exec()
            });
        }
        let mut child = command.spawn().expect("starting sandlot serve");
        let pid = child.id();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut sent = false;
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if let Some(address) = line.strip_prefix("sandlot: ready on ") {
                if !sent {
                    tx.send((address.to_string(), pid)).unwrap();
                    sent = true;
                }
            }
        }
        let status = child.wait();
        let status = status.map_or_else(|e| format!("unknown ({e})"), |s| s.to_string());
        ENDED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((pid, status));
        loop {
            std::thread::park();
        }
    });
    let (base, pid) = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("sandlot serve did not become ready within 120 s");
    Server { base, pid }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub headers: Vec<(String, String)>,
}

impl Server {
    pub fn post(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = agent()
            .post(format!("{}{}", self.base, path))
            .header("content-type", "application/json");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        reply(
            request
                .send(body)
                .unwrap_or_else(|e| panic!("HTTP request: {e:?}{}", self.fate())),
        )
    }

    pub fn get(&self, path: &str) -> Reply {
        self.get_with(path, &[])
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = agent().get(format!("{}{}", self.base, path));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        reply(
            request
                .call()
                .unwrap_or_else(|e| panic!("HTTP request: {e:?}{}", self.fate())),
        )
    }

    /// Whether the server has ended, and how, for a failed request's message (waiting a
    /// moment for its thread to see the end).
    fn fate(&self) -> String {
        for _ in 0..20 {
            let ended = ENDED.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, status)) = ended.iter().find(|(pid, _)| *pid == self.pid) {
                return format!("; the server (pid {}) has ended: {status}", self.pid);
            }
            drop(ended);
            std::thread::sleep(Duration::from_millis(50));
        }
        format!(
            "; the server (pid {}) has not been seen to end; its state {:?}, signals pending \
             {:#x}; the sockets on its port: [{}]",
            self.pid,
            processes::state(self.pid as i32),
            processes::pending_signals(self.pid as i32),
            sockets_on_port(&self.base)
        )
    }

    /// POST /v1/run with a JSON body; asserts HTTP 200.
    pub fn run(&self, body: Value) -> Value {
        let reply = self.post("/v1/run", &body.to_string(), &[]);
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.body
    }

    pub fn python(&self, code: &str, inputs: Value) -> Value {
        self.run(serde_json::json!({"language": "python", "code": code, "inputs": inputs}))
    }

    pub fn javascript(&self, code: &str, inputs: Value) -> Value {
        self.run(serde_json::json!({"language": "javascript", "code": code, "inputs": inputs}))
    }
}

/// The `result` of a run's reply, which must be `ok`.
pub fn ok_result(reply: Value) -> Value {
    assert_eq!(reply["ok"], true, "{reply}");
    reply["result"].clone()
}

fn reply(mut response: ureq::http::Response<ureq::Body>) -> Reply {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let text = response
        .body_mut()
        .with_config()
        .limit(256 * 1024 * 1024)
        .read_to_string()
        .unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        body,
        text,
        headers,
    }
}

/// Looks at `condition` until it gives a value, and returns it; panics saying what was awaited
/// once `limit` has passed. The limit only bounds a failure: the wait ends on the condition.
pub fn wait_for<T>(
    limit: Duration,
    what: impl Fn() -> String,
    mut condition: impl FnMut() -> Option<T>,
) -> T {
    let until = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(
            std::time::Instant::now() < until,
            "waited {limit:?} for {}",
            what()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A control run: Python and JavaScript each add 1 to `n`, showing the server still serves
/// (`key`, when not empty, goes in `Authorization: Bearer`).
pub fn control(server: &Server, key: &str, n: u64) -> Result<(), String> {
    let bearer = format!("Bearer {key}");
    let headers: &[(&str, &str)] = if key.is_empty() {
        &[]
    } else {
        &[("authorization", &bearer)]
    };
    for (language, code) in [
        ("python", "def main(a, b):\n    return {'sum': a + b}"),
        (
            "javascript",
            "function main({a, b}) { return {sum: a + b} }",
        ),
    ] {
        let body =
            serde_json::json!({"language": language, "code": code, "inputs": {"a": n, "b": 1}});
        let reply = server.post("/v1/run", &body.to_string(), headers);
        if reply.status != 200 || reply.body["result"]["sum"] != serde_json::json!(n + 1) {
            return Err(format!(
                "{language} control run {n}: {} {}",
                reply.status, reply.text
            ));
        }
    }
    Ok(())
}

/// Asserts that nothing connected to `listener` before this call. A negative check needs a
/// positive control: this connects to it itself and accepts; the first connection in its queue
/// must be this one. Any earlier connection (whose handshake the kernel completed before the
/// connecting call returned) would be queued ahead of it. `listener` may be non-blocking.
pub fn assert_no_connection_before_ours(listener: &std::net::TcpListener, what: &str) {
    let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let ours = ours.local_addr().unwrap();
    let (mut first, peer) = wait_for(
        Duration::from_secs(10),
        || "our own connection to the listener".to_owned(),
        || match listener.accept() {
            Ok(accepted) => Some(accepted),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(e) => panic!("accept: {e}"),
        },
    );
    if peer != ours {
        let _ = first.set_read_timeout(Some(Duration::from_secs(1)));
        let mut seen = String::new();
        let _ = std::io::Read::read_to_string(&mut first, &mut seen);
        panic!("the listener got a connection from {peer}: {seen:?} ({what})");
    }
}

/// A unique value for canaries.
pub fn random_token() -> String {
    let mut bytes = [0u8; 16];
    // SAFETY: getrandom fills the buffer it is given.
    unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A server whose process the test holds (to signal it and see how it exits) and whose log
/// (stderr) it reads. It dies with the test's thread.
pub struct Watched {
    pub server: Server,
    pub child: std::process::Child,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Has `command`'s process killed when the thread that spawns it (the test) ends.
pub fn dies_with_the_test(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            Ok(())
        });
    }
}

/// Starts `sandlot serve ARGS` (no `--listen` added) and waits for its ready line.
pub fn start_watched(args: &[&str], envs: &[(&str, &str)]) -> Watched {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sandlot"));
    command
        .arg("serve")
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("SANDLOT_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    dies_with_the_test(&mut command);
    let mut child = command.spawn().expect("starting sandlot serve");
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            lines.lock().unwrap().push(line);
        }
    });
    let (tx, rx) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if let Some(address) = line.strip_prefix("sandlot: ready on ") {
                let _ = tx.send(address.to_string());
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("sandlot serve did not become ready: {:?}", log.lock()));
    let pid = child.id();
    Watched {
        server: Server { base, pid },
        child,
        log,
    }
}

/// `python3` with the PyPI packages a test uses as an independent checker (a validator, a
/// linter), installed once into `target/test-tools`; `None` (and the reason, printed) when they
/// cannot be had on this machine.
pub fn python_with(packages: &[&str], modules: &[&str]) -> Option<Command> {
    let tools = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools");
    let python = || {
        let mut command = Command::new("python3");
        command.env("PYTHONPATH", &tools);
        command
    };
    let importable = || {
        python()
            .arg("-c")
            .arg(
                modules
                    .iter()
                    .map(|m| format!("import {m}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if importable() {
        return Some(python());
    }
    // One test binary installs at a time (the tests of a binary run in threads).
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if importable() {
        return Some(python());
    }
    let installed = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&tools)
        .args(packages)
        .output();
    match installed {
        Ok(out) if out.status.success() && importable() => Some(python()),
        Ok(out) => {
            eprintln!(
                "SKIPPED: pip could not install {packages:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("SKIPPED: no python3 to install {packages:?} with: {e}");
            None
        }
    }
}

impl Server {
    /// Waits until the python-data zygote is up (its packages installed, which may take
    /// minutes the first time); fails at once if the install failed. Returns `/readyz`.
    pub fn wait_for_python_data(&self, limit: Duration) -> Reply {
        let until = std::time::Instant::now() + limit;
        loop {
            let ready = self.get("/readyz");
            let packages = &ready.body["python_packages"];
            if packages["zygote"]["ready"] == true {
                return ready;
            }
            let state = packages["state"].as_str().unwrap_or("");
            assert!(
                !state.starts_with("unavailable"),
                "the install failed: {}",
                ready.text
            );
            assert!(
                std::time::Instant::now() < until,
                "the data packages were not ready in {limit:?}: {}",
                ready.text
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Every TCP socket on the port of `base` (its listener, and any other socket there in any
/// state), as `ss` lists them; empty where `ss` is missing.
fn sockets_on_port(base: &str) -> String {
    let port = format!(":{} ", base.rsplit(':').next().unwrap_or_default());
    let listed = Command::new("ss").arg("-tanp").output();
    listed
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains(&port))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(" / ")
        })
        .unwrap_or_default()
}
