//! The floor under a JavaScript run: what a fresh process per run costs with QuickJS alone,
//! without sandlot's server, pool, jail or protocol. `bench/fork_floor --javascript` runs it.
//!
//!     cargo bench --bench quickjs_floor -- LEVEL [ITERATIONS [AT_ONCE]]
//!
//! It builds one QuickJS runtime holding a zygote's heap up to LEVEL:
//! - `globals`: sandlot's globals (`prelude.js` with its npm polyfills, and `locale.js` with the
//!   stand-ins that load Intl on first use) — the lean javascript zygote's heap;
//! - `modules`: those and every whitelisted npm module — the javascript-modules zygote's heap;
//! - `intl`: those and FormatJS's Intl bundle, warmed up — the javascript-intl zygote's heap
//!   (and the one JavaScript zygote's before it).
//!
//! `globals+jail` is `globals` with sandlot's jail as a zygote and its children apply it: the
//! zygote locks itself down once (`Jail::lock_zygote`: limits, the unprivileged user as root,
//! Landlock, the seccomp allowlist), each child adds its delta (`Jail::lock_child`: a nested
//! Landlock domain, its descriptors, its limits, the refusal filter) and then runs under both —
//! what the jail adds to a fork per run, without the server or its protocol.
//!
//! Then, like a zygote, it backs its memory with huge pages and forks ITERATIONS children, AT_ONCE
//! of them alive at a time (1 by default: one after the other; a loaded server has several, and
//! children of one zygote running side by side pay more for each shared page they copy); each
//! decodes a JSON job, evaluates `main(a, b)`, calls it, encodes the result, writes it to a socket
//! and exits. It prints the CPU time and the minor page faults per run, both
//! of the parent and its children together (getrusage), and the size of the heap. With
//! `QUICKJS_FLOOR_SMALL_PAGES` set it leaves the memory in 4 KiB pages: what huge pages buy.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use quickjs_model::{build, lock_down, Level, JOB};
use rquickjs::{Context, Runtime};
use sandlot::jail::Jail;
use sandlot::protocol::CHILD_CHANNEL_FD;

mod quickjs_model;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (level, jailed) = match args.first().map(String::as_str) {
        Some("globals") => (Level::Globals, false),
        Some("globals+jail") => (Level::Globals, true),
        Some("modules") => (Level::Modules, false),
        Some("intl") => (Level::Intl, false),
        _ => {
            eprintln!(
                "usage: quickjs_floor globals|globals+jail|modules|intl [ITERATIONS [AT_ONCE]]"
            );
            std::process::exit(2);
        }
    };
    let iterations: u64 = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(400);
    let at_once: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1).max(1);
    let runtime = Runtime::new().expect("a QuickJS runtime");
    let context = Context::full(&runtime).expect("a QuickJS context");
    context
        .with(|ctx| build(&ctx, level))
        .expect("building the heap");
    runtime.run_gc();
    let heap = runtime.memory_usage().malloc_size;
    if std::env::var_os("QUICKJS_FLOOR_SMALL_PAGES").is_none() {
        let _ = sandlot::zygote::huge_pages::collapse_anonymous_memory();
        let _ = sandlot::zygote::huge_pages::remap_read_only_code(false);
    }
    // Read before a jail's Landlock domain hides /proc.
    let (anonymous, in_huge_pages) = (kilobytes("Anonymous:"), kilobytes("AnonHugePages:"));
    let mut jail = jailed.then(lock_down);

    let before = usage();
    let mut alive = std::collections::VecDeque::new();
    for _ in 0..iterations {
        alive.push_back(fork_one_run(&context, jail.as_mut()));
        if alive.len() >= at_once {
            reap(alive.pop_front().expect("a child"));
        }
    }
    alive.into_iter().for_each(reap);
    let after = usage();
    let n = iterations as f64;
    println!(
        "{:>12} {:>9.0} us {:>7.1} faults a run   heap {:.1} MB   anonymous {} kB ({} kB in huge pages)",
        args[0],
        (after.0 - before.0) * 1e6 / n,
        (after.1 - before.1) as f64 / n,
        heap as f64 / 1e6,
        anonymous,
        in_huge_pages,
    );
}

/// Forks a child that runs the job and writes the result to a socket: its pid and the read end
/// of the socket pair, for [`reap`].
fn fork_one_run(context: &Context, jail: Option<&mut (Jail, OwnedFd)>) -> (libc::pid_t, OwnedFd) {
    // A socket pair, as a zygote's job channel is (a jailed zygote may not make pipes).
    let (read_end, write_end) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
    let (read_end, mut write_end) = (OwnedFd::from(read_end), OwnedFd::from(write_end));
    // SAFETY: this process is single-threaded; the child applies the jail's child half (if
    // any), runs QuickJS and exits with _exit, never returning from here.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        drop(read_end);
        if let Some((jail, devnull)) = jail {
            let locked = devnull
                .try_clone()
                .map_err(drop)
                .and_then(|output| jail.lock_child(devnull, write_end, output).map_err(drop));
            if locked.is_err() {
                // SAFETY: ends the child at once, without unwinding the parent's stack; the
                // parent finds no result.
                unsafe { libc::_exit(1) };
            }
            // SAFETY: lock_child left the channel at its fixed number, owned by nothing else.
            write_end = unsafe { OwnedFd::from_raw_fd(CHILD_CHANNEL_FD) };
        }
        let result = context
            .with(|ctx| quickjs_model::run(&ctx, JOB))
            .unwrap_or_default();
        // SAFETY: writes the result's bytes from a live buffer to the socket this child owns, then
        // ends the child without unwinding or running the parent's exit handlers.
        unsafe {
            libc::write(write_end.as_raw_fd(), result.as_ptr().cast(), result.len());
            libc::_exit(0);
        }
    }
    drop(write_end);
    (pid, read_end)
}

/// Reads a child's result and reaps it.
fn reap((pid, read_end): (libc::pid_t, OwnedFd)) {
    let mut answer = String::new();
    // As a socket, not a File: File's read_to_string asks the size first, with a call a
    // jailed zygote's allowlist traps.
    std::os::unix::net::UnixStream::from(read_end)
        .read_to_string(&mut answer)
        .expect("reading the child's result");
    assert_eq!(answer, r#"{"sum":3}"#, "the child's result");
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// CPU seconds and minor faults of this process and its reaped children so far.
fn usage() -> (f64, i64) {
    let of = |who| {
        // SAFETY: getrusage fills the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `u` is a valid, writable rusage.
        unsafe { libc::getrusage(who, &mut u) };
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        (seconds(u.ru_utime) + seconds(u.ru_stime), u.ru_minflt)
    };
    let (own, children) = (of(libc::RUSAGE_SELF), of(libc::RUSAGE_CHILDREN));
    (own.0 + children.0, own.1 + children.1)
}

/// A figure of this process's memory (`/proc/self/smaps_rollup`), in kB.
fn kilobytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
