//! The third-party Python packages, installed by sandlot itself with `pip install --target`
//! into its data directory, for the python-data zygote: the data packages pinned in
//! `whitelist/python-requirements.txt` (compiled in), and the operator's own
//! (`--python-requirements FILE`, [`operator`]).
//!
//! Each version of the requirements gets a directory of its own (named by a hash of the file),
//! filled in a temporary directory and renamed into place when pip succeeds, so a half-finished
//! install is never used. A lock file serialises installers (several servers, `deps install`).

pub mod operator;
mod pip;
mod progress_log;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use pip::PipOptions;
use pip::PYTHON;
pub use progress_log::ProgressLog;

use crate::whitelist::PYTHON_REQUIREMENTS;

/// Why the packages could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("creating the data directory {path} failed: {source}")]
    DataDir { path: PathBuf, source: io::Error },
    #[error("taking the install lock failed: {0}")]
    Lock(#[source] io::Error),
    #[error("writing {path} failed: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("reading {path} failed: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("running {PYTHON} failed: {0}")]
    LinkedPython(#[source] io::Error),
    #[error("no pip for Python {0} (tried {PYTHON} -m pip, python{0}, python3)")]
    NoPip(String),
    #[error("starting pip ({python} -m pip) failed: {source}")]
    StartPip { python: String, source: io::Error },
    #[error("waiting for pip failed: {0}")]
    WaitPip(#[source] io::Error),
    #[error("pip failed ({status}): {reason}")]
    Pip {
        status: std::process::ExitStatus,
        reason: String,
    },
    #[error("pip's report of what it would install does not read: {0}")]
    Report(String),
    #[error("moving the packages into place failed: {0}")]
    Rename(#[source] io::Error),
}

/// sandlot's data directory when none is configured: `/var/lib/sandlot` for root (children, an
/// unprivileged user, must be able to read the packages, and root's home is closed to them),
/// else `$XDG_DATA_HOME/sandlot`, else `~/.local/share/sandlot`.
pub fn default_data_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/sandlot");
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("sandlot");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/var/lib".into());
    PathBuf::from(home).join(".local/share/sandlot")
}

/// Where this build's requirements live inside `data_dir`: per CPython version, since the
/// wheels of one do not import in another (two builds may share a data directory).
pub fn site_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(format!(
        "python{}-{:016x}",
        env!("SANDLOT_PYTHON_VERSION"),
        fnv1a(PYTHON_REQUIREMENTS.as_bytes())
    ))
}

/// matplotlib's configuration and font cache, built by the python-data zygote.
pub fn matplotlib_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("matplotlib")
}

pub fn is_installed(data_dir: &Path) -> bool {
    site_dir(data_dir).join(".complete").is_file()
}

/// Installs the data packages unless they already are; pip's output goes to `progress`.
pub fn install(
    data_dir: &Path,
    sources: &PipOptions,
    progress: &mut dyn Write,
) -> Result<(), InstallError> {
    // Installed (the marker is written last): nothing to lock, and nothing to write, so a data
    // directory baked into a read-only image serves as it is.
    if is_installed(data_dir) {
        return Ok(());
    }
    locked(data_dir, || {
        if is_installed(data_dir) {
            return Ok(());
        }
        let requirements = data_dir.join("python-requirements.txt");
        write(&requirements, PYTHON_REQUIREMENTS.as_bytes())?;
        let python = pip::pip_python()?;
        let target = site_dir(data_dir);
        let _ = writeln!(
            progress,
            "sandlot: installing the Python data packages into {} ({python} -m pip)",
            target.display()
        );
        let staging = staging_dir(data_dir);
        let mut args: Vec<std::ffi::OsString> = ["--only-binary=:all:", "--no-deps", "--target"]
            .map(Into::into)
            .to_vec();
        args.push(staging.clone().into());
        args.extend(["-r".into(), requirements.into()]);
        args.extend(sources.args().into_iter().map(Into::into));
        if let Err(e) = pip::install(&python, &args, progress) {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
        move_into_place(&staging, &target, PYTHON_REQUIREMENTS.as_bytes())?;
        let _ = writeln!(progress, "sandlot: Python data packages installed");
        Ok(())
    })
}

/// Installs the data packages, then the operator's requirements at `requirements` (if any):
/// what `sandlot deps install` does. The operator's site, once installed.
pub fn install_all(
    data_dir: &Path,
    requirements: Option<&Path>,
    sources: &PipOptions,
    progress: &mut dyn Write,
) -> Result<Option<operator::OperatorSite>, InstallError> {
    install(data_dir, sources, progress)?;
    requirements
        .map(|file| operator::install(data_dir, file, sources, progress))
        .transpose()
}

/// Runs `work` holding the data directory's install lock (created if need be). Under the lock,
/// any staging directory is a dead installer's leftover, and is removed first.
fn locked<T>(
    data_dir: &Path,
    work: impl FnOnce() -> Result<T, InstallError>,
) -> Result<T, InstallError> {
    fs::create_dir_all(data_dir).map_err(|source| InstallError::DataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    let lock = File::create(data_dir.join("install.lock")).map_err(InstallError::Lock)?;
    let _locked = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| InstallError::Lock(e.into()))?;
    for entry in fs::read_dir(data_dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("staging-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    work()
}

fn staging_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(format!("staging-{}", std::process::id()))
}

fn write(path: &Path, content: &[u8]) -> Result<(), InstallError> {
    fs::write(path, content).map_err(|source| InstallError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Renames a finished staging directory to `target` and writes its marker (`.complete`, with
/// the requirements it holds) last.
fn move_into_place(staging: &Path, target: &Path, marker: &[u8]) -> Result<(), InstallError> {
    let _ = fs::remove_dir_all(target);
    fs::rename(staging, target).map_err(InstallError::Rename)?;
    write(&target.join(".complete"), marker)
}

/// (name, version) of every package installed for this build, from pip's `.dist-info`s.
pub fn installed(data_dir: &Path) -> Vec<(String, String)> {
    if !is_installed(data_dir) {
        return Vec::new();
    }
    distributions(&site_dir(data_dir))
}

/// (name, version) of every distribution in a site directory.
pub fn distributions(site: &Path) -> Vec<(String, String)> {
    let Ok(entries) = fs::read_dir(site) else {
        return Vec::new();
    };
    let mut found: Vec<(String, String)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".dist-info")?;
            let (package, version) = stem.rsplit_once('-')?;
            Some((package.to_owned(), version.to_owned()))
        })
        .collect();
    found.sort();
    found
}

/// A stable 64-bit hash (FNV-1a) to name the install directory.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |hash, b| {
        (hash ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}
