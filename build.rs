//! Bundles the npm modules JavaScript code may `require()` (and the polyfills behind the Node-like
//! globals) into CommonJS files embedded in the binary.
//!
//! The modules are real npm dependencies, pinned by `stdlib-shims/package.json` and its lockfile.
//! They are installed with `npm ci` into Cargo's OUT_DIR (never into the source tree, and only
//! when the lockfile changed), then esbuild bundles each entry of
//! `stdlib-shims/javascript/modules/` (plus `globals.js`) into one self-contained file.
//! `src/zygote/javascript/modules.rs` includes the generated `bundles.rs`.
//!
//! It also records which CPython the binary embeds ([`python`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "build/python.rs"]
mod python;

fn main() {
    python::link();
    // The binary's segments on 2 MiB boundaries: the kernel then loads it at a 2 MiB-aligned
    // address, so a zygote can copy all of its machine code into huge pages
    // (`zygote::huge_pages::remap_read_only_code`), not only the blocks a random base leaves
    // whole.
    println!(
        "cargo::rustc-link-arg-bins=-Wl,-z,max-page-size=0x200000,-z,separate-loadable-segments"
    );
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let shims = manifest.join("stdlib-shims");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for watched in [
        "package.json",
        "package-lock.json",
        "javascript/modules",
        "javascript/globals.js",
        "javascript/intl.js",
    ] {
        println!("cargo::rerun-if-changed=stdlib-shims/{watched}");
    }

    let npm_dir = out.join("npm");
    install(&shims, &npm_dir);

    let mut entries: Vec<PathBuf> = fs::read_dir(shims.join("javascript/modules"))
        .expect("reading stdlib-shims/javascript/modules")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "js"))
        .collect();
    entries.sort();
    let bundles = out.join("bundles");
    let _ = fs::remove_dir_all(&bundles);
    let mut esbuild = Command::new("node");
    esbuild
        .arg(npm_dir.join("node_modules/esbuild/bin/esbuild"))
        .args(&entries)
        .arg(shims.join("javascript/globals.js"))
        .arg(shims.join("javascript/intl.js"))
        .args([
            "--bundle",
            "--format=cjs",
            // The browser field is how these packages say "no Node built-ins here" (crypto-js's
            // optional require('crypto'), for one).
            "--platform=browser",
            "--target=es2022",
            "--charset=utf8",
            "--legal-comments=none",
            "--log-level=error",
        ])
        .arg(format!("--outbase={}", shims.join("javascript").display()))
        .arg(format!("--outdir={}", bundles.display()))
        .env("NODE_PATH", npm_dir.join("node_modules"));
    run(&mut esbuild, "bundling the npm modules with esbuild");

    let mut generated = String::from(
        "/// (module name, CommonJS bundle) for every module `require()` may load.\n\
         pub const MODULES: &[(&str, &str)] = &[\n",
    );
    for entry in &entries {
        let name = entry.file_stem().unwrap().to_str().unwrap();
        let bundle = bundles.join("modules").join(format!("{name}.js"));
        generated.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            path(&bundle)
        ));
    }
    generated.push_str("];\n\n/// The polyfills behind Buffer, URL, TextEncoder and the rest.\n");
    generated.push_str(&format!(
        "pub const GLOBALS: &str = include_str!({:?});\n",
        path(&bundles.join("globals.js"))
    ));
    generated.push_str("\n/// Intl: FormatJS's polyfills with their locale data.\n");
    generated.push_str(&format!(
        "pub const INTL: &str = include_str!({:?});\n",
        path(&bundles.join("intl.js"))
    ));
    fs::write(out.join("bundles.rs"), generated).unwrap();
}

/// `npm ci` into `dir`, unless it already holds exactly this lockfile's install.
fn install(shims: &Path, dir: &Path) {
    let lock = fs::read(shims.join("package-lock.json")).expect("reading the lockfile");
    let installed = dir.join("installed-lock.json");
    if fs::read(&installed).is_ok_and(|l| l == lock) && dir.join("node_modules").is_dir() {
        return;
    }
    fs::create_dir_all(dir).unwrap();
    fs::copy(shims.join("package.json"), dir.join("package.json")).unwrap();
    fs::write(dir.join("package-lock.json"), &lock).unwrap();
    let mut npm = Command::new("npm");
    npm.args([
        "ci",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
    ])
    .current_dir(dir);
    run(
        &mut npm,
        "installing the npm modules with `npm ci` (needs npm and its registry)",
    );
    fs::write(installed, lock).unwrap();
}

fn run(command: &mut Command, what: &str) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("{what}: cannot start {:?}: {e}", command.get_program()));
    assert!(status.success(), "{what} failed: {status}");
}

fn path(p: &Path) -> String {
    p.to_str().expect("OUT_DIR is valid UTF-8").to_owned()
}
