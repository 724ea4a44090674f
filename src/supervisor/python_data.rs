//! The python-data zygote comes up once its packages are installed: at start, sandlot installs
//! `whitelist/python-requirements.txt` if needed (on a thread of its own, so the server is ready
//! at once), then starts the zygote. An install that fails (no space, the registry down) leaves
//! nothing half-installed (`python_packages::install` stages and renames) and is tried again,
//! the wait doubling each time. Until the zygote is up, a run that imports a data package gets a
//! clear error that says what is happening and what to do.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::zygote_process::ZygoteProcess;
use crate::jail::settings::JailSettings;
use crate::protocol::{ZygoteKind, MATPLOTLIB_CONFIG_ENV, PYTHON_PACKAGES_ENV};
use crate::python_packages;

enum State {
    Installing {
        attempt: u32,
    },
    Ready,
    Unavailable {
        why: String,
        attempt: u32,
        retry_at: Instant,
    },
}

/// Where the data packages go, and how soon a failed install is tried again (the wait doubles
/// with each failure, up to [`MAX_RETRY_WAIT`]).
#[derive(Debug, Clone)]
pub struct Packages {
    pub data_dir: PathBuf,
    pub first_retry: Duration,
}

/// The longest wait between two install attempts.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(15 * 60);

pub struct PythonData {
    data_dir: PathBuf,
    state: Mutex<State>,
    /// Wakes the installer out of its wait (`retry_now`).
    wake: Condvar,
    zygote: OnceLock<Arc<ZygoteProcess>>,
    /// Whether the install has settled: `Some(true)` once the zygote is started, `Some(false)`
    /// while the packages are unavailable, `None` while installing (for [`Self::wait_ready`]).
    settled: tokio::sync::watch::Sender<Option<bool>>,
}

impl PythonData {
    /// Installs the packages if needed (in the background, again after a failure, with
    /// backoff), then starts the zygote.
    pub fn start(packages: Packages, jail: JailSettings, pool_max: usize) -> Arc<Self> {
        let this = Arc::new(Self {
            data_dir: packages.data_dir,
            state: Mutex::new(State::Installing { attempt: 1 }),
            wake: Condvar::new(),
            zygote: OnceLock::new(),
            settled: tokio::sync::watch::channel(None).0,
        });
        let installer = this.clone();
        std::thread::Builder::new()
            .name("python-packages".into())
            .spawn(move || installer.install_until_done(packages.first_retry, jail, pool_max))
            .expect("spawning the package installer");
        this
    }

    fn install_until_done(&self, first_retry: Duration, jail: JailSettings, pool_max: usize) {
        let mut wait = first_retry;
        for attempt in 1.. {
            *self.lock() = State::Installing { attempt };
            match python_packages::install(&self.data_dir, &mut ProgressLog::default()) {
                Ok(()) => {
                    let zygote = ZygoteProcess::start_with_env(
                        ZygoteKind::PythonData,
                        jail,
                        pool_max,
                        environment(&self.data_dir),
                    );
                    let _ = self.zygote.set(zygote);
                    *self.lock() = State::Ready;
                    self.settled.send_replace(Some(true));
                    return;
                }
                Err(why) => {
                    tracing::warn!(
                        attempt,
                        retry_in_s = wait.as_secs(),
                        reason = %why,
                        "the Python data packages are unavailable"
                    );
                    let retry_at = Instant::now() + wait;
                    let mut state = self.lock();
                    *state = State::Unavailable {
                        why: why.to_string(),
                        attempt,
                        retry_at,
                    };
                    self.settled.send_replace(Some(false));
                    while Instant::now() < retry_at && matches!(*state, State::Unavailable { .. }) {
                        let left = retry_at.saturating_duration_since(Instant::now());
                        state = self
                            .wake
                            .wait_timeout(state, left)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                    wait = (wait * 2).min(MAX_RETRY_WAIT);
                }
            }
        }
    }

    /// Ends the installer's wait: an operator installed the packages, or wants a try now.
    pub fn retry_now(&self) {
        let mut state = self.lock();
        if let State::Unavailable { attempt, .. } = *state {
            *state = State::Installing {
                attempt: attempt + 1,
            };
            self.settled.send_replace(None);
            self.wake.notify_all();
        }
    }

    /// The zygote, or the message a run gets while there is none.
    pub fn zygote(&self) -> Result<&Arc<ZygoteProcess>, String> {
        if let Some(zygote) = self.zygote.get() {
            return Ok(zygote);
        }
        let packages = crate::whitelist::PYTHON_DATA_PACKAGES.join(", ");
        Err(match &*self.lock() {
            State::Installing { .. } => format!(
                "the Python data packages ({packages}) are being installed on this server; \
                 retry in a minute"
            ),
            State::Unavailable { why, .. } => format!(
                "the Python data packages ({packages}) are not installed on this server ({why}); \
                 the server tries again by itself, and an operator can install them with \
                 `sandlot deps install`"
            ),
            State::Ready => "the python-data zygote is starting".into(),
        })
    }

    /// For `/readyz`: `state` ("installing", "installed" or "unavailable: why"), the attempt,
    /// the seconds until the next one, and the zygote.
    pub fn status(&self) -> Value {
        let mut status = match &*self.lock() {
            State::Installing { attempt } => json!({"state": "installing", "attempt": attempt}),
            State::Ready => json!({"state": "installed"}),
            State::Unavailable {
                why,
                attempt,
                retry_at,
            } => json!({
                "state": format!("unavailable: {why}"),
                "attempt": attempt,
                "retry_in_s": retry_at.saturating_duration_since(Instant::now()).as_secs(),
            }),
        };
        status["zygote"] = json!(self.zygote.get().map(|z| z.status()));
        status
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Waits until the zygote is up, the install failed, or `limit` passes.
    pub async fn wait_ready(&self, limit: std::time::Duration) -> bool {
        let until = tokio::time::Instant::now() + limit;
        let mut settled = self.settled.subscribe();
        let installed =
            match tokio::time::timeout_at(until, settled.wait_for(Option::is_some)).await {
                Ok(Ok(settled)) => *settled == Some(true),
                _ => false,
            };
        if !installed {
            return false;
        }
        match self.zygote.get() {
            Some(zygote) => {
                let left = until.saturating_duration_since(tokio::time::Instant::now());
                zygote.wait_ready(left).await
            }
            None => false,
        }
    }
}

/// The python-data zygote's own variables: its packages, and matplotlib drawing without a
/// display, with its font cache in sandlot's data directory.
fn environment(data_dir: &Path) -> Vec<(String, String)> {
    let site = python_packages::site_dir(data_dir);
    let mpl = python_packages::matplotlib_dir(data_dir);
    vec![
        (PYTHON_PACKAGES_ENV.to_owned(), site.display().to_string()),
        (MATPLOTLIB_CONFIG_ENV.to_owned(), mpl.display().to_string()),
        ("MPLBACKEND".to_owned(), "Agg".to_owned()),
    ]
}

/// pip's progress as log lines (stderr is the log, which may be JSON).
#[derive(Default)]
pub struct ProgressLog(Vec<u8>);

impl std::io::Write for ProgressLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        while let Some(end) = self.0.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.0.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            tracing::info!(
                line = line.trim_end(),
                "installing the Python data packages"
            );
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
