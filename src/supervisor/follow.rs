//! A streamed run's output as it is printed. The child writes into its output file as the code
//! prints (`output_region.rs`); while a followed run goes on, the server reads what is new
//! every [`FOLLOW_EVERY`] and sends it on as text, cut on UTF-8 boundaries, a line's start held
//! back one reading for its end (a print is several writes). Once the run has ended, the rest
//! follows; what was sent is then exactly what the run's response holds, cut at the same
//! limit. A file the code writes into `output/` is sent whole each time the code closes it
//! (`output_files.rs`). A run nobody follows pays nothing for this.

use std::collections::VecDeque;
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
    /// Files closed and not yet sent, by index in `files`.
    unsent_files: VecDeque<usize>,
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
            unsent_files: VecDeque::new(),
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

    /// Cancel-safe: [`Self::follow`] is dropped when the run ends, perhaps while it waits for a
    /// slow client, so nothing is taken from the file or from `pending` before the channel has
    /// room for it; what was not sent, [`Self::finish`] sends.
    async fn send_new(&mut self, last: bool) {
        let new = output_region::read_new(self.file, self.limit, self.seen).unwrap_or_default();
        for (index, bytes) in new.into_iter().enumerate() {
            if bytes.is_empty() && self.pending[index].is_empty() {
                continue;
            }
            // A follower that left ends the run itself; nothing to do here.
            let Ok(slot) = self.events.reserve().await else {
                return;
            };
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
                slot.send(RunEvent::Output { stream, text });
            }
        }
        let (area, size, caps) = self.files_area;
        let closed = self
            .files
            .catch_up(self.file, area, size, caps)
            .unwrap_or_default();
        self.unsent_files.extend(closed);
        while let Some(&index) = self.unsent_files.front() {
            let Ok(slot) = self.events.reserve().await else {
                return;
            };
            self.unsent_files.pop_front();
            if let Some(file) = self.files.file(index) {
                slot.send(RunEvent::File(file.clone().into()));
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

/// Sends up to the last line's end and holds the rest one reading, back in front of `pending`:
/// a print is several writes. A line begun in an earlier reading goes as it is.
fn hold_line_start(mut text: String, pending: &mut Vec<u8>, held: &mut bool) -> String {
    let line_start = text.rfind('\n').map_or(0, |end| end + 1);
    let begun_before = line_start == 0 && *held;
    if line_start == text.len() || begun_before {
        *held = false;
        return text;
    }
    let rest = text.split_off(line_start);
    pending.splice(0..0, rest.into_bytes());
    *held = true;
    text
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;
    use crate::output_region::Writer;

    fn limits() -> Limits {
        Limits {
            timeout_ms: 1000,
            memory_mb: 64,
            max_output_bytes: 64,
            max_output_files_bytes: 0,
            max_output_file_bytes: 0,
        }
    }

    /// A run's output file, and the writer its child writes it with.
    fn output_file(limits: &Limits) -> (std::fs::File, Writer) {
        let size = output_region::file_size(limits.max_output_bytes, 0);
        let file = std::fs::File::from(output_region::create(size).unwrap());
        let caps = output_files::Caps::of(limits);
        let limit = limits.max_output_bytes as usize;
        let (writer, _) = Writer::map(file.as_raw_fd(), limit, false, caps).unwrap();
        (file, writer)
    }

    /// The stderr texts the follower got since the last call.
    fn sent(events: &mut mpsc::Receiver<RunEvent>) -> Vec<String> {
        let mut texts = Vec::new();
        while let Ok(event) = events.try_recv() {
            if let RunEvent::Output {
                stream: Stream::Stderr,
                text,
            } = event
            {
                texts.push(text);
            }
        }
        texts
    }

    #[tokio::test]
    async fn a_line_comes_whole_and_no_text_waits_more_than_one_reading() {
        let limits = limits();
        let (file, mut writer) = output_file(&limits);
        let (sender, mut events) = mpsc::channel(8);
        let mut following = Following::new(&sender, &file, &limits).unwrap();
        // print('warn', 0, file=sys.stderr), read between its writes.
        writer.write_str(Stream::Stderr, "warn");
        writer.write_str(Stream::Stderr, " ");
        following.send_new(false).await;
        assert!(sent(&mut events).is_empty());
        for text in ["0", "\n", "a\nb"] {
            writer.write_str(Stream::Stderr, text);
        }
        following.send_new(false).await;
        assert_eq!(sent(&mut events), ["warn 0\na\n"]);
        writer.write_str(Stream::Stderr, "c");
        following.send_new(false).await;
        assert_eq!(sent(&mut events), ["bc"], "begun a reading before: goes");
        writer.write_str(Stream::Stderr, "x\u{e9}");
        following.send_new(false).await;
        following.send_new(false).await;
        assert_eq!(sent(&mut events), ["x\u{e9}"]);
        writer.write_str(Stream::Stderr, "tail");
        following.send_new(false).await;
        assert!(sent(&mut events).is_empty());
        following.finish().await;
        assert_eq!(sent(&mut events), ["tail"]);
        let whole = output_region::read(&file, limits.max_output_bytes)
            .unwrap()
            .stderr;
        assert_eq!(whole, "warn 0\na\nbcx\u{e9}tail");
    }

    #[tokio::test]
    async fn text_waits_for_room_in_the_channel_and_is_not_lost_when_following_stops() {
        let limits = limits();
        let (file, mut writer) = output_file(&limits);
        let (sender, mut events) = mpsc::channel(1);
        sender.try_send(RunEvent::Admitted).unwrap();
        let mut following = Following::new(&sender, &file, &limits).unwrap();
        writer.write_str(Stream::Stderr, "lost?\n");
        // The run ends while its follower's channel is full: the reading is dropped waiting.
        let waiting = tokio::time::timeout(Duration::from_millis(50), following.send_new(false));
        assert!(waiting.await.is_err());
        assert!(matches!(events.recv().await, Some(RunEvent::Admitted)));
        following.finish().await;
        assert_eq!(sent(&mut events), ["lost?\n"]);
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
