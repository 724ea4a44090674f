//! A streamed run's output as it is printed. The child writes into its output file as the code
//! prints (`output_region.rs`); while a followed run goes on, the server reads what is new
//! every [`FOLLOW_EVERY`] and sends it on as text, cut on UTF-8 boundaries, a line's start held
//! back one reading for its end (a print is several writes). Once the run has
//! ended, the rest follows; what was sent is then exactly what the run's response holds, cut
//! at the same limit. A file the code writes into `output/` is sent whole each time the code
//! closes it (`output_files.rs`). A run nobody follows pays nothing for this.

use std::convert::Infallible;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::output_files::{self, FilesLog, OutputFile};
use crate::output_region::{self, Stream};
use crate::run::Limits;

/// How often a followed run's output file is read for what is new.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(50);

/// What a followed run tells its follower, in order.
#[derive(Debug)]
pub enum RunEvent {
    /// The run has a worker (it was not refused as busy); output may follow.
    Admitted,
    /// Text the code printed.
    Output { stream: Stream, text: String },
    /// A file of `output/`, as it was when the code closed it.
    File(OutputFile),
}

/// The follower's side of a followed run: where its events go.
pub type Follower = mpsc::Sender<RunEvent>;

/// One attempt's reading of its child's output file.
pub(super) struct Following<'a> {
    events: &'a Follower,
    file: &'a std::fs::File,
    limit: u64,
    seen: [u64; 2],
    /// Bytes read and not yet sent: a line's start held back, then the first bytes of a
    /// character whose rest may come later (a shell command's output is bytes).
    pending: [Vec<u8>; 2],
    /// Whether the line's start in `pending` has already waited one reading.
    held: [bool; 2],
    files: FilesLog,
    /// The files area's offset and size, and the bytes the run's files may hold.
    files_area: (u64, usize, crate::output_files::Caps),
}

impl<'a> Following<'a> {
    pub fn new(
        events: &'a Follower,
        output: &'a std::fs::File,
        limits: &Limits,
    ) -> std::io::Result<Self> {
        let (area, size) = output_files::area_of(limits);
        Ok(Self {
            events,
            file: output,
            limit: limits.max_output_bytes,
            seen: [0, 0],
            pending: [Vec::new(), Vec::new()],
            held: [false, false],
            files: FilesLog::default(),
            files_area: (area, size, crate::output_files::Caps::of(limits)),
        })
    }

    /// Sends what is new every [`FOLLOW_EVERY`], until dropped (with the run's exchange).
    pub async fn follow(&mut self) -> Infallible {
        let mut every = tokio::time::interval(FOLLOW_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.send_new(false).await;
        }
    }

    /// Once the run has ended: the rest, and any bytes left of a cut character.
    pub async fn finish(&mut self) {
        self.send_new(true).await;
    }

    async fn send_new(&mut self, last: bool) {
        let new = output_region::read_new(self.file, self.limit, self.seen).unwrap_or_default();
        for (index, bytes) in new.into_iter().enumerate() {
            self.seen[index] += bytes.len() as u64;
            self.pending[index].extend_from_slice(&bytes);
            let mut text = take_text(&mut self.pending[index], last);
            if !last {
                text = hold_line_start(text, &mut self.pending[index], &mut self.held[index]);
            }
            if !text.is_empty() {
                let stream = if index == 0 {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                };
                // A follower that left ends the run itself; nothing to do here.
                let _ = self.events.send(RunEvent::Output { stream, text }).await;
            }
        }
        let (area, size, caps) = self.files_area;
        let closed = self
            .files
            .catch_up(self.file, area, size, caps)
            .unwrap_or_default();
        for index in closed {
            if let Some(file) = self.files.file(index) {
                let _ = self.events.send(RunEvent::File(file.clone().into())).await;
            }
        }
    }
}

/// The text `pending` holds, leaving a character's first bytes whose rest may come later
/// (unless `last`). Bytes that are not UTF-8 become U+FFFD, as the response's lossy reading
/// makes them.
fn take_text(pending: &mut Vec<u8>, last: bool) -> String {
    let mut text = String::new();
    let mut rest: &[u8] = pending;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                text.push_str(valid);
                rest = &[];
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                text.push_str(std::str::from_utf8(valid).expect("checked"));
                match e.error_len() {
                    Some(bad) => {
                        text.push(char::REPLACEMENT_CHARACTER);
                        rest = &after[bad..];
                    }
                    None if last => {
                        text.push(char::REPLACEMENT_CHARACTER);
                        rest = &[];
                        break;
                    }
                    None => {
                        rest = after;
                        break;
                    }
                }
            }
        }
    }
    *pending = rest.to_vec();
    text
}

/// What of `text` to send now: up to its last line's end, the line begun after it put back at
/// the front of `pending` for the next reading — but a line begun before this reading goes as
/// it is. Python's `print('warn', i)` is four writes; read between two of them, it would
/// arrive in pieces, where now a line comes whole unless it takes longer than a reading to
/// finish, and no text waits more than one reading.
fn hold_line_start(mut text: String, pending: &mut Vec<u8>, held: &mut bool) -> String {
    let start = text.rfind('\n').map_or(0, |end| end + 1);
    let begun_before = start == 0 && *held;
    if start == text.len() || begun_before {
        *held = false;
        return text;
    }
    let rest = text.split_off(start);
    pending.splice(0..0, rest.into_bytes());
    *held = true;
    text
}

#[cfg(test)]
mod tests {
    use super::{hold_line_start, take_text};

    /// One reading: the bytes the child wrote since, as `send_new` takes them.
    fn reading(pending: &mut Vec<u8>, held: &mut bool, new: &[u8]) -> String {
        pending.extend_from_slice(new);
        let text = take_text(pending, false);
        hold_line_start(text, pending, held)
    }

    #[test]
    fn a_line_comes_whole_and_no_text_waits_more_than_one_reading() {
        let (mut pending, mut held) = (Vec::new(), false);
        assert_eq!(reading(&mut pending, &mut held, b"warn"), "");
        assert_eq!(reading(&mut pending, &mut held, b" 0\n"), "warn 0\n");
        assert_eq!(reading(&mut pending, &mut held, b"a\nb"), "a\n");
        assert_eq!(
            reading(&mut pending, &mut held, b"c"),
            "bc",
            "waited one reading"
        );
        assert_eq!(reading(&mut pending, &mut held, b"dots."), "");
        assert_eq!(reading(&mut pending, &mut held, b".\nnext"), "dots..\n");
        assert_eq!(reading(&mut pending, &mut held, b""), "next");
        assert_eq!(reading(&mut pending, &mut held, b""), "");
        assert!(pending.is_empty() && !held);
        // A character cut by a reading stays behind the line's start it belongs to.
        let e = "é".as_bytes();
        assert_eq!(reading(&mut pending, &mut held, &[b'x', e[0]]), "");
        assert_eq!(reading(&mut pending, &mut held, &e[1..]), "xé");
    }

    #[test]
    fn text_is_cut_on_character_boundaries() {
        let bytes = "hé".as_bytes();
        let mut pending = bytes[..2].to_vec();
        assert_eq!(take_text(&mut pending, false), "h");
        assert_eq!(pending, &bytes[1..2]);
        pending.extend_from_slice(&bytes[2..]);
        pending.extend_from_slice(b"\xffx");
        assert_eq!(take_text(&mut pending, false), "é\u{fffd}x");
        assert!(pending.is_empty());
        let mut cut = vec![b'a', 0xe2, 0x82];
        assert_eq!(take_text(&mut cut, true), "a\u{fffd}");
        assert_eq!(
            String::from_utf8_lossy(&[b'a', 0xe2, 0x82]),
            "a\u{fffd}",
            "as the response reads it"
        );
    }
}
