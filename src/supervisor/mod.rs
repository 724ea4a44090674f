//! The server's side of the zygotes: it starts them, restarts them when they die, bounds how
//! many children run at once, and drives each run to its report or its deadline.

mod admission;
mod execute;
mod follow;
pub mod javascript_intl;
pub mod javascript_modules;
mod on_demand_zygote;
mod pause;
mod pool;
pub mod python_data;
mod zygote_process;
mod zygote_runs;
mod zygote_spawn;

use std::sync::Arc;
use std::time::Duration;

pub use admission::{default_max_children, Busy};
pub use follow::{Follower, RunEvent, FOLLOW_EVERY};
pub use on_demand_zygote::OnDemandZygote;
pub use python_data::{Packages, PythonData};
pub use zygote_process::{ZygoteProcess, ZygoteStatus};
pub use zygote_runs::ZygoteRuns;

use crate::broker::Broker;
use crate::jail::settings::JailSettings;
use crate::protocol::{Job, ZygoteKind};
use crate::run::{ErrorKind, RunError, RunResponse};
use admission::Admission;

/// How busy the server is, for `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Runs waiting to be admitted.
    pub waiting: usize,
    /// Runs holding a core.
    pub busy: usize,
    pub workers: usize,
    /// Admitted runs, those waiting in a sleep or on the broker included.
    pub alive: usize,
    pub max_children: usize,
}

/// Tries at a run whose child is lost before its job reaches it (a zygote that dies takes its
/// pool with it): the run is tried again on the restarted zygote, since none of its code ran.
const MAX_ATTEMPTS: u32 = 3;

pub struct Supervisor {
    zygotes: Vec<Arc<ZygoteProcess>>,
    /// Started once its packages are installed; `None` when this server runs no Python.
    python_data: Option<Arc<PythonData>>,
    /// Started by the first run that names Intl, and by the first that names `require` or
    /// `import`; `None` when they are not started on demand (`sandlot run` starts the one
    /// zygote its run needs).
    javascript_intl: Option<OnDemandZygote>,
    javascript_modules: Option<OnDemandZygote>,
    /// Runs served by each kind of zygote.
    runs: ZygoteRuns,
    broker: Broker,
    admission: Admission,
}

impl Supervisor {
    /// Starts one zygote per kind; each comes up in the background. With `packages` the
    /// python-data zygote comes up once they are installed; with `on_demand` the
    /// javascript-intl and javascript-modules zygotes come up when a run first needs them.
    /// `workers` runs compute at once, `max_children` are alive at once (waiting ones
    /// included), `max_waiting` more wait.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        kinds: &[ZygoteKind],
        jail: &JailSettings,
        broker: Broker,
        packages: Option<Packages>,
        on_demand: bool,
        workers: usize,
        max_children: usize,
        max_waiting: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            python_data: packages.map(|p| PythonData::start(p, jail.clone(), workers)),
            javascript_intl: on_demand.then(|| {
                OnDemandZygote::new(
                    ZygoteKind::JavascriptIntl,
                    javascript_intl::LOAD_IN_RUN_MB,
                    jail.clone(),
                    workers,
                )
            }),
            // Every module together makes ~3 MB of heap, which any run's limit holds.
            javascript_modules: on_demand.then(|| {
                OnDemandZygote::new(ZygoteKind::JavascriptModules, 0, jail.clone(), workers)
            }),
            runs: ZygoteRuns::default(),
            broker,
            zygotes: kinds
                .iter()
                .map(|&k| ZygoteProcess::start(k, jail.clone(), workers))
                .collect(),
            admission: Admission::new(workers, max_children, max_waiting),
        })
    }

    pub fn zygote(&self, kind: ZygoteKind) -> Option<&Arc<ZygoteProcess>> {
        self.zygotes.iter().find(|z| z.kind() == kind)
    }

    pub fn python_data(&self) -> Option<&Arc<PythonData>> {
        self.python_data.as_ref()
    }

    pub fn javascript_intl(&self) -> Option<&OnDemandZygote> {
        self.javascript_intl.as_ref()
    }

    pub fn javascript_modules(&self) -> Option<&OnDemandZygote> {
        self.javascript_modules.as_ref()
    }

    /// How many runs each kind of zygote has served.
    pub fn runs(&self) -> &ZygoteRuns {
        &self.runs
    }

    pub fn status(&self) -> Vec<ZygoteStatus> {
        self.zygotes.iter().map(|z| z.status()).collect()
    }

    /// Every zygote's status, the python-data, javascript-modules and javascript-intl ones too
    /// once they run.
    pub fn all_status(&self) -> Vec<ZygoteStatus> {
        self.all_zygotes().iter().map(|z| z.status()).collect()
    }

    /// The zygotes started so far.
    fn all_zygotes(&self) -> Vec<Arc<ZygoteProcess>> {
        let data = self.python_data.as_ref().and_then(|d| d.zygote().ok());
        let on_demand = [&self.javascript_modules, &self.javascript_intl]
            .into_iter()
            .filter_map(|z| z.as_ref().and_then(|z| z.started()).cloned());
        self.zygotes
            .iter()
            .cloned()
            .chain(data)
            .chain(on_demand)
            .collect()
    }

    pub fn load(&self) -> Load {
        let a = &self.admission;
        Load {
            waiting: a.waiting(),
            busy: a.computing(),
            workers: a.core_count(),
            alive: a.alive(),
            max_children: a.child_count(),
        }
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Lets every prefork pool shrink back to what recent demand needs (called now and then).
    pub fn trim_pools(&self) {
        for zygote in self.all_zygotes() {
            zygote.trim();
        }
    }

    pub fn all_ready(&self) -> bool {
        self.zygotes.iter().all(|z| z.status().ready)
    }

    /// Waits until every zygote is ready, or `limit` passes.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        for zygote in &self.zygotes {
            if !zygote.wait_ready(limit).await {
                return false;
            }
        }
        true
    }

    /// Runs one job in a fresh child of the `kind` zygote.
    pub async fn run(&self, kind: ZygoteKind, job: &Job) -> Result<RunResponse, Busy> {
        self.run_followed(kind, job, None).await
    }

    /// [`Supervisor::run`], telling `follower` once the run has a worker and then what the code
    /// prints, as it prints it.
    pub async fn run_followed(
        &self,
        kind: ZygoteKind,
        job: &Job,
        follower: Option<&Follower>,
    ) -> Result<RunResponse, Busy> {
        let mut admitted = self.admission.admit().await?;
        if let Some(follower) = follower {
            let _ = follower.send(RunEvent::Admitted).await;
        }
        for attempt in 1.. {
            // Held for the run: a python-data zygote replaced meanwhile is retired once unheld.
            let zygote = match self.pick(kind, job) {
                Ok(zygote) => zygote,
                Err(response) => return Ok(*response),
            };
            let served = zygote.kind();
            match execute::execute(&zygote, job, &self.broker, follower, &mut admitted).await {
                execute::Attempt::Ran(response) => {
                    self.runs.count(served);
                    return Ok(response);
                }
                execute::Attempt::NotStarted(response) if attempt >= MAX_ATTEMPTS => {
                    return Ok(response)
                }
                execute::Attempt::NotStarted(response) => {
                    let why = response.error.map(|e| e.message).unwrap_or_default();
                    tracing::info!(zygote = served.name(), attempt, %why, "trying a run again");
                }
            }
        }
        unreachable!("the loop returns by its last attempt")
    }

    /// The zygote that takes a run planned for `kind` now, or the answer the run gets without
    /// one. A run for javascript-intl or javascript-modules goes to the lean javascript zygote
    /// while that one is not ready ([`OnDemandZygote::serving`]) or not part of this server:
    /// Intl or the module then loads in the child.
    fn pick(&self, kind: ZygoteKind, job: &Job) -> Result<Arc<ZygoteProcess>, Box<RunResponse>> {
        let fixed = |kind: ZygoteKind| {
            self.zygote(kind).cloned().ok_or_else(|| {
                Box::new(execute::internal(format!(
                    "no {} zygote is running in this server",
                    kind.name()
                )))
            })
        };
        let on_demand = match (kind, &self.python_data) {
            (ZygoteKind::PythonData, Some(data)) => {
                return data.zygote().map_err(|why| {
                    let error = RunError::new(ErrorKind::ModuleNotAllowed, why);
                    Box::new(RunResponse::failed(error, 1, 0.0))
                })
            }
            (ZygoteKind::JavascriptIntl, _) => &self.javascript_intl,
            (ZygoteKind::JavascriptModules, _) => &self.javascript_modules,
            _ => return fixed(kind),
        };
        match on_demand {
            Some(zygote) => zygote
                .serving(job.limits.memory_mb)
                .map_or_else(|| fixed(ZygoteKind::Javascript), Ok),
            None if self.zygote(kind).is_none() => fixed(ZygoteKind::Javascript),
            None => fixed(kind),
        }
    }
}
