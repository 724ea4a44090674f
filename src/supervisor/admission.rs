//! Who runs now. A run takes two things: a place among the children alive (`--max-children`,
//! bounded by memory, held for the whole run) and a core while it computes (`--workers`, a few
//! per core). A run that waits — in `time.sleep`, on a JavaScript timer, on a brokered request
//! — tells the server on its job channel and gives its core back until the wait is over, so
//! that runs waiting on a slow API do not keep CPU-bound runs queued.
//!
//! A child that says it waits cannot compute meanwhile: the server stops it (`SIGSTOP`) until
//! the wait is over, and its jail lets it neither fork nor start a thread. So a core it gave
//! back is truly free, and lying gains it nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Too many requests are already waiting; the caller answers 503.
#[derive(Debug)]
pub struct Busy;

pub struct Admission {
    cores: Arc<Semaphore>,
    children: Arc<Semaphore>,
    core_count: usize,
    child_count: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
}

/// One admitted run: its place among the children alive, and its core unless it is waiting.
pub struct Admitted {
    core: Option<OwnedSemaphorePermit>,
    _child: OwnedSemaphorePermit,
    cores: Arc<Semaphore>,
}

impl Admission {
    pub fn new(cores: usize, children: usize, max_waiting: usize) -> Self {
        let cores = cores.max(1);
        let children = children.max(cores);
        Self {
            cores: Arc::new(Semaphore::new(cores)),
            children: Arc::new(Semaphore::new(children)),
            core_count: cores,
            child_count: children,
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// Waits for a place and a core, in the queue of `--queue` places; a full queue is [`Busy`].
    pub async fn admit(&self) -> Result<Admitted, Busy> {
        let child = self.children.clone().try_acquire_owned().ok();
        let (child, core) = match (child, self.cores.clone().try_acquire_owned()) {
            (Some(child), Ok(core)) => (child, core),
            // A core is not held while the run waits for its place.
            (child, core_now) => {
                drop(core_now);
                let _place = QueuePlace::take(&self.waiting, self.max_waiting).ok_or(Busy)?;
                let child = match child {
                    Some(child) => child,
                    None => acquire(&self.children).await,
                };
                (child, acquire(&self.cores).await)
            }
        };
        Ok(Admitted {
            core: Some(core),
            _child: child,
            cores: self.cores.clone(),
        })
    }

    /// Runs waiting to be admitted.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Runs holding a core now.
    pub fn computing(&self) -> usize {
        self.core_count - self.cores.available_permits()
    }

    /// Admitted runs, waiting ones included.
    pub fn alive(&self) -> usize {
        self.child_count - self.children.available_permits()
    }

    pub fn core_count(&self) -> usize {
        self.core_count
    }

    pub fn child_count(&self) -> usize {
        self.child_count
    }
}

impl Admitted {
    /// The run waits on something other than a core: another run may have it meanwhile.
    pub fn give_back_core(&mut self) {
        self.core = None;
    }

    /// The wait is over: the run computes again once it has a core.
    pub async fn take_core(&mut self) {
        if self.core.is_none() {
            self.core = Some(acquire(&self.cores).await);
        }
    }
}

async fn acquire(semaphore: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    semaphore
        .clone()
        .acquire_owned()
        .await
        .expect("admission's semaphores are never closed")
}

/// A place in the wait queue, given back when dropped (also when the request is abandoned).
struct QueuePlace<'a>(&'a AtomicUsize);

impl<'a> QueuePlace<'a> {
    fn take(waiting: &'a AtomicUsize, max: usize) -> Option<Self> {
        let taken = waiting.fetch_add(1, Ordering::SeqCst);
        if taken >= max {
            waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Self(waiting))
    }
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The default bound on children alive: one per 64 MiB of half the machine's memory. A child
/// waiting in `time.sleep` keeps about 5 MiB of its own (1.5 MiB for JavaScript); the rest
/// is a margin for the runs that grow before they wait.
pub fn default_max_children(workers: usize) -> usize {
    let total_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .unwrap_or(4 * 1024 * 1024);
    let by_memory = (total_kb / 2 / (64 * 1024)) as usize;
    by_memory.clamp(workers.max(1), 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_run_that_gives_back_its_core_lets_another_compute_while_it_keeps_its_place() {
        let admission = Admission::new(1, 2, 8);
        let mut first = admission.admit().await.unwrap();
        first.give_back_core();
        let second = admission.admit().await.unwrap();
        assert_eq!((admission.computing(), admission.alive()), (1, 2));
        // The first's wait is over: it computes again once the second is done.
        let resumed = tokio::spawn(async move {
            first.take_core().await;
            first
        });
        tokio::task::yield_now().await;
        assert!(!resumed.is_finished());
        drop(second);
        let first = resumed.await.unwrap();
        assert_eq!((admission.computing(), admission.alive()), (1, 1));
        drop(first);
        assert_eq!((admission.computing(), admission.alive()), (0, 0));
    }

    #[tokio::test]
    async fn places_bound_the_runs_alive_even_when_cores_are_free() {
        let admission = Admission::new(1, 1, 0);
        let mut first = admission.admit().await.unwrap();
        first.give_back_core();
        assert!(
            admission.admit().await.is_err(),
            "no queue: a second run is busy"
        );
    }
}
