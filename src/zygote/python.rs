//! The Python zygote: CPython embedded through pyo3, with sandlot's Python package
//! (`stdlib-shims/python/_sandlot/`) loaded and warmed once.
//!
//! It forks without CPython's fork hooks (`PyOS_BeforeFork` and `PyOS_AfterFork_*`, what
//! `os.fork()` calls): the zygote has one thread and holds neither the GIL nor any lock of the
//! interpreter when it forks, so the child's copy of the interpreter is consistent as it is,
//! and the hooks' work (re-creating locks, the at-fork callbacks of `threading` and `random`)
//! wrote to some 180 pages of every child — each a copy-on-write fault. The one hook that
//! matters, a fresh seed for `random`, the run makes itself (`_sandlot.run`).

use std::ffi::CString;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCFunction, PyDict, PyList, PyModule, PyString, PyTuple};
use serde_json::value::RawValue;

use super::{child, run_output, Engine, ZygoteError};
use crate::output_region::{Stream, Written};
use crate::protocol::{
    ChildReport, Convention, ImportPolicy, Job, StandardRule, ZygoteKind, MATPLOTLIB_CONFIG_ENV,
    PYTHON_PACKAGES_ENV,
};
use crate::python_packages::operator::{self, OPERATOR_PACKAGES_ENV};
use crate::run::Mode;
use crate::whitelist;

/// The `_sandlot` package, in load order: a module imports only those above it.
const MODULES: &[(&str, &str)] = &[
    (
        "imports",
        include_str!("../../stdlib-shims/python/_sandlot/imports.py"),
    ),
    (
        "output",
        include_str!("../../stdlib-shims/python/_sandlot/output.py"),
    ),
    (
        "system_helper",
        include_str!("../../stdlib-shims/python/_sandlot/system_helper.py"),
    ),
    (
        "network",
        include_str!("../../stdlib-shims/python/_sandlot/network.py"),
    ),
    (
        "files",
        include_str!("../../stdlib-shims/python/_sandlot/files.py"),
    ),
    (
        "convert",
        include_str!("../../stdlib-shims/python/_sandlot/convert.py"),
    ),
    (
        "errors",
        include_str!("../../stdlib-shims/python/_sandlot/errors.py"),
    ),
    (
        "figures",
        include_str!("../../stdlib-shims/python/_sandlot/figures.py"),
    ),
    (
        "fastgpt",
        include_str!("../../stdlib-shims/python/_sandlot/fastgpt.py"),
    ),
    (
        "run",
        include_str!("../../stdlib-shims/python/_sandlot/run.py"),
    ),
    (
        "warm_up",
        include_str!("../../stdlib-shims/python/_sandlot/warm_up.py"),
    ),
];
const PACKAGE_DOC: &str = include_str!("../../stdlib-shims/python/_sandlot/__init__.py");

pub struct PythonEngine {
    /// `_sandlot.run.prepare`, called in each child before its job arrives.
    prepare: Py<PyAny>,
    /// `_sandlot.run.run`, called once in each child with the job.
    run: Py<PyAny>,
}

impl Engine for PythonEngine {
    fn prepare(_kind: ZygoteKind) -> Result<Self, ZygoteError> {
        super::python_arenas::install();
        super::fresh_memory::map_region();
        Python::initialize();
        super::python_memory::install();
        let (prepare, run) = Python::attach(|py| -> PyResult<(Py<PyAny>, Py<PyAny>)> {
            let package = load_package(py)?;
            let run = package.getattr("run")?;
            run.call_method1(
                "connect",
                (
                    finish_function(py)?,
                    broker_function(py)?,
                    write_function(py)?,
                    connection_function(py)?,
                    files_function(py)?,
                    pause_function(py)?,
                    wait_readable_function(py)?,
                ),
            )?;
            let rules = PyDict::new(py);
            for rule in StandardRule::ALL {
                let lists = (whitelist::refused(rule), whitelist::packages(rule));
                rules.set_item(rule.name(), lists)?;
            }
            package
                .getattr("imports")?
                .call_method1("set_standard_rules", (rules,))?;
            let warm_up = package.getattr("warm_up")?;
            match std::env::var(PYTHON_PACKAGES_ENV) {
                Ok(site) => {
                    warm_up
                        .call_method1("prepare_data", (site, whitelist::PYTHON_DATA_PRELOADED))?;
                    if let Err(e) = super::numpy_memory::install(py) {
                        eprintln!("sandlot: numpy keeps its own allocator of array data: {e}");
                    }
                    if let Ok(operator) = std::env::var(OPERATOR_PACKAGES_ENV) {
                        let modules = operator::import_names(operator.as_ref());
                        warm_up.call_method1("prepare_operator", (operator, modules))?;
                    }
                    warm_up.call_method1("prepare", (whitelist::python_preloaded(),))?;
                }
                Err(_) => {
                    warm_up.call_method1("prepare", (whitelist::python_preloaded(),))?;
                }
            }
            Ok((
                run.getattr("prepare")?.unbind(),
                run.getattr("run")?.unbind(),
            ))
        })
        .map_err(|e| ZygoteError::Interpreter(format!("Python: {e}")))?;
        Ok(Self { prepare, run })
    }

    const LOADS_NATIVE_CODE: bool = true;

    /// The standard library and site-packages directories (a lazily imported module or a
    /// data file may be read from them), the time zone database, and the system libraries the
    /// native extension modules beneath them link.
    fn readable_paths(&self) -> Vec<std::path::PathBuf> {
        let mut dirs: Vec<std::path::PathBuf> = Python::attach(|py| -> PyResult<Vec<String>> {
            let paths = py.import("sysconfig")?.call_method0("get_paths")?;
            ["stdlib", "platstdlib", "purelib", "platlib"]
                .iter()
                .map(|key| paths.get_item(*key)?.extract::<String>())
                .collect()
        })
        .unwrap_or_default()
        .into_iter()
        .map(std::path::PathBuf::from)
        .collect();
        dirs.push("/usr/share/zoneinfo".into());
        // The system's trusted certificates, for the TLS of brokered connections (the
        // `ssl` module's default paths on Debian, Ubuntu, Alpine and Red Hat). Never a
        // directory of private keys: /usr/lib/ssl/private is a link out of it, which
        // Landlock does not follow.
        dirs.extend(
            [
                "/etc/ssl/certs",
                "/usr/lib/ssl",
                "/usr/share/ca-certificates",
                "/etc/pki/tls/certs",
                "/etc/pki/ca-trust/extracted",
            ]
            .map(std::path::PathBuf::from),
        );
        // The python-data zygote's packages (the operator's too), and matplotlib's
        // configuration and font cache.
        let sites: Vec<std::path::PathBuf> = [PYTHON_PACKAGES_ENV, OPERATOR_PACKAGES_ENV]
            .iter()
            .filter_map(std::env::var_os)
            .map(Into::into)
            .collect();
        dirs.extend(sites.iter().cloned());
        if let Ok(mpl) = std::env::var(MATPLOTLIB_CONFIG_ENV) {
            dirs.push(mpl.into());
        }
        dirs.sort();
        dirs.dedup();
        // Only real directories, and never the root: a relative or empty entry must not widen
        // the rule to the whole file system.
        dirs.retain(|d| d.is_absolute() && d.parent().is_some() && d.is_dir());
        let mut extension_dirs: Vec<std::path::PathBuf> = dirs
            .iter()
            .map(|d| d.join("lib-dynload"))
            .filter(|d| d.is_dir())
            .collect();
        extension_dirs.extend(sites);
        // SAFETY: a zygote is single-threaded while it builds its interpreter.
        let libraries = unsafe { super::native_libraries::needed_by_extensions(&extension_dirs) };
        dirs.extend(libraries);
        dirs
    }

    fn prepare_run(&mut self) {
        let prepared = Python::attach(|py| self.prepare.call0(py).map(drop));
        if let Err(e) = prepared {
            child::fail(&format!("preparing the Python run failed: {e}"));
        }
    }

    fn run(&mut self, job: Job) -> ! {
        let outcome = Python::attach(|py| -> PyResult<()> {
            self.run.call1(py, (job_dict(py, job)?,))?;
            Ok(())
        });
        match outcome {
            Ok(()) => child::fail("the Python run returned without a report"),
            Err(e) => child::fail(&format!("the Python run failed: {e}")),
        }
    }
}

/// Creates the package `_sandlot` and executes its modules into it, each under a file name
/// (`<sandlot:NAME>`) that tracebacks leave out.
fn load_package(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let package = PyModule::new(py, "_sandlot")?;
    package.setattr("__path__", PyList::empty(py))?;
    package.setattr("__doc__", PACKAGE_DOC.trim().trim_matches('"'))?;
    py.import("sys")?
        .getattr("modules")?
        .set_item("_sandlot", &package)?;
    for (name, source) in MODULES {
        let c = |text: String| CString::new(text).expect("no NUL in sandlot's Python sources");
        let module = PyModule::from_code(
            py,
            &c((*source).to_owned()),
            &c(format!("<sandlot:{name}>")),
            &c(format!("_sandlot.{name}")),
        )?;
        package.setattr(*name, module)?;
    }
    Ok(package)
}

/// The job as the one dict `_sandlot.run.run` takes.
fn job_dict(py: Python<'_>, job: Job) -> PyResult<Bound<'_, PyDict>> {
    let dict = PyDict::new(py);
    let uses_files =
        job.has_files && (!job.files.is_empty() || crate::output_files::named_by(&job.code));
    dict.set_item("code", job.code)?;
    dict.set_item("inputs", job.inputs.get())?;
    let mode = match job.mode {
        Mode::Main => "main",
        Mode::Script => "script",
    };
    dict.set_item("mode", mode)?;
    dict.set_item("imports", policy_dict(py, &job.imports)?)?;
    let convention = match job.convention {
        Convention::Native => "native",
        Convention::Fastgpt => "fastgpt",
    };
    dict.set_item("convention", convention)?;
    dict.set_item("max_output_bytes", job.limits.max_output_bytes)?;
    dict.set_item("memory_mb", job.limits.memory_mb)?;
    // Only a run that may use files gets them (`_sandlot.files`); the others keep the plain
    // functions.
    if uses_files {
        let files = PyList::empty(py);
        for file in &job.files {
            files.append((file.name.as_str(), PyBytes::new(py, &file.bytes())))?;
        }
        dict.set_item("files", files)?;
    }
    Ok(dict)
}

/// An [`ImportPolicy`] as `_sandlot.imports.policy_for` reads it.
fn policy_dict<'py>(py: Python<'py>, policy: &ImportPolicy) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    match policy {
        ImportPolicy::Only { modules } => {
            dict.set_item("kind", "only")?;
            dict.set_item("modules", modules)?;
        }
        ImportPolicy::StandardLibrary { rule, operator } => {
            dict.set_item("kind", "standard_library")?;
            dict.set_item("rule", rule.name())?;
            dict.set_item("operator", operator)?;
        }
        ImportPolicy::Any => dict.set_item("kind", "any")?,
    }
    Ok(dict)
}

/// `finish(result_json, exit_code, error_json, images_json)`: sends the report and ends the
/// process.
fn finish_function(py: Python<'_>) -> PyResult<Bound<'_, PyCFunction>> {
    PyCFunction::new_closure(py, Some(c"finish"), None, |args, _kwargs| -> PyResult<()> {
        child::finish(report_from(args)?)
    })
}

/// `write(index, text)`: appends to the run's stdout (0) or stderr (1); True once the output
/// limit is crossed (what fit was written).
fn write_function(py: Python<'_>) -> PyResult<Bound<'_, PyCFunction>> {
    PyCFunction::new_closure(
        py,
        Some(c"write"),
        None,
        |args, _kwargs| -> PyResult<bool> {
            let stream = match args.get_item(0)?.extract::<i32>()? {
                1 => Stream::Stderr,
                _ => Stream::Stdout,
            };
            let item = args.get_item(1)?;
            let text = item.cast::<PyString>()?.to_string_lossy();
            Ok(run_output::write_str(stream, &text) == Written::Cut)
        },
    )
}

/// `broker(request_json)`: the server's answer to a brokered HTTP request, as JSON bytes.
fn broker_function(py: Python<'_>) -> PyResult<Bound<'_, PyCFunction>> {
    PyCFunction::new_closure(
        py,
        Some(c"broker"),
        None,
        |args, _kwargs| -> PyResult<Py<PyBytes>> {
            let request = args.get_item(0)?;
            let answer =
                child::broker_call(request.cast::<PyBytes>()?.as_bytes()).map_err(|e| {
                    pyo3::exceptions::PyConnectionError::new_err(format!(
                        "the server did not answer the HTTP request: {e}"
                    ))
                })?;
            Ok(PyBytes::new(args.py(), &answer).unbind())
        },
    )
}

/// `connection(request_json)`: the server's answer to a connection request (JSON bytes) and
/// the connected socket's descriptor, or None (`brokered_connection`).
fn connection_function(py: Python<'_>) -> PyResult<Bound<'_, PyCFunction>> {
    PyCFunction::new_closure(
        py,
        Some(c"connection"),
        None,
        |args, _kwargs| -> PyResult<(Py<PyBytes>, Option<i32>)> {
            let request = args.get_item(0)?;
            let (answer, socket) =
                super::brokered_connection::connect(request.cast::<PyBytes>()?.as_bytes())
                    .map_err(|e| {
                        pyo3::exceptions::PyConnectionError::new_err(format!(
                            "the server did not answer the connection request: {e}"
                        ))
                    })?;
            // Python's socket object takes the descriptor over.
            let fd = socket.map(std::os::fd::IntoRawFd::into_raw_fd);
            Ok((PyBytes::new(args.py(), &answer).unbind(), fd))
        },
    )
}

/// `pause(seconds)`: `time.sleep` for a wait long enough to give the run's core back
/// (`child::pause`); seconds are a finite, non-negative float.
fn pause_function(py: Python<'_>) -> PyResult<Bound<'_, PyCFunction>> {
    PyCFunction::new_closure(py, Some(c"pause"), None, |args, _kwargs| -> PyResult<()> {
        let seconds = args.get_item(0)?.extract::<f64>()?;
        // Past a year is a year: the run's deadline comes first anyway.
        let length = std::time::Duration::try_from_secs_f64(seconds.min(3.2e7))
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        child::pause(length);
        Ok(())
    })
}

/// `wait_readable(connection, timeout)`: waits until brokered connection `connection` has
/// something to read, at most `timeout` seconds (None: no limit but the run's); whether it has.
fn wait_readable_function(py: Python<'_>) -> PyResult<Bound<'_, PyCFunction>> {
    PyCFunction::new_closure(
        py,
        Some(c"wait_readable"),
        None,
        |args, _kwargs| -> PyResult<bool> {
            let connection = args.get_item(0)?.extract::<u32>()?;
            let timeout = args.get_item(1)?.extract::<Option<f64>>()?;
            let timeout = timeout
                .map(|t| std::time::Duration::try_from_secs_f64(t.clamp(0.0, 3.2e7)))
                .transpose()
                .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
            child::wait_readable(connection, timeout).map_err(|e| {
                pyo3::exceptions::PyConnectionError::new_err(format!(
                    "the server did not answer a wait on a connection: {e}"
                ))
            })
        },
    )
}

/// `files(0, name)` creates a file of the output directory and returns its index;
/// `files(1, index, offset, data)` writes; `files(2, index)` closes. A cap refuses with
/// `OSError(ENOSPC)`, a name that cannot be a file with `OSError(EINVAL)`.
fn files_function(py: Python<'_>) -> PyResult<Bound<'_, PyCFunction>> {
    PyCFunction::new_closure(
        py,
        Some(c"files"),
        None,
        |args, _kwargs| -> PyResult<Option<u32>> {
            let index = || args.get_item(1)?.extract::<u32>();
            let done = match args.get_item(0)?.extract::<u8>()? {
                0 => {
                    let name = args.get_item(1)?.extract::<String>()?;
                    run_output::with_files(|files| files.create(&name)).map(Some)
                }
                1 => {
                    let (index, offset) = (index()?, args.get_item(2)?.extract::<u64>()?);
                    let data = args.get_item(3)?;
                    let bytes = data.cast::<PyBytes>()?.as_bytes();
                    run_output::with_files(|files| files.write(index, offset, bytes)).map(|()| None)
                }
                _ => {
                    let index = index()?;
                    run_output::with_files(|files| files.close(index)).map(|()| None)
                }
            };
            done.map_err(|refused| {
                let (errno, why) = run_output::refusal(&refused);
                pyo3::exceptions::PyOSError::new_err((errno, why))
            })
        },
    )
}

/// The report from `finish`'s arguments: Python hands over the pieces, [`ChildReport`] decides
/// the shape.
fn report_from(args: &Bound<'_, PyTuple>) -> PyResult<ChildReport> {
    let text = |index: usize| -> PyResult<Option<String>> {
        let item = args.get_item(index)?;
        if item.is_none() {
            return Ok(None);
        }
        Ok(Some(
            item.cast::<PyString>()?.to_string_lossy().into_owned(),
        ))
    };
    let invalid = |e: serde_json::Error| pyo3::exceptions::PyValueError::new_err(e.to_string());
    let result = text(0)?
        .map(RawValue::from_string)
        .transpose()
        .map_err(invalid)?;
    let exit_code: i32 = args.get_item(1)?.extract()?;
    let error = text(2)?
        .map(|json| serde_json::from_str(&json))
        .transpose()
        .map_err(invalid)?;
    let images: Vec<crate::protocol::Image> =
        serde_json::from_str(&text(3)?.unwrap_or_else(|| "[]".into())).map_err(invalid)?;
    Ok(ChildReport::finished(result, exit_code, error, images))
}
