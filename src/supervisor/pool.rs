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
mod tests {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::process::Command;

    use tokio::sync::oneshot::error::TryRecvError;

    use super::*;

    /// A pidfd of a process that is alive (this one) or has exited (a reaped `true`).
    fn pidfd(alive: bool) -> OwnedFd {
        let mut exited = None;
        let pid = if alive {
            std::process::id() as i32
        } else {
            let child = Command::new("true").spawn().expect("spawning true");
            let pid = child.id() as i32;
            exited = Some(child);
            pid
        };
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
        if let Some(mut child) = exited {
            child.wait().unwrap();
        }
        // SAFETY: the descriptor was just opened and nothing else owns it.
        unsafe { OwnedFd::from_raw_fd(fd as i32) }
    }

    fn null() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    /// A child the zygote handed over, told apart by `pid`.
    fn child(pid: i32, alive: bool) -> Forked {
        Forked {
            pid,
            channel: null(),
            pidfd: pidfd(alive),
            output: null(),
            exit: oneshot::channel().1,
        }
    }

    /// A pool whose memory check reads as `short` without reading /proc/meminfo.
    fn pool(max: usize, idle: usize, short: bool) -> Pool {
        let mut pool = Pool::new(max, idle);
        pool.memory.last = Some((Instant::now() + Duration::from_secs(3600), short));
        pool
    }

    fn ready(taken: Taken) -> i32 {
        match taken {
            Taken::Ready(child) => child.pid,
            Taken::Wait(_) => panic!("waits, with a child expected"),
        }
    }

    fn waits(taken: Taken) -> oneshot::Receiver<Result<Forked, String>> {
        match taken {
            Taken::Wait(rx) => rx,
            Taken::Ready(child) => panic!("got child {} from a pool expected empty", child.pid),
        }
    }

    fn got(rx: &mut oneshot::Receiver<Result<Forked, String>>) -> Result<i32, String> {
        rx.try_recv().expect("an answer").map(|child| child.pid)
    }

    /// Ends the demand window: the next look at the demand starts a new one.
    fn end_window(pool: &mut Pool) {
        pool.window_started = Instant::now().checked_sub(WINDOW).unwrap();
    }

    #[test]
    fn take_from_an_empty_pool_waits_and_forked_children_go_to_the_oldest_waiter_first() {
        let mut pool = pool(4, 1, false);
        let mut first = waits(pool.take());
        let mut second = waits(pool.take());
        assert!(matches!(first.try_recv(), Err(TryRecvError::Empty)));
        pool.forked(child(1, true));
        assert_eq!(got(&mut first), Ok(1));
        assert!(matches!(second.try_recv(), Err(TryRecvError::Empty)));
        assert_eq!(
            pool.size(),
            0,
            "a child went to the pool with a request waiting"
        );
        pool.forked(child(2, true));
        assert_eq!(got(&mut second), Ok(2));
        // No one waits: the next child is kept, and taken at once.
        pool.forked(child(3, true));
        assert_eq!(pool.size(), 1);
        assert_eq!(ready(pool.take()), 3);
        assert_eq!(pool.size(), 0);
    }

    #[test]
    fn an_abandoned_waiter_is_skipped_for_the_next() {
        let mut pool = pool(4, 1, false);
        drop(waits(pool.take()));
        let mut second = waits(pool.take());
        pool.forked(child(7, true));
        assert_eq!(got(&mut second), Ok(7));
        // Nobody left waiting: the next child is pooled.
        pool.forked(child(8, true));
        assert_eq!(pool.size(), 1);
    }

    #[test]
    fn a_child_that_died_in_the_pool_is_never_handed_out() {
        let mut pool = pool(4, 1, false);
        pool.forked(child(1, false));
        pool.forked(child(2, true));
        assert_eq!(ready(pool.take()), 2);
        pool.forked(child(3, false));
        waits(pool.take());
    }

    #[test]
    fn a_failed_fork_fails_the_oldest_waiter_only() {
        let mut pool = pool(4, 1, false);
        let mut first = waits(pool.take());
        let mut second = waits(pool.take());
        pool.fork_failed("no memory".to_owned());
        assert_eq!(got(&mut first), Err("no memory".to_owned()));
        assert!(matches!(second.try_recv(), Err(TryRecvError::Empty)));
        pool.forked(child(5, true));
        assert_eq!(got(&mut second), Ok(5));
    }

    #[test]
    fn clear_fails_the_waiters_and_empties_the_pool() {
        let mut pool = pool(4, 2, false);
        pool.forked(child(1, true));
        pool.forked(child(2, true));
        assert_eq!(pool.size(), 2);
        assert_eq!(ready(pool.take()), 1);
        assert_eq!(ready(pool.take()), 2);
        let mut waiter = waits(pool.take());
        assert_eq!(
            pool.forks_wanted(),
            4 + 1,
            "target (3 in use: 4) and the waiter"
        );
        pool.forked(child(3, true));
        pool.forked(child(4, true));
        assert_eq!(got(&mut waiter), Ok(3));
        assert_eq!(pool.size(), 1);
        assert_eq!(ready(pool.take()), 4);
        let mut next = waits(pool.take());
        pool.clear();
        assert!(matches!(next.try_recv(), Err(TryRecvError::Closed)));
        assert_eq!(pool.size(), 0);
        // Forks asked of the dead zygote are forgotten: they are asked again.
        assert_eq!(pool.forks_wanted(), 4);
    }

    #[test]
    fn forks_wanted_fills_to_the_resting_size_and_counts_what_it_asked() {
        let mut pool = pool(4, 2, false);
        assert_eq!(pool.forks_wanted(), 2);
        assert_eq!(pool.forks_wanted(), 0, "forks under way count as supply");
        pool.forked(child(1, true));
        assert_eq!(pool.forks_wanted(), 0);
        pool.forked(child(2, true));
        assert_eq!(pool.size(), 2);
        assert_eq!(pool.forks_wanted(), 0);
    }

    #[test]
    fn forks_under_way_serve_waiting_requests_first() {
        let mut pool = pool(4, 1, false);
        assert_eq!(pool.forks_wanted(), 1);
        // One in use: the target is 2; one more for the waiter, one under way.
        let mut waiter = waits(pool.take());
        assert_eq!(pool.forks_wanted(), 2);
        pool.forked(child(1, true));
        assert_eq!(got(&mut waiter), Ok(1));
        pool.forked(child(2, true));
        pool.forked(child(3, true));
        assert_eq!(pool.size(), 2);
        assert_eq!(pool.forks_wanted(), 0);
    }

    #[test]
    fn the_pool_grows_with_demand_but_never_past_max() {
        let mut pool = pool(3, 1, false);
        let waiters: Vec<_> = (0..6).map(|_| waits(pool.take())).collect();
        // Six waiting: each gets a fork, and the pool aims at its largest size, 3.
        assert_eq!(pool.forks_wanted(), 3 + 6);
        for pid in 0..9 {
            pool.forked(child(pid, true));
        }
        drop(waiters);
        for _ in 0..6 {
            pool.release();
        }
        assert_eq!(pool.size(), 3);
        assert_eq!(
            pool.forks_wanted(),
            0,
            "the pool is at max with nothing waiting"
        );
    }

    #[test]
    fn short_memory_serves_waiters_but_does_not_grow_the_pool() {
        let mut pool = pool(4, 2, true);
        assert_eq!(pool.forks_wanted(), 0);
        let mut waiter = waits(pool.take());
        assert_eq!(pool.forks_wanted(), 1);
        pool.forked(child(1, true));
        assert_eq!(got(&mut waiter), Ok(1));
        assert_eq!(pool.forks_wanted(), 0);
    }

    #[test]
    fn trim_keeps_the_peak_for_a_window_then_returns_to_the_resting_size() {
        let mut pool = pool(4, 1, false);
        for pid in 0..4 {
            pool.forked(child(pid, true));
        }
        // Three at once: the target is 4 while the peak lasts.
        for _ in 0..3 {
            ready(pool.take());
        }
        for pid in 4..7 {
            pool.forked(child(pid, true));
        }
        assert_eq!(pool.size(), 4);
        pool.trim();
        assert_eq!(pool.size(), 4, "trimmed within the window of the peak");
        // Runs still in use hold the demand up, window after window.
        end_window(&mut pool);
        pool.trim();
        end_window(&mut pool);
        pool.trim();
        assert_eq!(pool.size(), 4, "trimmed with 3 runs in use");
        for _ in 0..3 {
            pool.release();
        }
        // The peak is kept for this window and the next.
        end_window(&mut pool);
        pool.trim();
        assert_eq!(
            pool.size(),
            4,
            "the last window's peak is forgotten too soon"
        );
        end_window(&mut pool);
        pool.trim();
        assert_eq!(pool.size(), 1, "not back to the resting size");
        assert_eq!(pool.forks_wanted(), 0);
    }

    #[test]
    fn release_never_goes_below_zero_and_new_clamps_its_sizes() {
        let mut pool = pool(0, 5, false);
        pool.release();
        assert_eq!(pool.in_use, 0);
        // max 0 means 1, and the resting size is at most max.
        assert_eq!(pool.forks_wanted(), 1);
    }
}
