//! A child's pause: what it waits for, and the server's wait on its behalf. The child sends
//! `<ms>` for a sleep, or `<ms> <connection>` to wait until a brokered connection (numbered in
//! the order they were handed over) has something to read, at most `<ms>` (0: until the run's
//! deadline). The answer says whether the connection became readable (`1`) or the time passed
//! (`0`); a sleep's answer is empty.

use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

pub struct Pause {
    length: Duration,
    connection: Option<usize>,
}

impl Pause {
    /// `None` for a frame that is not a pause.
    pub fn parse(frame: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(frame).ok()?;
        let mut words = text.split(' ');
        let length = Duration::from_millis(words.next()?.parse().ok()?);
        let connection = words.next().map(str::parse).transpose().ok()?;
        if words.next().is_some() {
            return None;
        }
        Some(Self { length, connection })
    }

    /// Waits as asked; the answer for the child. A connection it was not handed is `None`.
    /// The run's deadline ends any pause: the caller's future is dropped then.
    pub async fn wait(&self, connections: &[OwnedFd]) -> Option<&'static [u8]> {
        let Some(index) = self.connection else {
            tokio::time::sleep(self.length).await;
            return Some(b"");
        };
        let socket = connections.get(index)?.try_clone().ok()?;
        // Only readiness is asked of the kernel: the server never reads the child's socket.
        // SAFETY: `socket` is an OwnedFd the AsyncFd owns: open, and the same descriptor, for
        // as long as it is registered.
        let watched =
            unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }.ok()?;
        let readable = async {
            let _ = watched.readable().await;
        };
        if self.length.is_zero() {
            readable.await;
            return Some(b"1");
        }
        match tokio::time::timeout(self.length, readable).await {
            Ok(()) => Some(b"1"),
            Err(_) => Some(b"0"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_is_a_length_and_maybe_a_connection() {
        let sleep = Pause::parse(b"250").unwrap();
        assert_eq!(
            (sleep.length, sleep.connection),
            (Duration::from_millis(250), None)
        );
        let wait = Pause::parse(b"0 3").unwrap();
        assert_eq!((wait.length, wait.connection), (Duration::ZERO, Some(3)));
        for bad in [&b""[..], b"x", b"1 2 3", b"-1", b"1 x", b" 1"] {
            assert!(Pause::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_wait_on_a_connection_ends_when_it_has_something_to_read() {
        use std::io::Write;
        let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let connections = [OwnedFd::from(theirs)];
        let quiet = Pause::parse(b"50 0").unwrap().wait(&connections).await;
        assert_eq!(quiet, Some(&b"0"[..]));
        ours.write_all(b"x").unwrap();
        let ready = Pause::parse(b"0 0").unwrap().wait(&connections).await;
        assert_eq!(ready, Some(&b"1"[..]));
        assert!(Pause::parse(b"0 1")
            .unwrap()
            .wait(&connections)
            .await
            .is_none());
    }
}
