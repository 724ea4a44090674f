//! The python-data zygote comes up once its packages are installed: at start, sandlot installs
//! `whitelist/python-requirements.txt` if needed (on a thread of its own, so the server is ready
//! at once), then starts the zygote. Until then — or if the install failed — a run that imports
//! a data package gets a clear error that says what is happening and what to do.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Value};

use super::zygote_process::ZygoteProcess;
use crate::jail::settings::JailSettings;
use crate::protocol::{ZygoteKind, MATPLOTLIB_CONFIG_ENV, PYTHON_PACKAGES_ENV};
use crate::python_packages;

enum State {
    Installing,
    Ready,
    Unavailable(String),
}

pub struct PythonData {
    data_dir: PathBuf,
    state: Mutex<State>,
    zygote: OnceLock<Arc<ZygoteProcess>>,
}

impl PythonData {
    /// Installs the packages if needed (in the background), then starts the zygote.
    pub fn start(data_dir: PathBuf, jail: JailSettings, pool_max: usize) -> Arc<Self> {
        let this = Arc::new(Self {
            data_dir,
            state: Mutex::new(State::Installing),
            zygote: OnceLock::new(),
        });
        let starting = this.clone();
        std::thread::Builder::new()
            .name("python-packages".into())
            .spawn(move || {
                let outcome = python_packages::install(&starting.data_dir, &mut std::io::stderr());
                match outcome {
                    Ok(()) => {
                        let zygote = ZygoteProcess::start_with_env(
                            ZygoteKind::PythonData,
                            jail,
                            pool_max,
                            environment(&starting.data_dir),
                        );
                        let _ = starting.zygote.set(zygote);
                        *starting.state.lock().expect("state lock") = State::Ready;
                    }
                    Err(why) => {
                        eprintln!("sandlot: the Python data packages are unavailable: {why}");
                        *starting.state.lock().expect("state lock") =
                            State::Unavailable(why.to_string());
                    }
                }
            })
            .expect("spawning the package installer");
        this
    }

    /// The zygote, or the message a run gets while there is none.
    pub fn zygote(&self) -> Result<&Arc<ZygoteProcess>, String> {
        if let Some(zygote) = self.zygote.get() {
            return Ok(zygote);
        }
        let packages = crate::whitelist::PYTHON_DATA_PACKAGES.join(", ");
        Err(match &*self.state.lock().expect("state lock") {
            State::Installing => format!(
                "the Python data packages ({packages}) are being installed on this server; \
                 retry in a minute"
            ),
            State::Unavailable(why) => format!(
                "the Python data packages ({packages}) are not installed on this server ({why}); \
                 an operator can install them with `sandlot deps install`"
            ),
            State::Ready => "the python-data zygote is starting".into(),
        })
    }

    /// For `/readyz`: "installing", "installed" or "unavailable: why".
    pub fn status(&self) -> Value {
        let state = match &*self.state.lock().expect("state lock") {
            State::Installing => "installing".to_owned(),
            State::Ready => "installed".to_owned(),
            State::Unavailable(why) => format!("unavailable: {why}"),
        };
        json!({"state": state, "zygote": self.zygote.get().map(|z| z.status())})
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Waits until the zygote is up, the install failed, or `limit` passes.
    pub async fn wait_ready(&self, limit: std::time::Duration) -> bool {
        let until = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < until {
            if let Some(zygote) = self.zygote.get() {
                return zygote.wait_ready(until - tokio::time::Instant::now()).await;
            }
            if matches!(
                *self.state.lock().expect("state lock"),
                State::Unavailable(_)
            ) {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
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
