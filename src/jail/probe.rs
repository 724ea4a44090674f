//! Which layers of the jail work on this machine, found by applying each for real in a
//! throwaway child process. `sandlot doctor` prints the answer; `sandlot serve` refuses to
//! start on a missing layer unless the operator accepts it (`--allow-degraded`).
//!
//! Must be called while the process is single-threaded (before the async runtime starts):
//! the probe forks.

use std::fmt;
use std::io::{Read, Write};

use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe, ForkResult};
use serde::{Deserialize, Serialize};

use super::settings::{JailSettings, Layer};
use super::{credentials, landlock, namespaces, no_new_privs, resource_limits, seccomp};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerStatus {
    pub layer: Layer,
    pub active: bool,
    /// What is in force, or why the layer is unavailable.
    pub detail: String,
}

/// The probe's findings, one entry per layer in [`Layer::ALL`] order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report(pub Vec<LayerStatus>);

impl Report {
    pub fn missing(&self) -> impl Iterator<Item = &LayerStatus> {
        self.0.iter().filter(|s| !s.active)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<12} {:<12} detail", "layer", "status")?;
        for s in &self.0 {
            let status = if s.active { "active" } else { "UNAVAILABLE" };
            writeln!(f, "{:<12} {:<12} {}", s.layer.name(), status, s.detail)?;
        }
        Ok(())
    }
}

/// Applies every layer in a forked child, in the order a real child does, and reports.
pub fn probe(settings: &JailSettings) -> Report {
    let failed = |why: String| {
        Report(
            Layer::ALL
                .iter()
                .map(|&layer| LayerStatus {
                    layer,
                    active: false,
                    detail: why.clone(),
                })
                .collect(),
        )
    };
    let (read_end, write_end) = match pipe() {
        Ok(pair) => pair,
        Err(e) => return failed(format!("the probe could not start: pipe: {e}")),
    };
    // SAFETY: callers guarantee the process is single-threaded; the child only applies the
    // jail steps, writes to the pipe and `_exit`s.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(read_end);
            let report = Report(apply_each(settings));
            let bytes = serde_json::to_vec(&report).unwrap_or_default();
            let _ = std::fs::File::from(write_end).write_all(&bytes);
            // SAFETY: _exit ends the probe at once; it has nothing to unwind.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(write_end);
            let mut bytes = Vec::new();
            let read = std::fs::File::from(read_end).read_to_end(&mut bytes);
            let status = waitpid(child, None);
            match (read, serde_json::from_slice::<Report>(&bytes)) {
                (Ok(_), Ok(report)) => report,
                _ => failed(format!("the probe process died ({status:?})")),
            }
        }
        Err(e) => failed(format!("the probe could not start: fork: {e}")),
    }
}

fn apply_each(settings: &JailSettings) -> Vec<LayerStatus> {
    let status = |layer, result: Result<String, String>| match result {
        Ok(detail) => LayerStatus {
            layer,
            active: true,
            detail,
        },
        Err(detail) => LayerStatus {
            layer,
            active: false,
            detail,
        },
    };
    let namespaces = namespaces::enter_zygote()
        .map(|()| "network, IPC and UTS namespaces of its own per zygote".to_owned())
        .map_err(|e| e.to_string());
    let rlimits = resource_limits::Budget::measure()
        .and_then(|budget| budget.apply(&settings.max))
        .map(|()| {
            format!(
                "memory, CPU, processes (0), open files, file size (0), core dumps (0); at most \
                 {} MB and {} ms a run",
                settings.max.memory_mb, settings.max.timeout_ms
            )
        })
        .map_err(|e| e.to_string());
    let uid = nix::unistd::geteuid();
    let uid_drop = if uid.is_root() {
        credentials::drop_to(settings.child_uid, settings.child_gid)
            .map(|()| {
                format!(
                    "children run as uid {} gid {}, no groups, no capabilities",
                    settings.child_uid, settings.child_gid
                )
            })
            .map_err(|e| e.to_string())
    } else {
        Ok(format!(
            "sandlot runs unprivileged (uid {uid}); children keep that uid"
        ))
    };
    let landlock = apply_landlock();
    let seccomp = seccomp::Filter::compile(landlock.is_ok())
        .map_err(|e| e.to_string())
        .and_then(|filter| filter.apply().map_err(|e| e.to_string()))
        .map(|()| "allowlist (EPERM) plus a kill list for exploit-only calls".to_owned());
    vec![
        status(Layer::Namespaces, namespaces),
        status(Layer::Rlimits, rlimits),
        status(Layer::UidDrop, uid_drop),
        status(Layer::Landlock, landlock),
        status(Layer::Seccomp, seccomp),
    ]
}

fn apply_landlock() -> Result<String, String> {
    let abi = landlock::abi_version()
        .map_err(|e| format!("the kernel offers no Landlock ({e}); needs Linux 6.7 or later"))?;
    if abi < 4 {
        return Err(format!(
            "Landlock ABI {abi} cannot restrict TCP; needs ABI 4 (Linux 6.7) or later"
        ));
    }
    let ruleset = landlock::build(&[]).map_err(|e| e.to_string())?;
    no_new_privs::set().map_err(|e| e.to_string())?;
    landlock::enforce(ruleset).map_err(|e| e.to_string())?;
    Ok(format!(
        "ABI {abi}: read-only on the interpreter's files, no TCP bind or connect"
    ))
}
