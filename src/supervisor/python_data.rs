//! The python-data zygote comes up once its packages are installed: at start, sandlot installs
//! `whitelist/python-requirements.txt` if needed (on a thread of its own, so the server is ready
//! at once), then the operator's requirements (`--python-requirements`), then starts the
//! zygote. An install that fails (no space, the registry down, a version conflict) leaves
//! nothing half-installed (`python_packages` stages and renames) and is tried again, the wait
//! doubling each time; a failure of the operator's packages leaves the data packages (and the
//! operator's packages installed before, if any) serving. `update` (Dify's
//! `/v1/sandbox/dependencies/update`) installs again at once, and a zygote with the new
//! packages replaces the old one when it is ready; the old one finishes its runs first. Until
//! the zygote is up, a run that imports a data package gets a clear error that says what is
//! happening and what to do.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::zygote_process::ZygoteProcess;
use crate::jail::settings::JailSettings;
use crate::protocol::{ZygoteKind, MATPLOTLIB_CONFIG_ENV, PYTHON_PACKAGES_ENV};
use crate::python_packages::operator::{self, OperatorSite, OPERATOR_PACKAGES_ENV};
use crate::python_packages::{self, PipOptions, ProgressLog};

/// Where an install stands (the data packages', or the operator's).
#[derive(Clone)]
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

/// Where the packages go, where pip finds them, and how soon a failed install is tried again
/// (the wait doubles with each failure, up to [`MAX_RETRY_WAIT`]).
#[derive(Debug, Clone)]
pub struct Packages {
    pub data_dir: PathBuf,
    pub first_retry: Duration,
    /// The operator's requirements file (`--python-requirements`), if any.
    pub requirements: Option<PathBuf>,
    /// `--pip-index-url`, `--pip-find-links`.
    pub sources: PipOptions,
}

/// The longest wait between two install attempts.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(15 * 60);

/// How long a new python-data zygote may take to come up before it is given up.
const ZYGOTE_START_LIMIT: Duration = Duration::from_secs(300);

struct Inner {
    data: State,
    operator: State,
    /// The operator's packages the serving zygote has.
    serving: Option<OperatorSite>,
    /// Their modules, which user code may import.
    modules: Arc<Vec<String>>,
    /// Passes asked for by [`PythonData::update`]; a pass serves the count it starts with.
    requested: u64,
}

pub struct PythonData {
    packages: Packages,
    inner: Mutex<Inner>,
    /// Wakes the installer out of its wait ([`PythonData::update`]).
    wake: Condvar,
    zygote: RwLock<Option<Arc<ZygoteProcess>>>,
    /// Whether the install has settled: `Some(true)` once the zygote is started, `Some(false)`
    /// while the packages are unavailable, `None` while installing (for [`Self::wait_ready`]).
    settled: tokio::sync::watch::Sender<Option<bool>>,
    /// The last finished pass: the request count it served, and its outcome.
    passes: tokio::sync::watch::Sender<(u64, Result<(), String>)>,
}

impl PythonData {
    /// Installs the packages if needed (in the background, again after a failure, with
    /// backoff), then starts the zygote.
    pub fn start(packages: Packages, jail: JailSettings, pool_max: usize) -> Arc<Self> {
        let this = Arc::new(Self {
            packages,
            inner: Mutex::new(Inner {
                data: State::Installing { attempt: 1 },
                operator: State::Installing { attempt: 1 },
                serving: None,
                modules: Arc::default(),
                requested: 0,
            }),
            wake: Condvar::new(),
            zygote: RwLock::new(None),
            settled: tokio::sync::watch::channel(None).0,
            passes: tokio::sync::watch::channel((0, Ok(()))).0,
        });
        let installer = this.clone();
        // The zygotes it starts have their events read on the server's runtime.
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("python-packages".into())
            .spawn(move || {
                let _runtime = runtime.enter();
                installer.install_forever(jail, pool_max)
            })
            .expect("spawning the package installer");
        this
    }

    fn install_forever(&self, jail: JailSettings, pool_max: usize) {
        let mut wait = self.packages.first_retry;
        let mut attempts = (0, 0);
        loop {
            let pass = self.lock().requested;
            let outcome = self.install_pass(&jail, pool_max, wait, &mut attempts);
            let retry_at = outcome.is_err().then(|| Instant::now() + wait);
            let _previous = self.passes.send_replace((pass, outcome));
            let mut inner = self.lock();
            while inner.requested == pass {
                inner = match retry_at {
                    None => self.wake.wait(inner).unwrap_or_else(|e| e.into_inner()),
                    Some(at) if Instant::now() >= at => break,
                    Some(at) => {
                        let left = at.saturating_duration_since(Instant::now());
                        let woken = self.wake.wait_timeout(inner, left);
                        woken.unwrap_or_else(|e| e.into_inner()).0
                    }
                };
            }
            wait = match retry_at {
                None => self.packages.first_retry,
                Some(_) => (wait * 2).min(MAX_RETRY_WAIT),
            };
        }
    }

    /// Installs what is missing and brings a zygote up with it; the first failure's reason.
    fn install_pass(
        &self,
        jail: &JailSettings,
        pool_max: usize,
        wait: Duration,
        (data_attempt, operator_attempt): &mut (u32, u32),
    ) -> Result<(), String> {
        let data_dir = &self.packages.data_dir;
        let sources = &self.packages.sources;
        let retry_at = Instant::now() + wait;
        if !matches!(self.lock().data, State::Ready) {
            *data_attempt += 1;
            let attempt = *data_attempt;
            self.lock().data = State::Installing { attempt };
            if let Err(why) =
                python_packages::install(data_dir, sources, &mut ProgressLog::default())
            {
                tracing::warn!(attempt, retry_in_s = wait.as_secs(), reason = %why,
                               "the Python data packages are unavailable");
                let why = why.to_string();
                self.lock().data = State::Unavailable {
                    why: why.clone(),
                    attempt,
                    retry_at,
                };
                self.settled.send_replace(Some(false));
                return Err(why);
            }
        }
        let wanted = self.packages.requirements.as_deref().map(|file| {
            *operator_attempt += 1;
            self.lock().operator = State::Installing {
                attempt: *operator_attempt,
            };
            operator::install(data_dir, file, sources, &mut ProgressLog::default())
                .map_err(|e| format!("the operator's packages ({}): {e}", file.display()))
        });
        let site = match &wanted {
            Some(Ok(site)) => Some(site.clone()),
            _ => self.lock().serving.clone(),
        };
        let started = self.serve(site, jail, pool_max);
        self.lock().data = State::Ready;
        let failed = match (wanted, started) {
            (None, _) => return Ok(()),
            (Some(Err(why)), _) | (Some(Ok(_)), Err(why)) => why,
            (Some(Ok(site)), Ok(())) => {
                if !site.not_importable.is_empty() {
                    tracing::warn!(modules = ?site.not_importable,
                                   "operator packages that do not import");
                }
                self.lock().operator = State::Ready;
                return Ok(());
            }
        };
        tracing::warn!(attempt = *operator_attempt, retry_in_s = wait.as_secs(),
                       reason = %failed, "the operator's Python packages are unavailable");
        self.lock().operator = State::Unavailable {
            why: failed.clone(),
            attempt: *operator_attempt,
            retry_at,
        };
        Err(failed)
    }

    /// Makes a zygote with `site` (and the data packages) the serving one, unless it is
    /// already; the one it replaces is retired once its runs are done. A zygote that does not
    /// come up with the operator's packages is replaced by one without them.
    fn serve(
        &self,
        site: Option<OperatorSite>,
        jail: &JailSettings,
        pool_max: usize,
    ) -> Result<(), String> {
        let current = self
            .zygote
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let same = |serving: &Option<OperatorSite>| {
            serving.as_ref().map(|s| &s.dir) == site.as_ref().map(|s| &s.dir)
        };
        if current.is_some() && same(&self.lock().serving) {
            return Ok(());
        }
        let env = environment(&self.packages.data_dir, site.as_ref());
        let zygote =
            ZygoteProcess::start_with_env(ZygoteKind::PythonData, jail.clone(), pool_max, env);
        if current.is_none() {
            // Nothing serves yet: runs may wait for this one.
            self.install_zygote(zygote.clone(), site.clone());
        }
        match wait_until_up(&zygote) {
            Ok(()) => {
                if current.is_some() {
                    self.install_zygote(zygote, site);
                }
                Ok(())
            }
            Err(why) if site.is_some() => {
                let why = format!("the python-data zygote did not start with them: {why}");
                if current.is_none() {
                    // This one serves, and nothing else would: one without the operator's
                    // packages takes its place (and retires it), coming up on its own restarts.
                    let env = environment(&self.packages.data_dir, None);
                    let fallback = ZygoteProcess::start_with_env(
                        ZygoteKind::PythonData,
                        jail.clone(),
                        pool_max,
                        env,
                    );
                    self.install_zygote(fallback, None);
                } else {
                    // Never installed: the serving one stays.
                    zygote.retire();
                }
                Err(why)
            }
            // Without operator packages there is nothing to fall back to; the zygote's own
            // restarts go on.
            Err(_) => Ok(()),
        }
    }

    /// Makes `zygote` the serving one, and retires the one it replaces once idle.
    fn install_zygote(&self, zygote: Arc<ZygoteProcess>, site: Option<OperatorSite>) {
        {
            let mut inner = self.lock();
            inner.modules = Arc::new(site.as_ref().map(|s| s.modules.clone()).unwrap_or_default());
            inner.serving = site;
        }
        let old = self
            .zygote
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .replace(zygote);
        self.settled.send_replace(Some(true));
        if let Some(old) = old {
            std::thread::spawn(move || retire_when_idle(old));
        }
    }

    /// Installs again at once (the data packages if they are missing, the operator's file as
    /// it is now) and waits for the outcome.
    pub async fn update(&self) -> Result<(), String> {
        let mine = {
            let mut inner = self.lock();
            inner.requested += 1;
            inner.requested
        };
        self.wake.notify_all();
        let mut passes = self.passes.subscribe();
        let outcome = match passes.wait_for(|(pass, _)| *pass >= mine).await {
            Ok(done) => done.1.clone(),
            Err(_) => Err("the package installer stopped".into()),
        };
        outcome
    }

    /// The zygote, or the message a run gets while there is none.
    pub fn zygote(&self) -> Result<Arc<ZygoteProcess>, String> {
        if let Some(zygote) = &*self.zygote.read().unwrap_or_else(|e| e.into_inner()) {
            return Ok(zygote.clone());
        }
        let packages = crate::whitelist::PYTHON_DATA_PACKAGES.join(", ");
        Err(match &self.lock().data {
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

    /// The modules of the operator's packages the serving zygote has.
    pub fn operator_modules(&self) -> Arc<Vec<String>> {
        self.lock().modules.clone()
    }

    /// The operator's packages the serving zygote has, if any.
    pub fn operator_site(&self) -> Option<OperatorSite> {
        self.lock().serving.clone()
    }

    /// For `/readyz`: `state` ("installing", "installed" or "unavailable: why"), the attempt,
    /// the seconds until the next one, the zygote, and the same for the operator's packages.
    pub fn status(&self) -> Value {
        let inner = self.lock();
        let mut status = state_json(&inner.data);
        status["zygote"] = json!(self
            .zygote
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|z| z.status()));
        status["operator_packages"] = match &self.packages.requirements {
            None => Value::Null,
            Some(file) => {
                let mut operator = state_json(&inner.operator);
                operator["requirements"] = json!(file);
                operator["serving"] = json!(inner.serving);
                operator
            }
        };
        status
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn data_dir(&self) -> &Path {
        &self.packages.data_dir
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
        match self.zygote().ok() {
            Some(zygote) => {
                let left = until.saturating_duration_since(tokio::time::Instant::now());
                zygote.wait_ready(left).await
            }
            None => false,
        }
    }
}

fn state_json(state: &State) -> Value {
    match state {
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
    }
}

/// Waits (on the installer's thread) until `zygote` is ready; why not, if it keeps failing to
/// start or takes too long.
fn wait_until_up(zygote: &ZygoteProcess) -> Result<(), String> {
    let until = Instant::now() + ZYGOTE_START_LIMIT;
    loop {
        let status = zygote.status();
        if status.ready {
            return Ok(());
        }
        if status.restarts >= 3 || Instant::now() >= until {
            return Err(status
                .last_error
                .unwrap_or_else(|| "it did not become ready".into()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Retires a replaced zygote once no run holds it (or after the longest a run may wait and
/// run, whichever comes first).
fn retire_when_idle(old: Arc<ZygoteProcess>) {
    let until = Instant::now() + Duration::from_secs(15 * 60);
    // Two holders: this thread and the zygote's own supervisor thread (which reads its events
    // through a weak hold).
    while Arc::strong_count(&old) > 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    old.retire();
}

/// The python-data zygote's own variables: its packages, and matplotlib drawing without a
/// display, with its font cache in sandlot's data directory.
fn environment(data_dir: &Path, operator: Option<&OperatorSite>) -> Vec<(String, String)> {
    let site = python_packages::site_dir(data_dir);
    let mpl = python_packages::matplotlib_dir(data_dir);
    let mut env = vec![
        (PYTHON_PACKAGES_ENV.to_owned(), site.display().to_string()),
        (MATPLOTLIB_CONFIG_ENV.to_owned(), mpl.display().to_string()),
        ("MPLBACKEND".to_owned(), "Agg".to_owned()),
    ];
    if let Some(operator) = operator {
        let dir = operator.dir.display().to_string();
        env.push((OPERATOR_PACKAGES_ENV.to_owned(), dir));
    }
    env
}
