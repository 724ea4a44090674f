//! The JavaScript zygotes: one QuickJS runtime and context (rquickjs) with, evaluated once, the
//! Node-like globals of `stdlib-shims/javascript/prelude.js` and their npm polyfills; the
//! javascript-modules zygote also every whitelisted npm module, the javascript-intl zygote those
//! and FormatJS's Intl. The lean javascript zygote loads a module or Intl in the run that uses
//! it ([`modules::load_bundle`], [`locale`]). A child inherits all of it by fork and uses it
//! once.

mod deadline;
mod errors;
mod event_loop;
mod fetch;
mod files;
mod locale;
mod modules;
mod outcome;
mod output;
mod plain_json;
pub mod quickjs_memory;

use std::time::Instant;

use rquickjs::context::EvalOptions;
use rquickjs::function::Func;
use rquickjs::{
    ArrayBuffer, CatchResultExt, CaughtError, Context, Ctx, Function, Module, Object, Persistent,
    Promise, Runtime, Value,
};

use super::{Engine, ZygoteError};
use crate::protocol::{Convention, ImportPolicy, Job, ZygoteKind};
use crate::run::{ErrorKind, Mode, RunError, TIMEOUT_EXIT_CODE};
use crate::whitelist;
use errors::describe;
use event_loop::Stop;
use outcome::{interrupted, to_result, Outcome};

const PRELUDE: &str = include_str!("../../../stdlib-shims/javascript/prelude.js");
const PRELUDE_FILE: &str = "<sandlot-prelude>";
const USER_FILE: &str = "<code>";
/// Appended to module-syntax code in main mode, so the module's `main` can be found.
const MAIN_EXPORT: &str =
    "\n;export const __sandlot_main = typeof main === 'function' ? main : undefined;\n";

pub struct JavascriptEngine {
    runtime: Runtime,
    context: Context,
    /// What the prelude returned: registerModule, beginRun, nextTimer, fireTimers, exitCode.
    hooks: Persistent<Object<'static>>,
    /// QuickJS's heap after the prelude and modules: the base a run's memory budget is added
    /// to. Measured once here, because measuring walks the whole heap (milliseconds, and a
    /// copy-on-write fault on every page a child would otherwise share).
    heap_in_use: usize,
}

impl Engine for JavascriptEngine {
    fn prepare(kind: ZygoteKind) -> Result<Self, ZygoteError> {
        let failed = |what: &str, e: rquickjs::Error| {
            ZygoteError::Interpreter(format!("QuickJS: {what}: {e}"))
        };
        super::fresh_memory::map_region();
        let runtime = Runtime::new_with_alloc(quickjs_memory::FreshInChild)
            .map_err(|e| failed("creating the runtime", e))?;
        runtime.set_loader(modules::AnyName, modules::FromRequire);
        event_loop::track_rejections(&runtime);
        let context = Context::full(&runtime).map_err(|e| failed("creating the context", e))?;
        let hooks = context
            .with(|ctx| -> rquickjs::Result<Persistent<Object<'static>>> {
                let mut options = EvalOptions::default();
                options.filename = Some(PRELUDE_FILE.into());
                let install: Function = ctx.eval_with_options(PRELUDE, options)?;
                let polyfills = modules::polyfills(&ctx)?;
                let hooks: Object = install.call((
                    Func::from(output::write_output),
                    Func::from(random_bytes),
                    Func::from(broker_call),
                    whitelist::javascript(),
                    polyfills,
                    natives(&ctx)?,
                ))?;
                locale::install(&ctx, kind)?;
                if kind != ZygoteKind::Javascript {
                    modules::register_all(&ctx, &hooks)?;
                }
                plain_json::learn_realm(&ctx);
                Ok(Persistent::save(&ctx, hooks))
            })
            .map_err(|e| failed("installing the prelude and modules", e))?;
        runtime.run_gc();
        context.with(|ctx| quickjs_memory::fill_arenas(&ctx));
        let heap_in_use = usize::try_from(runtime.memory_usage().malloc_size).unwrap_or(0);
        // A child starts with none of the zygote's: cleared here once, not in every child.
        event_loop::forget_rejections();
        deadline::install(&runtime);
        Ok(Self {
            runtime,
            context,
            hooks,
            heap_in_use,
        })
    }

    fn run(&mut self, job: Job) -> ! {
        let limits = job.limits;
        let started = Instant::now();
        let deadline = started + std::time::Duration::from_millis(limits.timeout_ms);
        deadline::arm(deadline);
        let budget =
            usize::try_from(limits.memory_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        self.runtime
            .set_memory_limit(self.heap_in_use.saturating_add(budget));
        // The zygote's heap is shared copy-on-write; a cycle collection marks every object on
        // it, copying every page. Collect only once the run has allocated half its budget.
        self.runtime
            .set_gc_threshold(self.heap_in_use.saturating_add(budget / 2));

        let hooks = self.hooks.clone();
        let outcome = self.context.with(|ctx| match hooks.restore(&ctx) {
            Ok(hooks) => execute(&ctx, &hooks, &job, deadline),
            Err(e) => Outcome::failed(RunError::new(ErrorKind::Internal, e.to_string())),
        });
        let mut outcome = match outcome {
            Outcome {
                result: Some(json), ..
            } if json.get().len() > output::output_limit() => Outcome::failed(RunError::new(
                ErrorKind::OutputLimit,
                format!(
                    "the returned value exceeds the limit of {} bytes",
                    limits.max_output_bytes
                ),
            )),
            other => other,
        };
        if let Some(error) = outcome.error.as_mut() {
            match error.kind {
                ErrorKind::Timeout => outcome.exit_code = TIMEOUT_EXIT_CODE,
                ErrorKind::MemoryLimit => {
                    error.message = format!(
                        "memory limit exceeded: the run may use {} MB ({})",
                        limits.memory_mb, error.message
                    )
                }
                _ => {}
            }
            if job.mode == Mode::Script {
                if let Some(traceback) = &error.traceback {
                    let text = traceback.clone();
                    output::push_output(2, &text);
                }
            }
        }
        output::report(outcome.result, outcome.exit_code, outcome.error)
    }
}

/// The prelude's native pieces that come as one object: fetch's, the run's files', and the
/// loader of an npm module's bundle.
fn natives<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Object<'js>> {
    let natives = Object::new(ctx.clone())?;
    natives.set("fetch", fetch::natives(ctx)?)?;
    natives.set("files", files::natives(ctx)?)?;
    natives.set("loadBundle", Func::from(modules::load_bundle))?;
    Ok(natives)
}

/// `crypto.getRandomValues` and Math.random's seed: bytes from the kernel, in the child.
fn random_bytes<'js>(ctx: Ctx<'js>, n: usize) -> rquickjs::Result<ArrayBuffer<'js>> {
    let mut bytes = vec![0u8; n.min(65536)];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: getrandom writes at most the remaining length into the buffer.
        let got = unsafe {
            libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
        };
        if got <= 0 {
            return Err(rquickjs::Error::new_from_js_message(
                "getrandom",
                "bytes",
                std::io::Error::last_os_error().to_string(),
            ));
        }
        filled += got as usize;
    }
    ArrayBuffer::new(ctx, bytes)
}

/// `SystemHelper.httpRequest`'s and `fetch`'s way to the server: request JSON in, answer JSON out. Blocks the
/// run until the server answers (the server's deadline still applies).
fn broker_call(request: String) -> rquickjs::Result<String> {
    let answer = super::child::broker_call(request.as_bytes())
        .map_err(|e| rquickjs::Error::new_from_js_message("request", "answer", e.to_string()))?;
    String::from_utf8(answer)
        .map_err(|e| rquickjs::Error::new_from_js_message("answer", "string", e.to_string()))
}

/// Evaluates the user's code (as a script, or as a module when it uses `import`/`export`),
/// then runs `main` or lets the script's timers and promises finish.
fn execute<'js>(ctx: &Ctx<'js>, hooks: &Object<'js>, job: &Job, deadline: Instant) -> Outcome {
    let script = job.mode == Mode::Script;
    let fastgpt = job.convention == Convention::Fastgpt;
    // The peers' runs have no files (FastGPT's suite checks that `fs` is refused).
    let begin = files::inputs(ctx, job).and_then(|inputs| {
        hooks.get::<_, Function>("beginRun").and_then(|f| {
            let allowed = allowed_names(&job.imports);
            f.call::<_, ()>((script, fastgpt, allowed, job.has_files, inputs))
        })
    });
    if let Err(e) = begin {
        return Outcome::failed(RunError::new(ErrorKind::Internal, e.to_string()));
    }
    let inputs = match ctx.json_parse(job.inputs.get()) {
        Ok(value) => value,
        Err(e) => return Outcome::failed(RunError::new(ErrorKind::Internal, e.to_string())),
    };
    if fastgpt {
        // FastGPT's variables are a global too.
        if let Err(e) = ctx.globals().set("variables", inputs.clone()) {
            return Outcome::failed(RunError::new(ErrorKind::Internal, e.to_string()));
        }
    }
    let main = if modules::uses_module_syntax(&job.code) {
        match evaluate_module(ctx, hooks, job, deadline) {
            Ok(main) => main,
            Err(outcome) => return outcome,
        }
    } else {
        match evaluate_script(ctx, hooks, job) {
            Ok(main) => main,
            Err(caught) => return caught_outcome(ctx, hooks, caught, true),
        }
    };
    if script {
        return finish_script(ctx, hooks, deadline);
    }
    let Some(main) = main.as_ref().and_then(Value::as_function) else {
        return Outcome::failed(RunError::new(
            ErrorKind::InvalidReturn,
            "no main function: define `function main(inputs)` returning an object",
        ));
    };
    let returned = match main.call::<_, Value>((inputs,)).catch(ctx) {
        Ok(value) => value,
        Err(caught) => return caught_outcome(ctx, hooks, caught, false),
    };
    let returned = match returned.as_promise() {
        Some(promise) => match settle(ctx, hooks, promise, deadline) {
            Ok(value) => value,
            Err(outcome) => return outcome,
        },
        None => returned,
    };
    to_result(ctx, returned, fastgpt)
}

/// The names a run's request narrowed `require()` to, if it did (`Any`: every module bundled).
fn allowed_names(policy: &ImportPolicy) -> Option<Vec<String>> {
    match policy {
        ImportPolicy::Only { modules } => Some(modules.clone()),
        _ => None,
    }
}

/// Evaluates a plain script; `main` is then a global, which the prelude's `findMain` (compiled
/// once, in the zygote) looks up as `typeof main` would.
fn evaluate_script<'js>(
    ctx: &Ctx<'js>,
    hooks: &Object<'js>,
    job: &Job,
) -> Result<Option<Value<'js>>, CaughtError<'js>> {
    let mut options = EvalOptions::default();
    options.global = true;
    options.strict = false; // Dify's template relies on sloppy mode
    options.backtrace_barrier = true;
    options.promise = false;
    options.filename = Some(USER_FILE.into());
    ctx.eval_with_options::<Value, _>(job.code.as_str(), options)
        .catch(ctx)?;
    if job.mode == Mode::Script {
        return Ok(None);
    }
    hooks
        .get::<_, Function>("findMain")
        .and_then(|find| find.call::<_, Value>(()))
        .catch(ctx)
        .map(Some)
}

/// Evaluates ES-module code (its imports go through [`modules::FromRequire`]), waiting for a
/// top-level `await`; `main` comes back as an export.
fn evaluate_module<'js>(
    ctx: &Ctx<'js>,
    hooks: &Object<'js>,
    job: &Job,
    deadline: Instant,
) -> Result<Option<Value<'js>>, Outcome> {
    let source = if job.mode == Mode::Main {
        format!("{}{MAIN_EXPORT}", job.code)
    } else {
        job.code.clone()
    };
    let declared = Module::declare(ctx.clone(), USER_FILE, source)
        .catch(ctx)
        .map_err(|caught| caught_outcome(ctx, hooks, caught, true))?;
    let (module, promise) = declared
        .eval()
        .catch(ctx)
        .map_err(|caught| caught_outcome(ctx, hooks, caught, false))?;
    settle(ctx, hooks, &promise, deadline)?;
    if job.mode == Mode::Script {
        return Ok(None);
    }
    Ok(module.get::<_, Value>("__sandlot_main").ok())
}

/// Runs the event loop until `promise` settles; its value, or the outcome that ends the run.
fn settle<'js>(
    ctx: &Ctx<'js>,
    hooks: &Object<'js>,
    promise: &Promise<'js>,
    deadline: Instant,
) -> Result<Value<'js>, Outcome> {
    let pending = || promise.state() == rquickjs::promise::PromiseState::Pending;
    match event_loop::run_until(ctx, hooks, deadline, &|| !pending()) {
        Ok(()) => {}
        Err(Stop::Timeout) => return Err(Outcome::failed(interrupted())),
        Err(Stop::Thrown(caught)) => return Err(caught_outcome(ctx, hooks, caught, false)),
    }
    if pending() {
        // A promise job stopped by the interrupt handler leaves the queue dry, not a rejection.
        if Instant::now() >= deadline {
            return Err(Outcome::failed(interrupted()));
        }
        return Err(Outcome::failed(RunError::new(
            ErrorKind::RuntimeError,
            "main() returned a promise that never settled (nothing left to wait for)",
        )));
    }
    match promise.result::<Value>() {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) => Err(caught_outcome(
            ctx,
            hooks,
            CaughtError::from_error(ctx, e),
            false,
        )),
        None => Err(Outcome::failed(RunError::new(
            ErrorKind::Internal,
            "a settled promise without a result",
        ))),
    }
}

/// A script's end: its timers and promise jobs run out; an unhandled rejection fails it as in
/// Node (exit 1, the error on stderr); `process.exit(n)` ends it with n.
fn finish_script<'js>(ctx: &Ctx<'js>, hooks: &Object<'js>, deadline: Instant) -> Outcome {
    let exit_requested = || {
        event_loop::first_unhandled(ctx).is_some_and(|reason| exit_code(hooks, &reason).is_some())
    };
    match event_loop::run_until(ctx, hooks, deadline, &exit_requested) {
        Ok(()) => {}
        Err(Stop::Timeout) => return Outcome::failed(interrupted()),
        Err(Stop::Thrown(caught)) => return caught_outcome(ctx, hooks, caught, false),
    }
    match event_loop::first_unhandled(ctx) {
        None => Outcome::ok(None),
        Some(reason) => caught_outcome(ctx, hooks, CaughtError::Value(reason), false).in_promise(),
    }
}

/// An exception or thrown value: `process.exit(n)` (a plain exit), or an error.
fn caught_outcome<'js>(
    ctx: &Ctx<'js>,
    hooks: &Object<'js>,
    caught: CaughtError<'js>,
    while_loading: bool,
) -> Outcome {
    let thrown = match &caught {
        CaughtError::Exception(e) => Some(e.clone().into_value()),
        CaughtError::Value(v) => Some(v.clone()),
        CaughtError::Error(_) => None,
    };
    if let Some(code) = thrown.and_then(|v| exit_code(hooks, &v)) {
        return Outcome::exited(code);
    }
    // A rejection's reason arrives as a value; an Error among them is an exception.
    let caught = match caught {
        CaughtError::Value(v) if v.as_exception().is_some() => {
            CaughtError::Exception(v.into_exception().expect("checked"))
        }
        other => other,
    };
    let _ = ctx;
    Outcome::failed(describe(caught, while_loading))
}

fn exit_code<'js>(hooks: &Object<'js>, value: &Value<'js>) -> Option<i32> {
    let check: Function = hooks.get("exitCode").ok()?;
    check
        .call::<_, Option<i32>>((value.clone(),))
        .ok()
        .flatten()
}
