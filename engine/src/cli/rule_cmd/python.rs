//! Rules in Python: the scaffold (`rule new --lang python`) and the build (componentize-py in a venv).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::compile::Built;
use super::usage;
use crate::cli::CliError;
use crate::config::Limits;
use crate::evaluate::sandbox::Sandbox;

/// The componentize-py that `herald rule build` installs and runs (also in sdk/python/pyproject.toml).
pub(crate) const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
/// A componentize-py executable to use instead of the one installed in the cache.
pub(crate) const COMPONENTIZE_PY_ENV: &str = "HERALD_COMPONENTIZE_PY";
/// The Python that makes the venv (default `python3`).
const PYTHON_ENV: &str = "HERALD_PYTHON";
/// The module componentize-py makes the component from: the SDK's glue, which imports app.py.
const ENTRY_MODULE: &str = "herald.world";

/// The Python SDK (`herald/`), placed beside app.py.
const SDK_FILES: &[(&str, &str)] = &[
    (
        "herald/__init__.py",
        include_str!("../../../../sdk/python/herald/__init__.py"),
    ),
    (
        "herald/_host.py",
        include_str!("../../../../sdk/python/herald/_host.py"),
    ),
    (
        "herald/_message.py",
        include_str!("../../../../sdk/python/herald/_message.py"),
    ),
    (
        "herald/_rule.py",
        include_str!("../../../../sdk/python/herald/_rule.py"),
    ),
    (
        "herald/_types.py",
        include_str!("../../../../sdk/python/herald/_types.py"),
    ),
    (
        "herald/directory.py",
        include_str!("../../../../sdk/python/herald/directory.py"),
    ),
    (
        "herald/omero.py",
        include_str!("../../../../sdk/python/herald/omero.py"),
    ),
    (
        "herald/world.py",
        include_str!("../../../../sdk/python/herald/world.py"),
    ),
    ("wit/rule.wit", include_str!("../../../../sdk/wit/rule.wit")),
];

/// The scaffold of `herald rule new NAME --lang python` (`{{name}}` is replaced).
const TEMPLATE_FILES: &[(&str, &str)] = &[
    (
        "app.py",
        include_str!("../../../../sdk/python/template/app.py"),
    ),
    (
        "herald-rule.yaml",
        include_str!("../../../../sdk/python/template/herald-rule.yaml"),
    ),
    (
        "README.md",
        include_str!("../../../../sdk/python/template/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../../../sdk/python/template/gitignore"),
    ),
    (
        "tests/cases/new-user.yaml",
        include_str!("../../../../sdk/python/template/tests/cases/new-user.yaml"),
    ),
    (
        "events/user-created.json",
        include_str!("../../../../sdk/template/events/user-created.json"),
    ),
];

/// Write the Python rule `name` (checked, `dir` empty) with the SDK beside it.
pub(super) fn create(name: &str, dir: &Path) -> Result<(), CliError> {
    for (rel, text) in TEMPLATE_FILES {
        write(&dir.join(rel), &text.replace("{{name}}", name))?;
    }
    write_sdk(dir)
}

fn write_sdk(dir: &Path) -> Result<(), CliError> {
    for (rel, text) in SDK_FILES {
        write(&dir.join(rel), text)?;
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), CliError> {
    let parent = path.parent().expect("a file under the rule's folder");
    std::fs::create_dir_all(parent)
        .and_then(|()| std::fs::write(path, text))
        .map_err(|err| usage(format!("cannot write {}: {err}", path.display())))
}

/// Whether `dir` holds a Python rule (an app.py and no Cargo.toml).
pub(crate) fn is_rule_dir(dir: &Path) -> bool {
    dir.join("app.py").is_file() && !dir.join("Cargo.toml").exists()
}

pub(crate) use crate::evaluate::module::is_python_component;

/// The default limits of the component at `path`: Python's for a Python rule.
pub(crate) fn default_limits(path: &Path) -> Limits {
    run_settings(path).0
}

/// The limits and compiled-component cache of `herald rule run` on the component at
/// `path`: for a Python rule, Python's limits, and a cache in the user's cache folder
/// (compiling one takes seconds); otherwise the defaults and no cache.
pub(crate) fn run_settings(path: &Path) -> (Limits, Option<PathBuf>) {
    let python = std::fs::read(path).is_ok_and(|wasm| is_python_component(&wasm));
    if python {
        let cache = user_cache().map(|dir| dir.join("compiled"));
        (Limits::default().for_python(), cache)
    } else {
        (Limits::default(), None)
    }
}

/// Build the Python rule in `dir` into `dir/NAME.wasm` and check that the engine loads it.
pub(crate) fn build(dir: &Path) -> Result<Built, CliError> {
    let name = rule_name(dir);
    let wasm = dir.join(format!("{name}.wasm"));
    if up_to_date(dir, &wasm) {
        eprintln!(
            "{} is up to date with the rule's Python files",
            wasm.display()
        );
    } else {
        componentize(dir, &wasm)?;
    }
    let bytes = std::fs::read(&wasm).map_err(|err| usage(format!("{}: {err}", wasm.display())))?;
    check_contract(&bytes, dir).map_err(|err| usage(format!("{}: {err:#}", wasm.display())))?;
    Ok(Built {
        wasm,
        size: bytes.len() as u64,
    })
}

/// Whether `wasm` is newer than every Python and WIT file of the rule (a rebuild would give
/// a component that must be compiled again: componentize-py's output differs run to run).
fn up_to_date(dir: &Path, wasm: &Path) -> bool {
    let Some(built) = modified(wasm) else {
        return false;
    };
    if !has_own_sdk(dir) && !embedded_sdk_written(&dir.join(EMBEDDED_SDK)) {
        return false; // a new herald binary, with another SDK
    }
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for file in sources(dir) {
        newest = newest.max(modified(&file).unwrap_or(std::time::SystemTime::now()));
    }
    newest < built
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The `.py` and `.wit` files under `dir`, but not under `target/`, `tests/` or caches.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_dir() {
            if !matches!(&*name, "target" | "tests" | "__pycache__") && !name.starts_with('.') {
                out.extend(sources(&path));
            }
        } else if name.ends_with(".py") || name.ends_with(".wit") {
            out.push(path);
        }
    }
    out
}

/// Run componentize-py on the rule in `dir`, writing `wasm`.
fn componentize(dir: &Path, wasm: &Path) -> Result<(), CliError> {
    let tool = componentize_py()?;
    let (sdk_dir, wit) = sdk_paths(dir)?;
    let mut command = Command::new(&tool);
    command
        .arg("-d")
        .arg(&wit)
        .args(["-w", "rule", "componentize", "-p"])
        .arg(dir);
    if sdk_dir != dir {
        command.arg("-p").arg(&sdk_dir);
    }
    command
        .arg(ENTRY_MODULE)
        .arg("-o")
        .arg(wasm)
        // componentize-py's own Rust backtrace would bury app.py's traceback.
        .env("RUST_LIB_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let status = command
        .status()
        .map_err(|err| usage(format!("cannot run {}: {err}", tool.display())))?;
    if !status.success() {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "componentize-py could not build {} (its errors, with app.py's traceback, are above)",
            dir.display()
        )));
    }
    Ok(())
}

/// Compile the component the way `herald test` will (same limits, same cache), so the
/// test run that follows finds it compiled.
fn check_contract(wasm: &[u8], dir: &Path) -> anyhow::Result<()> {
    let limits = Limits::default().for_python();
    let cache = dir.join("target/herald/cache");
    Sandbox::new(limits.memory_bytes, Some(cache)).prepare(wasm, &limits)?;
    Ok(())
}

/// The rule's name from herald-rule.yaml, else the folder's name.
fn rule_name(dir: &Path) -> String {
    let from_entry = std::fs::read_to_string(dir.join("herald-rule.yaml"))
        .ok()
        .and_then(|text| serde_yaml::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v["rules"][0]["name"].as_str().map(str::to_owned));
    from_entry.unwrap_or_else(|| {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
        dir.file_name()
            .map_or("rule".into(), |n| n.to_string_lossy().into_owned())
    })
}

/// The SDK and WIT beside app.py; for a rule without them (Herald's own Python rules),
/// the ones this binary carries, written under `dir/target/herald/python-sdk`.
fn sdk_paths(dir: &Path) -> Result<(PathBuf, PathBuf), CliError> {
    if has_own_sdk(dir) {
        return Ok((dir.to_owned(), dir.join("wit")));
    }
    let sdk = dir.join(EMBEDDED_SDK);
    if !embedded_sdk_written(&sdk) {
        write_sdk(&sdk)?;
    }
    Ok((sdk.clone(), sdk.join("wit")))
}

/// Where a rule without its own SDK gets this binary's (Herald's own Python rules).
const EMBEDDED_SDK: &str = "target/herald/python-sdk";

fn has_own_sdk(dir: &Path) -> bool {
    dir.join("herald/world.py").is_file() && dir.join("wit/rule.wit").is_file()
}

/// Whether `sdk` holds exactly the SDK this binary carries.
fn embedded_sdk_written(sdk: &Path) -> bool {
    SDK_FILES
        .iter()
        .all(|(rel, text)| std::fs::read_to_string(sdk.join(rel)).is_ok_and(|t| t == *text))
}

/// `$XDG_CACHE_HOME/herald`, or `~/.cache/herald`.
fn user_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("herald"))
}

/// The componentize-py to run: `$HERALD_COMPONENTIZE_PY`, or the pinned one in the
/// user's cache, installed there on first use.
fn componentize_py() -> Result<PathBuf, CliError> {
    if let Some(path) = std::env::var_os(COMPONENTIZE_PY_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let cache = user_cache().ok_or_else(|| {
        usage(format!(
            "cannot find a cache folder (neither XDG_CACHE_HOME nor HOME is set); set \
             {COMPONENTIZE_PY_ENV} to a componentize-py executable ({COMPONENTIZE_PY})"
        ))
    })?;
    let venv = cache.join(COMPONENTIZE_PY.replace("==", "-"));
    let tool = venv.join("bin/componentize-py");
    if tool.is_file() {
        return Ok(tool);
    }
    let _lock = InstallLock::take(&cache)?;
    if !tool.is_file() {
        install(&venv)?;
    }
    Ok(tool)
}

/// Make the venv and pip-install the pinned componentize-py into it, saying so.
fn install(venv: &Path) -> Result<(), CliError> {
    let python = std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".into());
    eprintln!(
        "installing {COMPONENTIZE_PY} into {} (first Python build only; needs PyPI)",
        venv.display()
    );
    let _ = std::fs::remove_dir_all(venv);
    let made = Command::new(&python)
        .args(["-m", "venv"])
        .arg(venv)
        .stdout(Stdio::null())
        .status();
    match made {
        Err(err) => {
            return Err(usage(format!(
                "cannot run `{python}` ({err}): install Python 3.10 or later (e.g. `apt install \
                 python3 python3-venv`), or set {PYTHON_ENV} to a Python 3 interpreter"
            )));
        }
        Ok(status) if !status.success() => {
            let _ = std::fs::remove_dir_all(venv);
            return Err(usage(format!(
                "`{python} -m venv` failed (its error is above): install Python's venv module \
                 (e.g. `apt install python3-venv`), or set {COMPONENTIZE_PY_ENV} to a \
                 componentize-py you installed ({COMPONENTIZE_PY})"
            )));
        }
        Ok(_) => {}
    }
    let pip = Command::new(venv.join("bin/python"))
        .args(["-m", "pip", "install", "--quiet", COMPONENTIZE_PY])
        .status()
        .map_err(|err| usage(format!("cannot run pip in {}: {err}", venv.display())))?;
    if !pip.success() {
        let _ = std::fs::remove_dir_all(venv);
        return Err(usage(format!(
            "pip could not install {COMPONENTIZE_PY} (its error is above): check that PyPI is \
             reachable, or set {COMPONENTIZE_PY_ENV} to a componentize-py you installed"
        )));
    }
    Ok(())
}

/// An exclusive lock on `<cache>/install.lock`, so builds running at once install once.
struct InstallLock {
    _file: std::fs::File,
}

impl InstallLock {
    fn take(cache: &Path) -> Result<InstallLock, CliError> {
        use std::os::fd::AsRawFd;
        let path = cache.join("install.lock");
        let file = std::fs::create_dir_all(cache)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
            })
            .map_err(|err| usage(format!("cannot open {}: {err}", path.display())))?;
        // SAFETY: flock on a descriptor this File owns; released when it is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(usage(format!(
                "cannot lock {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            )));
        }
        Ok(InstallLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_python_sdk_and_template_are_embedded() {
        let sdk: Vec<&str> = SDK_FILES.iter().map(|(p, _)| *p).collect();
        assert!(sdk.contains(&"herald/world.py") && sdk.contains(&"wit/rule.wit"));
        let world = SDK_FILES
            .iter()
            .find(|(p, _)| *p == "herald/world.py")
            .unwrap()
            .1;
        assert!(world.contains("class WitWorld"), "{world}");
        let entry = TEMPLATE_FILES
            .iter()
            .find(|(p, _)| *p == "herald-rule.yaml")
            .unwrap()
            .1;
        assert!(entry.contains("lang: python"), "{entry}");
        let pyproject = include_str!("../../../../sdk/python/pyproject.toml");
        assert!(pyproject.contains(COMPONENTIZE_PY), "{pyproject}");
    }

    #[test]
    fn python_components_are_told_from_others_by_their_producer() {
        assert!(is_python_component(
            b"\0asm..processed-by..componentize-py\x060.25.1"
        ));
        assert!(!is_python_component(b"\0asm..processed-by..wit-component"));
    }

    #[test]
    fn a_component_newer_than_every_python_file_is_up_to_date() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for sub in ["herald", "wit", "tests/cases"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("app.py"), "x = 1\n").unwrap();
        std::fs::write(dir.join("herald/world.py"), "y = 1\n").unwrap();
        std::fs::write(dir.join("wit/rule.wit"), "package a:b;\n").unwrap();
        let wasm = dir.join("r.wasm");
        assert!(!up_to_date(dir, &wasm), "no component yet");
        let set = |path: &Path, secs: u64| {
            let time = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(time)
                .unwrap();
        };
        std::fs::write(&wasm, "").unwrap();
        set(&dir.join("app.py"), 1_000);
        set(&dir.join("herald/world.py"), 1_000);
        set(&dir.join("wit/rule.wit"), 1_000);
        set(&wasm, 2_000);
        assert!(up_to_date(dir, &wasm));
        std::fs::write(dir.join("tests/cases/a.yaml"), "").unwrap();
        assert!(up_to_date(dir, &wasm), "cases are not sources");
        set(&dir.join("herald/world.py"), 3_000);
        assert!(!up_to_date(dir, &wasm), "the SDK changed");
        set(&dir.join("herald/world.py"), 1_000);
        std::fs::remove_dir_all(dir.join("herald")).unwrap();
        assert!(
            !up_to_date(dir, &wasm),
            "no SDK of its own, and this binary's not yet written"
        );
    }

    #[test]
    fn the_rule_name_comes_from_the_entry_or_the_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("quiet-hours");
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(rule_name(&dir), "quiet-hours");
        std::fs::write(dir.join("herald-rule.yaml"), "rules:\n  - name: late\n").unwrap();
        assert_eq!(rule_name(&dir), "late");
    }
}
