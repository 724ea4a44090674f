//! The npm modules of the whitelist, bundled by build.rs and evaluated once in the
//! javascript-modules and javascript-intl zygotes (in the lean one by the run that first needs
//! one, [`load_bundle`]), and the ES-module loader that serves the same modules to `import`.
//!
//! `import x from 'lodash'` and `import('fs')` both go through the prelude's own `require`
//! (reached through `Symbol.for('sandlot.module')`): a whitelisted name yields the bundled
//! exports, any other name (a path, a URL, `fs`) throws the same `ModuleNotAllowedError` that
//! `require` does. Nothing is ever read from disk.

use rquickjs::context::EvalOptions;
use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::{CatchResultExt, CaughtError, Ctx, Function, Module, Object, Result, Value};

mod bundles {
    include!(concat!(env!("OUT_DIR"), "/bundles.rs"));
}

/// Evaluates the polyfills bundle and returns its exports (Buffer, URL, ...).
pub fn polyfills<'js>(ctx: &Ctx<'js>) -> Result<Object<'js>> {
    evaluate(ctx, "globals", bundles::GLOBALS)
}

/// Evaluates the Intl bundle, which installs `Intl` and the locale-aware `toLocaleString`s;
/// returns its exports (`warmUp`).
pub fn install_intl<'js>(ctx: &Ctx<'js>) -> Result<Object<'js>> {
    evaluate(ctx, "intl", bundles::INTL)
}

/// Evaluates every module bundle and hands its exports to the prelude's `registerModule`.
pub fn register_all<'js>(ctx: &Ctx<'js>, hooks: &Object<'js>) -> Result<()> {
    let register: Function = hooks.get("registerModule")?;
    for (name, source) in bundles::MODULES {
        let exports = evaluate(ctx, name, source)?;
        register.call::<_, ()>((*name, exports))?;
    }
    Ok(())
}

/// The prelude's loader for a module its zygote did not register (the javascript zygote carries
/// none): the bundle named `name` evaluated now, in the child of the run that requires it, or
/// `undefined` if this build bundles no such module.
pub fn load_bundle<'js>(ctx: Ctx<'js>, name: String) -> Result<Value<'js>> {
    match bundles::MODULES
        .iter()
        .find(|(bundled, _)| *bundled == name)
    {
        Some((name, source)) => evaluate(&ctx, name, source).map(Object::into_value),
        None => Ok(Value::new_undefined(ctx)),
    }
}

/// Runs one CommonJS bundle with its own `module` object; returns `module.exports`.
fn evaluate<'js>(ctx: &Ctx<'js>, name: &str, source: &str) -> Result<Object<'js>> {
    let mut options = EvalOptions::default();
    options.global = true;
    options.strict = false;
    options.filename = Some(format!("<npm:{name}>"));
    let wrapped = format!("(function (module, exports) {{\n{source}\n}})");
    let factory: Function = ctx.eval_with_options(wrapped, options)?;
    let module = Object::new(ctx.clone())?;
    module.set("exports", Object::new(ctx.clone())?)?;
    factory.call::<_, ()>((module.clone(), module.get::<_, Object>("exports")?))?;
    module.get("exports")
}

/// Whether the code uses ES module syntax (`import … from`, `export`), so it must be evaluated
/// as a module rather than a script. Dynamic `import()` works in scripts too.
pub fn uses_module_syntax(code: &str) -> bool {
    code.lines().any(|line| {
        let line = line.trim_start();
        let import = line.strip_prefix("import").is_some_and(|rest| {
            rest.starts_with([' ', '{', '*', '\'', '"', '\t'])
                && !rest.trim_start().starts_with('(')
        });
        let export = line
            .strip_prefix("export")
            .is_some_and(|rest| rest.starts_with([' ', '{', '*', '\t']));
        import || export
    })
}

/// Every name resolves to itself: the loader decides what it may be.
pub struct AnyName;

impl Resolver for AnyName {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        _base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> Result<String> {
        Ok(name.to_owned())
    }
}

/// Declares, for a module name, a module whose body asks the prelude's `require` for it and
/// re-exports the answer: the whole exports object as `default` (or its own `default` for an
/// ES module), and each property usable as a binding name as a named export.
pub struct FromRequire;

impl Loader for FromRequire {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> Result<Module<'js, Declared>> {
        let quoted = serde_json::to_string(name).expect("a string serializes");
        // A refused name fails here, before linking, so `import {x} from 'fs'` reports the
        // refusal rather than a missing export.
        let exports: Value = ctx
            .eval::<Value, _>(format!(
                "globalThis[Symbol.for('sandlot.module')]({quoted})"
            ))
            .catch(ctx)
            .map_err(|caught| match caught {
                CaughtError::Exception(e) => ctx.throw(e.into_value()),
                CaughtError::Value(v) => ctx.throw(v),
                CaughtError::Error(e) => e,
            })?;
        let keys: Vec<String> = match exports.as_object() {
            Some(object) => object.keys().collect::<Result<_>>()?,
            None => Vec::new(),
        };
        let named: Vec<&str> = keys
            .iter()
            .map(String::as_str)
            .filter(|k| is_binding_name(k))
            .collect();
        let mut source = format!(
            "const m = globalThis[Symbol.for('sandlot.module')]({quoted});\n\
             export default (m && m.__esModule && 'default' in m) ? m.default : m;\n"
        );
        if !named.is_empty() {
            source.push_str(&format!("export const {{ {} }} = m;\n", named.join(", ")));
        }
        Module::declare(ctx.clone(), name, source)
    }
}

/// An identifier that may be declared with `const` in a module.
fn is_binding_name(key: &str) -> bool {
    const RESERVED: &[&str] = &[
        "await",
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "debugger",
        "default",
        "delete",
        "do",
        "else",
        "enum",
        "export",
        "extends",
        "false",
        "finally",
        "for",
        "function",
        "if",
        "implements",
        "import",
        "in",
        "instanceof",
        "interface",
        "let",
        "new",
        "null",
        "package",
        "private",
        "protected",
        "public",
        "return",
        "static",
        "super",
        "switch",
        "this",
        "throw",
        "true",
        "try",
        "typeof",
        "var",
        "void",
        "while",
        "with",
        "yield",
        "m",
        "arguments",
        "eval",
    ];
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && !RESERVED.contains(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_syntax_is_told_from_scripts() {
        assert!(uses_module_syntax("import _ from 'lodash'\n"));
        assert!(uses_module_syntax("  import {v4} from \"uuid\";"));
        assert!(uses_module_syntax("import * as qs from 'qs'"));
        assert!(uses_module_syntax("export default function main() {}"));
        assert!(!uses_module_syntax("const m = await import('lodash')"));
        assert!(!uses_module_syntax(
            "function main() { return {important: 1} }"
        ));
        assert!(!uses_module_syntax("// exports things\nfunction main() {}"));
    }
}
