//! The QuickJS floor models' interpreter half, shared by `quickjs_floor` (forks from it in a
//! loop) and `handoff_floor --fork-per-run` (a jailed zygote of it behind an HTTP server): a
//! zygote's heap built to a level, the jail a javascript zygote locks itself in, and what a
//! child does with its job.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use rquickjs::context::EvalOptions;
use rquickjs::function::Func;
use rquickjs::{Ctx, Function, Object, Value};
use sandlot::jail::settings::{JailSettings, Layer};
use sandlot::jail::Jail;

mod bundles {
    include!(concat!(env!("OUT_DIR"), "/bundles.rs"));
}

const PRELUDE: &str = include_str!("../../stdlib-shims/javascript/prelude.js");
const LOCALE: &str = include_str!("../../stdlib-shims/javascript/locale.js");
#[allow(dead_code)] // quickjs_floor's job; handoff_floor's come over HTTP
pub const JOB: &str = r#"{"code": "function main({a, b}) { return {sum: a + b}; }",
                          "inputs": {"a": 1, "b": 2}}"#;

#[derive(Clone, Copy, PartialEq, PartialOrd)]
#[allow(dead_code)] // handoff_floor builds the globals level only
pub enum Level {
    Globals,
    Modules,
    Intl,
}

/// Locks this process down as a javascript zygote locks itself (its namespaces aside: not
/// modelled); returns the jail whose child half each child applies, and /dev/null for it.
pub fn lock_down() -> (Jail, OwnedFd) {
    let opened = std::fs::File::open("/dev/null").expect("/dev/null");
    // Above the child's fixed numbers (3 and 4), which its jail puts the channel and output at.
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor of an open one, owned by nothing yet.
    let devnull = unsafe { libc::fcntl(opened.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 5) };
    assert!(devnull >= 5, "moving /dev/null's descriptor");
    // SAFETY: the descriptor was just made and nothing else owns it.
    let devnull = unsafe { OwnedFd::from_raw_fd(devnull) };
    let mut settings = JailSettings::new(sandlot::config::LimitPolicy::default().max);
    if !nix::unistd::geteuid().is_root() {
        settings.skip.push(Layer::UidDrop);
    }
    let mut jail = Jail::prepare(settings, &[], false).expect("preparing the jail");
    jail.lock_zygote().expect("locking the model's zygote down");
    (jail, devnull)
}

/// Evaluates what a zygote of `level` holds, in the order the zygote does.
pub fn build(ctx: &Ctx<'_>, level: Level) -> rquickjs::Result<()> {
    let install: Function = ctx.eval(PRELUDE)?;
    let polyfills = evaluate(ctx, "globals", bundles::GLOBALS)?;
    let allowed: Vec<String> = bundles::MODULES
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    let hooks: Object = install.call((
        Func::from(|_fd: i32, _text: String| {}),
        Func::from(random_bytes),
        Func::from(|_request: String| String::new()),
        allowed,
        polyfills,
        // No natives: the model's runs fetch nothing, have no files and load no module.
        Object::new(ctx.clone())?,
    ))?;
    let loader: Value = if level == Level::Intl {
        let exports = evaluate(ctx, "intl", bundles::INTL)?;
        exports.get::<_, Function>("warmUp")?.call::<_, ()>(())?;
        Value::new_null(ctx.clone())
    } else {
        ctx.eval("(function loadIntl() { throw new Error('not in this model'); })")?
    };
    ctx.eval::<Function, _>(LOCALE)?.call::<_, ()>((loader,))?;
    if level >= Level::Modules {
        let register: Function = hooks.get("registerModule")?;
        for (name, source) in bundles::MODULES {
            register.call::<_, ()>((*name, evaluate(ctx, name, source)?))?;
        }
    }
    Ok(())
}

/// The prelude's source of random bytes (a child asks for them at its first Math.random).
fn random_bytes<'js>(ctx: Ctx<'js>, n: usize) -> rquickjs::Result<rquickjs::ArrayBuffer<'js>> {
    rquickjs::ArrayBuffer::new(ctx, vec![4u8; n])
}

/// One CommonJS bundle run with its own `module`; its exports.
fn evaluate<'js>(ctx: &Ctx<'js>, name: &str, source: &str) -> rquickjs::Result<Object<'js>> {
    let mut options = EvalOptions::default();
    options.global = true;
    options.strict = false;
    options.filename = Some(format!("<npm:{name}>"));
    let factory: Function = ctx.eval_with_options(
        format!("(function (module, exports) {{\n{source}\n}})"),
        options,
    )?;
    let module = Object::new(ctx.clone())?;
    module.set("exports", Object::new(ctx.clone())?)?;
    factory.call::<_, ()>((module.clone(), module.get::<_, Object>("exports")?))?;
    module.get("exports")
}

/// What a child does with its job: decode it, evaluate the code, call `main`, encode.
pub fn run(ctx: &Ctx<'_>, job: &str) -> rquickjs::Result<String> {
    let job: serde_json::Value = serde_json::from_str(job).expect("the job is JSON");
    let inputs = ctx.json_parse(job["inputs"].to_string())?;
    let mut options = EvalOptions::default();
    options.global = true;
    options.strict = false;
    ctx.eval_with_options::<(), _>(job["code"].as_str().unwrap_or_default(), options)?;
    let main: Function = ctx.globals().get("main")?;
    let returned: Value = main.call((inputs,))?;
    Ok(ctx
        .json_stringify(returned)?
        .map(|s| s.to_string().unwrap_or_default())
        .unwrap_or_default())
}
