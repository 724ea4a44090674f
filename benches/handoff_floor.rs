//! The floor under sandlot's server: what a request costs when an HTTP server in front of
//! separate processes only hands each job to one and returns its answer — in its first mode no
//! fork, no jail, no pool to refill, no output file, no log line. The quickjs_floor models cost the other side (a
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
//!
//!     cargo bench --bench handoff_floor -- serve --fork-per-run --listen 127.0.0.1:PORT
//!
//! (or `HANDOFF_FORK_PER_RUN` set, as `bench/fresh_starts` can start it; its huge-pages column
//! then reads -1: it looks for a `__zygote` process).
//! `--fork-per-run` puts the other side of sandlot's shape behind the same server: the least a
//! run of it could cost, whole. Instead of persistent workers, a zygote forked before the
//! runtime builds the QuickJS globals model's heap (`quickjs_model`) with the memory layout a
//! javascript zygote has (its allocations in a child from a fresh region, QuickJS's arenas
//! filled, the heap on a 2 MiB boundary in huge pages), locks itself down as a javascript
//! zygote does, and forks a child per run ahead of demand (eight at first, one more for each
//! child the server takes), each joined to the server by a socket pair of its own. The zygote
//! hands the server that socket and a pidfd (with which the server kills a run that overstays
//! its time) in one message over a control socket; the child applies the jail's child half,
//! reads its job, runs it, writes its report and exits; the zygote reaps it before its next
//! fork. That is sandlot's protocol cut to what a jailed, single-use child behind a server needs:
//! no output file, no exit events, no log line, no limits of the job's own, no namespaces. The
//! CPU of the whole tree a request is that shape's floor, which `bench/compare`'s floor group
//! measures as it measures sandlot's.

use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use rquickjs::{Context, Runtime};
use sandlot::jail::Jail;
use sandlot::protocol::CHILD_CHANNEL_FD;
use serde_json::{json, Value};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::Semaphore;

mod quickjs_model;

/// As sandlot's binary: in a child, Rust's new memory comes from the child's fresh region.
#[global_allocator]
static ALLOCATOR: sandlot::zygote::out_of_memory::ReportingAllocator =
    sandlot::zygote::out_of_memory::ReportingAllocator;

/// How long a run may take before the server kills it: sandlot's default.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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
    if args.iter().any(|a| a == "--fork-per-run")
        || std::env::var_os("HANDOFF_FORK_PER_RUN").is_some()
    {
        let (server_control, zygote_control) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("the control socket pair");
        // SAFETY: single-threaded here; the zygote never returns to this function's caller.
        match unsafe { libc::fork() } {
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                drop(server_control);
                zygote(zygote_control)
            }
            _ => drop(zygote_control),
        }
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(serve_fresh(listen, server_control));
        return;
    }
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
        .route("/v1/run", post(run))
        .with_state(workers);
    serve_routes(&listen, app).await;
}

/// Serves `app` and `GET /readyz` on `listen`.
async fn serve_routes(listen: &str, app: Router) {
    let app = app.route(
        "/readyz",
        get(|| async { Json(json!({"status": "ready"})) }),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .expect("binding");
    axum::serve(listener, app).await.expect("serving");
}

/// A worker's or child's report as sandlot's native API answers it.
fn answer(report: &[u8]) -> Json<Value> {
    let report: Value = serde_json::from_slice(report).expect("a report");
    Json(json!({
        "ok": report["ok"],
        "result": report["result"],
        "stdout": "",
        "stderr": "",
        "exit_code": report["exit_code"],
    }))
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
    answer(&report)
}

/// How many children the zygote forks before any demand: a pool at c=8 grows to about this.
const POOL: usize = 8;

/// The zygote of `--fork-per-run`: the globals model's heap laid out as a javascript zygote
/// lays out its own (`zygote::run_zygote`, `JavascriptEngine::prepare`), locked down, then a
/// child forked for each byte the server sends. Leaves when the server's end closes.
fn zygote(control: OwnedFd) -> ! {
    use sandlot::zygote::javascript::quickjs_memory;
    use sandlot::zygote::{fresh_memory, huge_pages};
    huge_pages::align_program_break();
    fresh_memory::map_region();
    let runtime = Runtime::new_with_alloc(quickjs_memory::FreshInChild).expect("a QuickJS runtime");
    let context = Context::full(&runtime).expect("a QuickJS context");
    context
        .with(|ctx| quickjs_model::build(&ctx, quickjs_model::Level::Globals))
        .expect("building the heap");
    runtime.run_gc();
    context.with(|ctx| quickjs_memory::fill_arenas(&ctx));
    let heap_in_use = usize::try_from(runtime.memory_usage().malloc_size).unwrap_or(0);
    huge_pages::align_program_break();
    let _ = huge_pages::collapse_anonymous_memory();
    let _ = huge_pages::remap_read_only_code(false);
    let (mut jail, devnull) = quickjs_model::lock_down();
    loop {
        let mut command = [0u8; 1];
        match nix::unistd::read(&control, &mut command) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => panic!("reading the control socket: {e}"),
        }
        while let Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) =
            waitpid(None, Some(WaitPidFlag::WNOHANG))
        {}
        fork_child(
            &runtime,
            &context,
            heap_in_use,
            &mut jail,
            &devnull,
            &control,
        );
    }
    // SAFETY: ends the zygote without unwinding into the server's stack it was forked from.
    unsafe { libc::_exit(0) }
}

/// One child, handed to the server as its end of the child's socket pair and a pidfd.
fn fork_child(
    runtime: &Runtime,
    context: &Context,
    heap_in_use: usize,
    jail: &mut Jail,
    devnull: &OwnedFd,
    control: &OwnedFd,
) {
    let (server_end, child_end) = StdUnixStream::pair().expect("a socket pair");
    // SAFETY: the zygote is single-threaded; the child runs its job and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        sandlot::zygote::fresh_memory::use_region_in_child();
        // As a sandlot child: no cycle collection (which would copy every page of the shared
        // heap) before the run has allocated half of sandlot's default 256 MiB budget.
        runtime.set_gc_threshold(heap_in_use.saturating_add(128 << 20));
        drop(server_end);
        let output = devnull.try_clone();
        let locked = output.map_err(drop).and_then(|output| {
            jail.lock_child(devnull, child_end.into(), output)
                .map_err(drop)
        });
        if locked.is_ok() {
            // SAFETY: lock_child left the channel at its fixed number, owned by nothing else.
            let channel = unsafe { StdUnixStream::from_raw_fd(CHILD_CHANNEL_FD) };
            answer_one_job(context, channel);
        }
        // SAFETY: ends the child without unwinding or running the zygote's exit handlers.
        unsafe { libc::_exit(0) }
    }
    assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
    drop(child_end);
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as RawFd;
    assert!(
        pidfd >= 0,
        "pidfd_open: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the descriptor was just made and nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let fds = [server_end.as_raw_fd(), pidfd.as_raw_fd()];
    sendmsg::<()>(
        control.as_raw_fd(),
        &[IoSlice::new(b"F")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .expect("handing the child over");
}

/// A child's run: one job read from its channel, its report written back.
fn answer_one_job(context: &Context, mut channel: StdUnixStream) {
    let mut length = [0u8; 4];
    if channel.read_exact(&mut length).is_err() {
        return;
    }
    let mut job = vec![0u8; u32::from_le_bytes(length) as usize];
    if channel.read_exact(&mut job).is_err() {
        return;
    }
    let job = String::from_utf8(job).unwrap_or_default();
    let result = context
        .with(|ctx| quickjs_model::run(&ctx, &job))
        .unwrap_or_default();
    let result = if result.is_empty() { "null" } else { &result };
    let report = format!(r#"{{"ok":true,"result":{result},"exit_code":0}}"#);
    let mut frame = (report.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(report.as_bytes());
    let _ = channel.write_all(&frame);
}

/// The server's side of `--fork-per-run`: the children the zygote handed over, not yet taken.
struct Children {
    ready: Mutex<VecDeque<(UnixStream, OwnedFd)>>,
    available: Semaphore,
    control: AsyncFd<OwnedFd>,
}

impl Children {
    /// Asks the zygote for one more child.
    fn ask_for_one(&self) {
        nix::sys::socket::send(
            self.control.get_ref().as_raw_fd(),
            b"F",
            MsgFlags::MSG_DONTWAIT,
        )
        .expect("asking the zygote for a child");
    }

    /// Takes each child the zygote hands over into `ready`, as the runtime finds them.
    async fn receive(self: Arc<Self>) {
        loop {
            let mut guard = self.control.readable().await.expect("the control socket");
            loop {
                let mut byte = [0u8; 1];
                let mut iov = [IoSliceMut::new(&mut byte)];
                let mut space = nix::cmsg_space!([RawFd; 2]);
                let received = recvmsg::<()>(
                    self.control.get_ref().as_raw_fd(),
                    &mut iov,
                    Some(&mut space),
                    MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
                );
                let message = match received {
                    Ok(message) => message,
                    Err(nix::errno::Errno::EAGAIN) => {
                        guard.clear_ready();
                        break;
                    }
                    Err(e) => {
                        eprintln!("reading the control socket: {e}");
                        std::process::exit(1);
                    }
                };
                if message.bytes == 0 {
                    // The zygote is gone: no run could be answered any more.
                    eprintln!("the zygote closed its control socket");
                    std::process::exit(1);
                }
                let mut fds = Vec::new();
                for cmsg in message.cmsgs().expect("control messages") {
                    if let ControlMessageOwned::ScmRights(raw) = cmsg {
                        // SAFETY: the kernel just installed these descriptors in our table;
                        // nothing else owns them.
                        fds.extend(
                            raw.into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                let [channel, pidfd]: [OwnedFd; 2] = fds.try_into().expect("two descriptors");
                let channel = StdUnixStream::from(channel);
                channel.set_nonblocking(true).expect("non-blocking");
                let channel = UnixStream::from_std(channel).expect("registered");
                self.ready.lock().unwrap().push_back((channel, pidfd));
                self.available.add_permits(1);
            }
        }
    }
}

async fn serve_fresh(listen: String, control: OwnedFd) {
    let children = Arc::new(Children {
        ready: Mutex::new(VecDeque::new()),
        available: Semaphore::new(0),
        // SAFETY: `control` is an open descriptor owned by the AsyncFd from here on, so it stays
        // open and the same until the AsyncFd is dropped.
        control: unsafe { AsyncFd::register_with_interest(control, Interest::READABLE) }
            .expect("the control socket registered"),
    });
    for _ in 0..POOL {
        children.ask_for_one();
    }
    tokio::spawn(children.clone().receive());
    let app = Router::new()
        .route("/v1/run", post(run_fresh))
        .with_state(children);
    serve_routes(&listen, app).await;
}

async fn run_fresh(
    State(children): State<Arc<Children>>,
    Json(request): Json<Value>,
) -> Json<Value> {
    let job = serde_json::to_vec(&json!({
        "code": request["code"],
        "inputs": request["inputs"],
    }))
    .expect("a job");
    // In a task of its own, as in `run`: a request dropped by its client still ends its run.
    let report = tokio::spawn(async move {
        children.available.acquire().await.expect("open").forget();
        let (mut channel, pidfd) = children
            .ready
            .lock()
            .unwrap()
            .pop_front()
            .expect("a permit is a child");
        children.ask_for_one();
        let exchange = async {
            let mut frame = (job.len() as u32).to_le_bytes().to_vec();
            frame.extend_from_slice(&job);
            channel.write_all(&frame).await?;
            let mut length = [0u8; 4];
            channel.read_exact(&mut length).await?;
            let mut report = vec![0u8; u32::from_le_bytes(length) as usize];
            channel.read_exact(&mut report).await?;
            Ok::<_, std::io::Error>(report)
        };
        match tokio::time::timeout(TIMEOUT, exchange).await {
            Ok(report) => report.expect("the exchange"),
            Err(_) => {
                // SAFETY: sends SIGKILL through a pidfd this function owns.
                unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        pidfd.as_raw_fd(),
                        libc::SIGKILL,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                };
                br#"{"ok":false,"result":null,"exit_code":137}"#.to_vec()
            }
        }
    })
    .await
    .expect("the run");
    answer(&report)
}
