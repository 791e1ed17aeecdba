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
    intact_at(scratch, "var/herald.db", events);
}

/// The store at `store` passes SQLite's integrity check and holds `events` events.
fn intact_at(scratch: &Scratch, store: &str, events: i64) {
    let conn = rusqlite::Connection::open(scratch.path(store)).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let count: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, events);
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
    // The store alone on a 1 MiB disk (the compiled-rule cache would fill it otherwise).
    let scratch = Scratch::with_config(
        "state_dir: var\nstore: {path: db/herald.db}\ningest: {custom_types: [lab.note]}\nrules: []\n",
    );
    let _fs = Tmpfs::mount(&scratch.path("db"), "1m");
    assert_exit(&send_own(&scratch, "a.jsonl", &[event(1, 10)]), 0);
    let big: Vec<String> = (100..700).map(|i| event(i, 4000)).collect();
    let out = send_own(&scratch, "big.jsonl", &big);
    assert_exit(&out, 75);
    let err = stderr(&out);
    assert!(err.contains("full") || err.contains("I/O error"), "{err}");
    assert!(err.contains("nothing was stored"), "{err}");
    intact_at(&scratch, "db/herald.db", 1);
    assert_exit(&send_own(&scratch, "c.jsonl", &[event(2, 10)]), 0);
    intact_at(&scratch, "db/herald.db", 2);
}

/// `send --no-evaluate` with the scratch's own config.
fn send_own(scratch: &Scratch, name: &str, lines: &[String]) -> std::process::Output {
    std::fs::write(scratch.path(name), lines.join("\n")).unwrap();
    scratch.herald_own(&[
        "send",
        "--no-evaluate",
        scratch.path(name).to_str().unwrap(),
    ])
}

/// New-user mail to files in the state folder, the store alone on `db/` (the tmpfs).
fn store_on_its_own_disk() -> Scratch {
    Scratch::with_config(
        "state_dir: var\nstore: {path: db/herald.db}\n\
         rules:\n  - {name: new-user, module: builtin:new-user, on: [omero.user.created]}\n",
    )
}

fn user_events(scratch: &Scratch, name: &str, n: usize) -> String {
    let lines: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"id":"{name}-{i}","source":"s","type":"omero.user.created","time":"2026-11-23T09:00:00Z","data":{{"user":{{"id":{i},"name":"u{i}"}}}}}}"#
            )
        })
        .collect();
    let path = scratch.path(&format!("{name}.jsonl"));
    std::fs::write(&path, lines.join("\n")).unwrap();
    path.display().to_string()
}

/// Fill the file system at `dir` until `leave` bytes are free; the filler is removed on drop.
struct Filler(PathBuf);

impl Filler {
    fn leave(dir: &Path, leave: u64) -> Filler {
        let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path and a zeroed statvfs to fill.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: c_dir is NUL-terminated and stat is valid for writes.
        assert_eq!(unsafe { libc::statvfs(c_dir.as_ptr(), &mut stat) }, 0);
        let free = stat.f_bavail as u64 * stat.f_frsize as u64;
        let path = dir.join("filler");
        std::fs::write(&path, vec![0u8; free.saturating_sub(leave) as usize]).unwrap();
        Filler(path)
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Exit 75 with the store's own account, and the store still intact.
fn refused_and_intact(out: &std::process::Output, scratch: &Scratch) {
    assert_exit(out, 75);
    let err = stderr(out);
    assert!(err.contains("full") || err.contains("I/O error"), "{err}");
    let conn = rusqlite::Connection::open(scratch.path("db/herald.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn a_full_disk_during_evaluation_exits_75_and_the_rest_is_evaluated_later() {
    let scratch = store_on_its_own_disk();
    let fs = Tmpfs::mount(&scratch.path("db"), "4m");
    let file = user_events(&scratch, "ev", 40);
    assert_exit(&scratch.herald_own(&["send", "--no-evaluate", &file]), 0);
    let filler = Filler::leave(&fs.at, 96 * 1024);
    let out = scratch.herald_own(&["deliver", "--until-empty"]);
    let counts = |sql: &str| {
        let conn = rusqlite::Connection::open(scratch.path("db/herald.db")).unwrap();
        conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap()
    };
    refused_and_intact(&out, &scratch);
    let pending = counts("SELECT count(*) FROM events WHERE state = 'pending'");
    // Evaluations commit in groups: the group that met the full disk is rolled back whole.
    assert!(
        (1..=40).contains(&pending),
        "the disk filled before every event was evaluated: {pending} pending\n{}",
        stderr(&out)
    );
    drop(filler);
    assert_exit(&scratch.herald_own(&["deliver", "--until-empty"]), 0);
    assert_eq!(
        counts("SELECT count(*) FROM outbox WHERE state = 'sent'"),
        80
    );
    assert_eq!(scratch.mails().len(), 80, "each mail written once");
}

#[test]
fn a_full_disk_during_delivery_exits_75_and_nothing_is_lost() {
    let scratch = store_on_its_own_disk();
    let fs = Tmpfs::mount(&scratch.path("db"), "4m");
    let file = user_events(&scratch, "dv", 60);
    assert_exit(&scratch.herald_own(&["send", &file]), 0);
    let filler = Filler::leave(&fs.at, 64 * 1024);
    let out = scratch.herald_own(&["deliver", "--until-empty"]);
    refused_and_intact(&out, &scratch);
    let counts = |sql: &str| {
        let conn = rusqlite::Connection::open(scratch.path("db/herald.db")).unwrap();
        conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap()
    };
    // How many rows got through before the disk filled depends on how large the WAL already
    // was (under load, none may); never all of them.
    let sent = counts("SELECT count(*) FROM outbox WHERE state = 'sent'");
    assert!(
        sent < 120,
        "the disk filled during delivery, before every row: {sent} sent\n{}",
        stderr(&out)
    );
    drop(filler);
    // This process is gone, so the rows it held are taken over at once.
    assert_exit(&scratch.herald_own(&["deliver", "--until-empty"]), 0);
    assert_eq!(
        counts("SELECT count(*) FROM outbox WHERE state = 'sent'"),
        120
    );
    let written: std::collections::HashSet<String> =
        scratch.mails().into_iter().map(|(name, _)| name).collect();
    assert_eq!(written.len(), 120, "every mail was written");
}
