//! Which layers of the jail work on this machine, found by applying each for real in a
//! throwaway child process. `sandlot doctor` prints the answer; `sandlot serve` refuses to
//! start on a missing layer unless the operator accepts it (`--allow-degraded`).
//!
//! Must be called while the process is single-threaded (before the async runtime starts):
//! the probe forks.

use std::fmt;

use nix::unistd::pipe;
use serde::{Deserialize, Serialize};

use super::settings::{JailSettings, Layer};
use super::{credentials, landlock, namespaces, no_new_privs, resource_limits, seccomp, Jail};
use crate::throwaway_process;

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

/// Applies every layer for real, as a zygote and its child do: a forked process plays the
/// zygote (its namespaces, then its lock-down), and forks a child of its own that adds its
/// delta. A layer is active when both halves of it worked.
///
/// # Safety
/// The process must be single-threaded: the probe forks.
pub unsafe fn probe(settings: &JailSettings) -> Report {
    let play_the_zygote = || {
        let settings = settings.clone();
        // The child's pipe must exist before the zygote's filter refuses pipe2.
        let child_pipe = pipe().map_err(|e| format!("pipe: {e}"));
        let (zygote, mut jail) = lock_as_zygote(&settings);
        let child = match child_pipe {
            // SAFETY: this forked process has a single thread.
            Ok(pipe) => unsafe {
                throwaway_process::run_with(pipe, || {
                    let statuses = lock_as_child(jail.as_mut());
                    serde_json::to_vec(&statuses).unwrap_or_default()
                })
            },
            Err(e) => Err(e),
        };
        let child: Vec<Result<String, String>> = match child {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| vec![Err(format!("the probe's child said nothing: {e}")); 5]),
            Err(why) => vec![Err(why); 5],
        };
        let merged: Vec<LayerStatus> = zygote
            .into_iter()
            .zip(child)
            .map(|(zygote, child)| match (zygote.active, child) {
                (true, Ok(_)) => zygote,
                (true, Err(why)) => LayerStatus {
                    active: false,
                    detail: format!("in a child: {why}"),
                    ..zygote
                },
                (false, _) => zygote,
            })
            .collect();
        serde_json::to_vec(&Report(merged)).unwrap_or_default()
    };
    // SAFETY: our caller promises a single thread; the forked zygote stand-in is one too.
    let zygote = unsafe { throwaway_process::run(play_the_zygote) };
    match zygote.and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string())) {
        Ok(report) => report,
        Err(why) => Report(
            Layer::ALL
                .iter()
                .map(|&layer| LayerStatus {
                    layer,
                    active: false,
                    detail: format!("the probe failed: {why}"),
                })
                .collect(),
        ),
    }
}

/// The zygote's half, in its order; the jail the child half goes on with, if it could be built.
fn lock_as_zygote(settings: &JailSettings) -> (Vec<LayerStatus>, Option<Jail>) {
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
    let budget = resource_limits::Budget::measure().map_err(|e| e.to_string());
    let rlimits = budget
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|budget| {
            budget
                .apply_to_zygote(&settings.max)
                .map_err(|e| e.to_string())
        })
        .map(|()| {
            format!(
                "memory, CPU, processes (0), open files, file size (0), core dumps (0); at most \
                 {} MB and {} ms a run",
                settings.max.memory_mb, settings.max.timeout_ms
            )
        });
    let uid = nix::unistd::geteuid();
    let uid_drop = if uid.is_root() {
        credentials::drop_to(settings.child_uid, settings.child_gid)
            .map(|()| {
                format!(
                    "zygotes and children run as uid {} gid {}, no groups, no capabilities",
                    settings.child_uid, settings.child_gid
                )
            })
            .map_err(|e| e.to_string())
    } else {
        Ok(format!(
            "sandlot runs unprivileged (uid {uid}); zygotes and children keep that uid"
        ))
    };
    let landlock = apply_landlock(settings.landlock_abi_max);
    // Built before the zygote's filter, which refuses landlock_create_ruleset.
    let child_scope = if landlock.is_ok() {
        landlock::build_child_scope(settings.landlock_abi_max)
            .ok()
            .flatten()
    } else {
        None
    };
    let filter = seccomp::Filter::compile(landlock.is_ok(), true).map_err(|e| e.to_string());
    let seccomp = filter
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|filter| filter.apply_to_zygote().map_err(|e| e.to_string()))
        .map(|()| {
            "allowlist (a refusal is EPERM, named in the run's error) plus a kill list for \
             exploit-only calls; each child refuses the zygote's own calls to itself"
                .to_owned()
        });
    let mut probe_settings = settings.clone();
    for (layer, worked) in [
        (Layer::Landlock, landlock.is_ok()),
        (Layer::Seccomp, seccomp.is_ok()),
    ] {
        if !worked {
            probe_settings.skip.push(layer);
        }
    }
    let jail = budget
        .ok()
        .map(|budget| Jail::for_probe(probe_settings, budget, child_scope, filter.ok()));
    let statuses = vec![
        status(Layer::Namespaces, namespaces),
        status(Layer::Rlimits, rlimits),
        status(Layer::UidDrop, uid_drop),
        status(Layer::Landlock, landlock),
        status(Layer::Seccomp, seccomp),
    ];
    (statuses, jail)
}

/// The child's half, one entry per layer in [`Layer::ALL`] order.
fn lock_as_child(jail: Option<&mut Jail>) -> Vec<Result<String, String>> {
    let Some(jail) = jail else {
        return vec![Err("the zygote's half failed".into()); 5];
    };
    let mut results = vec![Ok(String::new()); 5];
    let index = |layer| Layer::ALL.iter().position(|l| *l == layer).unwrap_or(0);
    for (layer, result) in jail.probe_child() {
        results[index(layer)] = result.map(|()| String::new()).map_err(|e| e.to_string());
    }
    results
}

fn apply_landlock(abi_max: Option<i32>) -> Result<String, String> {
    let kernel_abi = landlock::abi_version()
        .map_err(|e| format!("the kernel offers no Landlock ({e}); needs Linux 6.7 or later"))?;
    let abi = abi_max.map_or(kernel_abi, |max| kernel_abi.min(max));
    if abi < 4 {
        return Err(format!(
            "Landlock ABI {abi} cannot restrict TCP; needs ABI 4 (Linux 6.7) or later"
        ));
    }
    let ruleset = landlock::build(&[], abi_max).map_err(|e| e.to_string())?;
    no_new_privs::set().map_err(|e| e.to_string())?;
    landlock::enforce(ruleset).map_err(|e| e.to_string())?;
    let scope = if abi >= 6 {
        "; each child in a nested domain of its own, which can signal nothing outside it"
    } else {
        ""
    };
    Ok(format!(
        "ABI {abi}: read-only on the interpreter's files, no TCP bind or connect{scope}"
    ))
}
