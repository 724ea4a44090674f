//! pip's progress, written to the server's log a line at a time.

/// pip's progress as log lines (stderr is the log, which may be JSON).
#[derive(Default)]
pub struct ProgressLog(Vec<u8>);

impl std::io::Write for ProgressLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        while let Some(end) = self.0.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.0.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            tracing::info!(line = line.trim_end(), "installing Python packages");
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
