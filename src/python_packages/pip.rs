//! Running pip: which interpreter's pip, the package sources the operator chose (an index, a
//! wheelhouse), and pip's reason in a few lines when it fails.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::InstallError;

/// The interpreter sandlot links (build/python.rs); its pip installs wheels for the same
/// CPython.
pub const PYTHON: &str = env!("SANDLOT_PYTHON");

/// Where pip looks for packages besides its own configuration (`PIP_*` variables, pip.conf):
/// an index (`--pip-index-url`, Dify's `PIP_MIRROR_URL`) and a directory or page of wheels
/// (`--pip-find-links`, a wheelhouse for hosts without the internet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipOptions {
    pub index_url: Option<String>,
    pub find_links: Option<String>,
}

impl PipOptions {
    /// pip's own flags for these options. An index over plain http is trusted by its host, as
    /// dify-sandbox does for `PIP_MIRROR_URL` (pip refuses plain http otherwise).
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(url) = &self.index_url {
            args.extend(["--index-url".to_owned(), url.clone()]);
            if let Some(rest) = url.strip_prefix("http://") {
                let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
                let host = authority.rsplit('@').next().unwrap_or("");
                let host = host.split(':').next().unwrap_or("");
                if !host.is_empty() {
                    args.extend(["--trusted-host".to_owned(), host.to_owned()]);
                }
            }
        }
        if let Some(links) = &self.find_links {
            args.extend(["--find-links".to_owned(), links.clone()]);
        }
        args
    }
}

/// A pip for the linked CPython's version: the linked interpreter's own, else another
/// interpreter of the same version on PATH (the wheels are the same).
pub fn pip_python() -> Result<String, InstallError> {
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

/// The variables that may hold the server's API key: not for pip, package builds or the
/// operator's packages' import check, which run code from the package index.
const KEY_VARIABLES: [&str; 3] = ["SANDLOT_API_KEY", "API_KEY", "SANDBOX_TOKEN"];

/// A command for `python` that dies with the thread that started it (a server's installer)
/// rather than running on without it, and without the server's API key in its environment.
pub fn command(python: &str) -> Command {
    let mut command = Command::new(python);
    for name in KEY_VARIABLES {
        command.env_remove(name);
    }
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
    command.env("PIP_ROOT_USER_ACTION", "ignore");
    command
}

/// Runs `python -m pip install ARGS`, its output going to `progress` line by line; on failure,
/// pip's reason (its `ERROR:` lines and the resolver's explanation of a conflict).
pub fn install(
    python: &str,
    args: &[OsString],
    progress: &mut dyn Write,
) -> Result<(), InstallError> {
    let mut child = command(python)
        .args([
            "-m",
            "pip",
            "install",
            "--no-input",
            "--disable-pip-version-check",
        ])
        .args(["--progress-bar", "off"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| InstallError::StartPip {
            python: python.to_owned(),
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
    let mut said = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in io::BufRead::lines(io::BufReader::new(stdout)).map_while(Result::ok) {
            let _ = writeln!(progress, "  pip: {line}");
            said.push(line);
        }
    }
    let status = child.wait().map_err(InstallError::WaitPip)?;
    let errors = errors.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    for line in errors.lines() {
        let _ = writeln!(progress, "  pip: {line}");
    }
    Err(InstallError::Pip {
        status,
        reason: reason(&said, &errors),
    })
}

/// What pip said went wrong, on one line: its `ERROR:` lines (stderr) and, for a conflict,
/// the resolver's "The conflict is caused by:" list (stdout) — not its generic advice.
pub fn reason(stdout: &[String], stderr: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for line in stderr.lines() {
        let line = line.trim();
        if let Some(error) = line.strip_prefix("ERROR: ") {
            if !error.starts_with("ResolutionImpossible") {
                parts.push(error.to_owned());
            }
        }
    }
    if let Some(start) = stdout
        .iter()
        .position(|l| l.contains("conflict is caused by"))
    {
        let causes: Vec<&str> = stdout[start + 1..]
            .iter()
            .map(|l| l.trim())
            .take_while(|l| !l.is_empty() && !l.starts_with("To fix"))
            .collect();
        if !causes.is_empty() {
            parts.push(format!("The conflict is caused by: {}", causes.join("; ")));
        }
    }
    if parts.is_empty() {
        // No ERROR line (pip killed, an exception): its last words.
        let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let from = tail.len().saturating_sub(3);
        parts.push(tail[from..].join(" | "));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_reads_as_pip_explains_it() {
        let stdout: Vec<String> = [
            "Looking in links: /opt/wheels",
            "",
            "The conflict is caused by:",
            "    The user requested numpy==1.26.4",
            "    The user requested (constraint) numpy==2.2.6",
            "",
            "To fix this you could try to:",
            "1. loosen the range of package versions you've specified",
        ]
        .map(str::to_owned)
        .to_vec();
        let stderr = "ERROR: Cannot install numpy==1.26.4 because these package versions have \
                      conflicting dependencies.\nERROR: ResolutionImpossible: for help visit …\n";
        assert_eq!(
            reason(&stdout, stderr),
            "Cannot install numpy==1.26.4 because these package versions have conflicting \
             dependencies. The conflict is caused by: The user requested numpy==1.26.4; \
             The user requested (constraint) numpy==2.2.6"
        );
        assert_eq!(
            reason(&[], "ERROR: No matching distribution found for nope\n"),
            "No matching distribution found for nope"
        );
    }

    #[test]
    fn a_plain_http_index_is_trusted_by_its_host() {
        let options = PipOptions {
            index_url: Some("http://user@mirror.example:8080/simple".into()),
            find_links: Some("/srv/wheels".into()),
        };
        assert_eq!(
            options.args(),
            [
                "--index-url",
                "http://user@mirror.example:8080/simple",
                "--trusted-host",
                "mirror.example",
                "--find-links",
                "/srv/wheels"
            ]
        );
        let https = PipOptions {
            index_url: Some("https://pypi.example/simple".into()),
            find_links: None,
        };
        assert_eq!(https.args(), ["--index-url", "https://pypi.example/simple"]);
    }

    #[test]
    fn pip_never_sees_the_api_key() {
        let command = super::command("python3");
        let removed: Vec<_> = command
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        for name in super::KEY_VARIABLES {
            assert!(removed.iter().any(|r| r == name), "{name} reaches pip");
        }
    }
}
