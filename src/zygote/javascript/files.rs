//! The native side of JavaScript's `fs` (`stdlib-shims/javascript/fs.js`): its source, compiled
//! in a child the first time a run requires `fs` (runs that never do pay nothing), the run's
//! input files, and the writes into `output/` ([`crate::output_files`]).

use rquickjs::context::EvalOptions;
use rquickjs::function::{Func, Opt};
use rquickjs::{ArrayBuffer, Ctx, Function, IntoJs, Object, Result, TypedArray, Value};

use super::PRELUDE_FILE;
use crate::output_files::Refused;
use crate::protocol::Job;
use crate::zygote::run_output;

const FS: &str = include_str!("../../../stdlib-shims/javascript/fs.js");

/// What the prelude is installed with, once in the zygote: `load()` (fs.js's install
/// function) and `files` (the writes).
pub fn natives<'js>(ctx: &Ctx<'js>) -> Result<Object<'js>> {
    let natives = Object::new(ctx.clone())?;
    natives.set("load", Func::from(load))?;
    natives.set("files", Func::from(files))?;
    Ok(natives)
}

/// A run's input files for the prelude's `beginRun` (name to ArrayBuffer); `undefined` when it
/// was given none, which costs a run nothing.
pub fn inputs<'js>(ctx: &Ctx<'js>, job: &Job) -> Result<Value<'js>> {
    if job.files.is_empty() {
        return Ok(Value::new_undefined(ctx.clone()));
    }
    // Without a prototype: a file named `__proto__` is a file like any other.
    let inputs = Object::new(ctx.clone())?;
    inputs.set_prototype(None)?;
    for file in &job.files {
        inputs.set(
            file.name.as_str(),
            ArrayBuffer::new(ctx.clone(), file.bytes())?,
        )?;
    }
    Ok(inputs.into_value())
}

/// Compiles fs.js; its frames count as the prelude's (left out of the user's traceback).
fn load<'js>(ctx: Ctx<'js>) -> Result<Function<'js>> {
    let mut options = EvalOptions::default();
    options.filename = Some(PRELUDE_FILE.into());
    ctx.eval_with_options(FS, options)
}

/// `files(0, name)` creates a file of the output directory and returns its index;
/// `files(1, index, offset, bytes)` writes; `files(2, index)` closes. A refusal comes back as
/// the string `"ENOSPC: why"`, `"EFBIG: why"` or `"EINVAL: why"`, which fs.js throws as Node would.
fn files<'js>(
    ctx: Ctx<'js>,
    op: u32,
    target: Value<'js>,
    offset: Opt<f64>,
    bytes: Opt<TypedArray<'js, u8>>,
) -> Result<Value<'js>> {
    let index = || target.as_number().unwrap_or(-1.0) as u32;
    let done = match op {
        0 => {
            let name = target
                .as_string()
                .map(|s| s.to_string())
                .transpose()?
                .unwrap_or_default();
            run_output::with_files(|files| files.create(&name))
        }
        1 => {
            let data = bytes.0.as_ref().and_then(|b| b.as_raw());
            // SAFETY: the slice is copied into the output file before any JavaScript runs.
            let data = data.map_or(&[][..], |raw| unsafe { raw.as_ref() });
            let offset = offset.0.unwrap_or(0.0).max(0.0) as u64;
            run_output::with_files(|files| files.write(index(), offset, data)).map(|()| 0)
        }
        _ => run_output::with_files(|files| files.close(index())).map(|()| 0),
    };
    match done {
        Ok(index) => index.into_js(&ctx),
        Err(refused) => {
            let (errno, why) = run_output::refusal(&refused);
            let code = match (&refused, errno) {
                (Refused::Cap(_), libc::EFBIG) => "EFBIG",
                (Refused::Cap(_), _) => "ENOSPC",
                _ => "EINVAL",
            };
            format!("{code}: {why}").into_js(&ctx)
        }
    }
}
