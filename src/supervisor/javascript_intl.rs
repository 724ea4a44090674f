//! The javascript-intl zygote: the javascript-modules zygote with FormatJS's Intl polyfills and
//! their data evaluated and warmed up. It serves the runs whose code names Intl or a
//! locale-aware method ([`needs_intl`]); no other JavaScript run forks and exits with the Intl
//! heap.
//!
//! It is started by the first run that needs it ([`super::OnDemandZygote`]). Until it is ready
//! such runs go to the lean zygote, where Intl loads in the child on first use: the same
//! answers, 150–300 ms of CPU later. Only a run whose memory limit is too small to load Intl in
//! ([`LOAD_IN_RUN_MB`]) waits for it instead.

/// What JavaScript code names when it uses Intl: `Intl` itself (NumberFormat, DateTimeFormat,
/// PluralRules, Locale, Collator, getCanonicalLocales), the locale-aware methods the Intl bundle
/// replaces (`toLocaleString` of numbers, BigInts, dates and, through them, arrays;
/// `toLocaleDateString`, `toLocaleTimeString`), and `localeCompare` (with locales or options it
/// is Intl.Collator). `toLocaleUpperCase` and `toLocaleLowerCase` are QuickJS's own.
const TOKENS: &[&str] = &[
    "Intl",
    "toLocaleString",
    "toLocaleDateString",
    "toLocaleTimeString",
    "localeCompare",
];

/// Whether JavaScript code should run where Intl is warm: a scan for [`TOKENS`] anywhere in it,
/// comments and strings included. Cheap, and a wrong guess costs time, never a wrong answer: a
/// miss loads Intl in the child, a false hit forks the larger zygote. None of the bundled npm
/// modules calls these at run time (moment's `toLocaleLowerCase` is QuickJS's).
pub fn needs_intl(code: &str) -> bool {
    TOKENS.iter().any(|token| code.contains(token))
}

/// The least `memory_mb` a run needs to load Intl in the lean zygote: the bundle makes a heap
/// of ~29 MB, counted against the run's own limit there (in the javascript-intl zygote it is
/// part of the base the limit is added to).
pub const LOAD_IN_RUN_MB: u64 = 48;

#[cfg(test)]
mod tests {
    use super::needs_intl;

    #[test]
    fn code_that_names_intl_or_a_locale_method_is_found() {
        for code in [
            "new Intl.NumberFormat('en').format(1)",
            "return {t: new Date().toLocaleString('zh-CN', {timeZone: 'Asia/Shanghai'})}",
            "d.toLocaleDateString()",
            "d.toLocaleTimeString('en-US')",
            "[1, 2].toLocaleString()",
            "xs.sort((a, b) => a.localeCompare(b, 'zh'))",
        ] {
            assert!(needs_intl(code), "{code}");
        }
        for code in [
            "function main({a, b}) { return {sum: a + b} }",
            "s.toLocaleUpperCase()",
            "const _ = require('lodash'); return {x: _.sortBy(xs)}",
            "new Date().toISOString()",
        ] {
            assert!(!needs_intl(code), "{code}");
        }
    }
}
