//! Compiles the rule crates to WebAssembly components and embeds the default ones.
//!
//! `rules/*` become `builtin:<name>` (the crate name without `herald-rule-`): built for
//! wasm32-unknown-unknown and made components here with `wit-component`, so they import
//! Herald's contract and no WASI at all (fewer core instances, a smaller attack surface).
//! `tests/rules/*` are test fixtures, built for wasm32-wasip2 like `herald rule new`
//! crates, not embedded; their folder is exported to the tests as `HERALD_TEST_RULES_DIR`.
//! The hostile fixture is also built the builtins' way, into `HERALD_TEST_BARE_RULES_DIR`.
//! The SDK's source and WIT, and the rule scaffold (`sdk/template`), are
//! embedded as text for `herald rule new`.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target of the test fixtures (and of `herald rule new` crates): components with WASI.
const WASI_TARGET: &str = "wasm32-wasip2";
/// The target of the embedded rules: a core module with no WASI, made a component here.
const BARE_TARGET: &str = "wasm32-unknown-unknown";
const PROFILE: &str = "rule";
const PREFIX: &str = "herald-rule-";
/// Fixtures also built like the embedded rules, to prove the limits hold there too.
const BARE_FIXTURES: &[&str] = &["herald-rule-hostile"];
/// Bytes of shadow stack (in linear memory) each embedded rule gets.
const GUEST_STACK: u32 = 64 * 1024;
/// The initial linear memory of an embedded rule: stack, data (about 35 KB), and at least the
/// 64 KiB heap the SDK's allocator starts in, so a typical invocation never grows memory (a
/// growth costs the engine an `mprotect`, and another to undo it). Within the pool's resident
/// window (sandbox.rs), which is reset by `memset`: more memory costs every invocation.
const BARE_INITIAL_MEMORY: u32 = 192 * 1024;
/// The Cargo profile of the embedded rules (Cargo.toml): `rule`, optimised for speed.
const BARE_PROFILE: &str = "rule-builtin";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir
        .parent()
        .expect("engine/ sits in the workspace")
        .to_owned();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    watch(&root);
    check_wasm_target(WASI_TARGET);
    check_wasm_target(BARE_TARGET);

    let builtins = crates_in(&root.join("rules"));
    let fixtures = crates_in(&root.join("tests/rules"));
    let target_dir = wasm_target_dir(&out_dir);
    let bare_fixtures: Vec<String> = BARE_FIXTURES.iter().map(|&p| p.to_owned()).collect();
    let bare = [&builtins[..], &bare_fixtures].concat();
    build_rules(&root, &target_dir, (BARE_TARGET, BARE_PROFILE), &bare);
    build_rules(&root, &target_dir, (WASI_TARGET, PROFILE), &fixtures);

    let bare_dir = target_dir.join(BARE_TARGET).join(BARE_PROFILE);
    let components = componentize(&bare_dir, &out_dir.join("builtin"), &builtins);
    write_builtin_table(&out_dir, &builtins, &components);
    let bare_fixtures_dir = out_dir.join("fixtures");
    componentize(&bare_dir, &bare_fixtures_dir, &bare_fixtures);
    write_sdk_table(&root, &out_dir);
    println!(
        "cargo:rustc-env=HERALD_TEST_RULES_DIR={}",
        target_dir.join(WASI_TARGET).join(PROFILE).display()
    );
    println!(
        "cargo:rustc-env=HERALD_TEST_BARE_RULES_DIR={}",
        bare_fixtures_dir.display()
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

/// Stop early, naming the fix, when a wasm target is not installed.
fn check_wasm_target(target: &str) {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("run rustc --print sysroot");
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    let lib = Path::new(&sysroot).join("lib/rustlib").join(target);
    if !lib.exists() {
        panic!(
            "\n\nHerald's rules compile to WebAssembly, and the `{target}` target is not installed.\n\
             Run:\n\n    rustup target add {target}\n\nthen build again.\n"
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

fn build_rules(
    root: &Path,
    target_dir: &Path,
    (target, profile): (&str, &str),
    packages: &[String],
) {
    if packages.is_empty() {
        return;
    }
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--profile",
            profile,
            "--target",
            target,
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
    let mut rustflags = format!("-C link-arg=-zstack-size={GUEST_STACK}");
    if target == BARE_TARGET {
        write!(
            rustflags,
            " -C link-arg=--initial-memory={BARE_INITIAL_MEMORY}"
        )
        .unwrap();
    }
    let rustflags_var = format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        target.to_uppercase().replace('-', "_")
    );
    cmd.env(rustflags_var, rustflags);
    let output = cmd.output().expect("run cargo to build the rules");
    if !output.status.success() {
        panic!(
            "building the rules for {target} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Make each package's core module a component (its WIT is in the module's `component-type`
/// section, put there by wit-bindgen); the components' paths, in `packages`' order.
fn componentize(module_dir: &Path, component_dir: &Path, packages: &[String]) -> Vec<PathBuf> {
    std::fs::create_dir_all(component_dir).expect("create a components folder");
    packages
        .iter()
        .map(|package| {
            let file = format!("{}.wasm", package.replace('-', "_"));
            let module_path = module_dir.join(&file);
            let module = std::fs::read(&module_path)
                .unwrap_or_else(|e| panic!("read {} after the build: {e}", module_path.display()));
            let component = wit_component::ComponentEncoder::default()
                .validate(true)
                .module(&module)
                .and_then(|mut encoder| encoder.encode())
                .unwrap_or_else(|e| panic!("make {} a component: {e:#}", module_path.display()));
            let component_path = component_dir.join(&file);
            std::fs::write(&component_path, component).expect("write a component");
            component_path
        })
        .collect()
}

fn write_builtin_table(out_dir: &Path, builtins: &[String], components: &[PathBuf]) {
    let mut table = String::from("/// (name, component bytes) of every embedded rule.\n");
    table.push_str("pub static BUILTIN_RULES: &[(&str, &[u8])] = &[\n");
    for (package, wasm) in builtins.iter().zip(components) {
        let name = package.strip_prefix(PREFIX).unwrap_or(package);
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
