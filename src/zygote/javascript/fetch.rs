//! The native side of JavaScript's `fetch` (`stdlib-shims/javascript/fetch.js`): its source,
//! compiled in a child the first time a run touches one of its globals (the zygote keeps only
//! the text, in the binary, so runs that never use it pay nothing), and UTF-8 conversions that
//! QuickJS lacks natively (the TextDecoder polyfill takes ~0.4 s for a 2 MiB body).

use rquickjs::context::EvalOptions;
use rquickjs::function::Func;
use rquickjs::{ArrayBuffer, Ctx, Function, Object, Result, TypedArray};

use super::PRELUDE_FILE;

const FETCH: &str = include_str!("../../../stdlib-shims/javascript/fetch.js");

/// What the prelude hands to fetch.js: `load()` (its install function), `decodeUtf8` and
/// `encodeUtf8`.
pub fn natives<'js>(ctx: &Ctx<'js>) -> Result<Object<'js>> {
    let natives = Object::new(ctx.clone())?;
    natives.set("load", Func::from(load))?;
    natives.set("decodeUtf8", Func::from(decode_utf8))?;
    natives.set("encodeUtf8", Func::from(encode_utf8))?;
    Ok(natives)
}

/// Compiles fetch.js; its frames count as the prelude's (left out of the user's traceback).
fn load<'js>(ctx: Ctx<'js>) -> Result<Function<'js>> {
    let mut options = EvalOptions::default();
    options.filename = Some(PRELUDE_FILE.into());
    ctx.eval_with_options(FETCH, options)
}

/// A body's bytes as text, as `Response.text()` decodes them: UTF-8, a leading byte-order mark
/// dropped, invalid sequences as U+FFFD.
fn decode_utf8(bytes: TypedArray<'_, u8>) -> String {
    let Some(raw) = bytes.as_raw() else {
        return String::new();
    };
    // SAFETY: the slice is read and copied before any JavaScript runs again.
    let slice = unsafe { raw.as_ref() };
    let slice = slice.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(slice);
    String::from_utf8_lossy(slice).into_owned()
}

/// A string's UTF-8 bytes (lone surrogates as U+FFFD).
fn encode_utf8<'js>(ctx: Ctx<'js>, text: rquickjs::String<'js>) -> Result<ArrayBuffer<'js>> {
    ArrayBuffer::new(ctx, text.to_string()?.into_bytes())
}
