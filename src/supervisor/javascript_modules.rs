//! The javascript-modules zygote: the lean javascript zygote with every whitelisted npm module
//! evaluated (lodash, dayjs, moment, crypto-js, ...: 2.9 MB of QuickJS heap). It serves the
//! runs whose code names `require` or `import` ([`needs_modules`]); the rest fork from the
//! lean zygote, whose forks and exits do not copy and unmap the modules' heap (~6% of a
//! trivial run's CPU, docs/performance.md). It is started by the first run that needs it
//! ([`super::OnDemandZygote`]); until it is ready such runs go to the lean zygote, which
//! evaluates a module in the child when the run first requires it (`load_bundle`), as it does
//! for code that reaches `require` without naming it.

/// Whether JavaScript code may load an npm module: `require` or `import` anywhere in it,
/// comments and strings included. Cheap, and a wrong guess costs time, never a wrong answer: a
/// miss evaluates the module in the child, a false hit forks the larger zygote.
pub fn needs_modules(code: &str) -> bool {
    code.contains("require") || code.contains("import")
}

#[cfg(test)]
mod tests {
    use super::needs_modules;

    #[test]
    fn code_that_names_require_or_import_is_found() {
        for code in [
            "const _ = require('lodash'); function main() { return {x: _.sum([1])} }",
            "import dayjs from 'dayjs'\nexport function main() { return {} }",
            "async function main() { const m = await import('qs'); return {} }",
        ] {
            assert!(needs_modules(code), "{code}");
        }
        for code in [
            "function main({a, b}) { return {sum: a + b} }",
            "async function main() { return {t: new Date().toISOString()} }",
        ] {
            assert!(!needs_modules(code), "{code}");
        }
    }
}
