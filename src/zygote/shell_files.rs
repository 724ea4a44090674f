//! A shell run's files: the request's, written into its working directory before the command
//! starts (read-only: owned by the supervisor, mode 0444), and its `output/` directory — a
//! tmpfs of its own, capped in bytes and files by the kernel — copied into the run's output
//! file once the command has ended, timed out included ([`crate::output_files`]).

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::dir::{Dir, Type};
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::Mode;
use nix::sys::statvfs::fstatvfs;

use super::run_output;
use crate::jail::{filesystem_view, JailError};
use crate::output_files::{CapHit, MAX_FILES};
use crate::protocol::Job;

/// Puts the request's files into the working directory and mounts `output/`; returns the
/// output directory, open: pid 1 pivots the namespace's root, which moves the supervisor's
/// too, so a path would not name it afterwards.
pub fn place(job: &Job, working_dir: &Path, uid: u32, gid: u32) -> Result<OwnedFd, String> {
    let dir = filesystem_view::seen_from_supervisor(working_dir);
    for file in &job.files {
        let path = dir.join(&file.name);
        std::fs::write(&path, file.bytes())
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)))
            .map_err(|e| format!("writing the input file {}: {e}", path.display()))?;
    }
    let output = filesystem_view::add_output_dir(
        working_dir,
        uid,
        gid,
        job.limits.max_output_files_bytes,
        MAX_FILES,
    )
    .map_err(|e: JailError| e.to_string())?;
    open(
        &output,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("opening {}: {e}", output.display()))
}

/// Copies the regular files of `output` (by name; links and directories are left out) into
/// the run's output file, and marks a cap as hit when the tmpfs is full.
pub fn gather(output: &OwnedFd) {
    let dir = output.try_clone().ok().and_then(|fd| Dir::from_fd(fd).ok());
    let mut names: Vec<String> = match dir {
        Some(mut dir) => dir
            .iter()
            .flatten()
            .filter(|e| e.file_type() == Some(Type::File))
            .filter_map(|e| e.file_name().to_str().ok().map(str::to_owned))
            .collect(),
        None => return,
    };
    names.sort();
    for name in names {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let Ok(fd) = openat(output, name.as_str(), flags, Mode::empty()) else {
            continue;
        };
        let mut file = std::fs::File::from(fd);
        let Ok(index) = run_output::with_files(|files| files.create(&name)) else {
            continue;
        };
        let mut buf = vec![0u8; 64 * 1024];
        let mut offset = 0u64;
        while let Ok(n) = file.read(&mut buf) {
            if n == 0 {
                break;
            }
            if run_output::with_files(|files| files.write(index, offset, &buf[..n])).is_err() {
                break;
            }
            offset += n as u64;
        }
        let _ = run_output::with_files(|files| files.close(index));
    }
    if let Ok(stats) = fstatvfs(output) {
        let hit = if stats.files_available() == 0 {
            Some(CapHit::Count)
        } else if stats.blocks_available() == 0 {
            Some(CapHit::Bytes)
        } else {
            None
        };
        if let Some(hit) = hit {
            let _ = run_output::with_files(|files| {
                files.mark(hit);
                Ok(())
            });
        }
    }
}
