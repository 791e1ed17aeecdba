//! Helpers for end-to-end tests: run the real `herald` binary in a scratch state folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Where the test-fixture rules (tests/rules/*) were compiled.
pub fn fixture_wasm(package: &str) -> PathBuf {
    Path::new(env!("HERALD_TEST_RULES_DIR")).join(format!("{}.wasm", package.replace('-', "_")))
}

/// A scratch folder with its own config; dropped with the test.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    /// A scratch folder using the shipped `etc/herald.yaml`, state kept here.
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A scratch folder with a config of its own, written to `herald.yaml`.
    /// `directory.yaml` there is a copy of `etc/directory.yaml`.
    pub fn with_config(yaml: &str) -> Scratch {
        let scratch = Scratch::new();
        std::fs::copy(
            repo().join("etc/directory.yaml"),
            scratch.path("directory.yaml"),
        )
        .unwrap();
        std::fs::write(scratch.path("herald.yaml"), yaml).unwrap();
        scratch
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Run herald with the shipped config and this folder as its state_dir.
    pub fn herald(&self, args: &[&str]) -> Output {
        self.run(&repo().join("etc/herald.yaml"), args)
    }

    /// Run herald with this folder's own `herald.yaml`.
    pub fn herald_own(&self, args: &[&str]) -> Output {
        self.run(&self.path("herald.yaml"), args)
    }

    /// Run herald with the given config file, state kept here.
    pub fn herald_with(&self, config: &Path, args: &[&str]) -> Output {
        self.run(config, args)
    }

    fn run(&self, config: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_herald"))
            .current_dir(repo())
            .arg("--config")
            .arg(config)
            .arg("--state-dir")
            .arg(self.path("var"))
            .args(args)
            .env_remove("HERALD_CONFIG")
            .env_remove("HERALD_STATE_DIR")
            .output()
            .expect("run the herald binary")
    }

    /// The .eml files written, sorted by name, with their bytes.
    pub fn mails(&self) -> Vec<(String, Vec<u8>)> {
        let dir = self.path("var/mail");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut mails: Vec<(String, Vec<u8>)> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        mails.sort();
        mails
    }

    /// Run one SQL count against the store.
    pub fn count(&self, sql: &str) -> i64 {
        let conn = rusqlite::Connection::open(self.path("var/herald.db")).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Assert the exit code, showing both streams when it is wrong.
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit code\n--- stdout\n{}\n--- stderr\n{}",
        stdout(out),
        stderr(out)
    );
}
