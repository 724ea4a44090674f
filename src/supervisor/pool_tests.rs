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
        output: null().into(),
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
