//! Compiles the rule crates to wasm32-wasip2 components and embeds the default ones.
//!
//! `rules/*` become `builtin:<name>` (the crate name without `herald-rule-`).
//! `tests/rules/*` are test fixtures: built beside them, not embedded; their
//! folder is exported to the tests as `HERALD_TEST_RULES_DIR`.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "rule";
const PREFIX: &str = "herald-rule-";
/// Bytes of shadow stack (in linear memory) each embedded rule gets.
const GUEST_STACK: u32 = 64 * 1024;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir
        .parent()
        .expect("engine/ sits in the workspace")
        .to_owned();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    watch(&root);
    check_wasm_target();

    let builtins = crates_in(&root.join("rules"));
    let fixtures = crates_in(&root.join("tests/rules"));
    let target_dir = wasm_target_dir(&out_dir);
    build_rules(&root, &target_dir, builtins.iter().chain(&fixtures));

    let wasm_dir = target_dir.join(TARGET).join(PROFILE);
    write_builtin_table(&out_dir, &wasm_dir, &builtins);
    println!(
        "cargo:rustc-env=HERALD_TEST_RULES_DIR={}",
        wasm_dir.display()
    );
}

fn watch(root: &Path) {
    for path in [
        "rules",
        "tests/rules",
        "sdk/src",
        "sdk/wit",
        "sdk/Cargo.toml",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
}

/// Stop early, naming the fix, when the wasm target is not installed.
fn check_wasm_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("run rustc --print sysroot");
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    let lib = Path::new(&sysroot).join("lib/rustlib").join(TARGET);
    if !lib.exists() {
        panic!(
            "\n\nHerald's rules compile to WebAssembly, and the `{TARGET}` target is not installed.\n\
             Run:\n\n    rustup target add {TARGET}\n\nthen build again.\n"
        );
    }
}

/// The package names of the crates directly under `dir`, sorted.
fn crates_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| package_name(&entry.ok()?.path().join("Cargo.toml")))
        .collect();
    names.sort();
    names
}

fn package_name(manifest: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let line = text.lines().find(|l| l.trim_start().starts_with("name"))?;
    Some(line.split('"').nth(1)?.to_owned())
}

/// `<target>/wasm-rules`, beside the host profiles so dev, test and clippy
/// builds share it (a nested build into the host's own dir would deadlock).
fn wasm_target_dir(out_dir: &Path) -> PathBuf {
    let target = out_dir
        .ancestors()
        .nth(4)
        .expect("OUT_DIR is <target>/<profile>/build/<pkg>/out");
    target.join("wasm-rules")
}

fn build_rules<'a>(root: &Path, target_dir: &Path, packages: impl Iterator<Item = &'a String>) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--profile",
            PROFILE,
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(target_dir);
    for package in packages {
        cmd.args(["-p", package]);
    }
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    // A 64 KiB shadow stack (the default is 1 MiB) keeps a rule's data, stack and
    // first heap pages close together, so a fresh instance touches fewer pages.
    cmd.env(
        "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
        format!("-C link-arg=-zstack-size={GUEST_STACK}"),
    );
    let output = cmd.output().expect("run cargo to build the rules");
    if !output.status.success() {
        panic!(
            "building the rules for {TARGET} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn write_builtin_table(out_dir: &Path, wasm_dir: &Path, builtins: &[String]) {
    let mut table = String::from("/// (name, component bytes) of every embedded rule.\n");
    table.push_str("pub static BUILTIN_RULES: &[(&str, &[u8])] = &[\n");
    for package in builtins {
        let name = package.strip_prefix(PREFIX).unwrap_or(package);
        let wasm = wasm_dir.join(format!("{}.wasm", package.replace('-', "_")));
        assert!(wasm.exists(), "expected {} after the build", wasm.display());
        writeln!(
            table,
            "    ({name:?}, include_bytes!({:?})),",
            wasm.display().to_string()
        )
        .unwrap();
    }
    table.push_str("];\n");
    std::fs::write(out_dir.join("builtin_rules.rs"), table).expect("write builtin_rules.rs");
}
