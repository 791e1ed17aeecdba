//! `herald rule new`: write the rule template and the embedded SDK into a new folder.

use std::path::Path;

use super::usage;
use crate::cli::CliError;

include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));

/// Where the SDK goes inside the new crate (its Cargo.toml depends on it by this path).
const SDK_DIR: &str = "herald-sdk";

/// Write the crate for rule `name` into `dir`, which must not exist or be empty.
pub(super) fn create(name: &str, dir: &Path) -> Result<(), CliError> {
    check_name(name)?;
    check_empty(dir)?;
    for (rel, text) in TEMPLATE_FILES {
        let text = text
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"));
        write(&dir.join(template_path(rel)), &text)?;
    }
    for (rel, text) in SDK_FILES {
        write(&dir.join(SDK_DIR).join(rel), text)?;
    }
    Ok(())
}

/// Write the Python rule `name` into `dir`, which must not exist or be empty.
pub(super) fn create_python(name: &str, dir: &Path) -> Result<(), CliError> {
    check_name(name)?;
    check_empty(dir)?;
    super::python::create(name, dir)
}

/// The template's file names that cannot be used as they are in the SDK's folder.
fn template_path(rel: &str) -> &str {
    match rel {
        "Cargo.toml.in" => "Cargo.toml",
        "gitignore" => ".gitignore",
        other => other,
    }
}

/// A rule name is also the crate's name and the `.wasm` file's: `[a-z][a-z0-9-]*`.
fn check_name(name: &str) -> Result<(), CliError> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if valid {
        return Ok(());
    }
    Err(usage(format!(
        "`{name}` cannot name a rule: use lowercase letters, digits and dashes, starting with a \
         letter, e.g. `welcome-users`"
    )))
}

fn check_empty(dir: &Path) -> Result<(), CliError> {
    let Ok(mut entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    if entries.next().is_none() {
        return Ok(());
    }
    Err(usage(format!(
        "{} already exists and is not empty; choose another folder with --dir",
        dir.display()
    )))
}

fn write(path: &Path, text: &str) -> Result<(), CliError> {
    let parent = path.parent().expect("a file under the new folder");
    std::fs::create_dir_all(parent)
        .and_then(|()| std::fs::write(path, text))
        .map_err(|err| usage(format!("cannot write {}: {err}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("welcome-users2").is_ok());
        for bad in ["", "Welcome", "9lives", "a_b", "x-", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_sdk_and_template_are_embedded() {
        let paths: Vec<&str> = SDK_FILES.iter().map(|(p, _)| *p).collect();
        assert!(
            paths.contains(&"Cargo.toml") && paths.contains(&"src/lib.rs"),
            "{paths:?}"
        );
        assert!(paths.contains(&"wit/rule.wit"), "{paths:?}");
        let manifest = SDK_FILES[0].1;
        assert!(
            manifest.contains("name = \"herald-rule-sdk\""),
            "{manifest}"
        );
        assert!(!manifest.contains("workspace"), "{manifest}");
        assert!(TEMPLATE_FILES.iter().any(|(p, _)| *p == "Cargo.toml.in"));
    }
}
