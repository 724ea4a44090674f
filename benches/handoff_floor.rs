//! The floor under sandlot's server: what a request costs when an HTTP server in front of
//! separate processes only hands each job to one and returns its answer — no fork, no jail, no
//! pool to refill, no output file, no log line. The quickjs_floor models cost the other side (a
//! child's fork, run and exit); this one costs what any server of sandlot's shape must add to
//! them, so that the two together say what a run could cost at the least.
//!
//!     cargo bench --bench handoff_floor -- serve --listen 127.0.0.1:PORT [--workers N]
//!                                            [--burn-us US]
//!
//! It answers `GET /readyz` and `POST /v1/run` (sandlot's native API, so that `bench/compare`'s
//! floor group and `bench/fresh_starts` drive it as they drive sandlot). Before its runtime
//! starts it forks N persistent workers (8 by default, `--workers`' default on two cores), each
//! joined to the server by a socket pair. A request's body is decoded, encoded as a job, written
//! to an idle worker as one length-prefixed frame; the worker spends US microseconds of CPU
//! (`--burn-us` or `HANDOFF_BURN_US`, 0 by default: a run's work, so that the server meets busy
//! cores) and answers a fixed report in one frame, which the server decodes and answers as
//! JSON. The server's stack is sandlot's: tokio's multi-thread runtime, axum, hyper. Its CPU a
//! request, less the burn, is the hand-off's floor.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::Semaphore;

const REPORT: &[u8] = br#"{"ok":true,"result":{"sum":3},"exit_code":0}"#;

struct Workers {
    idle: Mutex<Vec<UnixStream>>,
    available: Semaphore,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let listen = value_of("--listen").unwrap_or_else(|| "127.0.0.1:18090".to_owned());
    let workers: usize = value_of("--workers").map_or(8, |n| n.parse().expect("--workers N"));
    let burn_us: u64 = value_of("--burn-us")
        .or_else(|| std::env::var("HANDOFF_BURN_US").ok())
        .map_or(0, |n| n.parse().expect("--burn-us N"));
    // Forked while this process has one thread: the workers are plain copies of it.
    let mut ends = Vec::new();
    for _ in 0..workers {
        let (server_end, worker_end) = StdUnixStream::pair().expect("a socket pair");
        // SAFETY: single-threaded here; the child only reads and writes its socket and exits.
        match unsafe { libc::fork() } {
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                drop(server_end);
                drop(ends);
                answer_jobs(worker_end, burn_us);
                // SAFETY: leaves the worker without running the parent's exit handlers.
                unsafe { libc::_exit(0) }
            }
            _ => {
                drop(worker_end);
                ends.push(server_end);
            }
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(serve(listen, ends));
}

/// A worker: one report for each job, until the server closes its end.
fn answer_jobs(mut socket: StdUnixStream, burn_us: u64) {
    let mut job = Vec::new();
    loop {
        let mut length = [0u8; 4];
        if socket.read_exact(&mut length).is_err() {
            return;
        }
        job.resize(u32::from_le_bytes(length) as usize, 0);
        if socket.read_exact(&mut job).is_err() {
            return;
        }
        burn(burn_us);
        let mut frame = (REPORT.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(REPORT);
        if socket.write_all(&frame).is_err() {
            return;
        }
    }
}

/// Spends `us` microseconds of this process's CPU time: a run's work, so that the server meets
/// the cores as busy as a loaded sandlot's and pays its wake-ups as it would there.
fn burn(us: u64) {
    let cpu_now = || {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes the calling process's CPU time into `now`, which it owns.
        unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
        now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000
    };
    let until = cpu_now() + us;
    while cpu_now() < until {
        std::hint::spin_loop();
    }
}

async fn serve(listen: String, ends: Vec<StdUnixStream>) {
    let idle = ends
        .into_iter()
        .map(|end| {
            end.set_nonblocking(true).expect("non-blocking");
            UnixStream::from_std(end).expect("registered")
        })
        .collect::<Vec<_>>();
    let workers = Arc::new(Workers {
        available: Semaphore::new(idle.len()),
        idle: Mutex::new(idle),
    });
    let app = Router::new()
        .route(
            "/readyz",
            get(|| async { Json(json!({"status": "ready"})) }),
        )
        .route("/v1/run", post(run))
        .with_state(workers);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .expect("binding");
    axum::serve(listener, app).await.expect("serving");
}

async fn run(State(workers): State<Arc<Workers>>, Json(request): Json<Value>) -> Json<Value> {
    let job = serde_json::to_vec(&json!({
        "language": request["language"],
        "code": request["code"],
        "inputs": request["inputs"],
    }))
    .expect("a job");
    // In a task of its own: a request dropped by its client still finishes its exchange, so
    // the worker goes back idle in step.
    let report = tokio::spawn(async move {
        let _permit = workers.available.acquire().await.expect("open");
        let mut worker = workers
            .idle
            .lock()
            .unwrap()
            .pop()
            .expect("a permit is a worker");
        let mut frame = (job.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&job);
        worker.write_all(&frame).await.expect("job written");
        let mut length = [0u8; 4];
        worker.read_exact(&mut length).await.expect("report length");
        let mut report = vec![0u8; u32::from_le_bytes(length) as usize];
        worker.read_exact(&mut report).await.expect("report");
        workers.idle.lock().unwrap().push(worker);
        report
    })
    .await
    .expect("the exchange");
    let report: Value = serde_json::from_slice(&report).expect("a report");
    Json(json!({
        "ok": report["ok"],
        "result": report["result"],
        "stdout": "",
        "stderr": "",
        "exit_code": report["exit_code"],
    }))
}
