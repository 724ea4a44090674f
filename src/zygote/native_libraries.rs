//! The system libraries an interpreter's native extensions need, found by loading them.
//!
//! A child may load a CPython extension module as it goes (`import gzip` loads `_bz2`'s
//! neighbour `zlib`, `import sqlite3` loads `_sqlite3`, which needs `libsqlite3`): the module
//! itself lies under a directory Landlock lets it read, but the dynamic loader also opens the
//! libraries the module links, from the system's library directories, which it may not read.
//! So before its jail, a zygote forks a throwaway process that `dlopen`s every extension module
//! under its readable directories and reports each file that got mapped from elsewhere; Landlock
//! then lets children read exactly those files.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe, ForkResult};

/// The shared libraries (outside `dirs`) that the extension modules beneath `dirs` link.
/// Best effort: a module that does not load adds nothing. Must be called single-threaded.
pub fn needed_by_extensions(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let modules: Vec<CString> = dirs
        .iter()
        .flat_map(|dir| extension_modules(dir))
        .filter_map(|path| CString::new(path.as_os_str().as_bytes()).ok())
        .collect();
    if modules.is_empty() {
        return Vec::new();
    }
    let Ok((read_end, write_end)) = pipe() else {
        return Vec::new();
    };
    // SAFETY: the zygote is single-threaded; the child only loads libraries, reads its own
    // maps, writes them to the pipe and `_exit`s.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(read_end);
            for module in &modules {
                // SAFETY: a NUL-terminated path; the handle is never used or closed — the
                // process leaves right after.
                unsafe { libc::dlopen(module.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
            }
            let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
            let _ = std::fs::File::from(write_end).write_all(maps.as_bytes());
            // SAFETY: _exit ends the throwaway process at once, running nothing the loaded
            // libraries registered.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(write_end);
            let mut maps = String::new();
            let _ = std::fs::File::from(read_end).read_to_string(&mut maps);
            let _ = waitpid(child, None);
            let mut libraries: Vec<PathBuf> = maps
                .lines()
                .filter_map(|line| line.split_whitespace().nth(5))
                .filter(|path| path.starts_with('/') && path.contains(".so"))
                .map(PathBuf::from)
                .filter(|path| !dirs.iter().any(|dir| path.starts_with(dir)) && path.is_file())
                .collect();
            libraries.sort();
            libraries.dedup();
            libraries
        }
        Err(_) => Vec::new(),
    }
}

/// Every `*.so` file beneath `dir` (CPython extension modules and the libraries wheels bundle).
fn extension_modules(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                todo.push(path);
            } else if kind.is_file() && path.extension().is_some_and(|e| e == "so") {
                found.push(path);
            }
        }
    }
    found
}
