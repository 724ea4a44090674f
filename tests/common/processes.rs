//! Processes as the host's /proc shows them: the zygotes a server reports, their children, and
//! waits on their states (never on the clock).

use std::time::Duration;

use serde_json::Value;

use super::Server;

/// What `/readyz` says of the zygote of `kind` (`Null` when it lists none).
pub fn zygote(server: &Server, kind: &str) -> Value {
    let ready = server.get("/readyz");
    ready.body["zygotes"]
        .as_array()
        .and_then(|zygotes| zygotes.iter().find(|z| z["kind"] == kind).cloned())
        .unwrap_or(Value::Null)
}

/// How many runs the zygote of `kind` has served: `sandlot_zygote_runs_total{kind}` of
/// `/metrics`.
pub fn runs(server: &Server, kind: &str) -> u64 {
    let series = format!("sandlot_zygote_runs_total{{kind=\"{kind}\"}} ");
    let metrics = server.get("/metrics").text;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {metrics}"))
}

/// The pid of the zygote of `kind`, when it is up.
pub fn zygote_pid(server: &Server, kind: &str) -> Option<i32> {
    zygote(server, kind)["pid"].as_i64().map(|pid| pid as i32)
}

/// Waits until the zygote of `kind` is up again under a pid other than `old`; returns it.
pub fn wait_for_new_zygote(server: &Server, kind: &str, old: i32, limit: Duration) -> i32 {
    super::wait_for(
        limit,
        || format!("a new {kind} zygote in place of {old}"),
        || zygote_pid(server, kind).filter(|&pid| pid != old),
    )
}

/// The children of `pid` (of all its threads) and the state letter of each (R running,
/// S sleeping, Z zombie, ...).
pub fn children(pid: i32) -> Vec<(i32, char)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .filter_map(|child| Some((child, state(child)?)))
        .collect()
}

/// The fields of `/proc/PID/stat` after the command name (the state is the first).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The state letter of `pid`, or `None` once it is gone (reaped).
pub fn state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// Whether `pid` exists and has not exited (a zombie or a dying process has).
pub fn alive(pid: i32) -> bool {
    state(pid).is_some_and(|s| !matches!(s, 'Z' | 'X' | 'x'))
}

/// The CPU time `pid` has used (user and system).
pub fn cpu_time(pid: i32) -> Duration {
    // SAFETY: sysconf reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let used = stat_fields(pid)
        .map(|f| {
            // utime and stime: fields 14 and 15 of stat, 12 and 13 after the name.
            let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            field(11) + field(12)
        })
        .unwrap_or(0);
    Duration::from_millis(used * 1000 / ticks)
}

/// Waits until a child of `parent` has run code for a while (used 100 ms of CPU and is
/// running): a run's busy loop. Pooled children use a few milliseconds to be jailed and then
/// block reading their job channels, so none of them is taken for it. Returns its pid.
pub fn wait_for_busy_child(parent: i32, limit: Duration) -> i32 {
    super::wait_for(
        limit,
        || format!("a busy child of {parent}"),
        || {
            children(parent)
                .into_iter()
                .find(|&(pid, s)| s == 'R' && cpu_time(pid) >= Duration::from_millis(100))
                .map(|(pid, _)| pid)
        },
    )
}

/// Waits until `pid` has exited (gone, or a zombie its parent has yet to reap).
pub fn wait_for_exit(pid: i32, limit: Duration) {
    super::wait_for(
        limit,
        || format!("process {pid} to exit"),
        || (!alive(pid)).then_some(()),
    )
}

/// The signals pending for `pid`, for its main thread or for the whole process (a bit per
/// signal, signal n at bit n - 1).
pub fn pending_signals(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("SigPnd:")
                .or_else(|| l.strip_prefix("ShdPnd:"))
        })
        .filter_map(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .fold(0, |all, mask| all | mask)
}

/// Sends SIGKILL to `pid`.
pub fn kill(pid: i32) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL)
        .unwrap_or_else(|e| panic!("killing {pid}: {e}"));
}

/// `pid` is alive and `signal` is not pending for it: a signal raised earlier (by a write the
/// server has made, say) has either acted (the process is dead or dying) or waits (pending), so
/// this needs no wait to see it.
pub fn assert_alive_without_pending(pid: i32, signal: nix::sys::signal::Signal, what: &str) {
    assert!(alive(pid), "{what}: process {pid} died");
    let pending = pending_signals(pid);
    assert_eq!(
        pending & (1 << (signal as i32 - 1)),
        0,
        "{what}: {signal} is pending for process {pid}"
    );
}
