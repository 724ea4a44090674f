//! The javascript-intl zygote: the JavaScript zygote as it was before the lean one, with
//! FormatJS's Intl polyfills and their data evaluated and warmed up. It serves the runs whose
//! code names Intl or a locale-aware method ([`needs_intl`]); every other JavaScript run goes to
//! the lean javascript zygote, whose forks and exits do not copy and unmap the Intl heap.
//!
//! It is started by the first run that needs it, so a server whose users never format a date
//! holds no copy of Intl at all. Until it is ready (and while it restarts) such runs go to the
//! lean zygote, where Intl loads in the child on first use: the same answers, 150–300 ms of CPU
//! later. Only a run whose memory limit is too small to load Intl in ([`LOAD_IN_RUN_MB`]) waits
//! for it instead.

use std::sync::{Arc, OnceLock};

use super::zygote_process::{ZygoteProcess, ZygoteStatus};
use crate::jail::settings::JailSettings;
use crate::protocol::ZygoteKind;

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

/// The javascript-intl zygote of a server, started on first need.
pub struct JavascriptIntl {
    jail: JailSettings,
    pool_max: usize,
    zygote: OnceLock<Arc<ZygoteProcess>>,
}

impl JavascriptIntl {
    /// Nothing starts yet.
    pub fn new(jail: JailSettings, pool_max: usize) -> Self {
        Self {
            jail,
            pool_max,
            zygote: OnceLock::new(),
        }
    }

    /// The zygote for a run that may use `memory_mb`: now if it is ready, or if the run could
    /// not load Intl itself (it then waits for the zygote); otherwise `None` (the run goes to
    /// the lean zygote). The zygote is started the first time it is wanted.
    pub fn serving(&self, memory_mb: u64) -> Option<Arc<ZygoteProcess>> {
        let zygote = self.zygote.get_or_init(|| {
            tracing::info!("a run names Intl: starting the javascript-intl zygote");
            ZygoteProcess::start(ZygoteKind::JavascriptIntl, self.jail.clone(), self.pool_max)
        });
        (zygote.status().ready || memory_mb < LOAD_IN_RUN_MB).then(|| zygote.clone())
    }

    /// The zygote, once started (for `/readyz`, `/metrics` and the pool's trimming).
    pub fn started(&self) -> Option<&Arc<ZygoteProcess>> {
        self.zygote.get()
    }

    /// Its status for `/readyz`: `None` until a run has wanted it.
    pub fn status(&self) -> Option<ZygoteStatus> {
        self.started().map(|z| z.status())
    }
}

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
