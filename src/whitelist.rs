//! The import policies, compiled into the binary from `whitelist/`: which modules user code may
//! name, per API. They give a clear `module_not_allowed`; the kernel, not they, is the boundary.

use crate::api::Api;
use crate::protocol::{ImportPolicy, StandardRule};

const PYTHON_FASTGPT_ALLOWED: &str = include_str!("../whitelist/python-fastgpt-allowed.txt");
const PYTHON_FASTGPT_REFUSED: &str = include_str!("../whitelist/python-fastgpt-refused.txt");
const PYTHON_NATIVE_REFUSED: &str = include_str!("../whitelist/python-native-refused.txt");
const PYTHON_PRELOADED: &str = include_str!("../whitelist/python-preloaded.txt");
const PYTHON_STANDARD_LIBRARY: &str = include_str!("../whitelist/python-standard-library.txt");
const JAVASCRIPT: &str = include_str!("../whitelist/javascript.txt");
/// The pinned third-party packages of the python-data zygote, as pip reads them.
pub const PYTHON_REQUIREMENTS: &str = include_str!("../whitelist/python-requirements.txt");

/// The third-party packages user code may import (FastGPT's, Jinja2 for Dify's template nodes,
/// tabulate for `DataFrame.to_markdown`, and dify-sandbox's default packages: its HTTP clients
/// and what they are made of). Code that imports one runs in the python-data zygote; the first
/// five are imported there before any fork, the rest by the runs that use them.
pub const PYTHON_DATA_PACKAGES: &[&str] = &[
    "numpy",
    "pandas",
    "matplotlib",
    "jinja2",
    "tabulate",
    "requests",
    "httpx",
    "httpcore",
    "urllib3",
    "certifi",
    "idna",
    "charset_normalizer",
    "h11",
    "anyio",
    "sniffio",
    "socks",
    "sockshandler",
    "socksio",
    "typing_extensions",
    "markupsafe",
    "openpyxl",
    "et_xmlfile",
];

/// The data packages the python-data zygote imports before any fork.
pub const PYTHON_DATA_PRELOADED: &[&str] = &["numpy", "pandas", "matplotlib", "jinja2", "tabulate"];

/// The Python import policy of an API: sandlot's own (and the sandbox module API's) is the
/// standard library but what cannot work in the jail, plus the data packages; FastGPT's is
/// FastGPT's; Dify's is dify-sandbox's "anything importable". `operator` is the modules of the
/// packages the operator installed (`--python-requirements`), which every API allows.
pub fn python_policy(api: Api, operator: &[String]) -> ImportPolicy {
    let rule = match api {
        Api::Native | Api::SandboxModule => StandardRule::Native,
        Api::Fastgpt => StandardRule::Fastgpt,
        Api::Dify => return ImportPolicy::Any,
    };
    ImportPolicy::StandardLibrary {
        rule,
        operator: operator.to_vec(),
    }
}

/// The modules of the standard library `rule` refuses.
pub fn refused(rule: StandardRule) -> Vec<String> {
    match rule {
        StandardRule::Native => names(PYTHON_NATIVE_REFUSED),
        StandardRule::Fastgpt => names(PYTHON_FASTGPT_REFUSED),
    }
}

/// The data packages `rule` allows, without the operator's.
pub fn packages(rule: StandardRule) -> Vec<String> {
    match rule {
        StandardRule::Native => PYTHON_DATA_PACKAGES.iter().map(|s| s.to_string()).collect(),
        StandardRule::Fastgpt => fastgpt_python_packages(),
    }
}

/// FastGPT's reported Python allowlist, in its order (`GET /sandbox/modules`), and then the
/// operator's modules.
pub fn python_fastgpt_allowed(operator: &[String]) -> Vec<String> {
    let mut allowed = names(PYTHON_FASTGPT_ALLOWED);
    append_new(&mut allowed, operator);
    allowed
}

/// Appends the names of `more` that `list` lacks.
fn append_new(list: &mut Vec<String>, more: &[String]) {
    for name in more {
        if !list.contains(name) {
            list.push(name.clone());
        }
    }
}

/// Whether `name` is a module of the standard library (of the CPython sandlot links).
pub fn is_standard_library(name: &str) -> bool {
    PYTHON_STANDARD_LIBRARY
        .lines()
        .any(|line| !line.starts_with('#') && line.trim() == name)
}

/// The packages FastGPT lets user code import: its allowlist's names that are data packages.
fn fastgpt_python_packages() -> Vec<String> {
    names(PYTHON_FASTGPT_ALLOWED)
        .into_iter()
        .filter(|name| PYTHON_DATA_PACKAGES.contains(&name.as_str()))
        .collect()
}

/// Whether `policy` lets code import the top-level module `name`.
pub fn permits(policy: &ImportPolicy, name: &str) -> bool {
    match policy {
        ImportPolicy::Only { modules } => modules.iter().any(|m| m == name),
        ImportPolicy::StandardLibrary { rule, operator } => {
            (is_standard_library(name) && !refused(*rule).iter().any(|r| r == name))
                || packages(*rule).iter().chain(operator).any(|p| p == name)
        }
        ImportPolicy::Any => true,
    }
}

/// What `policy` allows, in words, for an error message.
pub fn describe(policy: &ImportPolicy) -> String {
    match policy {
        ImportPolicy::Only { modules } => modules.join(", "),
        ImportPolicy::StandardLibrary { rule, operator } => {
            let mut allowed = packages(*rule);
            append_new(&mut allowed, operator);
            format!(
                "the standard library except {}; and {}",
                refused(*rule).join(", "),
                allowed.join(", ")
            )
        }
        ImportPolicy::Any => "any module".into(),
    }
}

/// Modules the Python zygotes import before any fork.
pub fn python_preloaded() -> Vec<String> {
    names(PYTHON_PRELOADED)
}

/// Whether Python code imports one of the data packages or of the operator's modules: a cheap
/// scan of its `import` and `from … import` lines (a miss only means a clear "not allowed"
/// error, never a wrong run).
pub fn imports_python_data(code: &str, operator: &[String]) -> bool {
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
            PYTHON_DATA_PACKAGES.contains(&top) || operator.iter().any(|m| m == top)
        })
    })
}

/// Names `require()` resolves, in FastGPT's order.
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
    use super::*;

    #[test]
    fn comments_and_blanks_are_skipped() {
        let fastgpt = python_fastgpt_allowed(&[]);
        assert!(fastgpt.contains(&"math".to_owned()));
        assert_eq!(fastgpt.last().map(String::as_str), Some("matplotlib"));
        assert!(fastgpt.iter().all(|n| !n.starts_with('#') && !n.is_empty()));
    }

    #[test]
    fn each_route_has_its_own_rule() {
        let operator = ["markdown".to_owned()];
        let ImportPolicy::StandardLibrary { rule, .. } = python_policy(Api::Fastgpt, &operator)
        else {
            panic!("FastGPT's rule is the standard library minus a set")
        };
        assert!(refused(rule).contains(&"os".to_owned()));
        assert_eq!(packages(rule), ["numpy", "pandas", "matplotlib"]);
        let native = python_policy(Api::Native, &operator);
        let ImportPolicy::StandardLibrary { rule, .. } = native else {
            panic!("the native rule is the standard library minus a set")
        };
        assert!(refused(rule).contains(&"subprocess".to_owned()));
        assert!(!refused(rule).contains(&"os".to_owned()));
        assert!(permits(&native, "os") && permits(&native, "pandas"));
        assert!(
            permits(&native, "markdown"),
            "the operator's modules are allowed"
        );
        assert!(!permits(&native, "subprocess") && !permits(&native, "left_pad"));
        assert!(describe(&native).ends_with(", markdown"));
        assert_eq!(python_policy(Api::Dify, &operator), ImportPolicy::Any);
    }

    #[test]
    fn data_imports_are_found() {
        let scan = |code| imports_python_data(code, &[]);
        assert!(scan("import pandas as pd\n"));
        assert!(scan("import json, numpy\n"));
        assert!(scan("  from matplotlib import pyplot as plt"));
        assert!(scan("from jinja2 import Template"));
        assert!(scan("import matplotlib.pyplot as plt"));
        assert!(scan("from tabulate import tabulate"));
        assert!(!scan("import json\nx = 'import numpy'"));
        assert!(!scan("from numbers import Number"));
    }

    #[test]
    fn the_operators_modules_join_every_policy_and_route_to_the_data_zygote() {
        let operator = vec!["yaml".to_owned(), "bs4".to_owned()];
        for api in [Api::Native, Api::SandboxModule, Api::Fastgpt] {
            let policy = python_policy(api, &operator);
            assert!(
                permits(&policy, "yaml") && permits(&policy, "bs4"),
                "{api:?}"
            );
            assert!(!permits(&python_policy(api, &[]), "yaml"), "{api:?}");
        }
        assert!(imports_python_data("import yaml\n", &operator));
        assert!(imports_python_data(
            "from bs4 import BeautifulSoup",
            &operator
        ));
        assert!(!imports_python_data("import yaml\n", &[]));
        let listed = python_fastgpt_allowed(&operator);
        assert_eq!(&listed[listed.len() - 2..], ["yaml", "bs4"]);
        assert!(is_standard_library("json") && !is_standard_library("yaml"));
    }
}
