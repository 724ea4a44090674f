//! Intl in the JavaScript zygotes. FormatJS's Intl bundle (`stdlib-shims/javascript/intl.js`:
//! 2.8 MB of code, locale data and time zones) is a heap that every fork copies the page-table
//! entries of and every exit unmaps, and few runs use it. So the javascript-intl zygote evaluates
//! it and warms it up before its first fork, and the lean javascript zygote does not carry it:
//! there `stdlib-shims/javascript/locale.js` puts stand-ins in its place that evaluate it in the
//! child, the first time a run uses Intl. The server sends code that names Intl to the
//! javascript-intl zygote (`supervisor::javascript_intl`); the stand-ins keep the answers right
//! for code that reaches it some other way.

use rquickjs::context::EvalOptions;
use rquickjs::function::Func;
use rquickjs::{Ctx, Function, IntoJs, Result, Value};

use super::modules;
use crate::protocol::ZygoteKind;

const LOCALE: &str = include_str!("../../../stdlib-shims/javascript/locale.js");
const LOCALE_FILE: &str = "<sandlot-locale>";

/// Installs Intl as a zygote of `kind` carries it: evaluated and warmed up (javascript-intl), or
/// loaded by the run that first uses it (javascript); then Intl.Collator and localeCompare.
pub fn install(ctx: &Ctx<'_>, kind: ZygoteKind) -> Result<()> {
    let loader = if kind == ZygoteKind::JavascriptIntl {
        let exports = modules::install_intl(ctx)?;
        exports.get::<_, Function>("warmUp")?.call::<_, ()>(())?;
        Value::new_null(ctx.clone())
    } else {
        Func::from(load_in_child).into_js(ctx)?
    };
    let mut options = EvalOptions::default();
    options.filename = Some(LOCALE_FILE.into());
    let install: Function = ctx.eval_with_options(LOCALE, options)?;
    install.call((loader,))
}

/// The lean zygote's loader, called by a stand-in in a child: the bundle, without the warm-up
/// (the run unpacks only the data it formats with).
fn load_in_child(ctx: Ctx<'_>) -> Result<()> {
    modules::install_intl(&ctx).map(drop)
}
