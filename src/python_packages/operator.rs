//! The operator's own packages: a pip requirements file (`--python-requirements FILE`, by
//! default dify-sandbox's `/dependencies/python-requirements.txt` when it exists), installed
//! beside the data packages without a rebuild.
//!
//! pip resolves the operator's requirements with the data packages' pins as constraints, so a
//! version conflict (`numpy==1.26.4` against the pinned 2.2.6) fails the install with pip's
//! own explanation, never a run. What the resolution adds to the data packages is installed,
//! each distribution exactly as resolved, into a directory of its own named by a hash of both
//! files (staged and renamed, as the data packages are); the data packages themselves are not
//! installed twice. The modules user code may import are the top-level names the installed
//! distributions' `RECORD`s list (`beautifulsoup4` imports as `bs4`, `pyyaml` as `yaml`).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::{fnv1a, locked, move_into_place, pip, staging_dir, write, InstallError, PipOptions};
use crate::whitelist::{self, PYTHON_REQUIREMENTS};

/// The operator's site directory, for the python-data zygote (absent: none).
pub const OPERATOR_PACKAGES_ENV: &str = "SANDLOT_OPERATOR_PACKAGES";

/// dify-sandbox's place for the operator's requirements (the volume its compose file mounts).
pub const DIFY_REQUIREMENTS: &str = "/dependencies/python-requirements.txt";

/// The default `--python-requirements`: dify-sandbox's file, when it exists.
pub fn default_requirements() -> Option<PathBuf> {
    Some(PathBuf::from(DIFY_REQUIREMENTS)).filter(|path| path.is_file())
}

/// An installed set of operator packages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperatorSite {
    pub dir: PathBuf,
    /// The top-level modules its distributions install: what user code may import.
    pub modules: Vec<String>,
    /// Modules that did not import (outside the jail, right after the install), and why.
    pub not_importable: BTreeMap<String, String>,
    /// (name, version) of its distributions.
    #[serde(skip)]
    pub distributions: Vec<(String, String)>,
}

/// The requirements file's content.
pub fn read_requirements(path: &Path) -> Result<Vec<u8>, InstallError> {
    std::fs::read(path).map_err(|source| InstallError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Where the operator's requirements `content` go: per CPython version, and per version of
/// both the data packages' pins and the operator's file.
pub fn site_dir(data_dir: &Path, content: &[u8]) -> PathBuf {
    let mut both = PYTHON_REQUIREMENTS.as_bytes().to_vec();
    both.push(0);
    both.extend_from_slice(content);
    data_dir.join(format!(
        "python{}-operator-{:016x}",
        env!("SANDLOT_PYTHON_VERSION"),
        fnv1a(&both)
    ))
}

/// The site of `content`, if it is installed.
pub fn installed(data_dir: &Path, content: &[u8]) -> Option<OperatorSite> {
    let dir = site_dir(data_dir, content);
    dir.join(".complete").is_file().then(|| site(dir))
}

fn site(dir: PathBuf) -> OperatorSite {
    let not_importable = std::fs::read(dir.join(".not-importable"))
        .ok()
        .and_then(|text| serde_json::from_slice(&text).ok())
        .unwrap_or_default();
    OperatorSite {
        modules: import_names(&dir),
        distributions: super::distributions(&dir),
        not_importable,
        dir,
    }
}

/// Installs the requirements at `requirements` unless that content is installed already.
pub fn install(
    data_dir: &Path,
    requirements: &Path,
    sources: &PipOptions,
    progress: &mut dyn Write,
) -> Result<OperatorSite, InstallError> {
    let content = read_requirements(requirements)?;
    if let Some(site) = installed(data_dir, &content) {
        return Ok(site);
    }
    locked(data_dir, || {
        if let Some(site) = installed(data_dir, &content) {
            return Ok(site);
        }
        let python = pip::pip_python()?;
        let target = site_dir(data_dir, &content);
        let staging = staging_dir(data_dir);
        let outcome = install_staged(&python, data_dir, requirements, &staging, sources, progress);
        let staged = staging.join("site");
        let moved = outcome.and_then(|()| move_into_place(&staged, &target, &content));
        let _ = std::fs::remove_dir_all(&staging);
        moved?;
        let site = site(target);
        let _ = writeln!(
            progress,
            "sandlot: the operator's packages are installed in {} (modules: {})",
            site.dir.display(),
            site.modules.join(", ")
        );
        Ok(site)
    })
}

fn install_staged(
    python: &str,
    data_dir: &Path,
    requirements: &Path,
    staging: &Path,
    sources: &PipOptions,
    progress: &mut dyn Write,
) -> Result<(), InstallError> {
    let pins = data_dir.join("python-requirements.txt");
    write(&pins, PYTHON_REQUIREMENTS.as_bytes())?;
    std::fs::create_dir_all(staging).map_err(|source| InstallError::Write {
        path: staging.to_owned(),
        source,
    })?;
    let _ = writeln!(
        progress,
        "sandlot: resolving {} with the data packages' pins as constraints",
        requirements.display()
    );
    let report = staging.join("report.json");
    let mut resolve: Vec<OsString> = ["--dry-run", "--ignore-installed", "--report"]
        .map(Into::into)
        .to_vec();
    resolve.push(report.clone().into());
    resolve.extend(["-c".into(), pins.into(), "-r".into(), requirements.into()]);
    resolve.extend(sources.args().into_iter().map(Into::into));
    pip::install(python, &resolve, progress).map_err(|e| match e {
        InstallError::Pip { status, reason } if reason.contains("(constraint)") => {
            InstallError::Pip {
                status,
                reason: format!(
                    "{reason} (each constraint is a pin of sandlot's data packages, \
                     whitelist/python-requirements.txt)"
                ),
            }
        }
        other => other,
    })?;
    let text = std::fs::read(&report).map_err(|e| InstallError::Report(e.to_string()))?;
    let report: Value =
        serde_json::from_slice(&text).map_err(|e| InstallError::Report(e.to_string()))?;
    let wanted = additions(&report)?;
    let site = staging.join("site");
    std::fs::create_dir_all(&site).map_err(|source| InstallError::Write {
        path: site.clone(),
        source,
    })?;
    if !wanted.is_empty() {
        let _ = writeln!(
            progress,
            "sandlot: installing {} into {}",
            wanted.join(" "),
            site.display()
        );
        let mut args: Vec<OsString> = vec!["--no-deps".into(), "--target".into(), site.into()];
        args.extend(sources.args().into_iter().map(Into::into));
        args.extend(wanted.into_iter().map(Into::into));
        pip::install(python, &args, progress)?;
    }
    let site = staging.join("site");
    let names = import_names(&site);
    let failed = check_imports(python, &super::site_dir(data_dir), &site, &names);
    for (name, why) in &failed {
        let _ = writeln!(progress, "sandlot: {name} does not import: {why}");
    }
    let text = serde_json::to_vec(&failed).unwrap_or_default();
    write(&site.join(".not-importable"), &text)
}

/// What pip's report resolves beyond the data packages, each as exactly the file it chose
/// (`name @ url`): the install then looks nothing up again.
fn additions(report: &Value) -> Result<Vec<String>, InstallError> {
    let pinned = pinned_names();
    let mut wanted = Vec::new();
    let items = report["install"]
        .as_array()
        .ok_or_else(|| InstallError::Report("no `install` list".into()))?;
    for item in items {
        let name = item["metadata"]["name"]
            .as_str()
            .ok_or_else(|| InstallError::Report("an item without a name".into()))?;
        if pinned.contains(&normalize(name)) {
            continue;
        }
        let info = &item["download_info"];
        let url = info["url"]
            .as_str()
            .ok_or_else(|| InstallError::Report(format!("{name} has no url")))?;
        let url = match (
            info["vcs_info"]["vcs"].as_str(),
            info["vcs_info"]["commit_id"].as_str(),
        ) {
            (Some(vcs), Some(commit)) => format!("{vcs}+{url}@{commit}"),
            _ => url.to_owned(),
        };
        wanted.push(format!("{name} @ {url}"));
    }
    Ok(wanted)
}

/// The normalised names (PEP 503) the data packages' pins name.
fn pinned_names() -> BTreeSet<String> {
    PYTHON_REQUIREMENTS
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty() && !line.starts_with('-'))
        .map(|line| {
            let end = line
                .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
                .unwrap_or(line.len());
            normalize(&line[..end])
        })
        .collect()
}

/// PEP 503's normal form of a distribution name.
fn normalize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if "-_.".contains(c) {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The top-level modules the distributions in `site` install, from their `RECORD`s: a
/// directory (`bs4/…`), a module (`six.py`) or an extension (`_yaml.cpython-311-….so`) at the
/// top; never the standard library's names, which stay the standard library's.
pub fn import_names(site: &Path) -> Vec<String> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(site).into_iter().flatten().flatten() {
        if !entry.file_name().to_string_lossy().ends_with(".dist-info") {
            continue;
        }
        let record = std::fs::read_to_string(entry.path().join("RECORD")).unwrap_or_default();
        names.extend(record.lines().filter_map(top_level));
    }
    names
        .into_iter()
        .filter(|name| !whitelist::is_standard_library(name))
        .collect()
}

/// The top-level module a `RECORD` line's path installs, if any.
fn top_level(line: &str) -> Option<String> {
    let path = line.split(',').next()?.trim_matches('"');
    if path.starts_with("..") || path.starts_with('/') {
        return None;
    }
    let name = match path.split_once('/') {
        Some((dir, _)) => {
            let skipped = dir.ends_with(".dist-info") || dir.ends_with(".data");
            if skipped || dir == "__pycache__" || dir == "bin" {
                return None;
            }
            dir
        }
        None if path.ends_with(".py") => path.strip_suffix(".py")?,
        None if path.ends_with(".so") => path.split('.').next()?,
        None => return None,
    };
    let identifier = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    (identifier && !name.is_empty()).then(|| name.to_owned())
}

/// Imports each of `names` in a fresh interpreter of the linked version, with the data
/// packages first on its path and the operator's after the standard library, as the
/// python-data zygote has them: the modules that fail, and why (a missing system library, a
/// broken wheel). Outside the jail: what the jail refuses shows in the run.
fn check_imports(
    python: &str,
    data_site: &Path,
    site: &Path,
    names: &[String],
) -> BTreeMap<String, String> {
    const CHECK: &str = "import importlib, json, sys\n\
        sys.path.insert(0, sys.argv[1]); sys.path.append(sys.argv[2])\n\
        failed = {}\n\
        for name in sys.argv[3:]:\n\
        \x20   try:\n\
        \x20       importlib.import_module(name)\n\
        \x20   except BaseException as e:\n\
        \x20       failed[name] = f'{type(e).__name__}: {e}'\n\
        print(json.dumps(failed))\n";
    if names.is_empty() {
        return BTreeMap::new();
    }
    let child = pip::command(python)
        .args(["-I", "-S", "-c", CHECK])
        .arg(data_site)
        .arg(site)
        .args(names)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return BTreeMap::new();
    };
    let until = Instant::now() + Duration::from_secs(120);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let output = child
        .wait_with_output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    serde_json::from_slice(&output).unwrap_or_else(|_| {
        names
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    "importing the packages did not finish in 120 s".into(),
                )
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_names_come_from_the_record() {
        let lines = [
            "bs4/__init__.py,sha256=x,1",
            "bs4/builder/_lxml.py,sha256=x,1",
            "beautifulsoup4-4.15.0.dist-info/RECORD,,",
            "_yaml/__init__.py,sha256=x,1",
            "yaml/_yaml.cpython-311-x86_64-linux-gnu.so,sha256=x,1",
            "six.py,sha256=x,1",
            "_cffi_backend.cpython-311-x86_64-linux-gnu.so,sha256=x,1",
            "__pycache__/six.cpython-311.pyc,,",
            "../../bin/chardetect,sha256=x,1",
            "bin/normalizer,sha256=x,1",
            "distutils-precedence.pth,sha256=x,1",
            "pkg.data/scripts/x,,",
        ];
        let names: Vec<String> = lines.iter().filter_map(|l| top_level(l)).collect();
        assert_eq!(
            names,
            ["bs4", "bs4", "_yaml", "yaml", "six", "_cffi_backend"]
        );
    }

    #[test]
    fn the_data_pins_are_known_by_their_normal_names() {
        let pinned = pinned_names();
        for name in [
            "numpy",
            "pillow",
            "python-dateutil",
            "typing-extensions",
            "markupsafe",
        ] {
            assert!(pinned.contains(name), "{name} in {pinned:?}");
        }
        assert_eq!(normalize("Typing__Extensions"), "typing-extensions");
        assert_eq!(normalize("zope.interface"), "zope-interface");
    }

    #[test]
    fn the_report_adds_only_what_the_data_packages_lack() {
        let report = serde_json::json!({"install": [
            {"metadata": {"name": "PyYAML", "version": "6.0.4"},
             "download_info": {"url": "file:///w/PyYAML-6.0.4.whl"}},
            {"metadata": {"name": "typing_extensions", "version": "4.16.0"},
             "download_info": {"url": "https://files/typing_extensions.whl"}},
            {"metadata": {"name": "tool", "version": "1.0"},
             "download_info": {"url": "https://git.example/tool",
                               "vcs_info": {"vcs": "git", "commit_id": "abc"}}},
        ]});
        assert_eq!(
            additions(&report).unwrap(),
            [
                "PyYAML @ file:///w/PyYAML-6.0.4.whl",
                "tool @ git+https://git.example/tool@abc"
            ]
        );
    }
}
