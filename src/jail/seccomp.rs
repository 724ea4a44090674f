//! The seccomp filter: compiled once in the zygote from [`super::seccomp_policy`], installed in
//! each child as the last step of its jail.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::seccomp_policy::{ALLOWED, ALLOWED_IF};
use super::JailError;

/// A compiled BPF program, ready to install.
pub struct Filter(BpfProgram);

impl Filter {
    /// Compiles the policy. Done once per zygote; a child only installs the result.
    pub fn compile() -> Result<Self, seccompiler::Error> {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for (nr, _name) in ALLOWED {
            rules.insert(*nr, Vec::new());
        }
        for (nr, _name, cond) in ALLOWED_IF {
            let condition = SeccompCondition::new(
                cond.arg,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(cond.mask),
                cond.value,
            )?;
            rules
                .entry(*nr)
                .or_default()
                .push(SeccompRule::new(vec![condition])?);
        }
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Errno(libc::EPERM as u32),
            SeccompAction::Allow,
            target_arch(),
        )?;
        Ok(Self(filter.try_into()?))
    }

    /// Installs the filter on the calling (only) thread, with `no_new_privs`.
    pub fn apply(&self) -> Result<(), JailError> {
        seccompiler::apply_filter(&self.0).map_err(JailError::Seccomp)
    }
}

fn target_arch() -> TargetArch {
    #[cfg(target_arch = "x86_64")]
    return TargetArch::x86_64;
    #[cfg(target_arch = "aarch64")]
    return TargetArch::aarch64;
}
