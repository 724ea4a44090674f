//! A child's side of a brokered connection (`broker::connection`): ask the server for a TCP
//! connection on the job channel, and receive the connected socket with the answer. The answer
//! is read with `recvmsg`, the one call the jail allows only on the job channel's descriptor.

use std::io::{self, IoSliceMut};
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::protocol::{read_payload, write_frame, FrameTag, CHILD_CHANNEL_FD, MAX_CONNECT_FRAME};

/// Sends a connection request (JSON of `broker::connection::ConnectRequest`) and blocks for the
/// answer: its JSON, and the socket when the answer is `ok`.
pub fn connect(request: &[u8]) -> io::Result<(Vec<u8>, Option<OwnedFd>)> {
    if request.len() > MAX_CONNECT_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the connection request is too large",
        ));
    }
    // SAFETY: CHILD_CHANNEL_FD is the job channel the jail installed; ManuallyDrop keeps this
    // borrowed view from closing it.
    let mut channel = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(CHILD_CHANNEL_FD) });
    write_frame(&mut *channel, FrameTag::ConnectRequest, request)?;
    let mut header = [0u8; 5];
    let mut filled = 0;
    let mut socket = None;
    // The descriptor rides on the frame's first bytes: whichever read takes them gets it.
    while filled < header.len() {
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut header[filled..])];
        let message = loop {
            match recvmsg::<()>(
                CHILD_CHANNEL_FD,
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other?,
            }
        };
        if message.bytes == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        for control in message.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = control {
                for fd in fds {
                    // SAFETY: the kernel just installed this descriptor in our table; nothing
                    // else owns it.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    socket.get_or_insert(fd);
                }
            }
        }
        filled += message.bytes;
    }
    match read_payload(header, &mut *channel, MAX_CONNECT_FRAME)? {
        (FrameTag::ConnectAnswer, answer) => Ok((answer, socket)),
        (tag, _) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected the connection's answer, got a {tag:?} frame"),
        )),
    }
}
