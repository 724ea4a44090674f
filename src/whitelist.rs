//! The module whitelists, compiled into the binary from `whitelist/`.

const PYTHON: &str = include_str!("../whitelist/python.txt");
const JAVASCRIPT: &str = include_str!("../whitelist/javascript.txt");
/// The pinned third-party packages of the python-data zygote, as pip reads them.
pub const PYTHON_REQUIREMENTS: &str = include_str!("../whitelist/python-requirements.txt");

/// The third-party packages user code may import (FastGPT's list, plus Jinja2 for Dify's
/// template nodes). Code that imports one runs in the python-data zygote.
pub const PYTHON_DATA_PACKAGES: &[&str] = &["numpy", "pandas", "matplotlib", "jinja2"];

/// Python modules user code may import, in file order.
pub fn python() -> Vec<String> {
    names(PYTHON)
}

/// The Python whitelist of the python-data zygote: the standard one plus the data packages.
pub fn python_with_data() -> Vec<String> {
    let mut names = python();
    names.extend(PYTHON_DATA_PACKAGES.iter().map(|s| s.to_string()));
    names
}

/// Whether Python code imports one of the data packages: a cheap scan of its `import` and
/// `from … import` lines (a miss only means a clear "not allowed" error, never a wrong run).
pub fn imports_python_data(code: &str) -> bool {
    code.lines().any(|line| {
        let line = line.trim_start();
        let names = if let Some(rest) = line.strip_prefix("import ") {
            rest
        } else if let Some(rest) = line.strip_prefix("from ") {
            rest.split_whitespace().next().unwrap_or("")
        } else {
            return false;
        };
        names.split(',').any(|item| {
            let module = item.split_whitespace().next().unwrap_or("");
            let top = module.split('.').next().unwrap_or("");
            PYTHON_DATA_PACKAGES.contains(&top)
        })
    })
}

/// Names `require()` resolves, in file order.
pub fn javascript() -> Vec<String> {
    names(JAVASCRIPT)
}

fn names(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn comments_and_blanks_are_skipped() {
        let py = super::python();
        assert!(py.contains(&"math".to_owned()));
        assert!(py.iter().all(|n| !n.starts_with('#') && !n.is_empty()));
        assert!(!py.contains(&"os".to_owned()));
    }

    #[test]
    fn data_imports_are_found() {
        use super::imports_python_data as scan;
        assert!(scan("import pandas as pd\n"));
        assert!(scan("import json, numpy\n"));
        assert!(scan("  from matplotlib import pyplot as plt"));
        assert!(scan("from jinja2 import Template"));
        assert!(scan("import matplotlib.pyplot as plt"));
        assert!(!scan("import json\nx = 'import numpy'"));
        assert!(!scan("from numbers import Number"));
    }
}
