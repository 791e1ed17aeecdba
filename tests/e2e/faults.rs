//! A full disk or a read-only store: a clear error, exit 75 (retry later), nothing stored, nothing corrupted.
//!
//! These tests mount small tmpfs file systems, so they need root (CI and the dev machines run as root).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Scratch, assert_exit, stderr};

/// A tmpfs mounted on the scratch state folder; unmounted on drop.
struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        mount(&[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            at.to_str().unwrap(),
        ]);
        Tmpfs { at: at.to_owned() }
    }

    fn remount(&self, mode: &str) {
        mount(&["-o", &format!("remount,{mode}"), self.at.to_str().unwrap()]);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).status();
    }
}

fn mount(args: &[&str]) {
    let status = Command::new("mount")
        .args(args)
        .status()
        .expect("run mount");
    assert!(
        status.success(),
        "`mount {}` failed: these tests need root to mount a tmpfs",
        args.join(" ")
    );
}

fn event(i: usize, padding: usize) -> String {
    format!(
        r#"{{"id":"f{i}","source":"s","type":"lab.note","data":{{"text":"{}"}}}}"#,
        "x".repeat(padding)
    )
}

fn send(scratch: &Scratch, name: &str, lines: &[String]) -> std::process::Output {
    std::fs::write(scratch.path(name), lines.join("\n")).unwrap();
    scratch.herald(&[
        "send",
        "--no-evaluate",
        scratch.path(name).to_str().unwrap(),
    ])
}

/// The store is intact and holds exactly `events` events.
fn intact(scratch: &Scratch, events: i64) {
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    assert_eq!(scratch.count("SELECT count(*) FROM events"), events);
}

#[test]
fn a_read_only_store_refuses_with_a_retryable_status() {
    let scratch = Scratch::new();
    let fs = Tmpfs::mount(&scratch.path("var"), "16m");
    assert_exit(&send(&scratch, "a.jsonl", &[event(1, 10)]), 0);
    fs.remount("ro");
    let out = send(&scratch, "b.jsonl", &[event(2, 10)]);
    fs.remount("rw");
    assert_exit(&out, 75);
    let err = stderr(&out);
    assert!(
        err.contains("read-only") || err.contains("cannot be opened"),
        "{err}"
    );
    assert!(err.contains("nothing was stored"), "{err}");
    intact(&scratch, 1);
    assert_exit(&send(&scratch, "b.jsonl", &[event(2, 10)]), 0);
    intact(&scratch, 2);
}

#[test]
fn a_full_disk_refuses_the_whole_batch_and_corrupts_nothing() {
    let scratch = Scratch::new();
    let _fs = Tmpfs::mount(&scratch.path("var"), "1m");
    assert_exit(&send(&scratch, "a.jsonl", &[event(1, 10)]), 0);
    let big: Vec<String> = (100..700).map(|i| event(i, 4000)).collect();
    let out = send(&scratch, "big.jsonl", &big);
    assert_exit(&out, 75);
    let err = stderr(&out);
    assert!(err.contains("full") || err.contains("I/O error"), "{err}");
    assert!(err.contains("nothing was stored"), "{err}");
    intact(&scratch, 1);
    assert_exit(&send(&scratch, "c.jsonl", &[event(2, 10)]), 0);
    intact(&scratch, 2);
}
