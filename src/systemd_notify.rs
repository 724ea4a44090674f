//! systemd's readiness protocol (`Type=notify`): when `NOTIFY_SOCKET` is set, `READY=1` once
//! the zygotes are up and `STOPPING=1` when shutdown starts. A datagram on a Unix socket; the
//! standard library is enough.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (`READY=1`, `STOPPING=1`, ...) to the service manager, if there is one.
/// Failing to tell it is logged, never fatal: the server works the same without systemd.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let sent = (|| {
        // `@name` is a socket in the abstract namespace.
        let address = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None => SocketAddr::from_pathname(&path)?,
        };
        UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &address)
    })();
    if let Err(error) = sent {
        tracing::warn!(%error, socket = %path, "telling systemd {state} failed");
    }
}
