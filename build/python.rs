//! Which CPython the binary embeds, told to the code: pyo3 links the interpreter PYO3_PYTHON
//! names (the environment's, else `.cargo/shared-python`'s pick); this asks that interpreter
//! where it really is, so that `sandlot deps install` runs the same CPython's pip
//! (`SANDLOT_PYTHON`, read by src/python_packages/, which installs each version's wheels
//! apart: `SANDLOT_PYTHON_VERSION`), and adds an rpath when its libpython
//! lies outside the system's library directories (a CPython built under /opt), so the binary
//! starts without LD_LIBRARY_PATH.

use std::process::Command;

pub fn link() {
    println!("cargo::rerun-if-env-changed=PYO3_PYTHON");
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let out = Command::new(&python)
        .args([
            "-c",
            "import sys, sysconfig; print(sys.executable); print(sysconfig.get_config_var('LIBDIR')); \
             print('%d.%d' % sys.version_info[:2])",
        ])
        .output()
        .unwrap_or_else(|e| panic!("running PYO3_PYTHON ({python}): {e}"));
    assert!(
        out.status.success(),
        "PYO3_PYTHON ({python}) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("the interpreter prints UTF-8");
    let mut lines = text.lines();
    let executable = lines.next().unwrap_or_default();
    let libdir = lines.next().unwrap_or_default();
    let version = lines.next().unwrap_or_default();
    println!("cargo::rustc-env=SANDLOT_PYTHON={executable}");
    println!("cargo::rustc-env=SANDLOT_PYTHON_VERSION={version}");
    let system = ["/usr/lib", "/lib", "/usr/lib64", "/lib64"];
    if !libdir.is_empty() && !system.iter().any(|d| libdir.starts_with(d)) {
        println!("cargo::rustc-link-arg=-Wl,-rpath,{libdir}");
    }
}
