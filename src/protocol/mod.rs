//! The contract between the three kinds of process — server, zygote, child — kept as data in
//! one place: which zygotes exist, the descriptor numbers and environment variables a process
//! is started with, the messages on the control socket, and the frames on a child's job channel.
//!
//! Two channels exist. The *control* socket (SOCK_SEQPACKET, one JSON message a packet) joins
//! the server to a zygote: the server asks for a child, the zygote answers with the child's job
//! channel and pidfd attached (SCM_RIGHTS), and later reports how the child exited. The *job
//! channel* (a stream socketpair made before the fork) joins the server straight to one child:
//! one [`Job`] goes in, one [`ChildReport`] comes out, with brokered HTTP requests and answers
//! in between, each a tagged, length-prefixed [frame](FrameTag). The zygote never sees a job, so
//! a child can be forked (and jailed) before any job exists.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::fd::RawFd;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::run::{ErrorKind, Limits, Mode, RunError, Usage};

mod report_parts;
pub use report_parts::{
    base64_len, cut_text, error_text, optional_error_text, Figures, Image, ImageFormat,
    MAX_ERROR_TEXT_BYTES, MAX_IMAGES, MAX_IMAGES_TOTAL_BYTES, MAX_IMAGE_BYTES,
};

/// Which interpreter a zygote builds; `sandlot __zygote <kind>` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ZygoteKind {
    Python,
    /// Python with numpy, pandas, matplotlib and jinja2 pre-imported.
    PythonData,
    /// QuickJS with sandlot's globals; an npm module or Intl is loaded by the run that uses it.
    Javascript,
    /// The same with the npm modules evaluated.
    JavascriptModules,
    /// The same with the npm modules and FormatJS's Intl polyfills and their data evaluated,
    /// and Intl warmed up.
    JavascriptIntl,
    Shell,
}

impl ZygoteKind {
    pub const ALL: [Self; 6] = [
        Self::Python,
        Self::PythonData,
        Self::Javascript,
        Self::JavascriptModules,
        Self::JavascriptIntl,
        Self::Shell,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Python => "python",
            Self::PythonData => "python-data",
            Self::Javascript => "javascript",
            Self::JavascriptModules => "javascript-modules",
            Self::JavascriptIntl => "javascript-intl",
            Self::Shell => "shell",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// How a zygote is started
// ---------------------------------------------------------------------------------------------

/// The descriptor a zygote finds its end of the control socket on: apart from a child's fixed
/// numbers, so that nothing a child writes to its channel's number before its descriptors are
/// in place can reach the control socket (a child does not write before then either).
pub const ZYGOTE_CONTROL_FD: RawFd = 10;
/// The descriptor a child finds its job channel on, once its descriptors are isolated.
pub const CHILD_CHANNEL_FD: RawFd = 3;
/// The descriptor a child finds its output file on ([`crate::output_region`]).
pub const CHILD_OUTPUT_FD: RawFd = 4;
/// The exit code of a child that could not confine itself before its job channel was in place,
/// so had nowhere to report (it says why on the zygote's stderr, in the server's log).
pub const CHILD_UNJAILED_EXIT: i32 = 87;

/// Holds the [`crate::jail::settings::JailSettings`] as JSON: policy, never a secret.
pub const JAIL_SETTINGS_ENV: &str = "SANDLOT_JAIL";
/// The python-data zygote's installed packages (a `site-packages` directory).
pub const PYTHON_PACKAGES_ENV: &str = "SANDLOT_PYTHON_PACKAGES";
/// matplotlib's configuration and font cache, for the python-data zygote.
pub const MATPLOTLIB_CONFIG_ENV: &str = "MPLCONFIGDIR";

// ---------------------------------------------------------------------------------------------
// The control socket
// ---------------------------------------------------------------------------------------------

/// Server to zygote, one byte a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ZygoteCommand {
    /// Fork one child; answered by [`ZygoteEvent::Forked`] or [`ZygoteEvent::ForkFailed`].
    Fork = b'F',
}

impl ZygoteCommand {
    pub fn from_byte(byte: u8) -> Option<Self> {
        (byte == Self::Fork as u8).then_some(Self::Fork)
    }
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

/// Largest control packet; a `Forked` or `Exited` event is a few dozen bytes.
pub const CONTROL_PACKET_MAX: usize = 4096;

// ---------------------------------------------------------------------------------------------
// The job channel
// ---------------------------------------------------------------------------------------------

/// The first byte of every frame on a job channel, after its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameTag {
    /// Server to child: the [`Job`], as JSON.
    Job = b'J',
    /// Child to server: a brokered HTTP request (JSON of [`crate::broker::Request`]); the child
    /// blocks until the [`FrameTag::BrokerAnswer`].
    BrokerRequest = b'R',
    /// Server to child: `{"ok": response}` or `{"error": {"message", "denied"}}`.
    BrokerAnswer = b'A',
    /// Child to server: a connection for Python's own HTTP clients (JSON of
    /// `broker::connection::ConnectRequest`); the child blocks until the
    /// [`FrameTag::ConnectAnswer`].
    ConnectRequest = b'C',
    /// Server to child: `{"ok": {"address"}}` with the connected socket attached (SCM_RIGHTS),
    /// or `{"error": {"message", "denied"}}` without.
    ConnectAnswer = b'K',
    /// Child to server: the child is about to wait — `time.sleep`, a JavaScript timer, a read
    /// of a brokered connection — and blocks until [`FrameTag::Resume`]; the server waits for
    /// it and gives its core to another run meanwhile (`supervisor::pause` has the format).
    Pause = b'P',
    /// Server to child: the wait is over and the run has a core again; for a connection, `1`
    /// when it has something to read, `0` when the time passed.
    Resume = b'U',
    /// Child to server: the [`ChildReport`], as JSON; the child's last word.
    Report = b'D',
}

impl FrameTag {
    fn from_byte(byte: u8) -> Option<Self> {
        [
            Self::Job,
            Self::BrokerRequest,
            Self::BrokerAnswer,
            Self::ConnectRequest,
            Self::ConnectAnswer,
            Self::Pause,
            Self::Resume,
            Self::Report,
        ]
        .into_iter()
        .find(|tag| *tag as u8 == byte)
    }
}

/// A pause: two numbers in ASCII digits.
pub const MAX_PAUSE_FRAME: usize = 48;
/// A child pauses through the server only for a wait at least this long; a shorter one it
/// sleeps itself (two frames cost about what a millisecond of waiting saves).
pub const MIN_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

/// A connection request or its answer: a host, a port and a few words.
pub const MAX_CONNECT_FRAME: usize = 4096;
/// A job is code plus inputs; the server caps request bodies well below this.
pub const MAX_JOB_FRAME: usize = 256 * 1024 * 1024;
/// The largest request body a run may send through the broker.
pub const MAX_BROKER_BODY_BYTES: usize = 5 * 1024 * 1024;
/// The largest broker request frame: the body, JSON-escaped, plus the rest. A child refuses a
/// larger one itself, before anything is sent.
pub const MAX_BROKER_REQUEST_FRAME: usize = 2 * MAX_BROKER_BODY_BYTES + 1024 * 1024;
/// The largest broker answer a child accepts: a 2 MiB body, JSON-escaped, and headers.
pub const MAX_BROKER_ANSWER_FRAME: usize = 16 * 1024 * 1024;

/// Server to child: everything a child needs to know about one run.
#[derive(Debug, Serialize, Deserialize)]
pub struct Job {
    pub code: String,
    /// A JSON object, passed through untouched.
    pub inputs: Box<RawValue>,
    pub mode: Mode,
    pub limits: Limits,
    /// Which modules the run's code may import (already narrowed by the request).
    pub imports: ImportPolicy,
    /// How `main` is called and what it may return.
    #[serde(default)]
    pub convention: Convention,
    /// Shell runs: the directory the command starts in (inside the run's tmpfs) and the
    /// variables added to its minimal environment.
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Whether `SystemHelper.httpRequest` may be used (the server's policy still applies).
    #[serde(default = "yes")]
    pub network: bool,
    /// The request's files, checked by the server (`input_files::check`).
    #[serde(default)]
    pub files: Vec<crate::input_files::InputFile>,
    /// Whether the run has files at all (its API's: [`crate::api::Api::has_files`]).
    #[serde(default)]
    pub has_files: bool,
}

fn yes() -> bool {
    true
}

/// Which modules a run's code may name in an import or `require()`. A refusal is a clear
/// `module_not_allowed`; the kernel, not this, is the boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImportPolicy {
    /// Exactly these top-level modules.
    Only { modules: Vec<String> },
    /// Python: the standard library except what `rule` refuses, the data packages it allows,
    /// and the modules of the operator's packages. A rule's lists are compiled into the binary
    /// ([`crate::whitelist`]): a job names its rule instead of carrying ~80 names, and a
    /// Python zygote builds each rule's sets once, before it forks.
    StandardLibrary {
        rule: StandardRule,
        operator: Vec<String>,
    },
    /// Python: whatever imports; what the jail refuses fails when it is used. JavaScript:
    /// every module the zygotes bundle.
    Any,
}

/// The APIs' rules over Python's standard library: sandlot's own (and the sandbox module
/// API's), and FastGPT's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StandardRule {
    Native,
    Fastgpt,
}

impl StandardRule {
    pub const ALL: [StandardRule; 2] = [StandardRule::Native, StandardRule::Fastgpt];

    /// Its name in a job.
    pub fn name(self) -> &'static str {
        match self {
            StandardRule::Native => "native",
            StandardRule::Fastgpt => "fastgpt",
        }
    }
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
    /// no type for it); stderr joins stdout in one log; the legacy helpers exist.
    Fastgpt,
}

/// Child to server: the outcome of one run. Every path of every engine — a finished run, a
/// failed one, the out-of-memory allocator, a fault of the child itself — builds it with one of
/// the constructors below, so its shape is decided here alone. It holds neither the run's output
/// (that is in the output file, [`crate::output_region`]) nor its time (the server measures it):
/// the server decides those whatever the child says.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChildReport {
    #[serde(default)]
    pub result: Option<Box<RawValue>>,
    #[serde(default)]
    pub exit_code: i32,
    #[serde(default)]
    pub error: Option<RunError>,
    /// matplotlib figures left open.
    #[serde(default)]
    pub images: Figures,
    /// Filled in by [`crate::zygote::child::finish`], the one way out of a child.
    #[serde(default)]
    pub usage: Option<Usage>,
}

impl ChildReport {
    /// A run that ended by itself: its result (JSON), exit code and error, if any.
    pub fn finished(
        result: Option<Box<RawValue>>,
        exit_code: i32,
        error: Option<RunError>,
        images: Vec<Image>,
    ) -> Self {
        Self {
            result,
            exit_code,
            // Cut here, so that a run's own long error is cut rather than its report refused.
            error: error.map(RunError::cut),
            images: images.into(),
            usage: None,
        }
    }

    /// A run that failed with `error` (exit code 1).
    pub fn failed(error: RunError) -> Self {
        Self::finished(None, 1, Some(error), Vec::new())
    }

    /// A fault of the child itself (its jail, its interpreter): the code never ran.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::failed(RunError::new(ErrorKind::Internal, message))
    }

    /// The kernel refused memory: the run reached its memory limit.
    pub fn memory_limit(memory_mb: u64) -> Self {
        Self::failed(RunError::new(
            ErrorKind::MemoryLimit,
            format!("memory limit exceeded: the run may use {memory_mb} MB"),
        ))
    }

    /// The report as the payload of a [`FrameTag::Report`] frame.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|e| {
            format!(r#"{{"exit_code":1,"error":{{"kind":"internal","message":"encoding the report: {e}"}}}}"#)
                .into_bytes()
        })
    }
}

/// Writes one frame: a little-endian u32 length (of the tag and the payload), the tag, then the
/// payload.
pub fn write_frame(w: &mut impl Write, tag: FrameTag, payload: &[u8]) -> io::Result<()> {
    let header = frame_header(tag, payload.len())?;
    // One call for header and payload where the socket takes both.
    let mut parts = [io::IoSlice::new(&header), io::IoSlice::new(payload)];
    let mut unsent = &mut parts[..];
    while !unsent.is_empty() {
        match w.write_vectored(unsent) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(sent) => io::IoSlice::advance_slices(&mut unsent, sent),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    w.flush()
}

/// The five bytes in front of a payload.
pub fn frame_header(tag: FrameTag, payload_len: usize) -> io::Result<[u8; 5]> {
    let len = u32::try_from(payload_len + 1)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame larger than 4 GiB"))?;
    let mut header = [0u8; 5];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4] = tag as u8;
    Ok(header)
}

/// Reads one frame, refusing one whose payload is longer than `max` bytes before allocating
/// for it, or whose tag is unknown.
pub fn read_frame(r: &mut impl Read, max: usize) -> io::Result<(FrameTag, Vec<u8>)> {
    let mut header = [0u8; 5];
    r.read_exact(&mut header)?;
    read_payload(header, r, max)
}

/// The rest of a frame whose five header bytes were read already.
pub fn read_payload(
    header: [u8; 5],
    r: &mut impl Read,
    max: usize,
) -> io::Result<(FrameTag, Vec<u8>)> {
    let (tag, len) = parse_header(header, |_| max)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok((tag, payload))
}

/// The async half of [`write_frame`], for the server.
pub async fn write_frame_async(
    w: &mut (impl tokio::io::AsyncWrite + Unpin),
    tag: FrameTag,
    payload: &[u8],
) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let header = frame_header(tag, payload.len())?;
    // One call for header and payload where the socket takes both.
    let mut parts = [io::IoSlice::new(&header), io::IoSlice::new(payload)];
    let mut unsent = &mut parts[..];
    while !unsent.is_empty() {
        match w.write_vectored(unsent).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            sent => io::IoSlice::advance_slices(&mut unsent, sent),
        }
    }
    w.flush().await
}

/// [`write_frame_async`] with a descriptor attached to the frame's first bytes (SCM_RIGHTS),
/// for a stream the server owns.
pub async fn write_frame_with_descriptor_async(
    stream: &mut tokio::net::UnixStream,
    tag: FrameTag,
    payload: &[u8],
    descriptor: std::os::fd::BorrowedFd<'_>,
) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::os::fd::AsRawFd;
    use tokio::io::{AsyncWriteExt, Interest};
    let mut frame = frame_header(tag, payload.len())?.to_vec();
    frame.extend_from_slice(payload);
    let fds = [descriptor.as_raw_fd()];
    let sent = loop {
        stream.writable().await?;
        let attempt = stream.try_io(Interest::WRITABLE, || {
            sendmsg::<()>(
                stream.as_raw_fd(),
                &[io::IoSlice::new(&frame)],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(io::Error::from)
        });
        match attempt {
            Ok(sent) => break sent,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    };
    stream.write_all(&frame[sent..]).await?;
    stream.flush().await
}

/// The async half of [`read_frame`], for the server; a child's frames are untrusted bytes, so
/// each kind of frame has its own cap (`cap_of`; 0 for a kind the server does not take), and
/// a frame over it is refused from its header, before anything is allocated.
pub async fn read_frame_async(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
    cap_of: impl Fn(FrameTag) -> usize,
) -> io::Result<(FrameTag, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; 5];
    r.read_exact(&mut header).await?;
    let (tag, len) = parse_header(header, &cap_of)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok((tag, payload))
}

fn parse_header(
    header: [u8; 5],
    cap_of: impl Fn(FrameTag) -> usize,
) -> io::Result<(FrameTag, usize)> {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let Some(payload_len) = len.checked_sub(1) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "an empty frame"));
    };
    let tag = FrameTag::from_byte(header[4]).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame with the unknown tag {:#04x}", header[4]),
        )
    })?;
    let max = cap_of(tag);
    if payload_len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a {tag:?} frame of {payload_len} bytes exceeds its {max}-byte cap"),
        ));
    }
    Ok((tag, payload_len))
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
