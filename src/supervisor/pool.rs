//! The prefork pool of one zygote: children forked and jailed ahead of demand, each blocked
//! reading its job channel, so that a request only writes its job and reads the report. A
//! child is never reused: a run takes one out of the pool for good, and the pool asks its
//! zygote for a replacement at once, off the request's path.
//!
//! The pool sizes itself to the demand it sees: one child more than the most runs of its kind
//! at once in the last window, at most `max` (the server's `--workers`), and back to its
//! resting size (`idle`) when the demand is gone. A pool only grows while the machine has
//! memory to spare.

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use tokio::sync::oneshot;

use super::zygote_process::Forked;

/// How long a peak of demand keeps the pool at its size.
const WINDOW: Duration = Duration::from_secs(10);
/// The pool stops growing when less memory than this is available.
const MEMORY_RESERVE_KB: u64 = 512 * 1024;

/// What a request gets: a child now, or a promise of the next one forked.
pub enum Taken {
    Ready(Forked),
    Wait(oneshot::Receiver<Result<Forked, String>>),
}

pub struct Pool {
    ready: VecDeque<Forked>,
    waiting: VecDeque<oneshot::Sender<Result<Forked, String>>>,
    /// Forks asked of the zygote and not answered yet.
    requested: usize,
    /// Children taken whose runs have not ended.
    in_use: usize,
    max: usize,
    /// The size it rests at without demand.
    idle: usize,
    /// The most children in use at once in this window and in the one before.
    peak: usize,
    last_peak: usize,
    window_started: Instant,
    memory: MemoryCheck,
}

impl Pool {
    pub fn new(max: usize, idle: usize) -> Self {
        Self {
            idle: idle.min(max.max(1)),
            ready: VecDeque::new(),
            waiting: VecDeque::new(),
            requested: 0,
            in_use: 0,
            max: max.max(1),
            peak: 0,
            last_peak: 0,
            window_started: Instant::now(),
            memory: MemoryCheck::default(),
        }
    }

    /// Takes a child for a run (skipping any that died while it waited); the caller asks the
    /// zygote for [`Pool::forks_wanted`] more.
    pub fn take(&mut self) -> Taken {
        self.in_use += 1;
        self.observe_demand();
        while let Some(child) = self.ready.pop_front() {
            if is_alive(&child) {
                return Taken::Ready(child);
            }
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.push_back(tx);
        Taken::Wait(rx)
    }

    /// A run that took a child has ended (or was abandoned).
    pub fn release(&mut self) {
        self.in_use = self.in_use.saturating_sub(1);
    }

    /// How many forks to ask for now so that the pool reaches its target and every waiting
    /// request gets a child (forks under way serve the waiting requests first); counts them as
    /// asked for.
    pub fn forks_wanted(&mut self) -> usize {
        let supply = self.ready.len() + self.requested;
        let for_waiters = self.waiting.len().saturating_sub(self.requested);
        let mut wanted = (self.target() + self.waiting.len()).saturating_sub(supply);
        if wanted > for_waiters && self.memory.is_short() {
            // Waiting requests are always served; the pool grows only with memory to spare.
            wanted = for_waiters;
        }
        self.requested += wanted;
        wanted
    }

    /// The zygote handed over a child: to the oldest waiting request, else into the pool.
    pub fn forked(&mut self, child: Forked) {
        self.requested = self.requested.saturating_sub(1);
        let mut child = Some(child);
        while let Some(waiter) = self.waiting.pop_front() {
            match waiter.send(Ok(child.take().expect("one child"))) {
                Ok(()) => return,
                // That request was abandoned: the next one gets the child.
                Err(Ok(returned)) => child = Some(returned),
                Err(Err(_)) => unreachable!("only children are sent"),
            }
        }
        self.ready.extend(child);
    }

    /// The zygote could not fork: the oldest waiting request learns why.
    pub fn fork_failed(&mut self, message: String) {
        self.requested = self.requested.saturating_sub(1);
        if let Some(waiter) = self.waiting.pop_front() {
            let _ = waiter.send(Err(message));
        }
    }

    /// The zygote is gone, and its children with it: waiting requests learn it at once.
    pub fn clear(&mut self) {
        self.ready.clear();
        self.waiting.clear();
        self.requested = 0;
    }

    /// Lets the pool shrink back once demand has fallen: the children past the target leave
    /// (their channels close; each reads the end and exits).
    pub fn trim(&mut self) {
        self.observe_demand();
        let keep = self.target();
        while self.ready.len() > keep {
            self.ready.pop_back();
        }
    }

    pub fn size(&self) -> usize {
        self.ready.len()
    }

    fn target(&self) -> usize {
        match self.peak.max(self.last_peak) {
            0 => self.idle,
            peak => (peak + 1).min(self.max),
        }
    }

    fn observe_demand(&mut self) {
        if self.window_started.elapsed() >= WINDOW {
            self.last_peak = self.peak;
            self.peak = self.in_use;
            self.window_started = Instant::now();
        }
        self.peak = self.peak.max(self.in_use);
    }
}

/// A pre-forked child that was killed while it waited (by the OOM killer, say) is not handed
/// to a run: its pidfd reads as ready once it has exited.
fn is_alive(child: &Forked) -> bool {
    let mut fds = [PollFd::new(child.pidfd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0))
}

/// Whether the machine has less than [`MEMORY_RESERVE_KB`] available, read at most once a
/// second.
#[derive(Default)]
struct MemoryCheck {
    last: Option<(Instant, bool)>,
}

impl MemoryCheck {
    fn is_short(&mut self) -> bool {
        if let Some((at, short)) = self.last {
            if at.elapsed() < Duration::from_secs(1) {
                return short;
            }
        }
        let short = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|meminfo| {
                meminfo
                    .lines()
                    .find_map(|line| line.strip_prefix("MemAvailable:"))
                    .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            })
            .is_some_and(|kb| kb < MEMORY_RESERVE_KB);
        self.last = Some((Instant::now(), short));
        short
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
