//! One zygote as the server sees it: a process re-executed from our own binary, a control
//! socket, a prefork pool of its children ([`Pool`]), and a thread of its own that starts it,
//! waits while the server's runtime reads its events, and restarts it when it dies.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{oneshot, watch};

use super::pool::{Pool, Taken};
use super::zygote_spawn::{relay_stderr, spawn_zygote};
use crate::control_socket;
use crate::jail::settings::JailSettings;
use crate::protocol::{ExitStatus, ZygoteCommand, ZygoteEvent, ZygoteKind};

/// A child handed over by its zygote: forked, jailed, and waiting for its job.
pub struct Forked {
    pub pid: i32,
    /// The stream the job goes in and the report comes out.
    pub channel: OwnedFd,
    pub pidfd: OwnedFd,
    /// Where the child writes its output ([`crate::output_region`]).
    pub output: std::fs::File,
    /// Resolves when the zygote reaps the child; fails if the zygote dies first.
    pub exit: oneshot::Receiver<ExitStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ZygoteStatus {
    pub kind: &'static str,
    pub ready: bool,
    pub pid: Option<i32>,
    pub restarts: u32,
    pub last_error: Option<String>,
    /// Children forked and jailed ahead of demand.
    pub pool: usize,
}

/// Why no child could be had for a run.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// The zygote did not become ready in time.
    #[error("{0}")]
    NotReady(String),
    /// The zygote died (or its socket broke) before a child was handed over: the run may be
    /// tried again once it is back.
    #[error("{0}")]
    Lost(String),
    #[error("{0}")]
    ForkFailed(String),
}

/// Why a zygote stopped serving; the supervisor thread restarts it.
#[derive(Debug, thiserror::Error)]
enum Down {
    #[error("creating its control socket failed: {0}")]
    ControlSocket(#[source] std::io::Error),
    #[error("starting it failed: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("{0}")]
    StartFailed(String),
    #[error("it sent {0} before it was ready")]
    UnexpectedFirstEvent(String),
    #[error("it exited while starting")]
    ExitedStarting,
    #[error("it exited")]
    Exited,
    #[error("reading its control socket failed: {0}")]
    ReadControl(#[source] std::io::Error),
    #[error("it handed over child {0} without its descriptors")]
    MissingDescriptors(i32),
    #[error("the server's supervisor of it panicked: {0}")]
    Panicked(String),
    #[error("the server is stopping")]
    ServerStopping,
}

/// Runs `serve`, a panic in it becoming [`Down::Panicked`].
fn guarded(serve: impl FnOnce() -> Result<(), Down>) -> Result<(), Down> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(serve))
        .unwrap_or_else(|panic| Err(Down::Panicked(panic_message(&*panic))))
}

fn ignoring_poison<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The zygote's next event, when it comes; `Ok(None)` is the zygote gone.
async fn next_event(
    events: &AsyncFd<OwnedFd>,
) -> std::io::Result<Option<(ZygoteEvent, Vec<OwnedFd>)>> {
    events
        .async_io(Interest::READABLE, control_socket::recv::<ZygoteEvent>)
        .await
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

pub struct ZygoteProcess {
    kind: ZygoteKind,
    jail: JailSettings,
    /// Variables this kind of zygote needs beyond the common minimal environment.
    env: Vec<(String, String)>,
    status: watch::Sender<ZygoteStatus>,
    control: Mutex<Control>,
    /// Set by [`Self::retire`]: the zygote is killed and not restarted.
    retired: AtomicBool,
    /// The server's end of the running zygote's control socket, which `retire` shuts down.
    live_socket: Mutex<Option<OwnedFd>>,
    /// The server's runtime, whose workers read the zygote's events.
    runtime: tokio::runtime::Handle,
}

struct Control {
    /// The server's end of the control socket; `None` while the zygote is (re)starting.
    socket: Option<Arc<OwnedFd>>,
    pool: Pool,
    exits: HashMap<i32, oneshot::Sender<ExitStatus>>,
}

/// A child taken from the pool for one run; the pool counts it in use until this is dropped.
pub struct InUse<'a>(&'a ZygoteProcess);

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        self.0.control().pool.release();
    }
}

impl ZygoteProcess {
    /// Starts the zygote (in the background) with a pool of at most `pool_max` children. Called
    /// on the server's runtime, which reads the zygote's events.
    pub fn start(kind: ZygoteKind, jail: JailSettings, pool_max: usize) -> Arc<Self> {
        Self::start_with_env(kind, jail, pool_max, Vec::new())
    }

    /// How many children a pool keeps without demand: one, so that a request after a quiet
    /// spell finds a child ready; none of the python-data zygote, whose children are copies of
    /// some 80 MB of page tables and memory each, forked once data runs come.
    fn idle_pool(kind: ZygoteKind) -> usize {
        match kind {
            ZygoteKind::PythonData => 0,
            _ => 1,
        }
    }

    pub fn start_with_env(
        kind: ZygoteKind,
        jail: JailSettings,
        pool_max: usize,
        env: Vec<(String, String)>,
    ) -> Arc<Self> {
        let (status, _) = watch::channel(ZygoteStatus {
            kind: kind.name(),
            ready: false,
            pid: None,
            restarts: 0,
            last_error: None,
            pool: 0,
        });
        let this = Arc::new(Self {
            kind,
            jail,
            env,
            status,
            control: Mutex::new(Control {
                socket: None,
                pool: Pool::new(pool_max, Self::idle_pool(kind)),
                exits: HashMap::new(),
            }),
            retired: AtomicBool::new(false),
            live_socket: Mutex::new(None),
            runtime: tokio::runtime::Handle::current(),
        });
        let supervised = this.clone();
        // A dedicated thread that lives as long as the server: the zygote's PDEATHSIG fires
        // when the *thread* that spawned it ends, so it must not be a pooled one.
        std::thread::Builder::new()
            .name(format!("zygote-{}", kind.name()))
            .spawn(move || supervised.supervise())
            .expect("spawning a supervisor thread");
        this
    }

    pub fn kind(&self) -> ZygoteKind {
        self.kind
    }

    /// The control state. A panic while it was held (which the supervisor thread survives,
    /// see [`Self::supervise`]) leaves it poisoned; the state is still consistent enough to
    /// clear, and [`Self::mark_down`] clears it, so the poison is ignored rather than turning
    /// every later request for this language into a panic.
    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        ignoring_poison(&self.control)
    }

    pub fn status(&self) -> ZygoteStatus {
        let mut status = self.status.borrow().clone();
        status.pool = self.control().pool.size();
        status
    }

    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let mut rx = self.status.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|s| s.ready))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A child for one run: one from the pool, or the next one forked. Asks the zygote for
    /// replacements before it returns, so the pool refills while the run goes on.
    pub async fn take(&self) -> Result<(Forked, InUse<'_>), TakeError> {
        // Ready is the common case: no watch subscribed nor timer set for it.
        let ready = self.status.borrow().ready;
        if !ready && !self.wait_ready(Duration::from_secs(30)).await {
            return Err(TakeError::NotReady(format!(
                "the {} zygote is not ready (it is starting or restarting)",
                self.kind.name()
            )));
        }
        let taken = {
            let mut control = self.control();
            let taken = control.pool.take();
            if let Err(e) = control.request_forks() {
                control.pool.release();
                // The zygote is gone: requests wait for its restart rather than find the same
                // broken socket (the supervisor thread sees the end of it soon and restarts it).
                control.socket = None;
                self.status.send_modify(|s| s.ready = false);
                return Err(TakeError::Lost(format!(
                    "asking the {} zygote to fork: {e}",
                    self.kind.name()
                )));
            }
            taken
        };
        let in_use = InUse(self);
        let child = match taken {
            Taken::Ready(child) => child,
            Taken::Wait(reply) => reply
                .await
                .map_err(|_| {
                    TakeError::Lost(format!(
                        "the {} zygote died before it handed over a child",
                        self.kind.name()
                    ))
                })?
                .map_err(|e| {
                    TakeError::ForkFailed(format!(
                        "the {} zygote could not fork: {e}",
                        self.kind.name()
                    ))
                })?,
        };
        Ok((child, in_use))
    }

    /// Lets the pool shrink back to what recent demand needs.
    pub fn trim(&self) {
        self.control().pool.trim();
    }

    /// Kills the zygote for good (a python-data zygote replaced by one with new packages):
    /// its thread ends instead of restarting it.
    pub fn retire(&self) {
        if self.retired.swap(true, Ordering::SeqCst) {
            return;
        }
        // Its thread, reading the control socket (starting or serving), reads the end of it
        // and kills the zygote through its own handle: no pid that may be reused, and a zygote
        // that hangs while it starts is killed too.
        let live = self.live_socket.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(socket) = live.as_ref() {
            let _ =
                nix::sys::socket::shutdown(socket.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        }
    }

    /// Runs on the zygote's own thread until the zygote is retired.
    fn supervise(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            let outcome = self.run_once();
            if self.retired.load(Ordering::SeqCst) {
                self.control().pool.clear();
                self.status.send_modify(|s| {
                    s.ready = false;
                    s.pid = None;
                });
                tracing::info!(zygote = self.kind.name(), "zygote retired");
                return;
            }
            if matches!(outcome, Err(Down::ServerStopping)) {
                return; // `run_once` killed it; nothing is to be restarted
            }
            self.mark_down(outcome.err());
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(100);
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
            self.status.send_modify(|s| s.restarts += 1);
        }
    }

    /// Spawns the zygote and serves its events until it dies.
    fn run_once(self: &Arc<Self>) -> Result<(), Down> {
        let (ours, theirs) = control_socket::pair().map_err(Down::ControlSocket)?;
        let mut process =
            spawn_zygote(self.kind, &self.jail, &self.env, &theirs).map_err(Down::Spawn)?;
        drop(theirs);
        tracing::info!(
            zygote = self.kind.name(),
            pid = process.id(),
            restarts = self.status.borrow().restarts,
            "zygote started"
        );
        if let Some(stderr) = process.stderr.take() {
            let kind = self.kind.name();
            std::thread::spawn(move || relay_stderr(kind, stderr));
        }
        // A panic while serving must not end this thread: the zygote's PDEATHSIG would fire
        // and nothing would restart it, while /readyz still said ready. It is a restart.
        *self.live_socket.lock().unwrap_or_else(|e| e.into_inner()) = ours.try_clone().ok();
        let result = if self.retired.load(Ordering::SeqCst) {
            Ok(()) // retired before it could be cut
        } else {
            guarded(|| self.serve_events(&ours, process.id() as i32))
        };
        *self.live_socket.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let _ = process.kill();
        let _ = process.wait();
        result
    }

    /// Reads the zygote's events until it dies. They are read on the server's runtime, whose
    /// workers are awake while runs come and go: a thread woken for each event cost ~1 context
    /// switch a run. This thread only waits for the end of it.
    fn serve_events(self: &Arc<Self>, socket: &OwnedFd, pid: i32) -> Result<(), Down> {
        let ours = socket.try_clone().map_err(Down::ReadControl)?;
        // Held weakly, so that this thread's is the only strong hold the zygote's serving keeps
        // (python_data.rs retires a replaced zygote once nothing else holds it).
        let reading = self
            .runtime
            .spawn(Self::read_events(Arc::downgrade(self), ours, pid));
        match self.runtime.block_on(reading) {
            Ok(outcome) => outcome,
            Err(e) if e.is_panic() => Err(Down::Panicked(panic_message(&*e.into_panic()))),
            // The runtime is shutting down: so is the server.
            Err(_) => Err(Down::ServerStopping),
        }
    }

    async fn read_events(zygote: Weak<Self>, socket: OwnedFd, pid: i32) -> Result<(), Down> {
        let commands = Arc::new(socket.try_clone().map_err(Down::ReadControl)?);
        // SAFETY: `socket` is an open descriptor owned by the AsyncFd from here on, so it stays
        // open and the same until the AsyncFd is dropped.
        let events = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
            .map_err(|e| Down::ReadControl(e.into()))?;
        // Until `Ready`, the zygote is importing its whitelist.
        match next_event(&events).await {
            Ok(Some((ZygoteEvent::Ready { .. }, _))) => {}
            Ok(Some((ZygoteEvent::ForkFailed { message }, _))) => {
                return Err(Down::StartFailed(message))
            }
            Ok(Some((other, _))) => return Err(Down::UnexpectedFirstEvent(format!("{other:?}"))),
            Ok(None) => return Err(Down::ExitedStarting),
            Err(e) => return Err(Down::ReadControl(e)),
        }
        {
            // Its supervisor thread holds it until this task ends.
            let Some(this) = zygote.upgrade() else {
                return Ok(());
            };
            {
                let mut control = this.control();
                control.socket = Some(commands);
                // Fill the pool before the first request comes.
                let _ = control.request_forks();
            }
            this.status.send_modify(|s| {
                s.ready = true;
                s.pid = Some(pid);
            });
            if this.retired.load(Ordering::SeqCst) {
                return Ok(()); // retired while it started: `run_once` kills it
            }
            tracing::info!(zygote = this.kind.name(), pid, "zygote ready");
        }
        loop {
            let (event, fds) = match next_event(&events).await {
                Ok(Some(received)) => received,
                Ok(None) => return Err(Down::Exited),
                Err(e) => return Err(Down::ReadControl(e)),
            };
            match zygote.upgrade() {
                Some(this) => this.handle_event(event, fds)?,
                None => return Ok(()),
            }
        }
    }

    /// One event of a ready zygote's.
    fn handle_event(&self, event: ZygoteEvent, mut fds: Vec<OwnedFd>) -> Result<(), Down> {
        let mut control = self.control();
        match event {
            ZygoteEvent::Forked { pid } if fds.len() == 3 => {
                let output = fds.pop().expect("three fds");
                let pidfd = fds.pop().expect("three fds");
                let channel = fds.pop().expect("three fds");
                let (exit_tx, exit) = oneshot::channel();
                control.exits.insert(pid, exit_tx);
                control.pool.forked(Forked {
                    pid,
                    channel,
                    pidfd,
                    output: output.into(),
                    exit,
                });
            }
            ZygoteEvent::Forked { pid } => return Err(Down::MissingDescriptors(pid)),
            ZygoteEvent::ForkFailed { message } => control.pool.fork_failed(message),
            ZygoteEvent::Exited { pid, status } => {
                if let Some(waiter) = control.exits.remove(&pid) {
                    let _ = waiter.send(status);
                }
            }
            ZygoteEvent::Ready { .. } => {}
        }
        Ok(())
    }

    /// Fails everything the dead zygote held: waiting requests and runs learn it at once.
    fn mark_down(&self, error: Option<Down>) {
        {
            let mut control = self.control();
            control.socket = None;
            control.pool.clear();
            control.exits.clear();
        }
        let message = error.map_or_else(|| "exited".to_owned(), |e| e.to_string());
        tracing::warn!(
            zygote = self.kind.name(),
            reason = %message,
            "zygote down; restarting it"
        );
        self.status.send_modify(|s| {
            s.ready = false;
            s.pid = None;
            s.last_error = Some(message);
        });
    }
}

impl Control {
    /// Sends the zygote the forks its pool wants.
    fn request_forks(&mut self) -> std::io::Result<()> {
        let Some(socket) = self.socket.clone() else {
            return Ok(()); // restarting: the pool is refilled once the zygote is ready
        };
        for _ in 0..self.pool.forks_wanted() {
            control_socket::send_command(&*socket, ZygoteCommand::Fork)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_serving_is_a_restart_and_the_lock_stays_usable() {
        let control = Mutex::new(0);
        let outcome = guarded(|| {
            let _held = control.lock().unwrap();
            panic!("the pool broke");
        });
        assert!(control.is_poisoned());
        match outcome {
            Err(Down::Panicked(message)) => assert_eq!(message, "the pool broke"),
            other => panic!("{other:?}"),
        }
        *ignoring_poison(&control) += 1;
        assert_eq!(*ignoring_poison(&control), 1);
    }
}
