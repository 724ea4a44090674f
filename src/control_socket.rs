//! The control socket between the server and a zygote: SOCK_SEQPACKET, one message per packet.
//! The server's commands are one byte ([`ZygoteCommand`]); the zygote's events are JSON, with
//! descriptors attached by SCM_RIGHTS. The zygote uses it blocking; the server reads the
//! zygote's events on its runtime.
//!
//! The zygote's half allocates nothing: between forks, a zygote that writes to its heap would
//! copy the pages it shares with its waiting children, and split the huge pages its heap is
//! backed by (`zygote/huge_pages.rs`).

use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use serde::{de::DeserializeOwned, Serialize};

use crate::protocol::{ZygoteCommand, CONTROL_PACKET_MAX};

/// The most descriptors one message carries (a child's channel, pidfd and output file: three).
const MAX_FDS: usize = 4;

/// A connected pair; the server keeps one end and hands the other to a zygote.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)
}

/// Server to zygote: one command (a packet of one byte).
pub fn send_command(socket: &impl AsFd, command: ZygoteCommand) -> io::Result<()> {
    loop {
        match nix::unistd::write(socket, &[command as u8]) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// In the zygote: the next command; `Ok(None)` is the server gone. A plain read: a packet a
/// call, and one of the calls the zygote's seccomp allowlist has anyway.
pub fn recv_command(socket: &impl AsFd) -> io::Result<Option<ZygoteCommand>> {
    let mut byte = [0u8; 1];
    let len = loop {
        match nix::unistd::read(socket, &mut byte) {
            Ok(len) => break len,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if len == 0 {
        return Ok(None);
    }
    ZygoteCommand::from_byte(byte[0]).map(Some).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("an unknown command {:#04x}", byte[0]),
        )
    })
}

/// Zygote to server: `message` as JSON, with `fds` attached; built on the stack.
pub fn send<T: Serialize>(socket: &impl AsRawFd, message: &T, fds: &[RawFd]) -> io::Result<()> {
    let mut packet = [0u8; CONTROL_PACKET_MAX];
    let len = {
        let mut cursor = io::Cursor::new(&mut packet[..]);
        serde_json::to_writer(&mut cursor, message).map_err(io::Error::other)?;
        cursor.position() as usize
    };
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors",
        ));
    }
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) } as usize;
    // u64 elements keep the buffer aligned for cmsghdr.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: packet.as_mut_ptr().cast(),
        iov_len: len,
    };
    // SAFETY: an all-zero msghdr is a valid empty header; the fields set below point at live
    // buffers of this frame for the duration of the call.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    if !fds.is_empty() {
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = space as _;
        // SAFETY: msg_control holds at least CMSG_SPACE(size of fds) bytes (8 fds fit in
        // 64 bytes), so the first header and its data lie inside `control`.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&header);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr(),
                libc::CMSG_DATA(cmsg).cast::<RawFd>(),
                fds.len(),
            );
        }
    }
    loop {
        // SAFETY: `header` and everything it points at outlive the call.
        let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &header, libc::MSG_NOSIGNAL) };
        if sent >= 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// In the server: the next event and the descriptors attached to it, without waiting
/// (`WouldBlock` when none is queued: the server reads it when its runtime says it is
/// readable). `Ok(None)` is the peer gone.
pub fn recv<T: DeserializeOwned>(socket: &OwnedFd) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; CONTROL_PACKET_MAX];
    let mut cmsg_space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (len, fds) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                for cmsg in msg.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(raw) = cmsg {
                        // SAFETY: the kernel just installed these descriptors in our table; we
                        // are their only owner.
                        fds.extend(
                            raw.into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                break (msg.bytes, fds);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if len == 0 {
        return Ok(None);
    }
    let message = serde_json::from_slice(&buf[..len]).map_err(io::Error::other)?;
    Ok(Some((message, fds)))
}
