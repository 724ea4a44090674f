//! The Python zygote: CPython embedded through pyo3, with `stdlib-shims/python/bootstrap.py`
//! imported once. Forking a process that holds an interpreter needs CPython's own fork hooks,
//! called with the GIL held, exactly as `os.fork()` does.

use std::ffi::CString;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCFunction, PyModule, PyString, PyTuple};
use serde_json::value::RawValue;

use super::{child, Engine, ZygoteError};
use crate::protocol::{
    ChildReport, Convention, Job, Output, MATPLOTLIB_CONFIG_ENV, PYTHON_PACKAGES_ENV,
};
use crate::run::Mode;
use crate::whitelist;

const BOOTSTRAP: &str = include_str!("../../stdlib-shims/python/bootstrap.py");

pub struct PythonEngine {
    bootstrap: Py<PyModule>,
    gil: Option<ffi::PyGILState_STATE>,
}

impl Engine for PythonEngine {
    fn prepare() -> Result<Self, ZygoteError> {
        Python::initialize();
        let bootstrap = Python::attach(|py| -> PyResult<Py<PyModule>> {
            let source = CString::new(BOOTSTRAP).expect("bootstrap.py has no NUL byte");
            let module =
                PyModule::from_code(py, &source, c"<sandlot-bootstrap>", c"_sandlot_bootstrap")?;
            match std::env::var(PYTHON_PACKAGES_ENV) {
                Ok(site) => {
                    module.call_method1("prepare_data", (site, whitelist::PYTHON_DATA_PACKAGES))?;
                    module.call_method1(
                        "prepare",
                        (whitelist::python(), whitelist::PYTHON_DATA_PACKAGES),
                    )?;
                }
                Err(_) => {
                    module.call_method1("prepare", (whitelist::python(),))?;
                }
            }
            Ok(module.unbind())
        })
        .map_err(|e| ZygoteError::Interpreter(format!("Python: {e}")))?;
        Ok(Self {
            bootstrap,
            gil: None,
        })
    }

    /// The standard library and site-packages directories (a lazily imported module or a
    /// data file may still be read from them), and the time zone database.
    fn readable_dirs(&self) -> Vec<std::path::PathBuf> {
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
        // The python-data zygote's packages, and matplotlib's configuration and font cache.
        if let Ok(site) = std::env::var(PYTHON_PACKAGES_ENV) {
            dirs.push(site.into());
        }
        if let Ok(mpl) = std::env::var(MATPLOTLIB_CONFIG_ENV) {
            dirs.push(mpl.into());
        }
        dirs.sort();
        dirs.dedup();
        // Only real directories, and never the root: a relative or empty entry must not widen
        // the rule to the whole file system.
        dirs.retain(|d| d.is_absolute() && d.parent().is_some() && d.is_dir());
        dirs
    }

    fn before_fork(&mut self) {
        // SAFETY: the interpreter is initialised; Ensure/BeforeFork are paired with
        // Release/AfterFork_Parent in the parent and AfterFork_Child in the child.
        unsafe {
            self.gil = Some(ffi::PyGILState_Ensure());
            ffi::PyOS_BeforeFork();
        }
    }

    fn after_fork_parent(&mut self) {
        // SAFETY: called once after `before_fork`, in the parent, with the GIL still held.
        unsafe {
            ffi::PyOS_AfterFork_Parent();
            if let Some(state) = self.gil.take() {
                ffi::PyGILState_Release(state);
            }
        }
    }

    fn after_fork_child(&mut self) {
        // SAFETY: called once in the child right after fork, with the GIL inherited. The child
        // keeps the GIL: it is the only thread it will ever have.
        unsafe { ffi::PyOS_AfterFork_Child() };
    }

    fn run(&mut self, job: Job) -> ! {
        let mode = match job.mode {
            Mode::Main => "main",
            Mode::Script => "script",
        };
        let outcome = Python::attach(|py| -> PyResult<()> {
            let finish = PyCFunction::new_closure(
                py,
                Some(c"finish"),
                None,
                |args, _kwargs| -> PyResult<()> { child::finish(&report_from(args)?) },
            )?;
            let broker = PyCFunction::new_closure(
                py,
                Some(c"broker"),
                None,
                |args, _kwargs| -> PyResult<Py<PyBytes>> {
                    let request = args.get_item(0)?;
                    let answer = child::broker_call(request.cast::<PyBytes>()?.as_bytes())
                        .map_err(|e| {
                            pyo3::exceptions::PyConnectionError::new_err(format!(
                                "the server did not answer the HTTP request: {e}"
                            ))
                        })?;
                    Ok(PyBytes::new(args.py(), &answer).unbind())
                },
            )?;
            self.bootstrap.call_method1(
                py,
                "run",
                (
                    job.code,
                    job.inputs.get(),
                    mode,
                    job.allowed_modules,
                    job.convention == Convention::Fastgpt,
                    job.limits.max_output_bytes,
                    job.limits.memory_mb,
                    finish,
                    broker,
                ),
            )?;
            Ok(())
        });
        match outcome {
            Ok(()) => child::fail("the Python bootstrap returned without a report"),
            Err(e) => child::fail(&format!("the Python bootstrap failed: {e}")),
        }
    }
}

/// The report from bootstrap.py's `finish(result_json, exit_code, error_json, stdout, stderr,
/// images_json, execution_time_ms)`: Python hands over the pieces, [`ChildReport`] decides the
/// shape.
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
    let output = Output {
        stdout: text(3)?.unwrap_or_default(),
        stderr: text(4)?.unwrap_or_default(),
        execution_time_ms: args.get_item(6)?.extract()?,
    };
    let images = serde_json::from_str(&text(5)?.unwrap_or_else(|| "[]".into())).map_err(invalid)?;
    Ok(ChildReport::finished(
        result, exit_code, error, output, images,
    ))
}
