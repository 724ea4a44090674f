//! The javascript-modules zygote: the lean javascript zygote with every whitelisted npm module
//! evaluated (lodash, dayjs, moment, crypto-js, ...: 2.9 MB of QuickJS heap). It serves the
//! runs whose code calls `require` or `import` ([`needs_modules`]); the rest fork from the
//! lean zygote, whose forks and exits do not copy and unmap the modules' heap (~6% of a
//! trivial run's CPU, docs/performance.md). It is started by the first run that needs it
//! ([`super::OnDemandZygote`]); until it is ready such runs go to the lean zygote, which
//! evaluates a module in the child when the run first requires it (`load_bundle`), as it does
//! for code that reaches `require` without naming it.

/// Whether JavaScript code may load an npm module: it calls `require(` or `import(`, has a
/// line that starts with an `import` statement, or calls FastGPT's `createHmac` (which signs
/// with crypto-js). A plain scan, comments and strings included; a wrong guess costs time,
/// never a wrong answer: a miss evaluates the module in the child, a false hit forks the larger
/// zygote.
pub fn needs_modules(code: &str) -> bool {
    calls(code, "require")
        || calls(code, "import")
        || code.lines().any(|line| {
            line.trim_start()
                .strip_prefix("import")
                .is_some_and(|rest| rest.starts_with([' ', '\t', '{', '*', '\'', '"']))
        })
        || code.contains("createHmac")
}

/// Whether `name` is followed by `(`, spaces between allowed, anywhere in `code`.
fn calls(code: &str, name: &str) -> bool {
    code.match_indices(name)
        .any(|(at, _)| code[at + name.len()..].trim_start().starts_with('('))
}

#[cfg(test)]
mod tests {
    use super::needs_modules;

    #[test]
    fn code_that_names_require_or_import_is_found() {
        for code in [
            "const _ = require('lodash'); function main() { return {x: _.sum([1])} }",
            "const qs = require ( 'qs' )",
            "import dayjs from 'dayjs'\nexport function main() { return {} }",
            "  import {v4} from 'uuid'",
            "import * as _ from 'lodash'",
            "async function main() { const m = await import('qs'); return {} }",
            "function main() { return createHmac('sha256', 'k') }",
        ] {
            assert!(needs_modules(code), "{code}");
        }
        for code in [
            "function main({a, b}) { return {sum: a + b} }",
            "async function main() { return {t: new Date().toISOString()} }",
            "// the fields required by the API; important: keep the imports list\n\
             function main({required}) { return {ok: required.length > 0} }",
            "const isRequired = (f) => f.required; function main() { return {} }",
        ] {
            assert!(!needs_modules(code), "{code}");
        }
    }
}
