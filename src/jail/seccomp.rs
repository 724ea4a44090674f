//! The seccomp filters: compiled once in the zygote from [`super::seccomp_policy`], installed in
//! each child as the last step of its jail.
//!
//! Two programs are stacked, because one seccompiler filter has one action for a match: an
//! allowlist whose misses fail with EPERM, and a killlist whose hits kill the process. The
//! kernel runs both and takes the stricter answer, so a killed call dies even though the
//! allowlist alone would only have refused it.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::seccomp_policy::{ArgIs, ALLOWED, ALLOWED_IF, KILLED, LIST_DIRECTORY, READ_ONLY_OPEN};
use super::JailError;

/// The compiled programs, ready to install.
pub struct Filter {
    allow: BpfProgram,
    kill: BpfProgram,
}

impl Filter {
    /// Compiles the policy; `read_only_open` when Landlock confines what may be read. Done once
    /// per zygote; a child only installs the result.
    pub fn compile(read_only_open: bool) -> Result<Self, JailError> {
        Self::compile_policy(read_only_open).map_err(JailError::SeccompCompile)
    }

    fn compile_policy(read_only_open: bool) -> Result<Self, seccompiler::Error> {
        let mut allowed: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for (nr, _name) in ALLOWED
            .iter()
            .chain(read_only_open.then_some(&LIST_DIRECTORY))
        {
            allowed.insert(*nr, Vec::new());
        }
        let conditional = ALLOWED_IF
            .iter()
            .chain(read_only_open.then_some(&READ_ONLY_OPEN));
        for (nr, _name, conditions) in conditional {
            let conditions = conditions
                .iter()
                .map(condition)
                .collect::<Result<Vec<_>, _>>()?;
            allowed
                .entry(*nr)
                .or_default()
                .push(SeccompRule::new(conditions)?);
        }
        let allow = SeccompFilter::new(
            allowed,
            SeccompAction::Errno(libc::EPERM as u32),
            SeccompAction::Allow,
            target_arch(),
        )?;
        let killed = KILLED.iter().map(|(nr, _)| (*nr, Vec::new())).collect();
        let kill = SeccompFilter::new(
            killed,
            SeccompAction::Allow,
            SeccompAction::KillProcess,
            target_arch(),
        )?;
        Ok(Self {
            allow: allow.try_into()?,
            kill: kill.try_into()?,
        })
    }

    /// Installs the kill list alone: a shell needs fork, exec and files, which its namespaces
    /// and read-only view confine, but never an exploit's calls.
    pub fn apply_kill_list(&self) -> Result<(), JailError> {
        seccompiler::apply_filter(&self.kill).map_err(JailError::SeccompInstall)
    }

    /// Installs both programs on the calling (only) thread, with `no_new_privs`.
    pub fn apply(&self) -> Result<(), JailError> {
        seccompiler::apply_filter(&self.kill).map_err(JailError::SeccompInstall)?;
        seccompiler::apply_filter(&self.allow).map_err(JailError::SeccompInstall)
    }
}

fn condition(arg: &ArgIs) -> Result<SeccompCondition, seccompiler::Error> {
    let length = if arg.dword {
        SeccompCmpArgLen::Dword
    } else {
        SeccompCmpArgLen::Qword
    };
    Ok(SeccompCondition::new(
        arg.arg,
        length,
        SeccompCmpOp::MaskedEq(arg.mask),
        arg.value,
    )?)
}

fn target_arch() -> TargetArch {
    #[cfg(target_arch = "x86_64")]
    return TargetArch::x86_64;
    #[cfg(target_arch = "aarch64")]
    return TargetArch::aarch64;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_call_is_both_allowed_and_killed() {
        for (nr, name) in KILLED {
            assert!(
                !ALLOWED.iter().any(|(a, _)| a == nr)
                    && !ALLOWED_IF.iter().any(|(a, _, _)| a == nr),
                "{name} is both allowed and killed"
            );
        }
    }

    #[test]
    fn the_policy_compiles_both_ways() {
        Filter::compile(true).unwrap();
        Filter::compile(false).unwrap();
    }
}
