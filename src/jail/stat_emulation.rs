//! `fstat` without `fstatat`: the answer to glibc's `fstat(fd)`, which since glibc 2.33 is
//! `newfstatat(fd, "", buf, AT_EMPTY_PATH)`. seccomp cannot read the path a call names, so
//! allowing that form would allow `newfstatat(AT_FDCWD, "/etc/shadow", buf, AT_EMPTY_PATH)`
//! too: the size, owner and times of any host path, which Landlock does not guard (it judges
//! opens, and a stat opens nothing).
//!
//! So the policy has the kernel *trap* every `newfstatat` (`EMULATED` in `seccomp_policy.rs`):
//! the call is not made, and the process gets SIGSYS instead. The handler installed here reads
//! the trapped call's arguments; when the path is empty (or NULL) and `AT_EMPTY_PATH` is set,
//! it makes the call that needs no path, `fstat(fd, buf)`, and returns its answer as the
//! call's; any other form gets `EPERM`, as before. The process is single-threaded, and `fstat`
//! reads no path, so nothing can change between the check and the call. Chromium's sandbox
//! answers the same glibc change the same way.
//!
//! The same handler answers every other trapped call, the calls the jail refuses: it notes the
//! call for the run's error (`refused_calls.rs`) and answers EPERM. User code cannot replace
//! the handler (`rt_sigaction` for SIGSYS is refused); code that blocks SIGSYS and then makes a
//! refused call is killed by it. Either way a trapped call never reaches the kernel.

use std::ffi::{c_int, c_void};

use super::JailError;

/// `si_code` of a SIGSYS sent by seccomp.
const SYS_SECCOMP: c_int = 1;

/// The part of `siginfo_t` a seccomp SIGSYS fills (`_sigsys` in the kernel's union), after
/// `si_signo`, `si_errno`, `si_code` and the padding that aligns the union on 64-bit targets.
#[repr(C)]
struct SeccompSiginfo {
    _signo: c_int,
    _errno: c_int,
    code: c_int,
    _pad: c_int,
    _call_addr: *mut c_void,
    syscall: c_int,
    _arch: u32,
}

/// Installs the SIGSYS handler: in the zygote before its filters (which its own `fstat` calls
/// meet too); every child inherits it at fork.
pub fn install() -> Result<(), JailError> {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value, completed below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = answer_trapped_call as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO;
    // SAFETY: sigemptyset initialises the mask it is given.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: installs a handler that is async-signal-safe (it reads its arguments, makes one
    // system call and writes one register); the old action is not wanted.
    if unsafe { libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) } != 0 {
        return Err(JailError::StatEmulation(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The SIGSYS handler: `newfstatat` emulated, any other trapped call refused with EPERM and
/// noted; a SIGSYS not sent by seccomp is ignored.
extern "C" fn answer_trapped_call(
    _signal: c_int,
    info: *mut libc::siginfo_t,
    context: *mut c_void,
) {
    // SAFETY: the kernel passes a valid siginfo and ucontext to an SA_SIGINFO handler;
    // SeccompSiginfo matches the layout of a seccomp SIGSYS's siginfo.
    let info = unsafe { &*info.cast::<SeccompSiginfo>() };
    // SAFETY: as above; the context is this thread's saved registers, restored on return.
    let context = unsafe { &mut *context.cast::<libc::ucontext_t>() };
    if info.code != SYS_SECCOMP {
        return;
    }
    if i64::from(info.syscall) != libc::SYS_newfstatat {
        // A call the jail refuses: noted for the run's error, and answered as the kernel
        // would have answered it before (`refused_calls.rs`).
        super::refused_calls::record(i64::from(info.syscall));
        registers::set_return(context, -i64::from(libc::EPERM));
        return;
    }
    let [fd, path, buf, flags] = registers::arguments(context);
    let path = path as *const u8;
    // SAFETY: the path is the caller's own pointer, read one byte; a bad pointer faults the
    // caller's own process, which is all the kernel's EFAULT would have told it.
    let empty_path = path.is_null() || unsafe { *path } == 0;
    let answer = if empty_path && flags as c_int & libc::AT_EMPTY_PATH != 0 {
        // SAFETY: errno is this thread's; saved and restored so the interrupted code's is kept.
        let saved = unsafe { *libc::__errno_location() };
        // SAFETY: fstat writes a `struct stat` to `buf`, the buffer the caller gave newfstatat
        // for exactly that.
        let rc = unsafe { libc::syscall(libc::SYS_fstat, fd as c_int, buf as *mut libc::stat) };
        let answer = if rc < 0 {
            // SAFETY: errno is this thread's, set by the call just made.
            -i64::from(unsafe { *libc::__errno_location() })
        } else {
            rc
        };
        // SAFETY: errno is this thread's; the interrupted code's value is put back.
        unsafe { *libc::__errno_location() = saved };
        answer
    } else {
        super::refused_calls::record(libc::SYS_newfstatat);
        -i64::from(libc::EPERM)
    };
    registers::set_return(context, answer);
}

#[cfg(target_arch = "x86_64")]
mod registers {
    /// The first four arguments of the trapped call (rdi, rsi, rdx, r10).
    pub fn arguments(context: &libc::ucontext_t) -> [u64; 4] {
        let gregs = &context.uc_mcontext.gregs;
        [libc::REG_RDI, libc::REG_RSI, libc::REG_RDX, libc::REG_R10]
            .map(|r| gregs[r as usize] as u64)
    }

    /// What the call returns (rax).
    pub fn set_return(context: &mut libc::ucontext_t, value: i64) {
        context.uc_mcontext.gregs[libc::REG_RAX as usize] = value;
    }
}

#[cfg(target_arch = "aarch64")]
mod registers {
    /// The first four arguments of the trapped call (x0 to x3).
    pub fn arguments(context: &libc::ucontext_t) -> [u64; 4] {
        let regs = &context.uc_mcontext.regs;
        [regs[0], regs[1], regs[2], regs[3]]
    }

    /// What the call returns (x0).
    pub fn set_return(context: &mut libc::ucontext_t, value: i64) {
        context.uc_mcontext.regs[0] = value as u64;
    }
}
