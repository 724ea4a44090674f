//! The seccomp filters, compiled once in the zygote from [`super::seccomp_policy`].
//!
//! Five programs. A zygote installs four on itself once its interpreter is built, and every
//! child inherits them at fork, at no cost: an allowlist whose misses are trapped (the
//! interpreters' calls and the zygote's own; the process's handler answers a miss with EPERM
//! and notes it, `stat_emulation.rs` and `refused_calls.rs`), a kill list whose hits kill the
//! process, a trap list whose hits the process answers itself (`stat_emulation.rs`), and the
//! [`UNTRAPPED`] list, whose hits get EPERM from the kernel. One seccompiler filter has one
//! action for a match; the kernel runs them all and takes the strictest answer (kill, then
//! trap, then EPERM, then allow), so the allowlist allows the untrapped calls in every form and
//! leaves their refusal to their own program. Each child then installs the fifth, short one
//! ([`super::seccomp_refusal`]): it traps the zygote's own calls (its `clone`, untrapped, gets
//! EPERM), so user code runs under the interpreters' allowlist alone.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::seccomp_policy::{
    ArgIs, ALLOWED, ALLOWED_IF, EMULATED, EXECUTABLE_FILE_MAPPING, FORK_FLAGS, KILLED,
    LIST_DIRECTORY, READ_ONLY_OPEN, UNTRAPPED, ZYGOTE_ONLY,
};
use super::seccomp_socket_use::SOCKET_USE;
use super::{seccomp_refusal, stat_emulation, JailError};

/// The compiled programs, ready to install.
pub struct Filter {
    allow: BpfProgram,
    kill: BpfProgram,
    trap: BpfProgram,
    untrapped: BpfProgram,
    child: BpfProgram,
}

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

impl Filter {
    /// Compiles the policy; `read_only_open` when Landlock confines what may be read,
    /// `native_code` when the interpreter loads native extensions as it goes (and Landlock
    /// confines which files those can be).
    pub fn compile(read_only_open: bool, native_code: bool) -> Result<Self, JailError> {
        let (allow, kill, trap) =
            Self::compile_policy(read_only_open, read_only_open && native_code)
                .map_err(JailError::SeccompCompile)?;
        Ok(Self {
            allow,
            kill,
            trap,
            untrapped: compile_untrapped().map_err(JailError::SeccompCompile)?,
            child: seccomp_refusal::compile(&refused_in_children(), UNTRAPPED_IN_CHILDREN)?,
        })
    }

    /// The zygote's three programs (allow, kill, trap), which seccompiler compiles.
    fn compile_policy(
        read_only_open: bool,
        executable_files: bool,
    ) -> Result<(BpfProgram, BpfProgram, BpfProgram), seccompiler::Error> {
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
        // Never trapped: allowed here in every form, refused by their own program.
        for (nr, _name, _conditions) in UNTRAPPED {
            add_rule(&mut allowed, *nr, &[])?;
        }
        add_rule(&mut allowed, libc::SYS_clone, &[])?;
        let allow = SeccompFilter::new(
            allowed,
            SeccompAction::Trap,
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
        Ok((allow.try_into()?, kill.try_into()?, trap.try_into()?))
    }

    /// Installs the kill list alone: a shell needs fork, exec and files, which its namespaces
    /// and read-only view confine, but never an exploit's calls.
    pub fn apply_kill_list(&self) -> Result<(), JailError> {
        install(&self.kill)
    }

    /// In the zygote: the kill list, the allowlist, the trap list (their handler first) and
    /// the untrapped list, inherited by every child.
    pub fn apply_to_zygote(&self) -> Result<(), JailError> {
        stat_emulation::install()?;
        install(&self.kill)?;
        install(&self.allow)?;
        install(&self.trap)?;
        install(&self.untrapped)
    }

    /// In a child, its set-up done: the zygote's own calls refused from here on.
    pub fn apply_to_child(&self) -> Result<(), JailError> {
        install(&self.child)
    }
}

/// The zygote's own calls a child refuses untrapped: glibc 2.41's `fork()` blocks every
/// signal around its clone, where a trap would kill the child.
const UNTRAPPED_IN_CHILDREN: &[i64] = &[libc::SYS_clone];

/// The zygote's own calls as each child refuses them: a call the interpreters may also make
/// (prlimit64, fcntl) in the zygote's forms only, every other one in any form (an empty list of
/// conditions).
fn refused_in_children() -> BTreeMap<i64, Vec<&'static [ArgIs]>> {
    let mut refused: BTreeMap<i64, Vec<&'static [ArgIs]>> = BTreeMap::new();
    for (nr, _name, conditions) in ZYGOTE_ONLY {
        // clone's other forms are the untrapped list's, which must stay untrapped.
        let form: &[ArgIs] = if interpreters_may_make(*nr) || *nr == libc::SYS_clone {
            conditions
        } else {
            &[]
        };
        refused.entry(*nr).or_default().push(form);
    }
    refused
}

/// Whether the interpreters' allowlist has call `nr` in some form.
fn interpreters_may_make(nr: i64) -> bool {
    ALLOWED_IF
        .iter()
        .chain(SOCKET_USE)
        .any(|(allowed, _, _)| *allowed == nr)
}

/// The untrapped list's program: process and thread creation but the zygote's `fork()`, and a
/// new SIGSYS handler, refused with EPERM by the kernel.
fn compile_untrapped() -> Result<BpfProgram, seccompiler::Error> {
    let mut refused: Rules = BTreeMap::new();
    for (nr, _name, conditions) in UNTRAPPED {
        add_rule(&mut refused, *nr, conditions)?;
    }
    refused.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::Ne,
            FORK_FLAGS,
        )?])?],
    );
    let filter = SeccompFilter::new(
        refused,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        target_arch(),
    )?;
    Ok(filter.try_into()?)
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
    use crate::jail::seccomp_policy::{dword, qword};

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

    /// Runs a classic BPF program of the instructions seccompiler and `seccomp_refusal` emit on
    /// one call; the action it returns.
    fn action(program: &[seccompiler::sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        let word = |offset: u32| match offset {
            0 => nr,
            4 => arch,
            16..=63 => {
                let arg = args[(offset as usize - 16) / 8];
                if offset.is_multiple_of(8) {
                    arg as u32
                } else {
                    (arg >> 32) as u32
                }
            }
            _ => panic!("a load from offset {offset}"),
        };
        let (mut pc, mut accumulator) = (0, 0u32);
        loop {
            let instruction = &program[pc];
            let k = instruction.k;
            let taken = |condition: bool| {
                usize::from(if condition {
                    instruction.jt
                } else {
                    instruction.jf
                })
            };
            pc += 1 + match instruction.code {
                0x20 => {
                    accumulator = word(k);
                    0
                }
                0x54 => {
                    accumulator &= k;
                    0
                }
                0x05 => k as usize,
                0x15 => taken(accumulator == k),
                0x25 => taken(accumulator > k),
                0x35 => taken(accumulator >= k),
                0x45 => taken(accumulator & k != 0),
                0x06 => return k,
                code => panic!("instruction {code:#x}"),
            };
        }
    }

    type Refused = BTreeMap<i64, Vec<&'static [ArgIs]>>;

    /// A list of refused calls as seccompiler compiles it: the reference for
    /// `seccomp_refusal`'s program.
    fn refusal_by_seccompiler(refused: &Refused) -> BpfProgram {
        let mut rules: Rules = BTreeMap::new();
        for (nr, forms) in refused {
            for conditions in forms {
                add_rule(&mut rules, *nr, conditions).unwrap();
            }
        }
        SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Trap,
            target_arch(),
        )
        .unwrap()
        .try_into()
        .unwrap()
    }

    /// Arguments that meet `conditions`, and for each 32-bit half they compare, the same
    /// arguments with that half off by one bit.
    fn meeting_and_missing(conditions: &[ArgIs]) -> Vec<[u64; 6]> {
        let mut meeting = [0u64; 6];
        for c in conditions {
            let a = usize::from(c.arg);
            meeting[a] = (meeting[a] & !c.mask) | (c.value & c.mask);
        }
        let mut all = vec![meeting];
        for c in conditions {
            let halves = if c.dword {
                vec![c.mask & 0xffff_ffff]
            } else {
                vec![c.mask & 0xffff_ffff, c.mask & !0xffff_ffff]
            };
            for mask in halves.into_iter().filter(|m| *m != 0) {
                let mut missing = meeting;
                missing[usize::from(c.arg)] ^= 1 << mask.trailing_zeros();
                all.push(missing);
            }
        }
        all
    }

    /// Runs `seccomp_refusal`'s program for `refused` and seccompiler's through [`action`] on
    /// every call number below 512 (and an x32 one), on both architectures, with arguments
    /// that meet and miss each condition of `refused` and of the policy, and arbitrary ones;
    /// requires the same answer for each. How many calls were refused, of how many.
    fn assert_same_answers(refused: &Refused) -> (usize, usize) {
        let ours = seccomp_refusal::compile(refused, &[]).unwrap();
        let reference = refusal_by_seccompiler(refused);
        let mut arguments: Vec<[u64; 6]> = vec![[0; 6], [u64::MAX; 6]];
        let policy = ZYGOTE_ONLY.iter().chain(ALLOWED_IF).chain(SOCKET_USE);
        for conditions in policy
            .map(|(_, _, conditions)| *conditions)
            .chain(refused.values().flatten().copied())
        {
            arguments.extend(meeting_and_missing(conditions));
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..64 {
            let mut random = [0u64; 6];
            for arg in &mut random {
                // xorshift64: arbitrary arguments, the same each run.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *arg = state & [u64::MAX, 0xffff_ffff, 0xff, 0xf][(state >> 60) as usize % 4];
            }
            arguments.push(random);
        }
        let native = reference[1].k;
        let calls = (0..512).chain([0x4000_0000 | libc::SYS_clone as u32]);
        let (mut refusals, mut compared) = (0, 0);
        for nr in calls {
            for arch in [native, 0x4000_0003] {
                for args in &arguments {
                    let expected = action(&reference, nr, arch, *args);
                    assert_eq!(
                        action(&ours, nr, arch, *args),
                        expected,
                        "call {nr}, arch {arch:#x}, arguments {args:x?}"
                    );
                    refusals += usize::from(expected == REFUSE);
                    compared += 1;
                }
            }
        }
        (refusals, compared)
    }

    const REFUSE: u32 = libc::SECCOMP_RET_TRAP;
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;

    /// This machine's architecture as seccompiler's programs check it (their second word).
    fn native_arch() -> u32 {
        refusal_by_seccompiler(&BTreeMap::new())[1].k
    }

    #[test]
    fn the_childs_program_answers_every_call_as_seccompilers_would() {
        let refused = refused_in_children();
        let ours = seccomp_refusal::compile(&refused, &[]).unwrap().len();
        let reference = refusal_by_seccompiler(&refused).len();
        assert!(ours * 2 < reference, "{ours} against {reference}");
        let (refusals, compared) = assert_same_answers(&refused);
        // Not two programs that answer everything alike: each call refused in any form was
        // refused with every argument tried, and most calls were allowed.
        let any_form = refused
            .values()
            .filter(|forms| forms.iter().any(|conditions| conditions.is_empty()))
            .count();
        let arguments_tried = compared / 2 / 513;
        assert!(any_form >= 10, "{any_form}");
        assert!(
            refusals >= any_form * arguments_tried && refusals < compared / 4,
            "{refusals} of {compared}"
        );
    }

    /// Threads, `posix_spawn` and `vfork` get EPERM from the kernel (glibc blocks SIGSYS around
    /// them), as does a new SIGSYS handler; the zygote's `fork()` and everything else pass, and
    /// the allowlist lets them all through to this program rather than trap them.
    #[test]
    fn creation_and_the_sigsys_handler_are_refused_untrapped() {
        let untrapped = compile_untrapped().unwrap();
        let (allow, _, _) = Filter::compile_policy(true, true).unwrap();
        let native = native_arch();
        let errno = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        let spawn = (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u64;
        let nr = |n: i64| n as u32;
        let mut cases = vec![
            (nr(libc::SYS_clone), [thread, 0, 0, 0, 0, 0], errno),
            (nr(libc::SYS_clone), [spawn, 0, 0, 0, 0, 0], errno),
            (nr(libc::SYS_clone), [FORK_FLAGS, 0, 0, 0, 0, 0], ALLOW),
            (nr(libc::SYS_clone3), [0; 6], errno),
            (
                nr(libc::SYS_rt_sigaction),
                [libc::SIGSYS as u64, 1, 0, 0, 0, 0],
                errno,
            ),
            (
                nr(libc::SYS_rt_sigaction),
                [libc::SIGINT as u64, 1, 0, 0, 0, 0],
                ALLOW,
            ),
            (nr(libc::SYS_socket), [0; 6], ALLOW),
        ];
        #[cfg(target_arch = "x86_64")]
        cases.push((nr(libc::SYS_vfork), [0; 6], errno));
        for (call, args, expected) in cases {
            assert_eq!(
                action(&untrapped, call, native, args),
                expected,
                "call {call} {args:x?}"
            );
            if call != nr(libc::SYS_socket) {
                assert_eq!(
                    action(&allow, call, native, args),
                    ALLOW,
                    "allowlist: {call}"
                );
            }
        }
        assert_eq!(
            action(&allow, nr(libc::SYS_socket), native, [0; 6]),
            REFUSE,
            "the allowlist traps a call it does not have"
        );
    }

    /// The kernel's answer to a call under several programs: the strictest of theirs (kill,
    /// then trap, then EPERM, then allow: the lowest action, read as signed).
    fn decision(programs: &[&BpfProgram], nr: i64, args: [u64; 6]) -> u32 {
        programs
            .iter()
            .map(|program| action(program, nr as u32, native_arch(), args))
            .min_by_key(|answer| (answer & libc::SECCOMP_RET_ACTION_FULL) as i32)
            .unwrap()
    }

    /// The five programs together, in the zygote and in a child: what is trapped, what the
    /// kernel refuses untrapped, what is allowed, what kills.
    #[test]
    fn the_five_programs_together_answer_as_the_policy_says() {
        let filter = Filter::compile(true, true).unwrap();
        let zygote = [&filter.kill, &filter.allow, &filter.trap, &filter.untrapped];
        let child = [
            &filter.kill,
            &filter.allow,
            &filter.trap,
            &filter.untrapped,
            &filter.child,
        ];
        let errno = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let trap = libc::SECCOMP_RET_TRAP;
        let kill = libc::SECCOMP_RET_KILL_PROCESS;
        let clone = |flags: u64| [flags, 0, 0, 0, 0, 0];
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        let spawn = (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u64;
        let new_user = (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64;
        let sigaction = |signal: i32, act: u64| [signal as u64, act, 0, 0, 0, 0];
        let ioctl = |request: u64| [0, request, 0, 0, 0, 0];
        let mut cases = vec![
            ("fork()", libc::SYS_clone, clone(FORK_FLAGS), ALLOW, errno),
            ("a thread", libc::SYS_clone, clone(thread), errno, errno),
            ("posix_spawn", libc::SYS_clone, clone(spawn), errno, errno),
            (
                "a user namespace",
                libc::SYS_clone,
                clone(new_user),
                errno,
                errno,
            ),
            (
                "fork() and a high bit",
                libc::SYS_clone,
                clone(FORK_FLAGS | 1 << 40),
                errno,
                errno,
            ),
            ("clone3", libc::SYS_clone3, [0; 6], errno, errno),
            (
                "tgkill",
                libc::SYS_tgkill,
                [1, 1, 10, 0, 0, 0],
                errno,
                errno,
            ),
            (
                "a SIGSYS handler",
                libc::SYS_rt_sigaction,
                sigaction(libc::SIGSYS, 1),
                errno,
                errno,
            ),
            (
                "SIGSYS asked",
                libc::SYS_rt_sigaction,
                sigaction(libc::SIGSYS, 0),
                errno,
                errno,
            ),
            (
                "a SIGINT handler",
                libc::SYS_rt_sigaction,
                sigaction(libc::SIGINT, 1),
                ALLOW,
                ALLOW,
            ),
            ("isatty", libc::SYS_ioctl, ioctl(libc::TCGETS), ALLOW, ALLOW),
            ("TIOCSTI", libc::SYS_ioctl, ioctl(libc::TIOCSTI), trap, trap),
            ("socket", libc::SYS_socket, [2, 1, 0, 0, 0, 0], trap, trap),
            ("memfd_create", libc::SYS_memfd_create, [0; 6], ALLOW, trap),
            ("newfstatat", libc::SYS_newfstatat, [0; 6], trap, trap),
            ("ptrace", libc::SYS_ptrace, [0; 6], kill, kill),
            ("read", libc::SYS_read, [0; 6], ALLOW, ALLOW),
        ];
        #[cfg(target_arch = "x86_64")]
        cases.push(("vfork", libc::SYS_vfork, [0; 6], errno, errno));
        for (what, nr, args, in_zygote, in_child) in cases {
            assert_eq!(
                decision(&zygote, nr, args),
                in_zygote,
                "{what} in the zygote"
            );
            assert_eq!(decision(&child, nr, args), in_child, "{what} in a child");
        }
    }

    /// Conditions the policy does not have today: masks that are not all ones, 64-bit values
    /// whose halves differ, a value with bits outside its mask, several forms of one call.
    #[test]
    fn the_assembler_answers_as_seccompiler_for_conditions_of_every_shape() {
        const PARTIAL: &[ArgIs] = &[qword(0, 0xffff_0000_0000_ff00, 0x1234_0000_0000_5600)];
        const OUTSIDE_THE_MASK: &[ArgIs] = &[qword(1, 0xff, 0x1ff)];
        const OUTSIDE_THE_HIGH_MASK: &[ArgIs] = &[qword(4, 0xff << 32, 0x1ff << 32)];
        const TWO_ARGUMENTS: &[ArgIs] = &[dword(2, 0xf0, 0x30), qword(3, u64::MAX, 1 << 40)];
        let mut refused: Refused = BTreeMap::new();
        for (nr, _, conditions) in ALLOWED_IF
            .iter()
            .chain(SOCKET_USE)
            .chain([&READ_ONLY_OPEN, &EXECUTABLE_FILE_MAPPING])
        {
            refused.entry(*nr).or_default().push(conditions);
        }
        refused.entry(libc::SYS_ioctl).or_default().extend([
            PARTIAL,
            OUTSIDE_THE_MASK,
            OUTSIDE_THE_HIGH_MASK,
            TWO_ARGUMENTS,
        ]);
        refused.entry(libc::SYS_getpid).or_default().push(&[]);
        let (refusals, compared) = assert_same_answers(&refused);
        assert!(
            refusals > 0 && refusals < compared / 4,
            "{refusals} of {compared}"
        );
    }

    #[test]
    fn every_zygote_only_call_the_interpreters_never_make_is_refused_in_any_form() {
        let program =
            seccomp_refusal::compile(&refused_in_children(), UNTRAPPED_IN_CHILDREN).unwrap();
        for (nr, name, _) in ZYGOTE_ONLY {
            if interpreters_may_make(*nr) || *nr == libc::SYS_clone {
                continue;
            }
            for args in [[0; 6], [u64::MAX; 6], [1, 2, 3, 4, 5, 6]] {
                assert_eq!(
                    action(&program, *nr as u32, native_arch(), args),
                    REFUSE,
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn the_childs_program_refuses_the_zygotes_forms_only() {
        let program =
            seccomp_refusal::compile(&refused_in_children(), UNTRAPPED_IN_CHILDREN).unwrap();
        let native = native_arch();
        let fork = (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD) as u64;
        let fcntl = |command: i32| [3, command as u64, 0, 0, 0, 0];
        let prlimit = |pid: u64, resource: u32| [pid, u64::from(resource), 1, 0, 0, 0];
        let nr = |n: i64| n as u32;
        for (call, args, expected) in [
            // Untrapped: glibc 2.41's fork() blocks every signal around it.
            (
                nr(libc::SYS_clone),
                [fork, 0, 0, 0, 0, 0],
                libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
            ),
            // Its other forms are the untrapped list's.
            (nr(libc::SYS_clone), [0; 6], ALLOW),
            (nr(libc::SYS_memfd_create), [0; 6], REFUSE),
            (nr(libc::SYS_fcntl), fcntl(libc::F_ADD_SEALS), REFUSE),
            (nr(libc::SYS_fcntl), fcntl(libc::F_GETFD), ALLOW),
            (
                nr(libc::SYS_prlimit64),
                prlimit(0, libc::RLIMIT_NPROC),
                REFUSE,
            ),
            (nr(libc::SYS_prlimit64), prlimit(0, libc::RLIMIT_AS), ALLOW),
            (
                nr(libc::SYS_prlimit64),
                prlimit(7, libc::RLIMIT_NPROC),
                ALLOW,
            ),
            (nr(libc::SYS_seccomp), [1, 0, 0, 0, 0, 0], REFUSE), // SECCOMP_SET_MODE_FILTER
            (nr(libc::SYS_read), [0; 6], ALLOW),
            (nr(libc::SYS_exit_group), [0; 6], ALLOW),
        ] {
            assert_eq!(
                action(&program, call, native, args),
                expected,
                "call {call} {args:x?}"
            );
        }
        assert_eq!(
            action(&program, 0, 0x4000_0003, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }

    #[test]
    fn the_policy_compiles_every_way() {
        for (landlock, native_code) in [(true, true), (true, false), (false, true), (false, false)]
        {
            Filter::compile(landlock, native_code).unwrap();
        }
    }
}
