//! Compiles the rule crates to wasm32-wasip2 components and embeds the default ones.
//!
//! `rules/*` become `builtin:<name>` (the crate name without `herald-rule-`).
//! `tests/rules/*` are test fixtures: built beside them, not embedded; their
//! folder is exported to the tests as `HERALD_TEST_RULES_DIR`.
//! The SDK's source and WIT, and the rule scaffold (`sdk/template`), are
//! embedded as text for `herald rule new`.

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
    write_sdk_table(&root, &out_dir);
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
        "sdk/template",
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

/// Embed the SDK (a standalone manifest, `src/`, `wit/`) and the scaffold
/// templates as `(relative path, text)` tables for `herald rule new`.
fn write_sdk_table(root: &Path, out_dir: &Path) {
    let sdk = root.join("sdk");
    let manifest = standalone_manifest(root, &sdk);
    let manifest_path = out_dir.join("sdk-Cargo.toml");
    std::fs::write(&manifest_path, manifest).expect("write the SDK's standalone manifest");
    let mut table = String::from("/// (path, text) of the SDK as `herald rule new` writes it.\n");
    table.push_str("pub static SDK_FILES: &[(&str, &str)] = &[\n");
    push_entry(&mut table, "Cargo.toml", &manifest_path);
    for dir in ["src", "wit"] {
        for file in files_under(&sdk.join(dir)) {
            let rel = file.strip_prefix(&sdk).expect("under sdk/");
            push_entry(&mut table, &rel.display().to_string(), &file);
        }
    }
    table.push_str(
        "];\n/// (path, text) of the rule scaffold, with `{{name}}` and `{{crate}}` to fill in.\n",
    );
    table.push_str("pub static TEMPLATE_FILES: &[(&str, &str)] = &[\n");
    let template = sdk.join("template");
    for file in files_under(&template) {
        let rel = file.strip_prefix(&template).expect("under sdk/template");
        push_entry(&mut table, &rel.display().to_string(), &file);
    }
    table.push_str("];\n");
    std::fs::write(out_dir.join("sdk_files.rs"), table).expect("write sdk_files.rs");
}

fn push_entry(table: &mut String, rel: &str, file: &Path) {
    writeln!(
        table,
        "    ({rel:?}, include_str!({:?})),",
        file.display().to_string()
    )
    .unwrap();
}

/// Every file under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read an SDK folder") {
            let path = entry.expect("an SDK folder entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `sdk/Cargo.toml` with every `workspace = true` replaced by the workspace's
/// value, so it builds outside this workspace.
fn standalone_manifest(root: &Path, sdk: &Path) -> String {
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).expect("read Cargo.toml");
    let text = std::fs::read_to_string(sdk.join("Cargo.toml")).expect("read sdk/Cargo.toml");
    let mut out = String::new();
    let mut in_lints = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_lints = line.trim() == "[lints]";
        }
        if in_lints {
            continue;
        }
        match line.split_once(".workspace = true") {
            Some((key, _)) => out.push_str(&workspace_value(&workspace, key)),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// `key = value` from the workspace's `[workspace.package]` or `[workspace.dependencies]`.
fn workspace_value(workspace: &str, key: &str) -> String {
    let line = workspace
        .lines()
        .find(|l| l.split_once(" = ").is_some_and(|(k, _)| k.trim() == key))
        .unwrap_or_else(|| panic!("no `{key}` in the workspace Cargo.toml"));
    if key == "publish" {
        return "publish = false".to_owned();
    }
    line.to_owned()
}
