//! The seccomp filters, compiled once in the zygote from [`super::seccomp_policy`].
//!
//! Four programs. A zygote installs three on itself once its interpreter is built, and every
//! child inherits them at fork, at no cost: an allowlist whose misses get EPERM (the
//! interpreters' calls and the zygote's own), a kill list whose hits kill the process, and a
//! trap list whose hits the process answers itself (`stat_emulation.rs`). One seccompiler
//! filter has one action for a match; the kernel runs them all and takes the strictest answer
//! (kill, then trap, then EPERM, then allow). Each child then installs the third, short one: it refuses the zygote's own calls,
//! so user code runs under the interpreters' allowlist alone.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::seccomp_policy::{
    ArgIs, ALLOWED, ALLOWED_IF, EMULATED, EXECUTABLE_FILE_MAPPING, KILLED, LIST_DIRECTORY,
    READ_ONLY_OPEN, ZYGOTE_ONLY,
};
use super::seccomp_socket_use::SOCKET_USE;
use super::{stat_emulation, JailError};

/// The compiled programs, ready to install.
pub struct Filter {
    allow: BpfProgram,
    kill: BpfProgram,
    trap: BpfProgram,
    child: BpfProgram,
}

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

impl Filter {
    /// Compiles the policy; `read_only_open` when Landlock confines what may be read,
    /// `native_code` when the interpreter loads native extensions as it goes (and Landlock
    /// confines which files those can be).
    pub fn compile(read_only_open: bool, native_code: bool) -> Result<Self, JailError> {
        Self::compile_policy(read_only_open, read_only_open && native_code)
            .map_err(JailError::SeccompCompile)
    }

    fn compile_policy(
        read_only_open: bool,
        executable_files: bool,
    ) -> Result<Self, seccompiler::Error> {
        let mut allowed: Rules = BTreeMap::new();
        for (nr, _name) in ALLOWED
            .iter()
            .chain(read_only_open.then_some(&LIST_DIRECTORY))
        {
            allowed.insert(*nr, Vec::new());
        }
        let conditional = ALLOWED_IF
            .iter()
            .chain(SOCKET_USE)
            .chain(read_only_open.then_some(&READ_ONLY_OPEN))
            .chain(executable_files.then_some(&EXECUTABLE_FILE_MAPPING))
            .chain(ZYGOTE_ONLY);
        for (nr, _name, conditions) in conditional {
            add_rule(&mut allowed, *nr, conditions)?;
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
        let trapped = EMULATED.iter().map(|(nr, _)| (*nr, Vec::new())).collect();
        let trap = SeccompFilter::new(
            trapped,
            SeccompAction::Allow,
            SeccompAction::Trap,
            target_arch(),
        )?;
        // A call the interpreters may also make (prlimit64) is refused only in the zygote's
        // forms; every other zygote-only call in any form.
        let mut refused: Rules = BTreeMap::new();
        for (nr, _name, conditions) in ZYGOTE_ONLY {
            let shared = ALLOWED_IF
                .iter()
                .chain(SOCKET_USE)
                .any(|(allowed, _, _)| allowed == nr);
            add_rule(&mut refused, *nr, if shared { conditions } else { &[] })?;
        }
        let child = SeccompFilter::new(
            refused,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            target_arch(),
        )?;
        Ok(Self {
            allow: allow.try_into()?,
            kill: kill.try_into()?,
            trap: trap.try_into()?,
            child: child.try_into()?,
        })
    }

    /// Installs the kill list alone: a shell needs fork, exec and files, which its namespaces
    /// and read-only view confine, but never an exploit's calls.
    pub fn apply_kill_list(&self) -> Result<(), JailError> {
        install(&self.kill)
    }

    /// In the zygote: the kill list, the allowlist and the trap list (its handler first),
    /// inherited by every child.
    pub fn apply_to_zygote(&self) -> Result<(), JailError> {
        stat_emulation::install()?;
        install(&self.kill)?;
        install(&self.allow)?;
        install(&self.trap)
    }

    /// In a child, its set-up done: the zygote's own calls refused from here on.
    pub fn apply_to_child(&self) -> Result<(), JailError> {
        install(&self.child)
    }
}

fn install(program: &BpfProgram) -> Result<(), JailError> {
    seccompiler::apply_filter(program).map_err(JailError::SeccompInstall)
}

/// Adds a rule for `nr`: its conditions must all hold (none: any form); rules for the same call
/// are alternatives.
fn add_rule(rules: &mut Rules, nr: i64, conditions: &[ArgIs]) -> Result<(), seccompiler::Error> {
    let entry = rules.entry(nr).or_default();
    if conditions.is_empty() {
        // seccompiler matches a call with no rules in any form.
        entry.clear();
        return Ok(());
    }
    let conditions = conditions
        .iter()
        .map(condition)
        .collect::<Result<Vec<_>, _>>()?;
    entry.push(SeccompRule::new(conditions)?);
    Ok(())
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
                    && !ALLOWED_IF.iter().any(|(a, _, _)| a == nr)
                    && !SOCKET_USE.iter().any(|(a, _, _)| a == nr)
                    && !ZYGOTE_ONLY.iter().any(|(a, _, _)| a == nr),
                "{name} is both allowed and killed"
            );
        }
    }

    #[test]
    fn the_emulated_calls_are_allowed_in_no_form() {
        for (nr, name) in EMULATED {
            assert!(
                !ALLOWED.iter().any(|(a, _)| a == nr)
                    && !ALLOWED_IF.iter().any(|(a, _, _)| a == nr)
                    && !SOCKET_USE.iter().any(|(a, _, _)| a == nr)
                    && !ZYGOTE_ONLY.iter().any(|(a, _, _)| a == nr)
                    && !KILLED.iter().any(|(a, _)| a == nr),
                "{name} is both emulated and allowed or killed"
            );
        }
    }

    #[test]
    fn the_zygote_only_calls_are_not_the_interpreters() {
        for (nr, name, _) in ZYGOTE_ONLY {
            assert!(
                !ALLOWED.iter().any(|(a, _)| a == nr),
                "{name} is allowed to every child anyway"
            );
        }
    }

    #[test]
    fn the_policy_compiles_every_way() {
        for (landlock, native_code) in [(true, true), (true, false), (false, true), (false, false)]
        {
            Filter::compile(landlock, native_code).unwrap();
        }
    }
}
