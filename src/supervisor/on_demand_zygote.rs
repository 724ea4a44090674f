//! A zygote started by the first run that wants it: javascript-intl (the first run that names
//! Intl) and javascript-modules (the first that calls `require` or `import`). A server whose
//! users never format a date or require lodash holds no copy of them at all. Until such a
//! zygote is ready (and while it restarts) its runs go to the lean javascript zygote, which
//! loads what they use in the child: the same answers, later.

use std::sync::{Arc, OnceLock};

use super::zygote_process::{ZygoteProcess, ZygoteStatus};
use crate::jail::settings::JailSettings;
use crate::protocol::ZygoteKind;

pub struct OnDemandZygote {
    kind: ZygoteKind,
    /// A run with a smaller memory limit cannot load in its child what this zygote carries:
    /// it waits for the zygote instead.
    wait_below_mb: u64,
    jail: JailSettings,
    pool_max: usize,
    zygote: OnceLock<Arc<ZygoteProcess>>,
}

impl OnDemandZygote {
    /// Nothing starts yet.
    pub fn new(kind: ZygoteKind, wait_below_mb: u64, jail: JailSettings, pool_max: usize) -> Self {
        Self {
            kind,
            wait_below_mb,
            jail,
            pool_max,
            zygote: OnceLock::new(),
        }
    }

    /// The zygote for a run that may use `memory_mb`: now if it is ready, or if the run could
    /// not load what it needs itself (it then waits for the zygote); otherwise `None` (the run
    /// goes to the lean zygote). The zygote is started the first time it is wanted.
    pub fn serving(&self, memory_mb: u64) -> Option<Arc<ZygoteProcess>> {
        let zygote = self.zygote.get_or_init(|| {
            tracing::info!(
                zygote = self.kind.name(),
                "a run wants it: starting the zygote"
            );
            ZygoteProcess::start(self.kind, self.jail.clone(), self.pool_max)
        });
        (zygote.status().ready || memory_mb < self.wait_below_mb).then(|| zygote.clone())
    }

    /// The zygote, once started (for `/readyz`, `/metrics` and the pool's trimming).
    pub fn started(&self) -> Option<&Arc<ZygoteProcess>> {
        self.zygote.get()
    }

    /// Its status for `/readyz`: `None` until a run has wanted it.
    pub fn status(&self) -> Option<ZygoteStatus> {
        self.started().map(|z| z.status())
    }
}
