//! The third-party Python packages of `whitelist/python-requirements.txt`, installed by sandlot
//! itself with `pip install --target` into its data directory, for the python-data zygote.
//!
//! Each version of the requirements gets a directory of its own (named by a hash of the file),
//! filled in a temporary directory and renamed into place when pip succeeds, so a half-finished
//! install is never used. A lock file serialises installers (several servers, `deps install`).

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
    #[error("running {PYTHON} failed: {0}")]
    LinkedPython(#[source] io::Error),
    #[error("no pip for Python {0} (tried {PYTHON} -m pip, python{0}, python3)")]
    NoPip(String),
    #[error("starting pip ({python} -m pip) failed: {source}")]
    StartPip { python: String, source: io::Error },
    #[error("waiting for pip failed: {0}")]
    WaitPip(#[source] io::Error),
    #[error("pip failed ({status}); is the package index reachable? {tail}")]
    Pip {
        status: std::process::ExitStatus,
        tail: String,
    },
    #[error("moving the packages into place failed: {0}")]
    Rename(#[source] io::Error),
}

/// The interpreter sandlot links (build/python.rs); its pip installs wheels for the same
/// CPython.
const PYTHON: &str = env!("SANDLOT_PYTHON");

/// A pip for the linked CPython's version: the linked interpreter's own, else another
/// interpreter of the same version on PATH (the wheels are the same).
fn pip_python() -> Result<String, InstallError> {
    let version = |python: &str| -> Option<String> {
        let out = Command::new(python)
            .args(["-m", "pip", "--version"])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let start = text.rfind("(python ")? + "(python ".len();
        Some(text[start..].trim_end().trim_end_matches(')').to_owned())
    };
    let wanted = Command::new(PYTHON)
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .map_err(InstallError::LinkedPython)?;
    let candidates = [
        PYTHON.to_owned(),
        format!("python{wanted}"),
        "python3".to_owned(),
    ];
    candidates
        .into_iter()
        .find(|python| version(python).as_deref() == Some(wanted.as_str()))
        .ok_or(InstallError::NoPip(wanted))
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

/// Installs the requirements unless they already are; pip's output goes to `progress`.
pub fn install(data_dir: &Path, progress: &mut dyn Write) -> Result<(), InstallError> {
    // Installed (the marker is written last): nothing to lock, and nothing to write, so a data
    // directory baked into a read-only image serves as it is.
    if is_installed(data_dir) {
        return Ok(());
    }
    fs::create_dir_all(data_dir).map_err(|source| InstallError::DataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    let lock = File::create(data_dir.join("install.lock")).map_err(InstallError::Lock)?;
    nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| InstallError::Lock(e.into()))
        .and_then(|_locked| install_locked(data_dir, progress))
}

fn install_locked(data_dir: &Path, progress: &mut dyn Write) -> Result<(), InstallError> {
    if is_installed(data_dir) {
        return Ok(());
    }
    let target = site_dir(data_dir);
    // Under the lock, any staging directory is a dead installer's leftover.
    for entry in fs::read_dir(data_dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("staging-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    let staging = data_dir.join(format!("staging-{}", std::process::id()));
    let requirements = data_dir.join("python-requirements.txt");
    fs::write(&requirements, PYTHON_REQUIREMENTS).map_err(|source| InstallError::Write {
        path: requirements.clone(),
        source,
    })?;
    let python = pip_python()?;
    let _ = writeln!(
        progress,
        "sandlot: installing the Python data packages into {} ({python} -m pip)",
        target.display()
    );
    let mut command = Command::new(&python);
    // pip dies with the thread that started it (its server), rather than installing on.
    let installer = nix::unistd::getpid().as_raw();
    // SAFETY: prctl and getppid are async-signal-safe and touch no memory.
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if libc::getppid() != installer {
                return Err(io::Error::other("the installer exited while starting pip"));
            }
            Ok(())
        });
    }
    let mut child = command
        .args([
            "-m",
            "pip",
            "install",
            "--no-input",
            "--disable-pip-version-check",
        ])
        .args([
            "--only-binary=:all:",
            "--no-deps",
            "--progress-bar",
            "off",
            "--target",
        ])
        .arg(&staging)
        .arg("-r")
        .arg(&requirements)
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| InstallError::StartPip {
            python: python.clone(),
            source,
        })?;
    let stderr = child.stderr.take();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let _ = io::Read::read_to_string(&mut stderr, &mut text);
        }
        text
    });
    if let Some(stdout) = child.stdout.take() {
        for line in io::BufRead::lines(io::BufReader::new(stdout)).map_while(Result::ok) {
            let _ = writeln!(progress, "  pip: {line}");
        }
    }
    let status = child.wait().map_err(InstallError::WaitPip)?;
    let errors = errors.join().unwrap_or_default();
    if !status.success() {
        let _ = fs::remove_dir_all(&staging);
        return Err(InstallError::Pip {
            status,
            tail: errors.lines().rev().take(5).collect::<Vec<_>>().join(" | "),
        });
    }
    let _ = fs::remove_dir_all(&target);
    fs::rename(&staging, &target).map_err(InstallError::Rename)?;
    let complete = target.join(".complete");
    fs::write(&complete, PYTHON_REQUIREMENTS).map_err(|source| InstallError::Write {
        path: complete,
        source,
    })?;
    let _ = writeln!(progress, "sandlot: Python data packages installed");
    Ok(())
}

/// (name, version) of every package installed for this build, from pip's `.dist-info`s.
pub fn installed(data_dir: &Path) -> Vec<(String, String)> {
    if !is_installed(data_dir) {
        return Vec::new();
    }
    let Ok(entries) = fs::read_dir(site_dir(data_dir)) else {
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
