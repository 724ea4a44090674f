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
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::throwaway_process;

/// The shared libraries (outside `dirs`) that the extension modules beneath `dirs` link.
/// Best effort: a module that does not load adds nothing.
///
/// # Safety
/// The process must be single-threaded: the modules are loaded in a forked process.
pub unsafe fn needed_by_extensions(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let modules: Vec<CString> = dirs
        .iter()
        .flat_map(|dir| extension_modules(dir))
        .filter_map(|path| CString::new(path.as_os_str().as_bytes()).ok())
        .collect();
    if modules.is_empty() {
        return Vec::new();
    }
    let load_them_all = || {
        for module in &modules {
            // SAFETY: a NUL-terminated path; the handle is never used or closed — the process
            // leaves right after.
            unsafe { libc::dlopen(module.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
        }
        std::fs::read_to_string("/proc/self/maps")
            .unwrap_or_default()
            .into_bytes()
    };
    // SAFETY: our caller promises a single thread.
    let maps = unsafe { throwaway_process::run(load_them_all) }.unwrap_or_default();
    let mut libraries: Vec<PathBuf> = String::from_utf8_lossy(&maps)
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
