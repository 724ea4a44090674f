//! The short filter each child installs once set up, refusing the zygote's own calls
//! ([`super::seccomp_policy::ZYGOTE_ONLY`]), assembled here rather than by seccompiler. It
//! refuses by trapping, as the allowlist does — the child's SIGSYS handler answers EPERM and
//! notes the call for the run's error ([`super::refused_calls`]) — but for the calls it is
//! told to refuse untrapped, which get EPERM from the kernel.
//!
//! The zygote's filters are installed once and inherited; this one is installed at every fork,
//! and the kernel's price for a filter grows with its length: it translates and JIT-compiles
//! it, and runs it once for each call the older filters allow in any form, to fill its action
//! cache. seccompiler spends five instructions on each call and three on each 32-bit half of a
//! comparison (126 for this list); here a call refused in any form is one instruction, and a
//! half whose mask is all ones two.

use std::collections::BTreeMap;

use seccompiler::{sock_filter, BpfProgram};

use super::seccomp_policy::ArgIs;
use super::JailError;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000; // AUDIT_ARCH_AARCH64

// `struct seccomp_data`: the call's number, its architecture, then six 64-bit arguments
// (little-endian on both architectures: the low half first).
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
const ARGS_OFFSET: u32 = 16;

const LOAD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const AND: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const JUMP_IF_EQUAL: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const RETURN: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const REFUSE: u32 = libc::SECCOMP_RET_TRAP;
const REFUSE_UNTRAPPED: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
/// As seccompiler's filters answer a call of another architecture.
const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// The program trapping `refused` (with EPERM for the calls in `untrapped`) and allowing
/// everything else. Each call maps to its alternative forms, each form to the conditions that
/// must all hold; a call with a form of no conditions is refused in any form. The conditions are the policy's, which seccompiler
/// has already checked (an argument's number at most 5) in compiling the zygote's allowlist.
pub fn compile(
    refused: &BTreeMap<i64, Vec<&[ArgIs]>>,
    untrapped: &[i64],
) -> Result<BpfProgram, JailError> {
    let (any_form, conditional): (Vec<_>, Vec<_>) = refused.iter().partition(|(_, forms)| {
        forms
            .iter()
            .any(|conditions| comparisons(conditions).next().is_none())
    });
    // Laid out as: the architecture check; the call's number; one jump to the refusal for each
    // call refused in any form; for each other call, a jump past its forms unless it is that
    // call, then its forms; the allowance; the two refusals, trapped and untrapped. Built
    // backwards, from the returns up, so that every jump's targets are placed before it.
    let mut program = Backwards::default();
    let refuse_untrapped = program.push(statement(RETURN, REFUSE_UNTRAPPED));
    let refuse_trapped = program.push(statement(RETURN, REFUSE));
    let refuse = |nr: i64| {
        if untrapped.contains(&nr) {
            refuse_untrapped
        } else {
            refuse_trapped
        }
    };
    let allow = program.push(statement(RETURN, ALLOW));
    let mut next = allow;
    for (nr, forms) in conditional.iter().rev() {
        // A form that does not hold goes on to the next; past the last, the call is allowed.
        let mut next_form = allow;
        for conditions in forms.iter().rev() {
            let mut next_half = refuse(**nr);
            for half in comparisons(conditions).rev() {
                program.jump_if_equal(half.value, next_half, next_form)?;
                if half.mask != u32::MAX {
                    program.push(statement(AND, half.mask));
                }
                next_half = program.push(statement(LOAD, half.offset));
            }
            next_form = next_half;
        }
        next = program.jump_if_equal(call_number(**nr)?, next_form, next)?;
    }
    for (nr, _) in any_form.iter().rev() {
        next = program.jump_if_equal(call_number(**nr)?, refuse(**nr), next)?;
    }
    let number = program.push(statement(LOAD, NR_OFFSET));
    let kill = program.push(statement(RETURN, KILL));
    program.jump_if_equal(AUDIT_ARCH, number, kill)?;
    program.push(statement(LOAD, ARCH_OFFSET));
    Ok(program.finish())
}

/// One 32-bit comparison: the word at `offset`, masked, equals `value`.
struct Half {
    offset: u32,
    mask: u32,
    value: u32,
}

/// The 32-bit comparisons that make up `conditions`, in order. As seccompiler reads a condition,
/// the argument and the value are both masked, so a half whose mask is zero always holds and is
/// left out.
fn comparisons(conditions: &[ArgIs]) -> impl DoubleEndedIterator<Item = Half> + '_ {
    conditions
        .iter()
        .flat_map(|c| {
            let low = ARGS_OFFSET + 8 * u32::from(c.arg);
            let low_half = Half {
                offset: low,
                mask: c.mask as u32,
                value: (c.value & c.mask) as u32,
            };
            let high_half = (!c.dword).then(|| Half {
                offset: low + 4,
                mask: (c.mask >> 32) as u32,
                value: ((c.value & c.mask) >> 32) as u32,
            });
            std::iter::once(low_half).chain(high_half)
        })
        .filter(|half| half.mask != 0)
}

fn call_number(nr: i64) -> Result<u32, JailError> {
    u32::try_from(nr).map_err(|_| JailError::SeccompAssemble(format!("call number {nr}")))
}

fn statement(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// A program built from its end: positions count from the last instruction, so a jump's
/// targets, placed before it, have known positions.
#[derive(Default)]
struct Backwards(Vec<sock_filter>);

impl Backwards {
    /// Places `instruction` before all the others; its position.
    fn push(&mut self, instruction: sock_filter) -> usize {
        self.0.push(instruction);
        self.0.len() - 1
    }

    /// Places a comparison of the accumulator with `value` that goes on at position `equal` or
    /// `other`; its position.
    fn jump_if_equal(
        &mut self,
        value: u32,
        equal: usize,
        other: usize,
    ) -> Result<usize, JailError> {
        let here = self.0.len();
        let offset = |target: usize| {
            u8::try_from(here - 1 - target).map_err(|_| {
                JailError::SeccompAssemble(format!(
                    "a jump over {} instructions",
                    here - 1 - target
                ))
            })
        };
        let instruction = sock_filter {
            code: JUMP_IF_EQUAL,
            jt: offset(equal)?,
            jf: offset(other)?,
            k: value,
        };
        Ok(self.push(instruction))
    }

    fn finish(mut self) -> BpfProgram {
        self.0.reverse();
        self.0
    }
}
