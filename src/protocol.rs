//! The messages between the server, a zygote and a child, and how they are framed.
//!
//! Two channels exist. The *control* socket (SOCK_SEQPACKET, one message a packet) joins the
//! server to a zygote: the server asks for a child, the zygote answers with the child's job
//! channel and pidfd attached (SCM_RIGHTS), and later reports how the child exited. The *job
//! channel* (a stream socketpair made before the fork) joins the server straight to one child:
//! one [`Job`] goes in, one [`ChildReport`] comes out, each as a length-prefixed JSON frame. The
//! zygote never sees a job, so a child can be forked (and jailed) before any job exists.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::run::{Limits, Mode, RunError};

/// Server to zygote.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ZygoteCommand {
    /// Fork one child; answered by [`ZygoteEvent::Forked`] or [`ZygoteEvent::ForkFailed`].
    Fork,
}

/// Zygote to server.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ZygoteEvent {
    /// The interpreter is built and every whitelisted module imported.
    Ready {
        pid: i32,
    },
    /// A child exists; its job channel and pidfd ride along as SCM_RIGHTS, in that order.
    Forked {
        pid: i32,
    },
    ForkFailed {
        message: String,
    },
    /// A child has been reaped.
    Exited {
        pid: i32,
        status: ExitStatus,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

/// Server to child: everything a child needs to know about one run.
#[derive(Debug, Serialize, Deserialize)]
pub struct Job {
    pub code: String,
    /// A JSON object, passed through untouched.
    pub inputs: Box<RawValue>,
    pub mode: Mode,
    pub limits: Limits,
    /// The Python import whitelist for this run (already narrowed by the request).
    pub allowed_modules: Vec<String>,
    /// How `main` is called and what it may return.
    #[serde(default)]
    pub convention: Convention,
    /// Shell runs: the directory the command starts in (inside the run's tmpfs) and the
    /// variables added to its minimal environment.
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Whether `SystemHelper.httpRequest` may be used (the server's policy still applies).
    #[serde(default = "yes")]
    pub network: bool,
}

fn yes() -> bool {
    true
}

/// Calling conventions of the APIs sandlot serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Convention {
    /// sandlot's own: Python `main(**inputs)`, JavaScript `main(inputs)`; a dict/object back.
    #[default]
    Native,
    /// FastGPT's: the inputs are also globals; Python `main` gets them by parameter name (or
    /// whole, or not at all); any JSON value may come back (Python via `str` where JSON has
    /// no type for it); stderr joins stdout in one log; the legacy JavaScript helpers exist.
    Fastgpt,
}

/// Child to server: the outcome of one run.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChildReport {
    #[serde(default)]
    pub result: Option<Box<RawValue>>,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    #[serde(default)]
    pub exit_code: i32,
    #[serde(default)]
    pub error: Option<RunError>,
    #[serde(default)]
    pub execution_time_ms: f64,
    /// matplotlib figures left open: `{"format": "png", "base64": ...}`.
    #[serde(default)]
    pub images: Vec<serde_json::Value>,
}

/// Largest control packet; a `Forked` or `Exited` event is a few dozen bytes.
pub const CONTROL_PACKET_MAX: usize = 4096;

/// Writes one frame: a little-endian u32 length, then the payload.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame larger than 4 GiB"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(payload)?;
    w.flush()
}

/// Reads one frame, refusing one longer than `max` bytes before allocating for it.
pub fn read_frame(r: &mut impl Read, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(frame_too_large(len, max));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

/// The async half of [`write_frame`], for the server.
pub async fn write_frame_async(
    w: &mut (impl tokio::io::AsyncWrite + Unpin),
    payload: &[u8],
) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame larger than 4 GiB"))?;
    w.write_all(&len.to_le_bytes()).await?;
    w.write_all(payload).await?;
    w.flush().await
}

/// The async half of [`read_frame`], for the server; a child's frames are untrusted bytes.
pub async fn read_frame_async(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
    max: usize,
) -> io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(frame_too_large(len, max));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

fn frame_too_large(len: usize, max: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("frame of {len} bytes exceeds the {max}-byte cap"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversize_is_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello").unwrap();
        assert_eq!(read_frame(&mut &buf[..], 16).unwrap(), b"hello");
        let err = read_frame(&mut &buf[..], 4).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
