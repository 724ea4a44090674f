//! How many runs each kind of zygote has served (`/metrics`): what shows that plain JavaScript
//! runs go to the lean zygote, runs that call `require` to javascript-modules and runs that name
//! Intl to javascript-intl.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::protocol::ZygoteKind;

#[derive(Debug, Default)]
pub struct ZygoteRuns([AtomicU64; ZygoteKind::ALL.len()]);

impl ZygoteRuns {
    /// One run more for `kind`: its child got the job.
    pub fn count(&self, kind: ZygoteKind) {
        self.0[index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    /// Every kind with its count, zeros included.
    pub fn counts(&self) -> impl Iterator<Item = (ZygoteKind, u64)> + '_ {
        ZygoteKind::ALL
            .into_iter()
            .map(|kind| (kind, self.0[index(kind)].load(Ordering::Relaxed)))
    }
}

fn index(kind: ZygoteKind) -> usize {
    ZygoteKind::ALL
        .iter()
        .position(|k| *k == kind)
        .expect("ALL lists every kind")
}
