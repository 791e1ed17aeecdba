//! `herald rule build`: cargo for wasm32-wasip2 with the rule profile, then a contract check.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::usage;
use crate::cli::CliError;
use crate::config::Limits;
use crate::evaluate::sandbox::Sandbox;

const TARGET: &str = "wasm32-wasip2";
/// The shadow stack Herald's own rules are linked with (engine/build.rs).
const STACK_FLAGS: &str = "-C link-arg=-zstack-size=65536";

/// A built rule: its component beside the crate's Cargo.toml.
pub(crate) struct Built {
    pub wasm: PathBuf,
    pub size: u64,
}

/// Build the rule crate at `dir`, copy its component to `dir/<package>.wasm`, and check
/// that the engine can load it.
pub(crate) fn build(dir: &Path) -> Result<Built, CliError> {
    if super::python::is_rule_dir(dir) {
        return super::python::build(dir);
    }
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(usage(format!(
            "{} has no Cargo.toml (nor app.py): pass the rule's folder, or make one with `herald rule new NAME [--lang python]`",
            dir.display()
        )));
    }
    check_target()?;
    let artifact = cargo_build(dir, &manifest)?;
    let name = package_name(&artifact);
    let wasm = dir.join(format!("{name}.wasm"));
    std::fs::copy(&artifact, &wasm).map_err(|err| {
        usage(format!(
            "cannot copy {} to {}: {err}",
            artifact.display(),
            wasm.display()
        ))
    })?;
    let bytes = std::fs::read(&wasm).map_err(|err| usage(format!("{}: {err}", wasm.display())))?;
    check_contract(&bytes).map_err(|err| usage(format!("{}: {err:#}", wasm.display())))?;
    Ok(Built {
        wasm,
        size: bytes.len() as u64,
    })
}

/// Whether the engine would load this component (it exports the rule contract and imports
/// nothing the sandbox lacks).
pub(crate) fn check_contract(wasm: &[u8]) -> anyhow::Result<()> {
    let limits = Limits::default();
    Sandbox::new(limits.memory_bytes, None).prepare(wasm, &limits)?;
    Ok(())
}

fn check_target() -> Result<(), CliError> {
    let output = Command::new("rustc").args(["--print", "sysroot"]).output();
    let Ok(output) = output else {
        return Err(usage(
            "cannot run rustc: install Rust with rustup (https://rustup.rs), then `rustup target add wasm32-wasip2`",
        ));
    };
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .exists()
    {
        return Ok(());
    }
    Err(usage(format!(
        "the Rust target {TARGET} is not installed; run `rustup target add {TARGET}` and build again"
    )))
}

/// Run cargo (its progress and errors go to our stderr) and return the cdylib's `.wasm`.
fn cargo_build(dir: &Path, manifest: &Path) -> Result<PathBuf, CliError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        // Inside the crate, so that its .cargo/config.toml applies too.
        .current_dir(dir)
        .args(["build", "--release", "--target", TARGET])
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(manifest.file_name().expect("Cargo.toml"))
        .env("CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS", STACK_FLAGS)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|err| usage(format!("cannot run cargo: {err}")))?;
    if !output.status.success() {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "cargo could not build {} (its errors are above)",
            dir.display()
        )));
    }
    wasm_artifact(&String::from_utf8_lossy(&output.stdout)).ok_or_else(|| {
        usage(format!(
            "cargo built no .wasm in {}: the crate needs `[lib] crate-type = [\"cdylib\"]` in its Cargo.toml",
            dir.display()
        ))
    })
}

/// The last cdylib `.wasm` in cargo's JSON messages (the crate's own comes last).
fn wasm_artifact(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
        })
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
                .filter(|f| f.extension().is_some_and(|x| x == "wasm"))
                .collect::<Vec<_>>()
        })
        .next_back()
}

/// `welcome_users.wasm` → `welcome-users`: the rule name the scaffold used.
fn package_name(artifact: &Path) -> String {
    let stem = artifact.file_stem().unwrap_or_default().to_string_lossy();
    stem.replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cdylib_is_found_in_cargos_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"kind":["lib"]},"filenames":["/t/libserde.rlib"]}
not json
{"reason":"compiler-artifact","target":{"kind":["cdylib","rlib"]},"filenames":["/t/welcome_users.wasm","/t/libwelcome_users.rlib"]}
{"reason":"build-finished","success":true}"#;
        let wasm = wasm_artifact(messages).unwrap();
        assert_eq!(wasm, PathBuf::from("/t/welcome_users.wasm"));
        assert_eq!(package_name(&wasm), "welcome-users");
        assert_eq!(wasm_artifact("{\"reason\":\"build-finished\"}"), None);
    }
}
