//! What a child may do with a connected socket the broker handed over (`broker::connection`):
//! Python's socket objects, TLS over them and their timeouts — and nothing that makes, binds,
//! connects or listens. On the job channel, the same calls are its reads and writes. A tier of
//! the policy of `seccomp_policy.rs`, kept apart because it is what brokered connections add.

use super::seccomp_policy::{dword, qword, ArgIs};
use crate::protocol::CHILD_CHANNEL_FD;

/// Allowed in the listed forms (an empty list: any form); entries for the same call are
/// alternatives.
pub const SOCKET_USE: &[(i64, &str, &[ArgIs])] = &[
    (libc::SYS_getsockname, "getsockname", &[]),
    (libc::SYS_getpeername, "getpeername", &[]),
    (libc::SYS_shutdown, "shutdown", &[]),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_poll, "poll", &[]),
    (libc::SYS_ppoll, "ppoll", &[]),
    // A brokered connection's socket arrives on the job channel with its answer
    // (SCM_RIGHTS): receiving is allowed on the channel alone. Sending goes to the socket's
    // peer only (no address), and of the socket options only what HTTP clients set.
    // Never MSG_OOB: out-of-band data on unix sockets is a kernel path with a history of
    // bugs, and nothing here needs it.
    (
        libc::SYS_recvmsg,
        "recvmsg on the job channel, not MSG_OOB",
        &[
            dword(0, u32::MAX as u64, CHILD_CHANNEL_FD as u64),
            dword(2, libc::MSG_OOB as u64, 0),
        ],
    ),
    (
        libc::SYS_recvfrom,
        "recvfrom, not MSG_OOB",
        &[dword(3, libc::MSG_OOB as u64, 0)],
    ),
    (
        libc::SYS_sendto,
        "sendto without an address, not MSG_OOB",
        &[dword(3, libc::MSG_OOB as u64, 0), qword(4, u64::MAX, 0)],
    ),
    // Reading a socket's options: only what socket objects and HTTP clients read (never
    // SO_PEERCRED or SO_PEERPIDFD, which would name the server's end).
    (
        libc::SYS_getsockopt,
        "getsockopt(SOL_SOCKET, SO_TYPE)",
        &[
            dword(1, u32::MAX as u64, libc::SOL_SOCKET as u64),
            dword(2, u32::MAX as u64, libc::SO_TYPE as u64),
        ],
    ),
    (
        libc::SYS_getsockopt,
        "getsockopt(SOL_SOCKET, SO_DOMAIN)",
        &[
            dword(1, u32::MAX as u64, libc::SOL_SOCKET as u64),
            dword(2, u32::MAX as u64, libc::SO_DOMAIN as u64),
        ],
    ),
    (
        libc::SYS_getsockopt,
        "getsockopt(SOL_SOCKET, SO_PROTOCOL)",
        &[
            dword(1, u32::MAX as u64, libc::SOL_SOCKET as u64),
            dword(2, u32::MAX as u64, libc::SO_PROTOCOL as u64),
        ],
    ),
    (
        libc::SYS_getsockopt,
        "getsockopt(SOL_SOCKET, SO_ERROR)",
        &[
            dword(1, u32::MAX as u64, libc::SOL_SOCKET as u64),
            dword(2, u32::MAX as u64, libc::SO_ERROR as u64),
        ],
    ),
    (
        libc::SYS_getsockopt,
        "getsockopt(SOL_SOCKET, SO_KEEPALIVE)",
        &[
            dword(1, u32::MAX as u64, libc::SOL_SOCKET as u64),
            dword(2, u32::MAX as u64, libc::SO_KEEPALIVE as u64),
        ],
    ),
    (
        libc::SYS_getsockopt,
        "getsockopt(IPPROTO_TCP, TCP_NODELAY)",
        &[
            dword(1, u32::MAX as u64, libc::IPPROTO_TCP as u64),
            dword(2, u32::MAX as u64, libc::TCP_NODELAY as u64),
        ],
    ),
    // Python's socket timeouts switch blocking with this ioctl, not with fcntl.
    (
        libc::SYS_ioctl,
        "ioctl(FIONBIO)",
        &[dword(1, u32::MAX as u64, libc::FIONBIO)],
    ),
    (
        libc::SYS_setsockopt,
        "setsockopt(IPPROTO_TCP, TCP_NODELAY)",
        &[
            dword(1, u32::MAX as u64, libc::IPPROTO_TCP as u64),
            dword(2, u32::MAX as u64, libc::TCP_NODELAY as u64),
        ],
    ),
    (
        libc::SYS_setsockopt,
        "setsockopt(SOL_SOCKET, SO_KEEPALIVE)",
        &[
            dword(1, u32::MAX as u64, libc::SOL_SOCKET as u64),
            dword(2, u32::MAX as u64, libc::SO_KEEPALIVE as u64),
        ],
    ),
];
